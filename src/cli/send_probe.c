/*
 * yodel send --count N --interval D: a probe, as ping and tcping are. One probe in flight at a
 * time; each is the line "MESSAGE SEQ" (one datagram over UDP). Its life:
 *
 *   1. start_probe (the tick timer): opens a connection if there is none (or --reconnect);
 *      open_conn connects its own socket (bound to --source-port), waiting at most --timeout, and
 *      hands it to the library with yd_conn_open_fd (yd_conn_open_fd_tls over TLS, after the
 *      PROXY header: a load balancer sends it before the handshake).
 *   2. send_line (at once, or from on_connect for a new connection, after the PROXY header;
 *      over TLS on_connect is the handshake's end, and its time is taken there):
 *      writes the probe and starts the --timeout deadline.
 *   3. on_data: the line (datagram) that ends with the probe's text answers it; what precedes
 *      that text is the backend's prefix. Earlier probes' text is a late reply, counted and
 *      ignored. On a stream, a first line that is no probe's text is the server's banner: it
 *      names the backend for every probe on that connection (not with --no-check, where any
 *      line answers).
 *   4. The probe ends answered, lost (deadline, connection lost) or mismatched; next() starts the
 *      tick for the next one at one interval after this one's start, or at once if that has
 *      passed (never a burst), or finishes after the last.
 *
 * The connect is synchronous (poll with a deadline) because probes go one at a time and the
 * connect time is a result: nothing else waits on the loop meanwhile. The library's
 * yd_conn_connect cannot bind a source port nor say the local address a PROXY header needs,
 * hence our own socket.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "send_probe.h"
#include "yodel.h"

/* The addresses of a name tried (TCP: in turn, until one connects; UDP: the first). */
#define MAX_ADDRS 16
/* The longest reply line read on a stream; a longer one loses the connection. */
#define REPLY_LINE_MAX (64u * 1024u)
/* The probe's line: MESSAGE (at most PROBE_MESSAGE_MAX, send.c checks), a space, SEQ, '\n'. */
#define PROBE_MESSAGE_MAX 1024
#define LINE_MAX_BYTES    (PROBE_MESSAGE_MAX + 24)

struct probe;

/* One connection. It may outlive being the current one until its on_close. */
struct probe_conn {
    struct probe *p;
    yd_conn *conn;
    char header[PROXY_HEADER_MAX]; /* the PROXY header, sent first (before each datagram) */
    size_t header_len;
    char banner[BACKEND_MAX]; /* a stream's first line when it is no probe's text */
    size_t banner_len;
    uint64_t lines; /* lines (datagrams) received */
};

enum phase {
    PHASE_IDLE,       /* between probes */
    PHASE_CONNECTING, /* a new connection: on_connect sends the probe */
    PHASE_AWAITING,   /* the probe is sent: its reply or the deadline ends it */
    PHASE_DONE        /* the last probe ended, or interrupted */
};

struct probe {
    const struct probe_options *o;
    yd_loop *loop;
    yd_transport transport;
    const char *server_name; /* TLS: the address's host, for SNI and verification; or NULL */
    char host[256];
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addr_lens[MAX_ADDRS];
    int naddrs;
    int addr_next;                                /* the address to try first */
    struct sockaddr_storage proxy_src, proxy_dst; /* --proxy-source, --proxy-dest if given */
    yd_timer *tick;                               /* starts the next probe */
    yd_timer *deadline;                           /* the current probe's --timeout */
    yd_signal *sigint, *sigterm;
    struct probe_conn *cur; /* NULL: the next probe connects */
    enum phase phase;
    uint64_t seq;        /* the current (last) probe's number, from 1 */
    uint64_t started_ns; /* when it started (the next one starts an interval later) */
    uint64_t sent_ns;    /* when its line was written */
    uint64_t connect_ns; /* how long its connect took */
    uint64_t handshake_started_ns, handshake_ns; /* TLS: when its handshake began, how long */
    char line[LINE_MAX_BYTES];
    size_t line_len;
    char dgram[PROXY_HEADER_MAX + LINE_MAX_BYTES]; /* UDP with a PROXY header: both in one */
    struct probe_report report;
};

/* ---- The target: its addresses, resolved once -------------------------------------------- */

static int resolve_unix(struct probe *p, const yd_addr *a)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&p->addrs[0];
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, a->path, sizeof a->path);
    p->addr_lens[0] = sizeof *un;
    p->naddrs = 1;
    return 0;
}

static int resolve(struct probe *p)
{
    yd_addr a;
    if (yd_addr_parse(p->o->addr, &a) < 0)
        return -EINVAL;
    p->transport = a.transport;
    memcpy(p->host, a.host, sizeof p->host);
    p->server_name = a.host[0] != '\0' ? p->host : NULL;
    if (a.transport == YD_UNIX)
        return resolve_unix(p, &a);
    struct addrinfo hints = {.ai_socktype = a.transport == YD_UDP ? SOCK_DGRAM : SOCK_STREAM};
    struct addrinfo *res;
    char port[8];
    snprintf(port, sizeof port, "%u", a.port);
    int rc = getaddrinfo(a.host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "yodel send: cannot resolve %s: %s\n", a.host, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL && p->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        memcpy(&p->addrs[p->naddrs], ai->ai_addr, ai->ai_addrlen);
        p->addr_lens[p->naddrs++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    return 0;
}

/* ---- Connecting --------------------------------------------------------------------------- */

static int bind_source(const struct probe *p, int fd, int family)
{
    if (p->o->source_port == 0)
        return 0;
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    uint16_t port = htons((uint16_t)p->o->source_port);
    if (family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = port;
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = port;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return bind(fd, (struct sockaddr *)&ss, len) < 0 ? -errno : 0;
}

/* Waits until a non-blocking connect is done or deadline_ns passes. A signal (EINTR) only
 * wakes the wait: the deadline still bounds it. */
static int wait_connected(int fd, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = probe_now_ns();
        if (now >= deadline_ns)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, (int)((deadline_ns - now + 999999u) / 1000000u));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n <= 0)
            continue;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return -errno;
        return -err;
    }
}

/* A connected socket to address i, or a negative error. */
static int connect_addr(const struct probe *p, int i, uint64_t deadline_ns)
{
    const struct sockaddr *sa = (const struct sockaddr *)&p->addrs[i];
    int type = p->transport == YD_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int err = sa->sa_family == AF_UNIX ? 0 : bind_source(p, fd, sa->sa_family);
    if (err == 0 && connect(fd, sa, p->addr_lens[i]) < 0)
        err = errno == EINPROGRESS ? wait_connected(fd, deadline_ns) : -errno;
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* Tries the addresses in turn from the last one that worked (UDP: only that one: a datagram
 * socket connects to anything). Returns a socket or the last error. */
static int connect_any(struct probe *p)
{
    uint64_t deadline = probe_now_ns() + p->o->timeout_ms * 1000000u;
    int tries = p->transport == YD_UDP ? 1 : p->naddrs;
    int fd = -EHOSTUNREACH;
    for (int t = 0; t < tries; t++) {
        int i = (p->addr_next + t) % p->naddrs;
        fd = connect_addr(p, i, deadline);
        if (fd >= 0) {
            p->addr_next = i;
            return fd;
        }
    }
    return fd;
}

/* The header's ends: --proxy-source/--proxy-dest, else the socket's own and its peer's. */
static int make_header(struct probe *p, struct probe_conn *pc, int fd)
{
    struct sockaddr_storage src = p->proxy_src, dst = p->proxy_dst;
    socklen_t len = sizeof src;
    int ip = p->transport != YD_UNIX || src.ss_family != AF_UNSPEC;
    if (ip && src.ss_family == AF_UNSPEC && getsockname(fd, (struct sockaddr *)&src, &len) < 0)
        return -errno;
    len = sizeof dst;
    if (ip && dst.ss_family == AF_UNSPEC && getpeername(fd, (struct sockaddr *)&dst, &len) < 0)
        return -errno;
    int n = proxy_header_format(p->o->proxy, p->transport != YD_UDP,
                                ip ? (struct sockaddr *)&src : NULL,
                                ip ? (struct sockaddr *)&dst : NULL, pc->header);
    if (n < 0)
        return n;
    pc->header_len = (size_t)n;
    return 0;
}

/* TLS: the PROXY header goes on the socket itself, before the handshake. A fresh socket's
 * buffer takes it whole; anything less is an error. */
static int send_header_plain(struct probe_conn *pc, int fd)
{
    ssize_t n = send(fd, pc->header, pc->header_len, MSG_NOSIGNAL);
    if (n < 0)
        return -errno;
    if ((size_t)n < pc->header_len)
        return -EAGAIN;
    pc->header_len = 0; /* sent: on_connect does not send it again */
    return 0;
}

static const yd_protocol probe_protocol;

/* A new connection as the current one; its on_connect sends the probe. */
static int open_conn(struct probe *p)
{
    struct probe_conn *pc = calloc(1, sizeof *pc);
    if (pc == NULL)
        return -ENOMEM;
    pc->p = p;
    uint64_t t0 = probe_now_ns();
    int fd = connect_any(p);
    p->connect_ns = probe_now_ns() - t0;
    int err = fd < 0 ? fd : 0;
    if (err == 0 && p->o->proxy != PROXY_NONE)
        err = make_header(p, pc, fd);
    if (err == 0 && p->o->tls != NULL && pc->header_len > 0)
        err = send_header_plain(pc, fd);
    p->handshake_started_ns = probe_now_ns();
    if (err == 0 && p->o->tls != NULL)
        err = yd_conn_open_fd_tls(p->loop, fd, p->o->tls, p->server_name, &probe_protocol, pc,
                                  &pc->conn);
    else if (err == 0)
        err = yd_conn_open_fd(p->loop, fd, &probe_protocol, pc, &pc->conn);
    if (err < 0) {
        if (fd >= 0)
            close(fd);
        free(pc);
        return err;
    }
    p->cur = pc;
    return 0;
}

/* Ends the current connection: a datagram socket has nothing to flush, a stream closes. */
static void drop_conn(struct probe *p)
{
    struct probe_conn *pc = p->cur;
    if (pc == NULL)
        return;
    p->cur = NULL;
    if (p->transport == YD_UDP)
        yd_conn_abort(pc->conn);
    else
        yd_conn_close(pc->conn);
}

/* ---- A probe's life ----------------------------------------------------------------------- */

static void finish(struct probe *p)
{
    p->phase = PHASE_DONE;
    yd_timer_free(p->tick);
    yd_timer_free(p->deadline);
    yd_signal_free(p->sigint);
    yd_signal_free(p->sigterm);
    p->tick = p->deadline = NULL;
    p->sigint = p->sigterm = NULL;
    drop_conn(p);
}

/* The probe ended: the next one an interval after this one started (at once if that has
 * passed), or the end. */
static void next(struct probe *p)
{
    p->phase = PHASE_IDLE;
    yd_timer_stop(p->deadline);
    if (p->o->reconnect)
        drop_conn(p);
    if ((p->o->count > 0 && p->seq >= p->o->count) || p->report.failed) {
        finish(p);
        return;
    }
    uint64_t due = p->started_ns + p->o->interval_ms * 1000000u, now = probe_now_ns();
    yd_timer_start(p->tick, due > now ? (due - now + 999999u) / 1000000u : 0, 0);
}

static void lost(struct probe *p, const char *status, const char *detail)
{
    report_lost(&p->report, p->seq, status, detail);
    next(p);
}

/* The probe's error as a line: "connection refused", "cannot connect: ...". */
static void lost_error(struct probe *p, const char *what, int err)
{
    char detail[200];
    snprintf(detail, sizeof detail, "%s%s%s", what, *what ? ": " : "", yd_strerror(err));
    lost(p, "error", detail);
}

static void send_line(struct probe *p)
{
    struct probe_conn *pc = p->cur;
    const char *data = p->line;
    size_t len = p->line_len;
    if (pc->header_len > 0 && p->transport == YD_UDP) {
        memcpy(p->dgram, pc->header, pc->header_len);
        memcpy(p->dgram + pc->header_len, p->line, p->line_len);
        data = p->dgram;
        len += pc->header_len;
    }
    p->phase = PHASE_AWAITING;
    p->sent_ns = probe_now_ns();
    int err = yd_conn_write(pc->conn, data, len);
    if (err < 0) {
        drop_conn(p);
        lost_error(p, "cannot send", err);
        return;
    }
    yd_timer_start(p->deadline, p->o->timeout_ms, 0);
}

static void start_probe(struct probe *p)
{
    p->seq++;
    p->started_ns = probe_now_ns();
    p->line_len = (size_t)snprintf(p->line, sizeof p->line, "%s %llu\n", p->o->message,
                                   (unsigned long long)p->seq);
    report_sent(&p->report, p->seq);
    if (p->cur != NULL) {
        send_line(p);
        return;
    }
    p->phase = PHASE_CONNECTING;
    int err = open_conn(p);
    if (err < 0)
        lost_error(p, "cannot connect", err);
}

static void on_tick(yd_timer *timer, void *data)
{
    (void)timer;
    start_probe(data);
}

/* The deadline: the probe is lost. If the one line back was taken as a banner, say so: it may
 * have been a server's wrong answer (one that does not echo). */
static void on_deadline(yd_timer *timer, void *data)
{
    (void)timer;
    struct probe *p = data;
    struct probe_conn *pc = p->cur;
    if (p->phase != PHASE_AWAITING)
        return;
    if (pc == NULL || pc->lines != 1 || pc->banner_len == 0) {
        lost(p, "timeout", NULL);
        return;
    }
    char detail[BACKEND_MAX + 64];
    snprintf(detail, sizeof detail, "the only line back, '%.*s', was taken as a banner",
             (int)pc->banner_len, pc->banner);
    lost(p, "timeout", detail);
}

/* SIGINT, SIGTERM: the summary now; a probe in flight is not counted. */
static void on_signal(yd_signal *signal, int signum, void *data)
{
    (void)signal;
    (void)signum;
    struct probe *p = data;
    if (p->phase == PHASE_CONNECTING || p->phase == PHASE_AWAITING)
        report_unsend(&p->report);
    finish(p);
}

/* ---- Replies ------------------------------------------------------------------------------ */

/*
 * If data ends with a probe's text, "MESSAGE SEQ" (then "\n", "\r\n" or nothing), returns SEQ
 * and sets *prefix_len to the bytes before it; otherwise returns 0.
 */
static uint64_t probe_seq_of(const char *message, const char *data, size_t len, size_t *prefix_len)
{
    size_t mlen = strlen(message), end = len, d;
    if (end > 0 && data[end - 1] == '\n')
        end--;
    if (end > 0 && data[end - 1] == '\r')
        end--;
    for (d = end; d > 0 && end - d < 19 && isdigit((unsigned char)data[d - 1]); d--)
        ;
    if (d == end || d < mlen + 1 || data[d - 1] != ' ' ||
        memcmp(data + d - 1 - mlen, message, mlen))
        return 0;
    uint64_t seq = 0;
    for (size_t i = d; i < end; i++)
        seq = seq * 10 + (uint64_t)(data[i] - '0');
    *prefix_len = d - 1 - mlen;
    return seq;
}

/* Keeps at most BACKEND_MAX bytes, without a line's end; other control bytes become '?'. */
static size_t clean(char *dst, const char *src, size_t len)
{
    while (len > 0 && (src[len - 1] == '\n' || src[len - 1] == '\r'))
        len--;
    len = len < BACKEND_MAX ? len : BACKEND_MAX;
    for (size_t i = 0; i < len; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    return len;
}

/* A prefix names its backend without the separator after it ("pod-a: " is "pod-a"). */
static size_t trim_prefix(const char *s, size_t len)
{
    while (len > 0 && (isspace((unsigned char)s[len - 1]) || strchr(":|>-=", s[len - 1]) != NULL))
        len--;
    return len;
}

static void answered(struct probe *p, struct probe_conn *pc, size_t bytes, const char *prefix,
                     size_t prefix_len)
{
    char backend[BACKEND_MAX];
    size_t n;
    if (pc->banner_len > 0) {
        memcpy(backend, pc->banner, pc->banner_len);
        n = pc->banner_len;
    } else {
        n = clean(backend, prefix, trim_prefix(prefix, prefix_len));
    }
    struct probe_reply reply = {
        .seq = p->seq,
        .bytes = bytes,
        .rtt_ns = probe_now_ns() - p->sent_ns,
        .connect_ns = p->connect_ns,
        .handshake_ns = p->handshake_ns,
        .tls_version = yd_conn_tls_version(pc->conn),
        .backend = backend,
        .backend_len = n,
    };
    report_reply(&p->report, &reply);
    next(p);
}

static void mismatch(struct probe *p, const char *data, size_t len)
{
    char got[BACKEND_MAX + 32], shown[BACKEND_MAX];
    size_t n = clean(shown, data, len);
    snprintf(got, sizeof got, "got %zu bytes '%.*s'%s", len, (int)n, shown,
             n < len - (data[len - 1] == '\n') ? "..." : "");
    lost(p, "mismatch", got);
}

/* Exits: an old connection's leftovers (ignored); the reply (answered); an earlier probe's
 * (late); a stream's banner (kept); anything else while awaiting (a mismatch, or with
 * --no-check the reply). */
static void on_data(yd_conn *conn, const char *data, size_t len)
{
    struct probe_conn *pc = yd_conn_data(conn);
    struct probe *p = pc->p;
    if (pc != p->cur || len == 0)
        return;
    int first = pc->lines++ == 0;
    size_t prefix = 0;
    uint64_t seq = probe_seq_of(p->o->message, data, len, &prefix);
    if (seq == p->seq && p->phase == PHASE_AWAITING) {
        answered(p, pc, len, data, prefix);
    } else if (seq != 0 && seq <= p->seq) {
        report_late(&p->report, seq);
    } else if (first && seq == 0 && p->transport != YD_UDP && !p->o->no_check) {
        pc->banner_len = clean(pc->banner, data, len);
    } else if (p->phase == PHASE_AWAITING) {
        if (p->o->no_check)
            answered(p, pc, len, "", 0);
        else
            mismatch(p, data, len);
    }
}

static void on_connect(yd_conn *conn)
{
    struct probe_conn *pc = yd_conn_data(conn);
    struct probe *p = pc->p;
    if (pc != p->cur || p->phase != PHASE_CONNECTING)
        return;
    p->handshake_ns = probe_now_ns() - p->handshake_started_ns;
    if (p->transport != YD_UDP) {
        yd_conn_set_read_mode(conn, YD_READ_LINE, REPLY_LINE_MAX);
        int err = pc->header_len > 0 ? yd_conn_write(conn, pc->header, pc->header_len) : 0;
        if (err < 0) {
            drop_conn(p);
            lost_error(p, "cannot send", err);
            return;
        }
    }
    send_line(p);
}

static void on_eof(yd_conn *conn)
{
    yd_conn_close(conn);
}

/* Over TLS, a close before any line may be a refused client certificate: say so. */
static void lost_closed_tls(struct probe *p)
{
    char detail[200];
    snprintf(detail, sizeof detail, "the server closed the connection (%s)",
             send_tls_refusal_hint(p->o->tls_options));
    lost(p, "error", detail);
}

/* Exits: an old connection (freed); the current one, between probes (the next connects
 * again); during a probe (it is lost; UDP refused: try the name's next address next time;
 * over TLS, a failed handshake while connecting, the server's alert while awaiting). */
static void on_close(yd_conn *conn, int status)
{
    send_tls_note(conn);
    struct probe_conn *pc = yd_conn_data(conn);
    struct probe *p = pc->p;
    int current = pc == p->cur;
    uint64_t lines = pc->lines;
    free(pc);
    if (!current)
        return;
    p->cur = NULL;
    if (status == -ECONNREFUSED && p->transport == YD_UDP)
        p->addr_next = (p->addr_next + 1) % p->naddrs;
    if (p->phase != PHASE_CONNECTING && p->phase != PHASE_AWAITING)
        return;
    if (status < 0 && p->o->tls != NULL)
        lost(p, "error",
             send_tls_failure(p->o->tls_options, status, p->phase == PHASE_AWAITING, lines > 0));
    else if (status < 0)
        lost_error(p, "", status);
    else if (p->o->tls != NULL && lines == 0)
        lost_closed_tls(p);
    else
        lost(p, "error", "the server closed the connection");
}

static const yd_protocol probe_protocol = {
    .on_connect = on_connect,
    .on_data = on_data,
    .on_eof = on_eof,
    .on_close = on_close,
};

/* ---- The run ------------------------------------------------------------------------------ */

static int setup(struct probe *p)
{
    const struct probe_options *o = p->o;
    if (o->proxy_source != NULL)
        proxy_addr_parse(o->proxy_source, &p->proxy_src);
    if (o->proxy_dest != NULL)
        proxy_addr_parse(o->proxy_dest, &p->proxy_dst);
    if (yd_timer_new(p->loop, on_tick, p, &p->tick) < 0 ||
        yd_timer_new(p->loop, on_deadline, p, &p->deadline) < 0 ||
        yd_signal_new(p->loop, SIGINT, on_signal, p, &p->sigint) < 0 ||
        yd_signal_new(p->loop, SIGTERM, on_signal, p, &p->sigterm) < 0) {
        fprintf(stderr, "yodel send: out of memory\n");
        return -ENOMEM;
    }
    static const char *names[] = {[YD_TCP] = "tcp", [YD_UDP] = "udp", [YD_UNIX] = "unix"};
    p->report.o = o;
    p->report.transport = names[p->transport];
    if (o->tls != NULL)
        p->report.transport = p->transport == YD_UNIX ? "tls+unix" : "tls";
    return 0;
}

int send_probe(const struct probe_options *options)
{
    struct probe *p = calloc(1, sizeof *p);
    if (p == NULL || yd_loop_new(&p->loop) < 0) {
        fprintf(stderr, "yodel send: out of memory\n");
        free(p);
        return EXIT_RUNTIME;
    }
    p->o = options;
    int status = EXIT_RUNTIME;
    if (resolve(p) == 0 && setup(p) == 0) {
        report_start(&p->report);
        start_probe(p);
        yd_loop_run(p->loop);
        report_end(&p->report);
        status = report_exit_status(&p->report);
    } else {
        finish(p);
    }
    yd_loop_free(p->loop); /* anything still open closes now, while p exists */
    report_free(&p->report);
    free(p);
    return status;
}
