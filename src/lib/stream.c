/*
 * Stream transports: TCP, Unix sockets and terminals, all libuv streams. They differ only in
 * how a descriptor is opened, TCP_NODELAY, and the reset of an aborted TCP connection.
 */
#include <stdio.h>

#include "internal.h"

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    yd_conn *conn = s->data;
    if (nread > 0)
        yd__conn_received(conn, buf->base, (size_t)nread);
    else if (nread == UV_EOF)
        yd__conn_read_eof(conn);
    else if (nread < 0)
        yd__conn_read_error(conn, (int)nread);
}

static int stream_read_start(yd_conn *conn)
{
    return uv_read_start(&conn->h.stream, yd__loop_alloc_cb, on_read);
}

static int stream_read_stop(yd_conn *conn)
{
    return uv_read_stop(&conn->h.stream);
}

static int stream_try_write(yd_conn *conn, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int r = uv_try_write(&conn->h.stream, &b, 1);
    return r == UV_EAGAIN ? 0 : r;
}

static void on_write(uv_write_t *req, int status)
{
    yd__conn_written(req->data, status);
}

static int stream_write(yd_conn *conn, const uv_buf_t *iov, unsigned n)
{
    conn->wreq.data = conn;
    return uv_write(&conn->wreq, &conn->h.stream, iov, n, on_write);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    yd__conn_shut(req->data, status);
}

static int stream_shutdown(yd_conn *conn)
{
    conn->req.shut.data = conn;
    return uv_shutdown(&conn->req.shut, &conn->h.stream, on_shutdown);
}

static void on_closed(uv_handle_t *h)
{
    yd__conn_closed(h->data);
}

static void stream_close(yd_conn *conn, int reset)
{
    (void)reset;
    if (uv_is_closing(&conn->h.handle))
        return; /* a failed connect attempt is closing it: connect.c finishes the close */
    uv_close(&conn->h.handle, on_closed);
}

/* What every stream transport does the same way. */
#define STREAM_IO                                                                                  \
    .read_start = stream_read_start, .read_stop = stream_read_stop, .try_write = stream_try_write, \
    .write = stream_write, .shutdown = stream_shutdown

/* ---- TCP ---------------------------------------------------------------------------------- */

int yd__stream_tcp_open(yd_conn *conn, int fd)
{
    uv_tcp_init(&conn->loop->uv, &conn->h.tcp);
    conn->h.handle.data = conn;
    return uv_tcp_open(&conn->h.tcp, fd);
}

static int tcp_start(yd_conn *conn)
{
    uv_tcp_nodelay(&conn->h.tcp, 1); /* an echo is a reply: never wait to coalesce it */
    return 0;
}

static void tcp_close(yd_conn *conn, int reset)
{
    /* An aborted TCP connection is reset, so the peer cannot mistake it for a clean end. */
    if (reset && !uv_is_closing(&conn->h.handle) &&
        uv_tcp_close_reset(&conn->h.tcp, on_closed) == 0)
        return;
    stream_close(conn, 0);
}

int yd__stream_tcp_peer_name(const yd_conn *conn, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    if (uv_tcp_getpeername(&conn->h.tcp, (struct sockaddr *)&ss, &n) < 0)
        return snprintf(buf, len, "?");
    return yd__sockaddr_format((struct sockaddr *)&ss, buf, len);
}

const struct yd__transport yd__tcp_transport = {
    .name = "tcp",
    .handle_size = sizeof(uv_tcp_t),
    .read_at_connect = 1,
    .open = yd__stream_tcp_open,
    .start = tcp_start,
    STREAM_IO,
    .close = tcp_close,
    .peer_name = yd__stream_tcp_peer_name,
};

/* ---- Unix sockets (and pipes) ----------------------------------------------------------- */

int yd__stream_unix_open(yd_conn *conn, int fd)
{
    uv_pipe_init(&conn->loop->uv, &conn->h.pipe, 0);
    conn->h.handle.data = conn;
    return uv_pipe_open(&conn->h.pipe, fd);
}

int yd__stream_unix_peer_name(const yd_conn *conn, char *buf, size_t len)
{
    (void)conn;
    return snprintf(buf, len, "unix");
}

const struct yd__transport yd__unix_transport = {
    .name = "unix",
    .handle_size = sizeof(uv_pipe_t),
    .open = yd__stream_unix_open,
    STREAM_IO,
    .close = stream_close,
    .peer_name = yd__stream_unix_peer_name,
};

/* ---- Terminals -------------------------------------------------------------------------- */

static int tty_open(yd_conn *conn, int fd)
{
    int err = uv_tty_init(&conn->loop->uv, &conn->h.tty, fd, 0);
    conn->h.handle.data = conn;
    return err; /* on failure the handle is not initialised: yd__conn_open knows */
}

static int tty_peer_name(const yd_conn *conn, char *buf, size_t len)
{
    (void)conn;
    return snprintf(buf, len, "tty");
}

const struct yd__transport yd__tty_transport = {
    .name = "tty",
    .handle_size = sizeof(uv_tty_t),
    .open = tty_open,
    STREAM_IO,
    .close = stream_close,
    .peer_name = tty_peer_name,
};
