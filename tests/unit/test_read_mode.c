/*
 * Read modes over a real socketpair: lines at and past the limit when split across reads, and
 * the read mode switched while a partial message is set aside. Each run ends by itself: the
 * test's end half-closes and the connection closes at EOF (watchdog.h bounds a hang).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "watchdog.h"
#include "yodel.h"

#define MAX_MSGS 8

/*
 * One connection on one end of a socketpair; the test writes the other end. The first message
 * queues a switch of read mode for the loop's next iteration, after the rest of that read was
 * set aside; the switch then writes `more` and half-closes, so the run ends by itself once the
 * connection closes at EOF.
 */
struct run {
    yd_loop *loop;
    yd_conn *conn;
    int peer;
    yd_read_mode to_mode;
    size_t to_arg;
    const char *more;
    int switched, nmsgs, closes, status;
    char msgs[MAX_MSGS][32];
    size_t lens[MAX_MSGS];
};

static void switch_mode(yd_loop *loop, void *data)
{
    (void)loop;
    struct run *r = data;
    if (r->closes > 0)
        return;
    assert_int_equal(yd_conn_set_read_mode(r->conn, r->to_mode, r->to_arg), 0);
    r->switched = 1;
    size_t n = strlen(r->more);
    assert_int_equal(write(r->peer, r->more, n), (ssize_t)n);
    assert_int_equal(shutdown(r->peer, SHUT_WR), 0);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    struct run *r = yd_conn_data(conn);
    if (r->nmsgs < MAX_MSGS) {
        size_t n = len < sizeof r->msgs[0] - 1 ? len : sizeof r->msgs[0] - 1;
        memcpy(r->msgs[r->nmsgs], data, n);
        r->msgs[r->nmsgs][n] = '\0';
        r->lens[r->nmsgs] = len;
    }
    if (r->nmsgs++ == 0)
        assert_int_equal(yd_loop_call_threadsafe(r->loop, switch_mode, r), 0);
}

static void on_close(yd_conn *conn, int status)
{
    struct run *r = yd_conn_data(conn);
    r->closes++;
    r->status = status;
}

static const yd_protocol proto = {.on_data = on_data, .on_close = on_close};

/* Opens the connection in mode/arg, writes `first` (one write: one read), runs to the close. */
static void run(struct run *r, yd_read_mode mode, size_t arg, const char *first)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(yd_loop_new(&r->loop), 0);
    r->peer = sv[1];
    assert_int_equal(yd_conn_open_fd(r->loop, sv[0], &proto, r, &r->conn), 0);
    assert_int_equal(yd_conn_set_read_mode(r->conn, mode, arg), 0);
    size_t n = strlen(first);
    assert_int_equal(write(r->peer, first, n), (ssize_t)n);
    RUN_LOOP(r->loop);
    assert_int_equal(yd_loop_free(r->loop), 0);
    close(r->peer);
    assert_int_equal(r->closes, 1);
}

static void test_a_line_of_exactly_the_limit_split_across_reads_is_delivered(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_LINE;
    r.to_arg = 8;
    r.more = "\n";
    run(&r, YD_READ_LINE, 8, "a\n12345678");
    assert_int_equal(r.nmsgs, 2);
    assert_string_equal(r.msgs[1], "12345678\n");
    assert_int_equal(r.status, 0);
}

static void
test_a_line_one_byte_over_the_limit_split_across_reads_closes_with_emsgsize(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_LINE;
    r.to_arg = 8;
    r.more = "9\n";
    run(&r, YD_READ_LINE, 8, "a\n12345678");
    assert_int_equal(r.nmsgs, 1);
    assert_int_equal(r.status, -EMSGSIZE);
}

static void test_line_to_chunk_mid_line_delivers_the_partial_line_then_the_chunk(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_CHUNK;
    r.more = "ef";
    run(&r, YD_READ_LINE, 0, "ab\ncd");
    assert_int_equal(r.nmsgs, 3);
    assert_string_equal(r.msgs[1], "cd");
    assert_string_equal(r.msgs[2], "ef");
    assert_int_equal(r.status, 0);
}

static void
test_exactly_to_chunk_mid_message_delivers_the_partial_message_then_the_chunk(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_CHUNK;
    r.more = "ef";
    run(&r, YD_READ_EXACTLY, 3, "abccd");
    assert_int_equal(r.nmsgs, 3);
    assert_string_equal(r.msgs[0], "abc");
    assert_string_equal(r.msgs[1], "cd");
    assert_string_equal(r.msgs[2], "ef");
}

/* A read mode changed while a partial message is set aside: the bytes are framed again. */

static void test_line_to_exactly_with_a_partial_line_set_aside_delivers_it_in_messages(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_EXACTLY;
    r.to_arg = 2;
    r.more = "ef";
    run(&r, YD_READ_LINE, 0, "a\nbcd");
    assert_int_equal(r.nmsgs, 3);
    assert_string_equal(r.msgs[1], "bc");
    assert_string_equal(r.msgs[2], "de");
}

static void test_exactly_to_line_with_a_newline_set_aside_delivers_two_lines(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_LINE;
    r.more = "z\n";
    run(&r, YD_READ_EXACTLY, 4, "abcdx\ny");
    assert_int_equal(r.nmsgs, 3);
    assert_string_equal(r.msgs[1], "x\n");
    assert_string_equal(r.msgs[2], "yz\n");
}

static void
test_exactly_to_line_with_more_than_the_limit_set_aside_closes_with_emsgsize(void **state)
{
    (void)state;
    struct run r = {0};
    r.to_mode = YD_READ_LINE;
    r.to_arg = 2;
    r.more = "w\n";
    run(&r, YD_READ_EXACTLY, 8, "abcdefghxyzv");
    for (int i = 0; i < r.nmsgs && i < MAX_MSGS; i++)
        assert_true(r.lens[i] <= 8);
    assert_int_equal(r.nmsgs, 1);
    assert_int_equal(r.status, -EMSGSIZE);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_line_of_exactly_the_limit_split_across_reads_is_delivered),
        cmocka_unit_test(
            test_a_line_one_byte_over_the_limit_split_across_reads_closes_with_emsgsize),
        cmocka_unit_test(test_line_to_chunk_mid_line_delivers_the_partial_line_then_the_chunk),
        cmocka_unit_test(
            test_exactly_to_chunk_mid_message_delivers_the_partial_message_then_the_chunk),
        cmocka_unit_test(
            test_line_to_exactly_with_a_partial_line_set_aside_delivers_it_in_messages),
        cmocka_unit_test(test_exactly_to_line_with_a_newline_set_aside_delivers_two_lines),
        cmocka_unit_test(
            test_exactly_to_line_with_more_than_the_limit_set_aside_closes_with_emsgsize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
