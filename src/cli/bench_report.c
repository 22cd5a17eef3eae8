/*
 * yodel bench's reports. When every thread has ended, report_merge() adds up their counts,
 * histograms and rates into one result; report_print() writes what made the run fail besides
 * counted errors to stderr, then the report to stdout: a few lines of text, or one JSON
 * object (type "summary"; its strings through bench_json.h's writer), which carries the
 * histograms' buckets for yodel bench merge; with --hist, the .hgrm file. Latencies are in
 * microseconds, "null" or "n/a" where nothing was measured. Connect latency is TCP's (or a Unix
 * socket's) without TLS, and with TLS the handshake's, from the connect call to its end (the
 * library tells no moment between the TCP connect and the handshake).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bench_json.h"
#include "cli.h"
#include "histogram.h"
#include "yodel.h"

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

uint64_t counters_errors(const counters *c)
{
    return c->connect + c->mismatch + c->reset + c->closed + c->io + c->timeout + c->lost +
           c->duplicate;
}

static void add_counters(counters *to, const counters *c)
{
    to->round_trips += c->round_trips;
    to->connect += c->connect;
    to->mismatch += c->mismatch;
    to->reset += c->reset;
    to->closed += c->closed;
    to->io += c->io;
    to->timeout += c->timeout;
    to->lost += c->lost;
    to->duplicate += c->duplicate;
    to->reordered += c->reordered;
    to->late += c->late;
    to->sent += c->sent;
    to->connects += c->connects;
    to->resumed += c->resumed;
}

/* Rates add up over the threads, each over the time its own measurement was live. */
void report_merge(const bench *b, result *r)
{
    memset(r, 0, sizeof *r);
    hist_reset(&r->hist);
    hist_reset(&r->send_lag);
    hist_reset(&r->connect_lat);
    r->all_dead = 1;
    for (unsigned i = 0; i < b->cfg.threads; i++) {
        const worker *w = &b->workers[i];
        add_counters(&r->cnt, &w->cnt);
        hist_merge(&r->hist, &w->hist);
        hist_merge(&r->send_lag, &w->send_lag);
        hist_merge(&r->connect_lat, &w->connect_lat);
        if (r->tls_version == NULL && w->tls_version[0] != '\0')
            r->tls_version = w->tls_version;
        if (r->first_reconnect_error == 0)
            r->first_reconnect_error = w->first_reconnect_error;
        r->connected += w->connected;
        r->all_dead &= w->all_dead;
        if (w->ready_ns > w->connect_start_ns &&
            (double)(w->ready_ns - w->connect_start_ns) / 1e9 > r->connect_phase_s)
            r->connect_phase_s = (double)(w->ready_ns - w->connect_start_ns) / 1e9;
        if (w->record_end_ns > w->record_start_ns) {
            double secs = (double)(w->record_end_ns - w->record_start_ns) / 1e9;
            r->rate += (double)w->cnt.round_trips / secs;
            r->offered += (double)w->cnt.sent / secs;
            r->connect_rate += (double)w->cnt.connects / secs;
            if (secs > r->duration_s)
                r->duration_s = secs;
        }
    }
    /* A run stopped before measuring (Ctrl-C in the warmup) makes no claim about the rate. */
    r->target_missed =
        b->cfg.rate > 0 && r->duration_s > 0 && r->offered < TARGET_SHARE * load_mean_rate(&b->cfg);
}

/* Whether the run failed: an error counted, too little offered for --rate, or nothing left. */
int report_failed(const result *r)
{
    return counters_errors(&r->cnt) > 0 || r->target_missed || r->all_dead;
}

/* The socket underneath: "tcp", "udp" or "unix" (TLS or not: see "tls"). */
static const char *transport_name(const bench *b)
{
    if (b->cfg.udp)
        return "udp";
    return strncmp(b->addr, "unix:", 5) == 0 || strncmp(b->addr, "tls+unix:", 9) == 0 ? "unix"
                                                                                      : "tcp";
}

/* "name":value for a duration in microseconds, or null when nothing was measured. */
static void json_us(FILE *f, const char *name, const histogram *h, uint64_t ns)
{
    fprintf(f, "\"%s\":", name);
    if (h->count == 0)
        fputs("null", f);
    else
        fprintf(f, "%.1f", us(ns));
}

void percentile_name(char *buf, size_t size, double pct)
{
    /* Enough digits for any percentile worth asking for: %g's 6 made 99.99999 "p100". */
    snprintf(buf, size, "p%.10g", pct);
}

void percentile_key(char *buf, size_t size, double pct)
{
    percentile_name(buf, size, pct);
    for (char *p = buf; *p != '\0'; p++)
        if (*p == '.')
            *p = '_';
}

/* min, mean, the --percentiles, max. */
static void json_latency(FILE *f, const config *cfg, const histogram *h)
{
    fputc('{', f);
    json_us(f, "min", h, h->min);
    fprintf(f, ",\"mean\":");
    if (h->count == 0)
        fputs("null", f);
    else
        fprintf(f, "%.1f", hist_mean(h) / 1000.0);
    for (size_t i = 0; i < cfg->npercentiles; i++) {
        char key[32];
        percentile_key(key, sizeof key, cfg->percentiles[i]);
        uint64_t v = hist_quantile(h, cfg->percentiles[i] / 100.0);
        fputc(',', f);
        json_us(f, key, h, v);
        /* The name p99.9 had before --percentiles, kept for the readers of earlier reports. */
        if (cfg->percentiles[i] == 99.9) {
            fputc(',', f);
            json_us(f, "p999", h, v);
        }
    }
    fputc(',', f);
    json_us(f, "max", h, h->max);
    fputc('}', f);
}

/*
 * The histogram itself, sparse (only buckets that hold counts), in nanoseconds: what
 * yodel bench merge adds up. Its layout (sub_bits, max_bits) must match to merge.
 */
static void json_histogram(FILE *f, const char *name, const histogram *h)
{
    fprintf(f, ",\"%s\":{\"unit\":\"ns\",\"sub_bits\":%d,\"max_bits\":%d,\"count\":%llu,", name,
            HIST_SUB_BITS, HIST_MAX_BITS, (unsigned long long)h->count);
    if (h->count == 0)
        fputs("\"min_ns\":null,\"max_ns\":null,", f);
    else
        fprintf(f, "\"min_ns\":%llu,\"max_ns\":%llu,", (unsigned long long)h->min,
                (unsigned long long)h->max);
    fprintf(f, "\"sum_ns\":%.0f,\"counts\":[", h->sum);
    const char *sep = "";
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        fprintf(f, "%s[%u,%llu]", sep, i, (unsigned long long)h->buckets[i]);
        sep = ",";
    }
    fputs("]}", f);
}

/* What merge needs beyond the figures: messages sent, how many runs, the histograms. */
static void json_histograms(FILE *f, const config *cfg, const result *r)
{
    fprintf(f, ",\"sent\":%llu,\"merged_runs\":", (unsigned long long)r->cnt.sent);
    if (r->merged > 0)
        fprintf(f, "%zu", r->merged);
    else
        fputs("null", f);
    json_histogram(f, "latency_histogram", &r->hist);
    if (cfg->rate > 0)
        json_histogram(f, "send_lag_histogram", &r->send_lag);
    else
        fputs(",\"send_lag_histogram\":null", f);
    if (!cfg->udp)
        json_histogram(f, "connect_histogram", &r->connect_lat);
    else
        fputs(",\"connect_histogram\":null", f);
}

static double unix_time_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

/* latency_us, send_lag_us, connect_us and handshake_us (null where they do not apply). */
static void json_latencies(FILE *f, const config *cfg, const result *r)
{
    json_latency(f, cfg, &r->hist);
    fputs(",\"send_lag_us\":", f);
    if (cfg->rate > 0)
        json_latency(f, cfg, &r->send_lag);
    else
        fputs("null", f);
    /* Connect latency: TCP's (or a Unix socket's) without TLS, the handshake's with it. */
    fputs(",\"connect_us\":", f);
    if (!cfg->udp && !cfg->tls)
        json_latency(f, cfg, &r->connect_lat);
    else
        fputs("null", f);
    fputs(",\"handshake_us\":", f);
    if (cfg->tls)
        json_latency(f, cfg, &r->connect_lat);
    else
        fputs("null", f);
}

static void print_json(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    const counters *c = &r->cnt;
    FILE *f = stdout;
    fprintf(f, "{\"type\":\"summary\",\"ts\":%.3f,\"version\":", unix_time_s());
    json_string(f, yd_version());
    fputs(",\"address\":", f);
    json_string(f, b->addr);
    fputs(",\"transport\":", f);
    json_string(f, transport_name(b));
    fprintf(f, ",\"connections\":%zu,\"connected\":%zu,\"size\":%zu,\"depth\":%zu,\"threads\":%u,",
            cfg->conns, r->connected, cfg->size, cfg->depth, cfg->threads);
    if (cfg->rate > 0)
        fprintf(f, "\"rate\":%llu,", (unsigned long long)cfg->rate);
    else
        fputs("\"rate\":null,", f);
    fprintf(f,
            "\"offered_per_s\":%.1f,\"target_missed\":%s,\"all_connections_ended\":%s,"
            "\"duration_s\":%.3f,\"warmup_s\":%.3f,\"round_trips\":%llu,"
            "\"round_trips_per_s\":%.1f,\"mb_per_s\":%.3f,\"latency_us\":",
            r->offered, r->target_missed ? "true" : "false", r->all_dead ? "true" : "false",
            r->duration_s, (double)cfg->warmup_ms / 1000.0, (unsigned long long)c->round_trips,
            r->rate, r->rate * (double)cfg->size / 1e6);
    json_latencies(f, cfg, r);
    fprintf(f, ",\"tls\":%s,\"tls_version\":", cfg->tls ? "true" : "false");
    if (r->tls_version != NULL)
        json_string(f, r->tls_version);
    else
        fputs("null", f);
    fprintf(f, ",\"verified\":%s", cfg->tls && !cfg->insecure ? "true" : "false");
    if (cfg->reconnect_every != 0)
        fprintf(f, ",\"reconnect_every\":%llu,\"connects\":%llu,\"connects_per_s\":%.1f",
                (unsigned long long)cfg->reconnect_every, (unsigned long long)c->connects,
                r->connect_rate);
    else
        fputs(",\"reconnect_every\":null,\"connects\":null,\"connects_per_s\":null", f);
    if (cfg->reconnect_every != 0 && cfg->tls)
        fprintf(f, ",\"handshakes_per_s\":%.1f,\"resumed\":%llu", r->connect_rate,
                (unsigned long long)c->resumed);
    else
        fputs(",\"handshakes_per_s\":null,\"resumed\":null", f);
    load_json(f, b, r);
    fprintf(f,
            ",\"errors\":%llu,\"error_counts\":{\"connect\":%llu,\"mismatch\":%llu,"
            "\"reset\":%llu,\"closed\":%llu,\"io\":%llu,\"timeout\":%llu,\"lost\":%llu,"
            "\"duplicate\":%llu},\"reordered\":%llu,\"late\":%llu",
            (unsigned long long)counters_errors(c), (unsigned long long)c->connect,
            (unsigned long long)c->mismatch, (unsigned long long)c->reset,
            (unsigned long long)c->closed, (unsigned long long)c->io,
            (unsigned long long)c->timeout, (unsigned long long)c->lost,
            (unsigned long long)c->duplicate, (unsigned long long)c->reordered,
            (unsigned long long)c->late);
    json_histograms(f, cfg, r);
    fputs("}\n", f);
}

/* One report line of percentiles (min, --percentiles, max), or n/a when nothing was measured. */
static void print_percentiles(const config *cfg, const char *label, const histogram *h)
{
    if (h->count == 0) {
        printf("  %-14s n/a (nothing measured)\n", label);
        return;
    }
    printf("  %-14s min %.1f", label, us(h->min));
    for (size_t i = 0; i < cfg->npercentiles; i++) {
        char name[32];
        percentile_name(name, sizeof name, cfg->percentiles[i]);
        printf("  %s %.1f", name, us(hist_quantile(h, cfg->percentiles[i] / 100.0)));
    }
    printf("  max %.1f\n", us(h->max));
}

static void print_errors(const counters *c)
{
    printf("  errors         %llu", (unsigned long long)counters_errors(c));
    const struct {
        const char *name;
        uint64_t n;
    } kinds[] = {{"connect", c->connect}, {"mismatch", c->mismatch},
                 {"reset", c->reset},     {"closed", c->closed},
                 {"io", c->io},           {"timeout", c->timeout},
                 {"lost", c->lost},       {"duplicate", c->duplicate}};
    const char *sep = " (";
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (kinds[i].n == 0)
            continue;
        printf("%s%s %llu", sep, kinds[i].name, (unsigned long long)kinds[i].n);
        sep = ", ";
    }
    printf("%s\n", *sep == ',' ? ")" : "");
}

/* The rate --rate asks for: N, or with a ramp its mean over -t (15.5 for 10:21 over all of it). */
static const char *target_text(const config *cfg, char *buf, size_t size)
{
    double mean = load_mean_rate(cfg);
    snprintf(buf, size, mean == (double)(uint64_t)mean ? "%.0f" : "%.1f", mean);
    return buf;
}

static void print_text(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    const counters *c = &r->cnt;
    printf("yodel bench: %s, %zu connection%s (%zu up), %zu B messages, depth %zu, %s, "
           "%u thread%s\n",
           b->addr, cfg->conns, cfg->conns == 1 ? "" : "s", r->connected, cfg->size, cfg->depth,
           cfg->rate > 0 ? "open loop" : "closed loop", cfg->threads, cfg->threads == 1 ? "" : "s");
    if (r->merged > 0)
        printf("  merged         %zu run%s made at the same time: counts and rates added\n",
               r->merged, r->merged == 1 ? "" : "s");
    if (cfg->tls)
        printf("  tls            %s, the server's certificate %s\n",
               r->tls_version != NULL ? r->tls_version : "(no handshake done)",
               cfg->insecure ? "NOT verified (--insecure)" : "verified");
    char target[32];
    if (cfg->rate > 0)
        printf("  target rate    %s round trips/s, offered %.1f/s (%.1f %%)\n",
               target_text(cfg, target, sizeof target), r->offered,
               100.0 * r->offered / load_mean_rate(cfg));
    printf("  duration       %.2f s (after %.2f s warmup)\n", r->duration_s,
           (double)cfg->warmup_ms / 1000.0);
    printf("  round trips    %llu  (%.1f/s)\n", (unsigned long long)c->round_trips, r->rate);
    if (cfg->reconnect_every != 0)
        printf("  %-14s %llu  (%.1f/s, a new connection every %llu round trip%s%s)\n",
               cfg->tls ? "handshakes" : "connects", (unsigned long long)c->connects,
               r->connect_rate, (unsigned long long)cfg->reconnect_every,
               cfg->reconnect_every == 1 ? "" : "s", "");
    if (cfg->reconnect_every != 0 && cfg->tls)
        printf("  resumed        %llu of %llu handshake%s (%s)\n", (unsigned long long)c->resumed,
               (unsigned long long)c->connects, c->connects == 1 ? "" : "s",
               cfg->resume ? "--resume offers the last session" : "every one full");
    printf("  throughput     %.2f MB/s of payload each way\n", r->rate * (double)cfg->size / 1e6);
    print_percentiles(cfg, "latency (us)", &r->hist);
    if (cfg->rate > 0)
        print_percentiles(cfg, "send lag (us)", &r->send_lag);
    if (cfg->tls)
        print_percentiles(cfg, "handshake (us)", &r->connect_lat);
    else if (!cfg->udp)
        print_percentiles(cfg, "connect (us)", &r->connect_lat);
    load_print_text(b, r);
    print_errors(c);
    if (cfg->udp)
        printf("  datagrams      %llu reordered, %llu late\n", (unsigned long long)c->reordered,
               (unsigned long long)c->late);
}

/* What made the run fail besides counted errors, one line each on stderr. */
static void print_warnings(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    if (r->all_dead)
        fprintf(stderr, "yodel bench: every connection ended after %.2f s of measuring; %s\n",
                r->duration_s,
                cfg->interval_ms != 0 ? "the intervals after it show 0 round trips/s"
                                      : "the run stopped there");
    char target[32];
    /* With a ramp, measured against its mean, as the report's target rate line is. */
    if (r->target_missed)
        fprintf(stderr,
                "yodel bench: offered %.1f round trips/s, %.1f %% of the %s asked for%s (send "
                "lag p99 %.1f us): try more connections (-n) or depth (-p)\n",
                r->offered, 100.0 * r->offered / load_mean_rate(cfg),
                target_text(cfg, target, sizeof target),
                cfg->ramp_ms != 0 ? " (the ramp's mean)" : "",
                us(hist_quantile(&r->send_lag, 0.99)));
    if (r->first_reconnect_error != 0)
        fprintf(stderr, "yodel bench: reconnecting failed (%llu connect errors in all): %s\n",
                (unsigned long long)r->cnt.connect, tls_connect_error(b, r->first_reconnect_error));
}

void report_open_hist(bench *b)
{
    const char *path = b->cfg.hist_file;
    if (path == NULL)
        return;
    b->hist_out = fopen(path, "w");
    if (b->hist_out == NULL)
        usage_error("bench", "--hist: cannot write '%s': %s", path, strerror(errno));
}

int report_write_hist(bench *b, const result *r)
{
    if (b->hist_out == NULL)
        return 0;
    int rc = hist_write_hgrm(&r->hist, b->hist_out, 1e6);
    if (fclose(b->hist_out) != 0)
        rc = -1;
    b->hist_out = NULL;
    if (rc < 0)
        fprintf(stderr, "yodel bench: cannot write --hist '%s': %s\n", b->cfg.hist_file,
                strerror(errno));
    return rc;
}

void report_print(const bench *b, const result *r)
{
    print_warnings(b, r);
    if (b->cfg.json)
        print_json(b, r);
    else
        print_text(b, r);
    fflush(stdout);
}
