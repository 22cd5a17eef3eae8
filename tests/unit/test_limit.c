/*
 * yd_conn_limit shared by servers on two loops, each on its own thread, under a storm of
 * connections that open and close (some with a reset): once all of them are closed, the limit
 * is whole again (no count leaked either way) and the statistics balance. Runs poll with a
 * deadline; nothing waits a fixed time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "yodel.h"

#define NLOOPS      2
#define LIMIT       2
#define STORM       200
#define DEADLINE_MS 5000

struct side {
    yd_loop *loop;
    yd_stats *stats;
    yd_server *server;
    int port;
    pthread_t thread;
};

static void echo_data(yd_conn *conn, const char *data, size_t len)
{
    (void)yd_conn_write(conn, data, len);
}

static const yd_protocol echo = {.on_data = echo_data};

static void *run_side(void *arg)
{
    struct side *s = arg;
    yd_loop_run(s->loop);
    return NULL;
}

static void drain_side(yd_loop *loop, void *data)
{
    (void)data;
    yd_loop_drain(loop, 100);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = DEADLINE_MS / 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    return fd;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static yd_stats_snapshot totals(struct side *sides)
{
    yd_stats_snapshot sum;
    memset(&sum, 0, sizeof sum);
    for (int i = 0; i < NLOOPS; i++)
        yd_stats_add_to(sides[i].stats, &sum);
    return sum;
}

/* Polls (bounded) until every one of `accepted` connections is counted closed or refused. */
static yd_stats_snapshot await_all_closed(struct side *sides, uint64_t accepted)
{
    uint64_t until = now_ms() + DEADLINE_MS;
    yd_stats_snapshot s = totals(sides);
    while ((s.conns_accepted < accepted || s.conns_active != 0 ||
            s.conns_refused + s.conns_closed != s.conns_accepted) &&
           now_ms() < until) {
        struct timespec tick = {.tv_nsec = 1000000};
        nanosleep(&tick, NULL);
        s = totals(sides);
    }
    return s;
}

/* Opens 2 * LIMIT connections at once: exactly LIMIT of them are served (echoed). */
static int count_served(struct side *sides, int *fds)
{
    int served = 0;
    for (int i = 0; i < 2 * LIMIT; i++)
        fds[i] = connect_to(sides[i % NLOOPS].port);
    for (int i = 0; i < 2 * LIMIT; i++) {
        char b[4];
        assert_int_equal(write(fds[i], "x\n", 2), 2);
        served += read(fds[i], b, sizeof b) == 2;
    }
    return served;
}

static void test_a_limit_shared_by_two_loops_is_whole_again_after_a_connection_storm(void **state)
{
    (void)state;
    yd_conn_limit *limit;
    assert_int_equal(yd_conn_limit_new(LIMIT, &limit), 0);
    struct side sides[NLOOPS];
    for (int i = 0; i < NLOOPS; i++) {
        assert_int_equal(yd_loop_new(&sides[i].loop), 0);
        assert_int_equal(yd_stats_new(&sides[i].stats), 0);
        yd_server_options o = {.protocol = &echo, .stats = sides[i].stats, .limit = limit};
        assert_int_equal(yd_server_listen(sides[i].loop, "127.0.0.1:0", &o, &sides[i].server), 0);
        sides[i].port = yd_server_port(sides[i].server);
        assert_int_equal(pthread_create(&sides[i].thread, NULL, run_side, &sides[i]), 0);
    }
    for (int i = 0; i < STORM; i++) {
        int fd = connect_to(sides[i % NLOOPS].port);
        if (i % 3 == 0) { /* a reset instead of a FIN */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
        } else {
            assert_int_equal(write(fd, "hi\n", 3), 3);
        }
        close(fd);
    }
    yd_stats_snapshot s = await_all_closed(sides, STORM);
    assert_int_equal(s.conns_accepted, STORM);
    assert_int_equal(s.conns_active, 0);
    assert_int_equal(s.conns_refused + s.conns_closed, STORM);
    int fds[2 * LIMIT];
    assert_int_equal(count_served(sides, fds), LIMIT);
    for (int i = 0; i < 2 * LIMIT; i++)
        close(fds[i]);
    s = await_all_closed(sides, STORM + 2 * LIMIT);
    assert_int_equal(s.conns_active, 0);
    assert_int_equal(s.conns_refused + s.conns_closed, STORM + 2 * LIMIT);
    for (int i = 0; i < NLOOPS; i++)
        assert_int_equal(yd_loop_call_threadsafe(sides[i].loop, drain_side, NULL), 0);
    for (int i = 0; i < NLOOPS; i++) {
        assert_int_equal(pthread_join(sides[i].thread, NULL), 0);
        assert_int_equal(yd_loop_free(sides[i].loop), 0);
        yd_stats_free(sides[i].stats);
    }
    yd_conn_limit_free(limit);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_limit_shared_by_two_loops_is_whole_again_after_a_connection_storm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
