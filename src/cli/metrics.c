/*
 * --metrics: GET /metrics in the Prometheus text format (version 0.0.4), and at / a small page
 * linking it, over HTTP/1.0 with one request per connection, served by the loop it is given and
 * written on the public libyodel API only. The endpoint shares that loop with the echo service, so
 * everything it does is bounded: the line length, the header count, the number of clients, the time
 * one request may take.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_LINE_BYTES   8192
#define MAX_HEADER_LINES 64
#define MAX_CLIENTS      64
#define IDLE_TIMEOUT_MS  5000
/* Even a client that trickles one byte per idle timeout is gone after this long. */
#define REQUEST_DEADLINE_MS 10000
#define MAX_ROWS            128

struct metrics {
    yd_server *server;
    struct metrics_counters *own; /* the endpoint's own connections and bad requests */
    metrics_collect_fn collect;
    void *ctx;
    char address[300];
    unsigned refs; /* 1 while listening, plus one per open request */
    int draining;  /* /readyz says 503 from the moment a drain starts */
};

enum route { ROUTE_METRICS, ROUTE_INDEX, ROUTE_HEALTHZ, ROUTE_READYZ };

struct request {
    struct metrics *m;
    yd_timer *deadline;
    unsigned lines;
    int status; /* 0 until the request line is read, then the answer it will get */
    enum route route;
    int answered;
};

static void metrics_unref(struct metrics *m)
{
    if (--m->refs > 0)
        return;
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
    /* The connection series come first: a UDP listener has none (see put_metrics). */
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
     "Messages received: reads in raw mode, lines in line and upper mode, datagrams for UDP.",
     offsetof(yd_stats_snapshot, messages)},
    {"yodel_bytes_received_total", "counter", "Bytes received from clients.",
     offsetof(yd_stats_snapshot, bytes_in)},
    {"yodel_bytes_sent_total", "counter", "Bytes sent to clients.",
     offsetof(yd_stats_snapshot, bytes_out)},
};

#define CONNECTION_SERIES 4 /* counters[0..3] count connections */

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

/* ---- process_*: what every Prometheus client library exports, read from /proc ------------ */

static void put_process_metric(FILE *f, const char *name, const char *type, const char *help,
                               int decimals, double value)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.*f\n", name, help, name, type, name, decimals,
            value);
}

/* The seconds since the epoch at which the system booted ("btime" in /proc/stat), or -1. */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return -1;
    char line[256];
    double btime = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    fclose(f);
    return btime;
}

/* Open descriptors, the one reading /proc/self/fd not counted; -1 if unreadable. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
            n++;
    closedir(d);
    return n;
}

static void put_process_metrics(FILE *f)
{
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char stat[1024];
    FILE *sf = fopen("/proc/self/stat", "re");
    size_t len = sf != NULL ? fread(stat, 1, sizeof stat - 1, sf) : 0;
    if (sf != NULL)
        fclose(sf);
    stat[len] = '\0';
    /* After the command name in parentheses (which may hold spaces), fields 3 onwards. */
    const char *rest = strrchr(stat, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    if (rest != NULL && ticks > 0 && page > 0 &&
        sscanf(rest + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) == 5) {
        put_process_metric(f, "process_cpu_seconds_total", "counter",
                           "Total user and system CPU time spent in seconds.", 2,
                           (double)(utime + stime) / (double)ticks);
        put_process_metric(f, "process_resident_memory_bytes", "gauge",
                           "Resident memory size in bytes.", 0, (double)rss * (double)page);
        put_process_metric(f, "process_virtual_memory_bytes", "gauge",
                           "Virtual memory size in bytes.", 0, (double)vsize);
        double btime = boot_time();
        if (btime >= 0)
            put_process_metric(f, "process_start_time_seconds", "gauge",
                               "Start time of the process since unix epoch in seconds.", 2,
                               btime + (double)start / (double)ticks);
    }
    long fds = open_fds();
    if (fds >= 0)
        put_process_metric(f, "process_open_fds", "gauge", "Number of open file descriptors.", 0,
                           (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        put_process_metric(f, "process_max_fds", "gauge",
                           "Maximum number of open file descriptors.", 0, (double)rl.rlim_cur);
}

/* Writes the whole exposition into f. Returns 0, or -ENOMEM. */
static int put_metrics(struct metrics *m, FILE *f)
{
    struct metrics_listener *rows = calloc(MAX_ROWS, sizeof *rows);
    if (rows == NULL)
        return -ENOMEM;
    unsigned n = 0;
    while (n < MAX_ROWS && m->collect(m->ctx, n, &rows[n]))
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
            if (c >= CONNECTION_SERIES || !rows[i].datagram)
                put_sample(f, counters[c].name, rows[i].name, NULL,
                           field(&rows[i].sum, counters[c].offset));
    }
    fputs("# HELP yodel_errors_total Errors by kind; kind=\"http\" counts bad requests to this "
          "endpoint.\n# TYPE yodel_errors_total counter\n",
          f);
    for (unsigned i = 0; i < n; i++)
        for (int k = 0; k < YD_ERR__COUNT; k++)
            put_sample(f, "yodel_errors_total", rows[i].name, yd_error_kind_name(k),
                       rows[i].sum.errors[k]);
    put_sample(f, "yodel_errors_total", m->address, "http",
               atomic_load_explicit(&m->own->bad_requests, memory_order_relaxed));
    put_process_metrics(f);
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
    case 405:
        return "Method Not Allowed";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static const char index_page[] =
    "<!DOCTYPE html>\n"
    "<html><head><title>yodel</title></head>\n"
    "<body><h1>yodel serve</h1><p><a href=\"/metrics\">Metrics</a>, <a href=\"/healthz\">"
    "health</a>, <a href=\"/readyz\">readiness</a></p></body></html>\n";

/* Counted on the endpoint's loop; the summary reads it from another thread. */
static void bad_request(struct metrics *m)
{
    atomic_fetch_add_explicit(&m->own->bad_requests, 1, memory_order_relaxed);
}

/* Answers and closes; the connection reads nothing more. */
static void answer(yd_conn *conn, struct request *req, int status)
{
    req->answered = 1;
    yd_conn_pause_reading(conn);
    /* A probe's answer is a state, not an error: /readyz's 503 while draining is not counted. */
    if (status == 200 && req->route == ROUTE_READYZ && req->m->draining)
        status = 503;
    else if (status != 200)
        bad_request(req->m);
    char *body = NULL;
    size_t body_len = 0;
    FILE *f = open_memstream(&body, &body_len);
    if (f == NULL) {
        yd_conn_abort(conn);
        return;
    }
    int err = 0;
    int html = status == 200 && req->route == ROUTE_INDEX;
    if (status == 200 && req->route == ROUTE_METRICS)
        err = put_metrics(req->m, f);
    else if (html)
        fputs(index_page, f);
    else if (status == 200 && req->route == ROUTE_HEALTHZ)
        fputs("ok\n", f);
    else if (status == 200 && req->route == ROUTE_READYZ)
        fputs("ready\n", f);
    else if (status == 503)
        fputs("draining\n", f);
    else
        fprintf(f, "%d %s: only GET /metrics, /healthz, /readyz and / are served here\n", status,
                reason(status));
    if (fclose(f) != 0 || err < 0) {
        free(body);
        yd_conn_abort(conn);
        return;
    }
    char head[256];
    int head_len =
        snprintf(head, sizeof head,
                 "HTTP/1.0 %d %s\r\n"
                 "Content-Type: %s; charset=utf-8\r\n"
                 "Content-Length: %zu\r\n"
                 "%s"
                 "Connection: close\r\n"
                 "\r\n",
                 status, reason(status),
                 html                                           ? "text/html"
                 : status == 200 && req->route == ROUTE_METRICS ? "text/plain; version=0.0.4"
                                                                : "text/plain",
                 body_len, status == 405 ? "Allow: GET\r\n" : "");
    if (yd_conn_write(conn, head, (size_t)head_len) == 0 &&
        yd_conn_write(conn, body, body_len) == 0)
        yd_conn_close(conn);
    else
        yd_conn_abort(conn);
    free(body);
}

/* ---- The request ------------------------------------------------------------------------- */

/* Whether the target is path, with or without a query string. */
static int is_path(const char *target, size_t len, const char *path)
{
    size_t n = strlen(path);
    return len >= n && memcmp(target, path, n) == 0 && (len == n || target[n] == '?');
}

/*
 * "METHOD SP /TARGET SP HTTP/d.d CRLF" (a bare LF is accepted). Returns the status the
 * request gets: 200 for GET /metrics, /healthz, /readyz and / (a query string is ignored;
 * *route says which),
 * 405 for another method on those, 404 for any other well-formed request, 400 for anything
 * else.
 */
static int parse_request_line(const char *line, size_t len, enum route *route)
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
    if (is_path(line + target, target_len, "/metrics"))
        *route = ROUTE_METRICS;
    else if (is_path(line + target, target_len, "/healthz"))
        *route = ROUTE_HEALTHZ;
    else if (is_path(line + target, target_len, "/readyz"))
        *route = ROUTE_READYZ;
    else if (is_path(line + target, target_len, "/"))
        *route = ROUTE_INDEX;
    else
        return 404;
    return get ? 200 : 405;
}

static void on_deadline(yd_timer *timer, void *data)
{
    (void)timer;
    yd_conn *conn = data;
    struct request *req = yd_conn_data(conn);
    if (!req->answered)
        bad_request(req->m);
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
        req->status = parse_request_line(data, len, &req->route);
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
        bad_request(req->m);
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
                  struct metrics_counters *own, struct metrics **out)
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
    m->own = own;
    yd_server_options so = {
        .protocol = &http_protocol,
        .data = m,
        .stats = own->conns,
        .max_conns = MAX_CLIENTS,
        .idle_timeout_ms = IDLE_TIMEOUT_MS,
    };
    int err = yd_server_listen(loop, addr, &so, &m->server);
    if (err < 0) {
        free(m);
        return err;
    }
    if (yd_server_address(m->server, 0, m->address, sizeof m->address) < 0)
        snprintf(m->address, sizeof m->address, "%s", addr);
    *out = m;
    return 0;
}

int metrics_url(const struct metrics *m, char *buf, size_t len)
{
    const char *hostport = strstr(m->address, "://");
    hostport = hostport != NULL ? hostport + 3 : m->address;
    int n = snprintf(buf, len, "http://%s/metrics", hostport);
    return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

void metrics_draining(struct metrics *m)
{
    if (m == NULL)
        return;
    m->draining = 1;
    yd_server_unref(m->server); /* it answers during the drain, but does not prolong it */
}

void metrics_stop(struct metrics *m)
{
    if (m == NULL)
        return;
    yd_server_close(m->server);
    m->server = NULL;
    metrics_unref(m);
}
