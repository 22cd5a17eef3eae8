/* yd_frame_line and yd_ascii_upper: the line rules of the line and upper modes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guard.h"

#include "yodel.h"

#define LINE(s) (s), (sizeof(s) - 1)

static void test_line_is_returned_with_its_newline(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("hello\n"), 64), 6);
}

static void test_line_only_first_of_several_is_returned(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("ab\ncd\nef\n"), 64), 3);
}

static void test_line_empty_line_is_one_byte(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("\nrest"), 64), 1);
}

static void test_line_without_newline_needs_more(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("partial"), 64), 0);
}

static void test_line_empty_buffer_needs_more(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line("", 0, 64), 0);
}

static void test_line_carriage_return_is_kept_in_line(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("hi\r\n"), 64), 4);
}

static void test_line_nul_bytes_do_not_end_a_line(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("a\0b\n"), 64), 4);
}

static void test_line_of_exactly_max_line_is_accepted(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("1234567\n"), 8), 8);
}

static void test_line_of_exactly_max_line_then_more_is_accepted(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("1234567\nxyz"), 8), 8);
}

static void test_line_one_longer_than_limit_is_emsgsize(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("12345678\n"), 8), -EMSGSIZE);
}

static void test_line_longer_than_limit_is_emsgsize(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("this line is far too long\n"), 8), -EMSGSIZE);
}

static void test_line_unterminated_longer_than_limit_is_emsgsize(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("123456789"), 8), -EMSGSIZE);
}

static void test_line_unterminated_of_max_line_bytes_needs_more(void **state)
{
    (void)state;
    /* At EOF these 8 bytes are a last line within the limit; only a 9th byte decides. */
    assert_int_equal(yd_frame_line(LINE("12345678"), 8), 0);
}

static void test_line_unterminated_one_below_max_line_needs_more(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("1234567"), 8), 0);
}

static void test_line_max_line_one_accepts_only_bare_newline(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line(LINE("\n"), 1), 1);
    assert_int_equal(yd_frame_line(LINE("a"), 1), 0);
    assert_int_equal(yd_frame_line(LINE("a\n"), 1), -EMSGSIZE);
}

static void test_line_max_line_zero_refuses_any_byte(void **state)
{
    (void)state;
    assert_int_equal(yd_frame_line("", 0, 0), 0);
    assert_int_equal(yd_frame_line(LINE("\n"), 0), -EMSGSIZE);
}

static void test_line_reads_at_most_max_line_bytes(void **state)
{
    (void)state;
    /* Exactly max_line bytes are allocated while len claims far more: under ASan, looking
     * past max_line is a heap-buffer-overflow, not just a wrong answer. */
    char *buf = malloc(16);
    assert_non_null(buf);
    memset(buf, 'x', 16);
    assert_int_equal(yd_frame_line(buf, SIZE_MAX / 2, 16), -EMSGSIZE);
    buf[15] = '\n';
    assert_int_equal(yd_frame_line(buf, SIZE_MAX / 2, 16), 16);
    free(buf);
}

static void test_line_stream_split_across_calls(void **state)
{
    (void)state;
    /* What a reader does: buffer what arrived, ask again when more comes. */
    char buf[32];
    size_t len = 0;
    memcpy(buf, "hel", 3);
    len += 3;
    assert_int_equal(yd_frame_line(buf, len, 16), 0);
    memcpy(buf + len, "lo\nwor", 6);
    len += 6;
    assert_int_equal(yd_frame_line(buf, len, 16), 6);
    memmove(buf, buf + 6, len - 6);
    len -= 6;
    assert_int_equal(yd_frame_line(buf, len, 16), 0);
    memcpy(buf + len, "ld\n", 3);
    len += 3;
    assert_int_equal(yd_frame_line(buf, len, 16), 6);
    assert_memory_equal(buf, "world\n", 6);
}

static void test_upper_changes_only_ascii_lowercase_letters(void **state)
{
    (void)state;
    const char in[] = "Hello, World! az AZ 09 `{ @[\n";
    char out[sizeof in];
    yd_ascii_upper(out, in, sizeof in);
    assert_memory_equal(out, "HELLO, WORLD! AZ AZ 09 `{ @[\n", sizeof in);
}

static void test_upper_in_place(void **state)
{
    (void)state;
    char buf[] = "yell\n";
    yd_ascii_upper(buf, buf, sizeof buf - 1);
    assert_string_equal(buf, "YELL\n");
}

static void test_upper_leaves_non_ascii_bytes_alone(void **state)
{
    (void)state;
    /* UTF-8 "é" and Latin-1 bytes must pass through whatever the locale says. */
    const char in[] = "caf\xc3\xa9 \xe9\xff\x80\0z";
    char out[sizeof in];
    yd_ascii_upper(out, in, sizeof in);
    assert_memory_equal(out, "CAF\xc3\xa9 \xe9\xff\x80\0Z", sizeof in);
}

static void test_upper_every_byte_value(void **state)
{
    (void)state;
    char in[256], out[256];
    for (int i = 0; i < 256; i++)
        in[i] = (char)i;
    yd_ascii_upper(out, in, sizeof in);
    for (int i = 0; i < 256; i++) {
        int want = (i >= 'a' && i <= 'z') ? i - 'a' + 'A' : i;
        assert_int_equal((unsigned char)out[i], want);
    }
}

static void test_upper_zero_bytes_writes_nothing(void **state)
{
    (void)state;
    char out[1] = {'q'};
    yd_ascii_upper(out, "a", 0);
    assert_int_equal(out[0], 'q');
}

/* ---- Guard page: no byte past buf + len is ever read ----------------------------------- */

/* What yd.h promises: the first line's length with its '\n', 0 when there is no '\n' and
 * len <= max_line, -EMSGSIZE when the line is (or must become) longer than max_line. */
static long frame_line_model(const char *buf, size_t len, size_t max_line)
{
    const char *nl = len > 0 ? memchr(buf, '\n', len) : NULL;
    if (nl != NULL)
        return (size_t)(nl - buf) + 1 <= max_line ? (long)(nl - buf) + 1 : -EMSGSIZE;
    return len <= max_line ? 0 : -EMSGSIZE;
}

static void test_frame_line_never_reads_past_the_end_of_its_buffer(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "hello\n",
        "ab\ncd\nef\n",
        "no newline at all",
        "\n",
        "\n\n",
        "x\r\n",
        "a\0b\nc",
        "a line of some length that is longer than sixty-four bytes, to pass the default\n",
    };
    static const size_t text_lens[] = {6, 9, 17, 1, 2, 3, 6, 81};
    struct guard g;
    guard_open(&g);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (size_t len = 0; len <= text_lens[i]; len++) {
            const char *buf = guard_place(&g, texts[i], len);
            assert_ptr_equal(buf + len, guard_end(&g));
            const size_t maxes[] = {0, 1, len > 0 ? len - 1 : 0, len, len + 1, 64, SIZE_MAX};
            for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
                long got = yd_frame_line(buf, len, maxes[m]);
                long want = frame_line_model(texts[i], len, maxes[m]);
                if (got != want)
                    fail_msg("text %zu, len %zu, max %zu: %ld, expected %ld", i, len, maxes[m], got,
                             want);
            }
        }
    }
    guard_close(&g);
}

static void test_frame_line_of_a_full_page_without_newline_never_reads_past_it(void **state)
{
    (void)state;
    struct guard g;
    guard_open(&g);
    char *page = malloc(g.page);
    assert_non_null(page);
    memset(page, 'x', g.page);
    const char *buf = guard_place(&g, page, g.page);
    assert_int_equal(yd_frame_line(buf, g.page, SIZE_MAX), 0);
    assert_int_equal(yd_frame_line(buf, g.page, g.page), 0);
    assert_int_equal(yd_frame_line(buf, g.page, g.page - 1), -EMSGSIZE);
    free(page);
    guard_close(&g);
}

/* The guard itself: a read of the byte after a placed buffer faults (else the tests above prove
 * nothing). In a child, whose death by signal (or ASan's exit) is the expected outcome. */
static void test_guard_page_faults_a_read_one_byte_past_the_end(void **state)
{
    (void)state;
    struct guard g;
    guard_open(&g);
    const char *buf = guard_place(&g, "abc", 3);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would catch the fault and carry on */
        signal(SIGBUS, SIG_DFL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO); /* ASan's report of the expected fault */
        volatile char c = buf[3];
        (void)c;
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    guard_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_returned_with_its_newline),
        cmocka_unit_test(test_line_only_first_of_several_is_returned),
        cmocka_unit_test(test_line_empty_line_is_one_byte),
        cmocka_unit_test(test_line_without_newline_needs_more),
        cmocka_unit_test(test_line_empty_buffer_needs_more),
        cmocka_unit_test(test_line_carriage_return_is_kept_in_line),
        cmocka_unit_test(test_line_nul_bytes_do_not_end_a_line),
        cmocka_unit_test(test_line_of_exactly_max_line_is_accepted),
        cmocka_unit_test(test_line_of_exactly_max_line_then_more_is_accepted),
        cmocka_unit_test(test_line_one_longer_than_limit_is_emsgsize),
        cmocka_unit_test(test_line_longer_than_limit_is_emsgsize),
        cmocka_unit_test(test_line_unterminated_longer_than_limit_is_emsgsize),
        cmocka_unit_test(test_line_unterminated_of_max_line_bytes_needs_more),
        cmocka_unit_test(test_line_unterminated_one_below_max_line_needs_more),
        cmocka_unit_test(test_line_max_line_one_accepts_only_bare_newline),
        cmocka_unit_test(test_line_max_line_zero_refuses_any_byte),
        cmocka_unit_test(test_line_reads_at_most_max_line_bytes),
        cmocka_unit_test(test_line_stream_split_across_calls),
        cmocka_unit_test(test_upper_changes_only_ascii_lowercase_letters),
        cmocka_unit_test(test_upper_in_place),
        cmocka_unit_test(test_upper_leaves_non_ascii_bytes_alone),
        cmocka_unit_test(test_upper_every_byte_value),
        cmocka_unit_test(test_upper_zero_bytes_writes_nothing),
        cmocka_unit_test(test_frame_line_never_reads_past_the_end_of_its_buffer),
        cmocka_unit_test(test_frame_line_of_a_full_page_without_newline_never_reads_past_it),
        cmocka_unit_test(test_guard_page_faults_a_read_one_byte_past_the_end),
    };
    return cmocka_run_group_tests_name("framing", tests, NULL, NULL);
}
