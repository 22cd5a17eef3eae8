/*
 * The loop through the public API: calls from other threads, the graceful drain, and freeing a
 * loop with handles still open. Each run lasts until the loop ends by itself or a callback stops
 * it at the awaited count (watchdog.h bounds a run that would hang).
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
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "watchdog.h"
#include "yodel.h"

/* ---- yd_loop_call_threadsafe -------------------------------------------------------------- */

#define NCALLS 1000

struct calls {
    yd_loop *loop;
    pthread_t loop_thread;
    int order[NCALLS]; /* the index of each call, in the order the calls ran */
    int ran;
    int off_thread; /* calls that ran on another thread than the loop's */
    struct call_arg {
        struct calls *calls;
        int index;
    } args[NCALLS];
};

static void record_call(yd_loop *loop, void *data)
{
    struct call_arg *a = data;
    struct calls *c = a->calls;
    assert_ptr_equal(loop, c->loop);
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->off_thread++;
    if (c->ran < NCALLS)
        c->order[c->ran] = a->index;
    c->ran++;
    if (c->ran == NCALLS)
        yd_loop_stop(loop);
}

static void *make_calls(void *arg)
{
    struct calls *c = arg;
    for (int i = 0; i < NCALLS; i++) {
        c->args[i].calls = c;
        c->args[i].index = i;
        if (yd_loop_call_threadsafe(c->loop, record_call, &c->args[i]) != 0)
            return (void *)1;
    }
    return NULL;
}

static void keep_alive(yd_timer *t, void *data)
{
    (void)t;
    (void)data;
}

static void test_calls_from_another_thread_run_in_order_on_the_loop_thread(void **state)
{
    (void)state;
    static struct calls c;
    memset(&c, 0, sizeof c);
    assert_int_equal(yd_loop_new(&c.loop), 0);
    c.loop_thread = pthread_self();
    /* The loop's own wakeup handle does not keep it alive: a timer does, until the last call. */
    yd_timer *alive;
    assert_int_equal(yd_timer_new(c.loop, keep_alive, NULL, &alive), 0);
    assert_int_equal(yd_timer_start(alive, 10 * WATCHDOG_MS, 0), 0);
    pthread_t caller;
    assert_int_equal(pthread_create(&caller, NULL, make_calls, &c), 0);
    RUN_LOOP(c.loop);
    void *result;
    assert_int_equal(pthread_join(caller, &result), 0);
    assert_null(result);
    assert_int_equal(c.ran, NCALLS);
    assert_int_equal(c.off_thread, 0);
    for (int i = 0; i < NCALLS; i++)
        assert_int_equal(c.order[i], i);
    yd_timer_free(alive);
    assert_int_equal(yd_loop_free(c.loop), 0);
}

/* ---- yd_loop_drain ------------------------------------------------------------------------ */

struct drain {
    yd_loop *loop;
    yd_server *server;
    int port;
    int echoed;        /* the client got its bytes back */
    int server_closes; /* on_close of accepted connections */
    int server_status;
    int client_closes;
    int client_status;
};

static void echo_on_data(yd_conn *conn, const char *data, size_t len)
{
    assert_int_equal(yd_conn_write(conn, data, len), 0);
}

static void echo_on_close(yd_conn *conn, int status)
{
    struct drain *d = yd_conn_data(conn);
    d->server_closes++;
    d->server_status = status;
}

static const yd_protocol echo = {.on_data = echo_on_data, .on_close = echo_on_close};

static void client_on_connect(yd_conn *conn)
{
    assert_int_equal(yd_conn_write(conn, "hello\n", 6), 0);
}

static void client_on_data(yd_conn *conn, const char *data, size_t len)
{
    struct drain *d = yd_conn_data(conn);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "hello\n", 6);
    d->echoed++;
    /* The exchange is complete: the connection is quiet from now on. */
    yd_loop_drain(d->loop, WATCHDOG_MS);
}

static void client_on_close(yd_conn *conn, int status)
{
    struct drain *d = yd_conn_data(conn);
    d->client_closes++;
    d->client_status = status;
}

/* on_eof NULL: the client closes when the server does. */
static const yd_protocol drain_client = {
    .on_connect = client_on_connect, .on_data = client_on_data, .on_close = client_on_close};

static void open_drain(struct drain *d)
{
    memset(d, 0, sizeof *d);
    assert_int_equal(yd_loop_new(&d->loop), 0);
    yd_server_options o = {.protocol = &echo, .data = d};
    assert_int_equal(yd_server_listen(d->loop, "127.0.0.1:0", &o, &d->server), 0);
    d->port = yd_server_port(d->server);
    assert_true(d->port > 0);
}

/* A plain connect to the port the server had: errno of the failure, or 0 if it connected. */
static int connect_errno(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int err = connect(fd, (struct sockaddr *)&in, sizeof in) == 0 ? 0 : errno;
    close(fd);
    return err;
}

static void test_drain_closes_the_servers_and_run_returns(void **state)
{
    (void)state;
    struct drain d;
    open_drain(&d);
    assert_int_equal(connect_errno(d.port), 0); /* listening, before */
    yd_loop_drain(d.loop, WATCHDOG_MS);
    RUN_LOOP(d.loop); /* returns by itself: nothing is left */
    assert_int_equal(connect_errno(d.port), ECONNREFUSED);
    assert_int_equal(yd_loop_free(d.loop), 0);
}

static void test_drain_closes_a_quiet_connection_and_run_returns(void **state)
{
    (void)state;
    struct drain d;
    open_drain(&d);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", d.port);
    yd_conn *conn;
    assert_int_equal(yd_conn_connect(d.loop, addr, &drain_client, &d, &conn), 0);
    RUN_LOOP(d.loop); /* the client drains the loop once echoed; the loop then ends by itself */
    assert_int_equal(d.echoed, 1);
    assert_int_equal(d.server_closes, 1);
    assert_int_equal(d.server_status, 0); /* closed cleanly, not reset at the deadline */
    assert_int_equal(d.client_closes, 1);
    assert_int_equal(d.client_status, 0);
    assert_int_equal(yd_loop_free(d.loop), 0);
}

/* ---- yd_loop_free ------------------------------------------------------------------------- */

struct freeing {
    yd_loop *loop;
    int connected; /* on_connect of the client and of the accepted connection */
    int closes;    /* on_close of every connection */
};

static void freeing_on_connect(yd_conn *conn)
{
    struct freeing *f = yd_conn_data(conn);
    if (++f->connected == 2)
        yd_loop_stop(f->loop);
}

static void freeing_on_close(yd_conn *conn, int status)
{
    (void)status;
    struct freeing *f = yd_conn_data(conn);
    f->closes++;
}

static const yd_protocol freeing = {.on_connect = freeing_on_connect, .on_close = freeing_on_close};

static void never(yd_timer *t, void *data)
{
    (void)t;
    (void)data;
    fail_msg("the timer ran");
}

static void on_signal(yd_signal *s, int signum, void *data)
{
    (void)s;
    (void)signum;
    (void)data;
}

static void test_loop_free_runs_on_close_of_every_open_connection(void **state)
{
    (void)state;
    struct freeing f = {0};
    assert_int_equal(yd_loop_new(&f.loop), 0);
    yd_server_options o = {.protocol = &freeing, .data = &f};
    yd_server *srv;
    assert_int_equal(yd_server_listen(f.loop, "127.0.0.1:0", &o, &srv), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", yd_server_port(srv));
    yd_conn *client;
    assert_int_equal(yd_conn_connect(f.loop, addr, &freeing, &f, &client), 0);
    RUN_LOOP(f.loop); /* until the client and the accepted connection are both up */
    assert_int_equal(f.connected, 2);
    /* And one whose on_connect has not even run yet. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    yd_conn *fresh;
    assert_int_equal(yd_conn_open_fd(f.loop, sv[0], &freeing, &f, &fresh), 0);
    assert_int_equal(f.closes, 0);
    assert_int_equal(yd_loop_free(f.loop), 0);
    assert_int_equal(f.closes, 3);
    close(sv[1]);
}

static void test_loop_free_closes_servers_and_signal_watchers_left_open(void **state)
{
    (void)state;
    yd_loop *loop;
    assert_int_equal(yd_loop_new(&loop), 0);
    struct freeing f = {.loop = loop};
    yd_server_options o = {.protocol = &freeing, .data = &f};
    yd_server *tcp, *udp;
    assert_int_equal(yd_server_listen(loop, "127.0.0.1:0", &o, &tcp), 0);
    assert_int_equal(yd_server_listen(loop, "udp://127.0.0.1:0", &o, &udp), 0);
    int port = yd_server_port(tcp);
    yd_signal *sig;
    assert_int_equal(yd_signal_new(loop, SIGUSR1, on_signal, NULL, &sig), 0);
    /* Everything goes (ASan and valgrind see a leak); the listening port is closed. */
    assert_int_equal(yd_loop_free(loop), 0);
    assert_int_equal(connect_errno(port), ECONNREFUSED);
}

/* A timer still running is closed, not waited for: its callback never runs. */
#define PENDING_TIMER_MS 1000

static void test_loop_free_closes_a_running_timer_without_running_it(void **state)
{
    (void)state;
    yd_loop *loop;
    assert_int_equal(yd_loop_new(&loop), 0);
    yd_timer *timer;
    assert_int_equal(yd_timer_new(loop, never, NULL, &timer), 0);
    assert_int_equal(yd_timer_start(timer, PENDING_TIMER_MS, 0), 0);
    assert_int_equal(yd_loop_free(loop), 0);
}

/* A connection whose on_close frees a timer of its own (as echo's --delay does): the timer is
 * still valid then, and freed once (ASan and valgrind report a double free or a leak). */
static void free_my_timer(yd_conn *conn, int status)
{
    (void)status;
    yd_timer *timer = yd_conn_data(conn);
    yd_timer_free(timer);
}

static const yd_protocol timer_owner = {.on_close = free_my_timer};

static void test_loop_free_lets_on_close_free_a_timer_of_the_connection(void **state)
{
    (void)state;
    yd_loop *loop;
    assert_int_equal(yd_loop_new(&loop), 0);
    yd_timer *timer;
    assert_int_equal(yd_timer_new(loop, never, NULL, &timer), 0);
    assert_int_equal(yd_timer_start(timer, PENDING_TIMER_MS, 0), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    yd_conn *conn;
    assert_int_equal(yd_conn_open_fd(loop, sv[0], &timer_owner, timer, &conn), 0);
    assert_int_equal(yd_loop_free(loop), 0);
    close(sv[1]);
}

/* A call queued while the loop was stopped runs during yd_loop_free, on a loop that can still
 * make handles: here a timer, which the free then closes without running. */
static void make_a_timer(yd_loop *loop, void *data)
{
    int *ran = data;
    yd_timer *timer;
    assert_int_equal(yd_timer_new(loop, never, NULL, &timer), 0);
    assert_int_equal(yd_timer_start(timer, PENDING_TIMER_MS, 0), 0);
    (*ran)++;
}

static void test_loop_free_runs_a_pending_threadsafe_call_that_makes_a_timer(void **state)
{
    (void)state;
    yd_loop *loop;
    assert_int_equal(yd_loop_new(&loop), 0);
    int ran = 0;
    assert_int_equal(yd_loop_call_threadsafe(loop, make_a_timer, &ran), 0);
    assert_int_equal(yd_loop_free(loop), 0);
    assert_int_equal(ran, 1);
}

/* ---- yd_loop_free: what an on_close it runs tries to start is refused ----------------------- */

/* yd_loop_free that never returned would hang the test: the loop's wakeup is closed by then, so
 * watchdog.h cannot stop it; an alarm ends the process instead. */
#define FREE_BOUND_S 10

static void on_free_alarm(int signum)
{
    (void)signum;
    static const char msg[] = "yd_loop_free did not return: it waits for what on_close started\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

static int free_bounded(yd_loop *loop)
{
    signal(SIGALRM, on_free_alarm);
    alarm(FREE_BOUND_S);
    int r = yd_loop_free(loop);
    alarm(0);
    return r;
}

struct restart {
    int port;   /* 0: start a repeating timer; else reconnect to 127.0.0.1:port */
    int result; /* what the start returned */
    int tries;
};

static void never_fires(yd_timer *timer, void *data)
{
    (void)timer;
    (void)data;
    fail_msg("a timer started by on_close during yd_loop_free fired");
}

static const yd_protocol restarting;

static void restart_on_close(yd_conn *conn, int status)
{
    (void)status;
    struct restart *r = yd_conn_data(conn);
    r->tries++;
    if (r->port == 0) {
        yd_timer *timer;
        r->result = yd_timer_new(yd_conn_loop(conn), never_fires, NULL, &timer);
        return;
    }
    char addr[32];
    yd_conn *again;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", r->port);
    r->result = yd_conn_connect(yd_conn_loop(conn), addr, &restarting, r, &again);
}

static const yd_protocol restarting = {.on_close = restart_on_close};

static void free_with_a_restarting_connection(struct restart *r)
{
    yd_loop *loop;
    assert_int_equal(yd_loop_new(&loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    yd_conn *conn;
    assert_int_equal(yd_conn_open_fd(loop, sv[0], &restarting, r, &conn), 0);
    assert_int_equal(free_bounded(loop), 0);
    close(sv[1]);
    assert_int_equal(r->tries, 1);
    assert_int_equal(r->result, -ECANCELED);
}

static void test_loop_free_refuses_a_timer_that_on_close_starts_and_returns(void **state)
{
    (void)state;
    struct restart r = {0};
    free_with_a_restarting_connection(&r);
}

static void test_loop_free_refuses_a_reconnect_from_on_close_and_returns(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0); /* it would accept: the reconnect would stay open */
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    struct restart r = {.port = ntohs(a.sin_port)};
    free_with_a_restarting_connection(&r);
    close(fd);
}

static void test_constructors_refuse_what_they_cannot_make(void **state)
{
    (void)state;
    yd_loop *loop;
    yd_timer *timer;
    yd_conn_limit *limit;
    assert_int_equal(yd_loop_new(NULL), -EINVAL);
    assert_int_equal(yd_stats_new(NULL), -EINVAL);
    assert_int_equal(yd_conn_limit_new(0, &limit), -EINVAL); /* no limit: no yd_conn_limit */
    assert_int_equal(yd_loop_new(&loop), 0);
    assert_int_equal(yd_timer_new(loop, NULL, NULL, &timer), -EINVAL);
    assert_int_equal(yd_loop_free(loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_from_another_thread_run_in_order_on_the_loop_thread),
        cmocka_unit_test(test_drain_closes_the_servers_and_run_returns),
        cmocka_unit_test(test_drain_closes_a_quiet_connection_and_run_returns),
        cmocka_unit_test(test_loop_free_runs_on_close_of_every_open_connection),
        cmocka_unit_test(test_loop_free_closes_servers_and_signal_watchers_left_open),
        cmocka_unit_test(test_loop_free_closes_a_running_timer_without_running_it),
        cmocka_unit_test(test_loop_free_lets_on_close_free_a_timer_of_the_connection),
        cmocka_unit_test(test_loop_free_runs_a_pending_threadsafe_call_that_makes_a_timer),
        cmocka_unit_test(test_loop_free_refuses_a_timer_that_on_close_starts_and_returns),
        cmocka_unit_test(test_loop_free_refuses_a_reconnect_from_on_close_and_returns),
        cmocka_unit_test(test_constructors_refuse_what_they_cannot_make),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
