/*
 * --metrics: GET /metrics in the Prometheus text format (version 0.0.4), over HTTP/1.0 with
 * one request per connection, served by the loop it is given and written on the public
 * libyodel API only. The endpoint shares that loop with the echo service, so everything it
 * does is bounded: the line length, the header count, the number of clients, the time one
 * request may take.
 */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE_BYTES   8192
#define MAX_HEADER_LINES 64
#define MAX_CLIENTS      64
#define IDLE_TIMEOUT_MS  5000
/* Even a client that trickles one byte per idle timeout is gone after this long. */
#define REQUEST_DEADLINE_MS 10000
#define MAX_ROWS            128

struct metrics {
    yd_server *server;
    yd_stats *stats; /* the endpoint's own connections and its YD_ERR_HTTP count */
    metrics_collect_fn collect;
    void *ctx;
    char address[300];
    unsigned refs; /* 1 while listening, plus one per open request */
};

struct request {
    struct metrics *m;
    yd_timer *deadline;
    unsigned lines;
    int status; /* 0 until the request line is read, then the answer it will get */
    int answered;
};

static void metrics_unref(struct metrics *m)
{
    if (--m->refs > 0)
        return;
    yd_stats_free(m->stats);
    free(m);
}

/* ---- The response ------------------------------------------------------------------------ */

/* A label value: backslash, double quote and newline are escaped (unix: paths may hold them). */
static void put_label(FILE *f, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

struct counter {
    const char *name, *type, *help;
    size_t offset; /* of the uint64_t in yd_stats_snapshot */
};

static const struct counter counters[] = {
    {"yodel_connections_accepted_total", "counter", "Connections accepted, refused ones included.",
     offsetof(yd_stats_snapshot, conns_accepted)},
    {"yodel_connections_refused_total", "counter",
     "Connections accepted and closed at once (--max-conns).",
     offsetof(yd_stats_snapshot, conns_refused)},
    {"yodel_connections_closed_total", "counter", "Connections closed.",
     offsetof(yd_stats_snapshot, conns_closed)},
    {"yodel_connections_active", "gauge", "Connections open now.",
     offsetof(yd_stats_snapshot, conns_active)},
    {"yodel_messages_total", "counter",
     "Messages echoed: reads in raw mode, lines in line and upper mode, datagrams for UDP.",
     offsetof(yd_stats_snapshot, messages)},
    {"yodel_bytes_received_total", "counter", "Bytes received from clients.",
     offsetof(yd_stats_snapshot, bytes_in)},
    {"yodel_bytes_sent_total", "counter", "Bytes sent to clients.",
     offsetof(yd_stats_snapshot, bytes_out)},
};

static uint64_t field(const yd_stats_snapshot *s, size_t offset)
{
    uint64_t v;
    memcpy(&v, (const char *)s + offset, sizeof v);
    return v;
}

static void put_sample(FILE *f, const char *metric, const char *listener, const char *kind,
                       uint64_t value)
{
    fprintf(f, "%s{listener=\"", metric);
    put_label(f, listener);
    if (kind != NULL)
        fprintf(f, "\",kind=\"%s", kind);
    fprintf(f, "\"} %llu\n", (unsigned long long)value);
}

/* Writes the whole exposition into f. Returns 0, or -ENOMEM. */
static int put_metrics(struct metrics *m, FILE *f)
{
    yd_stats_snapshot *rows = calloc(MAX_ROWS, sizeof *rows);
    const char *names[MAX_ROWS];
    if (rows == NULL)
        return -ENOMEM;
    unsigned n = 0;
    while (n < MAX_ROWS && m->collect(m->ctx, n, &names[n], &rows[n]))
        n++;
    fprintf(f,
            "# HELP yodel_build_info The version of yodel serving these metrics.\n"
            "# TYPE yodel_build_info gauge\n"
            "yodel_build_info{version=\"%s\"} 1\n",
            yd_version());
    for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", counters[c].name, counters[c].help,
                counters[c].name, counters[c].type);
        for (unsigned i = 0; i < n; i++)
            put_sample(f, counters[c].name, names[i], NULL, field(&rows[i], counters[c].offset));
    }
    fputs("# HELP yodel_errors_total Errors by kind; kind=\"http\" counts bad requests to this "
          "endpoint.\n# TYPE yodel_errors_total counter\n",
          f);
    for (unsigned i = 0; i < n; i++)
        for (int k = 0; k < YD_ERR__COUNT; k++)
            if (k != YD_ERR_HTTP)
                put_sample(f, "yodel_errors_total", names[i], yd_error_kind_name(k),
                           rows[i].errors[k]);
    yd_stats_snapshot own;
    memset(&own, 0, sizeof own);
    yd_stats_read(m->stats, &own);
    put_sample(f, "yodel_errors_total", m->address, yd_error_kind_name(YD_ERR_HTTP),
               own.errors[YD_ERR_HTTP]);
    free(rows);
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    default:
        return "Internal Server Error";
    }
}

/* Answers and closes; the connection reads nothing more. */
static void answer(yd_conn *conn, struct request *req, int status)
{
    req->answered = 1;
    yd_conn_pause_reading(conn);
    if (status != 200)
        yd_stats_count_error(req->m->stats, YD_ERR_HTTP);
    char *body = NULL;
    size_t body_len = 0;
    FILE *f = open_memstream(&body, &body_len);
    if (f == NULL) {
        yd_conn_abort(conn);
        return;
    }
    int err = 0;
    if (status == 200)
        err = put_metrics(req->m, f);
    else
        fprintf(f, "%d %s: only GET /metrics is served here\n", status, reason(status));
    if (fclose(f) != 0 || err < 0) {
        free(body);
        yd_conn_abort(conn);
        return;
    }
    char head[256];
    int head_len =
        snprintf(head, sizeof head,
                 "HTTP/1.0 %d %s\r\n"
                 "Content-Type: text/plain;%s charset=utf-8\r\n"
                 "Content-Length: %zu\r\n"
                 "Connection: close\r\n"
                 "\r\n",
                 status, reason(status), status == 200 ? " version=0.0.4;" : "", body_len);
    if (yd_conn_write(conn, head, (size_t)head_len) == 0 &&
        yd_conn_write(conn, body, body_len) == 0)
        yd_conn_close(conn);
    else
        yd_conn_abort(conn);
    free(body);
}

/* ---- The request ------------------------------------------------------------------------- */

/*
 * "METHOD SP /TARGET SP HTTP/d.d CRLF" (a bare LF is accepted). Returns the status the
 * request gets: 200 for GET /metrics (a query string is ignored), 404 for any other
 * well-formed request, 400 for anything else.
 */
static int parse_request_line(const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    size_t i = 0;
    while (i < len && i < 16 && line[i] >= 'A' && line[i] <= 'Z')
        i++;
    if (i == 0 || i >= len || line[i] != ' ')
        return 400;
    size_t method_len = i++;
    size_t target = i;
    while (i < len && line[i] > ' ' && line[i] < 0x7f)
        i++;
    size_t target_len = i - target;
    if (target_len == 0 || line[target] != '/' || i >= len || line[i] != ' ')
        return 400;
    i++;
    if (len - i != 8 || memcmp(line + i, "HTTP/", 5) != 0 || line[i + 6] != '.' ||
        line[i + 5] < '0' || line[i + 5] > '9' || line[i + 7] < '0' || line[i + 7] > '9')
        return 400;
    int get = method_len == 3 && memcmp(line, "GET", 3) == 0;
    int path = (target_len == 8 && memcmp(line + target, "/metrics", 8) == 0) ||
               (target_len > 8 && memcmp(line + target, "/metrics?", 9) == 0);
    return get && path ? 200 : 404;
}

static void on_deadline(yd_timer *timer, void *data)
{
    (void)timer;
    yd_conn *conn = data;
    struct request *req = yd_conn_data(conn);
    if (!req->answered)
        yd_stats_count_error(req->m->stats, YD_ERR_HTTP);
    req->answered = 1;
    yd_conn_abort(conn);
}

static void on_connect(yd_conn *conn)
{
    yd_server *server = yd_conn_server(conn);
    struct request *req = server != NULL ? calloc(1, sizeof *req) : NULL;
    if (req == NULL) {
        yd_conn_abort(conn);
        return;
    }
    req->m = yd_server_data(server);
    req->m->refs++;
    yd_conn_set_data(conn, req);
    if (yd_conn_set_read_mode(conn, YD_READ_LINE, MAX_LINE_BYTES) < 0 ||
        yd_timer_new(yd_conn_loop(conn), on_deadline, conn, &req->deadline) < 0 ||
        yd_timer_start(req->deadline, REQUEST_DEADLINE_MS, 0) < 0)
        yd_conn_abort(conn);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    struct request *req = yd_conn_data(conn);
    if (req == NULL || req->answered)
        return;
    if (req->lines++ == 0) {
        req->status = parse_request_line(data, len);
        if (req->status == 400)
            answer(conn, req, 400);
        return;
    }
    /* The blank line ends the headers: answering earlier would close with unread bytes, and
     * the kernel would reset the connection, losing the answer. */
    if ((len == 1 && data[0] == '\n') || (len == 2 && data[0] == '\r' && data[1] == '\n'))
        answer(conn, req, req->status);
    else if (req->lines > MAX_HEADER_LINES)
        answer(conn, req, 400);
}

static void on_eof(yd_conn *conn)
{
    struct request *req = yd_conn_data(conn);
    if (req == NULL || req->answered)
        return;
    /* A client that half-closes after its headers still deserves the answer. */
    if (req->status != 0)
        answer(conn, req, req->status);
    else
        yd_conn_close(conn);
}

static void on_close(yd_conn *conn, int status)
{
    struct request *req = yd_conn_data(conn);
    if (req == NULL)
        return;
    /* A line beyond the limit (-EMSGSIZE) or silence (-ETIMEDOUT): a bad request all the same. */
    if (!req->answered && status < 0)
        yd_stats_count_error(req->m->stats, YD_ERR_HTTP);
    if (req->deadline != NULL)
        yd_timer_free(req->deadline);
    metrics_unref(req->m);
    free(req);
}

static const yd_protocol http_protocol = {
    .on_connect = on_connect,
    .on_data = on_data,
    .on_eof = on_eof,
    .on_close = on_close,
};

/* ---- The endpoint ------------------------------------------------------------------------ */

int metrics_start(yd_loop *loop, const char *addr, metrics_collect_fn collect, void *ctx,
                  struct metrics **out)
{
    yd_addr parsed;
    if (yd_addr_parse(addr, &parsed) < 0 || parsed.transport != YD_TCP)
        return -EINVAL;
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->collect = collect;
    m->ctx = ctx;
    m->refs = 1;
    int err = yd_stats_new(&m->stats);
    if (err < 0)
        goto fail;
    yd_server_options so = {
        .protocol = &http_protocol,
        .data = m,
        .stats = m->stats,
        .max_conns = MAX_CLIENTS,
        .idle_timeout_ms = IDLE_TIMEOUT_MS,
    };
    err = yd_server_listen(loop, addr, &so, &m->server);
    if (err < 0)
        goto fail;
    if (yd_server_address(m->server, 0, m->address, sizeof m->address) < 0)
        snprintf(m->address, sizeof m->address, "%s", addr);
    *out = m;
    return 0;
fail:
    yd_stats_free(m->stats);
    free(m);
    return err;
}

int metrics_url(const struct metrics *m, char *buf, size_t len)
{
    const char *hostport = strstr(m->address, "://");
    hostport = hostport != NULL ? hostport + 3 : m->address;
    int n = snprintf(buf, len, "http://%s/metrics", hostport);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

void metrics_stop(struct metrics *m)
{
    if (m == NULL)
        return;
    yd_server_close(m->server);
    m->server = NULL;
    metrics_unref(m);
}
