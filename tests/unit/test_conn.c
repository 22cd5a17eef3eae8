/*
 * Connection behaviours of libyodel over real sockets: one end of a socketpair is a yd_conn,
 * the test drives the other end by hand. Each run lasts until its expectation is met (a
 * callback stops the loop when the awaited count is reached), then the counts are checked:
 * no fixed time windows. The watchdog (watchdog.h) only bounds a run that would hang.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "watchdog.h"
#include "yodel.h"

#define MAX_MSGS 16
/* How often a run checks a condition no callback reports (bytes left in a socket). */
#define TICK_MS 1

struct probe;
typedef int (*probe_pred)(struct probe *p);
typedef void (*probe_step)(struct probe *p);

struct probe {
    yd_loop *loop;
    yd_conn *conn;
    int fd;   /* the connection's end of the socketpair (it owns it), for FIONREAD */
    int peer; /* the test's end */
    int connected, nmsgs, eof, closed, status, drained;
    char msgs[MAX_MSGS][64];
    size_t lens[MAX_MSGS];
    int pause_after_first;
    int write_back;
    probe_pred done; /* the expectation of the current run: stops the loop once true */
    probe_step tick; /* run every TICK_MS during the run, when set */
    /* back-pressure: the test's end writes `total` bytes, reads them back once `reading` */
    size_t total, sent, got, max_queued, queued_when_full;
    int ticks, full_at_tick, reading, unread_while_full, peer_eof;
};

static void check_done(struct probe *p)
{
    if (p->done != NULL && p->done(p))
        yd_loop_stop(p->loop);
}

static void on_connect(yd_conn *conn)
{
    struct probe *p = yd_conn_data(conn);
    p->connected++;
    check_done(p);
}

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
    if (p->write_back) {
        assert_int_equal(yd_conn_write(conn, data, len), 0);
        size_t queued = yd_conn_write_queued(conn);
        if (queued > p->max_queued)
            p->max_queued = queued;
        if (queued > YD_HIGH_WATERMARK && p->full_at_tick == 0) {
            p->full_at_tick = p->ticks + 1;
            p->queued_when_full = queued;
        }
    }
    check_done(p);
}

static void on_eof(yd_conn *conn)
{
    struct probe *p = yd_conn_data(conn);
    p->eof = 1;
    yd_conn_close(conn);
    check_done(p);
}

static void on_drain(yd_conn *conn)
{
    struct probe *p = yd_conn_data(conn);
    p->drained++;
    check_done(p);
}

static void on_close(yd_conn *conn, int status)
{
    struct probe *p = yd_conn_data(conn);
    p->closed = 1;
    p->status = status;
    p->conn = NULL;
    check_done(p);
}

static const yd_protocol probe_protocol = {.on_connect = on_connect,
                                           .on_data = on_data,
                                           .on_eof = on_eof,
                                           .on_drain = on_drain,
                                           .on_close = on_close};

static void on_tick(yd_timer *t, void *data)
{
    (void)t;
    struct probe *p = data;
    p->ticks++;
    if (p->tick != NULL)
        p->tick(p);
    check_done(p);
}

/*
 * Runs the loop until done(p) holds, checked by every callback (and every tick when a
 * condition no callback reports is awaited: pass polled). Fails if the watchdog had to stop it.
 */
static void run_until(struct probe *p, probe_pred done, probe_step tick, int polled)
{
    p->done = done;
    p->tick = tick;
    if (!done(p)) {
        yd_timer *ticker = NULL;
        if (tick != NULL || polled) {
            assert_int_equal(yd_timer_new(p->loop, on_tick, p, &ticker), 0);
            assert_int_equal(yd_timer_start(ticker, TICK_MS, TICK_MS), 0);
        }
        RUN_LOOP(p->loop);
        if (ticker != NULL)
            yd_timer_free(ticker);
    }
    assert_true(done(p));
    p->done = NULL;
    p->tick = NULL;
}

static size_t unread_bytes(int fd)
{
    int n = 0;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return (size_t)n;
}

/* The expectations runs wait for. */
static int is_connected(struct probe *p)
{
    return p->connected == 1;
}

static int is_closed(struct probe *p)
{
    return p->closed;
}

/* The connection has read every byte the test sent so far (and handled it: reads are handled
 * before the loop moves on). */
static int caught_up(struct probe *p)
{
    return p->connected == 1 && !p->closed && unread_bytes(p->fd) == 0;
}

static int has_one_msg_and_caught_up(struct probe *p)
{
    return p->nmsgs == 1 && caught_up(p);
}

static int has_two_msgs(struct probe *p)
{
    return p->nmsgs == 2;
}

static void open_probe(struct probe *p, yd_read_mode mode, size_t arg)
{
    int sv[2];
    memset(p, 0, sizeof *p);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    p->fd = sv[0];
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
    run_until(&p, caught_up, NULL, 1);
    assert_int_equal(p.nmsgs, 0);
    send_all(p.peer, "lo\nwor");
    run_until(&p, caught_up, NULL, 1);
    assert_int_equal(p.nmsgs, 1);
    send_all(p.peer, "ld\n");
    run_until(&p, has_two_msgs, NULL, 0);
    assert_int_equal(p.lens[0], 6);
    assert_memory_equal(p.msgs[0], "hello\n", 6);
    assert_int_equal(p.lens[1], 6);
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
    run_until(&p, is_closed, NULL, 0);
    assert_int_equal(p.nmsgs, 2);
    assert_int_equal(p.lens[1], 3);
    assert_memory_equal(p.msgs[1], "two", 3);
    assert_true(p.eof);
    assert_int_equal(p.status, 0);
    close_probe(&p);
}

static void test_line_longer_than_limit_closes_with_emsgsize(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_LINE, 8);
    send_all(p.peer, "short\n0123456789");
    run_until(&p, is_closed, NULL, 0);
    assert_int_equal(p.nmsgs, 1);
    assert_int_equal(p.status, -EMSGSIZE);
    close_probe(&p);
}

static void test_read_exactly_delivers_fixed_size_messages(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_EXACTLY, 4);
    send_all(p.peer, "abcdef");
    run_until(&p, has_one_msg_and_caught_up, NULL, 1);
    send_all(p.peer, "gh");
    run_until(&p, has_two_msgs, NULL, 0);
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
    /* All three lines came in one read: the pause in the first on_data holds the other two. */
    run_until(&p, has_one_msg_and_caught_up, NULL, 1);
    yd_conn_resume_reading(p.conn);
    assert_int_equal(p.nmsgs, 3);
    assert_memory_equal(p.msgs[1], "b\n", 2);
    assert_memory_equal(p.msgs[2], "c\n", 2);
    close_probe(&p);
}

/* Back-pressure. The test's end writes without reading until the connection's queue passed the
 * high watermark, for a few more ticks (each a loop iteration in which a connection still reading
 * would read the bytes waiting for it), then reads everything back. */
#define BP_TOTAL      (1024u * 1024u)
#define BP_FULL_TICKS 10

static void pump_peer(struct probe *p)
{
    static char chunk[16384];
    memset(chunk, 'x', sizeof chunk);
    while (p->sent < p->total) {
        size_t n = p->total - p->sent < sizeof chunk ? p->total - p->sent : sizeof chunk;
        ssize_t w = write(p->peer, chunk, n);
        if (w < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        p->sent += (size_t)w;
    }
    if (!p->reading && p->full_at_tick != 0 && p->ticks >= p->full_at_tick + BP_FULL_TICKS) {
        p->unread_while_full = (int)unread_bytes(p->fd);
        p->reading = 1;
    }
    while (p->reading) {
        static char sink[65536];
        ssize_t r = read(p->peer, sink, sizeof sink);
        if (r < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        assert_true(r > 0);
        p->got += (size_t)r;
    }
}

static int echoed_everything(struct probe *p)
{
    return p->got == p->total;
}

static void test_peer_that_does_not_read_stops_reading_then_drains(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_CHUNK, 0);
    p.write_back = 1;
    p.total = BP_TOTAL;
    /* Small kernel buffers, so the queue, not the kernel, has to hold the echo. */
    int small = 16384;
    assert_int_equal(setsockopt(p.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    assert_int_equal(setsockopt(p.peer, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    assert_int_equal(fcntl(p.peer, F_SETFL, O_NONBLOCK), 0);
    run_until(&p, echoed_everything, pump_peer, 1);
    /* It stopped reading with bytes waiting for it, its queue bounded by the high watermark
     * plus one read, not by what was sent; then it drained and echoed every byte. */
    assert_true(p.queued_when_full > YD_HIGH_WATERMARK);
    assert_true(p.unread_while_full > 0);
    assert_true(p.max_queued <= YD_HIGH_WATERMARK + 64 * 1024);
    assert_true(p.drained > 0);
    assert_int_equal(p.sent, BP_TOTAL);
    assert_int_equal(yd_conn_write_queued(p.conn), 0);
    close_probe(&p);
}

static void read_until_eof(struct probe *p)
{
    char buf[8];
    ssize_t r;
    while ((r = read(p->peer, buf, sizeof buf)) > 0) {
        p->got += (size_t)r;
        assert_memory_equal(buf, "x", 1);
    }
    if (r == 0)
        p->peer_eof = 1;
    else
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static int peer_saw_eof(struct probe *p)
{
    return p->peer_eof;
}

static void test_write_after_shutdown_is_epipe(void **state)
{
    (void)state;
    struct probe p;
    open_probe(&p, YD_READ_CHUNK, 0);
    run_until(&p, is_connected, NULL, 0); /* on_connect runs from the loop */
    assert_int_equal(yd_conn_write(p.conn, "x", 1), 0);
    assert_int_equal(yd_conn_shutdown(p.conn), 0);
    assert_int_equal(yd_conn_write(p.conn, "y", 1), -EPIPE);
    assert_int_equal(fcntl(p.peer, F_SETFL, O_NONBLOCK), 0);
    run_until(&p, peer_saw_eof, read_until_eof, 1);
    assert_int_equal(p.got, 1); /* "x", then the half-close; never "y" */
    assert_false(p.closed);     /* half-closed only: it still reads */
    close_probe(&p);
}

/* ---- yd_conn_connect_from: a chosen source address ------------------------------------------ */

/* A socket of the test's on 127.0.0.1, port 0; returns its fd and sets *port. */
static int loopback_socket(int type, int *port)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (type == SOCK_STREAM)
        assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void connect_probe_from(struct probe *p, const char *scheme, int port, const char *source)
{
    char addr[64];
    memset(p, 0, sizeof *p);
    p->fd = p->peer = -1;
    snprintf(addr, sizeof addr, "%s127.0.0.1:%d", scheme, port);
    assert_int_equal(yd_loop_new(&p->loop), 0);
    assert_int_equal(
        yd_conn_connect_from(p->loop, addr, source, NULL, &probe_protocol, p, &p->conn), 0);
    run_until(p, is_connected, NULL, 0);
}

static void end_probe(struct probe *p)
{
    yd_conn_close(p->conn);
    run_until(p, is_closed, NULL, 0);
    assert_int_equal(yd_loop_free(p->loop), 0);
}

static void test_connect_from_binds_the_tcp_source_address(void **state)
{
    (void)state;
    int port;
    int lfd = loopback_socket(SOCK_STREAM, &port);
    struct probe p;
    connect_probe_from(&p, "", port, "127.0.0.2");
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int afd = accept(lfd, (struct sockaddr *)&peer, &len);
    assert_true(afd >= 0);
    char ip[INET_ADDRSTRLEN];
    assert_string_equal(inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip), "127.0.0.2");
    end_probe(&p);
    close(afd);
    close(lfd);
}

static void test_connect_from_binds_the_udp_source_address_and_port(void **state)
{
    (void)state;
    int port;
    int ufd = loopback_socket(SOCK_DGRAM, &port);
    struct probe p;
    connect_probe_from(&p, "udp://", port, "127.0.0.3:0");
    assert_int_equal(yd_conn_write(p.conn, "ping", 4), 0);
    char buf[8];
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    assert_int_equal(recvfrom(ufd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len), 4);
    char ip[INET_ADDRSTRLEN];
    assert_string_equal(inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip), "127.0.0.3");
    end_probe(&p);
    close(ufd);
}

static void test_connect_from_refuses_a_source_it_cannot_use(void **state)
{
    (void)state;
    yd_loop *loop;
    yd_conn *conn = NULL;
    assert_int_equal(yd_loop_new(&loop), 0);
    const char *bad[] = {"localhost", "127.0.0.1:99999", "127.0.0.1:", "[::1", "", "1.2.3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(
            yd_conn_connect_from(loop, "127.0.0.1:9", bad[i], NULL, &probe_protocol, NULL, &conn),
            -EINVAL);
    assert_int_equal(
        yd_conn_connect_from(loop, "unix:/tmp/x", "127.0.0.1", NULL, &probe_protocol, NULL, &conn),
        -EINVAL);
    /* An IPv6 source cannot reach an IPv4 destination. */
    assert_int_equal(
        yd_conn_connect_from(loop, "127.0.0.1:9", "::1", NULL, &probe_protocol, NULL, &conn),
        -EAFNOSUPPORT);
    assert_null(conn);
    assert_int_equal(yd_loop_free(loop), 0);
}

/* ---- yd_conn_connect_addr: an address parsed once ------------------------------------------ */

/* A listening socket of the test's on [::1], port 0 (-1 when the host has no IPv6). */
static int v6_loopback_listener(int *port)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin6_port);
    return fd;
}

/* One parse, several connections: each reaches the listener, and the parsed address is the
 * caller's, untouched. */
static void test_connect_addr_connects_again_and_again_to_one_parsed_address(void **state)
{
    (void)state;
    int port;
    int lfd = loopback_socket(SOCK_STREAM, &port);
    char text[64];
    snprintf(text, sizeof text, "127.0.0.1:%d", port);
    yd_addr addr, before;
    assert_int_equal(yd_addr_parse(text, &addr), 0);
    before = addr;
    for (int i = 0; i < 3; i++) {
        struct probe p;
        memset(&p, 0, sizeof p);
        p.fd = p.peer = -1;
        assert_int_equal(yd_loop_new(&p.loop), 0);
        assert_int_equal(
            yd_conn_connect_addr(p.loop, &addr, NULL, NULL, &probe_protocol, &p, &p.conn), 0);
        run_until(&p, is_connected, NULL, 0);
        int afd = accept(lfd, NULL, NULL);
        assert_true(afd >= 0);
        end_probe(&p);
        close(afd);
    }
    assert_memory_equal(&addr, &before, sizeof addr);
    close(lfd);
}

/* "localhost" is 127.0.0.1, then ::1: with only ::1 listening, the first address is refused
 * and the second one connects (the addresses to try are held past the first attempt). */
static void test_connect_addr_falls_back_to_the_next_address_of_a_name(void **state)
{
    (void)state;
    int port = 0;
    int lfd = v6_loopback_listener(&port);
    if (lfd < 0)
        skip(); /* no IPv6 on this host */
    char text[64];
    snprintf(text, sizeof text, "localhost:%d", port);
    yd_addr addr;
    assert_int_equal(yd_addr_parse(text, &addr), 0);
    struct probe p;
    memset(&p, 0, sizeof p);
    p.fd = p.peer = -1;
    assert_int_equal(yd_loop_new(&p.loop), 0);
    assert_int_equal(yd_conn_connect_addr(p.loop, &addr, NULL, NULL, &probe_protocol, &p, &p.conn),
                     0);
    run_until(&p, is_connected, NULL, 0);
    struct pollfd pfd = {.fd = lfd, .events = POLLIN}; /* not someone else's 127.0.0.1 port */
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    struct sockaddr_in6 peer;
    socklen_t len = sizeof peer;
    int afd = accept(lfd, (struct sockaddr *)&peer, &len);
    assert_true(afd >= 0);
    assert_int_equal(peer.sin6_family, AF_INET6);
    end_probe(&p);
    close(afd);
    close(lfd);
}

static void test_connect_addr_refuses_what_connect_from_refuses(void **state)
{
    (void)state;
    yd_loop *loop;
    yd_conn *conn = NULL;
    yd_addr addr;
    assert_int_equal(yd_loop_new(&loop), 0);
    assert_int_equal(yd_conn_connect_addr(loop, NULL, NULL, NULL, &probe_protocol, NULL, &conn),
                     -EINVAL);
    assert_int_equal(yd_addr_parse("tls://127.0.0.1:9", &addr), 0); /* TLS, no configuration */
    assert_int_equal(yd_conn_connect_addr(loop, &addr, NULL, NULL, &probe_protocol, NULL, &conn),
                     -EINVAL);
    assert_int_equal(yd_addr_parse("127.0.0.1:9", &addr), 0);
    assert_int_equal(yd_conn_connect_addr(loop, &addr, NULL, NULL, NULL, NULL, &conn), -EINVAL);
    assert_int_equal(
        yd_conn_connect_addr(loop, &addr, "localhost", NULL, &probe_protocol, NULL, &conn),
        -EINVAL);
    memset(addr.host, 'a', sizeof addr.host); /* made by hand, without its NUL */
    assert_int_equal(yd_conn_connect_addr(loop, &addr, NULL, NULL, &probe_protocol, NULL, &conn),
                     -EINVAL);
    assert_null(conn);
    assert_int_equal(yd_loop_free(loop), 0);
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
        cmocka_unit_test(test_connect_from_binds_the_tcp_source_address),
        cmocka_unit_test(test_connect_from_binds_the_udp_source_address_and_port),
        cmocka_unit_test(test_connect_from_refuses_a_source_it_cannot_use),
        cmocka_unit_test(test_connect_addr_connects_again_and_again_to_one_parsed_address),
        cmocka_unit_test(test_connect_addr_falls_back_to_the_next_address_of_a_name),
        cmocka_unit_test(test_connect_addr_refuses_what_connect_from_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
