/* yd_addr_parse: every accepted form, and the near-misses it must refuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"

#include "yodel.h"

static yd_addr parse_ok(const char *text)
{
    yd_addr addr;
    memset(&addr, 0x5a, sizeof addr);
    assert_int_equal(yd_addr_parse(text, &addr), 0);
    return addr;
}

static void assert_rejected(const char *text)
{
    yd_addr addr;
    int rc = yd_addr_parse(text, &addr);
    if (rc != -EINVAL)
        fail_msg("'%s' gave %d, expected -EINVAL", text, rc);
}

static void test_addr_host_port_is_tcp(void **state)
{
    (void)state;
    yd_addr a = parse_ok("127.0.0.1:8888");
    assert_int_equal(a.transport, YD_TCP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 8888);
}

static void test_addr_tcp_scheme_is_tcp(void **state)
{
    (void)state;
    yd_addr a = parse_ok("tcp://localhost:7");
    assert_int_equal(a.transport, YD_TCP);
    assert_string_equal(a.host, "localhost");
    assert_int_equal(a.port, 7);
}

static void test_addr_udp_scheme_is_udp(void **state)
{
    (void)state;
    yd_addr a = parse_ok("udp://127.0.0.1:9999");
    assert_int_equal(a.transport, YD_UDP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 9999);
}

static void test_addr_host_name_with_dash_dot_underscore(void **state)
{
    (void)state;
    yd_addr a = parse_ok("echo-1.my_host.example:80");
    assert_string_equal(a.host, "echo-1.my_host.example");
}

static void test_addr_bracketed_ipv6_strips_brackets(void **state)
{
    (void)state;
    yd_addr a = parse_ok("[::1]:8888");
    assert_int_equal(a.transport, YD_TCP);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 8888);
}

static void test_addr_tcp_bracketed_ipv6_strips_brackets(void **state)
{
    (void)state;
    yd_addr a = parse_ok("tcp://[2001:db8::42]:443");
    assert_int_equal(a.transport, YD_TCP);
    assert_string_equal(a.host, "2001:db8::42");
    assert_int_equal(a.port, 443);
}

static void test_addr_udp_bracketed_ipv6_strips_brackets(void **state)
{
    (void)state;
    yd_addr a = parse_ok("udp://[::1]:0");
    assert_int_equal(a.transport, YD_UDP);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 0);
}

static void test_addr_ipv6_with_embedded_ipv4(void **state)
{
    (void)state;
    yd_addr a = parse_ok("[::ffff:127.0.0.1]:80");
    assert_string_equal(a.host, "::ffff:127.0.0.1");
}

static void test_addr_ipv6_with_zone(void **state)
{
    (void)state;
    yd_addr a = parse_ok("[fe80::1%lo]:80");
    assert_string_equal(a.host, "fe80::1%lo");
}

static void test_addr_unix_path(void **state)
{
    (void)state;
    yd_addr a = parse_ok("unix:/tmp/yodel.sock");
    assert_int_equal(a.transport, YD_UNIX);
    assert_string_equal(a.path, "/tmp/yodel.sock");
    assert_string_equal(a.host, "");
    assert_int_equal(a.port, 0);
}

static void test_addr_unix_double_slash_form(void **state)
{
    (void)state;
    yd_addr a = parse_ok("unix:///tmp/yodel.sock");
    assert_int_equal(a.transport, YD_UNIX);
    assert_string_equal(a.path, "/tmp/yodel.sock");
}

static void test_addr_unix_double_slash_is_stripped_once(void **state)
{
    (void)state;
    /* Found by fuzz_addr_parse: "unix:" + "//x" is the "unix://" form, so a path starting
     * with "//" is written with four slashes and must keep its two. */
    assert_string_equal(parse_ok("unix:////x").path, "//x");
    assert_string_equal(parse_ok("unix://x").path, "x");
}

static void test_addr_unix_relative_path(void **state)
{
    (void)state;
    yd_addr a = parse_ok("unix:yodel.sock");
    assert_string_equal(a.path, "yodel.sock");
}

static void test_addr_unix_path_of_107_bytes_fits(void **state)
{
    (void)state;
    char text[5 + 107 + 1] = "unix:";
    memset(text + 5, 'p', 107);
    text[5 + 107] = '\0';
    yd_addr a = parse_ok(text);
    assert_int_equal(strlen(a.path), 107);
}

static void test_addr_unix_path_of_108_bytes_is_einval(void **state)
{
    (void)state;
    char text[5 + 108 + 1] = "unix:";
    memset(text + 5, 'p', 108);
    text[5 + 108] = '\0';
    assert_rejected(text);
}

static void test_addr_unix_empty_path_is_einval(void **state)
{
    (void)state;
    assert_rejected("unix:");
    assert_rejected("unix://");
}

static void test_addr_port_0_takes_ephemeral(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("127.0.0.1:0").port, 0);
}

static void test_addr_port_65535_is_accepted(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("127.0.0.1:65535").port, 65535);
}

static void test_addr_port_65536_is_einval(void **state)
{
    (void)state;
    assert_rejected("127.0.0.1:65536");
}

static void test_addr_port_with_many_digits_is_einval(void **state)
{
    (void)state;
    /* 2^32 + 80: would be 80 if the parser let the value wrap. */
    assert_rejected("127.0.0.1:4294967376");
    assert_rejected("127.0.0.1:99999999999999999999999999");
}

static void test_addr_port_leading_zeros_are_decimal(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("127.0.0.1:0080").port, 80);
}

static void test_addr_port_not_decimal_is_einval(void **state)
{
    (void)state;
    assert_rejected("127.0.0.1:0x50");
    assert_rejected("127.0.0.1:-1");
    assert_rejected("127.0.0.1:+80");
    assert_rejected("127.0.0.1: 80");
    assert_rejected("127.0.0.1:80 ");
    assert_rejected("127.0.0.1:http");
    assert_rejected("127.0.0.1:8a");
}

static void test_addr_missing_port_is_einval(void **state)
{
    (void)state;
    assert_rejected("127.0.0.1");
    assert_rejected("127.0.0.1:");
    assert_rejected("tcp://localhost");
    assert_rejected("[::1]");
    assert_rejected("[::1]:");
}

static void test_addr_bare_port_is_einval(void **state)
{
    (void)state;
    assert_rejected(":8888");
    assert_rejected("tcp://:8888");
    assert_rejected("udp://:8888");
}

static void test_addr_empty_is_einval(void **state)
{
    (void)state;
    assert_rejected("");
    assert_rejected("tcp://");
    assert_rejected("udp://");
}

static void test_addr_null_is_einval(void **state)
{
    (void)state;
    yd_addr a;
    assert_int_equal(yd_addr_parse(NULL, &a), -EINVAL);
    assert_int_equal(yd_addr_parse("127.0.0.1:80", NULL), -EINVAL);
}

static void test_addr_unbracketed_ipv6_is_einval(void **state)
{
    (void)state;
    assert_rejected("::1:80");
    assert_rejected("::1");
    assert_rejected("tcp://::1:80");
    assert_rejected("2001:db8::1:443");
}

static void test_addr_empty_brackets_is_einval(void **state)
{
    (void)state;
    assert_rejected("[]:80");
}

static void test_addr_bracketed_ipv4_is_einval(void **state)
{
    (void)state;
    assert_rejected("[127.0.0.1]:80");
}

static void test_addr_bad_brackets_are_einval(void **state)
{
    (void)state;
    assert_rejected("[::1:80");
    assert_rejected("::1]:80");
    assert_rejected("[::1]80");
    assert_rejected("[[::1]]:80");
    assert_rejected("[::1]x:80");
    assert_rejected("[::g]:80");
    assert_rejected("[fe80::1%]:80");
    assert_rejected("[fe80::1% x]:80");
}

static void test_addr_host_with_bad_characters_is_einval(void **state)
{
    (void)state;
    assert_rejected(" 127.0.0.1:80");
    assert_rejected("local host:80");
    assert_rejected("host/x:80");
    assert_rejected("user@host:80");
    assert_rejected("host\t:80");
}

static void test_addr_unknown_scheme_is_einval(void **state)
{
    (void)state;
    assert_rejected("http://127.0.0.1:80");
    assert_rejected("sctp://127.0.0.1:80");
    assert_rejected("TCP://127.0.0.1:80");
    assert_rejected("udp:127.0.0.1:80");
    assert_rejected("tcp:/127.0.0.1:80");
}

static void test_addr_host_of_255_bytes_fits(void **state)
{
    (void)state;
    char text[255 + 4 + 1];
    memset(text, 'h', 255);
    memcpy(text + 255, ":80", 4);
    yd_addr a = parse_ok(text);
    assert_int_equal(strlen(a.host), 255);
    assert_int_equal(a.port, 80);
}

static void test_addr_host_of_256_bytes_is_einval(void **state)
{
    (void)state;
    char text[256 + 4 + 1];
    memset(text, 'h', 256);
    memcpy(text + 256, ":80", 4);
    assert_rejected(text);
}

static void test_addr_failed_parse_leaves_out_untouched(void **state)
{
    (void)state;
    yd_addr before = parse_ok("udp://[::1]:53");
    yd_addr after = before;
    assert_int_equal(yd_addr_parse("tcp://[::1]:65536", &after), -EINVAL);
    assert_memory_equal(&before, &after, sizeof before);
}

static void test_addr_format_reads_back_to_the_same_address(void **state)
{
    (void)state;
    const char *forms[] = {"127.0.0.1:8888", "udp://[::1]:0", "unix:/tmp/y.sock", "unix:////x",
                           "tcp://localhost:65535"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        yd_addr a, b;
        char text[400];
        assert_int_equal(yd_addr_parse(forms[i], &a), 0);
        assert_true(yd_addr_format(&a, text, sizeof text) > 0);
        assert_int_equal(yd_addr_parse(text, &b), 0);
        assert_int_equal(a.transport, b.transport);
        assert_string_equal(a.host, b.host);
        assert_int_equal(a.port, b.port);
        assert_string_equal(a.path, b.path);
    }
}

static void test_addr_format_too_small_is_enobufs(void **state)
{
    (void)state;
    yd_addr a;
    char text[8];
    assert_int_equal(yd_addr_parse("127.0.0.1:8888", &a), 0);
    assert_int_equal(yd_addr_format(&a, text, sizeof text), -ENOBUFS);
}

/* ---- Guard page: no byte past the string's NUL is ever read ----------------------------- */

/* Every prefix of text, as a string ending at a guard page, parses as it does in ordinary
 * memory: the same result, the same fields; a read past the NUL faults. */
static void assert_prefixes_stay_within(struct guard *g, const char *text)
{
    char copy[512];
    size_t len = strlen(text);
    assert_true(len < sizeof copy);
    for (size_t n = 0; n <= len; n++) {
        memcpy(copy, text, n);
        copy[n] = '\0';
        yd_addr want, got;
        memset(&want, 0, sizeof want);
        memset(&got, 0, sizeof got);
        int rc_want = yd_addr_parse(copy, &want);
        int rc_got = yd_addr_parse(guard_string(g, text, n), &got);
        if (rc_got != rc_want)
            fail_msg("'%s' gave %d at a guard page, %d elsewhere", copy, rc_got, rc_want);
        if (rc_got == 0) {
            assert_int_equal(got.transport, want.transport);
            assert_string_equal(got.host, want.host);
            assert_int_equal(got.port, want.port);
            assert_string_equal(got.path, want.path);
        }
    }
}

static void test_addr_parse_never_reads_past_the_end_of_its_string(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "127.0.0.1:8888",
        "tcp://localhost:7",
        "udp://127.0.0.1:9999",
        "[::1]:80",
        "udp://[::1]:65535",
        "[fe80::1%eth0]:80",
        "[127.0.0.1]:80",
        "[::1]",
        "[::1]x80",
        "unix:/tmp/yodel.sock",
        "unix:",
        "tcp://unix:/x",
        "host:65536",
        "host:00080",
        ":80",
        "host:",
        "tcp:/host:1",
        "udp://",
        "[%eth0]:1",
        "[::1%]:1",
    };
    struct guard g;
    guard_open(&g);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_prefixes_stay_within(&g, texts[i]);
    guard_close(&g);
}

static void test_addr_parse_of_the_longest_host_and_path_never_reads_past_the_end(void **state)
{
    (void)state;
    char text[400];
    struct guard g;
    guard_open(&g);
    /* A host of 255 and 256 bytes (the field holds 255), a path of 107 and 108 (it holds 107). */
    for (size_t host = 255; host <= 256; host++) {
        memset(text, 'h', host);
        memcpy(text + host, ":1", 3);
        assert_prefixes_stay_within(&g, text);
    }
    for (size_t path = 107; path <= 108; path++) {
        memcpy(text, "unix:", 5);
        memset(text + 5, 'p', path);
        text[5 + path] = '\0';
        assert_prefixes_stay_within(&g, text);
    }
    guard_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_host_port_is_tcp),
        cmocka_unit_test(test_addr_tcp_scheme_is_tcp),
        cmocka_unit_test(test_addr_udp_scheme_is_udp),
        cmocka_unit_test(test_addr_host_name_with_dash_dot_underscore),
        cmocka_unit_test(test_addr_bracketed_ipv6_strips_brackets),
        cmocka_unit_test(test_addr_tcp_bracketed_ipv6_strips_brackets),
        cmocka_unit_test(test_addr_udp_bracketed_ipv6_strips_brackets),
        cmocka_unit_test(test_addr_ipv6_with_embedded_ipv4),
        cmocka_unit_test(test_addr_ipv6_with_zone),
        cmocka_unit_test(test_addr_unix_path),
        cmocka_unit_test(test_addr_unix_double_slash_form),
        cmocka_unit_test(test_addr_unix_double_slash_is_stripped_once),
        cmocka_unit_test(test_addr_format_reads_back_to_the_same_address),
        cmocka_unit_test(test_addr_format_too_small_is_enobufs),
        cmocka_unit_test(test_addr_unix_relative_path),
        cmocka_unit_test(test_addr_unix_path_of_107_bytes_fits),
        cmocka_unit_test(test_addr_unix_path_of_108_bytes_is_einval),
        cmocka_unit_test(test_addr_unix_empty_path_is_einval),
        cmocka_unit_test(test_addr_port_0_takes_ephemeral),
        cmocka_unit_test(test_addr_port_65535_is_accepted),
        cmocka_unit_test(test_addr_port_65536_is_einval),
        cmocka_unit_test(test_addr_port_with_many_digits_is_einval),
        cmocka_unit_test(test_addr_port_leading_zeros_are_decimal),
        cmocka_unit_test(test_addr_port_not_decimal_is_einval),
        cmocka_unit_test(test_addr_missing_port_is_einval),
        cmocka_unit_test(test_addr_bare_port_is_einval),
        cmocka_unit_test(test_addr_empty_is_einval),
        cmocka_unit_test(test_addr_null_is_einval),
        cmocka_unit_test(test_addr_unbracketed_ipv6_is_einval),
        cmocka_unit_test(test_addr_empty_brackets_is_einval),
        cmocka_unit_test(test_addr_bracketed_ipv4_is_einval),
        cmocka_unit_test(test_addr_bad_brackets_are_einval),
        cmocka_unit_test(test_addr_host_with_bad_characters_is_einval),
        cmocka_unit_test(test_addr_unknown_scheme_is_einval),
        cmocka_unit_test(test_addr_host_of_255_bytes_fits),
        cmocka_unit_test(test_addr_host_of_256_bytes_is_einval),
        cmocka_unit_test(test_addr_failed_parse_leaves_out_untouched),
        cmocka_unit_test(test_addr_parse_never_reads_past_the_end_of_its_string),
        cmocka_unit_test(test_addr_parse_of_the_longest_host_and_path_never_reads_past_the_end),
    };
    return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
