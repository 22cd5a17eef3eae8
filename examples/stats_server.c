/*
 * stats_server - the tutorials' statistics server: a line echo server that counts the messages
 * of every client and prints messages per second, once a second. It teaches yd_stats (counters
 * a server keeps for you: here the line echo of yd_echo_listen), a repeating timer and
 * yd_loop_now_ms.
 *
 * Test with: ./stats_server &  then  yes hello | nc 127.0.0.1 8888 > /dev/null  (five of them)
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

static void on_tick(yd_timer *timer, void *data)
{
    report *r = data;
    (void)timer;
    yd_stats_snapshot now = {0}; /* yd_stats_add_to adds to it */
    uint64_t now_ms = yd_loop_now_ms(r->loop);
    yd_stats_add_to(r->stats, &now);
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
    const yd_echo_options echo = {.mode = YD_ECHO_LINE}; /* each line back as it came */
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    report r = {0};
    yd_server_options options = {0};
    yd_server *server;
    yd_timer *tick;
    yd_signal *sigint, *sigterm;
    char name[YD_ADDR_TEXT_BYTES];
    int err;

    signal(SIGPIPE, SIG_IGN); /* a client gone while we write is an error, not our death */
    if ((err = yd_loop_new(&r.loop)) < 0 || (err = yd_stats_new(&r.stats)) < 0) {
        fprintf(stderr, "stats_server: %s\n", yd_strerror(err));
        return 1;
    }
    options.stats = r.stats;
    r.last_ms = yd_loop_now_ms(r.loop);
    if ((err = yd_echo_listen(r.loop, addr, &echo, &options, &server)) < 0 ||
        (err = yd_server_address(server, 0, name, sizeof(name))) < 0 ||
        (err = yd_timer_new(r.loop, on_tick, &r, &tick)) < 0 ||
        (err = yd_signal_new(r.loop, SIGINT, on_signal, r.loop, &sigint)) < 0 ||
        (err = yd_signal_new(r.loop, SIGTERM, on_signal, r.loop, &sigterm)) < 0 ||
        (err = yd_timer_start(tick, 1000, 1000)) < 0) {
        fprintf(stderr, "stats_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(r.loop); /* until SIGINT or SIGTERM stops it */
    yd_timer_free(tick);
    yd_signal_free(sigint);
    yd_signal_free(sigterm);
    yd_server_close(server);
    if (yd_loop_free(r.loop) < 0)
        err = -1;
    yd_stats_free(r.stats); /* after the loop: closing connections still count into it */
    return err < 0;
}
