/*
 * Connections, in the order one lives: open -> start -> read -> frame -> deliver -> write ->
 * back-pressure -> half-close -> close -> free. Nothing here knows about echo, nor about the
 * socket underneath: every socket call goes through conn->transport (stream.c, dgram.c).
 *
 * The life of a message, from accept to write (a TCP echo in line mode):
 *  1. server.c on_acceptable: accept4 on the listening socket; take_connection counts it
 *     and applies --max-conns.
 *  2. yd__conn_accept (here): a yd_conn on the server's transport; yd__conn_start runs
 *     on_connect (echo picks its read mode) and starts reading.
 *  3. stream.c on_read: the kernel's bytes land in the loop's one read buffer (loop.c
 *     yd__loop_alloc_cb) and reach yd__conn_received.
 *  4. process -> frame: cut the bytes into messages by the read mode (framing.c
 *     yd_frame_line); a partial one is set aside in pend (complete_pend finishes it).
 *  5. deliver: the protocol's on_data with the message, straight from the read buffer.
 *  6. echo.c on_data -> yd_conn_write: transport->try_write hands it to the kernel at once;
 *     whatever the kernel did not take is copied into the write queue (bufq.c).
 *  7. flush -> transport->write sends the queue in the background; yd__conn_written consumes
 *     it, and past YD_HIGH_WATERMARK reading stopped until it fell below YD_LOW_WATERMARK.
 *
 * The ways a connection ends (every one goes through close_handle, then yd__conn_closed):
 *  | call                     | who                          | peer sees        | on_close |
 *  |--------------------------|------------------------------|------------------|----------|
 *  | yd_conn_close            | protocol; EOF with no on_eof | FIN after queue  | 0        |
 *  | yd_conn_abort            | protocol; drain deadline     | RST (TCP)        | status   |
 *  | yd_conn_fail             | errors, line too long, idle  | RST (TCP), counted| status  |
 *  | peer reset, nothing owed | on read error                | (already gone)   | -ECONNRESET, not
 * counted | | yd__conn_close_silently  | max-conns refusal, failed open| FIN             | never |
 *  | connect failure          | connect.c, after every address| -               | status   |
 * yd_loop_free aborts whatever is left. on_close is the last event; the memory is freed on its
 * return (yd__conn_closed).
 */
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/*
 * A caller that ignores back-pressure gets -ENOBUFS past this many queued bytes. An echo that
 * heeds it queues at most: the high watermark when reading stopped, the rest of that read's
 * messages, and the largest message with its '\n' completing a line set aside (twice the
 * watermark covers --delay sending what it held).
 */
#define WRITE_QUEUE_LIMIT (YD_MAX_LINE_LIMIT + 1 + 2 * YD_HIGH_WATERMARK + READ_BUF_BYTES)
#define MAX_WRITE_IOV     16
/* Partial-message buffers larger than this are freed once empty: idle connections stay small. */
#define PEND_KEEP_BYTES 4096u
/* While draining, a connection silent for this long, with nothing left to send, is closed. */
#define DRAIN_QUIET_MS 100
/* A PROXY protocol header must arrive this soon after accept unless the server says. */
#define DEFAULT_PROXY_TIMEOUT_MS 5000

static void update_reading(yd_conn *conn);
static void process(yd_conn *conn, const char *data, size_t len);
static void flush(yd_conn *conn);
static void close_handle(yd_conn *conn, int reset);

/* The phase only moves forward: a connection never reopens. */
static void set_phase(yd_conn *conn, enum conn_phase phase)
{
    assert(phase >= conn->phase);
    conn->phase = (uint8_t)phase;
}

/* ---- Open ------------------------------------------------------------------------------- */

yd_conn *yd__conn_new(yd_loop *loop, const struct yd__transport *transport,
                      const yd_protocol *protocol, void *data)
{
    assert(transport->handle_size >= sizeof(uv_stream_t) || transport->datagram);
    /* Not calloc: glibc's (2.36) skips the thread's cache of freed chunks, and a busy server or
     * bench --reconnect-every makes thousands of connections a second. Zeroed in two parts, as
     * one memset of the whole block would be made a calloc again by the compiler. */
    yd_conn *conn = malloc(offsetof(yd_conn, h) + transport->handle_size);
    if (conn == NULL)
        return NULL;
    memset(conn, 0, offsetof(yd_conn, h));
    memset(&conn->h, 0, transport->handle_size);
    conn->transport = transport;
    conn->loop = loop;
    conn->protocol = protocol;
    conn->data = data;
    conn->read_mode = YD_READ_CHUNK;
    conn->last_active_ms = uv_now(&loop->uv);
    conn->next = loop->conns;
    if (loop->conns != NULL)
        loop->conns->prev = conn;
    loop->conns = conn;
    return conn;
}

static void unlink_conn(yd_conn *conn)
{
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        conn->loop->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
}

void yd__conn_discard(yd_conn *conn)
{
    unlink_conn(conn);
    if (conn->tls != NULL)
        yd__tls_detach(conn);
    free(conn->connecting);
    free(conn);
}

yd_conn *yd__conn_accept(yd_server *srv, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    int unix_socket = srv->transport == YD_UNIX;
    const struct yd__transport *t =
        srv->tls != NULL ? (unix_socket ? &yd__tls_unix_transport : &yd__tls_tcp_transport)
                         : (unix_socket ? &yd__unix_transport : &yd__tcp_transport);
    yd_conn *conn = yd__conn_new(srv->loop, t, srv->options.protocol, srv->options.data);
    if (conn == NULL || yd__conn_open(conn, fd) < 0) {
        close(fd);
        STAT_ADD(srv->options.stats, errors[YD_ERR_ACCEPT], 1);
        return NULL;
    }
    if (srv->tls != NULL && yd__tls_attach(conn, srv->tls, NULL) < 0) {
        STAT_ADD(srv->options.stats, errors[YD_ERR_ACCEPT], 1);
        yd__conn_close_silently(conn); /* fd goes with the handle */
        return NULL;
    }
    if (peer_len <= sizeof conn->peer)
        memcpy(&conn->peer, peer, peer_len);
    conn->server = srv;
    conn->stats = srv->options.stats;
    conn->idle_timeout_ms = srv->options.idle_timeout_ms;
    conn->served = 1;
    if (srv->options.proxy_protocol) {
        uint64_t wait = srv->options.proxy_timeout_ms ? srv->options.proxy_timeout_ms
                                                      : DEFAULT_PROXY_TIMEOUT_MS;
        conn->proxy_expected = 1;
        conn->ready_deadline_ms = uv_now(&srv->loop->uv) + wait;
        yd__loop_want_sweep(srv->loop, yd__loop_sweep_period(wait));
    }
    return conn;
}

/* ---- Start ------------------------------------------------------------------------------ */

/* Exits: the transport is ready (on_connect now), will be (a handshake: it calls
 * yd__conn_ready), or failed (rejected, counted as a handshake failure). */
void yd__conn_start(yd_conn *conn)
{
    assert(conn->phase == PHASE_OPENING);
    set_phase(conn, PHASE_OPEN);
    conn->started = 1;
    STAT_ADD(conn->stats, conns_active, 1);
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    int r = conn->transport->start != NULL ? conn->transport->start(conn) : 0;
    if (r == 0 && conn->proxy_expected) {
        /* The header first: read it before on_connect (yd__conn_received takes it). */
        r = conn->transport->read_start(conn);
        if (r == 0) {
            conn->reading = 1;
            return;
        }
    }
    if (r == 0)
        yd__conn_ready(conn);
    else if (r < 0)
        yd__conn_reject(conn, r, yd__conn_opening_kind(conn));
}

enum yd_error_kind yd__conn_opening_kind(const yd_conn *conn)
{
    return conn->proxy_expected ? YD_ERR_PROXY_HEADER : YD_ERR_TLS_HANDSHAKE;
}

void yd__conn_ready(yd_conn *conn)
{
    assert(!conn->ready);
    conn->ready = 1;
    conn->ready_deadline_ms = 0;
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    if (conn->protocol->on_connect != NULL)
        conn->protocol->on_connect(conn);
    update_reading(conn);
}

void yd__conn_start_soon(yd_conn *conn)
{
    conn->on_connect_due = 1;
    yd__loop_kick(conn->loop);
}

static void reframe(yd_conn *conn);

/* Exits: nothing due; or one connection's on_connect or re-framing ran, which may have closed
 * connections further down the list: the next kick starts over. */
void yd__conn_run_kicks(yd_loop *loop)
{
    for (yd_conn *conn = loop->conns; conn != NULL; conn = conn->next) {
        if (conn->on_connect_due) {
            conn->on_connect_due = 0;
            if (conn->phase == PHASE_OPENING)
                yd__conn_start(conn);
        } else if (conn->reframe_due) {
            conn->reframe_due = 0;
            reframe(conn);
        } else {
            continue;
        }
        yd__loop_kick(loop);
        return;
    }
}

/* ---- Read ------------------------------------------------------------------------------- */

static int wants_reading(const yd_conn *conn)
{
    return conn->phase == PHASE_OPEN && conn->read_stops == 0;
}

/* The one place reading starts or stops, from the phase and the reasons to stop. */
static void update_reading(yd_conn *conn)
{
    int want = wants_reading(conn);
    if (want == conn->reading || conn->phase == PHASE_CLOSED)
        return;
    int err = want ? conn->transport->read_start(conn) : conn->transport->read_stop(conn);
    if (err < 0) {
        yd_conn_fail(conn, err);
        return;
    }
    conn->reading = (uint8_t)want;
}

static void stop_reading_for(yd_conn *conn, enum read_stop why)
{
    conn->read_stops |= (uint8_t)why;
    update_reading(conn);
}

static void unstash(yd_conn *conn);

void yd_conn_pause_reading(yd_conn *conn)
{
    stop_reading_for(conn, RS_PAUSED);
}

void yd_conn_resume_reading(yd_conn *conn)
{
    if (!(conn->read_stops & RS_PAUSED))
        return;
    conn->read_stops &= (uint8_t)~RS_PAUSED;
    if (conn->read_stops & RS_STASHED)
        unstash(conn);
    update_reading(conn);
}

int yd_conn_set_read_mode(yd_conn *conn, yd_read_mode mode, size_t arg)
{
    if (mode == YD_READ_LINE && arg == 0)
        arg = 64u * 1024u;
    if ((mode == YD_READ_EXACTLY && arg == 0) || mode > YD_READ_EXACTLY)
        return -EINVAL;
    if (arg > YD_MAX_LINE_LIMIT) /* a message is echoed whole: it must fit the write queue */
        return -EINVAL;
    int changed = conn->read_mode != mode || conn->read_arg != arg;
    conn->read_mode = (uint8_t)mode;
    conn->read_arg = arg;
    /* A partial message set aside was cut by the old mode: it is held as if just read (reading
     * waits) and framed again by the new one from the loop, not from within this call. */
    if (changed && conn->ready && conn->pend_len > 0 && !(conn->read_stops & RS_STASHED)) {
        stop_reading_for(conn, RS_STASHED);
        conn->reframe_due = 1;
        yd__loop_kick(conn->loop);
    }
    return 0;
}

/* Nothing read and unanswered, nothing held or queued: the exchange so far is complete. */
static int nothing_pending(const yd_conn *conn)
{
    return conn->wq.len == 0 && conn->inflight == 0 && conn->held == 0 && conn->pend_len == 0;
}

/* Exits: the PROXY header still coming (wait), bad (reject) or just complete (on_connect,
 * then the bytes after it); otherwise the bytes go to the framer. */
void yd__conn_received(yd_conn *conn, const char *data, size_t len)
{
    char *hold = NULL;
    if (conn->proxy_expected) {
        if (yd__conn_proxy_read(conn, &data, &len, &hold) != 0)
            return;
        yd__conn_ready(conn);
    }
    STAT_ADD(conn->stats, bytes_in, (uint64_t)len);
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    if (len > 0)
        process(conn, data, len);
    free(hold);
}

static void deliver_partial(yd_conn *conn);

void yd__conn_read_eof(yd_conn *conn)
{
    if (!conn->ready) { /* the peer left before its PROXY header was whole */
        yd__conn_reject(conn, -EPROTO, yd__conn_opening_kind(conn));
        return;
    }
    stop_reading_for(conn, RS_EOF);
    deliver_partial(conn);
    if (conn->phase != PHASE_OPEN || (conn->read_stops & RS_PAUSED))
        return;
    if (conn->protocol->on_eof != NULL)
        conn->protocol->on_eof(conn);
    else
        yd_conn_close(conn); /* asyncio's default: close once the queue is sent */
}

/* A reset after a complete exchange (how HAProxy ends a health check, and any client closing
 * with SO_LINGER 0) closes without counting an error; any other error is counted. */
void yd__conn_read_error(yd_conn *conn, int err)
{
    if (!conn->ready) {
        yd__conn_reject(conn, err, yd__conn_opening_kind(conn));
        return;
    }
    if (err == -ECONNRESET && nothing_pending(conn)) {
        conn->status = err;
        close_handle(conn, 0);
        return;
    }
    yd_conn_fail(conn, err);
}

/* ---- Frame ------------------------------------------------------------------------------ */

/*
 * The end of a line whose first `before` bytes are set aside already: as yd_frame_line, with
 * read_arg the longest line without its '\n' (asyncio's limit). Once more bytes than that
 * have come without a '\n', no '\n' can end the line within the limit: -EMSGSIZE at once.
 */
static long frame_line(const yd_conn *conn, const char *data, size_t len, size_t before)
{
    long r = yd_frame_line(data, len, conn->read_arg + 1 - before);
    if (r == 0 && before + len > conn->read_arg)
        return -EMSGSIZE;
    return r;
}

/* The length of the first message in data: > 0 a whole one, 0 need more, < 0 an error. */
static long frame(const yd_conn *conn, const char *data, size_t len)
{
    switch (conn->read_mode) {
    case YD_READ_LINE:
        return frame_line(conn, data, len, 0);
    case YD_READ_EXACTLY:
        return len >= conn->read_arg ? (long)conn->read_arg : 0;
    default:
        return (long)len;
    }
}

static int pend_append(yd_conn *conn, const char *data, size_t len)
{
    size_t need = conn->pend_len + len;
    if (need > conn->pend_cap) {
        size_t cap = conn->pend_cap ? conn->pend_cap : 256;
        while (cap < need)
            cap *= 2;
        char *p = realloc(conn->pend, cap);
        if (p == NULL)
            return -ENOMEM;
        conn->pend = p;
        conn->pend_cap = cap;
    }
    memcpy(conn->pend + conn->pend_len, data, len);
    conn->pend_len = need;
    return 0;
}

static void pend_reset(yd_conn *conn)
{
    conn->pend_len = 0;
    if (conn->pend_cap > PEND_KEEP_BYTES) {
        free(conn->pend);
        conn->pend = NULL;
        conn->pend_cap = 0;
    }
}

/* ---- The PROXY protocol header ---------------------------------------------------------- */

/* Takes the original client from a header: it becomes the peer (a LOCAL header, a proxy's
 * health check, keeps the connection's own). */
static void take_proxy_header(yd_conn *conn, const yd_proxy_header *h)
{
    conn->proxy_expected = 0;
    conn->ready_deadline_ms = 0;
    if (h->local || (h->family != AF_INET && h->family != AF_INET6))
        return;
    size_t n = h->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    memcpy(&conn->peer, &h->src, n);
    conn->proxied = 1;
}

/* The parsing half of yd__conn_proxy_read: 1 wait, 0 read, < 0 bad. */
static int proxy_parse(yd_conn *conn, const char **data, size_t *len, char **hold)
{
    const char *buf = *data;
    size_t n = *len;
    *hold = NULL;
    if (conn->pend_len > 0) { /* the start of the header came in an earlier read */
        if (pend_append(conn, buf, n) < 0)
            return -ENOMEM;
        buf = conn->pend;
        n = conn->pend_len;
    }
    yd_proxy_header h;
    long r = yd_proxy_parse(buf, n, &h);
    if (r < 0 || (r == 0 && n >= YD_PROXY_MAX_BYTES))
        return -EPROTO;
    if (r == 0) {
        if (buf != conn->pend && pend_append(conn, buf, n) < 0)
            return -ENOMEM;
        return 1;
    }
    take_proxy_header(conn, &h);
    if (buf == conn->pend) { /* the payload lives in pend: hand it over whole */
        *hold = conn->pend;
        conn->pend = NULL;
        conn->pend_len = conn->pend_cap = 0;
    }
    *data = buf + r;
    *len = n - (size_t)r;
    return 0;
}

int yd__conn_proxy_read(yd_conn *conn, const char **data, size_t *len, char **hold)
{
    int r = proxy_parse(conn, data, len, hold);
    if (r < 0)
        yd__conn_reject(conn, r, YD_ERR_PROXY_HEADER);
    return r < 0 ? 1 : r;
}

/* ---- Deliver ---------------------------------------------------------------------------- */

static void deliver(yd_conn *conn, const char *data, size_t len)
{
    STAT_ADD(conn->stats, messages, 1);
    if (conn->protocol->on_data != NULL)
        conn->protocol->on_data(conn, data, len);
}

/* Can a message be handed to the protocol now? Not once it has closed or paused it. */
/* Nothing reaches the protocol before on_connect: until then pend holds a PROXY header's start,
 * which a drain must not hand over as a message. */
static int deliverable(const yd_conn *conn)
{
    return conn->ready && conn->phase == PHASE_OPEN && !(conn->read_stops & RS_PAUSED);
}

/* Delivers the message set aside in pend once it is whole: returns the bytes of data used, or
 * a negative error. */
static long complete_pend(yd_conn *conn, const char *data, size_t len)
{
    size_t take = len;
    int whole = 0;
    if (conn->read_mode == YD_READ_LINE) {
        long r = frame_line(conn, data, len, conn->pend_len);
        if (r < 0)
            return r;
        if (r > 0) {
            take = (size_t)r;
            whole = 1;
        }
    } else if (conn->read_mode == YD_READ_EXACTLY) {
        size_t need = conn->read_arg - conn->pend_len;
        if (take >= need) {
            take = need;
            whole = 1;
        }
    } else {
        take = 0; /* chunk mode: what was set aside goes out alone */
        whole = 1;
    }
    if (take > 0 && pend_append(conn, data, take) < 0)
        return -ENOMEM;
    if (whole) {
        size_t n = conn->pend_len;
        conn->pend_len = 0; /* the protocol may read more from within on_data */
        deliver(conn, conn->pend, n);
        pend_reset(conn);
    }
    return (long)take;
}

/* Cuts freshly read bytes into messages and delivers them; sets aside a partial one. */
static void process(yd_conn *conn, const char *data, size_t len)
{
    while (len > 0 && deliverable(conn)) {
        long n;
        if (conn->pend_len > 0) {
            n = complete_pend(conn, data, len);
        } else {
            n = frame(conn, data, len);
            if (n == 0)
                n = pend_append(conn, data, len) < 0 ? -ENOMEM : (long)len;
            else if (n > 0)
                deliver(conn, data, (size_t)n);
        }
        if (n < 0) {
            yd_conn_fail(conn, (int)n);
            return;
        }
        data += n;
        len -= (size_t)n;
    }
    if (len > 0 && conn->phase == PHASE_OPEN) {
        /* Paused with messages still in this read: hold them, unframed, until resumed. Nothing
         * is set aside at this point (a partial message only remains once len is 0). */
        assert(conn->read_stops & RS_PAUSED);
        if (pend_append(conn, data, len) < 0)
            yd_conn_fail(conn, -ENOMEM);
        else
            conn->read_stops |= RS_STASHED;
    }
}

/* Delivers what a pause held back, as if it had just been read. */
static void unstash(yd_conn *conn)
{
    char *data = conn->pend;
    size_t len = conn->pend_len;
    conn->pend = NULL;
    conn->pend_len = conn->pend_cap = 0;
    conn->read_stops &= (uint8_t)~RS_STASHED;
    process(conn, data, len);
    free(data);
}

/* What a change of read mode held (yd_conn_set_read_mode), framed by the new mode; a pause
 * meanwhile leaves it to the resume. */
static void reframe(yd_conn *conn)
{
    if (conn->phase != PHASE_OPEN || !(conn->read_stops & RS_STASHED) ||
        (conn->read_stops & RS_PAUSED))
        return;
    unstash(conn);
    update_reading(conn);
}

/*
 * Hands a partial message set aside to the protocol as a whole one, at EOF or when a drain
 * finds the connection quiet: a last line without its '\n' is still a line. A short
 * read-exactly message is dropped.
 */
static void deliver_partial(yd_conn *conn)
{
    if (conn->pend_len == 0 || conn->read_mode == YD_READ_EXACTLY || !deliverable(conn) ||
        (conn->read_stops & RS_STASHED))
        return;
    size_t n = conn->pend_len;
    conn->pend_len = 0;
    deliver(conn, conn->pend, n);
    pend_reset(conn);
}

void yd__conn_datagram(yd_conn *conn, const char *data, size_t len)
{
    STAT_ADD(conn->stats, bytes_in, (uint64_t)len);
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    if (deliverable(conn))
        deliver(conn, data, len);
}

/* ---- Write ------------------------------------------------------------------------------ */

int yd_conn_write(yd_conn *conn, const void *data, size_t len)
{
    if (conn->phase > PHASE_OPEN || conn->write_side != WRITE_OPEN)
        return -EPIPE;
    if (conn->phase != PHASE_OPEN)
        return -ENOTCONN;
    if (len > WRITE_QUEUE_LIMIT)
        return -ENOBUFS;
    const char *p = data;
    if (conn->transport->datagram) {
        int r = conn->transport->try_write(conn, p, len);
        if (r < 0 && conn->phase == PHASE_CLOSED)
            return r; /* refused: the connection failed, and that was counted */
        if (r < 0) {
            STAT_ADD(conn->stats, errors[YD_ERR_UDP_SEND], 1);
            return r; /* lost, as a datagram may be */
        }
        STAT_ADD(conn->stats, bytes_out, len);
        return 0;
    }
    if (len == 0)
        return 0;
    if (conn->wq.len == 0) {
        /* The common case: the kernel takes it all, straight from the caller's buffer. */
        int r = conn->transport->try_write(conn, p, len);
        if (r < 0) {
            yd_conn_fail(conn, r);
            return r;
        }
        STAT_ADD(conn->stats, bytes_out, (uint64_t)r);
        if (r > 0) { /* sending is progress too */
            conn->last_active_ms = uv_now(&conn->loop->uv);
            conn->moved = 1;
        }
        p += r;
        len -= (size_t)r;
        if (len == 0)
            return 0;
    }
    if (conn->wq.len + len > WRITE_QUEUE_LIMIT)
        return -ENOBUFS;
    int err = yd__bufq_push(&conn->wq, &conn->loop->pool, p, len);
    if (err < 0) {
        yd_conn_fail(conn, err);
        return err;
    }
    if (conn->wq.len > YD_HIGH_WATERMARK && !(conn->read_stops & RS_FULL))
        stop_reading_for(conn, RS_FULL); /* asyncio's drain(): read no more until it empties */
    flush(conn);
    return 0;
}

size_t yd_conn_write_queued(const yd_conn *conn)
{
    return conn->wq.len;
}

/* Hands the queued bytes to the transport unless a write is already under way. */
static void flush(yd_conn *conn)
{
    if (conn->inflight > 0 || conn->wq.len == 0 || conn->phase == PHASE_CLOSED)
        return;
    uv_buf_t iov[MAX_WRITE_IOV];
    size_t bytes;
    unsigned n = yd__bufq_peek(&conn->wq, iov, MAX_WRITE_IOV, &bytes);
    int err = conn->transport->write(conn, iov, n);
    if (err < 0) {
        yd_conn_fail(conn, err);
        return;
    }
    conn->inflight = bytes;
}

static void send_shutdown(yd_conn *conn);
static void finish_close(yd_conn *conn);

/* Exits: canceled or closed (nothing to do); an error fails the connection; otherwise the
 * queue moves on, reading resumes below the low watermark, and a wanted close or half-close
 * happens once the queue is empty. */
void yd__conn_written(yd_conn *conn, int status)
{
    size_t done = conn->inflight;
    conn->inflight = 0;
    if (status == UV_ECANCELED || conn->phase == PHASE_CLOSED)
        return;
    if (status < 0) {
        yd_conn_fail(conn, status);
        return;
    }
    yd__bufq_consume(&conn->wq, &conn->loop->pool, done);
    STAT_ADD(conn->stats, bytes_out, done);
    /* The peer reading what we send is activity too: a slow reader is not idle. */
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    flush(conn);
    if ((conn->read_stops & RS_FULL) && conn->wq.len < YD_LOW_WATERMARK) {
        conn->read_stops &= (uint8_t)~RS_FULL;
        update_reading(conn);
        if (conn->protocol->on_drain != NULL)
            conn->protocol->on_drain(conn);
    }
    if (conn->wq.len > 0 || conn->phase == PHASE_CLOSED)
        return;
    if (conn->phase == PHASE_CLOSING)
        finish_close(conn);
    else if (conn->write_side == WRITE_SHUT_WANTED)
        send_shutdown(conn);
}

/* ---- Hold (a protocol's delayed replies count as pending work) ---------------------------- */

void yd_conn_set_held(yd_conn *conn, size_t bytes)
{
    conn->held = bytes;
}

/* ---- Half-close ------------------------------------------------------------------------- */

int yd_conn_shutdown(yd_conn *conn)
{
    if (conn->phase > PHASE_OPEN)
        return -EPIPE;
    if (conn->transport->datagram)
        return -ENOTSUP;
    if (conn->write_side != WRITE_OPEN)
        return 0;
    conn->write_side = WRITE_SHUT_WANTED;
    if (conn->wq.len == 0 && conn->phase == PHASE_OPEN)
        send_shutdown(conn);
    return 0;
}

static void send_shutdown(yd_conn *conn)
{
    conn->write_side = WRITE_SHUT_SENT;
    int err = conn->transport->shutdown(conn);
    if (err < 0 && err != UV_ENOTCONN)
        yd_conn_fail(conn, err);
}

/* Exits: canceled (closing anyway); an error other than "not connected" fails it; a close
 * wanted meanwhile happens now. */
void yd__conn_shut(yd_conn *conn, int status)
{
    if (status == UV_ECANCELED || conn->phase == PHASE_CLOSED)
        return;
    if (status < 0 && status != UV_ENOTCONN) {
        yd_conn_fail(conn, status);
        return;
    }
    if (conn->phase == PHASE_CLOSING)
        close_handle(conn, 0);
}

/* ---- Close ------------------------------------------------------------------------------ */

void yd_conn_close(yd_conn *conn)
{
    if (conn->phase >= PHASE_CLOSING)
        return;
    set_phase(conn, PHASE_CLOSING);
    update_reading(conn);
    /* A datagram transport queues nothing to send (its queue may keep datagrams to resend). */
    if ((conn->wq.len == 0 && conn->inflight == 0) || conn->transport->datagram)
        finish_close(conn);
}

void yd_conn_abort(yd_conn *conn)
{
    if (conn->phase == PHASE_CLOSED)
        return;
    if (conn->status == 0)
        conn->status = -ECONNABORTED;
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
    close_handle(conn, 1);
}

void yd_conn_fail(yd_conn *conn, int status)
{
    if (conn->phase == PHASE_CLOSED)
        return;
    STAT_ADD(conn->stats, errors[yd__error_kind_of(status)], 1);
    conn->status = status;
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
    close_handle(conn, 1);
}

static const yd_protocol silent = {0};

void yd__conn_close_silently(yd_conn *conn)
{
    conn->protocol = &silent;
    conn->server = NULL;
    close_handle(conn, 0);
}

/* Exits: a connection a server accepted is told to on_reject and then closed silently (its
 * protocol never had on_connect); one the protocol made itself hears on_close(status). A TLS
 * alert already queued still goes out before the close. */
void yd__conn_reject(yd_conn *conn, int status, enum yd_error_kind kind)
{
    if (conn->phase == PHASE_CLOSED)
        return;
    STAT_ADD(conn->stats, errors[kind], 1);
    conn->status = status;
    if (conn->served) {
        /* Only while its server is open: the server's data (what on_reject may use) lives as
         * long as the server does. */
        if (conn->protocol->on_reject != NULL && conn->server != NULL)
            conn->protocol->on_reject(conn, status, kind);
        conn->protocol = &silent;
    }
    close_handle(conn, status == -ETIMEDOUT);
}

/* Closes a connection whose queued bytes are all sent (a FIN, never a reset). */
static void finish_close(yd_conn *conn)
{
    close_handle(conn, 0);
}

/* The one place a connection's handle is closed: a reset only for a connected TCP abort. */
static void close_handle(yd_conn *conn, int reset)
{
    if (conn->phase == PHASE_CLOSED)
        return;
    int was_open = conn->phase >= PHASE_OPEN;
    set_phase(conn, PHASE_CLOSED);
    conn->reading = 0;
    conn->transport->close(conn, reset && was_open);
}

/* ---- Free ------------------------------------------------------------------------------- */

void yd__conn_closed(yd_conn *conn)
{
    assert(conn->phase == PHASE_CLOSED);
    unlink_conn(conn);
    if (conn->started) {
        STAT_SUB(conn->stats, conns_active, 1);
        STAT_ADD(conn->stats, conns_closed, 1);
    }
    if (conn->server != NULL)
        yd__server_conn_closed(conn->server);
    if (conn->limit != NULL)
        atomic_fetch_sub(&conn->limit->open, 1);
    /* on_close ends what on_connect began: an accepted connection that never got that far
     * (closed mid-handshake by a drain) says nothing; one the protocol made always hears it. */
    if (conn->protocol->on_close != NULL && (conn->ready || !conn->served))
        conn->protocol->on_close(conn, conn->status);
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
    free(conn->connecting);
    free(conn->pend);
    free(conn);
}

/* ---- Idle timeouts and draining --------------------------------------------------------- */

int yd_conn_set_idle_timeout(yd_conn *conn, uint64_t ms)
{
    conn->idle_timeout_ms = ms;
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    if (ms > 0)
        yd__loop_want_sweep(conn->loop, yd__loop_sweep_period(ms));
    return 0;
}

/* Idle for its timeout: nothing moved either way and nothing is held. What is queued will
 * never be read then, so a stalled peer is reset; an idle one gets a clean FIN. */
static void sweep_idle(yd_conn *conn)
{
    STAT_ADD(conn->stats, errors[YD_ERR_IDLE_TIMEOUT], 1);
    conn->status = -ETIMEDOUT;
    if (conn->wq.len > 0)
        yd_conn_abort(conn);
    else
        yd_conn_close(conn);
}

/* Draining: a quiet connection (nothing to send, nothing read for a while although we were
 * reading) is closed after its partial line is echoed; at the deadline the rest is reset and
 * counted as drain_timeout. */
static void sweep_drain(yd_conn *conn, uint64_t now, uint64_t deadline)
{
    /* The loop's clock is the one its iteration began with: after a long iteration of reads it
     * lags, and last_active_ms with it. So quiet also means that nothing moved since the last
     * sweep (every 20 ms while draining). */
    int quiet = conn->wq.len == 0 && conn->held == 0 &&
                !(conn->read_stops & (RS_FULL | RS_STASHED)) && !conn->moved &&
                now - conn->last_active_ms >= DRAIN_QUIET_MS;
    conn->moved = 0;
    if (now >= deadline) {
        STAT_ADD(conn->stats, errors[YD_ERR_DRAIN_TIMEOUT], 1);
        yd_conn_abort(conn);
    } else if (quiet) {
        deliver_partial(conn); /* a received partial line is echoed, as at EOF */
        yd_conn_close(conn);
    }
}

/*
 * A closed connection whose transport still sends (TLS: close_notify and what waits before it)
 * gets at most until the drain deadline or its idle timeout; then it is reset.
 */
static void sweep_closing(yd_conn *conn, uint64_t now)
{
    const yd_loop *loop = conn->loop;
    if ((loop->draining && now >= loop->drain_deadline_ms) ||
        (conn->idle_timeout_ms > 0 && now - conn->last_active_ms >= conn->idle_timeout_ms))
        conn->transport->close(conn, 1);
}

void yd__conn_sweep(yd_loop *loop, uint64_t now)
{
    int left = 0;
    for (yd_conn *conn = loop->conns; conn != NULL; conn = conn->next) {
        left++; /* a closed one is still here until its handle has closed */
        if (conn->phase == PHASE_CLOSED) {
            sweep_closing(conn, now);
            continue;
        }
        if (!conn->ready && conn->ready_deadline_ms > 0 && now >= conn->ready_deadline_ms)
            yd__conn_reject(conn, -ETIMEDOUT, yd__conn_opening_kind(conn)); /* silent opener */
        else if (conn->idle_timeout_ms > 0 && conn->ready && conn->phase == PHASE_OPEN &&
                 conn->held == 0 && now - conn->last_active_ms >= conn->idle_timeout_ms)
            sweep_idle(conn);
        else if (loop->draining && conn->served &&
                 !(conn->server != NULL && conn->server->background))
            sweep_drain(conn, now, loop->drain_deadline_ms); /* not a health probe's request */
    }
    if (loop->draining && left == 0)
        uv_timer_stop(&loop->sweep);
}

/* ---- Accessors -------------------------------------------------------------------------- */

int yd_conn_peer_name(const yd_conn *conn, char *buf, size_t len)
{
    if (conn->peer.sa.sa_family != 0)
        return yd__sockaddr_format(&conn->peer.sa, buf, len);
    return conn->transport->peer_name(conn, buf, len);
}

void yd_conn_count_error(yd_conn *conn, enum yd_error_kind kind)
{
    if ((unsigned)kind < YD_ERR__COUNT)
        STAT_ADD(conn->stats, errors[kind], 1);
}

int yd_conn_proxy_source(const yd_conn *conn, char *buf, size_t len)
{
    if (conn->proxied)
        return yd__sockaddr_format(&conn->peer.sa, buf, len);
    if (len == 0)
        return -ENOBUFS;
    buf[0] = '\0';
    return 0;
}

int yd_conn_sock_name(const yd_conn *conn, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = -1;
    if (uv_fileno(&conn->h.handle, &fd) < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return snprintf(buf, len, "?");
    if (ss.ss_family == AF_UNIX)
        return snprintf(buf, len, "unix");
    return yd__sockaddr_format((struct sockaddr *)&ss, buf, len);
}

void *yd_conn_data(const yd_conn *conn)
{
    return conn->data;
}

void yd_conn_set_data(yd_conn *conn, void *data)
{
    conn->data = data;
}

yd_server *yd_conn_server(const yd_conn *conn)
{
    return conn->server;
}

yd_loop *yd_conn_loop(const yd_conn *conn)
{
    return conn->loop;
}
