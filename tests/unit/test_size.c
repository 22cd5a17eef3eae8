/* yd_parse_size: 1024-based suffixes, and what must be refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "guard.h"

#include "yodel.h"

static uint64_t parse_ok(const char *text)
{
    uint64_t n = 12345;
    int rc = yd_parse_size(text, &n);
    if (rc != 0)
        fail_msg("'%s' gave %d, expected 0", text, rc);
    return n;
}

static void assert_rejected(const char *text)
{
    uint64_t n = 12345;
    int rc = yd_parse_size(text, &n);
    if (rc != -EINVAL)
        fail_msg("'%s' gave %d (%llu), expected -EINVAL", text, rc, (unsigned long long)n);
    assert_int_equal(n, 12345);
}

static void test_size_bare_number_is_bytes(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("512"), 512);
}

static void test_size_zero_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("0"), 0);
    assert_int_equal(parse_ok("0k"), 0);
}

static void test_size_k_is_1024(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("64k"), 64 * 1024);
    assert_int_equal(parse_ok("64K"), 64 * 1024);
}

static void test_size_m_is_1024_squared(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1m"), 1024 * 1024);
    assert_int_equal(parse_ok("3M"), 3 * 1024 * 1024);
}

static void test_size_g_is_1024_cubed(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2g"), 2ull * 1024 * 1024 * 1024);
    assert_int_equal(parse_ok("2G"), 2ull * 1024 * 1024 * 1024);
}

static void test_size_optional_b_after_suffix(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("64kb"), 64 * 1024);
    assert_int_equal(parse_ok("64KB"), 64 * 1024);
    assert_int_equal(parse_ok("1mB"), 1024 * 1024);
    assert_int_equal(parse_ok("1Gb"), 1024 * 1024 * 1024);
}

static void test_size_b_alone_is_bytes(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("100b"), 100);
    assert_int_equal(parse_ok("100B"), 100);
}

static void test_size_leading_zeros(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("0010"), 10);
}

static void test_size_uint64_max_is_accepted(void **state)
{
    (void)state;
    assert_true(parse_ok("18446744073709551615") == UINT64_MAX);
}

static void test_size_uint64_max_plus_one_is_einval(void **state)
{
    (void)state;
    assert_rejected("18446744073709551616");
    assert_rejected("99999999999999999999999");
}

static void test_size_suffix_overflow_is_einval(void **state)
{
    (void)state;
    /* 2^54 k = 2^64 bytes: one past what fits. */
    assert_true(parse_ok("18014398509481983k") == 18014398509481983ull * 1024);
    assert_rejected("18014398509481984k");
    assert_rejected("17179869184g");
}

static void test_size_negative_is_einval(void **state)
{
    (void)state;
    assert_rejected("-1");
    assert_rejected("-0");
}

static void test_size_sign_or_spaces_are_einval(void **state)
{
    (void)state;
    assert_rejected("+1");
    assert_rejected(" 1");
    assert_rejected("1 ");
    assert_rejected("1 k");
}

static void test_size_empty_is_einval(void **state)
{
    (void)state;
    assert_rejected("");
}

static void test_size_suffix_without_number_is_einval(void **state)
{
    (void)state;
    assert_rejected("k");
    assert_rejected("kb");
    assert_rejected("b");
}

static void test_size_decimal_is_einval(void **state)
{
    (void)state;
    assert_rejected("1.5k");
    assert_rejected("1.0");
}

static void test_size_unknown_suffix_is_einval(void **state)
{
    (void)state;
    assert_rejected("1t");
    assert_rejected("1kib");
    assert_rejected("1KiB");
    assert_rejected("1kk");
    assert_rejected("1bb");
    assert_rejected("1bk");
    assert_rejected("0x10");
    assert_rejected("1e3");
}

static void test_size_null_is_einval(void **state)
{
    (void)state;
    uint64_t n;
    assert_int_equal(yd_parse_size(NULL, &n), -EINVAL);
    assert_int_equal(yd_parse_size("1", NULL), -EINVAL);
}

/* ---- Guard page: no byte past the string's NUL is ever read ----------------------------- */

static void test_size_parse_never_reads_past_the_end_of_its_string(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "512",
        "0",
        "64k",
        "64K",
        "1m",
        "1M",
        "1g",
        "1G",
        "k",
        "kb",
        "64kb",
        "1.5k",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1t",
        "0x10",
        "1kk",
        "00064k",
        "18446744073709551615",
        "18446744073709551616",
        "17179869184g",
        "99999999999999999999k",
    };
    char copy[64];
    struct guard g;
    guard_open(&g);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t len = strlen(texts[i]);
        for (size_t n = 0; n <= len; n++) {
            memcpy(copy, texts[i], n);
            copy[n] = '\0';
            uint64_t want = 7, got = 7;
            int rc_want = yd_parse_size(copy, &want);
            int rc_got = yd_parse_size(guard_string(&g, texts[i], n), &got);
            if (rc_got != rc_want || got != want)
                fail_msg("'%s' gave %d (%llu) at a guard page, %d (%llu) elsewhere", copy, rc_got,
                         (unsigned long long)got, rc_want, (unsigned long long)want);
        }
    }
    guard_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_bare_number_is_bytes),
        cmocka_unit_test(test_size_zero_is_allowed),
        cmocka_unit_test(test_size_k_is_1024),
        cmocka_unit_test(test_size_m_is_1024_squared),
        cmocka_unit_test(test_size_g_is_1024_cubed),
        cmocka_unit_test(test_size_optional_b_after_suffix),
        cmocka_unit_test(test_size_b_alone_is_bytes),
        cmocka_unit_test(test_size_leading_zeros),
        cmocka_unit_test(test_size_uint64_max_is_accepted),
        cmocka_unit_test(test_size_uint64_max_plus_one_is_einval),
        cmocka_unit_test(test_size_suffix_overflow_is_einval),
        cmocka_unit_test(test_size_negative_is_einval),
        cmocka_unit_test(test_size_sign_or_spaces_are_einval),
        cmocka_unit_test(test_size_empty_is_einval),
        cmocka_unit_test(test_size_suffix_without_number_is_einval),
        cmocka_unit_test(test_size_decimal_is_einval),
        cmocka_unit_test(test_size_unknown_suffix_is_einval),
        cmocka_unit_test(test_size_null_is_einval),
        cmocka_unit_test(test_size_parse_never_reads_past_the_end_of_its_string),
    };
    return cmocka_run_group_tests_name("size", tests, NULL, NULL);
}
