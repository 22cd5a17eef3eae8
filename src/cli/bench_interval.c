/*
 * yodel bench --interval D: one line (or JSON object) per interval while the run goes.
 *
 * Nothing is added to the path of a message: the interval figures are differences of the run
 * totals every worker keeps anyway (its latency histogram and counters). The hand-over:
 *   1. At each interval's end a timer on the worker's own loop (on_boundary) copies its totals
 *      into w->ivl under the printer's lock, once per interval (publish()), and wakes the
 *      printer. When recording ends (interval_end) the last, maybe partial, copy is marked
 *      final.
 *   2. The printer thread (printer_main) waits until every worker has handed over the interval
 *      it prints next, or a quarter interval after the first one did (a worker held up by
 *      its load shows its round trips in the next line instead: nothing is lost, as each copy
 *      is a running total).
 *   3. It copies the workers' totals out under the lock (take()), subtracts the previous ones
 *      outside it (hist_diff), and prints: round trips/s add up over the workers, each over
 *      its own interval; p50 and p99 come from the workers' histograms merged.
 *   4. Once every worker's copy is final, it prints what remains and ends; main joins it
 *      before the summary (intervals_stop), so the summary is always the last line.
 * A run whose connections have all ended keeps its clock until -t (bench_run.c end_dead()), so
 * the lines after a server died show 0 round trips/s.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_json.h"
#include "histogram.h"
#include "yodel.h"

typedef struct intervals {
    bench *b;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    unsigned next;       /* the interval printed next: once every worker's seq reaches it */
    uint64_t first_ns;   /* when the first worker reached it, 0 before */
    interval_snap *prev; /* per worker: the totals the last line was computed from */
    interval_snap *cur;
    histogram line; /* the interval's histogram, over all workers */
    histogram diff;
} intervals;

/* ---- the worker's side, on its loop ---- */

static void publish(worker *w, int final)
{
    intervals *iv = w->b->intervals;
    if (iv == NULL)
        return;
    pthread_mutex_lock(&iv->lock);
    memcpy(&w->ivl.hist, &w->hist, sizeof w->hist);
    w->ivl.cnt = w->cnt;
    w->ivl.start_ns = w->record_start_ns;
    w->ivl.at_ns = now_ns();
    w->ivl.open = w->open;
    w->ivl.seq = w->ivl_seq;
    w->ivl.final = final;
    pthread_cond_broadcast(&iv->cond);
    pthread_mutex_unlock(&iv->lock);
}

/* The next interval's end, counted from the start of recording so that the lines keep step. */
static void schedule(worker *w, uint64_t now)
{
    uint64_t ivl_ns = w->b->cfg.interval_ms * 1000000u;
    uint64_t due = w->record_start_ns + (uint64_t)(w->ivl_seq + 1) * ivl_ns;
    uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 1;
    yd_timer_start(w->ivl_timer, ms, 0);
}

/*
 * An interval ended. One that ends within a tenth of an interval of -t is left to
 * interval_end(), so that the last line is not a sliver of a few microseconds.
 */
static void on_boundary(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    const config *cfg = &w->b->cfg;
    uint64_t now = now_ns();
    uint64_t end = w->record_start_ns + cfg->duration_ms * 1000000u;
    if (now + cfg->interval_ms * 100000u >= end)
        return;
    w->ivl_seq++;
    publish(w, 0);
    schedule(w, now);
}

int interval_setup(worker *w)
{
    if (w->b->cfg.interval_ms == 0)
        return 0;
    return yd_timer_new(w->loop, on_boundary, w, &w->ivl_timer);
}

void interval_begin(worker *w)
{
    if (w->ivl_timer == NULL)
        return;
    w->ivl_seq = 0;
    publish(w, 0);
    schedule(w, w->record_start_ns);
}

void interval_end(worker *w)
{
    if (w->ivl_timer == NULL)
        return;
    w->ivl_seq++;
    publish(w, 1);
    yd_timer_free(w->ivl_timer);
    w->ivl_timer = NULL;
}

/* ---- main's side: the printer thread ---- */

typedef struct line_figures {
    double elapsed_s, interval_s, rate;
    uint64_t round_trips, errors;
    size_t open;
} line_figures;

/* Adds worker i's interval (cur - prev) to the line. */
static void add_worker(intervals *iv, unsigned i, line_figures *f)
{
    const interval_snap *cur = &iv->cur[i], *prev = &iv->prev[i];
    if (cur->start_ns == 0)
        return; /* never recorded */
    uint64_t from = prev->at_ns != 0 ? prev->at_ns : cur->start_ns;
    uint64_t rt = cur->cnt.round_trips - prev->cnt.round_trips;
    f->round_trips += rt;
    f->errors += counters_errors(&cur->cnt) - counters_errors(&prev->cnt);
    f->open += cur->open;
    double secs = (double)(cur->at_ns - from) / 1e9;
    if (secs > 0)
        f->rate += (double)rt / secs;
    if (secs > f->interval_s)
        f->interval_s = secs;
    double elapsed = (double)(cur->at_ns - cur->start_ns) / 1e9;
    if (elapsed > f->elapsed_s)
        f->elapsed_s = elapsed;
    hist_diff(&iv->diff, &cur->hist, &prev->hist);
    hist_merge(&iv->line, &iv->diff);
}

static void print_json_line(const line_figures *f, const histogram *h)
{
    printf("{\"type\":\"interval\",\"elapsed_s\":%.3f,\"interval_s\":%.3f,\"round_trips\":%llu,"
           "\"round_trips_per_s\":%.1f,\"errors\":%llu,\"connections_open\":%zu,"
           "\"latency_us\":",
           f->elapsed_s, f->interval_s, (unsigned long long)f->round_trips, f->rate,
           (unsigned long long)f->errors, f->open);
    if (h->count == 0)
        fputs("{\"p50\":null,\"p99\":null}}\n", stdout);
    else
        printf("{\"p50\":%.1f,\"p99\":%.1f}}\n", (double)hist_quantile(h, 0.5) / 1000.0,
               (double)hist_quantile(h, 0.99) / 1000.0);
}

static void print_text_line(const line_figures *f, const histogram *h)
{
    printf("%7.2f s  %11.1f round trips/s  %6llu errors", f->elapsed_s, f->rate,
           (unsigned long long)f->errors);
    if (h->count == 0)
        fputs("  p50 n/a         p99 n/a        ", stdout);
    else
        printf("  p50 %8.1f us  p99 %8.1f us", (double)hist_quantile(h, 0.5) / 1000.0,
               (double)hist_quantile(h, 0.99) / 1000.0);
    printf("  %zu open\n", f->open);
}

/* Prints one line from the copies in cur, then keeps them as prev. Outside the lock. */
static void print_line(intervals *iv)
{
    line_figures f = {0};
    hist_reset(&iv->line);
    for (unsigned i = 0; i < iv->b->cfg.threads; i++)
        add_worker(iv, i, &f);
    if (iv->b->cfg.json)
        print_json_line(&f, &iv->line);
    else
        print_text_line(&f, &iv->line);
    fflush(stdout);
    interval_snap *t = iv->prev;
    iv->prev = iv->cur;
    iv->cur = t;
}

/* Copies every worker's totals out; the next line waits for the interval after theirs. */
static void take(intervals *iv)
{
    unsigned top = 0;
    for (unsigned i = 0; i < iv->b->cfg.threads; i++) {
        iv->cur[i] = iv->b->workers[i].ivl;
        if (iv->cur[i].seq > top)
            top = iv->cur[i].seq;
    }
    iv->next = top + 1;
    iv->first_ns = 0;
}

typedef struct scan_state {
    int all_reported; /* every worker handed `next` over, or ended */
    int any_reached;  /* some worker handed `next` over */
    int all_final;
    int anything_new; /* some copy differs from the last one printed */
} scan_state;

static scan_state scan(const intervals *iv)
{
    scan_state s = {1, 0, 1, 0};
    for (unsigned i = 0; i < iv->b->cfg.threads; i++) {
        const interval_snap *w = &iv->b->workers[i].ivl;
        s.all_reported &= w->final || w->seq >= iv->next;
        s.any_reached |= w->seq >= iv->next;
        s.all_final &= w->final;
        s.anything_new |= w->at_ns != iv->prev[i].at_ns && w->start_ns != 0;
    }
    return s;
}

/* Waits for the next interval (until a broadcast, or at most wait_ns). Called locked. */
static void wait_ns(intervals *iv, uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    pthread_cond_timedwait(&iv->cond, &iv->lock, &ts);
}

static void *printer_main(void *arg)
{
    intervals *iv = arg;
    uint64_t ivl_ns = iv->b->cfg.interval_ms * 1000000u, grace_ns = ivl_ns / 4;
    pthread_mutex_lock(&iv->lock);
    for (;;) {
        uint64_t now = now_ns();
        scan_state s = scan(iv);
        if (s.anything_new && (s.all_reported || (s.any_reached && iv->first_ns != 0 &&
                                                  now >= iv->first_ns + grace_ns))) {
            take(iv);
            pthread_mutex_unlock(&iv->lock);
            print_line(iv);
            pthread_mutex_lock(&iv->lock);
            continue;
        }
        if (s.all_final || iv->stop)
            break;
        if (s.any_reached && iv->first_ns == 0)
            iv->first_ns = now;
        uint64_t until = s.any_reached ? iv->first_ns + grace_ns : now + ivl_ns;
        wait_ns(iv, until > now ? until - now : 1000000u);
    }
    pthread_mutex_unlock(&iv->lock);
    return NULL;
}

int intervals_start(bench *b)
{
    if (b->cfg.interval_ms == 0)
        return 0;
    intervals *iv = calloc(1, sizeof *iv);
    if (iv == NULL)
        return -ENOMEM;
    iv->b = b;
    iv->next = 1;
    iv->prev = calloc(b->cfg.threads, sizeof *iv->prev);
    iv->cur = calloc(b->cfg.threads, sizeof *iv->cur);
    if (iv->prev == NULL || iv->cur == NULL) {
        free(iv->prev);
        free(iv->cur);
        free(iv);
        return -ENOMEM;
    }
    pthread_mutex_init(&iv->lock, NULL);
    pthread_cond_init(&iv->cond, NULL);
    b->intervals = iv;
    if (pthread_create(&iv->thread, NULL, printer_main, iv) != 0) {
        b->intervals = NULL;
        free(iv->prev);
        free(iv->cur);
        free(iv);
        return -EAGAIN;
    }
    return 0;
}

void intervals_stop(bench *b)
{
    intervals *iv = b->intervals;
    if (iv == NULL)
        return;
    /* Every worker has ended, so every copy is final: the printer prints the rest and ends;
     * stop only guards against one that never handed anything over. */
    pthread_mutex_lock(&iv->lock);
    iv->stop = 1;
    pthread_cond_broadcast(&iv->cond);
    pthread_mutex_unlock(&iv->lock);
    pthread_join(iv->thread, NULL);
    pthread_mutex_destroy(&iv->lock);
    pthread_cond_destroy(&iv->cond);
    free(iv->prev);
    free(iv->cur);
    free(iv);
    b->intervals = NULL;
}
