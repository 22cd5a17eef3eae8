/*
 * Connection behaviours of libyodel over real sockets: one end of a socketpair is a yd_conn,
 * the test drives the other end by hand. Every loop run is bounded by a watchdog timer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "yodel.h"

#define MAX_MSGS 16

struct probe {
    yd_loop *loop;
    yd_conn *conn;
    int peer; /* the test's end of the socketpair */
    int nmsgs;
    char msgs[MAX_MSGS][64];
    size_t lens[MAX_MSGS];
    int eof, closed, status, drained;
    int pause_after_first;
    int write_back;
};

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    struct probe *p = yd_conn_data(conn);
    if (p->nmsgs < MAX_MSGS) {
        size_t n = len < sizeof p->msgs[0] ? len : sizeof p->msgs[0];
        memcpy(p->msgs[p->nmsgs], data, n);
        p->lens[p->nmsgs] = len;
    }
    p->nmsgs++;
    if (p->pause_after_first && p->nmsgs == 1)
        yd_conn_pause_reading(conn);
    if (p->write_back)
        yd_conn_write(conn, data, len);
}

static void on_eof(yd_conn *conn)
{
    struct probe *p = yd_conn_data(conn);
    p->eof = 1;
    yd_conn_close(conn);
}

static void on_drain(yd_conn *conn)
{
    struct probe *p = yd_conn_data(conn);
    p->drained++;
}

static void on_close(yd_conn *conn, int status)
{
    struct probe *p = yd_conn_data(conn);
    p->closed = 1;
    p->status = status;
    p->conn = NULL;
}

static const yd_protocol probe_protocol = {
    .on_data = on_data, .on_eof = on_eof, .on_drain = on_drain, .on_close = on_close};

static void on_watchdog(yd_timer *t, void *data)
{
    (void)t;
    yd_loop_stop(data);
}

/* Runs the loop until it stops by itself or ms pass. */
static void run_for(struct probe *p, uint64_t ms)
{
    yd_timer *watchdog;
    assert_int_equal(yd_timer_new(p->loop, on_watchdog, p->loop, &watchdog), 0);
    yd_timer_start(watchdog, ms, 0);
    yd_loop_run(p->loop);
    yd_timer_free(watchdog);
}

static void open_probe(struct probe *p, yd_read_mode mode, size_t arg)
{
    int sv[2];
    memset(p, 0, sizeof *p);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->peer = sv[1];
    assert_int_equal(yd_loop_new(&p->loop), 0);
    assert_int_equal(yd_conn_open_fd(p->loop, sv[0], &probe_protocol, p, &p->conn), 0);
    assert_int_equal(yd_conn_set_read_mode(p->conn, mode, arg), 0);
}

static void close_probe(struct probe *p)
{
    close(p->peer);
    assert_int_equal(yd_loop_free(p->loop), 0);
}

static void send_all(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_lines_split_across_reads_are_delivered_whole(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_LINE, 100);
    send_all(p.peer, "hel");
    run_for(&p, 50);
    assert_int_equal(p.nmsgs, 0);
    send_all(p.peer, "lo\nwor");
    run_for(&p, 50);
    send_all(p.peer, "ld\n");
    run_for(&p, 50);
    assert_int_equal(p.nmsgs, 2);
    assert_memory_equal(p.msgs[0], "hello\n", 6);
    assert_memory_equal(p.msgs[1], "world\n", 6);
    close_probe(&p);
}

static void test_final_line_without_newline_is_delivered_at_eof(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_LINE, 100);
    send_all(p.peer, "one\ntwo");
    shutdown(p.peer, SHUT_WR);
    run_for(&p, 1000);
    assert_int_equal(p.nmsgs, 2);
    assert_int_equal(p.lens[1], 3);
    assert_memory_equal(p.msgs[1], "two", 3);
    assert_true(p.eof);
    assert_true(p.closed);
    assert_int_equal(p.status, 0);
    close_probe(&p);
}

static void test_line_longer_than_limit_closes_with_emsgsize(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_LINE, 8);
    send_all(p.peer, "short\n0123456789");
    run_for(&p, 1000);
    assert_int_equal(p.nmsgs, 1);
    assert_true(p.closed);
    assert_int_equal(p.status, -EMSGSIZE);
    close_probe(&p);
}

static void test_read_exactly_delivers_fixed_size_messages(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_EXACTLY, 4);
    send_all(p.peer, "abcdef");
    run_for(&p, 50);
    send_all(p.peer, "gh");
    run_for(&p, 50);
    assert_int_equal(p.nmsgs, 2);
    assert_memory_equal(p.msgs[0], "abcd", 4);
    assert_memory_equal(p.msgs[1], "efgh", 4);
    close_probe(&p);
}

static void test_pause_holds_lines_already_read_until_resume(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_LINE, 100);
    p.pause_after_first = 1;
    send_all(p.peer, "a\nb\nc\n");
    run_for(&p, 100);
    assert_int_equal(p.nmsgs, 1);
    yd_conn_resume_reading(p.conn);
    assert_int_equal(p.nmsgs, 3);
    assert_memory_equal(p.msgs[2], "c\n", 2);
    close_probe(&p);
}

static void test_peer_that_does_not_read_stops_reading_then_drains(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_CHUNK, 0);
    p.write_back = 1;
    /* Shrink the kernel buffers so the queue, not the kernel, has to hold the echo. */
    int small = 4096;
    setsockopt(p.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    fcntl(p.peer, F_SETFL, O_NONBLOCK);
    static char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    size_t sent = 0;
    for (int round = 0; round < 200; round++) {
        ssize_t n = write(p.peer, chunk, sizeof chunk);
        if (n > 0)
            sent += (size_t)n;
        run_for(&p, 5);
    }
    size_t queued = yd_conn_write_queued(p.conn);
    /* It stopped reading: the queue is bounded near the high watermark, not by what was sent. */
    assert_true(queued > 0);
    assert_true(queued <= YD_HIGH_WATERMARK + 64 * 1024);
    assert_true(sent > queued);
    size_t got = 0;
    for (int round = 0; round < 2000 && got < sent; round++) {
        static char sink[65536];
        ssize_t n = read(p.peer, sink, sizeof sink);
        if (n > 0)
            got += (size_t)n;
        run_for(&p, 2);
    }
    assert_int_equal(got, sent); /* every byte came back once the peer read */
    assert_true(p.drained > 0);
    close_probe(&p);
}

static void test_write_after_shutdown_is_epipe(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_CHUNK, 0);
    run_for(&p, 20); /* on_connect runs from the loop */
    assert_int_equal(yd_conn_write(p.conn, "x", 1), 0);
    assert_int_equal(yd_conn_shutdown(p.conn), 0);
    assert_int_equal(yd_conn_write(p.conn, "y", 1), -EPIPE);
    run_for(&p, 50);
    char buf[8];
    assert_int_equal(read(p.peer, buf, sizeof buf), 1);
    assert_int_equal(read(p.peer, buf, sizeof buf), 0); /* the half-close arrived */
    close_probe(&p);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_split_across_reads_are_delivered_whole),
        cmocka_unit_test(test_final_line_without_newline_is_delivered_at_eof),
        cmocka_unit_test(test_line_longer_than_limit_closes_with_emsgsize),
        cmocka_unit_test(test_read_exactly_delivers_fixed_size_messages),
        cmocka_unit_test(test_pause_holds_lines_already_read_until_resume),
        cmocka_unit_test(test_peer_that_does_not_read_stops_reading_then_drains),
        cmocka_unit_test(test_write_after_shutdown_is_epipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
