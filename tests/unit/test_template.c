/* yd_template_check and yd_template_expand: --banner and --prefix of yodel serve. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "guard.h"

#include "yodel.h"

#define OUT_BYTES 256

static const char *fake_env(const char *name, void *data)
{
    (void)data;
    if (strcmp(name, "POD_NAME") == 0)
        return "pod-a";
    if (strcmp(name, "BRACES") == 0)
        return "{x}\\";
    return NULL;
}

static const yd_template_values values = {
    .hostname = "host1",
    .peer = "127.0.0.1:50312",
    .local = "127.0.0.1:8888",
    .listener = "tcp://127.0.0.1:8888",
    .proxy = "203.0.113.7:51234",
    .tls_subject = "CN=client,O=yodel",
    .pid = 4242,
    .env = fake_env,
};

/* Expands tmpl with values; fails the test unless it succeeds. */
static const char *expand(const char *tmpl, const yd_template_values *v)
{
    static char out[OUT_BYTES];
    int n = yd_template_expand(tmpl, v, out, sizeof out);
    if (n < 0)
        fail_msg("'%s' gave %d", tmpl, n);
    assert_int_equal((size_t)n, strlen(out));
    return out;
}

/* Checks that tmpl is refused, by both functions, with err naming what. */
static void assert_bad(const char *tmpl, const char *what)
{
    char err[128];
    int rc = yd_template_check(tmpl, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("'%s' gave %d, expected -EINVAL", tmpl, rc);
    if (strstr(err, what) == NULL)
        fail_msg("'%s': the error '%s' does not say '%s'", tmpl, err, what);
    char out[OUT_BYTES];
    assert_int_equal(yd_template_expand(tmpl, &values, out, sizeof out), -EINVAL);
}

static void test_plain_text_is_itself_and_uses_no_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("hello, world: ", NULL, 0), 0);
    assert_string_equal(expand("hello, world: ", &values), "hello, world: ");
}

static void test_empty_template_expands_to_nothing(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("", NULL, 0), 0);
    assert_string_equal(expand("", &values), "");
}

static void test_hostname_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{hostname}", NULL, 0), YD_TEMPLATE_HOSTNAME);
    assert_string_equal(expand("from {hostname}", &values), "from host1");
}

static void test_peer_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{peer}", NULL, 0), YD_TEMPLATE_PEER);
    assert_string_equal(expand("{peer}: ", &values), "127.0.0.1:50312: ");
}

static void test_local_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{local}", NULL, 0), YD_TEMPLATE_LOCAL);
    assert_string_equal(expand("[{local}]", &values), "[127.0.0.1:8888]");
}

static void test_listener_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{listener}", NULL, 0), YD_TEMPLATE_LISTENER);
    assert_string_equal(expand("{listener}", &values), "tcp://127.0.0.1:8888");
}

static void test_pid_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{pid}", NULL, 0), YD_TEMPLATE_PID);
    assert_string_equal(expand("pid {pid}", &values), "pid 4242");
}

static void test_proxy_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{proxy}", NULL, 0), YD_TEMPLATE_PROXY);
    assert_string_equal(expand("via {proxy}", &values), "via 203.0.113.7:51234");
}

static void test_tls_subject_field(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{tls_subject}", NULL, 0), YD_TEMPLATE_TLS_SUBJECT);
    assert_string_equal(expand("{tls_subject}", &values), "CN=client,O=yodel");
}

static void test_env_field_is_the_variable(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{env:POD_NAME}", NULL, 0), YD_TEMPLATE_ENV);
    assert_string_equal(expand("{env:POD_NAME}: ", &values), "pod-a: ");
}

static void test_env_field_unset_is_empty(void **state)
{
    (void)state;
    assert_string_equal(expand("<{env:NOT_SET}>", &values), "<>");
}

static void test_env_field_without_lookup_is_empty(void **state)
{
    (void)state;
    yd_template_values v = values;
    v.env = NULL;
    assert_string_equal(expand("<{env:POD_NAME}>", &v), "<>");
}

static void test_env_name_may_have_digits_and_underscores_after_the_first(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{env:_A1_b2}", NULL, 0), YD_TEMPLATE_ENV);
}

static void test_null_values_expand_to_nothing(void **state)
{
    (void)state;
    yd_template_values none = {0};
    assert_string_equal(expand("<{hostname}{peer}{local}{listener}{proxy}{tls_subject}>", &none),
                        "<>");
}

static void test_check_returns_every_field_used(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{peer} {pid} {peer} {env:X}", NULL, 0),
                     YD_TEMPLATE_PEER | YD_TEMPLATE_PID | YD_TEMPLATE_ENV);
}

static void test_escapes_are_newline_return_tab_backslash(void **state)
{
    (void)state;
    assert_string_equal(expand("a\\nb\\rc\\td\\\\e", &values), "a\nb\rc\td\\e");
}

static void test_doubled_braces_are_literal_braces(void **state)
{
    (void)state;
    assert_int_equal(yd_template_check("{{peer}}", NULL, 0), 0);
    assert_string_equal(expand("{{peer}} {{}}", &values), "{peer} {}");
}

static void test_values_are_not_read_as_templates(void **state)
{
    (void)state;
    assert_string_equal(expand("{env:BRACES}", &values), "{x}\\");
}

static void test_other_bytes_are_themselves(void **state)
{
    (void)state;
    assert_string_equal(expand("tab\there\n\x01\xff", &values), "tab\there\n\x01\xff");
}

static void test_unknown_field_is_named(void **state)
{
    (void)state;
    assert_bad("{hostnme} {peer}", "unknown field {hostnme}");
}

static void test_field_names_are_case_sensitive(void **state)
{
    (void)state;
    assert_bad("{Peer}", "unknown field {Peer}");
}

static void test_unterminated_field_is_named(void **state)
{
    (void)state;
    assert_bad("ok {peer", "unterminated {peer");
}

static void test_lone_open_brace_at_end_is_unterminated(void **state)
{
    (void)state;
    assert_bad("abc {", "unterminated {");
}

static void test_lone_closing_brace_is_refused(void **state)
{
    (void)state;
    assert_bad("a } b", "lone }");
}

static void test_empty_field_is_refused(void **state)
{
    (void)state;
    assert_bad("{}", "empty field {}");
}

static void test_unknown_escape_is_named(void **state)
{
    (void)state;
    assert_bad("a\\qb", "unknown escape \\q");
}

static void test_backslash_at_the_end_is_refused(void **state)
{
    (void)state;
    assert_bad("abc\\", "\\ at the end");
}

static void test_env_without_a_name_is_refused(void **state)
{
    (void)state;
    assert_bad("{env:}", "bad variable name in {env:}");
}

static void test_env_name_starting_with_a_digit_is_refused(void **state)
{
    (void)state;
    assert_bad("{env:1X}", "bad variable name in {env:1X}");
}

static void test_env_name_with_a_dash_is_refused(void **state)
{
    (void)state;
    assert_bad("{env:POD-NAME}", "bad variable name in {env:POD-NAME}");
}

static void test_env_name_too_long_is_refused(void **state)
{
    (void)state;
    char tmpl[YD_TEMPLATE_ENV_NAME_MAX + 16];
    int n = snprintf(tmpl, sizeof tmpl, "{env:");
    memset(tmpl + n, 'A', YD_TEMPLATE_ENV_NAME_MAX + 1);
    strcpy(tmpl + n + YD_TEMPLATE_ENV_NAME_MAX + 1, "}");
    assert_bad(tmpl, "variable name too long");
    tmpl[n + YD_TEMPLATE_ENV_NAME_MAX] = '}'; /* exactly the limit */
    tmpl[n + YD_TEMPLATE_ENV_NAME_MAX + 1] = '\0';
    assert_int_equal(yd_template_check(tmpl, NULL, 0), YD_TEMPLATE_ENV);
    assert_string_equal(expand(tmpl, &values), "");
}

static void test_long_bad_field_is_cut_in_the_error(void **state)
{
    (void)state;
    char tmpl[300], err[128];
    memset(tmpl, 'x', sizeof tmpl);
    tmpl[0] = '{';
    tmpl[sizeof tmpl - 2] = '}';
    tmpl[sizeof tmpl - 1] = '\0';
    assert_int_equal(yd_template_check(tmpl, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "unknown field {xxx"));
    assert_non_null(strstr(err, "...}"));
    assert_true(strlen(err) < 80);
}

static void test_error_text_fits_a_tiny_buffer(void **state)
{
    (void)state;
    char err[4] = "zzz";
    assert_int_equal(yd_template_check("{nope}", err, sizeof err), -EINVAL);
    assert_string_equal(err, "unk");
    assert_int_equal(yd_template_check("{nope}", err, 0), -EINVAL);
    assert_int_equal(yd_template_check("{nope}", NULL, 0), -EINVAL);
}

static void test_error_text_is_empty_for_a_good_template(void **state)
{
    (void)state;
    char err[32] = "stale";
    assert_int_equal(yd_template_check("{peer}", err, sizeof err), YD_TEMPLATE_PEER);
    assert_string_equal(err, "");
}

static void test_null_template_is_einval(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(yd_template_check(NULL, NULL, 0), -EINVAL);
    assert_int_equal(yd_template_expand(NULL, &values, out, sizeof out), -EINVAL);
    assert_int_equal(yd_template_expand("x", NULL, out, sizeof out), -EINVAL);
    assert_int_equal(yd_template_expand("x", &values, NULL, 8), -EINVAL);
    assert_int_equal(yd_template_expand("x", &values, out, 0), -EINVAL);
}

static void test_expansion_that_fits_exactly_is_whole(void **state)
{
    (void)state;
    char out[6];
    assert_int_equal(yd_template_expand("{pid}:", &values, out, sizeof out), 5);
    assert_string_equal(out, "4242:");
}

static void test_expansion_one_byte_too_long_is_cut_and_enobufs(void **state)
{
    (void)state;
    char out[5];
    assert_int_equal(yd_template_expand("{pid}:", &values, out, sizeof out), -ENOBUFS);
    assert_string_equal(out, "4242");
}

static void test_expansion_into_one_byte_is_the_empty_string(void **state)
{
    (void)state;
    char out[1] = {'z'};
    assert_int_equal(yd_template_expand("a", &values, out, sizeof out), -ENOBUFS);
    assert_string_equal(out, "");
    assert_int_equal(yd_template_expand("", &values, out, sizeof out), 0);
}

static void test_bad_template_is_einval_even_when_the_buffer_is_full(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(yd_template_expand("abcdef {nope}", &values, out, sizeof out), -EINVAL);
}

static void test_kept_fields_stay_as_they_are(void **state)
{
    (void)state;
    yd_template_values v = values;
    v.keep = YD_TEMPLATE_PEER | YD_TEMPLATE_ENV;
    assert_string_equal(expand("{hostname} {peer} {env:POD_NAME}", &v),
                        "host1 {peer} {env:POD_NAME}");
}

static void test_keeping_writes_the_rest_as_template_text(void **state)
{
    (void)state;
    yd_template_values v = values;
    v.keep = YD_TEMPLATE_PEER;
    v.hostname = "h{o}s\\t";
    assert_string_equal(expand("{{{hostname}}}\\\\ {peer}\\n", &v),
                        "{{h{{o}}s\\\\t}}\\\\ {peer}\n");
}

/* What a server does: the fields that never change first, the others per connection. */
static void test_expanding_in_two_steps_is_expanding_at_once(void **state)
{
    (void)state;
    static const char *const templates[] = {
        "{hostname} {peer}: ",
        "{{{env:BRACES}}} \\\\{peer}\\n{local}{listener}{proxy}{tls_subject}{pid}",
        "{env:POD_NAME}/{env:NOT_SET}/{peer}}}",
        "plain",
    };
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        char whole[OUT_BYTES], partial[OUT_BYTES], twice[OUT_BYTES];
        assert_true(yd_template_expand(templates[i], &values, whole, sizeof whole) >= 0);
        yd_template_values start = {.hostname = values.hostname,
                                    .pid = values.pid,
                                    .env = fake_env,
                                    .keep = YD_TEMPLATE_PEER | YD_TEMPLATE_LOCAL |
                                            YD_TEMPLATE_LISTENER | YD_TEMPLATE_PROXY |
                                            YD_TEMPLATE_TLS_SUBJECT};
        assert_true(yd_template_expand(templates[i], &start, partial, sizeof partial) >= 0);
        yd_template_values conn = values;
        conn.hostname = "wrong";
        conn.env = NULL;
        conn.pid = 1;
        assert_true(yd_template_expand(partial, &conn, twice, sizeof twice) >= 0);
        if (strcmp(whole, twice) != 0)
            fail_msg("'%s': '%s' at once, '%s' in two steps (via '%s')", templates[i], whole, twice,
                     partial);
    }
}

static void test_kept_output_cut_at_the_limit_is_still_a_template(void **state)
{
    (void)state;
    yd_template_values v = values;
    v.keep = YD_TEMPLATE_PEER;
    const char *tmpl = "{{{{{peer}}}\\\\";
    for (size_t len = 1; len < 24; len++) {
        char out[24];
        int n = yd_template_expand(tmpl, &v, out, len);
        assert_true(n == -ENOBUFS || n >= 0);
        if (yd_template_check(out, NULL, 0) < 0)
            fail_msg("cut at %zu bytes: '%s' is no template", len, out);
    }
}

/* Every prefix of each template, placed so that its NUL is the last byte before a PROT_NONE
 * page: a read past the NUL faults. */
static void test_check_and_expand_never_read_past_the_end_of_the_template(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{hostname} {peer}: ",  "{{x}}\\n\\\\", "{env:POD_NAME}", "{env:", "a\\", "{", "}",
        "{tls_subject}{proxy}",
    };
    struct guard g;
    guard_open(&g);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t len = strlen(texts[i]);
        for (size_t n = 0; n <= len; n++) {
            char copy[64], a[OUT_BYTES], b[OUT_BYTES];
            memcpy(copy, texts[i], n);
            copy[n] = '\0';
            const char *placed = guard_string(&g, texts[i], n);
            assert_int_equal(yd_template_check(placed, NULL, 0), yd_template_check(copy, NULL, 0));
            int ra = yd_template_expand(placed, &values, a, sizeof a);
            int rb = yd_template_expand(copy, &values, b, sizeof b);
            assert_int_equal(ra, rb);
            assert_string_equal(a, b);
        }
    }
    guard_close(&g);
}

/* The output buffer ends at the guard page: a write past len faults. */
static void test_expand_never_writes_past_its_buffer(void **state)
{
    (void)state;
    struct guard g;
    guard_open(&g);
    for (size_t len = 1; len <= 40; len++) {
        char *out = (char *)guard_end(&g) - len;
        yd_template_values v = values;
        int n = yd_template_expand("{hostname}-{peer}-{{}}\\n{env:POD_NAME}", &v, out, len);
        assert_true(n == -ENOBUFS || (n >= 0 && (size_t)n < len));
        assert_true(strlen(out) < len);
        v.keep = YD_TEMPLATE_PEER;
        n = yd_template_expand("{hostname}-{peer}-{{}}\\n{env:BRACES}", &v, out, len);
        assert_true(n == -ENOBUFS || (n >= 0 && (size_t)n < len));
    }
    guard_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_is_itself_and_uses_no_field),
        cmocka_unit_test(test_empty_template_expands_to_nothing),
        cmocka_unit_test(test_hostname_field),
        cmocka_unit_test(test_peer_field),
        cmocka_unit_test(test_local_field),
        cmocka_unit_test(test_listener_field),
        cmocka_unit_test(test_pid_field),
        cmocka_unit_test(test_proxy_field),
        cmocka_unit_test(test_tls_subject_field),
        cmocka_unit_test(test_env_field_is_the_variable),
        cmocka_unit_test(test_env_field_unset_is_empty),
        cmocka_unit_test(test_env_field_without_lookup_is_empty),
        cmocka_unit_test(test_env_name_may_have_digits_and_underscores_after_the_first),
        cmocka_unit_test(test_null_values_expand_to_nothing),
        cmocka_unit_test(test_check_returns_every_field_used),
        cmocka_unit_test(test_escapes_are_newline_return_tab_backslash),
        cmocka_unit_test(test_doubled_braces_are_literal_braces),
        cmocka_unit_test(test_values_are_not_read_as_templates),
        cmocka_unit_test(test_other_bytes_are_themselves),
        cmocka_unit_test(test_unknown_field_is_named),
        cmocka_unit_test(test_field_names_are_case_sensitive),
        cmocka_unit_test(test_unterminated_field_is_named),
        cmocka_unit_test(test_lone_open_brace_at_end_is_unterminated),
        cmocka_unit_test(test_lone_closing_brace_is_refused),
        cmocka_unit_test(test_empty_field_is_refused),
        cmocka_unit_test(test_unknown_escape_is_named),
        cmocka_unit_test(test_backslash_at_the_end_is_refused),
        cmocka_unit_test(test_env_without_a_name_is_refused),
        cmocka_unit_test(test_env_name_starting_with_a_digit_is_refused),
        cmocka_unit_test(test_env_name_with_a_dash_is_refused),
        cmocka_unit_test(test_env_name_too_long_is_refused),
        cmocka_unit_test(test_long_bad_field_is_cut_in_the_error),
        cmocka_unit_test(test_error_text_fits_a_tiny_buffer),
        cmocka_unit_test(test_error_text_is_empty_for_a_good_template),
        cmocka_unit_test(test_null_template_is_einval),
        cmocka_unit_test(test_expansion_that_fits_exactly_is_whole),
        cmocka_unit_test(test_expansion_one_byte_too_long_is_cut_and_enobufs),
        cmocka_unit_test(test_expansion_into_one_byte_is_the_empty_string),
        cmocka_unit_test(test_bad_template_is_einval_even_when_the_buffer_is_full),
        cmocka_unit_test(test_kept_fields_stay_as_they_are),
        cmocka_unit_test(test_keeping_writes_the_rest_as_template_text),
        cmocka_unit_test(test_expanding_in_two_steps_is_expanding_at_once),
        cmocka_unit_test(test_kept_output_cut_at_the_limit_is_still_a_template),
        cmocka_unit_test(test_check_and_expand_never_read_past_the_end_of_the_template),
        cmocka_unit_test(test_expand_never_writes_past_its_buffer),
    };
    return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
