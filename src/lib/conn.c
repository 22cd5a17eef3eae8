/*
 * Connections: reading cut into messages, a bounded write queue with back-pressure, half-close
 * and the close paths. Nothing here knows about echo.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* A caller that ignores back-pressure gets -ENOBUFS past this many queued bytes. */
#define WRITE_QUEUE_LIMIT (16u * 1024u * 1024u)
#define MAX_WRITE_IOV     16
/* Partial-message buffers larger than this are freed once empty: idle connections stay small. */
#define PEND_KEEP_BYTES 4096u
/* While draining, a connection silent for this long, with nothing left to send, is closed. */
#define DRAIN_QUIET_MS 100

static void update_reading(yd_conn *conn);
static void process(yd_conn *conn, const char *data, size_t len);
static void unstash(yd_conn *conn);
static void flush(yd_conn *conn);
static void finish_close(yd_conn *conn);
static void close_handle(yd_conn *conn, int reset);

yd_conn *yd__conn_new(yd_loop *loop, enum conn_kind kind, const yd_protocol *protocol, void *data)
{
    yd_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL)
        return NULL;
    conn->loop = loop;
    conn->kind = (uint8_t)kind;
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
    free(conn);
}

static int retry_connect(yd_conn *conn);
static void free_connect_state(yd_conn *conn);

static void on_closed(uv_handle_t *h)
{
    yd_conn *conn = h->data;
    if (retry_connect(conn))
        return;
    unlink_conn(conn);
    if (conn->flags & CF_CONNECTED) {
        STAT_SUB(conn->stats, conns_active, 1);
        STAT_ADD(conn->stats, conns_closed, 1);
    }
    if (conn->server != NULL)
        yd__server_conn_closed(conn->server);
    if (conn->limit != NULL)
        atomic_fetch_sub(&conn->limit->open, 1);
    if (conn->protocol->on_close != NULL)
        conn->protocol->on_close(conn, conn->status);
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
    free_connect_state(conn);
    free(conn->pend);
    free(conn);
}

/* The one place a connection's handle is closed. */
static void close_handle(yd_conn *conn, int reset)
{
    int switching = conn->flags & CF_SWITCHING;
    conn->flags |= CF_CLOSING;
    conn->flags &= ~CF_READING;
    if (switching)
        return; /* its handle is closing already: on_udp_switched finishes the close */
    if (reset && conn->kind == CONN_TCP && (conn->flags & CF_CONNECTED)) {
        /* An aborted TCP connection is reset, so the peer cannot mistake it for a clean end. */
        if (uv_tcp_close_reset(&conn->h.tcp, on_closed) == 0)
            return;
    }
    uv_close(&conn->h.handle, on_closed);
}

void yd__conn_start(yd_conn *conn)
{
    conn->flags |= CF_CONNECTED;
    STAT_ADD(conn->stats, conns_active, 1);
    if (conn->kind == CONN_TCP)
        uv_tcp_nodelay(&conn->h.tcp, 1); /* an echo is a reply: never wait to coalesce it */
    conn->last_active_ms = uv_now(&conn->loop->uv);
    if (conn->protocol->on_connect != NULL)
        conn->protocol->on_connect(conn);
    update_reading(conn);
}

void yd__conn_run_kicks(yd_loop *loop)
{
    yd_conn *next;
    for (yd_conn *conn = loop->conns; conn != NULL; conn = next) {
        next = conn->next;
        if (!(conn->flags & CF_NEED_CONNECT))
            continue;
        conn->flags &= ~CF_NEED_CONNECT;
        if (!(conn->flags & CF_CLOSING))
            yd__conn_start(conn);
        /* on_connect may have closed connections further down the list: start over. */
        yd__loop_kick(loop);
        return;
    }
}

void yd__conn_fail(yd_conn *conn, int status)
{
    if (conn->flags & CF_CLOSING)
        return;
    STAT_ADD(conn->stats, errors[yd__error_kind_of(status)], 1);
    conn->status = status;
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
    close_handle(conn, 1);
}

void yd_conn_abort(yd_conn *conn)
{
    if (conn->flags & CF_CLOSING)
        return;
    if (conn->status == 0)
        conn->status = -ECONNABORTED;
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
    close_handle(conn, 1);
}

void yd_conn_close(yd_conn *conn)
{
    if (conn->flags & (CF_CLOSING | CF_CLOSE_WANTED))
        return;
    conn->flags |= CF_CLOSE_WANTED;
    update_reading(conn);
    if (conn->wq.len == 0 && conn->inflight == 0)
        finish_close(conn);
}

/* ---- Reading ---------------------------------------------------------------------------- */

static int wants_reading(const yd_conn *conn)
{
    const uint32_t stop = CF_USER_PAUSED | CF_FULL | CF_EOF | CF_CLOSE_WANTED | CF_CLOSING;
    return (conn->flags & CF_CONNECTED) && !(conn->flags & stop);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_datagram(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags);

static void update_reading(yd_conn *conn)
{
    int want = wants_reading(conn);
    if (want == !!(conn->flags & CF_READING))
        return;
    int err;
    if (conn->kind == CONN_UDP)
        err = want ? uv_udp_recv_start(&conn->h.udp, yd__loop_alloc_cb, on_datagram)
                   : uv_udp_recv_stop(&conn->h.udp);
    else
        err = want ? uv_read_start(&conn->h.stream, yd__loop_alloc_cb, on_read)
                   : uv_read_stop(&conn->h.stream);
    if (err < 0) {
        yd__conn_fail(conn, err);
        return;
    }
    conn->flags ^= CF_READING;
}

void yd_conn_pause_reading(yd_conn *conn)
{
    conn->flags |= CF_USER_PAUSED;
    update_reading(conn);
}

void yd_conn_resume_reading(yd_conn *conn)
{
    if (!(conn->flags & CF_USER_PAUSED))
        return;
    conn->flags &= ~CF_USER_PAUSED;
    if (conn->flags & CF_STASHED)
        unstash(conn);
    update_reading(conn);
}

int yd_conn_set_read_mode(yd_conn *conn, yd_read_mode mode, size_t arg)
{
    if (mode == YD_READ_LINE && arg == 0)
        arg = 64u * 1024u;
    if ((mode == YD_READ_EXACTLY && arg == 0) || mode > YD_READ_EXACTLY)
        return -EINVAL;
    /* A message is echoed whole, so it must fit the write queue (WRITE_QUEUE_LIMIT). */
    if (arg > YD_MAX_LINE_LIMIT)
        return -EINVAL;
    conn->read_mode = (uint8_t)mode;
    conn->read_arg = arg;
    return 0;
}

static void deliver(yd_conn *conn, const char *data, size_t len)
{
    STAT_ADD(conn->stats, messages, 1);
    if (conn->protocol->on_data != NULL)
        conn->protocol->on_data(conn, data, len);
}

/* Can a message be handed to the protocol now? Not once it has closed or paused it. */
static int deliverable(const yd_conn *conn)
{
    return !(conn->flags & (CF_CLOSING | CF_CLOSE_WANTED | CF_USER_PAUSED));
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

/*
 * How long the first message in data is under the current read mode: > 0 a whole message,
 * 0 need more bytes, < 0 an error (-EMSGSIZE).
 */
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

/*
 * Completes the message started in pend with the start of data. Returns the bytes taken from
 * data, or a negative error; delivers the message when it is whole.
 */
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
            if (n == 0) {
                n = pend_append(conn, data, len) < 0 ? -ENOMEM : (long)len;
            } else if (n > 0) {
                deliver(conn, data, (size_t)n);
            }
        }
        if (n < 0) {
            yd__conn_fail(conn, (int)n);
            return;
        }
        data += n;
        len -= (size_t)n;
    }
    if (len > 0 && (conn->flags & CF_USER_PAUSED) && !(conn->flags & CF_CLOSE_WANTED)) {
        /* Paused with messages still in this read: hold them, unframed, until resumed. Nothing
         * is set aside at this point (a partial message only remains once len is 0). */
        if (pend_append(conn, data, len) < 0)
            yd__conn_fail(conn, -ENOMEM);
        else
            conn->flags |= CF_STASHED;
    }
}

/* Delivers what a pause held back, as if it had just been read. */
static void unstash(yd_conn *conn)
{
    char *data = conn->pend;
    size_t len = conn->pend_len;
    conn->pend = NULL;
    conn->pend_len = conn->pend_cap = 0;
    conn->flags &= ~CF_STASHED;
    process(conn, data, len);
    free(data);
}

/*
 * Hands a partial message set aside to the protocol as a whole one, as at EOF: a last line
 * without its '\n' is still a line (one of read_arg + 1 bytes is too long: no '\n' can come
 * to end it within the limit now). A short read-exactly message is dropped.
 */
static void deliver_partial(yd_conn *conn)
{
    if (conn->pend_len == 0 || conn->read_mode == YD_READ_EXACTLY || !deliverable(conn) ||
        (conn->flags & CF_STASHED))
        return;
    if (conn->read_mode == YD_READ_LINE && conn->pend_len > conn->read_arg) {
        yd__conn_fail(conn, -EMSGSIZE);
        return;
    }
    size_t n = conn->pend_len;
    conn->pend_len = 0;
    deliver(conn, conn->pend, n);
    pend_reset(conn);
}

static void handle_eof(yd_conn *conn)
{
    conn->flags |= CF_EOF;
    update_reading(conn);
    deliver_partial(conn);
    if (!deliverable(conn))
        return;
    if (conn->protocol->on_eof != NULL)
        conn->protocol->on_eof(conn);
    else
        yd_conn_close(conn);
}

/* Nothing read and unanswered, nothing held or queued: the exchange so far is complete. */
static int nothing_pending(const yd_conn *conn)
{
    return conn->wq.len == 0 && conn->inflight == 0 && conn->held == 0 && conn->pend_len == 0;
}

/* Exits: bytes go to the framer; EOF to handle_eof; a reset after a complete exchange (how
 * HAProxy ends a health check, and any client closing with SO_LINGER 0) closes without counting
 * an error; any other error fails the connection and is counted. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    yd_conn *conn = s->data;
    if (nread > 0) {
        STAT_ADD(conn->stats, bytes_in, (uint64_t)nread);
        conn->last_active_ms = uv_now(&conn->loop->uv);
        process(conn, buf->base, (size_t)nread);
    } else if (nread == UV_EOF) {
        handle_eof(conn);
    } else if (nread == UV_ECONNRESET && nothing_pending(conn)) {
        conn->status = (int)nread;
        close_handle(conn, 0);
    } else if (nread < 0) {
        yd__conn_fail(conn, (int)nread);
    }
}

static void udp_refused(yd_conn *conn);
static void udp_settle(yd_conn *conn);

/* Exits: a port unreachable answer moves to the next address or fails the connection; other
 * ICMP errors are counted and reading goes on; a datagram is delivered. */
static void on_datagram(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    yd_conn *conn = u->data;
    if (nread == UV_ECONNREFUSED) {
        udp_refused(conn);
        return;
    }
    if (nread < 0) {
        STAT_ADD(conn->stats, errors[YD_ERR_UDP_SEND], 1);
        return;
    }
    if (addr == NULL)
        return; /* nothing more to read this time */
    if (flags & UV_UDP_PARTIAL) {
        STAT_ADD(conn->stats, errors[YD_ERR_IO], 1);
        return;
    }
    udp_settle(conn); /* an answer: this address is the one */
    STAT_ADD(conn->stats, bytes_in, (uint64_t)nread);
    conn->last_active_ms = uv_now(&conn->loop->uv);
    if (deliverable(conn))
        deliver(conn, buf->base, (size_t)nread);
}

/* ---- Writing ---------------------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    yd_conn *conn = req->data;
    if (status == UV_ECANCELED)
        return;
    if (status < 0 && status != UV_ENOTCONN) {
        yd__conn_fail(conn, status);
        return;
    }
    if (conn->flags & CF_CLOSE_WANTED)
        close_handle(conn, 0);
}

static void send_shutdown(yd_conn *conn)
{
    conn->flags |= CF_SHUT_SENT;
    conn->req.shut.data = conn;
    int err = uv_shutdown(&conn->req.shut, &conn->h.stream, on_shutdown);
    if (err == UV_ENOTCONN)
        return;
    if (err < 0)
        yd__conn_fail(conn, err);
}

/* Closes a connection whose queued bytes are all sent (a FIN, never a reset). */
static void finish_close(yd_conn *conn)
{
    if (!(conn->flags & CF_CLOSING))
        close_handle(conn, 0);
}

static void on_write(uv_write_t *req, int status);

/* Hands the queued bytes to libuv unless a write is already under way. */
static void flush(yd_conn *conn)
{
    if (conn->inflight > 0 || conn->wq.len == 0 || (conn->flags & CF_CLOSING))
        return;
    uv_buf_t iov[MAX_WRITE_IOV];
    size_t bytes;
    unsigned n = yd__bufq_peek(&conn->wq, iov, MAX_WRITE_IOV, &bytes);
    int err = uv_write(&conn->wreq, &conn->h.stream, iov, n, on_write);
    if (err < 0) {
        yd__conn_fail(conn, err);
        return;
    }
    conn->inflight = bytes;
}

static void on_write(uv_write_t *req, int status)
{
    yd_conn *conn = req->data;
    size_t done = conn->inflight;
    conn->inflight = 0;
    if (status == UV_ECANCELED || (conn->flags & CF_CLOSING))
        return;
    if (status < 0) {
        yd__conn_fail(conn, status);
        return;
    }
    yd__bufq_consume(&conn->wq, &conn->loop->pool, done);
    STAT_ADD(conn->stats, bytes_out, done);
    /* The peer reading what we send is activity too: a slow reader is not idle. */
    conn->last_active_ms = uv_now(&conn->loop->uv);
    flush(conn);
    if ((conn->flags & CF_FULL) && conn->wq.len < YD_LOW_WATERMARK) {
        conn->flags &= ~CF_FULL;
        conn->last_active_ms = uv_now(&conn->loop->uv); /* quiet counts from here on */
        update_reading(conn);
        if (conn->protocol->on_drain != NULL)
            conn->protocol->on_drain(conn);
    }
    if (conn->wq.len > 0 || (conn->flags & CF_CLOSING))
        return;
    if (conn->flags & CF_CLOSE_WANTED)
        finish_close(conn);
    else if ((conn->flags & CF_SHUT_WANTED) && !(conn->flags & CF_SHUT_SENT))
        send_shutdown(conn);
}

static int udp_keep(yd_conn *conn, const char *data, size_t len);

static int write_datagram(yd_conn *conn, const char *data, size_t len)
{
    if (conn->connecting != NULL && udp_keep(conn, data, len) < 0)
        udp_settle(conn); /* too much to keep: stay with this address */
    if (conn->flags & CF_SWITCHING)
        return 0; /* kept: sent once the next address is connected */
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int r = uv_udp_try_send(&conn->h.udp, &b, 1, NULL);
    if (r == UV_ECONNREFUSED) {
        udp_refused(conn); /* an earlier datagram was refused; this one is kept, if at all */
        return conn->flags & CF_SWITCHING ? 0 : r;
    }
    if (r < 0) {
        STAT_ADD(conn->stats, errors[YD_ERR_UDP_SEND], 1);
        return r;
    }
    STAT_ADD(conn->stats, bytes_out, len);
    return 0;
}

int yd_conn_write(yd_conn *conn, const void *data, size_t len)
{
    if (conn->flags & (CF_CLOSING | CF_CLOSE_WANTED | CF_SHUT_WANTED))
        return -EPIPE;
    if (!(conn->flags & CF_CONNECTED))
        return -ENOTCONN;
    if (len > WRITE_QUEUE_LIMIT)
        return -ENOBUFS;
    const char *p = data;
    if (conn->kind == CONN_UDP)
        return write_datagram(conn, p, len);
    if (len == 0)
        return 0;
    if (conn->wq.len == 0) {
        /* The common case: the kernel takes it all, straight from the caller's buffer. */
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
        int r = uv_try_write(&conn->h.stream, &b, 1);
        if (r == UV_EAGAIN)
            r = 0;
        if (r < 0) {
            yd__conn_fail(conn, r);
            return r;
        }
        STAT_ADD(conn->stats, bytes_out, (uint64_t)r);
        if (r > 0)
            conn->last_active_ms = uv_now(&conn->loop->uv); /* sending is progress too */
        p += r;
        len -= (size_t)r;
        if (len == 0)
            return 0;
    }
    if (conn->wq.len + len > WRITE_QUEUE_LIMIT)
        return -ENOBUFS;
    int err = yd__bufq_push(&conn->wq, &conn->loop->pool, p, len);
    if (err < 0) {
        yd__conn_fail(conn, err);
        return err;
    }
    if (conn->wq.len > YD_HIGH_WATERMARK && !(conn->flags & CF_FULL)) {
        conn->flags |= CF_FULL; /* asyncio's drain(): stop reading until the peer catches up */
        update_reading(conn);
    }
    flush(conn);
    return 0;
}

size_t yd_conn_write_queued(const yd_conn *conn)
{
    return conn->wq.len;
}

int yd_conn_shutdown(yd_conn *conn)
{
    if (conn->flags & (CF_CLOSING | CF_CLOSE_WANTED))
        return -EPIPE;
    if (conn->kind == CONN_UDP)
        return -ENOTSUP;
    if (conn->flags & CF_SHUT_WANTED)
        return 0;
    conn->flags |= CF_SHUT_WANTED;
    if (conn->wq.len == 0 && (conn->flags & CF_CONNECTED))
        send_shutdown(conn);
    return 0;
}

/* ---- Timeouts and draining -------------------------------------------------------------- */

int yd_conn_set_idle_timeout(yd_conn *conn, uint64_t ms)
{
    conn->idle_timeout_ms = ms;
    conn->last_active_ms = uv_now(&conn->loop->uv);
    if (ms > 0)
        yd__loop_want_sweep(conn->loop, yd__loop_sweep_period(ms));
    return 0;
}

/*
 * Exits per connection: idle for its timeout (nothing moved either way and nothing held) is
 * closed; while draining, a quiet one is closed after its partial line is echoed, and whatever
 * is still open at the deadline is reset and counted as drain_timeout.
 */
void yd__conn_sweep(yd_loop *loop, uint64_t now)
{
    int left = 0;
    for (yd_conn *conn = loop->conns; conn != NULL; conn = conn->next) {
        if (conn->flags & CF_CLOSING)
            continue;
        left++;
        if (conn->idle_timeout_ms > 0 && !(conn->flags & CF_CLOSE_WANTED) && conn->held == 0 &&
            now - conn->last_active_ms >= conn->idle_timeout_ms) {
            STAT_ADD(conn->stats, errors[YD_ERR_IDLE_TIMEOUT], 1);
            conn->status = -ETIMEDOUT;
            /* Nothing moved either way for that long: what is queued will never be read, so a
             * stalled peer is reset rather than waited for; an idle one gets a clean FIN. */
            if (conn->wq.len > 0)
                yd_conn_abort(conn);
            else
                yd_conn_close(conn);
            continue;
        }
        if (!loop->draining || !(conn->flags & CF_ACCEPTED))
            continue;
        /* Quiet: nothing to send, and nothing read for a while although we were reading (a
         * connection paused by back-pressure still has bytes waiting in the kernel). */
        int quiet = conn->wq.len == 0 && conn->held == 0 &&
                    !(conn->flags & (CF_FULL | CF_STASHED)) &&
                    now - conn->last_active_ms >= DRAIN_QUIET_MS;
        if (now >= loop->drain_deadline_ms) {
            STAT_ADD(conn->stats, errors[YD_ERR_DRAIN_TIMEOUT], 1);
            yd_conn_abort(conn);
        } else if (quiet) {
            deliver_partial(conn); /* a received partial line is echoed, as at EOF */
            yd_conn_close(conn);
        }
    }
    if (loop->draining && left == 0)
        uv_timer_stop(&loop->sweep);
}

/* ---- Opening ------------------------------------------------------------------------------ */

static const yd_protocol silent = {0};

struct connect_state {
    struct resolved r;
    int next;      /* the address being tried */
    unsigned kept; /* datagram clients: datagrams kept to send again at the next address */
};

static void init_handle_data(yd_conn *conn)
{
    conn->h.handle.data = conn;
    conn->wreq.data = conn;
}

/* Closes a connection the protocol never heard of: no callback runs. */
static void close_silently(yd_conn *conn)
{
    conn->protocol = &silent;
    close_handle(conn, 0);
}

static void on_connected(uv_connect_t *req, int status);

static void connect_next(yd_conn *conn)
{
    conn->req.connect.data = conn;
    struct connect_state *cs = conn->connecting;
    int err = uv_tcp_connect(&conn->req.connect, &conn->h.tcp,
                             (struct sockaddr *)&cs->r.addr[cs->next], on_connected);
    if (err < 0) {
        conn->status = err;
        close_handle(conn, 0);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    yd_conn *conn = req->data;
    if (status == UV_ECANCELED || (conn->flags & CF_CLOSING))
        return;
    if (status < 0) {
        conn->status = status;
        close_handle(conn, 0); /* on_closed tries the next address, if any */
        return;
    }
    free_connect_state(conn);
    yd__conn_start(conn);
}

/*
 * A name may resolve to several addresses (localhost: ::1 and 127.0.0.1) and the server may
 * listen on only one: after a failed connect, a fresh handle tries the next one.
 */
static int retry_connect(yd_conn *conn)
{
    struct connect_state *cs = conn->connecting;
    if (cs == NULL || conn->kind != CONN_TCP || cs->next + 1 >= cs->r.count ||
        (conn->flags & CF_CONNECTED) || conn->status >= 0 || conn->status == -ECONNABORTED ||
        (conn->flags & CF_CLOSE_WANTED))
        return 0;
    cs->next++;
    conn->flags &= ~CF_CLOSING;
    conn->status = 0;
    uv_tcp_init(&conn->loop->uv, &conn->h.tcp);
    init_handle_data(conn);
    connect_next(conn);
    return 1;
}

static void free_connect_state(yd_conn *conn)
{
    free(conn->connecting);
    conn->connecting = NULL;
}

static int connect_tcp(yd_loop *loop, const yd_addr *addr, yd_conn *conn)
{
    struct connect_state *cs = calloc(1, sizeof *cs);
    if (cs == NULL)
        return -ENOMEM;
    int err = yd__addr_resolve(addr, SOCK_STREAM, 0, &cs->r);
    if (err < 0) {
        free(cs);
        return err;
    }
    conn->connecting = cs;
    uv_tcp_init(&loop->uv, &conn->h.tcp);
    init_handle_data(conn);
    connect_next(conn);
    return 0;
}

/*
 * Datagram clients. A connected UDP socket cannot fall back as a TCP connect does: it learns
 * that nobody listens only when a datagram is refused (ICMP port unreachable). So while a name
 * has addresses left to try and nothing has been answered yet, the datagrams sent are kept
 * (up to UDP_KEEP_BYTES, in the unused write queue, each behind its length); a refusal moves to
 * the next address and sends them again there. The first answer, or too much to keep, settles
 * the address. A refusal with no address left closes the connection with -ECONNREFUSED.
 */
#define UDP_KEEP_BYTES (64u * 1024u)

static int udp_keep(yd_conn *conn, const char *data, size_t len)
{
    uint32_t n = (uint32_t)len;
    if (conn->wq.len + sizeof n + len > UDP_KEEP_BYTES)
        return -ENOBUFS;
    if (yd__bufq_push(&conn->wq, &conn->loop->pool, (const char *)&n, sizeof n) < 0 ||
        yd__bufq_push(&conn->wq, &conn->loop->pool, data, len) < 0)
        return -ENOMEM;
    conn->connecting->kept++;
    return 0;
}

static void udp_settle(yd_conn *conn)
{
    if (conn->connecting == NULL)
        return;
    free_connect_state(conn);
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
}

/* The kept datagrams, sent again (and kept again) from the loop's read buffer. */
static void udp_resend(yd_conn *conn)
{
    unsigned count = conn->connecting->kept;
    conn->connecting->kept = 0;
    for (unsigned i = 0; i < count && conn->connecting != NULL; i++) {
        uint32_t n;
        yd__bufq_copyout(&conn->wq, &n, sizeof n);
        yd__bufq_consume(&conn->wq, &conn->loop->pool, sizeof n);
        yd__bufq_copyout(&conn->wq, conn->loop->read_buf, n);
        yd__bufq_consume(&conn->wq, &conn->loop->pool, n);
        if (write_datagram(conn, conn->loop->read_buf, n) < 0 || (conn->flags & CF_CLOSING))
            return;
    }
}

static int udp_connect_next(yd_conn *conn)
{
    struct connect_state *cs = conn->connecting;
    uv_udp_init(&conn->loop->uv, &conn->h.udp);
    init_handle_data(conn);
    return uv_udp_connect(&conn->h.udp, (struct sockaddr *)&cs->r.addr[cs->next]);
}

static void on_udp_switched(uv_handle_t *h)
{
    yd_conn *conn = h->data;
    conn->flags &= ~(CF_SWITCHING | CF_READING);
    if (conn->flags & CF_CLOSING) { /* closed while switching */
        on_closed(h);
        return;
    }
    int err = udp_connect_next(conn);
    if (err < 0) {
        conn->status = err;
        close_handle(conn, 0);
        return;
    }
    update_reading(conn);
    udp_resend(conn);
}

static void udp_refused(yd_conn *conn)
{
    struct connect_state *cs = conn->connecting;
    if (conn->flags & (CF_SWITCHING | CF_CLOSING))
        return;
    if (cs == NULL || cs->next + 1 >= cs->r.count) {
        yd__conn_fail(conn, -ECONNREFUSED);
        return;
    }
    cs->next++;
    conn->flags |= CF_SWITCHING;
    uv_close(&conn->h.handle, on_udp_switched);
}

static int connect_udp(yd_loop *loop, const yd_addr *addr, yd_conn *conn)
{
    struct connect_state *cs = calloc(1, sizeof *cs);
    if (cs == NULL)
        return -ENOMEM;
    int err = yd__addr_resolve(addr, SOCK_DGRAM, 0, &cs->r);
    if (err < 0) {
        free(cs);
        return err;
    }
    conn->connecting = cs;
    err = udp_connect_next(conn);
    if (err < 0) {
        free_connect_state(conn);
        close_silently(conn);
        return err;
    }
    if (cs->r.count < 2)
        free_connect_state(conn);   /* one address: nothing to fall back to, nothing to keep */
    conn->flags |= CF_NEED_CONNECT; /* on_connect must not run before *out is set */
    yd__loop_kick(loop);
    return 0;
}

int yd_conn_connect(yd_loop *loop, const char *text, const yd_protocol *protocol, void *data,
                    yd_conn **out)
{
    yd_addr addr;
    if (protocol == NULL || yd_addr_parse(text, &addr) < 0)
        return -EINVAL;
    enum conn_kind kind = addr.transport == YD_UNIX  ? CONN_PIPE
                          : addr.transport == YD_UDP ? CONN_UDP
                                                     : CONN_TCP;
    yd_conn *conn = yd__conn_new(loop, kind, protocol, data);
    if (conn == NULL)
        return -ENOMEM;
    int err = 0;
    if (kind == CONN_PIPE) {
        uv_pipe_init(&loop->uv, &conn->h.pipe, 0);
        init_handle_data(conn);
        conn->req.connect.data = conn;
        uv_pipe_connect(&conn->req.connect, &conn->h.pipe, addr.path, on_connected);
    } else if (kind == CONN_UDP) {
        err = connect_udp(loop, &addr, conn);
    } else {
        err = connect_tcp(loop, &addr, conn);
    }
    if (err < 0) {
        if (!(conn->flags & CF_CLOSING))
            yd__conn_discard(conn);
        return err;
    }
    *out = conn;
    return 0;
}

int yd_conn_open_fd(yd_loop *loop, int fd, const yd_protocol *protocol, void *data, yd_conn **out)
{
    uv_handle_type type = uv_guess_handle(fd);
    enum conn_kind kind;
    switch (type) {
    case UV_TCP:
        kind = CONN_TCP;
        break;
    case UV_NAMED_PIPE:
        kind = CONN_PIPE;
        break;
    case UV_TTY:
        kind = CONN_TTY;
        break;
    case UV_UDP:
        kind = CONN_UDP;
        break;
    default:
        return -ENOTSUP;
    }
    yd_conn *conn = yd__conn_new(loop, kind, protocol, data);
    if (conn == NULL)
        return -ENOMEM;
    int err;
    if (kind == CONN_TCP) {
        uv_tcp_init(&loop->uv, &conn->h.tcp);
        err = uv_tcp_open(&conn->h.tcp, fd);
    } else if (kind == CONN_PIPE) {
        uv_pipe_init(&loop->uv, &conn->h.pipe, 0);
        err = uv_pipe_open(&conn->h.pipe, fd);
    } else if (kind == CONN_TTY) {
        err = uv_tty_init(&loop->uv, &conn->h.tty, fd, 0);
        if (err < 0) {
            yd__conn_discard(conn);
            return err;
        }
    } else {
        uv_udp_init(&loop->uv, &conn->h.udp);
        err = uv_udp_open(&conn->h.udp, fd);
    }
    init_handle_data(conn);
    if (err < 0) {
        close_silently(conn);
        return err;
    }
    conn->flags |= CF_NEED_CONNECT;
    yd__loop_kick(loop);
    *out = conn;
    return 0;
}

/* ---- Accessors ---------------------------------------------------------------------------- */

int yd_conn_peer_name(const yd_conn *conn, char *buf, size_t len)
{
    if (conn->peer.sa.sa_family != 0)
        return yd__sockaddr_format(&conn->peer.sa, buf, len);
    struct sockaddr_storage ss;
    int n = sizeof ss;
    int err;
    if (conn->kind == CONN_TCP)
        err = uv_tcp_getpeername(&conn->h.tcp, (struct sockaddr *)&ss, &n);
    else if (conn->kind == CONN_UDP)
        err = uv_udp_getpeername(&conn->h.udp, (struct sockaddr *)&ss, &n);
    else
        return snprintf(buf, len, "%s", conn->kind == CONN_PIPE ? "unix" : "tty");
    if (err < 0)
        return snprintf(buf, len, "?");
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

/* ---- Accepting (for server.c) ------------------------------------------------------------- */

yd_conn *yd__conn_accept(yd_server *srv, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    enum conn_kind kind = srv->transport == YD_UNIX ? CONN_PIPE : CONN_TCP;
    yd_conn *conn = yd__conn_new(srv->loop, kind, srv->options.protocol, srv->options.data);
    int err = conn == NULL ? -ENOMEM : 0;
    if (err == 0 && kind == CONN_PIPE) {
        uv_pipe_init(&srv->loop->uv, &conn->h.pipe, 0);
        err = uv_pipe_open(&conn->h.pipe, fd);
    } else if (err == 0) {
        uv_tcp_init(&srv->loop->uv, &conn->h.tcp);
        err = uv_tcp_open(&conn->h.tcp, fd);
    }
    if (err < 0) {
        STAT_ADD(srv->options.stats, errors[YD_ERR_ACCEPT], 1);
        if (conn != NULL) {
            init_handle_data(conn);
            close_silently(conn); /* closes fd with the handle */
        } else {
            close(fd);
        }
        return NULL;
    }
    init_handle_data(conn);
    if (peer_len <= sizeof conn->peer)
        memcpy(&conn->peer, peer, peer_len);
    conn->server = srv;
    conn->stats = srv->options.stats;
    conn->idle_timeout_ms = srv->options.idle_timeout_ms;
    conn->flags |= CF_ACCEPTED;
    return conn;
}

void yd__conn_serve(yd_conn *conn, yd_stats *stats)
{
    conn->stats = stats;
    conn->flags |= CF_ACCEPTED;
    STAT_ADD(stats, conns_accepted, 1);
}

void yd__conn_refuse(yd_conn *conn)
{
    conn->server = NULL;
    close_silently(conn);
}
