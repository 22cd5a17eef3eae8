/*
 * yodel bench: the shape of the load. Its options and their checks: several targets (-c
 * repeated: connection i goes to target i % targets), source addresses (--bind repeated:
 * connection i from address (i / targets) % binds, so that every pair of target and source
 * is used), the pace of new connections (--connect-rate, kept in bench_run.c), a linear ramp
 * of the open-loop rate (--rate A:B --ramp D) and the SLO of --find-max (bench_findmax.c).
 * Then the figures per target: each thread counts them in its own tallies (bench_conn.c), and
 * the reports add them up here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_json.h"
#include "cli.h"
#include "yodel.h"

/* --rate N, or A:B (a ramp from A to B round trips/s; B below A is refused). */
static void take_rate(const char *arg, config *cfg)
{
    cfg->rate_text = arg;
    const char *colon = strchr(arg, ':');
    if (colon == NULL) {
        cfg->rate = (uint64_t)opt_long("bench", "--rate", arg, 1, 1000000000);
        cfg->rate_from = cfg->rate;
        return;
    }
    char from[32];
    if ((size_t)(colon - arg) >= sizeof from)
        usage_error("bench", "--rate: '%s' is not N or A:B", arg);
    memcpy(from, arg, (size_t)(colon - arg));
    from[colon - arg] = '\0';
    cfg->rate_from = (uint64_t)opt_long("bench", "--rate", from, 1, 1000000000);
    cfg->rate = (uint64_t)opt_long("bench", "--rate", colon + 1, 1, 1000000000);
    if (cfg->rate < cfg->rate_from)
        usage_error("bench", "--rate %s: a ramp must not fall (B is below A)", arg);
}

/* Whether port is empty (none: the kernel picks) or a number 0 to 65535. */
static int port_ok(const char *port)
{
    char *end;
    long n = strtol(port, &end, 10);
    return *port == '\0' || (end != port && *end == '\0' && n >= 0 && n <= 65535);
}

/* Whether a source address is numeric, as yd_conn_connect_from takes it: IP, [IPv6], IP:PORT or
 * [IPv6]:PORT. */
static int source_ok(const char *arg)
{
    char host[64];
    unsigned char buf[16];
    const char *port = "";
    const char *end = arg[0] == '[' ? strchr(arg, ']') : strchr(arg, ':');
    if (end == NULL)
        end = arg + strlen(arg);
    else
        port = arg[0] == '[' ? end + 1 : end;
    const char *from = arg[0] == '[' ? arg + 1 : arg;
    if (end - from <= 0 || (size_t)(end - from) >= sizeof host)
        return 0;
    memcpy(host, from, (size_t)(end - from));
    host[end - from] = '\0';
    if (*port != '\0' && *port++ != ':')
        return 0;
    if (arg[0] == '[' && arg[strlen(arg) - 1] != ']' && *port == '\0')
        return 0;
    int family = arg[0] == '[' ? AF_INET6 : AF_INET;
    return inet_pton(family, host, buf) == 1 && port_ok(port);
}

static void take_bind(const char *arg, config *cfg)
{
    if (!source_ok(arg))
        usage_error("bench", "--bind: bad source address '%s' (use 127.0.0.2, [::1], IP:PORT)",
                    arg);
    if (cfg->nbinds == MAX_BINDS)
        usage_error("bench", "--bind: more than %d source addresses", MAX_BINDS);
    cfg->binds[cfg->nbinds++] = arg;
}

int load_take_option(int c, const char *arg, config *cfg)
{
    switch (c) {
    case 'c':
        if (cfg->ntargets == MAX_TARGETS)
            usage_error("bench", "-c: more than %d targets", MAX_TARGETS);
        cfg->addrs[cfg->ntargets++] = opt_addr("bench", "-c", arg);
        cfg->addr = cfg->addrs[0];
        return 1;
    case 'R':
        take_rate(arg, cfg);
        return 1;
    case OPT_BIND:
        take_bind(arg, cfg);
        return 1;
    case OPT_CONNECT_RATE:
        cfg->connect_rate = (uint64_t)opt_long("bench", "--connect-rate", arg, 1, 100000000);
        return 1;
    case OPT_RAMP:
        cfg->ramp_ms = opt_duration_ms("bench", "--ramp", arg);
        if (cfg->ramp_ms == 0)
            usage_error("bench", "--ramp: the duration must be more than 0");
        return 1;
    case OPT_FIND_MAX:
        cfg->find_max = 1;
        return 1;
    case OPT_SLO:
        cfg->slo_text = arg;
        return 1;
    }
    return 0;
}

/* The latency of an SLO term in nanoseconds: a number with its unit (us, ms or s), or 0. */
static uint64_t slo_latency_ns(const char *value)
{
    char *end;
    double v = strtod(value, &end);
    if (end == value || !(v > 0))
        return 0;
    double scale = strcmp(end, "us") == 0   ? 1e3
                   : strcmp(end, "ms") == 0 ? 1e6
                   : strcmp(end, "s") == 0  ? 1e9
                                            : 0;
    return v * scale >= 1 && v * scale < 1e15 ? (uint64_t)(v * scale) : 0;
}

/* errors<=VALUE: a share of the messages sent ("0.1%") or a count ("10"); 0 if bad. */
static int slo_errors(const char *value, slo *out)
{
    char *end;
    double v = strtod(value, &end);
    if (end == value || !(v >= 0))
        return 0;
    out->has_errors = 1;
    out->errors = v;
    out->errors_pct = strcmp(end, "%") == 0;
    return (out->errors_pct && v <= 100) || (*end == '\0' && v == (double)(uint64_t)v);
}

/*
 * One term of --slo, METRIC<=VALUE: METRIC is p50, p90, p99 or p99.9 (a latency, VALUE with
 * its unit: 500us, 1ms, 2s) or errors (VALUE a share, 0.1%, or a count, 10).
 */
static void slo_term(char *term, const char *whole, slo *out)
{
    static const char *const names[] = {"p50", "p90", "p99", "p99.9"};
    char *op = strstr(term, "<=");
    if (op == NULL)
        usage_error("bench", "--slo '%s': '%s' is not METRIC<=VALUE", whole, term);
    *op = '\0';
    const char *value = op + 2;
    if (strcmp(term, "errors") == 0) {
        if (out->has_errors)
            usage_error("bench", "--slo '%s': errors is bound twice", whole);
        if (!slo_errors(value, out))
            usage_error("bench", "--slo '%s': bad error bound '%s' (use 0.1%% or a count)", whole,
                        value);
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(term, names[i]) != 0)
            continue;
        /* One bound silently replacing another would hide a typo. */
        if (out->latency_ns[i] != 0)
            usage_error("bench", "--slo '%s': %s is bound twice", whole, term);
        out->latency_ns[i] = slo_latency_ns(value);
        if (out->latency_ns[i] == 0)
            usage_error("bench", "--slo '%s': bad latency '%s' for %s (use 500us, 1ms, 2s)", whole,
                        value, term);
        return;
    }
    usage_error("bench", "--slo '%s': unknown metric '%s' (p50, p90, p99, p99.9, errors)", whole,
                term);
}

/* --slo 'TERM,TERM,...' into out; exits 2 naming what is wrong. */
static void parse_slo(const char *text, slo *out)
{
    char buf[256];
    if (strlen(text) >= sizeof buf)
        usage_error("bench", "--slo: longer than %zu characters", sizeof buf - 1);
    strcpy(buf, text);
    *out = (slo){.has_errors = 0};
    if (buf[0] == '\0')
        usage_error("bench", "--slo: empty (use 'p99<=1ms,errors<=0.1%%')");
    /* Not strtok: it would skip the empty terms of 'p99<=1ms,' and ',,'. */
    for (char *t = buf, *comma; t != NULL; t = comma != NULL ? comma + 1 : NULL) {
        comma = strchr(t, ',');
        if (comma != NULL)
            *comma = '\0';
        if (t[0] == '\0')
            usage_error("bench", "--slo '%s': an empty term (a comma too many?)", text);
        slo_term(t, text, out);
    }
}

/* Every target the same kind of socket (TCP, UDP, Unix; TLS or not): one protocol for all. */
static void check_targets(config *cfg)
{
    if (cfg->ntargets == 0)
        cfg->addrs[cfg->ntargets++] = cfg->addr;
    yd_addr first;
    yd_addr_parse(cfg->addrs[0], &first); /* checked by opt_addr */
    for (size_t i = 1; i < cfg->ntargets; i++) {
        yd_addr a;
        yd_addr_parse(cfg->addrs[i], &a);
        if (a.transport != first.transport || a.tls != first.tls)
            usage_error("bench", "-c %s: not the same kind of address as %s (TCP, UDP, Unix, TLS)",
                        cfg->addrs[i], cfg->addrs[0]);
    }
    if (cfg->nbinds > 0 && first.transport == YD_UNIX)
        usage_error("bench", "--bind: not with a Unix socket (%s)", cfg->addrs[0]);
}

/* --rate A:B needs --ramp, no longer than -t, and --ramp needs A:B. */
static void check_ramp(const config *cfg)
{
    int ramp = cfg->rate_from != cfg->rate;
    if (ramp && cfg->ramp_ms == 0)
        usage_error("bench", "--rate %llu:%llu: a ramp needs --ramp DURATION",
                    (unsigned long long)cfg->rate_from, (unsigned long long)cfg->rate);
    if (cfg->ramp_ms != 0 && !ramp && cfg->rate_text != NULL && strchr(cfg->rate_text, ':'))
        usage_error("bench",
                    "--ramp: --rate %s has nothing to ramp (A equals B; B must be above A)",
                    cfg->rate_text);
    if (cfg->ramp_ms != 0 && !ramp)
        usage_error("bench", "--ramp: needs --rate A:B (from A to B round trips/s)");
    if (cfg->ramp_ms > cfg->duration_ms)
        usage_error("bench", "--ramp: %.3g s is longer than -t (%.3g s)",
                    (double)cfg->ramp_ms / 1000.0, (double)cfg->duration_ms / 1000.0);
}

static void check_find_max(config *cfg)
{
    if (cfg->slo_text != NULL && !cfg->find_max)
        usage_error("bench", "--slo: only with --find-max");
    if (!cfg->find_max)
        return;
    if (cfg->slo_text == NULL)
        usage_error("bench", "--find-max: needs --slo (e.g. 'p99<=1ms,errors<=0.1%%')");
    if (cfg->ramp_ms != 0)
        usage_error("bench", "--find-max: not with --ramp (each step holds one rate)");
    if (cfg->hist_file != NULL)
        usage_error("bench", "--hist: not with --find-max (each step has its own latencies)");
    /* Each step prints its own line: no --interval lines (the counts restart at each step). */
    cfg->interval_ms = 0;
    parse_slo(cfg->slo_text, &cfg->slo);
}

void load_check_options(config *cfg)
{
    check_targets(cfg);
    check_ramp(cfg);
    check_find_max(cfg);
}

void load_format_targets(bench *b)
{
    const config *cfg = &b->cfg;
    size_t used = 0;
    for (size_t i = 0; i < cfg->ntargets; i++) {
        yd_addr *addr = &b->target[i];
        yd_addr_parse(cfg->addrs[i], addr); /* checked by opt_addr */
        if (cfg->udp)
            addr->transport = YD_UDP;
        addr->tls = cfg->tls;
        yd_addr_format(addr, b->target_addr[i], sizeof b->target_addr[i]);
        /* The name of the run: the address, or the list of them (cut short if it must be). */
        int n = snprintf(b->addr + used, sizeof b->addr - used, "%s%s", i > 0 ? ", " : "",
                         b->target_addr[i]);
        used = n > 0 && (size_t)n < sizeof b->addr - used ? used + (size_t)n : used;
    }
}

const char *load_source(const bench *b, uint32_t index)
{
    const config *cfg = &b->cfg;
    if (cfg->nbinds == 0)
        return NULL;
    return cfg->binds[(index / cfg->ntargets) % cfg->nbinds];
}

double load_rate_at(const config *cfg, uint64_t ns)
{
    uint64_t ramp_ns = cfg->ramp_ms * 1000000u;
    if (ns >= ramp_ns)
        return (double)cfg->rate;
    double from = (double)cfg->rate_from;
    return from + ((double)cfg->rate - from) * (double)ns / (double)ramp_ns;
}

/* The ramp's mean (A+B)/2 over D, then B for the rest of -t. Without a ramp (or a -t: a merged
 * summary has none), the rate. */
double load_mean_rate(const config *cfg)
{
    if (cfg->ramp_ms == 0 || cfg->duration_ms == 0)
        return (double)cfg->rate;
    double d = (double)cfg->ramp_ms, t = (double)cfg->duration_ms;
    double ramp = ((double)cfg->rate_from + (double)cfg->rate) / 2.0;
    return (ramp * d + (double)cfg->rate * (t - d)) / t;
}

int load_alloc_tally(worker *w)
{
    size_t n = w->b->cfg.ntargets;
    if (n < 2)
        return 0;
    w->tally = calloc(n, sizeof *w->tally);
    if (w->tally == NULL)
        return -ENOMEM;
    for (size_t t = 0; t < n; t++)
        hist_reset(&w->tally[t].hist);
    return 0;
}

/* One target's figures, added up over the threads. */
typedef struct target_sum {
    counters cnt;
    uint64_t errors;
    double rate; /* verified round trips/s, each thread over its own measuring time */
} target_sum;

static uint64_t errors_of(const counters *c)
{
    return c->connect + c->mismatch + c->reset + c->closed + c->io + c->timeout + c->lost +
           c->duplicate;
}

/* Target t's counts into *s and its latencies into *h (with one target: the run's). */
static void sum_target(const bench *b, const result *r, size_t t, target_sum *s, histogram *h)
{
    memset(s, 0, sizeof *s);
    hist_reset(h);
    if (b->cfg.ntargets < 2) {
        s->cnt = r->cnt;
        s->rate = r->rate;
        hist_merge(h, &r->hist);
    }
    for (unsigned i = 0; b->cfg.ntargets >= 2 && i < b->cfg.threads; i++) {
        const worker *w = &b->workers[i];
        const counters *c = &w->tally[t].cnt;
        s->cnt.round_trips += c->round_trips;
        s->cnt.sent += c->sent;
        s->cnt.connect += c->connect;
        s->errors += errors_of(c);
        hist_merge(h, &w->tally[t].hist);
        if (w->record_end_ns > w->record_start_ns)
            s->rate +=
                (double)c->round_trips * 1e9 / (double)(w->record_end_ns - w->record_start_ns);
    }
    if (b->cfg.ntargets < 2)
        s->errors = errors_of(&s->cnt);
}

static double us_at(const histogram *h, double q)
{
    return (double)hist_quantile(h, q) / 1000.0;
}

/* One line per target: its round trips, what was sent to it, its latency and errors. */
static void print_targets(const bench *b, const result *r)
{
    histogram *h = malloc(sizeof *h);
    if (b->cfg.ntargets < 2 || h == NULL) {
        free(h);
        return;
    }
    for (size_t t = 0; t < b->cfg.ntargets; t++) {
        target_sum s;
        sum_target(b, r, t, &s, h);
        printf("  target %-7zu %s: %llu round trips (%.1f/s), %llu sent, ", t + 1,
               b->target_addr[t], (unsigned long long)s.cnt.round_trips, s.rate,
               (unsigned long long)s.cnt.sent);
        /* No round trip, no latency (as JSON's null), not a latency of 0. */
        if (h->count == 0)
            printf("p50 n/a, p99 n/a, ");
        else
            printf("p50 %.1f us, p99 %.1f us, ", us_at(h, 0.5), us_at(h, 0.99));
        printf("%llu error%s\n", (unsigned long long)s.errors, s.errors == 1 ? "" : "s");
    }
    free(h);
}

void load_print_text(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    if (cfg->ramp_ms != 0)
        printf("  ramp           %llu to %llu round trips/s over %.2f s, then %llu\n",
               (unsigned long long)cfg->rate_from, (unsigned long long)cfg->rate,
               (double)cfg->ramp_ms / 1000.0, (unsigned long long)cfg->rate);
    if (r->connected > 0 && !cfg->udp)
        printf("  connecting     %zu up in %.2f s (%.1f/s%s)\n", r->connected, r->connect_phase_s,
               r->connect_phase_s > 0 ? (double)r->connected / r->connect_phase_s : 0.0,
               cfg->connect_rate ? ", paced by --connect-rate" : "");
    if (cfg->nbinds > 0)
        printf("  from           %zu source address%s, %s first\n", cfg->nbinds,
               cfg->nbinds == 1 ? "" : "es", cfg->binds[0]);
    print_targets(b, r);
}

/* ,"targets":[{"address":...,"round_trips":...},...]: one entry a target, also when alone. */
static void json_targets(FILE *f, const bench *b, const result *r)
{
    histogram *h = malloc(sizeof *h);
    if (h == NULL) {
        fputs(",\"targets\":null", f);
        return;
    }
    fputs(",\"targets\":[", f);
    for (size_t t = 0; t < b->cfg.ntargets; t++) {
        target_sum s;
        sum_target(b, r, t, &s, h);
        fputs(t > 0 ? ",{\"address\":" : "{\"address\":", f);
        json_string(f, b->target_addr[t]);
        fprintf(f, ",\"round_trips\":%llu,\"round_trips_per_s\":%.1f,\"sent\":%llu,\"errors\":%llu",
                (unsigned long long)s.cnt.round_trips, s.rate, (unsigned long long)s.cnt.sent,
                (unsigned long long)s.errors);
        if (h->count == 0)
            fputs(",\"p50_us\":null,\"p99_us\":null}", f);
        else
            fprintf(f, ",\"p50_us\":%.1f,\"p99_us\":%.1f}", us_at(h, 0.5), us_at(h, 0.99));
    }
    fputc(']', f);
    free(h);
}

/* ,"bind":["127.0.0.2",...] or null. */
static void json_binds(FILE *f, const config *cfg)
{
    if (cfg->nbinds == 0) {
        fputs(",\"bind\":null", f);
        return;
    }
    for (size_t i = 0; i < cfg->nbinds; i++) {
        fputs(i == 0 ? ",\"bind\":[" : ",", f);
        json_string(f, cfg->binds[i]);
    }
    fputc(']', f);
}

void load_json(FILE *f, const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    if (cfg->connect_rate != 0)
        fprintf(f, ",\"connect_rate\":%llu", (unsigned long long)cfg->connect_rate);
    else
        fputs(",\"connect_rate\":null", f);
    fprintf(f, ",\"connect_phase_s\":%.3f", r->connect_phase_s);
    if (cfg->ramp_ms != 0)
        fprintf(f, ",\"ramp\":{\"from_per_s\":%llu,\"to_per_s\":%llu,\"duration_s\":%.3f}",
                (unsigned long long)cfg->rate_from, (unsigned long long)cfg->rate,
                (double)cfg->ramp_ms / 1000.0);
    else
        fputs(",\"ramp\":null", f);
    json_binds(f, cfg);
    json_targets(f, b, r);
}
