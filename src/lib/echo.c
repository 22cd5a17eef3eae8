/*
 * The echo behaviours of `yodel serve`: raw, line, upper and info modes, one-shot and delayed
 * replies, identity (a banner, a prefix), injected faults (jitter, dropped datagrams, reset
 * connections) and logging. Connections without --delay, -v, a prefix, info mode or --reset
 * carry no state of their own: the hot path is on_data -> yd_conn_write from the loop's read
 * buffer.
 *
 * Identity is expanded in three steps, so that nothing is formatted twice: what never changes
 * ({hostname}, {pid}, {env:NAME}) when the server is made (ctx_new), what a connection has
 * ({peer}, {local}, ...) once in on_connect, and for datagrams only {peer}, per datagram (the
 * rest once per address family, at the first datagram).
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

/* The fields a connection (or a datagram) brings; the others are expanded at start. */
#define CONN_FIELDS                                                                                \
    (YD_TEMPLATE_PEER | YD_TEMPLATE_LOCAL | YD_TEMPLATE_LISTENER | YD_TEMPLATE_PROXY |             \
     YD_TEMPLATE_TLS_SUBJECT)
/* A template with the start fields expanded: escaping may double its bytes. */
#define PARTIAL_BYTES (4 * YD_ECHO_TEMPLATE_BYTES)
#define SUBJECT_BYTES 256
/* Info mode's JSON line: every value escaped (up to 6 bytes each) still fits. */
#define INFO_BYTES 16384
/* A datagram reply with its prefix: the longest datagram the loop reads (64 KiB) after it. */
#define DGRAM_REPLY_BYTES (YD_ECHO_TEMPLATE_BYTES + 64u * 1024u)

/* Datagrams: the prefix and info line of one address family of a server, made at its first
 * datagram (the listener and local address are known only then). */
struct dgram_identity {
    int ready;
    char *prefix;    /* a template whose only fields left are {peer} and {proxy}, or NULL */
    char *info_head; /* info mode: the JSON line up to "peer": ("proxy":null) */
    size_t info_head_len;
    char *listener;   /* info mode: the listener, and after its scheme the local address, for */
    size_t local_off; /* the line of a datagram a PROXY header names a client for */
};

/* Shared by every connection of one server (one loop); freed when the last one lets go. */
struct echo_ctx {
    yd_echo_options opts;
    unsigned refs;
    /* Identity: the templates with what never changes expanded, and the fields left in them. */
    char *banner, *prefix;
    unsigned banner_fields, prefix_fields;
    char hostname[256];
    long pid;
    /* Faults: a 53-bit draw below these drops a datagram, resets a connection. */
    uint64_t rng;
    uint64_t drop_below, reset_below;
    uint64_t datagrams;          /* info mode: datagrams answered */
    struct dgram_identity dg[2]; /* IPv4 (and Unix), IPv6 */
    char *dgram_reply;           /* DGRAM_REPLY_BYTES: where a prefixed reply is put together */
};

/* --delay: the replies held, each a record followed by its bytes, oldest first. One buffer per
 * connection, grown (never per message) and freed once empty and large. */
struct held {
    char *buf;
    size_t start, end, cap;
};

/* Per connection, only with --delay, -v, a prefix, info mode or --reset. */
struct echo_conn {
    struct echo_ctx *ctx;
    yd_conn *conn;
    yd_timer *timer; /* --delay: fires when the oldest held reply is due */
    struct held held;
    uint64_t last_due_ms; /* jitter: a reply is never due before the one held before it */
    uint64_t messages;    /* info mode: lines answered, this one included */
    char *head;           /* the expanded prefix, or info mode's JSON line up to the count */
    size_t head_len;
    int timer_armed;
    int paused;   /* reading paused because too much is held */
    int finished; /* EOF seen or --once answered: close once nothing is held */
    int reset;    /* --reset chose this connection: reset after the first reply */
    int aborted;  /* reset: nothing more is sent */
    char peer[64];
};

struct held_record {
    uint64_t due_ms;
    uint64_t len;
};

static void ctx_unref(struct echo_ctx *ctx)
{
    if (--ctx->refs > 0)
        return;
    free(ctx->banner);
    free(ctx->prefix);
    for (int f = 0; f < 2; f++) {
        free(ctx->dg[f].prefix);
        free(ctx->dg[f].info_head);
        free(ctx->dg[f].listener);
    }
    free(ctx->dgram_reply);
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

/* ---- Faults: a cheap generator per server (one loop: no lock) ------------------------------ */

/* xorshift64*: 53 random bits. */
static uint64_t draw(struct echo_ctx *ctx)
{
    uint64_t x = ctx->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ctx->rng = x;
    return (x * 0x2545F4914F6CDD1DULL) >> 11;
}

/* Whether an event of that chance (below_of()) happens: never draws for 0. */
static int chance(struct echo_ctx *ctx, uint64_t below)
{
    return below > 0 && draw(ctx) < below;
}

/* A percentage as the 53-bit draw it must stay below: 0 never, 100 always. */
static uint64_t below_of(double percent)
{
    return (uint64_t)(percent / 100.0 * 9007199254740992.0);
}

static void seed(struct echo_ctx *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ctx->rng = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
               ((uint64_t)ctx->pid << 32) ^ (uint64_t)(uintptr_t)ctx;
    if (ctx->rng == 0)
        ctx->rng = 0x9E3779B97F4A7C15ULL;
}

/* How long to hold a reply: --delay D~J is uniform in [D-J, D+J]. */
static uint64_t hold_ms(struct echo_ctx *ctx)
{
    uint64_t j = ctx->opts.delay_jitter_ms;
    if (j == 0)
        return ctx->opts.delay_ms;
    return ctx->opts.delay_ms - j + draw(ctx) % (2 * j + 1);
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
    const char *reason = kind == YD_ERR_TLS_HANDSHAKE ? yd_conn_tls_error(conn) : NULL;
    char fields[256];
    if (reason != NULL && ctx->opts.json)
        snprintf(fields, sizeof fields, "\"reason\":\"%s\"", reason); /* OpenSSL's: plain text */
    else if (reason != NULL)
        snprintf(fields, sizeof fields, "%s", reason);
    log_event(ctx, peer, what, NULL, 0, reason != NULL ? fields : NULL);
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

/* ---- Identity: what a connection's banner, prefix and info line say ----------------------- */

static const char *env_lookup(const char *name, void *data)
{
    (void)data;
    return getenv(name); /* only while the server is made (ctx_new), never per connection */
}

/* A template with what never changes expanded (cut at PARTIAL_BYTES, as a template still):
 * *out NULL for no template. Returns 0, -EINVAL for a bad template, or -ENOMEM. */
static int expand_start_fields(struct echo_ctx *ctx, const char *tmpl, char **out, unsigned *fields)
{
    *out = NULL;
    *fields = 0;
    if (tmpl == NULL)
        return 0;
    int used = yd_template_check(tmpl, NULL, 0);
    if (used < 0)
        return used;
    char *buf = malloc(PARTIAL_BYTES);
    if (buf == NULL)
        return -ENOMEM;
    yd_template_values v = {
        .hostname = ctx->hostname, .pid = ctx->pid, .env = env_lookup, .keep = CONN_FIELDS};
    yd_template_expand(tmpl, &v, buf, PARTIAL_BYTES); /* -ENOBUFS: cut, a template still */
    *out = strdup(buf);
    free(buf);
    *fields = (unsigned)used & CONN_FIELDS;
    return *out != NULL ? 0 : -ENOMEM;
}

/* Whether the listening address a ("tcp://0.0.0.0:8888") is the wildcard one local
 * ("10.0.0.5:8888") came to. */
static int wildcard_of(const char *a, const char *local)
{
    const char *host = strstr(a, "://");
    host = host != NULL ? host + 3 : a;
    const char *port = strrchr(host, ':'), *local_port = strrchr(local, ':');
    if (port == NULL || local_port == NULL || strcmp(port, local_port) != 0)
        return 0;
    if (local[0] == '[')
        return strncmp(host, "[::]:", 5) == 0;
    return strncmp(host, "0.0.0.0:", 8) == 0;
}

/* The listening socket of srv that local (a connection's own address) belongs to, as
 * "tcp://127.0.0.1:8888"; empty for a connection no server accepted (--inetd). */
static void listener_of(const yd_server *srv, const char *local, char *buf, size_t len)
{
    buf[0] = '\0';
    if (srv == NULL)
        return;
    unsigned n = yd_server_socket_count(srv), pick = 0;
    for (unsigned i = 0; n > 1 && i < n; i++) {
        char a[YD_ADDR_TEXT_BYTES];
        const char *host;
        if (yd_server_address(srv, i, a, sizeof a) < 0)
            continue;
        host = strstr(a, "://");
        if ((host != NULL && strcmp(host + 3, local) == 0) || wildcard_of(a, local)) {
            pick = i;
            break;
        }
    }
    if (yd_server_address(srv, pick, buf, len) < 0)
        buf[0] = '\0';
}

/* What a connection's templates and info line need to know about it. */
struct conn_values {
    char peer[YD_ADDR_TEXT_BYTES], local[YD_ADDR_TEXT_BYTES], listener[YD_ADDR_TEXT_BYTES];
    char proxy[YD_ADDR_TEXT_BYTES], subject[SUBJECT_BYTES];
};

/* Fills in the fields asked for (YD_TEMPLATE_* bits); the others stay empty. */
static void conn_values(yd_conn *conn, unsigned fields, struct conn_values *cv)
{
    cv->peer[0] = cv->local[0] = cv->listener[0] = cv->proxy[0] = cv->subject[0] = '\0';
    if ((fields & YD_TEMPLATE_PEER) && yd_conn_peer_name(conn, cv->peer, sizeof cv->peer) < 0)
        cv->peer[0] = '\0';
    if ((fields & (YD_TEMPLATE_LOCAL | YD_TEMPLATE_LISTENER)) &&
        yd_conn_sock_name(conn, cv->local, sizeof cv->local) < 0)
        cv->local[0] = '\0';
    if (fields & YD_TEMPLATE_LISTENER)
        listener_of(yd_conn_server(conn), cv->local, cv->listener, sizeof cv->listener);
    if ((fields & YD_TEMPLATE_PROXY) && yd_conn_proxy_source(conn, cv->proxy, sizeof cv->proxy) < 0)
        cv->proxy[0] = '\0';
    if ((fields & YD_TEMPLATE_TLS_SUBJECT) &&
        yd_conn_tls_peer_subject(conn, cv->subject, sizeof cv->subject) < 0)
        cv->subject[0] = '\0';
}

/* Expands a server's template (its start fields done) for one connection into buf
 * (YD_ECHO_TEMPLATE_BYTES): returns the length, cut at the limit. */
static size_t expand_for(const char *tmpl, const struct conn_values *cv, char *buf)
{
    yd_template_values v = {.peer = cv->peer,
                            .local = cv->local,
                            .listener = cv->listener,
                            .proxy = cv->proxy,
                            .tls_subject = cv->subject};
    int n = yd_template_expand(tmpl, &v, buf, YD_ECHO_TEMPLATE_BYTES);
    if (n == -ENOBUFS)
        return strlen(buf); /* the limit: what fits */
    return n > 0 ? (size_t)n : 0;
}

/* The server speaks first (written as a reply is). */
static void send_banner(struct echo_ctx *ctx, yd_conn *conn, const struct conn_values *cv)
{
    char text[YD_ECHO_TEMPLATE_BYTES];
    size_t n = expand_for(ctx->banner, cv, text);
    if (n > 0)
        reply(conn, text, n);
}

/* A bounded JSON writer: info lines are built in INFO_BYTES, which their values always fit. */
struct json {
    char *buf;
    size_t cap, len;
};

static void json_raw(struct json *j, const char *s, size_t n)
{
    if (n > j->cap - j->len)
        n = j->cap - j->len;
    memcpy(j->buf + j->len, s, n);
    j->len += n;
}

/* "name": then the value as a JSON string ('"', '\\' and bytes outside printable ASCII
 * escaped), or null for NULL or "". */
static void json_member(struct json *j, const char *name, const char *value)
{
    char esc[8];
    json_raw(j, name, strlen(name));
    if (value == NULL || value[0] == '\0') {
        json_raw(j, "null", 4);
        return;
    }
    json_raw(j, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            json_raw(j, esc, (size_t)snprintf(esc, sizeof esc, "\\%c", *p));
        else if (*p < 0x20 || *p >= 0x7f)
            json_raw(j, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p));
        else
            json_raw(j, (const char *)p, 1);
    }
    json_raw(j, "\"", 1);
}

/* Info mode's line up to the peer: {"hostname":..,"pid":..,"listener":..,"local":..,
 * "proxy":..,"tls":..,"tls_subject":..,"peer": (the rest is per message). */
static void info_head(const struct echo_ctx *ctx, struct json *j, const char *listener,
                      const char *local, const char *proxy, const char *tls, const char *subject)
{
    char pid[32];
    json_member(j, "{\"hostname\":", ctx->hostname);
    json_raw(j, pid, (size_t)snprintf(pid, sizeof pid, ",\"pid\":%ld", ctx->pid));
    json_member(j, ",\"listener\":", listener);
    json_member(j, ",\"local\":", local);
    json_member(j, ",\"proxy\":", proxy);
    json_member(j, ",\"tls\":", tls);
    json_member(j, ",\"tls_subject\":", subject);
    json_raw(j, ",\"peer\":", 8);
}

/* The end of an info line: ,"messages":N,"bytes":N}\n */
static void info_tail(struct json *j, uint64_t messages, size_t bytes)
{
    char tail[64];
    json_raw(j, tail,
             (size_t)snprintf(tail, sizeof tail, ",\"messages\":%llu,\"bytes\":%zu}\n",
                              (unsigned long long)messages, bytes));
}

/* ---- Identity of datagrams ----------------------------------------------------------------- */

/* The first socket of srv in the family (IPv6 or not) a datagram came from: its listener
 * ("udp://[::1]:8888") and local address ("[::1]:8888"). The library does not say which
 * address a datagram was sent to: on a wildcard bind, local is the wildcard. */
static void dgram_listener(const yd_server *srv, int v6, char *listener, size_t len,
                           const char **local)
{
    unsigned n = yd_server_socket_count(srv);
    listener[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        if (yd_server_address(srv, i, listener, len) < 0)
            continue;
        if ((strncmp(listener, "udp://[", 7) == 0) == v6)
            break;
    }
    const char *host = strstr(listener, "://");
    *local = host != NULL ? host + 3 : listener;
}

/* Makes the datagram identity of one family at its first datagram. Returns NULL when out of
 * memory (the datagram is then not answered, rather than answered without its identity). */
static struct dgram_identity *dgram_identity(struct echo_ctx *ctx, yd_server *srv, int v6)
{
    struct dgram_identity *dg = &ctx->dg[v6];
    if (dg->ready)
        return dg;
    if (ctx->dgram_reply == NULL && (ctx->dgram_reply = malloc(DGRAM_REPLY_BYTES)) == NULL)
        return NULL;
    char listener[YD_ADDR_TEXT_BYTES];
    const char *local;
    dgram_listener(srv, v6, listener, sizeof listener, &local);
    if (ctx->prefix != NULL) {
        char *buf = malloc(PARTIAL_BYTES);
        yd_template_values v = {
            .local = local, .listener = listener, .keep = YD_TEMPLATE_PEER | YD_TEMPLATE_PROXY};
        if (buf != NULL)
            yd_template_expand(ctx->prefix, &v, buf, PARTIAL_BYTES);
        dg->prefix = buf != NULL ? strdup(buf) : NULL;
        free(buf);
        if (dg->prefix == NULL)
            return NULL;
    }
    if (ctx->opts.mode == YD_ECHO_INFO) {
        char head[INFO_BYTES];
        struct json j = {.buf = head, .cap = sizeof head};
        info_head(ctx, &j, listener, local, NULL, NULL, NULL);
        if ((dg->info_head = malloc(j.len)) == NULL || (dg->listener = strdup(listener)) == NULL)
            return NULL;
        memcpy(dg->info_head, head, j.len);
        dg->info_head_len = j.len;
        dg->local_off = (size_t)(local - listener);
    }
    dg->ready = 1;
    return dg;
}

/* Puts a datagram's reply together in ctx->dgram_reply: the prefix and the datagram, or the
 * info line. peer is who the datagram is from: the client its PROXY header named (then also
 * proxy), else the sender. Returns its length. */
static size_t dgram_compose(struct echo_ctx *ctx, const struct dgram_identity *dg, const char *data,
                            size_t len, const char *peer, const char *proxy)
{
    if (ctx->opts.mode == YD_ECHO_INFO) {
        struct json j = {.buf = ctx->dgram_reply, .cap = DGRAM_REPLY_BYTES};
        if (proxy[0] != '\0')
            info_head(ctx, &j, dg->listener, dg->listener + dg->local_off, proxy, NULL, NULL);
        else
            json_raw(&j, dg->info_head, dg->info_head_len);
        json_member(&j, "", peer);
        info_tail(&j, ++ctx->datagrams, len);
        return j.len;
    }
    yd_template_values v = {.peer = peer, .proxy = proxy};
    int n = yd_template_expand(dg->prefix, &v, ctx->dgram_reply, YD_ECHO_TEMPLATE_BYTES);
    size_t at = n == -ENOBUFS ? strlen(ctx->dgram_reply) : n > 0 ? (size_t)n : 0;
    if (len > DGRAM_REPLY_BYTES - at)
        len = DGRAM_REPLY_BYTES - at; /* never: the loop reads at most 64 KiB */
    if (len > 0)
        memcpy(ctx->dgram_reply + at, data, len);
    return at + len;
}

/* ---- Without state: the hot path ---------------------------------------------------------- */

static void plain_connect(yd_conn *conn)
{
    struct echo_ctx *ctx = yd_conn_data(conn);
    ctx->refs++;
    read_mode_for(ctx, conn);
    if (ctx->banner != NULL) {
        struct conn_values cv;
        conn_values(conn, ctx->banner_fields, &cv);
        send_banner(ctx, conn, &cv);
    }
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

/* Each datagram: --drop may leave it unanswered; a prefix or info mode builds the reply in the
 * server's one reply buffer; otherwise it goes back from where it landed. */
static void echo_datagram(yd_server *srv, const char *data, size_t len, const void *peer,
                          unsigned peer_len)
{
    struct echo_ctx *ctx = yd_server_data(srv);
    if (ctx->opts.mode == YD_ECHO_UPPER)
        yd_ascii_upper((char *)data, data, len);
    int drop = chance(ctx, ctx->drop_below);
    int named = ctx->opts.verbose || ctx->opts.mode == YD_ECHO_INFO || ctx->prefix != NULL;
    char proxy[YD_ADDR_TEXT_BYTES] = "", name[YD_ADDR_TEXT_BYTES] = "";
    /* Who it is from, when it is said: the client a PROXY header named, else the sender. */
    if (named && yd_server_datagram_source(srv, proxy, sizeof proxy) <= 0)
        yd_sockaddr_format(peer, name, sizeof name);
    const char *from = proxy[0] != '\0' ? proxy : name;
    if (ctx->opts.verbose)
        log_event(ctx, from, drop ? "datagram dropped (--drop)" : "datagram", data, len, NULL);
    if (drop) {
        yd_server_count_error(srv, YD_ERR_INJECTED_DROP);
        return;
    }
    if (!named || (ctx->opts.mode != YD_ECHO_INFO && ctx->prefix == NULL)) {
        yd_server_send_to(srv, data, len, peer, peer_len); /* a failure is counted there */
        return;
    }
    const struct sockaddr *sa = peer;
    struct dgram_identity *dg = dgram_identity(ctx, srv, sa->sa_family == AF_INET6);
    if (dg == NULL)
        return; /* out of memory: better unanswered than answered without who answered */
    size_t n = dgram_compose(ctx, dg, data, len, from, proxy);
    yd_server_send_to(srv, ctx->dgram_reply, n, peer, peer_len); /* to the proxy, if one */
}

static const yd_protocol plain_protocol = {
    .on_connect = plain_connect,
    .on_data = plain_data,
    .on_close = plain_close,
    .on_datagram = echo_datagram,
    .on_reject = echo_reject,
};

/* ---- With state: --delay, -v, a prefix, info mode, --reset --------------------------------- */

static void on_due(yd_timer *timer, void *data);

/* The connection's prefix, or info mode's line up to its count, made once. */
static int make_head(struct echo_conn *ec, const struct conn_values *cv)
{
    struct echo_ctx *ctx = ec->ctx;
    char buf[INFO_BYTES];
    size_t n = 0;
    if (ctx->opts.mode == YD_ECHO_INFO) {
        struct json j = {.buf = buf, .cap = sizeof buf};
        info_head(ctx, &j, cv->listener, cv->local, cv->proxy, yd_conn_tls_version(ec->conn),
                  cv->subject);
        json_member(&j, "", cv->peer);
        n = j.len;
    } else if (ctx->prefix != NULL && ctx->opts.mode != YD_ECHO_RAW) {
        n = expand_for(ctx->prefix, cv, buf);
    }
    if (n == 0)
        return 0;
    if ((ec->head = malloc(n)) == NULL)
        return -ENOMEM;
    memcpy(ec->head, buf, n);
    ec->head_len = n;
    return 0;
}

/* The fields a connection's banner, prefix and info line need. */
static unsigned fields_needed(const struct echo_ctx *ctx)
{
    unsigned f = ctx->banner_fields;
    if (ctx->opts.mode == YD_ECHO_INFO)
        return f | CONN_FIELDS;
    if (ctx->opts.mode != YD_ECHO_RAW)
        f |= ctx->prefix_fields;
    return f;
}

static void state_connect(yd_conn *conn)
{
    struct echo_ctx *ctx = yd_conn_data(conn);
    struct echo_conn *ec = calloc(1, sizeof *ec);
    struct conn_values cv;
    if (ec != NULL) {
        ec->ctx = ctx;
        ec->conn = conn;
        conn_values(conn, fields_needed(ctx), &cv);
    }
    if (ec == NULL ||
        (ctx->opts.delay_ms > 0 && yd_timer_new(yd_conn_loop(conn), on_due, ec, &ec->timer) < 0) ||
        make_head(ec, &cv) < 0) {
        if (ec != NULL)
            yd_timer_free(ec->timer);
        free(ec);
        yd_conn_set_data(conn, NULL);
        yd_conn_abort(conn);
        return;
    }
    ctx->refs++;
    ec->reset = chance(ctx, ctx->reset_below);
    yd_conn_set_data(conn, ec);
    read_mode_for(ctx, conn);
    if (ctx->opts.verbose) {
        yd_conn_peer_name(conn, ec->peer, sizeof ec->peer);
        log_connected(ctx, ec->peer, conn);
    }
    if (ctx->banner != NULL)
        send_banner(ctx, conn, &cv);
}

/* --reset: the first reply is out; the connection is reset (TCP RST; a Unix socket just
 * closes), dropping whatever of it the kernel has not taken. */
static void after_reply(struct echo_conn *ec)
{
    if (!ec->reset)
        return;
    ec->reset = 0;
    ec->aborted = 1;
    if (ec->ctx->opts.verbose)
        log_event(ec->ctx, ec->peer, "reset (--reset)", NULL, 0, NULL);
    yd_conn_count_error(ec->conn, YD_ERR_INJECTED_RESET);
    yd_conn_abort(ec->conn);
}

/* One reply: the head (a prefix) and the message, as two writes. */
static void send_now(struct echo_conn *ec, const char *head, size_t head_len, const char *data,
                     size_t len)
{
    if (head_len > 0)
        reply(ec->conn, head, head_len);
    reply(ec->conn, data, len);
    if (ec->ctx->opts.verbose)
        log_event(ec->ctx, ec->peer, "echoed", data, len, NULL);
    after_reply(ec);
}

/* Keeps held memory small once the queue empties after a burst. */
#define HELD_KEEP_BYTES (64u * 1024u)

static size_t held_len(const struct held *h)
{
    return h->end - h->start;
}

/* Makes room for len more bytes at h->end. */
static int held_reserve(struct held *h, size_t len)
{
    if (h->end + len <= h->cap)
        return 0;
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
    return 0;
}

static void held_append(struct held *h, const void *data, size_t len)
{
    if (len == 0)
        return; /* data may be NULL then */
    memcpy(h->buf + h->end, data, len);
    h->end += len;
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
    while (held_len(h) >= sizeof(struct held_record) && !ec->aborted) {
        struct held_record rec;
        memcpy(&rec, h->buf + h->start, sizeof rec);
        if (rec.due_ms > now) {
            yd_timer_start(timer, rec.due_ms - now, 0);
            ec->timer_armed = 1;
            break;
        }
        send_now(ec, NULL, 0, h->buf + h->start + sizeof rec, rec.len);
        held_consume(h, sizeof rec + rec.len);
    }
    if (ec->aborted)
        return; /* closing: on_close frees what is held */
    yd_conn_set_held(conn, held_len(h));
    if (ec->paused && held_len(h) < YD_LOW_WATERMARK && !ec->finished) {
        ec->paused = 0;
        yd_conn_resume_reading(conn);
    }
    if (ec->finished && held_len(h) == 0)
        yd_conn_close(conn);
}

/* Holds one reply (the head and the message, as one) until it is due: --delay D, or D~J with
 * jitter, never before the reply held before it, so that replies stay in order. */
static void hold(struct echo_conn *ec, const char *head, size_t head_len, const char *data,
                 size_t len)
{
    yd_conn *conn = ec->conn;
    uint64_t now = yd_loop_now_ms(yd_conn_loop(conn));
    struct held_record rec = {now + hold_ms(ec->ctx), head_len + len};
    if (rec.due_ms < ec->last_due_ms)
        rec.due_ms = ec->last_due_ms;
    ec->last_due_ms = rec.due_ms;
    if (held_reserve(&ec->held, sizeof rec + head_len + len) < 0) {
        yd_conn_fail(conn, -ENOMEM);
        return;
    }
    held_append(&ec->held, &rec, sizeof rec);
    held_append(&ec->held, head, head_len);
    held_append(&ec->held, data, len);
    /* The record is memory held too: a held "\n" costs 17 bytes, and counts so. */
    yd_conn_set_held(conn, held_len(&ec->held));
    /* Held replies count against the same bound as queued ones: stop reading past it. */
    if (held_len(&ec->held) > YD_HIGH_WATERMARK && !ec->paused) {
        ec->paused = 1;
        yd_conn_pause_reading(conn);
    }
    if (!ec->timer_armed) {
        yd_timer_start(ec->timer, rec.due_ms - now, 0);
        ec->timer_armed = 1;
    }
}

/* Sends or holds one reply. */
static void answer(struct echo_conn *ec, const char *head, size_t head_len, const char *data,
                   size_t len)
{
    if (ec->ctx->opts.delay_ms > 0)
        hold(ec, head, head_len, data, len);
    else
        send_now(ec, head, head_len, data, len);
}

/* Info mode: the connection's line, with this message's count and size. */
static void answer_info(struct echo_conn *ec, size_t len)
{
    char line[INFO_BYTES + 64];
    struct json j = {.buf = line, .cap = sizeof line};
    json_raw(&j, ec->head, ec->head_len);
    info_tail(&j, ++ec->messages, len);
    answer(ec, NULL, 0, line, j.len);
}

static void state_data(yd_conn *conn, const char *data, size_t len)
{
    struct echo_conn *ec = yd_conn_data(conn);
    if (ec->aborted)
        return;
    if (ec->ctx->opts.verbose)
        log_event(ec->ctx, ec->peer, "received", data, len, NULL);
    if (ec->ctx->opts.mode == YD_ECHO_UPPER)
        yd_ascii_upper((char *)data, data, len);
    if (ec->ctx->opts.mode == YD_ECHO_INFO)
        answer_info(ec, len);
    else
        answer(ec, ec->head, ec->head_len, data, len);
    if (ec->aborted)
        return;
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
    free(ec->head);
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

static int check_options(const yd_echo_options *echo)
{
    if (echo == NULL || (unsigned)echo->mode > YD_ECHO_INFO ||
        echo->max_line_bytes > YD_MAX_LINE_LIMIT || echo->delay_jitter_ms > echo->delay_ms ||
        echo->delay_ms > UINT64_MAX / 4)
        return -EINVAL;
    /* Written so that NaN fails too. */
    if (!(echo->drop_percent >= 0 && echo->drop_percent <= 100) ||
        !(echo->reset_percent >= 0 && echo->reset_percent <= 100))
        return -EINVAL;
    return 0;
}

/* The server's shared state: the options, the templates with what never changes expanded. */
static int ctx_new(const yd_echo_options *echo, struct echo_ctx **out)
{
    int err = check_options(echo);
    if (err < 0)
        return err;
    struct echo_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return -ENOMEM;
    ctx->opts = *echo;
    if (ctx->opts.max_line_bytes == 0)
        ctx->opts.max_line_bytes = DEFAULT_MAX_LINE;
    ctx->refs = 1;
    ctx->pid = (long)getpid();
    if (gethostname(ctx->hostname, sizeof ctx->hostname - 1) < 0)
        ctx->hostname[0] = '\0';
    seed(ctx);
    ctx->drop_below = below_of(echo->drop_percent);
    ctx->reset_below = below_of(echo->reset_percent);
    const char *prefix = echo->mode == YD_ECHO_INFO ? NULL : echo->prefix;
    if ((err = expand_start_fields(ctx, echo->banner, &ctx->banner, &ctx->banner_fields)) < 0 ||
        (err = expand_start_fields(ctx, prefix, &ctx->prefix, &ctx->prefix_fields)) < 0) {
        ctx_unref(ctx);
        return err;
    }
    /* The caller's strings are not kept. */
    ctx->opts.banner = ctx->opts.prefix = NULL;
    *out = ctx;
    return 0;
}

static const yd_protocol *protocol_for(const struct echo_ctx *ctx)
{
    const yd_echo_options *o = &ctx->opts;
    int stateful = o->delay_ms > 0 || o->verbose || o->mode == YD_ECHO_INFO ||
                   (ctx->prefix != NULL && o->mode != YD_ECHO_RAW) || ctx->reset_below > 0;
    return stateful ? &state_protocol : &plain_protocol;
}

static int echo_server(yd_loop *loop, const char *addr, int fd, const yd_echo_options *echo,
                       const yd_server_options *server_options, yd_server **out)
{
    struct echo_ctx *ctx;
    int err = ctx_new(echo, &ctx);
    if (err < 0)
        return err;
    yd_server_options so = {0};
    if (server_options != NULL)
        so = *server_options;
    so.protocol = protocol_for(ctx);
    so.data = ctx;
    so.free_data = ctx_release; /* the server's own reference */
    err =
        addr != NULL ? yd_server_listen(loop, addr, &so, out) : yd_server_adopt(loop, fd, &so, out);
    if (err < 0) {
        ctx_unref(ctx);
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
    int err = check_options(echo);
    if (err < 0)
        return err;
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
    struct echo_ctx *ctx;
    if ((err = ctx_new(echo, &ctx)) < 0)
        return err;
    so.protocol = protocol_for(ctx);
    so.data = ctx;
    yd_conn *conn;
    err = yd_server_serve_fd(loop, fd, &so, &conn);
    if (err < 0) {
        ctx_unref(ctx);
        return err;
    }
    ctx->refs--; /* the connection's own reference, taken in on_connect, is the only one */
    return 0;
}
