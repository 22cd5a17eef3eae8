/*
 * yodel bench's reports. When every thread has ended, report_merge() adds up their counts,
 * histograms and rates into one result; report_print() writes what made the run fail besides
 * counted errors to stderr, then the report to stdout: a few lines of text, or one JSON
 * object (type "summary"; its strings through bench_json.h's writer). Latencies are in
 * microseconds, "null" or "n/a" where nothing was measured. Connect latency is TCP's (or a Unix
 * socket's) without TLS, and with TLS the handshake's, from the connect call to its end (the
 * library tells no moment between the TCP connect and the handshake).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bench_json.h"
#include "histogram.h"
#include "yodel.h"

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static uint64_t error_total(const counters *c)
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
    return error_total(&r->cnt) > 0 || r->target_missed || r->all_dead;
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

static void json_latency(FILE *f, const histogram *h)
{
    fputc('{', f);
    json_us(f, "min", h, h->min);
    fprintf(f, ",\"mean\":");
    if (h->count == 0)
        fputs("null", f);
    else
        fprintf(f, "%.1f", hist_mean(h) / 1000.0);
    const struct {
        const char *name;
        double q;
    } quantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++) {
        fputc(',', f);
        json_us(f, quantiles[i].name, h, hist_quantile(h, quantiles[i].q));
    }
    fputc(',', f);
    json_us(f, "max", h, h->max);
    fputc('}', f);
}

static double unix_time_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
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
    json_latency(f, &r->hist);
    fputs(",\"send_lag_us\":", f);
    if (cfg->rate > 0)
        json_latency(f, &r->send_lag);
    else
        fputs("null", f);
    /* Connect latency: TCP's (or a Unix socket's) without TLS, the handshake's with it. */
    fputs(",\"connect_us\":", f);
    if (!cfg->udp && !cfg->tls)
        json_latency(f, &r->connect_lat);
    else
        fputs("null", f);
    fputs(",\"handshake_us\":", f);
    if (cfg->tls)
        json_latency(f, &r->connect_lat);
    else
        fputs("null", f);
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
            "\"duplicate\":%llu},\"reordered\":%llu,\"late\":%llu}\n",
            (unsigned long long)error_total(c), (unsigned long long)c->connect,
            (unsigned long long)c->mismatch, (unsigned long long)c->reset,
            (unsigned long long)c->closed, (unsigned long long)c->io,
            (unsigned long long)c->timeout, (unsigned long long)c->lost,
            (unsigned long long)c->duplicate, (unsigned long long)c->reordered,
            (unsigned long long)c->late);
}

/* One report line of percentiles, or n/a when nothing was measured. */
static void print_percentiles(const char *label, const histogram *h)
{
    if (h->count == 0) {
        printf("  %-14s n/a (nothing measured)\n", label);
        return;
    }
    printf("  %-14s min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", label,
           us(h->min), us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)),
           us(hist_quantile(h, 0.99)), us(hist_quantile(h, 0.999)), us(h->max));
}

static void print_errors(const counters *c)
{
    printf("  errors         %llu", (unsigned long long)error_total(c));
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

static void print_text(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    const counters *c = &r->cnt;
    printf("yodel bench: %s, %zu connection%s (%zu up), %zu B messages, depth %zu, %s, "
           "%u thread%s\n",
           b->addr, cfg->conns, cfg->conns == 1 ? "" : "s", r->connected, cfg->size, cfg->depth,
           cfg->rate > 0 ? "open loop" : "closed loop", cfg->threads, cfg->threads == 1 ? "" : "s");
    if (cfg->tls)
        printf("  tls            %s, the server's certificate %s\n",
               r->tls_version != NULL ? r->tls_version : "(no handshake done)",
               cfg->insecure ? "NOT verified (--insecure)" : "verified");
    if (cfg->rate > 0)
        printf("  target rate    %.0f round trips/s, offered %.1f/s (%.1f %%)\n",
               load_mean_rate(cfg), r->offered, 100.0 * r->offered / load_mean_rate(cfg));
    printf("  duration       %.2f s (after %.2f s warmup)\n", r->duration_s,
           (double)cfg->warmup_ms / 1000.0);
    printf("  round trips    %llu  (%.1f/s)\n", (unsigned long long)c->round_trips, r->rate);
    if (cfg->reconnect_every != 0)
        printf("  %-14s %llu  (%.1f/s, a new connection every %llu round trip%s%s)\n",
               cfg->tls ? "handshakes" : "connects", (unsigned long long)c->connects,
               r->connect_rate, (unsigned long long)cfg->reconnect_every,
               cfg->reconnect_every == 1 ? "" : "s", "");
    if (cfg->reconnect_every != 0 && cfg->tls)
        printf("  resumed        %llu of %llu handshakes (%s)\n", (unsigned long long)c->resumed,
               (unsigned long long)c->connects,
               cfg->resume ? "--resume offers the last session" : "every one full");
    printf("  throughput     %.2f MB/s of payload each way\n", r->rate * (double)cfg->size / 1e6);
    print_percentiles("latency (us)", &r->hist);
    if (cfg->rate > 0)
        print_percentiles("send lag (us)", &r->send_lag);
    if (cfg->tls)
        print_percentiles("handshake (us)", &r->connect_lat);
    else if (!cfg->udp)
        print_percentiles("connect (us)", &r->connect_lat);
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
        fprintf(stderr,
                "yodel bench: every connection ended after %.2f s of measuring; the run "
                "stopped there\n",
                r->duration_s);
    if (r->target_missed)
        fprintf(stderr,
                "yodel bench: offered %.1f round trips/s, %.1f %% of the %llu asked for (send "
                "lag p99 %.1f us): try more connections (-n) or depth (-p)\n",
                r->offered, 100.0 * r->offered / (double)cfg->rate, (unsigned long long)cfg->rate,
                us(hist_quantile(&r->send_lag, 0.99)));
    if (r->first_reconnect_error != 0)
        fprintf(stderr, "yodel bench: reconnecting failed (%llu connect errors in all): %s\n",
                (unsigned long long)r->cnt.connect, tls_connect_error(b, r->first_reconnect_error));
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
