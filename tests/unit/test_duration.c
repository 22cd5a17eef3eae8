/* yd_parse_duration_ms: units, decimals, rounding, and what must be refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "guard.h"

#include "yodel.h"

/* The limit parse.c documents: about 100 years. */
#define HUNDRED_YEARS_MS (100ull * 365 * 24 * 3600 * 1000)

static uint64_t parse_ok(const char *text)
{
    uint64_t ms = 12345;
    int rc = yd_parse_duration_ms(text, &ms);
    if (rc != 0)
        fail_msg("'%s' gave %d, expected 0", text, rc);
    return ms;
}

static void assert_rejected(const char *text)
{
    uint64_t ms = 12345;
    int rc = yd_parse_duration_ms(text, &ms);
    if (rc != -EINVAL)
        fail_msg("'%s' gave %d (%llu ms), expected -EINVAL", text, rc, (unsigned long long)ms);
    assert_int_equal(ms, 12345);
}

static void test_duration_milliseconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("500ms"), 500);
}

static void test_duration_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2s"), 2000);
}

static void test_duration_minutes(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1m"), 60000);
}

static void test_duration_hours(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1h"), 3600000);
}

static void test_duration_bare_number_is_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("3"), 3000);
}

static void test_duration_bare_decimal_is_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("0.5"), 500);
}

static void test_duration_decimal_with_unit(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1.5s"), 1500);
    assert_int_equal(parse_ok("0.25m"), 15000);
    assert_int_equal(parse_ok("1.5h"), 5400000);
}

static void test_duration_zero_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("0"), 0);
    assert_int_equal(parse_ok("0ms"), 0);
    assert_int_equal(parse_ok("0.000s"), 0);
}

static void test_duration_leading_zeros(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("007s"), 7000);
}

static void test_duration_rounds_down_to_whole_ms(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1.9ms"), 1);
    assert_int_equal(parse_ok("0.0019s"), 1);
    assert_int_equal(parse_ok("1.23456s"), 1234);
}

static void test_duration_fraction_is_exact_past_many_digits(void **state)
{
    (void)state;
    /* 1/3600000 h is exactly 1 ms; a parser that kept only 9 digits would say 0. */
    assert_int_equal(parse_ok("0.0000002777777777777778h"), 1);
    assert_int_equal(parse_ok("0.99999999999999999999999s"), 999);
}

static void test_duration_below_one_ms_is_einval(void **state)
{
    (void)state;
    assert_rejected("0.0001s");
    assert_rejected("0.5ms");
    assert_rejected("0.00000000000000000001h");
}

static void test_duration_hundred_years_is_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("876000h"), HUNDRED_YEARS_MS);
}

static void test_duration_beyond_hundred_years_is_einval(void **state)
{
    (void)state;
    assert_rejected("876000.001h");
    assert_rejected("876001h");
    assert_rejected("3153600000001ms");
}

static void test_duration_that_would_overflow_is_einval(void **state)
{
    (void)state;
    assert_rejected("18446744073709551616");
    assert_rejected("18446744073709552ms");
    assert_rejected("5124095576031h"); /* times 3600000 is just past 2^64 */
    assert_rejected("99999999999999999999999999999999999999s");
}

static void test_duration_negative_is_einval(void **state)
{
    (void)state;
    assert_rejected("-1s");
    assert_rejected("-0");
}

static void test_duration_sign_or_spaces_are_einval(void **state)
{
    (void)state;
    assert_rejected("+1s");
    assert_rejected(" 1s");
    assert_rejected("1s ");
    assert_rejected("1 s");
}

static void test_duration_empty_is_einval(void **state)
{
    (void)state;
    assert_rejected("");
}

static void test_duration_unit_without_number_is_einval(void **state)
{
    (void)state;
    assert_rejected("s");
    assert_rejected("ms");
}

static void test_duration_unknown_unit_is_einval(void **state)
{
    (void)state;
    assert_rejected("1d");
    assert_rejected("1us");
    assert_rejected("1sec");
    assert_rejected("1S");
    assert_rejected("1MS");
    assert_rejected("1mss");
    assert_rejected("1sm");
}

static void test_duration_point_needs_digits_on_both_sides(void **state)
{
    (void)state;
    assert_rejected(".5");
    assert_rejected("5.");
    assert_rejected("5.s");
    assert_rejected(".");
    assert_rejected("1.2.3");
}

static void test_duration_exponent_and_hex_are_einval(void **state)
{
    (void)state;
    assert_rejected("1e3");
    assert_rejected("0x10");
    assert_rejected("inf");
    assert_rejected("nan");
}

static void test_duration_null_is_einval(void **state)
{
    (void)state;
    uint64_t ms;
    assert_int_equal(yd_parse_duration_ms(NULL, &ms), -EINVAL);
    assert_int_equal(yd_parse_duration_ms("1s", NULL), -EINVAL);
}

/* ---- Guard page: no byte past the string's NUL is ever read ----------------------------- */

static void test_duration_parse_never_reads_past_the_end_of_its_string(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "500ms",
        "2s",
        "1m",
        "1h",
        "0.5",
        "1.25s",
        "0.001s",
        "10",
        "ms",
        ".5s",
        "1.",
        "1.s",
        "1e3",
        "1 s",
        "-1s",
        "+1s",
        "1S",
        "1mss",
        "1msx",
        "1hh",
        "0.0001s",
        "1.5.5s",
        "s",
        "m",
        "h",
        "1d",
        "18446744073709551616",
        "99999999999999999999ms",
        "3153600000.001s",
        "0x10s",
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
            int rc_want = yd_parse_duration_ms(copy, &want);
            int rc_got = yd_parse_duration_ms(guard_string(&g, texts[i], n), &got);
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
        cmocka_unit_test(test_duration_milliseconds),
        cmocka_unit_test(test_duration_seconds),
        cmocka_unit_test(test_duration_minutes),
        cmocka_unit_test(test_duration_hours),
        cmocka_unit_test(test_duration_bare_number_is_seconds),
        cmocka_unit_test(test_duration_bare_decimal_is_seconds),
        cmocka_unit_test(test_duration_decimal_with_unit),
        cmocka_unit_test(test_duration_zero_is_allowed),
        cmocka_unit_test(test_duration_leading_zeros),
        cmocka_unit_test(test_duration_rounds_down_to_whole_ms),
        cmocka_unit_test(test_duration_fraction_is_exact_past_many_digits),
        cmocka_unit_test(test_duration_below_one_ms_is_einval),
        cmocka_unit_test(test_duration_hundred_years_is_accepted),
        cmocka_unit_test(test_duration_beyond_hundred_years_is_einval),
        cmocka_unit_test(test_duration_that_would_overflow_is_einval),
        cmocka_unit_test(test_duration_negative_is_einval),
        cmocka_unit_test(test_duration_sign_or_spaces_are_einval),
        cmocka_unit_test(test_duration_empty_is_einval),
        cmocka_unit_test(test_duration_unit_without_number_is_einval),
        cmocka_unit_test(test_duration_unknown_unit_is_einval),
        cmocka_unit_test(test_duration_point_needs_digits_on_both_sides),
        cmocka_unit_test(test_duration_exponent_and_hex_are_einval),
        cmocka_unit_test(test_duration_null_is_einval),
        cmocka_unit_test(test_duration_parse_never_reads_past_the_end_of_its_string),
    };
    return cmocka_run_group_tests_name("duration", tests, NULL, NULL);
}
