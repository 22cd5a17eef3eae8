/*
 * The echo behaviours of `yodel serve`: raw, line and upper modes, one-shot and delayed replies,
 * logging. Connections without --delay or -v carry no state of their own: the hot path is
 * on_data -> yd_conn_write from the loop's read buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "yodel.h"

#define DEFAULT_MAX_LINE (64u * 1024u)
#define PREVIEW_BYTES    60
/* The longest escape is JSON's "\u00XX": six characters for one byte, then "..." and a NUL. */
#define PREVIEW_TEXT (6 * PREVIEW_BYTES + 4)
/* One log line: the preview, the peer, an event name and the JSON punctuation around them. */
#define LOG_LINE_BYTES (PREVIEW_TEXT + 256)

/* Shared by every connection of one or more servers; freed when the last one lets go. */
struct echo_ctx {
    yd_echo_options opts;
    unsigned refs;
};

/* --delay: the replies held, each a record followed by its bytes, oldest first. One buffer per
 * connection, grown (never per message) and freed once empty and large. */
struct held {
    char *buf;
    size_t start, end, cap;
};

/* Per connection, only with --delay or -v. */
struct echo_conn {
    struct echo_ctx *ctx;
    yd_conn *conn;
    yd_timer *timer; /* --delay: fires when the oldest held reply is due */
    struct held held;
    int timer_armed;
    int paused;   /* reading paused because too much is held */
    int finished; /* EOF seen or --once answered: close once nothing is held */
    char peer[64];
};

struct held_record {
    uint64_t due_ms;
    uint64_t len;
};

static void ctx_unref(struct echo_ctx *ctx)
{
    if (--ctx->refs == 0)
        free(ctx);
}

static void ctx_release(void *data)
{
    ctx_unref(data);
}

static int read_mode_for(struct echo_ctx *ctx, yd_conn *conn)
{
    if (ctx->opts.mode == YD_ECHO_RAW)
        return yd_conn_set_read_mode(conn, YD_READ_CHUNK, 0);
    return yd_conn_set_read_mode(conn, YD_READ_LINE, ctx->opts.max_line_bytes);
}

/* ---- Logging (-v) ------------------------------------------------------------------------- */

/* Writes up to PREVIEW_BYTES of data, escaped, into out (PREVIEW_TEXT bytes). */
static void preview(const char *data, size_t len, char *out, int json)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < PREVIEW_BYTES; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\n')
            o += (size_t)sprintf(out + o, "\\n");
        else if (c == '"' || c == '\\')
            o += (size_t)sprintf(out + o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)sprintf(out + o, json ? "\\u%04x" : "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (len > PREVIEW_BYTES)
        o += (size_t)sprintf(out + o, "...");
    out[o] = '\0';
}

/* Writes one whole line to stderr in one write(2): lines from several threads never mix. */
static void write_line(const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* a log nobody can read is no reason to stop echoing */
        line += n;
        len -= (size_t)n;
    }
}

/* One log line: the event, with a preview of data if any, and fields if any (JSON members,
 * or a parenthesised note in text). */
static void log_event(const struct echo_ctx *ctx, const char *peer, const char *event,
                      const char *data, size_t len, const char *fields)
{
    char text[PREVIEW_TEXT] = "";
    char line[LOG_LINE_BYTES];
    int n;
    if (data != NULL)
        preview(data, len, text, ctx->opts.json);
    if (ctx->opts.json) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        n = snprintf(line, sizeof line, "{\"ts\":%lld.%03ld,\"event\":\"%s\",\"peer\":\"%s\"",
                     (long long)ts.tv_sec, ts.tv_nsec / 1000000, event, peer);
        if (data != NULL && n > 0 && (size_t)n < sizeof line)
            n += snprintf(line + n, sizeof line - (size_t)n, ",\"bytes\":%zu,\"data\":\"%s\"", len,
                          text);
        if (fields != NULL && n > 0 && (size_t)n < sizeof line)
            n += snprintf(line + n, sizeof line - (size_t)n, ",%s", fields);
        if (n > 0 && (size_t)n < sizeof line)
            n += snprintf(line + n, sizeof line - (size_t)n, "}\n");
    } else if (data != NULL) {
        n = snprintf(line, sizeof line, "yodel: %s %s %zu bytes \"%s\"\n", peer, event, len, text);
    } else if (fields != NULL) {
        n = snprintf(line, sizeof line, "yodel: %s %s (%s)\n", peer, event, fields);
    } else {
        n = snprintf(line, sizeof line, "yodel: %s %s\n", peer, event);
    }
    if (n > 0 && (size_t)n < sizeof line)
        write_line(line, (size_t)n);
}

/* "connected", with what a TLS connection negotiated and the client certificate's subject. */
static void log_connected(const struct echo_ctx *ctx, const char *peer, const yd_conn *conn)
{
    const char *version = yd_conn_tls_version(conn);
    if (version == NULL) {
        log_event(ctx, peer, "connected", NULL, 0, NULL);
        return;
    }
    char subject[256], escaped[PREVIEW_TEXT], fields[PREVIEW_TEXT + 64];
    if (yd_conn_tls_peer_subject(conn, subject, sizeof subject) < 0)
        subject[0] = '\0';
    preview(subject, strlen(subject), escaped, ctx->opts.json);
    if (ctx->opts.json)
        snprintf(fields, sizeof fields, "\"tls\":\"%s\",\"subject\":\"%s\"", version, escaped);
    else
        snprintf(fields, sizeof fields, "%s%s%s", version, escaped[0] ? ", " : "", escaped);
    log_event(ctx, peer, "connected", NULL, 0, fields);
}

/* on_reject: a failed TLS handshake or PROXY header is logged with its peer always, a
 * max-conns refusal with -v (the server's statistics count them all). */
static void echo_reject(yd_conn *conn, int status, enum yd_error_kind kind)
{
    struct echo_ctx *ctx = yd_conn_data(conn); /* the server's: on_connect never ran */
    if (kind == YD_ERR__COUNT && !ctx->opts.verbose)
        return;
    char peer[YD_ADDR_TEXT_BYTES];
    yd_conn_peer_name(conn, peer, sizeof peer);
    int late = status == -ETIMEDOUT;
    const char *what = kind == YD_ERR__COUNT ? "refused (too many connections)"
                       : kind == YD_ERR_PROXY_HEADER
                           ? (late ? "no PROXY header in time" : "bad PROXY header")
                       : late ? "TLS handshake timed out"
                              : "TLS handshake failed";
    log_event(ctx, peer, what, NULL, 0, NULL);
}

/* A connection that ends in a client error is logged with its peer even without -v. */
static void log_close(const struct echo_ctx *ctx, yd_conn *conn, const char *peer, int status)
{
    char what[96];
    snprintf(what, sizeof what, status == 0 ? "closed" : "closed (%s)", yd_strerror(status));
    char name[YD_ADDR_TEXT_BYTES];
    if (peer == NULL) {
        yd_conn_peer_name(conn, name, sizeof name);
        peer = name;
    }
    log_event(ctx, peer, what, NULL, 0, NULL);
}

/* Writes a reply; a write the queue cannot take (the peer ignored back-pressure) fails the
 * connection, counted, rather than silently dropping part of an echo. */
static void reply(yd_conn *conn, const char *data, size_t len)
{
    int err = yd_conn_write(conn, data, len);
    if (err < 0 && err != -EPIPE)
        yd_conn_fail(conn, err);
}

/* ---- Without state: the hot path ---------------------------------------------------------- */

static void plain_connect(yd_conn *conn)
{
    struct echo_ctx *ctx = yd_conn_data(conn);
    ctx->refs++;
    read_mode_for(ctx, conn);
}

static void plain_data(yd_conn *conn, const char *data, size_t len)
{
    struct echo_ctx *ctx = yd_conn_data(conn);
    /* The bytes sit in the loop's read buffer (or the connection's own): ours to change. */
    if (ctx->opts.mode == YD_ECHO_UPPER)
        yd_ascii_upper((char *)data, data, len);
    reply(conn, data, len);
    if (ctx->opts.once)
        yd_conn_close(conn);
}

static void plain_close(yd_conn *conn, int status)
{
    struct echo_ctx *ctx = yd_conn_data(conn);
    if (status == -EMSGSIZE)
        log_close(ctx, conn, NULL, status);
    ctx_unref(ctx);
}

static void echo_datagram(yd_server *srv, const char *data, size_t len, const void *peer,
                          unsigned peer_len)
{
    struct echo_ctx *ctx = yd_server_data(srv);
    if (ctx->opts.mode == YD_ECHO_UPPER)
        yd_ascii_upper((char *)data, data, len);
    if (ctx->opts.verbose) {
        struct echo_conn ec = {.ctx = ctx};
        yd_sockaddr_format(peer, ec.peer, sizeof ec.peer);
        log_event(ctx, ec.peer, "datagram", data, len, NULL);
    }
    yd_server_send_to(srv, data, len, peer, peer_len); /* a failure is counted there */
}

static const yd_protocol plain_protocol = {
    .on_connect = plain_connect,
    .on_data = plain_data,
    .on_close = plain_close,
    .on_datagram = echo_datagram,
    .on_reject = echo_reject,
};

/* ---- With state: --delay and -v ----------------------------------------------------------- */

static void on_due(yd_timer *timer, void *data);

static void state_connect(yd_conn *conn)
{
    struct echo_ctx *ctx = yd_conn_data(conn);
    struct echo_conn *ec = calloc(1, sizeof *ec);
    if (ec == NULL ||
        (ctx->opts.delay_ms > 0 && yd_timer_new(yd_conn_loop(conn), on_due, ec, &ec->timer) < 0)) {
        free(ec);
        yd_conn_set_data(conn, NULL);
        yd_conn_abort(conn);
        return;
    }
    ctx->refs++;
    ec->ctx = ctx;
    ec->conn = conn;
    yd_conn_set_data(conn, ec);
    read_mode_for(ctx, conn);
    if (ctx->opts.verbose) {
        yd_conn_peer_name(conn, ec->peer, sizeof ec->peer);
        log_connected(ctx, ec->peer, conn);
    }
}

static void send_now(struct echo_conn *ec, const char *data, size_t len)
{
    reply(ec->conn, data, len);
    if (ec->ctx->opts.verbose)
        log_event(ec->ctx, ec->peer, "echoed", data, len, NULL);
}

/* Keeps held memory small once the queue empties after a burst. */
#define HELD_KEEP_BYTES (64u * 1024u)

static size_t held_len(const struct held *h)
{
    return h->end - h->start;
}

static int held_push(struct held *h, const void *data, size_t len)
{
    if (h->end + len > h->cap) {
        size_t used = held_len(h);
        if (h->start > 0)
            memmove(h->buf, h->buf + h->start, used); /* compact first */
        h->start = 0;
        h->end = used;
        size_t cap = h->cap ? h->cap : 1024;
        while (cap < used + len)
            cap *= 2;
        if (cap != h->cap) {
            char *p = realloc(h->buf, cap);
            if (p == NULL)
                return -ENOMEM;
            h->buf = p;
            h->cap = cap;
        }
    }
    memcpy(h->buf + h->end, data, len);
    h->end += len;
    return 0;
}

static void held_consume(struct held *h, size_t len)
{
    h->start += len;
    if (h->start < h->end)
        return;
    h->start = h->end = 0;
    if (h->cap > HELD_KEEP_BYTES) {
        free(h->buf);
        h->buf = NULL;
        h->cap = 0;
    }
}

/* Sends every held reply that is due; closes when finished and nothing is held. */
static void on_due(yd_timer *timer, void *data)
{
    struct echo_conn *ec = data;
    struct held *h = &ec->held;
    yd_conn *conn = ec->conn;
    uint64_t now = yd_loop_now_ms(yd_conn_loop(conn));
    ec->timer_armed = 0;
    while (held_len(h) >= sizeof(struct held_record)) {
        struct held_record rec;
        memcpy(&rec, h->buf + h->start, sizeof rec);
        if (rec.due_ms > now) {
            yd_timer_start(timer, rec.due_ms - now, 0);
            ec->timer_armed = 1;
            break;
        }
        send_now(ec, h->buf + h->start + sizeof rec, rec.len);
        held_consume(h, sizeof rec + rec.len);
    }
    yd_conn_set_held(conn, held_len(h));
    if (ec->paused && held_len(h) < YD_LOW_WATERMARK && !ec->finished) {
        ec->paused = 0;
        yd_conn_resume_reading(conn);
    }
    if (ec->finished && held_len(h) == 0)
        yd_conn_close(conn);
}

static void hold(struct echo_conn *ec, const char *data, size_t len)
{
    yd_conn *conn = ec->conn;
    struct held_record rec = {yd_loop_now_ms(yd_conn_loop(conn)) + ec->ctx->opts.delay_ms, len};
    if (held_push(&ec->held, &rec, sizeof rec) < 0 || held_push(&ec->held, data, len) < 0) {
        yd_conn_fail(conn, -ENOMEM);
        return;
    }
    /* The record is memory held too: a held "\n" costs 17 bytes, and counts so. */
    yd_conn_set_held(conn, held_len(&ec->held));
    /* Held replies count against the same bound as queued ones: stop reading past it. */
    if (held_len(&ec->held) > YD_HIGH_WATERMARK && !ec->paused) {
        ec->paused = 1;
        yd_conn_pause_reading(conn);
    }
    if (!ec->timer_armed) {
        yd_timer_start(ec->timer, ec->ctx->opts.delay_ms, 0);
        ec->timer_armed = 1;
    }
}

static void state_data(yd_conn *conn, const char *data, size_t len)
{
    struct echo_conn *ec = yd_conn_data(conn);
    if (ec->ctx->opts.verbose)
        log_event(ec->ctx, ec->peer, "received", data, len, NULL);
    if (ec->ctx->opts.mode == YD_ECHO_UPPER)
        yd_ascii_upper((char *)data, data, len);
    if (ec->ctx->opts.delay_ms > 0)
        hold(ec, data, len);
    else
        send_now(ec, data, len);
    if (ec->ctx->opts.once) {
        ec->finished = 1;
        yd_conn_pause_reading(conn);
        if (held_len(&ec->held) == 0)
            yd_conn_close(conn);
    }
}

static void state_eof(yd_conn *conn)
{
    struct echo_conn *ec = yd_conn_data(conn);
    if (ec->ctx->opts.verbose)
        log_event(ec->ctx, ec->peer, "eof", NULL, 0, NULL);
    ec->finished = 1;
    if (held_len(&ec->held) == 0)
        yd_conn_close(conn);
}

static void state_close(yd_conn *conn, int status)
{
    struct echo_conn *ec = yd_conn_data(conn);
    if (ec == NULL)
        return;
    if (ec->ctx->opts.verbose || status == -EMSGSIZE)
        log_close(ec->ctx, conn, ec->peer[0] != '\0' ? ec->peer : NULL, status);
    free(ec->held.buf);
    yd_timer_free(ec->timer);
    ctx_unref(ec->ctx);
    free(ec);
}

static const yd_protocol state_protocol = {
    .on_connect = state_connect,
    .on_data = state_data,
    .on_eof = state_eof,
    .on_close = state_close,
    .on_datagram = echo_datagram,
    .on_reject = echo_reject,
};

/* ---- Entry points ------------------------------------------------------------------------- */

static struct echo_ctx *ctx_new(const yd_echo_options *echo)
{
    struct echo_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    ctx->opts = *echo;
    if (ctx->opts.max_line_bytes == 0)
        ctx->opts.max_line_bytes = DEFAULT_MAX_LINE;
    ctx->refs = 1;
    return ctx;
}

static const yd_protocol *protocol_for(const yd_echo_options *echo)
{
    return echo->delay_ms > 0 || echo->verbose ? &state_protocol : &plain_protocol;
}

static int echo_server(yd_loop *loop, const char *addr, int fd, const yd_echo_options *echo,
                       const yd_server_options *server_options, yd_server **out)
{
    if (echo == NULL || (unsigned)echo->mode > YD_ECHO_UPPER ||
        echo->max_line_bytes > YD_MAX_LINE_LIMIT)
        return -EINVAL;
    struct echo_ctx *ctx = ctx_new(echo);
    if (ctx == NULL)
        return -ENOMEM;
    yd_server_options so = {0};
    if (server_options != NULL)
        so = *server_options;
    so.protocol = protocol_for(echo);
    so.data = ctx;
    so.free_data = ctx_release; /* the server's own reference */
    int err =
        addr != NULL ? yd_server_listen(loop, addr, &so, out) : yd_server_adopt(loop, fd, &so, out);
    if (err < 0) {
        free(ctx);
        return err;
    }
    return 0;
}

int yd_echo_listen(yd_loop *loop, const char *addr, const yd_echo_options *echo,
                   const yd_server_options *server_options, yd_server **out)
{
    if (addr == NULL)
        return -EINVAL;
    return echo_server(loop, addr, -1, echo, server_options, out);
}

int yd_echo_adopt(yd_loop *loop, int fd, const yd_echo_options *echo,
                  const yd_server_options *server_options, yd_server **out)
{
    return echo_server(loop, NULL, fd, echo, server_options, out);
}

int yd_echo_serve_fd(yd_loop *loop, int fd, const yd_echo_options *echo,
                     const yd_server_options *server_options)
{
    if (echo == NULL || (unsigned)echo->mode > YD_ECHO_UPPER)
        return -EINVAL;
    yd_server_options so = {0};
    if (server_options != NULL)
        so = *server_options;
    int type;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
        return -errno; /* -ENOTSOCK for a pipe, a terminal or a file */
    if (type == SOCK_DGRAM) {
        yd_server *srv;
        return yd_echo_adopt(loop, fd, echo, &so, &srv); /* inetd's dgram "wait" entries */
    }
    struct echo_ctx *ctx = ctx_new(echo);
    if (ctx == NULL)
        return -ENOMEM;
    so.protocol = protocol_for(echo);
    so.data = ctx;
    yd_conn *conn;
    int err = yd_server_serve_fd(loop, fd, &so, &conn);
    if (err < 0) {
        free(ctx);
        return err;
    }
    ctx->refs--; /* the connection's own reference, taken in on_connect, is the only one */
    return 0;
}
