/*
 * Servers: the listening sockets of one address (a host name may give several), accepting
 * connections into conn.c, and datagram sockets. Nothing here knows about echo.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* Source ports below this are dropped on datagram servers (see deliver_datagram). */
#define LOWEST_UDP_SOURCE_PORT 1024

static yd_server *server_new(yd_loop *loop, const yd_server_options *options,
                             yd_transport transport, yd_tls *tls)
{
    yd_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    srv->options = *options;
    srv->transport = transport;
    srv->tls = tls;
    if (tls != NULL)
        yd__tls_ref(tls);
    srv->next = loop->servers;
    if (loop->servers != NULL)
        loop->servers->prev = srv;
    loop->servers = srv;
    return srv;
}

static void server_free(yd_server *srv)
{
    if (srv->options.free_data != NULL)
        srv->options.free_data(srv->options.data);
    if (srv->tls != NULL)
        yd__tls_unref(srv->tls);
    free(srv);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    yd_server *srv = l->server;
    if (--srv->open_handles == 0)
        server_free(srv);
}

/* The one place a listener is closed: its two handles, then its descriptor. */
static void close_listener(struct listener *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->poll)) {
        uv_close((uv_handle_t *)&l->poll, on_listener_closed); /* stops watching fd at once */
        uv_close((uv_handle_t *)&l->retry, on_listener_closed);
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
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
        close_listener(&srv->sockets[i]);
}

void yd__server_conn_closed(yd_server *server)
{
    server->conns--;
}

/* ---- Accepting ---------------------------------------------------------------------------- */

/*
 * yodel accepts by itself (a uv_poll on the listening descriptor and accept4) instead of through
 * uv_listen, for one reason: running out of descriptors. libuv's answer to EMFILE is a reserve
 * descriptor per loop, but the descriptor table is per process: with several loops another
 * thread takes the slot the trick frees, and libuv then calls back with EMFILE in a loop that
 * never returns (a busy loop that also starves the signal watchers). Here, EMFILE stops
 * watching that listener for ACCEPT_RETRY_MS, as nginx does: the listening socket and its
 * backlog stay, existing clients are served, and accepting resumes when descriptors free up.
 */
#define ACCEPT_RETRY_MS 100
/* Connections accepted per wakeup at most, so one busy listener cannot starve the others. */
#define ACCEPT_BATCH 64

static void on_acceptable(uv_poll_t *poll, int status, int events);

static void on_accept_retry(uv_timer_t *t)
{
    struct listener *l = t->data;
    uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
}

static void pause_accepting(struct listener *l)
{
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->retry, on_accept_retry, ACCEPT_RETRY_MS, 0);
}

/* Takes, or refuses, one accepted descriptor: max-conns are counted here. */
static void take_connection(yd_server *srv, int fd, const struct sockaddr *peer, socklen_t len)
{
    yd_stats *stats = srv->options.stats;
    yd_conn *conn = yd__conn_accept(srv, fd, peer, len);
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
        if (srv->options.protocol->on_reject != NULL)
            srv->options.protocol->on_reject(conn, -ECONNREFUSED, YD_ERR__COUNT);
        yd__conn_close_silently(conn);
        return;
    }
    srv->conns++;
    if (srv->options.idle_timeout_ms > 0)
        yd__loop_want_sweep(srv->loop, yd__loop_sweep_period(srv->options.idle_timeout_ms));
    yd__conn_start(conn);
}

/* Exits: the backlog is empty (EAGAIN), the batch is done (the poll fires again), or accept
 * failed: out of descriptors or memory pauses this listener; other errors are counted. */
static void on_acceptable(uv_poll_t *poll, int status, int events)
{
    (void)events;
    struct listener *l = poll->data;
    yd_server *srv = l->server;
    if (status < 0) {
        STAT_ADD(srv->options.stats, errors[YD_ERR_ACCEPT], 1);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && l->fd >= 0; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            take_connection(srv, fd, (struct sockaddr *)&peer, len);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR || errno == ECONNABORTED)
            continue; /* a client that left while in the backlog */
        STAT_ADD(srv->options.stats, errors[YD_ERR_ACCEPT], 1);
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            pause_accepting(l); /* shed load: try again once descriptors may be free */
        return;
    }
}

/* ---- Datagrams ---------------------------------------------------------------------------- */

/* Datagrams read per wakeup at most, so one busy socket cannot starve the others. */
#define DATAGRAM_BATCH 32
/* Room for the one control message asked for: the address a datagram was sent to. */
#define PKTINFO_SPACE CMSG_SPACE(sizeof(struct in6_pktinfo))

/*
 * The address a datagram was sent to, from its IP_PKTINFO / IPV6_PKTINFO control message, so
 * the reply leaves from it: on a wildcard bind the kernel would otherwise pick a source by the
 * route, and a client that sent to 127.0.0.2 (or any NAT) would drop a reply from 127.0.0.1.
 */
static void note_destination(struct listener *l, struct msghdr *mh)
{
    l->dst_family = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            memcpy(&l->dst.v4, CMSG_DATA(c), sizeof l->dst.v4);
            l->dst_family = AF_INET;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            memcpy(&l->dst.v6, CMSG_DATA(c), sizeof l->dst.v6);
            l->dst_family = AF_INET6;
        }
    }
}

static void deliver_datagram(struct listener *l, const char *data, size_t len,
                             const struct sockaddr *peer)
{
    yd_server *srv = l->server;
    yd_stats *stats = srv->options.stats;
    /* A datagram "from" port 7 or 19 is how the echo/chargen loop starts (CERT CA-1996-01): a
     * forged source makes two reflectors answer each other forever. No client uses such a port. */
    if (yd__sockaddr_port(peer) < LOWEST_UDP_SOURCE_PORT) {
        STAT_ADD(stats, errors[YD_ERR_UDP_LOW_PORT], 1);
        return;
    }
    srv->current_source.ss_family = 0;
    if (srv->options.proxy_protocol) { /* each datagram behind its own header (v2) */
        yd_proxy_header h;
        long r = yd_proxy_parse(data, len, &h);
        /* Only v2 carries datagrams; a header that says stream is not this datagram's. */
        if (r <= 0 || h.version != 2 || h.socktype == SOCK_STREAM) {
            STAT_ADD(stats, errors[YD_ERR_PROXY_HEADER], 1);
            return;
        }
        if (!h.local && (h.family == AF_INET || h.family == AF_INET6)) /* not a health check */
            memcpy(&srv->current_source, &h.src,
                   h.family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        data += r;
        len -= (size_t)r;
    }
    STAT_ADD(stats, bytes_in, (uint64_t)len);
    STAT_ADD(stats, messages, 1);
    if (srv->options.protocol->on_datagram == NULL)
        return;
    unsigned plen =
        peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    srv->current = l;
    srv->options.protocol->on_datagram(srv, data, len, peer, plen);
    srv->current = NULL;
    srv->current_source.ss_family = 0;
}

int yd_server_datagram_source(const yd_server *srv, char *buf, size_t len)
{
    if (srv->current_source.ss_family != 0)
        return yd__sockaddr_format((const struct sockaddr *)&srv->current_source, buf, len);
    if (len == 0)
        return -ENOBUFS;
    buf[0] = '\0';
    return 0;
}

/* Exits: nothing more to read (EAGAIN), the batch is done, or a read error (counted). */
static void on_readable_datagram(uv_poll_t *poll, int status, int events)
{
    (void)events;
    struct listener *l = poll->data;
    yd_server *srv = l->server;
    char *buf = srv->loop->read_buf;
    if (status < 0) {
        STAT_ADD(srv->options.stats, errors[YD_ERR_IO], 1);
        return;
    }
    for (int i = 0; i < DATAGRAM_BATCH && l->fd >= 0; i++) {
        struct sockaddr_storage peer;
        char control[PKTINFO_SPACE];
        struct iovec iov = {.iov_base = buf, .iov_len = READ_BUF_BYTES};
        struct msghdr mh = {.msg_name = &peer,
                            .msg_namelen = sizeof peer,
                            .msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control,
                            .msg_controllen = sizeof control};
        ssize_t n = recvmsg(l->fd, &mh, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                STAT_ADD(srv->options.stats, errors[YD_ERR_IO], 1);
            return;
        }
        if (mh.msg_flags & MSG_TRUNC) { /* cannot happen with a 64 KiB buffer; never echo half */
            STAT_ADD(srv->options.stats, errors[YD_ERR_IO], 1);
            continue;
        }
        note_destination(l, &mh);
        deliver_datagram(l, buf, (size_t)n, (struct sockaddr *)&peer);
    }
}

/* The socket to answer a peer on: the one the current datagram came in on, else any of its
 * family. */
static struct listener *reply_socket(yd_server *srv, int family)
{
    if (srv->current != NULL && srv->current->family == family)
        return srv->current;
    for (unsigned i = 0; i < srv->nsockets; i++)
        if (srv->sockets[i].family == family)
            return &srv->sockets[i];
    return NULL;
}

int yd_server_send_to(yd_server *srv, const void *data, size_t len, const void *peer,
                      unsigned peer_len)
{
    const struct sockaddr *sa = peer;
    struct listener *l = reply_socket(srv, sa->sa_family);
    if (l == NULL || srv->transport != YD_UDP || l->fd < 0)
        return -EAFNOSUPPORT;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    char control[PKTINFO_SPACE] = {0};
    struct msghdr mh = {
        .msg_name = (void *)sa, .msg_namelen = peer_len, .msg_iov = &iov, .msg_iovlen = 1};
    /* During on_datagram, the reply leaves from the address the datagram was sent to. */
    if (l == srv->current && l->dst_family != 0) {
        mh.msg_control = control;
        struct cmsghdr *c = (struct cmsghdr *)control;
        if (l->dst_family == AF_INET) {
            struct in_pktinfo pi = {.ipi_spec_dst = l->dst.v4.ipi_addr};
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            memcpy(CMSG_DATA(c), &pi, sizeof pi);
            mh.msg_controllen = CMSG_SPACE(sizeof pi);
        } else {
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof l->dst.v6);
            memcpy(CMSG_DATA(c), &l->dst.v6, sizeof l->dst.v6);
            mh.msg_controllen = CMSG_SPACE(sizeof l->dst.v6);
        }
    }
    ssize_t n;
    do
        n = sendmsg(l->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        /* A full socket buffer or an ICMP error: the datagram is lost, as UDP allows. */
        int err = -errno;
        STAT_ADD(srv->options.stats, errors[YD_ERR_UDP_SEND], 1);
        return err;
    }
    STAT_ADD(srv->options.stats, bytes_out, len);
    return 0;
}

/* ---- Listening ---------------------------------------------------------------------------- */

/* Asks for the destination address of each datagram (see note_destination). */
static int want_pktinfo(int fd, int family)
{
    int one = 1;
    if (family == AF_INET)
        return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0 ? -errno : 0;
    if (family == AF_INET6)
        return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) < 0 ? -errno : 0;
    return 0;
}

/* Makes fd ready to serve: datagram destinations asked for, or listening. */
static int prepare_fd(const yd_server *srv, int fd, int family)
{
    if (srv->transport == YD_UDP)
        return want_pktinfo(fd, family);
    int backlog = srv->options.backlog > 0 ? srv->options.backlog : SOMAXCONN;
    if (listen(fd, backlog) < 0) /* again on an adopted listening socket: harmless */
        return -errno;
    return 0;
}

/* Serves a bound socket of the server's transport: the server owns fd once this returns 0;
 * on failure fd is still the caller's. */
static int serve_fd(yd_server *srv, int fd, int family)
{
    if (srv->nsockets == MAX_SOCKETS)
        return -EMFILE;
    int err = prepare_fd(srv, fd, family);
    if (err < 0)
        return err;
    struct listener *l = &srv->sockets[srv->nsockets];
    l->server = srv;
    l->family = family;
    l->fd = -1; /* until poll starts: a failure leaves fd to the caller */
    err = uv_poll_init(&srv->loop->uv, &l->poll, fd);
    if (err < 0)
        return err;
    uv_timer_init(&srv->loop->uv, &l->retry);
    l->poll.data = l->retry.data = l;
    srv->nsockets++;
    srv->open_handles += 2; /* closing the server closes both handles */
    err = uv_poll_start(&l->poll, UV_READABLE,
                        srv->transport == YD_UDP ? on_readable_datagram : on_acceptable);
    if (err == 0)
        l->fd = fd; /* from here on, closing the server closes fd */
    return err;
}

/*
 * A socket bound to sa. YD_REUSEPORT_OWN binds it alone, so that a port someone else holds is
 * -EADDRINUSE even when they allow sharing, and only then lets this process's other loops join
 * (Linux checks SO_REUSEPORT on both sockets when the later one binds).
 */
static int bind_socket(const struct sockaddr *sa, socklen_t len, int socktype, int reuseport)
{
    int fd = socket(sa->sa_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (socktype == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* libuv 1.44 cannot ask for SO_REUSEPORT, hence the socket made here. */
    if (reuseport == YD_REUSEPORT_JOIN &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    /* v6 sockets take only v6, so "localhost" binds ::1 and 127.0.0.1 side by side. */
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, sa, len) < 0)
        goto fail;
    if (reuseport == YD_REUSEPORT_OWN &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
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
    int err = yd__addr_resolve(addr, socktype, 1, &r);
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
            port = yd__sockaddr_port((struct sockaddr *)&ss);
        }
        err = serve_fd(srv, fd, sa->sa_family);
        if (err < 0) {
            close(fd);
            return err;
        }
    }
    return 0;
}

/* Is something listening on this Unix socket path? */
static int unix_path_alive(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    /* Never a blocking connect: a live server whose backlog is full would hold us forever,
     * before any signal watcher runs. EAGAIN (backlog full) means alive, as does success. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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
    int err = serve_fd(srv, fd, AF_UNIX);
    if (err < 0)
        close(fd);
    return err;
}

int yd_server_listen(yd_loop *loop, const char *text, const yd_server_options *options,
                     yd_server **out)
{
    yd_addr addr;
    if (loop == NULL || out == NULL || options == NULL || options->protocol == NULL ||
        yd_addr_parse(text, &addr) < 0)
        return -EINVAL;
    if (addr.tls && options->tls == NULL) /* a tls:// address needs a certificate */
        return -EINVAL;
    if (loop->freeing)
        return -ECANCELED;
    yd_server *srv = server_new(loop, options, addr.transport, addr.tls ? options->tls : NULL);
    if (srv == NULL)
        return -ENOMEM;
    int err = addr.transport == YD_UNIX ? listen_unix(srv, addr.path) : listen_inet(srv, &addr);
    if (err < 0) {
        srv->options.free_data = NULL; /* a server that never was leaves data to the caller */
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
    if (transport == YD_UDP && options->tls != NULL)
        return -EINVAL; /* no DTLS */
    yd_server *srv = server_new(loop, options, transport, options->tls);
    if (srv == NULL)
        return -ENOMEM;
    int err = serve_fd(srv, fd, ss.ss_family);
    if (err < 0) {
        srv->options.free_data = NULL; /* a server that never was leaves data to the caller */
        yd_server_close(srv);
        return err;
    }
    *out = srv;
    return 0;
}

int yd_server_serve_fd(yd_loop *loop, int fd, const yd_server_options *options, yd_conn **out)
{
    if (options == NULL || options->protocol == NULL)
        return -EINVAL;
    yd_conn *conn;
    int err = yd_conn_open_fd(loop, fd, options->protocol, options->data, &conn);
    if (err < 0)
        return err;
    conn->stats = options->stats;
    conn->served = 1;
    STAT_ADD(options->stats, conns_accepted, 1);
    yd_conn_set_idle_timeout(conn, options->idle_timeout_ms);
    *out = conn;
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
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(srv->sockets[i].fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
        yd_addr a = {.transport = YD_UNIX, .tls = srv->tls != NULL};
        size_t pl = sl > offsetof(struct sockaddr_un, sun_path)
                        ? sl - offsetof(struct sockaddr_un, sun_path)
                        : 0;
        snprintf(a.path, sizeof a.path, "%.*s", (int)pl, sun->sun_path);
        return yd_addr_format(&a, buf, len); /* reads back as the same path, "//x" included */
    }
    const char *scheme = srv->transport == YD_UDP ? "udp://" : srv->tls ? "tls://" : "tcp://";
    size_t sn = strlen(scheme);
    if (len <= sn)
        return -ENOBUFS;
    memcpy(buf, scheme, sn);
    int n = yd__sockaddr_format((struct sockaddr *)&ss, buf + sn, len - sn);
    return n < 0 ? n : n + (int)sn;
}

int yd_server_port(const yd_server *srv)
{
    if (srv->nsockets == 0)
        return 0;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(srv->sockets[0].fd, (struct sockaddr *)&ss, &sl) < 0)
        return -errno;
    return yd__sockaddr_port((struct sockaddr *)&ss); /* 0 for a Unix socket */
}

void yd_server_unref(yd_server *srv)
{
    srv->background = 1;
    for (unsigned i = 0; i < srv->nsockets; i++) {
        uv_unref((uv_handle_t *)&srv->sockets[i].poll);
        uv_unref((uv_handle_t *)&srv->sockets[i].retry);
    }
}

void yd_server_count_error(yd_server *srv, enum yd_error_kind kind)
{
    if ((unsigned)kind < YD_ERR__COUNT)
        STAT_ADD(srv->options.stats, errors[kind], 1);
}

void *yd_server_data(const yd_server *srv)
{
    return srv->options.data;
}

yd_loop *yd_server_loop(const yd_server *srv)
{
    return srv->loop;
}
