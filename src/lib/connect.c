/*
 * Opening a connection: yd_conn_connect to an address (TCP trying each address a name resolves
 * to, a Unix socket, or a connected datagram socket in dgram.c), and yd_conn_open_fd around a
 * descriptor someone else opened. Once connected, everything is conn.c's.
 */
#include <assert.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

const struct yd__transport *yd__transport_of_fd(int fd)
{
    switch (uv_guess_handle(fd)) {
    case UV_TCP:
        return &yd__tcp_transport;
    case UV_NAMED_PIPE:
        return &yd__unix_transport;
    case UV_TTY:
        return &yd__tty_transport;
    case UV_UDP:
        return &yd__udp_transport;
    default:
        return NULL; /* a regular file cannot be polled */
    }
}

int yd__conn_open(yd_conn *conn, int fd)
{
    int err = conn->transport->open(conn, fd);
    if (err == 0)
        return 0;
    /* fd stays the caller's. The handle may or may not exist, depending on where it failed. */
    if (conn->h.handle.type == UV_UNKNOWN_HANDLE)
        yd__conn_discard(conn);
    else
        yd__conn_close_silently(conn);
    return err;
}

/* Exits: an unpollable descriptor (-ENOTSUP), no memory, a failed open or TLS setup (fd stays
 * the caller's); else on_connect from the loop's next kick. */
static int open_fd(yd_loop *loop, int fd, yd_tls *tls, const char *server_name,
                   const yd_protocol *protocol, void *data, yd_conn **out)
{
    if (loop->freeing)
        return -ECANCELED;
    const struct yd__transport *t = yd__transport_of_fd(fd);
    if (t == NULL || protocol == NULL)
        return t == NULL ? -ENOTSUP : -EINVAL;
    if (tls != NULL && t != &yd__tcp_transport && t != &yd__unix_transport)
        return -EINVAL; /* TLS runs over a stream socket */
    if (tls != NULL)
        t = t == &yd__tcp_transport ? &yd__tls_tcp_transport : &yd__tls_unix_transport;
    yd_conn *conn = yd__conn_new(loop, t, protocol, data);
    if (conn == NULL)
        return -ENOMEM;
    int err = tls != NULL ? yd__tls_attach(conn, tls, server_name) : 0;
    if (err < 0) {
        yd__conn_discard(conn);
        return err;
    }
    err = yd__conn_open(conn, fd);
    if (err < 0)
        return err;
    yd__conn_start_soon(conn); /* on_connect must not run before *out is set */
    *out = conn;
    return 0;
}

int yd_conn_open_fd(yd_loop *loop, int fd, const yd_protocol *protocol, void *data, yd_conn **out)
{
    return open_fd(loop, fd, NULL, NULL, protocol, data, out);
}

int yd_conn_open_fd_tls(yd_loop *loop, int fd, yd_tls *tls, const char *server_name,
                        const yd_protocol *protocol, void *data, yd_conn **out)
{
    if (tls == NULL)
        return -EINVAL;
    return open_fd(loop, fd, tls, server_name, protocol, data, out);
}

/* ---- TCP: each address of a name in turn ---------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status);

static int connect_current(yd_conn *conn)
{
    struct yd__connecting *c = conn->connecting;
    uv_tcp_init(&conn->loop->uv, &conn->h.tcp);
    conn->h.handle.data = conn;
    conn->req.connect.data = conn;
    int err = yd__connecting_bind(conn);
    if (err == 0)
        err = uv_tcp_connect(&conn->req.connect, &conn->h.tcp,
                             (struct sockaddr *)&c->addr[c->next].sa, on_connected);
    if (err < 0 || !conn->transport->read_at_connect)
        return err;
    /* Reading armed with the connect: libuv registers the socket once for both (arming reads
     * after the connect costs an epoll_ctl that fails and another one, per connection: bench
     * --reconnect-every 1 felt it). Nothing can be read before on_connected, which starts the
     * connection before libuv looks at the socket again, and update_reading stops it then if
     * the protocol does not want to read. */
    err = conn->transport->read_start(conn);
    conn->reading = err == 0;
    return err;
}

/* Exits: closed by the protocol meanwhile (finish the close); another address to try; or the
 * last error goes to on_close. */
static void on_attempt_closed(uv_handle_t *h)
{
    yd_conn *conn = h->data;
    struct yd__connecting *c = conn->connecting;
    if (conn->phase == PHASE_OPENING && c->next + 1 < c->count) {
        c->next++;
        int err = connect_current(conn);
        if (err == 0) {
            conn->status = 0;
            return;
        }
        conn->status = err;
        yd_conn_abort(conn); /* closes the fresh handle; ends in yd__conn_closed */
        return;
    }
    /* No address left, or the protocol closed it meanwhile: the handle is closed already, so
     * the connection ends here, with the last error for on_close. */
    conn->phase = PHASE_CLOSED;
    yd__conn_closed(conn);
}

/* Exits: canceled or closed (nothing to do); failed (close this attempt: the next address, or
 * on_close with the error); connected (on_connect). */
static void on_connected(uv_connect_t *req, int status)
{
    yd_conn *conn = req->data;
    if (status == UV_ECANCELED || conn->phase != PHASE_OPENING)
        return;
    if (status < 0) {
        conn->status = status;
        uv_close(&conn->h.handle, on_attempt_closed);
        return;
    }
    free(conn->connecting);
    conn->connecting = NULL;
    yd__conn_start(conn);
}

/* With a source, only the addresses of its family can be reached from it. */
static int keep_family(struct resolved *r, int family)
{
    int kept = 0;
    for (int i = 0; i < r->count; i++) {
        if (r->addr[i].ss_family != family)
            continue;
        r->len[kept] = r->len[i];
        r->addr[kept++] = r->addr[i];
    }
    r->count = kept;
    return kept > 0 ? 0 : -EAFNOSUPPORT;
}

int yd__connecting_resolve(yd_conn *conn, const yd_addr *addr, int socktype,
                           const struct sockaddr_storage *source, socklen_t source_len)
{
    struct resolved r;
    int err = yd__addr_resolve(addr, socktype, 0, &r);
    if (err == 0 && source_len > 0)
        err = keep_family(&r, source->ss_family);
    if (err < 0)
        return err;
    assert(r.count > 0); /* a name resolves to an address at least, or fails */
    struct yd__connecting *c =
        malloc(offsetof(struct yd__connecting, addr) + (size_t)r.count * sizeof c->addr[0]);
    if (c == NULL)
        return -ENOMEM;
    c->next = 0;
    c->count = r.count;
    c->kept = 0;
    c->source_len = source_len;
    if (source_len > 0)
        c->source = *source;
    for (int i = 0; i < r.count; i++) {
        c->addr[i].len = r.len[i];
        c->addr[i].sa = r.addr[i];
    }
    conn->connecting = c;
    return 0;
}

/* Exits: no source (nothing to do); a socket that cannot be made or bound (its error); bound and
 * handed to the attempt's handle. Binding to port 0 leaves the port to connect (Linux's
 * IP_BIND_ADDRESS_NO_PORT), so that one source address is not limited to the ~28k ephemeral
 * ports bind alone would reserve. */
int yd__connecting_bind(yd_conn *conn)
{
    struct yd__connecting *c = conn->connecting;
    if (c->source_len == 0)
        return 0;
    int dgram = conn->h.handle.type == UV_UDP;
    int fd = socket(c->source.ss_family, (dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    if (!dgram && yd__sockaddr_port((struct sockaddr *)&c->source) == 0)
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
    int err = bind(fd, (struct sockaddr *)&c->source, c->source_len) < 0 ? -errno : 0;
    if (err == 0)
        err = dgram ? uv_udp_open(&conn->h.udp, fd) : uv_tcp_open(&conn->h.tcp, fd);
    if (err < 0)
        close(fd);
    return err;
}

static int connect_tcp(yd_conn *conn, const yd_addr *addr, const struct sockaddr_storage *source,
                       socklen_t source_len)
{
    int err = yd__connecting_resolve(conn, addr, SOCK_STREAM, source, source_len);
    return err < 0 ? err : connect_current(conn);
}

static int connect_unix(yd_conn *conn, const yd_addr *addr)
{
    uv_pipe_init(&conn->loop->uv, &conn->h.pipe, 0);
    conn->h.handle.data = conn;
    conn->req.connect.data = conn;
    /* A failure comes back through on_connected; with no other address, it reaches on_close. */
    conn->connecting = calloc(1, sizeof *conn->connecting);
    if (conn->connecting == NULL)
        return -ENOMEM;
    uv_pipe_connect(&conn->req.connect, &conn->h.pipe, addr->path, on_connected);
    return 0;
}

/* The one choice of transport for an address: the kind of socket, and TLS over it or not. */
static const struct yd__transport *transport_for(const yd_addr *addr, int tls)
{
    switch (addr->transport) {
    case YD_UDP:
        return &yd__udp_transport;
    case YD_UNIX:
        return tls ? &yd__tls_unix_transport : &yd__unix_transport;
    default:
        return tls ? &yd__tls_tcp_transport : &yd__tcp_transport;
    }
}

/* A source to bind to first: none (NULL), or a numeric address (yd__source_parse). */
struct source {
    struct sockaddr_storage addr;
    socklen_t len;
};

static int connect_to(yd_loop *loop, const yd_addr *addr, const struct source *src, yd_tls *tls,
                      const yd_protocol *protocol, void *data, yd_conn **out)
{
    if (loop->freeing)
        return -ECANCELED;
    yd_conn *conn = yd__conn_new(loop, transport_for(addr, tls != NULL), protocol, data);
    if (conn == NULL)
        return -ENOMEM;
    int err = tls != NULL ? yd__tls_attach(conn, tls, addr->host) : 0;
    if (err == 0)
        err = addr->transport == YD_UNIX  ? connect_unix(conn, addr)
              : addr->transport == YD_UDP ? yd__dgram_connect(conn, addr, &src->addr, src->len)
                                          : connect_tcp(conn, addr, &src->addr, src->len);
    if (err < 0) {
        if (conn->h.handle.type == UV_UNKNOWN_HANDLE)
            yd__conn_discard(conn);
        else
            yd__conn_close_silently(conn);
        return err;
    }
    *out = conn;
    return 0;
}

int yd_conn_connect(yd_loop *loop, const char *text, const yd_protocol *protocol, void *data,
                    yd_conn **out)
{
    return yd_conn_connect_from(loop, text, NULL, NULL, protocol, data, out);
}

int yd_conn_connect_tls(yd_loop *loop, const char *text, yd_tls *tls, const yd_protocol *protocol,
                        void *data, yd_conn **out)
{
    if (tls == NULL)
        return -EINVAL;
    return yd_conn_connect_from(loop, text, NULL, tls, protocol, data, out);
}

/* Exits: TLS over UDP, a "tls://" address without a configuration, or a bad source or one for a
 * Unix socket (-EINVAL); else connect_to's. */
int yd_conn_connect_addr(yd_loop *loop, const yd_addr *addr, const char *source, yd_tls *tls,
                         const yd_protocol *protocol, void *data, yd_conn **out)
{
    struct source src = {.len = 0};
    if (addr == NULL || protocol == NULL || out == NULL)
        return -EINVAL;
    /* A yd_addr made by hand: its strings must end inside it (yd_addr_parse's always do). */
    if (memchr(addr->host, '\0', sizeof addr->host) == NULL ||
        memchr(addr->path, '\0', sizeof addr->path) == NULL)
        return -EINVAL;
    if ((tls != NULL && addr->transport == YD_UDP) || (tls == NULL && addr->tls))
        return -EINVAL; /* TLS runs over a stream, and needs a configuration */
    if (source != NULL &&
        (addr->transport == YD_UNIX || yd__source_parse(source, &src.addr, &src.len) < 0))
        return -EINVAL;
    return connect_to(loop, addr, &src, tls, protocol, data, out);
}

int yd_conn_connect_from(yd_loop *loop, const char *text, const char *source, yd_tls *tls,
                         const yd_protocol *protocol, void *data, yd_conn **out)
{
    yd_addr addr;
    if (yd_addr_parse(text, &addr) < 0)
        return -EINVAL;
    return yd_conn_connect_addr(loop, &addr, source, tls, protocol, data, out);
}
