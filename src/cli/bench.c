/*
 * yodel bench: a load generator for any echo server.
 *
 * Each thread runs one yd_loop with its share of the connections. A connection keeps
 * DEPTH messages in flight (closed loop), or sends on a fixed schedule (--rate, open
 * loop, latency from the intended send time as wrk2 does, and how late each send went
 * out recorded as the send lag). Every message is SIZE bytes carrying its sequence
 * number and connection index (bench_codec.h). Stream echoes are compared piece by
 * piece where they land, datagrams whole; nothing is allocated per message.
 *
 * A thread's run: connect (batches of CONNECT_BATCH) -> wait for main's start -> warmup
 * -> measure for -t -> stop sending, wait for what is in flight -> close -> loop ends.
 * It ends early on Ctrl-C, or when every connection of the thread has ended (nothing is
 * left to measure). Reports: text or one JSON object (bench_json.h escapes its strings).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_codec.h"
#include "bench_json.h"
#include "cli.h"
#include "histogram.h"
#include "yodel.h"

static const char usage[] =
    "usage: yodel bench [-c ADDR] [-n CONNS] [-s SIZE] [-p DEPTH] [-t DURATION]\n"
    "                   [--warmup DURATION] [--rate N] [--udp] [--threads N] [--timeout D]\n"
    "                   [--json]\n"
    "\n"
    "Load an echo server and report round trips/s, MB/s and latency percentiles.\n"
    "Every echoed byte is checked; any mismatch, reset, unexpected close, timeout,\n"
    "lost or duplicated datagram or failed connect makes the exit status 1.\n"
    "\n"
    "  -c, --connect ADDR        server: HOST:PORT, udp://HOST:PORT, unix:PATH\n"
    "                            (127.0.0.1:8888)\n"
    "  -n, --connections CONNS   connections, opened in batches of 64 per thread (50)\n"
    "  -s, --size SIZE           message size in bytes, its final '\\n' included (64;\n"
    "                            2 to 1m, 65507 for UDP)\n"
    "  -p, --depth DEPTH         messages in flight per connection (1; SIZE * DEPTH <= 1m)\n"
    "  -t, --duration DURATION   how long to measure (10s)\n"
    "      --warmup DURATION     load without measuring first (1s)\n"
    "      --rate N              open loop: N round trips/s in total, spread evenly over\n"
    "                            the connections and scheduled with 1 ms resolution;\n"
    "                            latency counts from when each message was due\n"
    "                            (coordinated omission corrected). The report gives the\n"
    "                            rate offered and the send lag (how late sends went out);\n"
    "                            offering less than 90 % of N is a failure (exit 1): the\n"
    "                            connections were full, so add connections or depth\n"
    "      --udp                 use UDP (same as -c udp://HOST:PORT); lost and duplicated\n"
    "                            datagrams are errors, reordered and late ones (back after\n"
    "                            being counted lost) are counted\n"
    "      --threads N           spread the connections over N event loops (1)\n"
    "      --timeout D           a reply later than this is a timeout (2s)\n"
    "      --json                print the report as one JSON object\n"
    "  -h, --help                this help\n"
    "\n"
    "When every connection has ended (the server closed or died), the run stops at once,\n"
    "reports its rates over the time it was live, and exits 1.\n"
    "The report goes to stdout; a progress line goes to stderr when it is a terminal.\n"
    "Latency percentiles come from a log-linear histogram (within 0.8 %).\n";

static void mark(worker *w, int *flag, unsigned *count)
{
    bench *b = w->b;
    pthread_mutex_lock(&b->lock);
    if (!*flag) {
        *flag = 1;
        (*count)++;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
}

static void connect_next(worker *w);

/* A connect ended, up or not: room for the next one. */
void worker_connect_done(worker *w)
{
    w->connecting--;
    connect_next(w);
}

static void end_recording(worker *w);

/* Nothing is left to measure: the run ends now, its rates over the time it was live. */
static void end_dead(worker *w)
{
    w->all_dead = 1;
    end_recording(w);
}

/*
 * A connection that was up has closed: the loop stops after the last one once finishing; the
 * run ends when none is left, or finishes when stopping and nothing is in flight.
 */
void worker_conn_closed(worker *w)
{
    if (w->finishing) {
        if (w->open == 0)
            yd_loop_stop(w->loop);
        return;
    }
    if (w->started && !w->stopping && w->open == 0)
        end_dead(w);
    else if (w->stopping && w->inflight == 0)
        worker_finish(w);
}

/* Keeps at most CONNECT_BATCH connects outstanding; tells main when all are done. */
static void connect_next(worker *w)
{
    while (w->connecting < CONNECT_BATCH && w->next_connect < w->nclients &&
           !atomic_load(&w->b->interrupted)) {
        client *c = &w->clients[w->next_connect++];
        w->connecting++;
        w->open++;
        int rc = client_connect(c);
        if (rc < 0) {
            /* The name is resolved before connecting: a failure here (no such host, ...)
             * would be the same for every connection, each after its own wait on the
             * resolver. The rest of this thread's connections fail with it. */
            w->connecting--;
            w->open--;
            w->cnt.connect += 1 + (w->nclients - w->next_connect);
            w->next_connect = w->nclients;
            if (w->first_connect_error == 0)
                w->first_connect_error = rc;
        }
    }
    if (w->connecting == 0 && !w->ready)
        mark(w, &w->ready, &w->b->ready);
}

static void begin_recording(worker *w)
{
    hist_reset(&w->hist);
    w->cnt.round_trips = 0;
    w->recording = 1;
    w->record_start_ns = now_ns();
    yd_timer_start(w->phase, w->b->cfg.duration_ms, 0);
}

static void end_recording(worker *w)
{
    if (w->stopping)
        return;
    if (w->recording)
        w->record_end_ns = now_ns();
    w->recording = 0;
    w->stopping = 1;
    yd_timer_stop(w->phase);
    if (w->inflight == 0)
        worker_finish(w);
}

static void on_phase(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    if (!w->recording)
        begin_recording(w);
    else
        end_recording(w);
}

/* Closes every connection; the loop stops when the last on_close has run. */
void worker_finish(worker *w)
{
    if (w->finishing)
        return;
    w->finishing = 1;
    yd_timer_free(w->tick);
    yd_timer_free(w->phase);
    w->tick = w->phase = NULL;
    if (w->sigint != NULL) {
        yd_signal_free(w->sigint);
        yd_signal_free(w->sigterm);
        w->sigint = w->sigterm = NULL;
    }
    for (size_t i = 0; i < w->nclients; i++)
        client_close(&w->clients[i]);
    if (w->open == 0)
        yd_loop_stop(w->loop);
}

static void on_tick(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    uint64_t now = now_ns();
    if (!w->started) {
        /* A connect the kernel does not answer (a full backlog) must not hang the run. */
        uint64_t limit = (w->b->cfg.timeout_ms > 10000 ? w->b->cfg.timeout_ms : 10000) * 1000000u;
        if (now - w->connect_start_ns > limit || atomic_load(&w->b->interrupted)) {
            for (size_t i = 0; i < w->nclients; i++)
                client_abort_connect(&w->clients[i]);
        }
        return;
    }
    if (atomic_load(&w->b->interrupted))
        end_recording(w);
    for (size_t i = 0; i < w->nclients; i++)
        client_check_timeouts(&w->clients[i], now);
    if (w->stopping) {
        if (w->inflight == 0)
            worker_finish(w);
        return;
    }
    for (size_t i = 0; i < w->nclients; i++)
        client_on_tick(&w->clients[i], now);
}

static void on_start(yd_loop *loop, void *data)
{
    (void)loop;
    worker *w = data;
    const config *cfg = &w->b->cfg;
    uint64_t now = now_ns();
    w->started = 1;
    if (atomic_load(&w->b->abort_run) || atomic_load(&w->b->interrupted)) {
        w->stopping = 1;
        worker_finish(w);
        return;
    }
    if (w->open == 0) {
        /* None of this thread's connections came up, or all ended while the others connected. */
        end_dead(w);
        return;
    }
    if (cfg->rate > 0) {
        double per_conn = (double)cfg->rate / (double)cfg->conns;
        w->interval_ns = (uint64_t)(1e9 / per_conn);
        if (w->interval_ns == 0)
            w->interval_ns = 1;
        yd_timer_start(w->tick, 1, 1);
    } else {
        yd_timer_start(w->tick, 10, 10);
    }
    /* Without a warmup, the first sends are measured too. */
    if (cfg->warmup_ms == 0)
        begin_recording(w);
    else
        yd_timer_start(w->phase, cfg->warmup_ms, 0);
    for (size_t i = 0; i < w->nclients; i++)
        client_start(&w->clients[i], now);
}

/* The first Ctrl-C ends the run early, with a report; each loop's tick notices it. */
static void on_signal(yd_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    bench *b = ((worker *)data)->b;
    if (atomic_exchange(&b->interrupted, 1))
        _exit(130);
}

static int worker_setup(worker *w)
{
    const config *cfg = &w->b->cfg;
    size_t first = cfg->conns * w->id / cfg->threads;
    size_t last = cfg->conns * (w->id + 1) / cfg->threads;
    w->nclients = last - first;
    size_t per = client_mem_size(cfg);
    w->clients = calloc(w->nclients, sizeof *w->clients);
    w->arena = malloc(w->nclients * per + 16);
    if (w->clients == NULL || w->arena == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < w->nclients; i++)
        client_init(&w->clients[i], w, (uint32_t)(first + i), w->arena + i * per);
    hist_reset(&w->hist);
    hist_reset(&w->send_lag);
    int rc = yd_loop_new(&w->loop);
    if (rc < 0)
        return rc;
    if ((rc = yd_timer_new(w->loop, on_tick, w, &w->tick)) < 0 ||
        (rc = yd_timer_new(w->loop, on_phase, w, &w->phase)) < 0)
        return rc;
    if (w->id == 0 && ((rc = yd_signal_new(w->loop, SIGINT, on_signal, w, &w->sigint)) < 0 ||
                       (rc = yd_signal_new(w->loop, SIGTERM, on_signal, w, &w->sigterm)) < 0))
        return rc;
    /* The tick keeps the loop alive until main says start; it also bounds the connects. */
    yd_timer_start(w->tick, 10, 10);
    w->connect_start_ns = now_ns();
    connect_next(w);
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int rc = worker_setup(w);
    if (rc < 0) {
        w->setup_error = rc;
        mark(w, &w->ready, &w->b->ready);
    } else {
        yd_loop_run(w->loop);
    }
    if (w->loop != NULL)
        yd_loop_free(w->loop);
    int done = 0;
    mark(w, &done, &w->b->done);
    return NULL;
}

/* Waits until *count reaches n or the deadline passes; shows progress on a terminal. */
static int wait_for(bench *b, unsigned *count, unsigned n, uint64_t deadline_ns, int progress)
{
    uint64_t started = now_ns();
    uint64_t last_rt = 0, last_ns = started;
    pthread_mutex_lock(&b->lock);
    while (*count < n) {
        uint64_t now = now_ns();
        if (now >= deadline_ns)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait_ns = progress ? 250000000u : deadline_ns - now;
        if (wait_ns > deadline_ns - now)
            wait_ns = deadline_ns - now;
        ts.tv_sec += (time_t)(wait_ns / 1000000000u);
        ts.tv_nsec += (long)(wait_ns % 1000000000u);
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        if (!progress || *count >= n)
            continue;
        uint64_t rt = 0;
        for (unsigned i = 0; i < b->cfg.threads; i++)
            rt += atomic_load_explicit(&b->workers[i].progress, memory_order_relaxed);
        now = now_ns();
        double secs = (double)(now - started) / 1e9;
        double rate = rt >= last_rt ? (double)(rt - last_rt) * 1e9 / (double)(now - last_ns) : 0;
        const char *phase = secs * 1000 < (double)b->cfg.warmup_ms ? "warmup" : "run";
        fprintf(stderr, "\r\033[K%6.1fs  %-6s  %12.0f round trips/s", secs, phase, rate);
        last_rt = rt;
        last_ns = now;
    }
    int ok = *count >= n;
    pthread_mutex_unlock(&b->lock);
    if (progress)
        fputs("\r\033[K", stderr);
    return ok ? 0 : -ETIMEDOUT;
}

static void parse_options(int argc, char **argv, config *cfg)
{
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, 'c'},
        {"connections", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"depth", required_argument, NULL, 'p'},
        {"duration", required_argument, NULL, 't'},
        {"warmup", required_argument, NULL, 'W'},
        {"rate", required_argument, NULL, 'R'},
        {"udp", no_argument, NULL, 'U'},
        {"threads", required_argument, NULL, 'T'},
        {"timeout", required_argument, NULL, 'O'},
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *cfg = (config){.addr = "127.0.0.1:8888",
                    .conns = 50,
                    .size = 64,
                    .depth = 1,
                    .duration_ms = 10000,
                    .warmup_ms = 1000,
                    .timeout_ms = 2000,
                    .threads = 1};
    int c;
    while ((c = cli_getopt("bench", argc, argv, "c:n:s:p:t:h", longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            exit(EXIT_OK);
        case 'c':
            cfg->addr = opt_addr("bench", "-c", optarg);
            break;
        case 'n':
            cfg->conns = (size_t)opt_long("bench", "-n", optarg, 1, 1000000);
            break;
        case 's':
            cfg->size = (size_t)opt_size("bench", "-s", optarg, CODEC_MIN_SIZE, MAX_WINDOW_BYTES);
            break;
        case 'p':
            cfg->depth = (size_t)opt_long("bench", "-p", optarg, 1, 4096);
            break;
        case 't':
            cfg->duration_ms = opt_duration_ms("bench", "-t", optarg);
            if (cfg->duration_ms == 0)
                usage_error("bench", "-t: the duration must be more than 0");
            break;
        case 'W':
            cfg->warmup_ms = opt_duration_ms("bench", "--warmup", optarg);
            break;
        case 'R':
            cfg->rate = (uint64_t)opt_long("bench", "--rate", optarg, 1, 1000000000);
            break;
        case 'U':
            cfg->udp = 1;
            break;
        case 'T':
            cfg->threads = (unsigned)opt_long("bench", "--threads", optarg, 1, 256);
            break;
        case 'O':
            cfg->timeout_ms = opt_duration_ms("bench", "--timeout", optarg);
            if (cfg->timeout_ms == 0)
                usage_error("bench", "--timeout: the duration must be more than 0");
            break;
        case 'J':
            cfg->json = 1;
            break;
        }
    }
    if (optind < argc)
        usage_error("bench", "unexpected argument '%s'", argv[optind]);
    yd_addr addr;
    yd_addr_parse(cfg->addr, &addr);
    if (addr.transport == YD_UDP)
        cfg->udp = 1;
    if (cfg->udp && addr.transport == YD_UNIX)
        usage_error("bench", "--udp: '%s' is a Unix socket address", cfg->addr);
    if (cfg->udp && cfg->size > 65507)
        usage_error("bench", "-s: %zu is too big for a UDP datagram (65507 at most)", cfg->size);
    if (cfg->size * cfg->depth > MAX_WINDOW_BYTES)
        usage_error("bench", "-s %zu with -p %zu is more than 1m in flight per connection",
                    cfg->size, cfg->depth);
    if (cfg->threads > cfg->conns)
        cfg->threads = (unsigned)cfg->conns;
}

/* Each connection takes a descriptor: lift the soft limit as far as allowed. */
static void raise_fd_limit(size_t conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= conns + 64)
        return;
    rl.rlim_cur = conns + 64 < rl.rlim_max ? conns + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int cmd_bench(int argc, char **argv)
{
    bench *b = calloc(1, sizeof *b);
    if (b == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    parse_options(argc, argv, &b->cfg);
    const config *cfg = &b->cfg;
    yd_addr addr;
    yd_addr_parse(cfg->addr, &addr); /* checked by opt_addr */
    if (cfg->udp)
        addr.transport = YD_UDP;
    yd_addr_format(&addr, b->addr, sizeof b->addr);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg->conns);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->workers = calloc(cfg->threads, sizeof *b->workers);
    if (b->workers == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    unsigned started = 0;
    for (; started < cfg->threads; started++) {
        worker *w = &b->workers[started];
        w->b = b;
        w->id = started;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            break;
    }
    if (started < cfg->threads) {
        fprintf(stderr, "yodel bench: cannot start %u threads\n", cfg->threads);
        _exit(EXIT_RUNTIME);
    }
    int progress = isatty(STDERR_FILENO);
    uint64_t connect_limit_ms = cfg->timeout_ms > 10000 ? cfg->timeout_ms : 10000;
    if (wait_for(b, &b->ready, cfg->threads, now_ns() + (connect_limit_ms + 5000) * 1000000u, 0) <
        0) {
        fprintf(stderr, "yodel bench: connecting to %s did not finish in time\n", b->addr);
        _exit(EXIT_RUNTIME);
    }
    size_t connected = 0;
    int first_error = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        worker *w = &b->workers[i];
        if (w->setup_error < 0) {
            fprintf(stderr, "yodel bench: %s\n", yd_strerror(w->setup_error));
            _exit(EXIT_RUNTIME);
        }
        connected += w->connected;
        if (first_error == 0)
            first_error = w->first_connect_error;
    }
    if (connected == 0)
        atomic_store(&b->abort_run, 1);
    for (unsigned i = 0; i < cfg->threads; i++)
        yd_loop_call_threadsafe(b->workers[i].loop, on_start, &b->workers[i]);
    uint64_t run_ms = cfg->warmup_ms + cfg->duration_ms + cfg->timeout_ms + 10000;
    if (wait_for(b, &b->done, cfg->threads, now_ns() + run_ms * 1000000u, progress) < 0) {
        fprintf(stderr, "yodel bench: the run did not end in time\n");
        _exit(EXIT_RUNTIME);
    }
    for (unsigned i = 0; i < cfg->threads; i++)
        pthread_join(b->workers[i].thread, NULL);
    int status = EXIT_RUNTIME;
    result *r = malloc(sizeof *r);
    if (connected == 0) {
        fprintf(stderr, "yodel bench: cannot connect to %s: %s\n", cfg->addr,
                yd_strerror(first_error));
    } else if (r == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
    } else {
        if (first_error < 0)
            fprintf(stderr, "yodel bench: %zu of %zu connections failed: %s\n",
                    cfg->conns - connected, cfg->conns, yd_strerror(first_error));
        report_merge(b, r);
        report_print(b, r);
        status = report_failed(r) ? EXIT_RUNTIME : EXIT_OK;
    }
    for (unsigned i = 0; i < cfg->threads; i++) {
        free(b->workers[i].clients);
        free(b->workers[i].arena);
    }
    free(b->workers);
    free(r);
    free(b);
    return status;
}
