/*
 * yodel bench: the threads. Each worker runs one yd_loop on its own thread with its share of
 * the connections; main starts the workers, tells them when to begin, and reads their counts
 * once they have ended. A worker's run, with the flag each phase sets:
 *
 *   1. worker_setup(): its clients in one arena, its loop and timers (tick, phase), and on
 *      thread 0 the signals. connect_next() keeps CONNECT_BATCH connects under way, starting
 *      the next as each ends (worker_connect_done()); when none is left, the worker is
 *      `ready` and tells main (mark()). Until then the tick bounds the connects.
 *   2. When every worker is ready, main posts on_start() to each loop (`started`): the tick
 *      now schedules sends (every 1 ms with --rate, else 10 ms) and drops what timed out, and
 *      the phase timer runs the warmup.
 *   3. on_phase(): the warmup is over, begin_recording() (`recording`) for -t; then
 *      end_recording() (`stopping`): no more sends, what is in flight may still come back.
 *   4. worker_finish() (`finishing`) once nothing is in flight (the last echo came back, timed
 *      out or went with its connection): timers and signals freed, every connection closed.
 *      The loop stops after the last on_close(), and worker_main() tells main it is `done`.
 *
 * A worker's run ends early on Ctrl-C (on_signal(); each tick notices), or when all its
 * connections have ended (end_dead()): its rates then count over the time it was live.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "histogram.h"
#include "yodel.h"

/* Connects that take longer than this, or --timeout if longer, are given up. */
#define CONNECT_LIMIT_MS 10000
/* How often main redraws the progress line on a terminal. */
#define PROGRESS_NS 250000000u

static void on_tick(yd_timer *timer, void *data);
static void on_phase(yd_timer *timer, void *data);
static void on_signal(yd_loop *loop, int signum, void *data);
static void connect_next(worker *w);
static void end_recording(worker *w);

/* Sets the worker's *flag once and counts it in *count, for main to wait on. */
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

/* The worker's share of the connections, each with its slots and message in one arena. */
static int worker_alloc_clients(worker *w)
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
    return 0;
}

static int worker_setup(worker *w)
{
    int rc = worker_alloc_clients(w);
    if (rc < 0)
        return rc;
    hist_reset(&w->hist);
    hist_reset(&w->send_lag);
    hist_reset(&w->connect_lat);
    if ((rc = yd_loop_new(&w->loop)) < 0)
        return rc;
    if ((rc = yd_timer_new(w->loop, on_tick, w, &w->tick)) < 0 ||
        (rc = yd_timer_new(w->loop, on_phase, w, &w->phase)) < 0 || (rc = interval_setup(w)) < 0)
        return rc;
    if (w->id == 0 && (rc = yd_loop_on_shutdown_signals(w->loop, on_signal, NULL, w->b)) < 0)
        return rc;
    /* The tick keeps the loop alive until main says start; it also bounds the connects. */
    yd_timer_start(w->tick, 10, 10);
    w->connect_start_ns = now_ns();
    connect_next(w);
    return 0;
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

/* A connect ended, up or not: room for the next one. */
void worker_connect_done(worker *w)
{
    w->connecting--;
    connect_next(w);
}

/*
 * Nothing is left to measure: the run ends now, its rates over the time it was live. With
 * --interval the clock goes on to -t, so that the intervals show the outage (0/s).
 */
static void end_dead(worker *w)
{
    w->all_dead = 1;
    if (w->recording && w->b->cfg.interval_ms != 0) {
        w->record_end_ns = now_ns();
        return;
    }
    end_recording(w);
}

/* --rate: the interval between two sends of one connection, and a 1 ms tick to keep it. */
static void start_schedule(worker *w)
{
    const config *cfg = &w->b->cfg;
    if (cfg->rate > 0) {
        double per_conn = (double)cfg->rate / (double)cfg->conns;
        w->interval_ns = (uint64_t)(1e9 / per_conn);
        if (w->interval_ns == 0)
            w->interval_ns = 1;
        yd_timer_start(w->tick, 1, 1);
    } else {
        yd_timer_start(w->tick, 10, 10);
    }
}

static void begin_recording(worker *w);

/* Posted by main when every worker is ready: the load begins (or the run ends, if none can). */
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
    start_schedule(w);
    /* Without a warmup, the first sends are measured too. */
    if (cfg->warmup_ms == 0)
        begin_recording(w);
    else
        yd_timer_start(w->phase, cfg->warmup_ms, 0);
    for (size_t i = 0; i < w->nclients; i++)
        client_start(&w->clients[i], now);
}

static void begin_recording(worker *w)
{
    hist_reset(&w->hist);
    /* --reconnect-every: the connects measured are those made from now on. */
    if (w->b->cfg.reconnect_every != 0)
        hist_reset(&w->connect_lat);
    w->cnt.round_trips = 0;
    w->recording = 1;
    w->record_start_ns = now_ns();
    yd_timer_start(w->phase, w->b->cfg.duration_ms, 0);
    interval_begin(w);
}

/* Stops sending; the worker finishes when what is in flight has come back or timed out. */
static void end_recording(worker *w)
{
    if (w->stopping)
        return;
    if (w->recording && w->record_end_ns == 0) /* end_dead() may have set it */
        w->record_end_ns = now_ns();
    w->recording = 0;
    w->stopping = 1;
    yd_timer_stop(w->phase);
    interval_end(w);
    if (w->inflight == 0)
        worker_finish(w);
}

/* The phase timer: at the end of the warmup, then at the end of -t. */
static void on_phase(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    if (!w->recording)
        begin_recording(w);
    else
        end_recording(w);
}

/* Before the start: a connect the kernel does not answer (a full backlog) must not hang the run. */
static void check_connect_deadline(worker *w, uint64_t now)
{
    uint64_t limit_ms =
        w->b->cfg.timeout_ms > CONNECT_LIMIT_MS ? w->b->cfg.timeout_ms : CONNECT_LIMIT_MS;
    if (now - w->connect_start_ns > limit_ms * 1000000u || atomic_load(&w->b->interrupted)) {
        for (size_t i = 0; i < w->nclients; i++)
            client_abort_connect(&w->clients[i]);
    }
}

/*
 * Every 10 ms (1 ms with --rate): before the start, bounds the connects; after it, notices
 * Ctrl-C, drops what timed out, then finishes if stopping with nothing in flight, else sends
 * what is due.
 */
static void on_tick(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    uint64_t now = now_ns();
    if (!w->started) {
        check_connect_deadline(w, now);
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

/* Closes every connection; the loop stops when the last on_close has run. */
void worker_finish(worker *w)
{
    if (w->finishing)
        return;
    w->finishing = 1;
    interval_end(w);
    yd_timer_free(w->tick);
    yd_timer_free(w->phase);
    w->tick = w->phase = NULL;
    for (size_t i = 0; i < w->nclients; i++)
        client_close(&w->clients[i]);
    if (w->open == 0)
        yd_loop_stop(w->loop);
}

/*
 * The first SIGINT or SIGTERM ends the run early, with a report (each worker's tick notices
 * `interrupted`); the second exits at once with 128+signal, without one: libyodel's one
 * two-signal policy (yd_loop_on_shutdown_signals, on thread 0's loop).
 */
static void on_signal(yd_loop *loop, int signum, void *data)
{
    (void)loop;
    (void)signum;
    bench *b = data;
    atomic_store(&b->interrupted, 1);
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

/* The CLOCK_REALTIME time wait_ns from now, as pthread_cond_timedwait wants it. */
static struct timespec realtime_after(uint64_t wait_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(wait_ns / 1000000000u);
    ts.tv_nsec += (long)(wait_ns % 1000000000u);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

typedef struct progress {
    uint64_t started_ns;
    uint64_t last_rt; /* round trips at the last line, and when it was drawn */
    uint64_t last_ns;
} progress;

/* Redraws the progress line: seconds since main began waiting, phase, recent round trips/s. */
static void show_progress(const bench *b, progress *p)
{
    uint64_t rt = 0;
    for (unsigned i = 0; i < b->cfg.threads; i++)
        rt += atomic_load_explicit(&b->workers[i].progress, memory_order_relaxed);
    uint64_t now = now_ns();
    double secs = (double)(now - p->started_ns) / 1e9;
    double rate =
        rt >= p->last_rt ? (double)(rt - p->last_rt) * 1e9 / (double)(now - p->last_ns) : 0;
    const char *phase = secs * 1000 < (double)b->cfg.warmup_ms ? "warmup" : "run";
    fprintf(stderr, "\r\033[K%6.1fs  %-6s  %12.0f round trips/s", secs, phase, rate);
    p->last_rt = rt;
    p->last_ns = now;
}

/* Waits until *count reaches n or the deadline passes; shows progress on a terminal. */
static int wait_for(bench *b, unsigned *count, unsigned n, uint64_t deadline_ns, int show)
{
    progress p = {.started_ns = now_ns()};
    p.last_ns = p.started_ns;
    pthread_mutex_lock(&b->lock);
    while (*count < n) {
        uint64_t now = now_ns();
        if (now >= deadline_ns)
            break;
        uint64_t wait_ns = show ? PROGRESS_NS : deadline_ns - now;
        if (wait_ns > deadline_ns - now)
            wait_ns = deadline_ns - now;
        struct timespec ts = realtime_after(wait_ns);
        pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        if (show && *count < n)
            show_progress(b, &p);
    }
    int ok = *count >= n;
    pthread_mutex_unlock(&b->lock);
    if (show)
        fputs("\r\033[K", stderr);
    return ok ? 0 : -ETIMEDOUT;
}

int run_start_threads(bench *b)
{
    const config *cfg = &b->cfg;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->workers = calloc(cfg->threads, sizeof *b->workers);
    if (b->workers == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < cfg->threads; i++) {
        worker *w = &b->workers[i];
        w->b = b;
        w->id = i;
        /* The threads already started hold connections: no orderly way back. */
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            fprintf(stderr, "yodel bench: cannot start %u threads\n", cfg->threads);
            _exit(EXIT_RUNTIME);
        }
    }
    return 0;
}

size_t run_wait_connected(bench *b, int *first_error)
{
    const config *cfg = &b->cfg;
    uint64_t limit_ms = cfg->timeout_ms > CONNECT_LIMIT_MS ? cfg->timeout_ms : CONNECT_LIMIT_MS;
    /* The workers give up their connects at limit_ms: this bounds a worker that hangs. */
    if (wait_for(b, &b->ready, cfg->threads, now_ns() + (limit_ms + 5000) * 1000000u, 0) < 0) {
        fprintf(stderr, "yodel bench: connecting to %s did not finish in time\n", b->addr);
        _exit(EXIT_RUNTIME);
    }
    size_t connected = 0;
    *first_error = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        worker *w = &b->workers[i];
        if (w->setup_error < 0) {
            fprintf(stderr, "yodel bench: %s\n", yd_strerror(w->setup_error));
            _exit(EXIT_RUNTIME);
        }
        connected += w->connected;
        if (*first_error == 0)
            *first_error = w->first_connect_error;
    }
    return connected;
}

void run_measure(bench *b, size_t connected)
{
    const config *cfg = &b->cfg;
    /* --interval lines say the same, and on a terminal the two would overwrite each other. */
    int progress = isatty(STDERR_FILENO) && cfg->interval_ms == 0;
    if (connected == 0)
        atomic_store(&b->abort_run, 1);
    for (unsigned i = 0; i < cfg->threads; i++)
        yd_loop_call_threadsafe(b->workers[i].loop, on_start, &b->workers[i]);
    /* The workers end by themselves well within this: it bounds one that hangs. */
    uint64_t run_ms = cfg->warmup_ms + cfg->duration_ms + cfg->timeout_ms + 10000;
    if (wait_for(b, &b->done, cfg->threads, now_ns() + run_ms * 1000000u, progress) < 0) {
        fprintf(stderr, "yodel bench: the run did not end in time\n");
        _exit(EXIT_RUNTIME);
    }
    for (unsigned i = 0; i < cfg->threads; i++)
        pthread_join(b->workers[i].thread, NULL);
}

void run_free(bench *b)
{
    for (unsigned i = 0; i < b->cfg.threads; i++) {
        free(b->workers[i].clients);
        free(b->workers[i].arena);
    }
    free(b->workers);
    if (b->tls != NULL)
        yd_tls_free(b->tls);
}
