/* Statistics lines: the tutorial's messages-per-second counter, done for operators. */
#include "stats_report.h"

#include <string.h>

#include "cli.h"

void stats_report_init(struct stats_report *r, int json, uint64_t now_ms)
{
    memset(r, 0, sizeof *r);
    r->json = json;
    r->start_ms = r->last_ms = now_ms;
}

static uint64_t error_total(const struct serve_counts *c)
{
    uint64_t n = c->http_errors;
    for (int i = 0; i < YD_ERR__COUNT; i++)
        n += c->sum.errors[i];
    return n;
}

static void add_error(struct cli_line *l, int first, const char *name, uint64_t n, int json)
{
    if (json)
        cli_line_add(l, "%s\"%s\":%llu", first ? "" : ",", name, (unsigned long long)n);
    else
        cli_line_add(l, " %s=%llu", name, (unsigned long long)n);
}

/* Every kind the library counts, then the endpoint's "http". */
static void add_errors(struct cli_line *l, const struct serve_counts *c, int json)
{
    for (int i = 0; i < YD_ERR__COUNT; i++)
        add_error(l, i == 0, yd_error_kind_name(i), c->sum.errors[i], json);
    add_error(l, 0, "http", c->http_errors, json);
}

void stats_report_interval(struct stats_report *r, const struct serve_counts *counts,
                           uint64_t now_ms)
{
    const yd_stats_snapshot *now = &counts->sum;
    double secs = (double)(now_ms - r->last_ms) / 1000.0;
    if (secs <= 0)
        secs = 1e-3;
    double msgs = (double)(now->messages - r->last.sum.messages) / secs;
    double in = (double)(now->bytes_in - r->last.sum.bytes_in) / secs;
    double out = (double)(now->bytes_out - r->last.sum.bytes_out) / secs;
    uint64_t errs = error_total(counts) - error_total(&r->last);
    struct cli_line l = {.len = 0};
    if (r->json) {
        cli_line_begin_event(&l, "stats");
        cli_line_add(&l,
                     ",\"conns_active\":%llu,\"conns_accepted\":%llu,"
                     "\"conns_refused\":%llu,\"messages_per_s\":%.0f,\"bytes_in_per_s\":%.0f,"
                     "\"bytes_out_per_s\":%.0f,\"errors\":%llu}",
                     (unsigned long long)now->conns_active, (unsigned long long)now->conns_accepted,
                     (unsigned long long)now->conns_refused, msgs, in, out,
                     (unsigned long long)errs);
    } else {
        cli_line_add(&l,
                     "yodel serve: stats: active=%llu accepted=%llu refused=%llu %.0f msg/s "
                     "in=%.0f B/s out=%.0f B/s errors=%llu",
                     (unsigned long long)now->conns_active, (unsigned long long)now->conns_accepted,
                     (unsigned long long)now->conns_refused, msgs, in, out,
                     (unsigned long long)errs);
    }
    cli_line_write(&l);
    r->last = *counts;
    r->last_ms = now_ms;
}

void stats_report_summary(struct stats_report *r, const struct serve_counts *counts,
                          uint64_t now_ms)
{
    const yd_stats_snapshot *now = &counts->sum;
    double secs = (double)(now_ms - r->start_ms) / 1000.0;
    struct cli_line l = {.len = 0};
    if (r->json) {
        cli_line_begin_event(&l, "summary");
        cli_line_add(&l,
                     ",\"seconds\":%.3f,\"conns_accepted\":%llu,"
                     "\"conns_refused\":%llu,\"conns_closed\":%llu,\"messages\":%llu,"
                     "\"bytes_in\":%llu,\"bytes_out\":%llu,\"errors\":{",
                     secs, (unsigned long long)now->conns_accepted,
                     (unsigned long long)now->conns_refused, (unsigned long long)now->conns_closed,
                     (unsigned long long)now->messages, (unsigned long long)now->bytes_in,
                     (unsigned long long)now->bytes_out);
        add_errors(&l, counts, 1);
        cli_line_add(&l, "}}");
    } else {
        cli_line_add(&l,
                     "yodel serve: summary: %.1fs accepted=%llu refused=%llu closed=%llu "
                     "messages=%llu bytes_in=%llu bytes_out=%llu errors:",
                     secs, (unsigned long long)now->conns_accepted,
                     (unsigned long long)now->conns_refused, (unsigned long long)now->conns_closed,
                     (unsigned long long)now->messages, (unsigned long long)now->bytes_in,
                     (unsigned long long)now->bytes_out);
        add_errors(&l, counts, 0);
    }
    cli_line_write(&l);
}
