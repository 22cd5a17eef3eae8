/*
 * Servers: the listening sockets of one address (a host name may give several), accepting
 * connections into conn.c, and datagram sockets. Nothing here knows about echo.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* Source ports below this are dropped on datagram servers (see on_server_datagram). */
#define LOWEST_UDP_SOURCE_PORT 1024

static yd_server *server_new(yd_loop *loop, const yd_server_options *options,
                             yd_transport transport)
{
    yd_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    srv->options = *options;
    srv->transport = transport;
    srv->next = loop->servers;
    if (loop->servers != NULL)
        loop->servers->prev = srv;
    loop->servers = srv;
    return srv;
}

static void server_free(yd_server *srv)
{
    if (srv->on_free != NULL)
        srv->on_free(srv->options.data);
    free(srv);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    yd_server *srv = l->server;
    if (--srv->open_handles == 0)
        server_free(srv);
}

void yd_server_close(yd_server *srv)
{
    if (srv == NULL)
        return;
    /* Its connections go on without it. */
    for (yd_conn *conn = srv->loop->conns; conn != NULL; conn = conn->next)
        if (conn->server == srv)
            conn->server = NULL;
    if (srv->prev != NULL)
        srv->prev->next = srv->next;
    else
        srv->loop->servers = srv->next;
    if (srv->next != NULL)
        srv->next->prev = srv->prev;
    if (srv->unix_path[0] != '\0')
        unlink(srv->unix_path);
    if (srv->open_handles == 0) {
        server_free(srv);
        return;
    }
    for (unsigned i = 0; i < srv->nsockets; i++)
        if (!uv_is_closing(&srv->sockets[i].h.handle))
            uv_close(&srv->sockets[i].h.handle, on_listener_closed);
}

void server_conn_closed(yd_server *srv)
{
    srv->conns--;
}

void server_set_on_free(yd_server *srv, void (*on_free)(void *data))
{
    srv->on_free = on_free;
}

/* ---- Accepting ---------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *s, int status)
{
    struct listener *l = s->data;
    yd_server *srv = l->server;
    yd_stats *stats = srv->options.stats;
    if (status < 0) {
        /* An accept error libuv passes on. (On EMFILE/ENFILE libuv 1.44 itself accepts and
         * closes the pending connections with its reserve descriptor and does not call us: no
         * busy loop, and accepting resumes once descriptors free up.) */
        STAT_ADD(stats, errors[YD_ERR_ACCEPT], 1);
        return;
    }
    yd_conn *conn = conn_accept(srv, s, srv->transport == YD_UNIX ? CONN_PIPE : CONN_TCP);
    if (conn == NULL)
        return;
    STAT_ADD(stats, conns_accepted, 1);
    yd_conn_limit *limit = srv->options.limit;
    int over = srv->options.max_conns > 0 && srv->conns >= srv->options.max_conns;
    /* Once per connection, not per message: an atomic add is cheap here. */
    if (!over && limit != NULL && atomic_fetch_add(&limit->open, 1) >= limit->max) {
        atomic_fetch_sub(&limit->open, 1);
        over = 1;
    } else if (!over && limit != NULL) {
        conn->limit = limit;
    }
    if (over) {
        /* Accept and close at once: a refused client learns now, instead of waiting in the
         * backlog, and the backlog cannot fill up with them. */
        STAT_ADD(stats, conns_refused, 1);
        conn_refuse(conn);
        return;
    }
    srv->conns++;
    if (srv->options.idle_timeout_ms > 0) {
        uint64_t every = srv->options.idle_timeout_ms / 4;
        loop_want_sweep(srv->loop, every < 10 ? 10 : every > 1000 ? 1000 : every);
    }
    conn_start(conn);
}

static void on_server_datagram(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                               const struct sockaddr *addr, unsigned flags)
{
    struct listener *l = u->data;
    yd_server *srv = l->server;
    yd_stats *stats = srv->options.stats;
    if (nread < 0) {
        STAT_ADD(stats, errors[YD_ERR_IO], 1);
        return;
    }
    if (addr == NULL)
        return;
    if (flags & UV_UDP_PARTIAL) {
        STAT_ADD(stats, errors[YD_ERR_IO], 1);
        return;
    }
    /* A datagram "from" port 7 or 19 is how the echo/chargen loop starts (CERT CA-1996-01): a
     * forged source makes two reflectors answer each other forever. No client uses such a port. */
    if (sockaddr_port(addr) < LOWEST_UDP_SOURCE_PORT) {
        STAT_ADD(stats, errors[YD_ERR_UDP_LOW_PORT], 1);
        return;
    }
    STAT_ADD(stats, bytes_in, (uint64_t)nread);
    STAT_ADD(stats, messages, 1);
    if (srv->options.protocol->on_datagram == NULL)
        return;
    unsigned len =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    srv->current = l;
    srv->options.protocol->on_datagram(srv, buf->base, (size_t)nread, addr, len);
    srv->current = NULL;
}

int yd_server_send_to(yd_server *srv, const void *data, size_t len, const void *peer,
                      unsigned peer_len)
{
    (void)peer_len;
    const struct sockaddr *sa = peer;
    struct listener *l = srv->current;
    if (l == NULL || l->family != sa->sa_family) {
        l = NULL;
        for (unsigned i = 0; i < srv->nsockets && l == NULL; i++)
            if (srv->sockets[i].family == sa->sa_family)
                l = &srv->sockets[i];
    }
    if (l == NULL || srv->transport != YD_UDP)
        return -EAFNOSUPPORT;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int r = uv_udp_try_send(&l->h.udp, &b, 1, sa);
    if (r < 0) {
        /* A full socket buffer or an ICMP error: the datagram is lost, as UDP allows. */
        STAT_ADD(srv->options.stats, errors[YD_ERR_UDP_SEND], 1);
        return r;
    }
    STAT_ADD(srv->options.stats, bytes_out, len);
    return 0;
}

/* ---- Listening ---------------------------------------------------------------------------- */

static struct listener *add_listener(yd_server *srv, int family)
{
    struct listener *l = &srv->sockets[srv->nsockets];
    l->server = srv;
    l->family = family;
    return l;
}

/* Counts a listener whose handle is initialised, so that closing the server closes it. */
static void listener_ready(yd_server *srv, struct listener *l)
{
    l->h.handle.data = l;
    srv->nsockets++;
    srv->open_handles++;
}

/* Serves a bound socket of the server's transport. */
static int serve_fd(yd_server *srv, int fd, int family)
{
    if (srv->nsockets == MAX_SOCKETS) {
        close(fd);
        return -EMFILE;
    }
    yd_loop *loop = srv->loop;
    struct listener *l = add_listener(srv, family);
    int err;
    int backlog = srv->options.backlog > 0 ? srv->options.backlog : SOMAXCONN;
    if (srv->transport == YD_UDP) {
        uv_udp_init(&loop->uv, &l->h.udp);
        listener_ready(srv, l);
        err = uv_udp_open(&l->h.udp, fd);
        if (err == 0)
            err = uv_udp_recv_start(&l->h.udp, loop_alloc_cb, on_server_datagram);
    } else if (srv->transport == YD_UNIX) {
        uv_pipe_init(&loop->uv, &l->h.pipe, 0);
        listener_ready(srv, l);
        err = uv_pipe_open(&l->h.pipe, fd);
        if (err == 0)
            err = uv_listen(&l->h.stream, backlog, on_connection);
    } else {
        uv_tcp_init(&loop->uv, &l->h.tcp);
        listener_ready(srv, l);
        err = uv_tcp_open(&l->h.tcp, fd);
        if (err == 0)
            err = uv_listen(&l->h.stream, backlog, on_connection);
    }
    return err;
}

static int bind_socket(const struct sockaddr *sa, socklen_t len, int socktype, int reuseport)
{
    int fd = socket(sa->sa_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (socktype == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* libuv 1.44 cannot ask for SO_REUSEPORT, hence the socket made here. */
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    /* v6 sockets take only v6, so "localhost" binds ::1 and 127.0.0.1 side by side. */
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, sa, len) < 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

static void set_port(struct sockaddr *sa, int port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

static int listen_inet(yd_server *srv, const yd_addr *addr)
{
    int socktype = addr->transport == YD_UDP ? SOCK_DGRAM : SOCK_STREAM;
    struct resolved r;
    int err = addr_resolve(addr, socktype, 1, &r);
    if (err < 0)
        return err;
    int port = addr->port;
    for (int i = 0; i < r.count; i++) {
        struct sockaddr *sa = (struct sockaddr *)&r.addr[i];
        /* Every socket of one name gets the port the first one got, as asyncio does. */
        set_port(sa, port);
        int fd = bind_socket(sa, r.len[i], socktype, srv->options.reuseport);
        if (fd < 0 && r.localhost && srv->nsockets > 0 &&
            (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT))
            continue; /* a host without IPv6 still has a localhost */
        if (fd < 0)
            return fd;
        if (port == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            port = sockaddr_port((struct sockaddr *)&ss);
        }
        err = serve_fd(srv, fd, sa->sa_family);
        if (err < 0)
            return err;
    }
    return 0;
}

/* Is something listening on this Unix socket path? */
static int unix_path_alive(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 1; /* cannot tell: do not remove it */
    int alive = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 || errno != ECONNREFUSED;
    close(fd);
    return alive;
}

static int listen_unix(yd_server *srv, const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        /* A file left by a crash is replaced; a live server's socket is not stolen. */
        if (unix_path_alive(path))
            return -EADDRINUSE;
        unlink(path);
    }
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int fd = bind_socket((struct sockaddr *)&sun, sizeof sun, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    snprintf(srv->unix_path, sizeof srv->unix_path, "%s", path);
    return serve_fd(srv, fd, AF_UNIX);
}

int yd_server_listen(yd_loop *loop, const char *text, const yd_server_options *options,
                     yd_server **out)
{
    yd_addr addr;
    if (options == NULL || options->protocol == NULL || yd_addr_parse(text, &addr) < 0)
        return -EINVAL;
    yd_server *srv = server_new(loop, options, addr.transport);
    if (srv == NULL)
        return -ENOMEM;
    int err = addr.transport == YD_UNIX ? listen_unix(srv, addr.path) : listen_inet(srv, &addr);
    if (err < 0) {
        yd_server_close(srv);
        return err;
    }
    *out = srv;
    return 0;
}

int yd_server_adopt(yd_loop *loop, int fd, const yd_server_options *options, yd_server **out)
{
    if (options == NULL || options->protocol == NULL)
        return -EINVAL;
    int type;
    socklen_t tl = sizeof type;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    yd_transport transport = type == SOCK_DGRAM        ? YD_UDP
                             : ss.ss_family == AF_UNIX ? YD_UNIX
                                                       : YD_TCP;
    yd_server *srv = server_new(loop, options, transport);
    if (srv == NULL)
        return -ENOMEM;
    int err = serve_fd(srv, fd, ss.ss_family);
    if (err < 0) {
        yd_server_close(srv);
        return err;
    }
    *out = srv;
    return 0;
}

/* ---- Accessors ---------------------------------------------------------------------------- */

unsigned yd_server_socket_count(const yd_server *srv)
{
    return srv->nsockets;
}

int yd_server_address(const yd_server *srv, unsigned i, char *buf, size_t len)
{
    if (i >= srv->nsockets)
        return -EINVAL;
    const struct listener *l = &srv->sockets[i];
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    int err;
    if (srv->transport == YD_UNIX) {
        char path[sizeof srv->unix_path];
        size_t pl = sizeof path;
        err = uv_pipe_getsockname(&l->h.pipe, path, &pl);
        if (err < 0)
            return err;
        yd_addr a = {.transport = YD_UNIX};
        snprintf(a.path, sizeof a.path, "%.*s", (int)pl, path);
        return yd_addr_format(&a, buf, len); /* reads back as the same path, "//x" included */
    }
    if (srv->transport == YD_UDP)
        err = uv_udp_getsockname(&l->h.udp, (struct sockaddr *)&ss, &sl);
    else
        err = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &sl);
    if (err < 0)
        return err;
    const char *scheme = srv->transport == YD_UDP ? "udp://" : "tcp://";
    size_t sn = strlen(scheme);
    if (len <= sn)
        return -ENOBUFS;
    memcpy(buf, scheme, sn);
    int n = sockaddr_format((struct sockaddr *)&ss, buf + sn, len - sn);
    return n < 0 ? n : n + (int)sn;
}

int yd_server_port(const yd_server *srv)
{
    if (srv->nsockets == 0 || srv->transport == YD_UNIX)
        return 0;
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    const struct listener *l = &srv->sockets[0];
    int err = srv->transport == YD_UDP ? uv_udp_getsockname(&l->h.udp, (struct sockaddr *)&ss, &sl)
                                       : uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &sl);
    return err < 0 ? err : sockaddr_port((struct sockaddr *)&ss);
}

void *yd_server_data(const yd_server *srv)
{
    return srv->options.data;
}

yd_loop *yd_server_loop(const yd_server *srv)
{
    return srv->loop;
}
