/*
 * stats_server - the tutorials' statistics server: a line echo server whose connections count
 * into a yd_stats, and a repeating timer that prints messages per second once a second.
 *
 *   ./stats_server [ADDR]       default 127.0.0.1:8888; stop with Ctrl-C
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <yodel.h>

typedef struct report {
    yd_loop *loop;
    yd_stats *stats;
    uint64_t last_messages, last_ms;
} report;

static void on_connect(yd_conn *conn)
{
    yd_conn_set_read_mode(conn, YD_READ_LINE, 64 * 1024);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    yd_conn_write(conn, data, len); /* the server counts the message, the bytes in and out */
}

static void on_tick(yd_timer *timer, void *data)
{
    report *r = data;
    (void)timer;
    yd_stats_snapshot now = {0}; /* yd_stats_read adds into it */
    uint64_t now_ms = yd_loop_now_ms(r->loop);
    yd_stats_read(r->stats, &now);
    double seconds = (double)(now_ms - r->last_ms) / 1000.0;
    fprintf(stderr,
            "%.0f messages/s, %" PRIu64 " messages in total, %" PRIu64 " connections open\n",
            (double)(now.messages - r->last_messages) / (seconds > 0 ? seconds : 1), now.messages,
            now.conns_active);
    r->last_messages = now.messages;
    r->last_ms = now_ms;
}

static void on_signal(yd_signal *signal, int signum, void *loop)
{
    (void)signal, (void)signum;
    yd_loop_stop(loop);
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {.on_connect = on_connect, .on_data = on_data};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    report r = {0};
    yd_server_options options = {.protocol = &echo};
    yd_server *server;
    yd_timer *tick;
    yd_signal *sigint, *sigterm;
    char name[128];
    int err;

    if ((err = yd_loop_new(&r.loop)) < 0 || (err = yd_stats_new(&r.stats)) < 0)
        return 1;
    options.stats = r.stats;
    if ((err = yd_server_listen(r.loop, addr, &options, &server)) < 0 ||
        (err = yd_timer_new(r.loop, on_tick, &r, &tick)) < 0 ||
        (err = yd_signal_new(r.loop, SIGINT, on_signal, r.loop, &sigint)) < 0 ||
        (err = yd_signal_new(r.loop, SIGTERM, on_signal, r.loop, &sigterm)) < 0) {
        fprintf(stderr, "stats_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    yd_server_address(server, 0, name, sizeof(name));
    printf("listening on %s\n", name);
    fflush(stdout);
    r.last_ms = yd_loop_now_ms(r.loop);
    yd_timer_start(tick, 1000, 1000);
    err = yd_loop_run(r.loop);
    yd_timer_free(tick);
    yd_signal_free(sigint);
    yd_signal_free(sigterm);
    yd_server_close(server);
    if (yd_loop_free(r.loop) < 0)
        err = -1;
    yd_stats_free(r.stats); /* after the loop: closing connections still count into it */
    return err < 0;
}
