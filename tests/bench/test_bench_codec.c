/* yodel bench's message codec and JSON strings: pure functions, checked byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench_codec.h"
#include "bench_json.h"

static void test_template_ends_in_its_only_newline(void **state)
{
    (void)state;
    size_t sizes[] = {2, 3, 12, 13, 20, 21, 64, 4096};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char *msg = malloc(sizes[k]);
        assert_non_null(msg);
        codec_fill_template(msg, sizes[k], 0xabcdef);
        assert_int_equal(msg[sizes[k] - 1], '\n');
        assert_null(memchr(msg, '\n', sizes[k] - 1));
        free(msg);
    }
}

static void test_sequence_number_reads_back_after_put(void **state)
{
    (void)state;
    char msg[64];
    codec_fill_template(msg, sizeof msg, 7);
    codec_put_seq(msg, sizeof msg, 0x123456789aULL);
    uint64_t seq;
    assert_int_equal(codec_get_seq(msg, sizeof msg, &seq), 0);
    assert_int_equal(seq, 0x123456789aULL);
}

static void test_short_messages_carry_the_low_digits_of_the_sequence_number(void **state)
{
    (void)state;
    char msg[8]; /* 7 header bytes: 7 hex digits */
    assert_int_equal(codec_seq_digits(sizeof msg), 7);
    assert_int_equal(codec_seq_mask(sizeof msg), 0xfffffff);
    codec_fill_template(msg, sizeof msg, 1);
    uint64_t seq;
    for (uint64_t s = 0; s < 40; s++) {
        codec_put_seq(msg, sizeof msg, s);
        assert_int_equal(codec_get_seq(msg, sizeof msg, &seq), 0);
        assert_int_equal(seq, s);
    }
    char tiny[2];
    codec_fill_template(tiny, sizeof tiny, 1);
    codec_put_seq(tiny, sizeof tiny, 0x1b);
    assert_int_equal(tiny[0], 'b');
}

static void test_header_that_is_not_hex_does_not_read(void **state)
{
    (void)state;
    uint64_t seq;
    assert_int_equal(codec_get_seq("HTTP/1.1 400 Bad Request\r\n", 26, &seq), -1);
}

static void test_echo_split_anywhere_matches_piece_by_piece(void **state)
{
    (void)state;
    char tmpl[40], echo[40];
    codec_fill_template(tmpl, sizeof tmpl, 3);
    codec_put_seq(tmpl, sizeof tmpl, 99); /* the template's own digits do not matter */
    memcpy(echo, tmpl, sizeof echo);
    codec_put_seq(echo, sizeof echo, 5);
    for (size_t cut = 0; cut <= sizeof echo; cut++) {
        assert_true(codec_piece_matches(tmpl, sizeof tmpl, 5, 0, echo, cut));
        assert_true(codec_piece_matches(tmpl, sizeof tmpl, 5, cut, echo + cut, sizeof echo - cut));
    }
    assert_false(codec_piece_matches(tmpl, sizeof tmpl, 6, 0, echo, sizeof echo));
}

static void test_one_wrong_byte_anywhere_is_a_mismatch(void **state)
{
    (void)state;
    char tmpl[30], echo[30];
    codec_fill_template(tmpl, sizeof tmpl, 3);
    for (size_t i = 0; i < sizeof echo; i++) {
        memcpy(echo, tmpl, sizeof echo);
        codec_put_seq(echo, sizeof echo, 1);
        echo[i] ^= 0x20;
        assert_false(codec_piece_matches(tmpl, sizeof tmpl, 1, 0, echo, sizeof echo));
        /* The same byte seen in a piece of its own. */
        assert_false(codec_piece_matches(tmpl, sizeof tmpl, 1, i, echo + i, 1));
    }
}

/* json_string into a string, through a memory stream. */
static char *json(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    json_string(f, s);
    fclose(f);
    return buf;
}

static void assert_json(const char *in, const char *want)
{
    char *got = json(in);
    assert_string_equal(got, want);
    free(got);
}

static void test_json_string_escapes_quote_backslash_and_controls(void **state)
{
    (void)state;
    assert_json("unix:/tmp/q\"b\\c", "\"unix:/tmp/q\\\"b\\\\c\"");
    assert_json("a\nb\tc\x01\x7f", "\"a\\nb\\u0009c\\u0001\\u007f\"");
    assert_json("", "\"\"");
}

static void test_json_string_keeps_utf8_and_escapes_other_bytes(void **state)
{
    (void)state;
    assert_json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    assert_json("\xff", "\"\\u00ff\"");
    assert_json("\xc3", "\"\\u00c3\"");                                  /* cut short by the end */
    assert_json("\xc0\xaf", "\"\\u00c0\\u00af\"");                       /* overlong '/' */
    assert_json("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"");            /* a UTF-16 surrogate */
    assert_json("\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""); /* past U+10FFFF */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_ends_in_its_only_newline),
        cmocka_unit_test(test_sequence_number_reads_back_after_put),
        cmocka_unit_test(test_short_messages_carry_the_low_digits_of_the_sequence_number),
        cmocka_unit_test(test_header_that_is_not_hex_does_not_read),
        cmocka_unit_test(test_echo_split_anywhere_matches_piece_by_piece),
        cmocka_unit_test(test_one_wrong_byte_anywhere_is_a_mismatch),
        cmocka_unit_test(test_json_string_escapes_quote_backslash_and_controls),
        cmocka_unit_test(test_json_string_keeps_utf8_and_escapes_other_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
