/*
 * The datagram transport: a connected UDP socket as a connection (yd_conn_connect("udp://...")),
 * each write one datagram, each datagram one on_data.
 *
 * A connected UDP socket cannot fall back as a TCP connect does: it learns that nobody listens
 * only when a datagram is refused (ICMP port unreachable). So while a name has addresses left to
 * try and nothing has been answered yet, the datagrams sent are kept (up to UDP_KEEP_BYTES, in
 * the otherwise unused write queue, each behind its length); a refusal moves to the next address
 * on a fresh socket (the family may change) and sends them again there. The first answer, or too
 * much to keep, settles the address. A refusal with no address left fails the connection with
 * -ECONNREFUSED.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#define UDP_KEEP_BYTES (64u * 1024u)

static void on_closed(uv_handle_t *h)
{
    yd__conn_closed(h->data);
}

/* Stops keeping: this address is the one. */
static void settle(yd_conn *conn)
{
    if (conn->connecting == NULL)
        return;
    free(conn->connecting);
    conn->connecting = NULL;
    yd__bufq_clear(&conn->wq, &conn->loop->pool);
}

static int keep(yd_conn *conn, const char *data, size_t len)
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

static int connect_current(yd_conn *conn)
{
    struct yd__connecting *c = conn->connecting;
    uv_udp_init(&conn->loop->uv, &conn->h.udp);
    conn->h.handle.data = conn;
    int err = yd__connecting_bind(conn);
    if (err < 0)
        return err;
    return uv_udp_connect(&conn->h.udp, (struct sockaddr *)&c->addr[c->next].sa);
}

static int udp_try_write(yd_conn *conn, const char *data, size_t len);
static int udp_read_start(yd_conn *conn);

/* The kept datagrams, sent again (and kept again) from the loop's read buffer. */
static void resend(yd_conn *conn)
{
    unsigned count = conn->connecting->kept;
    conn->connecting->kept = 0;
    for (unsigned i = 0; i < count && conn->connecting != NULL; i++) {
        uint32_t n;
        yd__bufq_copyout(&conn->wq, &n, sizeof n);
        yd__bufq_consume(&conn->wq, &conn->loop->pool, sizeof n);
        yd__bufq_copyout(&conn->wq, conn->loop->read_buf, n);
        yd__bufq_consume(&conn->wq, &conn->loop->pool, n);
        if (udp_try_write(conn, conn->loop->read_buf, n) < 0 || conn->phase == PHASE_CLOSED)
            return;
    }
}

/* Exits: closed meanwhile (finish the close); the next address cannot be used (fail); else
 * read and send again what was kept. */
static void on_switched(uv_handle_t *h)
{
    yd_conn *conn = h->data;
    if (conn->phase == PHASE_CLOSED) {
        yd__conn_closed(conn);
        return;
    }
    int err = connect_current(conn);
    if (err == 0 && conn->reading)
        err = udp_read_start(conn);
    if (err < 0) {
        yd_conn_fail(conn, err);
        return;
    }
    resend(conn);
}

static void refused(yd_conn *conn)
{
    struct yd__connecting *c = conn->connecting;
    if (uv_is_closing(&conn->h.handle) || conn->phase == PHASE_CLOSED)
        return;
    if (c == NULL || c->next + 1 >= c->count) {
        yd__conn_read_error(conn, -ECONNREFUSED);
        return;
    }
    c->next++;
    uv_close(&conn->h.handle, on_switched);
}

/* Exits: refused (next address or fail); other ICMP errors are counted and reading goes on; a
 * datagram settles the address and is delivered. */
static void on_datagram(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    yd_conn *conn = u->data;
    if (nread == UV_ECONNREFUSED) {
        refused(conn);
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
    settle(conn);
    yd__conn_datagram(conn, buf->base, (size_t)nread);
}

static int udp_read_start(yd_conn *conn)
{
    if (uv_is_closing(&conn->h.handle))
        return 0; /* switching: on_switched starts reading on the new socket */
    return uv_udp_recv_start(&conn->h.udp, yd__loop_alloc_cb, on_datagram);
}

static int udp_read_stop(yd_conn *conn)
{
    if (uv_is_closing(&conn->h.handle))
        return 0;
    return uv_udp_recv_stop(&conn->h.udp);
}

/* While the address is unsettled, a datagram sent (or to be sent after a switch) is kept. */
static void keep_if_unsettled(yd_conn *conn, const char *data, size_t len)
{
    if (conn->connecting != NULL && keep(conn, data, len) < 0)
        settle(conn); /* too much to keep: stay with this address */
}

static int switching(const yd_conn *conn)
{
    return uv_is_closing(&conn->h.handle) && conn->phase != PHASE_CLOSED;
}

/* The whole datagram or an error: a datagram is never queued, only kept to resend. */
static int udp_try_write(yd_conn *conn, const char *data, size_t len)
{
    if (!switching(conn)) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_udp_try_send(&conn->h.udp, &b, 1, NULL);
        if (r != UV_ECONNREFUSED) {
            if (r >= 0)
                keep_if_unsettled(conn, data, len);
            return r; /* a datagram the kernel refused (-EMSGSIZE) is not kept */
        }
        refused(conn); /* an earlier datagram was refused: this one goes to the next address */
        if (!switching(conn))
            return r;
    }
    keep_if_unsettled(conn, data, len); /* sent once the next address is connected */
    return (int)len;
}

static void udp_close(yd_conn *conn, int reset)
{
    (void)reset;
    if (uv_is_closing(&conn->h.handle))
        return; /* switching address: on_switched finishes the close */
    uv_close(&conn->h.handle, on_closed);
}

static int udp_open(yd_conn *conn, int fd)
{
    uv_udp_init(&conn->loop->uv, &conn->h.udp);
    conn->h.handle.data = conn;
    return uv_udp_open(&conn->h.udp, fd);
}

static int udp_peer_name(const yd_conn *conn, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    if (uv_udp_getpeername(&conn->h.udp, (struct sockaddr *)&ss, &n) < 0)
        return snprintf(buf, len, "?");
    return yd__sockaddr_format((struct sockaddr *)&ss, buf, len);
}

const struct yd__transport yd__udp_transport = {
    .name = "udp",
    .datagram = 1,
    .handle_size = sizeof(uv_udp_t),
    .open = udp_open,
    .read_start = udp_read_start,
    .read_stop = udp_read_stop,
    .try_write = udp_try_write,
    .close = udp_close,
    .peer_name = udp_peer_name,
};

int yd__dgram_connect(yd_conn *conn, const yd_addr *addr, const struct sockaddr_storage *source,
                      socklen_t source_len)
{
    int err = yd__connecting_resolve(conn, addr, SOCK_DGRAM, source, source_len);
    if (err < 0)
        return err;
    err = connect_current(conn);
    if (err < 0)
        return err; /* the handle is initialised: the caller closes it */
    if (conn->connecting->count < 2)
        settle(conn); /* one address: nothing to fall back to, nothing to keep */
    yd__conn_start_soon(conn);
    return 0;
}
