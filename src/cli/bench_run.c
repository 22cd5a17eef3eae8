/*
 * yodel bench: the threads. Each worker runs one yd_loop on its own thread with its share of
 * the connections; main starts the workers, tells them when to begin, and reads their counts
 * once they have ended. A worker's run, with the flag each phase sets:
 *
 *   1. worker_setup(): its clients in one arena, its loop and timers (tick, phase), and on
 *      thread 0 the signals. connect_next() keeps CONNECT_BATCH connects under way, starting
 *      the next as each ends (worker_connect_done()) or, with --connect-rate, as each comes
 *      due on the tick; when none is left, the worker is `ready` and tells main (mark()).
 *      Until then the tick bounds each connect's time.
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
 *
 * --find-max (bench_findmax.c) repeats 2 and 3 as steps: at 4, worker_drained() marks the
 * step done instead (`step_done`: the worker idles, its connections open), main reads the
 * step's counts and posts on_start() again at the next rate, or on_finish().
 * --connect-rate paces connects on the tick: the first ones, and with --reconnect-every the
 * reconnects, which wait for their turn in a ring (worker_wait_turn(), take_turns()).
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
/* The --find-max step a worker may take beyond its -t and warmup before main gives up on it. */
#define STEP_SLACK_MS 10000
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
    if (w->clients == NULL || w->arena == NULL || load_alloc_tally(w) < 0)
        return -ENOMEM;
    if (cfg->connect_rate != 0 && cfg->reconnect_every != 0 &&
        (w->waiting = calloc(w->nclients + 1, sizeof *w->waiting)) == NULL)
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
    /* The tick keeps the loop alive until main says start; it also bounds the connects and
     * with --connect-rate keeps their pace (each thread its share, the threads staggered). */
    const config *cfg = &w->b->cfg;
    yd_timer_start(w->tick, cfg->connect_rate ? 1 : 10, cfg->connect_rate ? 1 : 10);
    w->connect_start_ns = now_ns();
    if (cfg->connect_rate != 0) {
        w->connect_interval_ns = (uint64_t)(1e9 * cfg->threads / (double)cfg->connect_rate);
        w->next_connect_ns = w->connect_start_ns + w->connect_interval_ns * w->id / cfg->threads;
    }
    connect_next(w);
    return 0;
}

/*
 * Whether a connect that could not start failed for its source address (--bind: not local, of
 * the other family, its port taken), which the connections from other sources do not share.
 */
static int source_failed(const worker *w, const client *c, int rc)
{
    return load_source(w->b, c->index) != NULL &&
           (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT || rc == -EADDRINUSE || rc == -EINVAL ||
            rc == -EACCES);
}

/*
 * A connect that cannot start counts against the client's target too (-c repeated); unless its
 * source address was the cause, the target's next connects on this thread are not tried.
 */
static void count_connect_error(worker *w, const client *c, int rc)
{
    int shared = !source_failed(w, c, rc);
    w->cnt.connect++;
    if (w->tally != NULL) {
        w->tally[c->target].cnt.connect++;
        if (shared)
            w->tally[c->target].connect_error = rc;
    } else if (shared) {
        w->start_error = rc;
    }
    if (w->first_connect_error == 0)
        w->first_connect_error = rc;
}

/*
 * Whether a connect could not start. The name is resolved before connecting: a failure here (no
 * such host, ...) would be the same for every connection to that target, each after its own
 * wait on the resolver. So the target's other connections on this thread fail with it, without
 * trying (with one target: the rest of the thread's); not when the source address (--bind) was
 * the cause, as the connections from the other sources may well come up.
 */
static int connect_one(worker *w, client *c)
{
    int known = w->tally != NULL ? w->tally[c->target].connect_error : w->start_error;
    int rc = known < 0 ? known : client_connect(c);
    if (rc < 0) {
        c->state = CLIENT_DEAD;
        count_connect_error(w, c, rc);
    }
    return rc;
}

/*
 * Keeps at most CONNECT_BATCH connects outstanding and, with --connect-rate, starts each when it
 * comes due (the tick calls again); tells main when all are done.
 */
static void connect_next(worker *w)
{
    uint64_t now = w->connect_interval_ns != 0 ? now_ns() : 0;
    while (w->connecting < CONNECT_BATCH && w->next_connect < w->nclients &&
           !atomic_load(&w->b->interrupted)) {
        if (w->connect_interval_ns != 0 && w->next_connect_ns > now)
            break;
        w->next_connect_ns += w->connect_interval_ns;
        client *c = &w->clients[w->next_connect++];
        w->connecting++;
        w->open++;
        if (connect_one(w, c) < 0) {
            w->connecting--;
            w->open--;
        }
    }
    int all = w->next_connect == w->nclients || atomic_load(&w->b->interrupted);
    if (w->connecting == 0 && all && !w->ready) {
        w->ready_ns = now_ns();
        mark(w, &w->ready, &w->b->ready);
    }
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

/* The interval between two sends of one connection at rate round trips/s in all. */
static uint64_t interval_at(const config *cfg, double rate)
{
    uint64_t ns = (uint64_t)(1e9 * (double)cfg->conns / rate);
    return ns > 0 ? ns : 1;
}

/*
 * --rate: the interval between two sends of one connection (at --find-max's step rate, or where
 * a --ramp starts), and a 1 ms tick to keep it; --connect-rate needs that tick too.
 */
static void start_schedule(worker *w)
{
    const config *cfg = &w->b->cfg;
    double rate = cfg->find_max ? (double)w->b->step_rate : (double)cfg->rate_from;
    w->interval_ns = rate > 0 ? interval_at(cfg, rate) : 0;
    w->next_connect_ns = now_ns();
    if (w->interval_ns != 0 || w->connect_interval_ns != 0)
        yd_timer_start(w->tick, 1, 1);
    else
        yd_timer_start(w->tick, 10, 10);
}

/* --find-max: a step after the first starts afresh: counts, latencies, and the connections
 * that ended (dropped, or closed after their N as the last step stopped) connect again. */
static void start_step(worker *w)
{
    w->cnt = (counters){0};
    hist_reset(&w->hist);
    hist_reset(&w->send_lag);
    for (size_t t = 0; w->tally != NULL && t < w->b->cfg.ntargets; t++) {
        w->tally[t].cnt = (counters){0};
        hist_reset(&w->tally[t].hist);
    }
    w->record_start_ns = w->record_end_ns = 0;
    w->stopping = 0;
    w->step_done = 0;
    for (size_t i = 0; i < w->nclients; i++) {
        client *c = &w->clients[i];
        if (c->state != CLIENT_DEAD) {
            client_revive(c); /* --reconnect-every: its N done, it reconnects */
            continue;
        }
        w->open++;
        int rc = client_revive(c);
        if (rc < 0) {
            w->open--;
            count_connect_error(w, c, rc);
        }
    }
}

static void begin_recording(worker *w);

/* Posted by main when every worker is ready: the load begins (or the run ends, if none can). */
static void on_start(yd_loop *loop, void *data)
{
    (void)loop;
    worker *w = data;
    const config *cfg = &w->b->cfg;
    if (w->started)
        start_step(w);
    uint64_t now = now_ns();
    w->started = 1;
    if (atomic_load(&w->b->abort_run) || atomic_load(&w->b->interrupted)) {
        /* No connection came up: the end. Ctrl-C: the end too, or of this --find-max step. */
        w->stopping = 1;
        if (atomic_load(&w->b->abort_run))
            worker_finish(w);
        else
            worker_drained(w);
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
    for (size_t t = 0; w->tally != NULL && t < w->b->cfg.ntargets; t++) {
        hist_reset(&w->tally[t].hist);
        w->tally[t].cnt.round_trips = 0;
    }
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
        worker_drained(w);
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

static uint64_t connect_limit_ms(const config *cfg)
{
    return cfg->timeout_ms > CONNECT_LIMIT_MS ? cfg->timeout_ms : CONNECT_LIMIT_MS;
}

/*
 * Before the start: a connect the kernel does not answer (a full backlog) must not hang the run,
 * so each has its time limit (on Ctrl-C, none). Connects start in the clients' order, so the
 * first one still connecting is the oldest: the scan stops at the first young one.
 */
static void check_connect_deadline(worker *w, uint64_t now)
{
    uint64_t limit_ns = connect_limit_ms(&w->b->cfg) * 1000000u;
    int all = atomic_load(&w->b->interrupted);
    for (size_t i = w->oldest_connect; i < w->next_connect; i++) {
        client *c = &w->clients[i];
        if (c->state != CLIENT_CONNECTING) {
            if (i == w->oldest_connect)
                w->oldest_connect++;
            continue;
        }
        /* (connect_ns may be after now: connect_next() ran since.) */
        if (!all && c->connect_ns + limit_ns >= now)
            break;
        /* Our own abort would read "software caused connection abort": say why instead. */
        if (w->first_connect_error == 0)
            w->first_connect_error = all ? -ECANCELED : -ETIMEDOUT;
        client_abort_connect(c);
    }
}

/* --connect-rate: the clients waiting to reconnect whose turn has come connect again. */
static void take_turns(worker *w, uint64_t now)
{
    size_t n = w->nclients + 1;
    while (w->waiting_len > 0 && w->next_connect_ns <= now) {
        client *c = &w->clients[w->waiting[w->waiting_head]];
        w->waiting_head = (w->waiting_head + 1) % n;
        w->waiting_len--;
        w->next_connect_ns += w->connect_interval_ns;
        client_take_turn(c);
    }
    /* No turns are saved up while nobody waits: the pace stays R/s, never a burst. */
    if (w->waiting_len == 0 && w->next_connect_ns < now)
        w->next_connect_ns = now;
}

void worker_wait_turn(worker *w, client *c)
{
    size_t n = w->nclients + 1;
    w->waiting[(w->waiting_head + w->waiting_len) % n] = (uint32_t)(c - w->clients);
    w->waiting_len++;
}

/* --rate A:B --ramp D: the send interval follows the ramp, from the measuring on (1 ms steps). */
static void follow_ramp(worker *w, uint64_t now)
{
    const config *cfg = &w->b->cfg;
    if (cfg->ramp_ms != 0 && w->recording)
        w->interval_ns = interval_at(cfg, load_rate_at(cfg, now - w->record_start_ns));
}

/*
 * Every 10 ms (1 ms with --rate or --connect-rate): before the start, paces and bounds the
 * connects; after it, notices Ctrl-C, drops what timed out, then finishes if stopping with
 * nothing in flight, else lets waiting clients reconnect, follows the ramp and sends what is
 * due. Between --find-max steps it does nothing: main decides what comes next.
 */
static void on_tick(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    uint64_t now = now_ns();
    if (!w->started) {
        connect_next(w);
        check_connect_deadline(w, now);
        return;
    }
    if (w->step_done)
        return;
    if (atomic_load(&w->b->interrupted))
        end_recording(w);
    for (size_t i = 0; i < w->nclients; i++)
        client_check_timeouts(&w->clients[i], now);
    if (w->stopping) {
        if (w->inflight == 0)
            worker_drained(w);
        return;
    }
    if (w->waiting != NULL)
        take_turns(w, now);
    follow_ramp(w, now);
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
        worker_drained(w);
}

/*
 * The run is stopping and nothing is in flight: the worker finishes, or with --find-max the
 * step is over: the worker tells main and idles, its connections open (a second call, from a
 * connection closing meanwhile, changes nothing). main then posts the next step or the end.
 */
void worker_drained(worker *w)
{
    if (!w->b->cfg.find_max) {
        worker_finish(w);
        return;
    }
    if (w->step_done)
        return;
    mark(w, &w->step_done, &w->b->steps_done);
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
    uint64_t limit_ms = connect_limit_ms(cfg);
    /* --connect-rate: the connects take conns / rate seconds to start. */
    if (cfg->connect_rate != 0)
        limit_ms += cfg->conns * 1000 / cfg->connect_rate;
    /* The workers give up each connect at its limit: this bounds a worker that hangs. */
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

/* Waits for every worker's end and its thread. */
static void wait_done(bench *b, uint64_t limit_ms, int progress)
{
    if (wait_for(b, &b->done, b->cfg.threads, now_ns() + limit_ms * 1000000u, progress) < 0) {
        fprintf(stderr, "yodel bench: the run did not end in time\n");
        _exit(EXIT_RUNTIME);
    }
    for (unsigned i = 0; i < b->cfg.threads; i++)
        pthread_join(b->workers[i].thread, NULL);
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
    wait_done(b, run_ms, progress);
}

int run_step(bench *b)
{
    const config *cfg = &b->cfg;
    pthread_mutex_lock(&b->lock);
    b->steps_done = 0;
    pthread_mutex_unlock(&b->lock);
    for (unsigned i = 0; i < cfg->threads; i++)
        yd_loop_call_threadsafe(b->workers[i].loop, on_start, &b->workers[i]);
    uint64_t step_ms = cfg->warmup_ms + cfg->duration_ms + cfg->timeout_ms + STEP_SLACK_MS;
    return wait_for(b, &b->steps_done, cfg->threads, now_ns() + step_ms * 1000000u,
                    isatty(STDERR_FILENO));
}

/* Posted by main after the last --find-max step. */
static void on_finish(yd_loop *loop, void *data)
{
    (void)loop;
    worker_finish(data);
}

void run_end_steps(bench *b)
{
    for (unsigned i = 0; i < b->cfg.threads; i++)
        yd_loop_call_threadsafe(b->workers[i].loop, on_finish, &b->workers[i]);
    wait_done(b, b->cfg.timeout_ms + STEP_SLACK_MS, 0);
}

void run_free(bench *b)
{
    for (unsigned i = 0; i < b->cfg.threads; i++) {
        free(b->workers[i].clients);
        free(b->workers[i].arena);
        free(b->workers[i].tally);
        free(b->workers[i].waiting);
    }
    free(b->workers);
    if (b->tls != NULL)
        yd_tls_free(b->tls);
}
