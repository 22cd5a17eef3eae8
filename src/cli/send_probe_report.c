/*
 * What `yodel send --count` prints, ping's way: a header line, one line per probe, then the
 * statistics and, with --tally, the replies per backend. With --json, one object per line
 * instead ("type": "probe", "late", "summary", "tally"), units in the field names.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "send_probe.h"

uint64_t probe_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void fail_once(struct probe_report *r, const char *what)
{
    if (r->failed)
        return;
    r->failed = 1;
    fprintf(stderr, "yodel send: %s: %s\n", what, strerror(errno));
}

/* One line (or a part of one) on standard output, flushed at each newline. */
static void out(struct probe_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out(struct probe_report *r, const char *fmt, ...)
{
    if (r->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    if (n < 0 || (strchr(fmt, '\n') != NULL && fflush(stdout) != 0))
        fail_once(r, "writing standard output");
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void out_json_string(struct probe_report *r, const char *s, size_t len)
{
    out(r, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            out(r, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            out(r, "\\u%04x", ch);
        else
            out(r, "%c", ch);
    }
    out(r, "\"");
}

static void series_add(struct probe_report *r, struct series *s, uint64_t ns)
{
    if (s->len == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint64_t *p = realloc(s->ns, cap * sizeof *p);
        if (p == NULL) {
            errno = ENOMEM;
            fail_once(r, "keeping the round-trip times");
            return;
        }
        s->ns = p;
        s->cap = cap;
    }
    s->ns[s->len++] = ns;
}

/* The replies of one backend more; past TALLY_MAX backends they count as "(other)". */
static void tally_add(struct probe_report *r, const char *backend, size_t len)
{
    if (len == 0)
        backend = "-", len = 1;
    for (size_t i = 0; i < r->nrows; i++) {
        struct tally_row *row = &r->rows[i];
        if (strlen(row->backend) == len && memcmp(row->backend, backend, len) == 0) {
            row->replies++;
            return;
        }
    }
    if (r->nrows == TALLY_MAX) {
        r->rows[TALLY_MAX - 1].replies++; /* the last row is "(other)" */
        return;
    }
    if (r->nrows == TALLY_MAX - 1)
        backend = "(other)", len = strlen("(other)");
    struct tally_row *rows = realloc(r->rows, (r->nrows + 1) * sizeof *rows);
    if (rows == NULL) {
        errno = ENOMEM;
        fail_once(r, "keeping the tally");
        return;
    }
    r->rows = rows;
    struct tally_row *row = &rows[r->nrows++];
    memcpy(row->backend, backend, len);
    row->backend[len] = '\0';
    row->replies = 1;
}

void report_start(struct probe_report *r)
{
    const struct probe_options *o = r->o;
    r->start_ns = probe_now_ns();
    if (o->json)
        return;
    out(r, "PROBE %s (%s): ", o->addr, r->transport);
    if (o->count > 0)
        out(r, "%llu probe%s", (unsigned long long)o->count, o->count == 1 ? "" : "s");
    else
        out(r, "a probe");
    if (o->interval_ms % 1000 == 0)
        out(r, " every %llus", (unsigned long long)(o->interval_ms / 1000));
    else
        out(r, " every %llums", (unsigned long long)o->interval_ms);
    out(r, "%s\n", o->reconnect ? ", a new connection each" : "");
}

void report_sent(struct probe_report *r, uint64_t seq)
{
    (void)seq;
    r->sent++;
}

void report_unsend(struct probe_report *r)
{
    r->sent--;
}

void report_reply(struct probe_report *r, const struct probe_reply *reply)
{
    const struct probe_options *o = r->o;
    int handshakes = o->reconnect && o->tls != NULL;
    r->received++;
    r->end_ns = probe_now_ns();
    if (reply->tls_version != NULL) /* the library's string lives as long as the connection */
        snprintf(r->tls_version, sizeof r->tls_version, "%s", reply->tls_version);
    series_add(r, &r->rtt, reply->rtt_ns);
    if (o->reconnect)
        series_add(r, &r->connect, reply->connect_ns);
    if (handshakes)
        series_add(r, &r->handshake, reply->handshake_ns);
    if (o->tally)
        tally_add(r, reply->backend, reply->backend_len);
    if (o->quiet)
        return;
    if (o->json) {
        out(r,
            "{\"type\":\"probe\",\"seq\":%llu,\"status\":\"reply\",\"bytes\":%zu,\"rtt_ms\":%.3f",
            (unsigned long long)reply->seq, reply->bytes, ms(reply->rtt_ns));
        if (o->reconnect)
            out(r, ",\"connect_ms\":%.3f", ms(reply->connect_ns));
        if (handshakes)
            out(r, ",\"handshake_ms\":%.3f", ms(reply->handshake_ns));
        if (reply->tls_version != NULL)
            out(r, ",\"tls_version\":\"%s\"", reply->tls_version);
        out(r, ",\"from\":");
        if (reply->backend_len > 0)
            out_json_string(r, reply->backend, reply->backend_len);
        else
            out(r, "null");
        out(r, "}\n");
        return;
    }
    out(r, "seq=%llu bytes=%zu", (unsigned long long)reply->seq, reply->bytes);
    if (o->reconnect)
        out(r, " connect=%.3f ms", ms(reply->connect_ns));
    if (handshakes)
        out(r, " handshake=%.3f ms", ms(reply->handshake_ns));
    out(r, " time=%.3f ms", ms(reply->rtt_ns));
    if (reply->backend_len > 0)
        out(r, " from=%.*s", (int)reply->backend_len, reply->backend);
    out(r, "\n");
}

void report_lost(struct probe_report *r, uint64_t seq, const char *status, const char *detail)
{
    const struct probe_options *o = r->o;
    r->end_ns = probe_now_ns();
    if (o->quiet)
        return;
    if (o->json) {
        out(r, "{\"type\":\"probe\",\"seq\":%llu,\"status\":\"%s\"", (unsigned long long)seq,
            status);
        if (detail != NULL) {
            out(r, ",\"error\":");
            out_json_string(r, detail, strlen(detail));
        }
        out(r, "}\n");
        return;
    }
    out(r, "seq=%llu %s%s%s\n", (unsigned long long)seq, status, detail != NULL ? ": " : "",
        detail != NULL ? detail : "");
}

void report_late(struct probe_report *r, uint64_t seq)
{
    r->late++;
    if (r->o->quiet)
        return;
    if (r->o->json)
        out(r, "{\"type\":\"late\",\"seq\":%llu}\n", (unsigned long long)seq);
    else
        out(r, "seq=%llu late reply (ignored)\n", (unsigned long long)seq);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least pct % of the values at or below it. */
static uint64_t percentile(const struct series *s, double pct)
{
    size_t rank = (size_t)ceil(pct / 100.0 * (double)s->len);
    return s->ns[rank > 0 ? rank - 1 : 0];
}

struct spread {
    double min, avg, max, mdev, p50, p99;
};

/* Sorts the series and sums it up (mdev as ping has it: the standard deviation). */
static struct spread spread_of(struct series *s)
{
    struct spread d = {0};
    if (s->len == 0)
        return d;
    qsort(s->ns, s->len, sizeof *s->ns, cmp_u64);
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < s->len; i++) {
        double v = ms(s->ns[i]);
        sum += v;
        sum2 += v * v;
    }
    d.min = ms(s->ns[0]);
    d.max = ms(s->ns[s->len - 1]);
    d.avg = sum / (double)s->len;
    double var = sum2 / (double)s->len - d.avg * d.avg;
    d.mdev = var > 0 ? sqrt(var) : 0;
    d.p50 = ms(percentile(s, 50));
    d.p99 = ms(percentile(s, 99));
    return d;
}

static double loss_pct(const struct probe_report *r)
{
    return r->sent == 0 ? 0 : 100.0 * (double)(r->sent - r->received) / (double)r->sent;
}

static uint64_t elapsed_ms(const struct probe_report *r)
{
    return r->end_ns > r->start_ns ? (r->end_ns - r->start_ns) / 1000000u : 0;
}

static void summary_json(struct probe_report *r, const struct spread *rtt,
                         const struct spread *conn, const struct spread *hs)
{
    out(r, "{\"type\":\"summary\",\"target\":");
    out_json_string(r, r->o->addr, strlen(r->o->addr));
    out(r,
        ",\"transport\":\"%s\",\"sent\":%llu,"
        "\"received\":%llu,\"late\":%llu,\"loss_pct\":%.1f,\"time_ms\":%llu,\"rtt_ms\":",
        r->transport, (unsigned long long)r->sent, (unsigned long long)r->received,
        (unsigned long long)r->late, loss_pct(r), (unsigned long long)elapsed_ms(r));
    if (r->rtt.len == 0)
        out(r, "null");
    else
        out(r, "{\"min\":%.3f,\"avg\":%.3f,\"max\":%.3f,\"mdev\":%.3f,\"p50\":%.3f,\"p99\":%.3f}",
            rtt->min, rtt->avg, rtt->max, rtt->mdev, rtt->p50, rtt->p99);
    if (r->o->reconnect && r->connect.len > 0)
        out(r, ",\"connect_ms\":{\"min\":%.3f,\"avg\":%.3f,\"max\":%.3f}", conn->min, conn->avg,
            conn->max);
    if (r->handshake.len > 0)
        out(r, ",\"handshake_ms\":{\"min\":%.3f,\"avg\":%.3f,\"max\":%.3f}", hs->min, hs->avg,
            hs->max);
    if (r->o->tls != NULL && r->tls_version[0] != '\0')
        out(r, ",\"tls_version\":\"%s\"", r->tls_version);
    else if (r->o->tls != NULL)
        out(r, ",\"tls_version\":null");
    out(r, "}\n");
}

static void summary_text(struct probe_report *r, const struct spread *rtt,
                         const struct spread *conn, const struct spread *hs)
{
    out(r, "--- %s probe statistics ---\n", r->o->addr);
    out(r, "%llu sent, %llu received, ", (unsigned long long)r->sent,
        (unsigned long long)r->received);
    if (r->late > 0)
        out(r, "%llu late, ", (unsigned long long)r->late);
    out(r, "%.3g%% loss, time %llums\n", loss_pct(r), (unsigned long long)elapsed_ms(r));
    if (r->rtt.len > 0)
        out(r, "rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms, p50 %.3f ms, p99 %.3f ms\n",
            rtt->min, rtt->avg, rtt->max, rtt->mdev, rtt->p50, rtt->p99);
    if (r->o->reconnect && r->connect.len > 0)
        out(r, "connect min/avg/max = %.3f/%.3f/%.3f ms\n", conn->min, conn->avg, conn->max);
    if (r->handshake.len > 0)
        out(r, "handshake min/avg/max = %.3f/%.3f/%.3f ms\n", hs->min, hs->avg, hs->max);
}

static int cmp_rows(const void *a, const void *b)
{
    const struct tally_row *x = a, *y = b;
    if (x->replies != y->replies)
        return x->replies > y->replies ? -1 : 1;
    return strcmp(x->backend, y->backend);
}

static void tally(struct probe_report *r)
{
    qsort(r->rows, r->nrows, sizeof *r->rows, cmp_rows);
    if (r->o->json) {
        out(r, "{\"type\":\"tally\",\"replies\":%llu,\"backends\":[",
            (unsigned long long)r->received);
        for (size_t i = 0; i < r->nrows; i++) {
            out(r, "%s{\"backend\":", i > 0 ? "," : "");
            out_json_string(r, r->rows[i].backend, strlen(r->rows[i].backend));
            out(r, ",\"replies\":%llu,\"share_pct\":%.1f}", (unsigned long long)r->rows[i].replies,
                100.0 * (double)r->rows[i].replies / (double)r->received);
        }
        out(r, "]}\n");
        return;
    }
    int width = (int)strlen("backend");
    for (size_t i = 0; i < r->nrows; i++)
        if ((int)strlen(r->rows[i].backend) > width)
            width = (int)strlen(r->rows[i].backend);
    out(r, "%-*s  replies  share\n", width, "backend");
    for (size_t i = 0; i < r->nrows; i++)
        out(r, "%-*s  %7llu  %4.1f%%\n", width, r->rows[i].backend,
            (unsigned long long)r->rows[i].replies,
            100.0 * (double)r->rows[i].replies / (double)r->received);
}

void report_end(struct probe_report *r)
{
    struct spread rtt = spread_of(&r->rtt), conn = spread_of(&r->connect);
    struct spread hs = spread_of(&r->handshake);
    if (r->o->json)
        summary_json(r, &rtt, &conn, &hs);
    else
        summary_text(r, &rtt, &conn, &hs);
    if (r->o->tally)
        tally(r);
    if (fflush(stdout) != 0)
        fail_once(r, "writing standard output");
}

int report_exit_status(const struct probe_report *r)
{
    if (r->failed || r->received == 0 || loss_pct(r) > r->o->max_loss_pct)
        return 1;
    return 0;
}

void report_free(struct probe_report *r)
{
    free(r->rtt.ns);
    free(r->connect.ns);
    free(r->handshake.ns);
    free(r->rows);
}
