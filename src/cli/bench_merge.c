/*
 * yodel bench merge and yodel bench compare: summaries read back.
 *
 * A summary is the JSON object `yodel bench --json` prints last (type "summary"); a file may
 * hold it alone or as the last line of JSON lines (--interval). load() reads one into a
 * struct run: the figures, and the latency (send lag, connect) histograms from their sparse
 * bucket lists, whose layout (sub_bits, max_bits) must be this build's.
 *
 * merge: the runs were made at the same time (several machines or processes against one
 * service), so counts and rates add up, durations take the longest, histograms add bucket by
 * bucket and the percentiles are computed again from them: exact, not averaged. The result is
 * printed by bench_report.c like a single run's, and merges again.
 *
 * compare: round trips/s, p50, p99, p99.9 (from the histograms) and errors of BASE and NEW;
 * exit 1 when one moved the wrong way by more than --threshold.
 *
 * Exit 2 for bad usage and for a file that is not a summary this yodel can read; merge exits
 * 1 when the merged runs failed (errors, a missed --rate target), as the runs did.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "bench_json.h"
#include "cli.h"
#include "histogram.h"

/* A summary is a few kilobytes; a JSON-lines file of a long run with intervals, more. */
#define MAX_FILE_BYTES (256u << 20)

/* What tells one run from another: when it ended and what it measured, to the nanosecond. */
typedef struct fingerprint {
    double ts;
    uint64_t round_trips;
    double sum_ns;
} fingerprint;

typedef struct run {
    config cfg;
    char addr[300];
    char tls_version[16];
    result r;
    fingerprint id;
} run;

/* What load() needs while it reads one file: the text and its tokens. */
typedef struct doc {
    const char *cmd; /* "bench merge" or "bench compare", for the error line */
    const char *path;
    char *text;
    size_t len;
    json_token *tok;
    long obj; /* the summary object */
} doc;

static _Noreturn void bad_file(const doc *d, const char *why)
{
    usage_error(d->cmd, "%s: %s", d->path, why);
}

/* The whole file (a pipe too: <(ssh host cat run.json)), NUL-terminated, and room for tokens. */
static void read_file(doc *d)
{
    FILE *f = fopen(d->path, "rb");
    if (f == NULL)
        usage_error(d->cmd, "cannot read '%s': %s", d->path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f); /* opens for reading on Linux; only the reads fail */
        bad_file(d, "is a directory");
    }
    size_t room = 1 << 16;
    d->text = NULL;
    d->len = 0;
    for (;;) {
        char *more = realloc(d->text, room + 1);
        if (more == NULL)
            bad_file(d, "out of memory");
        d->text = more;
        d->len += fread(d->text + d->len, 1, room - d->len, f);
        if (d->len < room || room > MAX_FILE_BYTES)
            break;
        room *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed)
        bad_file(d, "read error");
    if (d->len > MAX_FILE_BYTES)
        bad_file(d, "larger than 256 MiB: not a yodel bench summary");
    d->text[d->len] = '\0';
    /* Each token takes at least one byte of text, plus the one value around them. */
    d->tok = malloc((d->len / 2 + 2) * sizeof *d->tok);
    if (d->tok == NULL)
        bad_file(d, "out of memory");
}

/* Whether text[from, to) is a summary object; parses it into d->tok if so. */
static int try_summary(doc *d, size_t from, size_t to)
{
    long n = json_parse(d->text + from, to - from, d->tok, d->len / 2 + 2);
    if (n < 0 || d->tok[0].type != JSON_OBJECT)
        return 0;
    /* Tokens point into the line: make them point into the whole text. */
    for (long i = 0; i < n; i++)
        d->tok[i].start += from;
    long type = json_member(d->text, d->tok, 0, "type");
    return type >= 0 && json_is(d->text, &d->tok[type], "summary");
}

/* The whole file as one object, or else its last line that is a summary. */
static void find_summary(doc *d)
{
    d->obj = 0;
    if (try_summary(d, 0, d->len))
        return;
    size_t end = d->len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && d->text[start - 1] != '\n')
            start--;
        if (start < end && try_summary(d, start, end))
            return;
        end = start > 0 ? start - 1 : 0;
    }
    bad_file(d, "no yodel bench summary in it (a JSON object with \"type\":\"summary\")");
}

/* ---- the figures ---- */

static long member(const doc *d, long obj, const char *key)
{
    return obj < 0 ? -1 : json_member(d->text, d->tok, obj, key);
}

/* A number member, or fallback when it is absent or null. */
static double num(const doc *d, long obj, const char *key, double fallback)
{
    long t = member(d, obj, key);
    if (t < 0 || d->tok[t].type == JSON_NULL)
        return fallback;
    if (d->tok[t].type != JSON_NUMBER) {
        char why[96];
        snprintf(why, sizeof why, "\"%s\" is not a number", key);
        bad_file(d, why);
    }
    return strtod(d->text + d->tok[t].start, NULL);
}

static uint64_t count(const doc *d, long obj, const char *key)
{
    double v = num(d, obj, key, 0);
    if (v < 0 || v > 1.8e19 || v != floor(v)) {
        char why[96];
        snprintf(why, sizeof why, "\"%s\" is not a count", key);
        bad_file(d, why);
    }
    return (uint64_t)v;
}

static int flag(const doc *d, long obj, const char *key)
{
    long t = member(d, obj, key);
    return t >= 0 && d->tok[t].type == JSON_BOOL && d->text[d->tok[t].start] == 't';
}

static void str(const doc *d, long obj, const char *key, char *buf, size_t size)
{
    long t = member(d, obj, key);
    buf[0] = '\0';
    if (t >= 0 && d->tok[t].type == JSON_STRING)
        snprintf(buf, size, "%.*s", (int)d->tok[t].len, d->text + d->tok[t].start);
}

/* A number token that is a whole number in 64 bits (no sign, fraction or exponent), or -1. */
static int whole(const doc *d, const json_token *t, uint64_t *out)
{
    const char *s = d->text + t->start;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || end != s + t->len || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

/* One [index, count] pair of a histogram's counts into h. Counts that wrap around 64 bits
 * could add up to any count at all: refused. */
static void load_bucket(const doc *d, long pair, histogram *h)
{
    const json_token *t = d->tok;
    uint64_t i, n;
    if (t[pair].type != JSON_ARRAY || t[pair].next != (size_t)pair + 3 ||
        t[pair + 1].type != JSON_NUMBER || t[pair + 2].type != JSON_NUMBER ||
        whole(d, &t[pair + 1], &i) < 0 || whole(d, &t[pair + 2], &n) < 0)
        bad_file(d, "a histogram bucket is not [index, count]");
    if (i >= HIST_BUCKETS)
        bad_file(d, "a histogram bucket index is out of range");
    if (n > UINT64_MAX - h->count)
        bad_file(d, "a histogram's bucket counts overflow 64 bits");
    h->buckets[i] += n;
    h->count += n;
}

/* A histogram from its JSON form (bench_report.c json_histogram()); absent or null: empty. */
static void load_histogram(const doc *d, const char *key, histogram *h)
{
    hist_reset(h);
    long obj = member(d, d->obj, key);
    if (obj < 0 || d->tok[obj].type == JSON_NULL)
        return;
    long unit = member(d, obj, "unit"), counts = member(d, obj, "counts");
    if (unit < 0 || !json_is(d->text, &d->tok[unit], "ns") || counts < 0 ||
        d->tok[counts].type != JSON_ARRAY)
        bad_file(d, "a histogram without \"unit\":\"ns\" and \"counts\"");
    double sub = num(d, obj, "sub_bits", -1), top = num(d, obj, "max_bits", -1);
    if (sub != HIST_SUB_BITS || top != HIST_MAX_BITS) {
        char why[160];
        snprintf(why, sizeof why,
                 "the histogram's layout differs (sub_bits %g, max_bits %g; this yodel's: %d, %d)",
                 sub, top, HIST_SUB_BITS, HIST_MAX_BITS);
        bad_file(d, why);
    }
    for (size_t i = (size_t)counts + 1; i < d->tok[counts].next; i = d->tok[i].next)
        load_bucket(d, (long)i, h);
    if (h->count != count(d, obj, "count"))
        bad_file(d, "a histogram's buckets do not add up to its count");
    h->sum = num(d, obj, "sum_ns", 0);
    if (h->count > 0) {
        h->min = count(d, obj, "min_ns");
        h->max = count(d, obj, "max_ns");
    }
}

static void load_counters(const doc *d, counters *c)
{
    long e = member(d, d->obj, "error_counts");
    c->round_trips = count(d, d->obj, "round_trips");
    c->sent = count(d, d->obj, "sent");
    c->connects = count(d, d->obj, "connects");
    c->resumed = count(d, d->obj, "resumed");
    c->reordered = count(d, d->obj, "reordered");
    c->late = count(d, d->obj, "late");
    c->connect = count(d, e, "connect");
    c->mismatch = count(d, e, "mismatch");
    c->reset = count(d, e, "reset");
    c->closed = count(d, e, "closed");
    c->io = count(d, e, "io");
    c->timeout = count(d, e, "timeout");
    c->lost = count(d, e, "lost");
    c->duplicate = count(d, e, "duplicate");
}

/* The run's settings, as far as the report prints them. */
static void load_config(const doc *d, run *x)
{
    config *cfg = &x->cfg;
    const config defaults = {.percentiles = {50, 90, 99, 99.9}, .npercentiles = 4};
    *cfg = defaults;
    char transport[16];
    str(d, d->obj, "address", x->addr, sizeof x->addr);
    str(d, d->obj, "transport", transport, sizeof transport);
    str(d, d->obj, "tls_version", x->tls_version, sizeof x->tls_version);
    cfg->addr = x->addr;
    cfg->udp = strcmp(transport, "udp") == 0;
    cfg->tls = flag(d, d->obj, "tls");
    cfg->insecure = cfg->tls && !flag(d, d->obj, "verified");
    cfg->conns = (size_t)count(d, d->obj, "connections");
    cfg->size = (size_t)count(d, d->obj, "size");
    cfg->depth = (size_t)count(d, d->obj, "depth");
    cfg->threads = (unsigned)count(d, d->obj, "threads");
    cfg->rate = count(d, d->obj, "rate");
    cfg->reconnect_every = count(d, d->obj, "reconnect_every");
    cfg->warmup_ms = (uint64_t)(num(d, d->obj, "warmup_s", 0) * 1000 + 0.5);
}

static void load_result(const doc *d, run *x)
{
    result *r = &x->r;
    memset(r, 0, sizeof *r);
    long mode = member(d, d->obj, "mode");
    if (mode >= 0 && json_is(d->text, &d->tok[mode], "find-max"))
        bad_file(d, "a --find-max summary: its steps carry no histograms to add or compare");
    if (member(d, d->obj, "round_trips_per_s") < 0 || member(d, d->obj, "latency_histogram") < 0)
        bad_file(d, "a summary without round_trips_per_s and latency_histogram (made by a yodel "
                    "before merge?)");
    load_counters(d, &r->cnt);
    load_histogram(d, "latency_histogram", &r->hist);
    load_histogram(d, "send_lag_histogram", &r->send_lag);
    load_histogram(d, "connect_histogram", &r->connect_lat);
    r->rate = num(d, d->obj, "round_trips_per_s", 0);
    r->offered = num(d, d->obj, "offered_per_s", 0);
    r->connect_rate = num(d, d->obj, "connects_per_s", 0);
    r->duration_s = num(d, d->obj, "duration_s", 0);
    r->connected = (size_t)count(d, d->obj, "connected");
    r->target_missed = flag(d, d->obj, "target_missed");
    r->all_dead = flag(d, d->obj, "all_connections_ended");
    r->merged = (size_t)count(d, d->obj, "merged_runs");
    r->tls_version = x->tls_version[0] != '\0' ? x->tls_version : NULL;
    x->id = (fingerprint){num(d, d->obj, "ts", 0), r->cnt.round_trips, r->hist.sum};
}

static void load(const char *cmd, const char *path, run *x)
{
    doc d = {.cmd = cmd, .path = path};
    read_file(&d);
    find_summary(&d);
    load_config(&d, x);
    load_result(&d, x);
    free(d.text);
    free(d.tok);
}

/* ---- merge ---- */

static void add_counters(counters *to, const counters *c)
{
    uint64_t *t = (uint64_t *)to;
    const uint64_t *f = (const uint64_t *)c;
    /* counters is nothing but uint64_t counts: add them all. */
    for (size_t i = 0; i < sizeof *c / sizeof(uint64_t); i++)
        t[i] += f[i];
}

/* Adds run x into the total: counts, rates (the runs were concurrent) and histograms. */
static void add_run(run *total, const run *x)
{
    result *r = &total->r;
    const result *s = &x->r;
    add_counters(&r->cnt, &s->cnt);
    hist_merge(&r->hist, &s->hist);
    hist_merge(&r->send_lag, &s->send_lag);
    hist_merge(&r->connect_lat, &s->connect_lat);
    r->rate += s->rate;
    r->offered += s->offered;
    r->connect_rate += s->connect_rate;
    r->duration_s = s->duration_s > r->duration_s ? s->duration_s : r->duration_s;
    r->connected += s->connected;
    r->target_missed |= s->target_missed;
    r->all_dead &= s->all_dead;
    r->merged += s->merged > 0 ? s->merged : 1;
    total->cfg.conns += x->cfg.conns;
    total->cfg.threads += x->cfg.threads;
    total->cfg.rate += x->cfg.rate;
    if (strcmp(total->addr, x->addr) != 0)
        snprintf(total->addr, sizeof total->addr, "several addresses");
}

/* One run given twice (the same file, or a copy: `merge *.json`) would count its load twice. */
static void check_once(const fingerprint *seen, int n, const run *x, const char *path)
{
    for (int i = 0; i < n; i++)
        if (memcmp(&seen[i], &x->id, sizeof x->id) == 0)
            usage_error("bench merge", "%s: the same run as an earlier FILE (given twice?)", path);
}

/* Runs of different message sizes or transports do not add up to one load. */
static void check_alike(const run *first, const run *x, const char *path)
{
    if (x->cfg.size != first->cfg.size)
        usage_error("bench merge", "%s: %zu B messages, the first run's are %zu B", path,
                    x->cfg.size, first->cfg.size);
    if (x->cfg.udp != first->cfg.udp || x->cfg.tls != first->cfg.tls)
        usage_error("bench merge", "%s: another transport than the first run's", path);
}

/* Histograms that together count more than 64 bits hold would wrap around when added. */
static void check_sum(const run *total, const run *x, const char *path)
{
    const histogram *t[] = {&total->r.hist, &total->r.send_lag, &total->r.connect_lat};
    const histogram *h[] = {&x->r.hist, &x->r.send_lag, &x->r.connect_lat};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (h[i]->count > UINT64_MAX - t[i]->count)
            usage_error("bench merge",
                        "%s: its histogram counts and the earlier FILEs' overflow "
                        "64 bits",
                        path);
}

static const char merge_usage[] =
    "usage: yodel bench merge [--json] FILE...\n"
    "\n"
    "Add up the summaries of yodel bench runs made at the same time (each FILE the output of\n"
    "yodel bench --json: one JSON object, or JSON lines ending with the summary): counts and\n"
    "rates added, histograms bucket by bucket, percentiles computed again from them. Prints\n"
    "the report of one run with both loads; exit 1 if the merged runs failed, 2 if a FILE is\n"
    "not a summary this yodel reads.\n"
    "\n"
    "      --json                the merged summary as one JSON object (it merges again)\n"
    "  -h, --help                this help\n";

int bench_merge_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'J'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int json = 0, c;
    while ((c = cli_getopt("bench merge", argc, argv, "h", opts)) != -1) {
        if (c == 'h') {
            fputs(merge_usage, stdout);
            return EXIT_OK;
        }
        json = 1;
    }
    if (optind >= argc)
        usage_error("bench merge", "no FILE to merge");
    run *total = calloc(1, sizeof *total), *x = malloc(sizeof *x);
    bench *b = calloc(1, sizeof *b);
    fingerprint *seen = calloc((size_t)(argc - optind), sizeof *seen);
    if (total == NULL || x == NULL || b == NULL || seen == NULL) {
        fprintf(stderr, "yodel bench merge: out of memory\n");
        return EXIT_RUNTIME;
    }
    for (int i = optind; i < argc; i++) {
        load("bench merge", argv[i], x);
        if (i == optind) {
            *total = *x;
            memset(&total->r, 0, sizeof total->r);
            hist_reset(&total->r.hist);
            hist_reset(&total->r.send_lag);
            hist_reset(&total->r.connect_lat);
            total->r.all_dead = 1;
            total->cfg.conns = total->cfg.threads = 0;
            total->cfg.rate = 0;
            total->r.tls_version = x->r.tls_version != NULL ? total->tls_version : NULL;
        }
        check_alike(total, x, argv[i]);
        check_once(seen, i - optind, x, argv[i]);
        seen[i - optind] = x->id;
        check_sum(total, x, argv[i]);
        add_run(total, x);
    }
    b->cfg = total->cfg;
    b->cfg.json = json;
    snprintf(b->addr, sizeof b->addr, "%s", total->addr);
    report_print(b, &total->r);
    int status = report_failed(&total->r) ? EXIT_RUNTIME : EXIT_OK;
    free(total);
    free(x);
    free(b);
    free(seen);
    return status;
}

/* ---- compare ---- */

typedef struct figure {
    const char *name;
    double base, now;
    int lower_is_better;
} figure;

/* The change in %, or +inf from 0 to more. */
static double change_pct(const figure *f)
{
    if (f->base == 0)
        return f->now == 0 ? 0 : INFINITY;
    return 100.0 * (f->now - f->base) / f->base;
}

static int regressed(const figure *f, double threshold)
{
    double pct = change_pct(f);
    return f->lower_is_better ? pct > threshold : pct < -threshold;
}

static double us_at(const histogram *h, double q)
{
    return (double)hist_quantile(h, q) / 1000.0;
}

/* Reads --threshold: "5%", "5" or "2.5%"; 0 to 1000 (%). */
static double take_threshold(const char *v)
{
    char *end;
    double t = strtod(v, &end);
    if (end == v || (*end != '\0' && strcmp(end, "%") != 0) || !(t >= 0 && t <= 1000))
        usage_error("bench compare", "--threshold: bad value '%s' (use 5%%, 0 to 1000)", v);
    return t;
}

static const char compare_usage[] =
    "usage: yodel bench compare [--threshold PCT] BASE NEW\n"
    "\n"
    "Compare two yodel bench --json summaries (a run, or a merge of runs): round trips/s,\n"
    "p50, p99 and p99.9 latency (from the histograms) and errors, with the change in %.\n"
    "Exit 1 if a figure regressed by more than the threshold (round trips/s down; latency\n"
    "or errors up; errors from 0 to any is a regression), 0 if none did, 2 on bad usage or\n"
    "a FILE that is not a summary.\n"
    "\n"
    "      --threshold PCT       how much worse a figure may get (5%)\n"
    "  -h, --help                this help\n";

/* A run that measured nothing (stopped in its warmup: duration 0, no samples) has no figures to
 * compare: against it any real run would read +inf % or -100 %. */
static void load_side(const char *path, run *x)
{
    load("bench compare", path, x);
    if (x->r.cnt.round_trips == 0 || x->r.hist.count == 0)
        usage_error("bench compare", "%s: a run with no round trip measured: nothing to compare",
                    path);
}

static void print_figure(const figure *f, double threshold, int *worse)
{
    double pct = change_pct(f);
    int bad = regressed(f, threshold);
    *worse += bad;
    printf("  %-16s %14.1f %14.1f  %+9.1f %%%s\n", f->name, f->base, f->now, pct,
           bad ? "  REGRESSED" : "");
}

int bench_compare_main(int argc, char **argv)
{
    static const struct option opts[] = {{"threshold", required_argument, NULL, 'T'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    double threshold = 5;
    int c;
    while ((c = cli_getopt("bench compare", argc, argv, "h", opts)) != -1) {
        if (c == 'h') {
            fputs(compare_usage, stdout);
            return EXIT_OK;
        }
        threshold = take_threshold(optarg);
    }
    if (argc - optind != 2)
        usage_error("bench compare", "give two files, BASE and NEW");
    run *base = malloc(sizeof *base), *now = malloc(sizeof *now);
    if (base == NULL || now == NULL) {
        fprintf(stderr, "yodel bench compare: out of memory\n");
        return EXIT_RUNTIME;
    }
    load_side(argv[optind], base);
    load_side(argv[optind + 1], now);
    const histogram *hb = &base->r.hist, *hn = &now->r.hist;
    const figure figs[] = {
        {"round trips/s", base->r.rate, now->r.rate, 0},
        {"p50 (us)", us_at(hb, 0.5), us_at(hn, 0.5), 1},
        {"p99 (us)", us_at(hb, 0.99), us_at(hn, 0.99), 1},
        {"p99.9 (us)", us_at(hb, 0.999), us_at(hn, 0.999), 1},
        {"errors", (double)counters_errors(&base->r.cnt), (double)counters_errors(&now->r.cnt), 1},
    };
    printf("  %-16s %14s %14s  %11s\n", "", "base", "new", "change");
    int worse = 0;
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++)
        print_figure(&figs[i], threshold, &worse);
    if (worse > 0)
        printf("yodel bench compare: %d figure%s regressed by more than %g %%\n", worse,
               worse == 1 ? "" : "s", threshold);
    else
        printf("yodel bench compare: no figure regressed by more than %g %%\n", threshold);
    free(base);
    free(now);
    return worse > 0 ? EXIT_RUNTIME : EXIT_OK;
}
