/*
 * yodel bench --find-max: the highest open-loop rate a server holds under an SLO, found the way
 * people otherwise script it by hand. The connections come up once and stay; then steps, each
 * a warmup and -t at one rate (run_step(); the workers idle between steps, bench_run.c):
 *   1. from --rate (or FINDMAX_START/s), the rate doubles while the SLO holds;
 *   2. once it breaks, the rate bisects between the highest that held and the lowest that did
 *      not, until they are within FINDMAX_PRECISION of each other.
 * A step holds when every bound of --slo does (latencies counted from when each message was
 * due, so a server that falls behind shows it) and at least TARGET_SHARE of the rate was
 * offered: below that, every connection was waiting on the server. Each step prints one line
 * (with --json one "type":"step" object) as it ends; then the summary: the highest rate that
 * held, and every step again.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bench_json.h"
#include "cli.h"
#include "histogram.h"
#include "yodel.h"

#define FINDMAX_START     1000
#define FINDMAX_PRECISION 0.05
#define FINDMAX_MAX_STEPS 48
#define FINDMAX_MAX_RATE  1000000000u

static const double quantiles[4] = {0.5, 0.9, 0.99, 0.999};
static const char *const quantile_names[4] = {"p50", "p90", "p99", "p99.9"};

typedef struct step {
    uint64_t rate;
    double offered;  /* messages sent/s */
    double achieved; /* verified round trips/s */
    uint64_t round_trips;
    uint64_t sent;
    uint64_t errors;
    uint64_t latency_ns[4]; /* p50, p90, p99, p99.9 */
    int measured;           /* any round trip came back */
    int held;
    char broke[120]; /* held: ""; else the first bound that did not hold, in words */
} step;

static uint64_t errors_of(const counters *c)
{
    return c->connect + c->mismatch + c->reset + c->closed + c->io + c->timeout + c->lost +
           c->duplicate;
}

/* The first latency bound of the SLO that the step broke, in words into s->broke; 0 if none. */
static int broke_latency(const slo *o, step *s)
{
    for (int i = 0; i < 4; i++) {
        if (o->latency_ns[i] == 0 || s->latency_ns[i] <= o->latency_ns[i])
            continue;
        snprintf(s->broke, sizeof s->broke, "%s %.1f us > %.1f us", quantile_names[i],
                 (double)s->latency_ns[i] / 1e3, (double)o->latency_ns[i] / 1e3);
        return 1;
    }
    return 0;
}

static int broke_errors(const slo *o, step *s)
{
    if (!o->has_errors)
        return 0;
    double share = 100.0 * (double)s->errors / (double)(s->sent > 0 ? s->sent : 1);
    if (o->errors_pct && share > o->errors) {
        snprintf(s->broke, sizeof s->broke, "errors %.3g %% > %.3g %%", share, o->errors);
        return 1;
    }
    if (!o->errors_pct && (double)s->errors > o->errors) {
        snprintf(s->broke, sizeof s->broke, "errors %llu > %.0f", (unsigned long long)s->errors,
                 o->errors);
        return 1;
    }
    return 0;
}

/* The step's figures from the threads' counts, and whether it held. */
static void judge(const bench *b, const result *r, step *s)
{
    s->offered = r->offered;
    s->achieved = r->rate;
    s->round_trips = r->cnt.round_trips;
    s->sent = r->cnt.sent;
    s->errors = errors_of(&r->cnt);
    s->measured = r->hist.count > 0;
    for (int i = 0; i < 4; i++)
        s->latency_ns[i] = hist_quantile(&r->hist, quantiles[i]);
    s->broke[0] = '\0';
    if (r->all_dead)
        snprintf(s->broke, sizeof s->broke, "every connection ended");
    else if (!s->measured)
        snprintf(s->broke, sizeof s->broke, "no round trip came back");
    else if (s->offered < TARGET_SHARE * (double)s->rate)
        snprintf(s->broke, sizeof s->broke, "offered %.1f/s, %.1f %% of the rate", s->offered,
                 100.0 * s->offered / (double)s->rate);
    else if (!broke_latency(&b->cfg.slo, s))
        broke_errors(&b->cfg.slo, s);
    s->held = s->broke[0] == '\0';
}

static void json_step_fields(FILE *f, int n, const step *s)
{
    fprintf(f,
            "\"step\":%d,\"rate_per_s\":%llu,\"offered_per_s\":%.1f,\"round_trips_per_s\":%.1f,"
            "\"round_trips\":%llu,\"sent\":%llu,\"errors\":%llu,\"latency_us\":{",
            n, (unsigned long long)s->rate, s->offered, s->achieved,
            (unsigned long long)s->round_trips, (unsigned long long)s->sent,
            (unsigned long long)s->errors);
    static const char *const keys[4] = {"p50", "p90", "p99", "p999"};
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s\"%s\":", i > 0 ? "," : "", keys[i]);
        if (s->measured)
            fprintf(f, "%.1f", (double)s->latency_ns[i] / 1e3);
        else
            fputs("null", f);
    }
    fprintf(f, "},\"held\":%s,\"broke\":", s->held ? "true" : "false");
    if (s->held)
        fputs("null", f);
    else
        json_string(f, s->broke);
}

/* One step as it ends: a line of text, or a "type":"step" JSON object; flushed at once. */
static void print_step(const bench *b, int n, const step *s)
{
    if (b->cfg.json) {
        fputs("{\"type\":\"step\",", stdout);
        json_step_fields(stdout, n, s);
        fputs("}\n", stdout);
    } else {
        printf("  step %-3d %10llu/s  offered %10.1f/s  round trips %10.1f/s  p50 %9.1f  p99 "
               "%9.1f us  errors %llu  %s%s\n",
               n, (unsigned long long)s->rate, s->offered, s->achieved,
               (double)s->latency_ns[0] / 1e3, (double)s->latency_ns[2] / 1e3,
               (unsigned long long)s->errors, s->held ? "held" : "broke: ", s->broke);
    }
    fflush(stdout);
}

/* The search's state: the highest rate that held and the lowest that broke (0: none yet). */
typedef struct search {
    step steps[FINDMAX_MAX_STEPS];
    int n;
    uint64_t held;
    uint64_t broke;
    int dead;        /* every connection ended (the server died): the search stopped there */
    int interrupted; /* Ctrl-C: held is a lower bound, not the highest rate */
} search;

/* The rate of the next step, or 0 when the search is over. */
static uint64_t next_rate(const search *s)
{
    uint64_t last = s->steps[s->n - 1].rate;
    if (s->broke == 0)
        return last < FINDMAX_MAX_RATE / 2 ? last * 2 : 0;
    if (s->held == 0) /* the first rate broke already: nothing to bisect */
        return 0;
    if (s->broke - s->held <= 1 ||
        (double)(s->broke - s->held) <= FINDMAX_PRECISION * (double)s->held)
        return 0;
    return s->held + (s->broke - s->held) / 2;
}

static double unix_time_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

/* What the search is about, before its first step. */
static void print_header(const bench *b)
{
    const config *cfg = &b->cfg;
    if (cfg->json)
        return;
    printf("yodel bench --find-max: %s, %zu connection%s, %zu B messages, depth %zu, SLO %s\n"
           "  steps of %.2f s after %.2f s warmup; the rate doubles until the SLO breaks, then "
           "bisects to within %.0f %%\n",
           b->addr, cfg->conns, cfg->conns == 1 ? "" : "s", cfg->size, cfg->depth, cfg->slo_text,
           (double)cfg->duration_ms / 1000.0, (double)cfg->warmup_ms / 1000.0,
           FINDMAX_PRECISION * 100);
    fflush(stdout);
}

static void json_summary(const bench *b, const search *s)
{
    const config *cfg = &b->cfg;
    FILE *f = stdout;
    fprintf(f,
            "{\"type\":\"summary\",\"mode\":\"find-max\",\"ts\":%.3f,\"version\":", unix_time_s());
    json_string(f, yd_version());
    fputs(",\"address\":", f);
    json_string(f, b->addr);
    fprintf(f,
            ",\"connections\":%zu,\"size\":%zu,\"depth\":%zu,\"threads\":%u,\"slo\":", cfg->conns,
            cfg->size, cfg->depth, cfg->threads);
    json_string(f, cfg->slo_text);
    fprintf(f, ",\"duration_s\":%.3f,\"warmup_s\":%.3f,\"precision\":%.2f,",
            (double)cfg->duration_ms / 1000.0, (double)cfg->warmup_ms / 1000.0, FINDMAX_PRECISION);
    fprintf(f, s->held ? "\"max_rate_per_s\":%llu," : "\"max_rate_per_s\":null,",
            (unsigned long long)s->held);
    fprintf(f, s->broke ? "\"broke_at_per_s\":%llu," : "\"broke_at_per_s\":null,",
            (unsigned long long)s->broke);
    fprintf(f, "\"all_connections_ended\":%s,\"interrupted\":%s,", s->dead ? "true" : "false",
            s->interrupted ? "true" : "false");
    fputs("\"steps\":[", f);
    for (int i = 0; i < s->n; i++) {
        fputs(i > 0 ? ",{" : "{", f);
        json_step_fields(f, i + 1, &s->steps[i]);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

/* The text summary of a search cut short by Ctrl-C: what it found so far, said as such. */
static void print_interrupted(const bench *b, const search *s)
{
    if (s->held == 0) {
        printf("  max rate       unknown: the search was interrupted before a rate held the SLO\n");
        return;
    }
    printf("  max rate       at least %llu round trips/s (held the SLO, %s)",
           (unsigned long long)s->held, b->cfg.slo_text);
    if (s->broke != 0)
        printf("; %llu/s did not", (unsigned long long)s->broke);
    printf(": the search was interrupted after %d step%s, so this is a lower bound, not the "
           "maximum\n",
           s->n, s->n == 1 ? "" : "s");
}

static void print_summary(const bench *b, const search *s)
{
    if (b->cfg.json) {
        json_summary(b, s);
    } else if (s->interrupted) {
        print_interrupted(b, s);
    } else if (s->held == 0) {
        printf("  max rate       none held: the first step (%llu/s) broke the SLO\n",
               (unsigned long long)s->steps[0].rate);
    } else {
        printf("  max rate       %llu round trips/s held the SLO (%s)", (unsigned long long)s->held,
               b->cfg.slo_text);
        if (s->broke != 0)
            printf("; %llu/s did not", (unsigned long long)s->broke);
        printf(", %d step%s\n", s->n, s->n == 1 ? "" : "s");
    }
    fflush(stdout);
}

/* One step at s's next rate; returns 0, or -1 when the run cannot go on (Ctrl-C, no
 * connection left). */
static int take_step(bench *b, search *s, uint64_t rate)
{
    step *st = &s->steps[s->n++];
    memset(st, 0, sizeof *st);
    st->rate = rate;
    b->step_rate = rate;
    if (run_step(b) < 0) {
        fprintf(stderr, "yodel bench: a --find-max step did not end in time\n");
        _exit(EXIT_RUNTIME);
    }
    result *r = malloc(sizeof *r);
    if (r == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        _exit(EXIT_RUNTIME);
    }
    report_merge(b, r);
    judge(b, r, st);
    int dead = r->all_dead;
    free(r);
    if (atomic_load(&b->interrupted)) {
        s->n--; /* cut short: it says nothing about the rate */
        s->interrupted = 1;
        return -1;
    }
    print_step(b, s->n, st);
    if (st->held)
        s->held = rate;
    else
        s->broke = rate;
    s->dead = dead;
    return dead ? -1 : 0;
}

int findmax_run(bench *b, size_t connected)
{
    (void)connected;
    search *s = calloc(1, sizeof *s);
    if (s == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    print_header(b);
    uint64_t rate = b->cfg.rate != 0 ? b->cfg.rate : FINDMAX_START;
    while (s->n < FINDMAX_MAX_STEPS && rate != 0) {
        if (take_step(b, s, rate) < 0)
            break;
        rate = next_rate(s);
    }
    run_end_steps(b);
    if (s->interrupted)
        fprintf(stderr, "yodel bench: interrupted after %d step%s\n", s->n, s->n == 1 ? "" : "s");
    /* Interrupted before a step ended, the summary still says so (JSON readers wait for it). */
    if (s->n > 0 || s->interrupted)
        print_summary(b, s);
    /* A server that died mid-search is a failed run, as it is without --find-max: the rates
     * above the last that held were never bisected. */
    if (s->dead)
        fprintf(stderr,
                "yodel bench: every connection ended during step %d: the search stopped there\n",
                s->n);
    else if (s->held == 0 && s->n > 0)
        fprintf(stderr, "yodel bench: no rate held the SLO: try a lower start (--rate)\n");
    int status = s->held != 0 && !s->dead ? EXIT_OK : EXIT_RUNTIME;
    free(s);
    return status;
}
