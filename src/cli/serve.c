/* yodel serve: the echo server, one libyodel loop per thread. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "metrics.h"
#include "serve_identity.h"
#include "stats_report.h"
#include "yodel.h"

#define MAX_LISTEN  32
#define MAX_THREADS 256

/* While draining, how often the main loop looks whether every worker thread has finished (it is
 * also told at once by each worker; this is the fallback should that message be lost). */
#define WORKERS_POLL_MS 100
#define INETD_WATCH_MS  50
#define TLS_ERR_BYTES   512

static const char usage[] =
    "usage: yodel serve [OPTIONS]\n"
    "\n"
    "Echo server (RFC 862): TCP, UDP and Unix sockets. Listens on tcp and udp\n"
    "127.0.0.1:8888 by default: never beyond loopback unless an address says so.\n"
    "\n"
    "  -l, --listen ADDR        listen on ADDR (repeatable): HOST:PORT, tcp://HOST:PORT,\n"
    "                           udp://HOST:PORT, tls://HOST:PORT, unix:PATH, tls+unix:PATH,\n"
    "                           [::1]:PORT; port 0 = ephemeral; a host name binds every\n"
    "                           address it resolves to\n"
    "  -m, --mode MODE          raw (bytes until EOF), line, upper (lines upper-cased), or\n"
    "                           info (each line or datagram answered with a JSON line: who\n"
    "                           answered, and what it saw of the connection)\n"
    "      --once               reply to the first message, then close\n"
    "      --delay D[~JITTER]   hold each reply D (500ms, 2s, 1m), or D-JITTER to D+JITTER at\n"
    "                           random (50ms~20ms); replies stay in order\n" IDENTITY_USAGE
    "      --threads N          event loops, one per thread (default: usable CPUs)\n"
    "      --max-conns N        accept and close connections beyond N open at once\n"
    "      --idle-timeout DUR   close connections on which nothing moves for DUR\n"
    "      --max-line BYTES     longest line in line/upper mode (default 64k)\n"
    "      --drain-timeout DUR  on SIGINT/SIGTERM, wait this long for clients (default 5s)\n"
    "      --stats[=INTERVAL]   print statistics every INTERVAL (default 1s) to stderr\n"
    "      --metrics ADDR       serve Prometheus metrics at http://ADDR/metrics\n"
    "      --inetd              serve the connection (or UDP socket) on stdin (inetd,\n"
    "                           systemd Accept=yes, socat EXEC:); one thread, no --max-conns\n"
    "      --proxy-protocol     every connection starts with a PROXY v1 or v2 header (HAProxy\n"
    "                           send-proxy): the client it names is the peer; without one\n"
    "                           within 5s the connection is dropped and counted\n"
    "      --json               logs, statistics and errors as one JSON object per line\n"
    "\n"
    "TLS (for tls:// and tls+unix: listeners, and socket-activated stream sockets):\n"
    "      --cert FILE          the server's certificate chain (PEM, leaf first)\n"
    "      --key FILE           its private key (PEM; default: read from the --cert file)\n"
    "      --client-ca FILE     mutual TLS: clients must present a certificate this CA signed\n"
    "      --tls-min VERSION    1.2 (default: TLS 1.2 and 1.3) or 1.3 (TLS 1.3 only)\n"
    "      --alpn LIST          protocols to accept, by preference (h2,http/1.1); a client\n"
    "                           offering none of them is refused\n"
    "      --handshake-timeout DUR  drop a client that has not finished its handshake\n"
    "                           in DUR (default 10s)\n"
    "  -v, --verbose            log every connection and message with the peer address\n"
    "  -q, --quiet              no summary at shutdown; errors only\n"
    "  -h, --help               this help\n"
    "\n"
    "Prints 'listening on ADDR' on stdout for each socket, and 'metrics on URL' with\n"
    "--metrics, once everything is up. SIGINT/SIGTERM: stop accepting, finish echoing,\n"
    "exit 0; a second signal exits at once with status 128+signal. SIGHUP (with --cert):\n"
    "read the certificate, key and CA files again for new connections; open ones go on.\n";

struct serve;

struct worker {
    yd_loop *loop;
    yd_stats *stats[MAX_LISTEN]; /* one set of counters per listener, for --metrics */
    pthread_t thread;
    int started;
    atomic_int done; /* its loop has returned: calls still queued for it run only as it is freed */
    struct serve *serve;
};

struct serve {
    const char *listen[MAX_LISTEN];
    int nlisten;
    yd_echo_options echo;
    yd_server_options limits;
    yd_conn_limit *limit; /* --max-conns, shared by the threads */
    int threads;
    uint64_t drain_ms;
    uint64_t stats_ms; /* 0: no periodic statistics */
    int inetd;
    int quiet;
    const char *metrics_addr;
    struct metrics *metrics;
    struct metrics_counters metrics_own; /* the endpoint's connections and bad requests */
    char names[MAX_LISTEN][300];         /* each listener's first address: its metrics label */
    int datagram[MAX_LISTEN];            /* listener i is a UDP one */
    int nnames;
    yd_server *servers[MAX_LISTEN]; /* thread 0's servers: their addresses are printed */
    int nservers;
    struct worker workers[MAX_THREADS];
    yd_timer *stats_timer;
    yd_timer *keepalive; /* holds the main loop until every worker thread has finished */
    atomic_int finished; /* worker threads whose loop has returned */
    yd_signal *sighup;
    struct stats_report report;
    /* TLS: one configuration for every thread's servers, reloaded on SIGHUP. */
    yd_tls_options tls_options;
    yd_tls *tls;
    int tls_listener[MAX_LISTEN]; /* listener i serves TLS: its addresses say tls:// */
};

enum {
    OPT_ONCE = 256,
    OPT_DELAY,
    OPT_THREADS,
    OPT_MAX_CONNS,
    OPT_IDLE,
    OPT_MAX_LINE,
    OPT_DRAIN,
    OPT_STATS,
    OPT_INETD,
    OPT_METRICS,
    OPT_JSON,
    OPT_CERT,
    OPT_KEY,
    OPT_CLIENT_CA,
    OPT_TLS_MIN,
    OPT_ALPN,
    OPT_HANDSHAKE_TIMEOUT,
    OPT_PROXY_PROTOCOL
};

static const struct option longopts[] = {
    {"listen", required_argument, NULL, 'l'},
    {"mode", required_argument, NULL, 'm'},
    {"once", no_argument, NULL, OPT_ONCE},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"max-line", required_argument, NULL, OPT_MAX_LINE},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"stats", optional_argument, NULL, OPT_STATS},
    {"inetd", no_argument, NULL, OPT_INETD},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"json", no_argument, NULL, OPT_JSON},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
    {"tls-min", required_argument, NULL, OPT_TLS_MIN},
    {"alpn", required_argument, NULL, OPT_ALPN},
    {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    IDENTITY_LONGOPTS,
    {NULL, 0, NULL, 0},
};

static yd_echo_mode parse_mode(const char *value)
{
    if (strcmp(value, "raw") == 0)
        return YD_ECHO_RAW;
    if (strcmp(value, "line") == 0)
        return YD_ECHO_LINE;
    if (strcmp(value, "upper") == 0)
        return YD_ECHO_UPPER;
    if (strcmp(value, "info") == 0)
        return YD_ECHO_INFO;
    usage_error("serve", "-m: unknown mode '%s' (use raw, line, upper or info)", value);
}

static const char *opt_metrics_addr(const char *value)
{
    yd_addr a;
    if (yd_addr_parse(opt_addr("serve", "--metrics", value), &a) < 0 || a.transport != YD_TCP)
        usage_error("serve", "--metrics: '%s' is not a TCP address (HOST:PORT)", value);
    return value;
}

static int opt_tls_min(const char *value)
{
    if (strcmp(value, "1.2") == 0)
        return YD_TLS_1_2;
    if (strcmp(value, "1.3") == 0)
        return YD_TLS_1_3;
    usage_error("serve", "--tls-min: unknown version '%s' (use 1.2 or 1.3)", value);
}

/* "h2,http/1.1": names of 1 to 255 bytes, the list short enough for the library (its wire form,
 * each name behind its length byte, fits 256 bytes). */
static const char *opt_alpn(const char *value)
{
    size_t wire = 0;
    for (const char *p = value;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255)
            usage_error("serve", "--alpn: '%s' is not a list of protocol names (h2,http/1.1)",
                        value);
        wire += 1 + n;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    if (wire > 256)
        usage_error("serve", "--alpn: '%s' is too long", value);
    return value;
}

/* Whether systemd passes us sockets (sd_listen_fds(3)): then they are served, not -l's. */
static int activation_pending(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    return pid != NULL && fds != NULL && atol(pid) == (long)getpid();
}

/* The TLS options belong together: a tls:// listener needs --cert, and --cert a TLS socket. */
static void check_tls_args(struct serve *s)
{
    const yd_tls_options *o = &s->tls_options;
    int tls_listeners = 0;
    for (int i = 0; i < s->nlisten; i++) {
        yd_addr a;
        yd_addr_parse(s->listen[i], &a); /* checked by opt_addr */
        if (!a.tls)
            continue;
        tls_listeners++;
        if (o->cert_file == NULL)
            usage_error("serve", "-l %s: a TLS listener needs --cert FILE (and --key FILE)",
                        s->listen[i]);
    }
    if (o->cert_file == NULL) {
        const char *needs = o->key_file               ? "--key"
                            : o->ca_file              ? "--client-ca"
                            : o->min_version          ? "--tls-min"
                            : o->alpn                 ? "--alpn"
                            : o->handshake_timeout_ms ? "--handshake-timeout"
                                                      : NULL;
        if (needs != NULL)
            usage_error("serve", "%s needs --cert FILE", needs);
        return;
    }
    if (s->inetd)
        usage_error("serve", "--cert cannot be used with --inetd");
    if (tls_listeners == 0 && !activation_pending())
        usage_error("serve", "--cert: no TLS listener to use it on (add -l tls://HOST:PORT)");
}

static void parse_args(struct serve *s, int argc, char **argv)
{
    int c;
    while ((c = cli_getopt("serve", argc, argv, "l:m:vqh", longopts)) != -1) {
        switch (c) {
        case 'l':
            if (s->nlisten == MAX_LISTEN)
                usage_error("serve", "-l: at most %d addresses", MAX_LISTEN);
            s->listen[s->nlisten++] = opt_addr("serve", "-l", optarg);
            break;
        case 'm':
            s->echo.mode = parse_mode(optarg);
            break;
        case OPT_ONCE:
            s->echo.once = 1;
            break;
        case OPT_DELAY:
            parse_delay(&s->echo, optarg);
            break;
        case OPT_THREADS:
            s->threads = (int)opt_long("serve", "--threads", optarg, 1, MAX_THREADS);
            break;
        case OPT_MAX_CONNS:
            s->limits.max_conns = (size_t)opt_long("serve", "--max-conns", optarg, 1, 10000000);
            break;
        case OPT_IDLE:
            s->limits.idle_timeout_ms = opt_duration_ms("serve", "--idle-timeout", optarg);
            break;
        case OPT_MAX_LINE:
            s->echo.max_line_bytes = opt_size("serve", "--max-line", optarg, 1, YD_MAX_LINE_LIMIT);
            break;
        case OPT_DRAIN:
            s->drain_ms = opt_duration_ms("serve", "--drain-timeout", optarg);
            break;
        case OPT_STATS:
            s->stats_ms = optarg ? opt_duration_ms("serve", "--stats", optarg) : 1000;
            if (s->stats_ms == 0)
                usage_error("serve", "--stats: the interval must be above 0");
            break;
        case OPT_INETD:
            s->inetd = 1;
            break;
        case OPT_METRICS:
            s->metrics_addr = opt_metrics_addr(optarg);
            break;
        case OPT_JSON:
            s->echo.json = 1;
            break;
        case OPT_CERT:
            s->tls_options.cert_file = optarg;
            break;
        case OPT_KEY:
            s->tls_options.key_file = optarg;
            break;
        case OPT_CLIENT_CA:
            s->tls_options.ca_file = optarg;
            break;
        case OPT_TLS_MIN:
            s->tls_options.min_version = opt_tls_min(optarg);
            break;
        case OPT_ALPN:
            s->tls_options.alpn = opt_alpn(optarg);
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            s->tls_options.handshake_timeout_ms =
                opt_duration_ms("serve", "--handshake-timeout", optarg);
            if (s->tls_options.handshake_timeout_ms == 0)
                usage_error("serve", "--handshake-timeout: the timeout must be above 0");
            break;
        case OPT_PROXY_PROTOCOL:
            s->limits.proxy_protocol = 1;
            break;
        case 'v':
            s->echo.verbose = 1;
            break;
        case 'q':
            s->quiet = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(EXIT_OK);
        default:
            parse_identity_option(&s->echo, c, optarg);
        }
    }
    if (optind < argc)
        usage_error("serve", "unexpected argument '%s'", argv[optind]);
    check_identity_options(&s->echo, s->listen, s->nlisten);
    if (s->echo.verbose && s->quiet)
        usage_error("serve", "-v and -q contradict each other");
    if (s->inetd && s->metrics_addr != NULL)
        usage_error("serve", "--metrics cannot be used with --inetd");
    if (s->inetd && s->limits.proxy_protocol)
        usage_error("serve", "--proxy-protocol cannot be used with --inetd");
    check_tls_args(s);
}

/* ---- Logging -------------------------------------------------------------------------------- */

/*
 * One line on stderr, in one write: "yodel serve: MESSAGE", or with --json
 * {"ts":...,"event":"error","message":"MESSAGE"}.
 */
__attribute__((format(printf, 2, 3))) static void say(const struct serve *s, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct cli_line l = {.len = 0};
    if (s->echo.json) {
        cli_line_begin_event(&l, "error");
        cli_line_add(&l, ",\"message\":");
        cli_line_add_json_string(&l, msg);
        cli_line_add(&l, "}");
    } else {
        cli_line_add(&l, "yodel serve: %s", msg);
    }
    cli_line_write(&l);
}

/* ---- Counters ------------------------------------------------------------------------------ */

/* The counters of listener i on thread t, created on first use (before the threads start). */
static yd_stats *stats_for(struct serve *s, int t, int i)
{
    if (i >= MAX_LISTEN)
        i = MAX_LISTEN - 1;
    if (s->workers[t].stats[i] == NULL && yd_stats_new(&s->workers[t].stats[i]) < 0)
        return NULL;
    return s->workers[t].stats[i];
}

/* Names listener i after its first socket, for the metrics' listener label; keeps the server
 * (thread 0's) to print its addresses once everything is up. */
/* Socket k of listener i's server, as "tcp://127.0.0.1:8888"; a TLS listener's as "tls://..."
 * or "tls+unix:PATH", so that the address read back connects the way it must. */
static int listener_address(const struct serve *s, int i, const yd_server *srv, unsigned k,
                            char *buf, size_t len)
{
    int n = yd_server_address(srv, k, buf, len);
    yd_addr a;
    if (n < 0 || !s->tls_listener[i] || yd_addr_parse(buf, &a) < 0)
        return n;
    a.tls = 1;
    return yd_addr_format(&a, buf, len);
}

static void name_listener(struct serve *s, int i, yd_server *srv)
{
    if (i >= MAX_LISTEN)
        return;
    if (listener_address(s, i, srv, 0, s->names[i], sizeof s->names[i]) < 0)
        snprintf(s->names[i], sizeof s->names[i], "listener%d", i);
    s->datagram[i] = strncmp(s->names[i], "udp://", 6) == 0;
    if (s->nnames <= i)
        s->nnames = i + 1;
    s->servers[s->nservers++] = srv;
}

/* ---- Listening ---------------------------------------------------------------------------- */

/* addr with its port replaced, so that every thread binds the port the first one got. */
static void with_port(const char *addr, int port, char *out, size_t len)
{
    yd_addr a;
    yd_addr_parse(addr, &a); /* checked by opt_addr */
    a.port = (uint16_t)port;
    yd_addr_format(&a, out, len);
}

/*
 * Listens on every address on every thread. Thread 0 owns each port: the address must be free
 * (another process, or another -l of ours, holding it is "address already in use"); the other
 * threads join thread 0's port with SO_REUSEPORT.
 */
static int listen_all(struct serve *s)
{
    for (int i = 0; i < s->nlisten; i++) {
        yd_addr a;
        yd_addr_parse(s->listen[i], &a);
        int port = -1;
        for (int t = 0; t < s->threads; t++) {
            /* A Unix path can be bound once: the first loop serves it. */
            if (t > 0 && a.transport == YD_UNIX)
                break;
            char addr[300];
            if (port >= 0)
                with_port(s->listen[i], port, addr, sizeof addr);
            else
                snprintf(addr, sizeof addr, "%s", s->listen[i]);
            yd_server_options so = s->limits;
            so.stats = stats_for(s, t, i);
            if (so.stats == NULL) {
                say(s, "out of memory");
                return -1;
            }
            /* Thread 0 must find the port free; the others join it. */
            so.reuseport = s->threads == 1 ? YD_REUSEPORT_OFF
                           : t == 0        ? YD_REUSEPORT_OWN
                                           : YD_REUSEPORT_JOIN;
            so.limit = s->limit; /* --max-conns counts across every thread */
            so.max_conns = 0;
            so.tls = s->tls; /* the library uses it for tls:// addresses only */
            s->tls_listener[i] = a.tls;
            yd_server *srv;
            int err = yd_echo_listen(s->workers[t].loop, addr, &s->echo, &so, &srv);
            if (err < 0) {
                say(s, "cannot listen on %s: %s", s->listen[i], yd_strerror(err));
                return -1;
            }
            if (t > 0)
                continue;
            name_listener(s, i, srv);
            port = yd_server_port(srv);
        }
    }
    return 0;
}

/* The name systemd gives descriptor i (FileDescriptorName=), from LISTEN_FDNAMES "a:b:c". */
static int fd_name_is(const char *names, int i, const char *name)
{
    for (; names != NULL && i > 0; i--) {
        names = strchr(names, ':');
        if (names != NULL)
            names++;
    }
    if (names == NULL)
        return 0;
    size_t n = strcspn(names, ":");
    return n == strlen(name) && strncmp(names, name, n) == 0;
}

/*
 * Whether activated descriptor fd (the i-th) is served with TLS. Datagram sockets never are.
 * Stream sockets named "tls" (FileDescriptorName=tls) are; when any descriptor has that name,
 * only those are, so that one unit can pass a plain and a TLS port. Otherwise, every stream
 * socket is TLS when --cert is given. Returns 1, 0, or -1 (said why) for a socket named "tls"
 * without --cert.
 */
static int activated_tls(const struct serve *s, int fd, int i, const char *names)
{
    int type;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
        return 0; /* not a socket at all: yd_echo_adopt says so */
    int named = 0;
    for (int k = 0; k < MAX_LISTEN && !named; k++)
        named = fd_name_is(names, k, "tls");
    if (!named)
        return s->tls != NULL;
    if (!fd_name_is(names, i, "tls"))
        return 0;
    if (s->tls == NULL) {
        say(s, "socket activation: descriptor %d is named tls, and TLS needs --cert FILE", fd);
        return -1;
    }
    return 1;
}

/*
 * systemd socket activation (sd_listen_fds(3)): serve descriptors 3.. when LISTEN_PID is us.
 * Every thread serves every socket, through its own duplicate of the descriptor: the
 * duplicates are one socket, so the threads share its backlog (or its datagrams), and the
 * kernel wakes whichever loop is free.
 * Returns how many were adopted, 0 when not activated, -1 on error.
 */
static int adopt_activated(struct serve *s)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (pid == NULL || fds == NULL || atol(pid) != (long)getpid())
        return 0;
    char *end;
    errno = 0;
    long n = strtol(fds, &end, 10);
    if (errno != 0 || end == fds || *end != '\0' || n < 0 || n > MAX_LISTEN) {
        say(s, "socket activation: LISTEN_FDS=%s is not a number of descriptors from 0 to %d", fds,
            MAX_LISTEN);
        return -1;
    }
    char names[1024] = "";
    if (getenv("LISTEN_FDNAMES") != NULL)
        snprintf(names, sizeof names, "%s", getenv("LISTEN_FDNAMES"));
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    for (int i = 0; i < (int)n; i++) {
        int tls = activated_tls(s, 3 + i, i, names);
        if (tls < 0)
            return -1;
        s->tls_listener[i] = tls;
        for (int t = 0; t < s->threads; t++) {
            int fd = t == 0 ? 3 + i : fcntl(3 + i, F_DUPFD_CLOEXEC, 3);
            if (fd < 0) {
                say(s, "cannot serve socket-activated descriptor %d: %s", 3 + i,
                    yd_strerror(-errno));
                return -1;
            }
            yd_server_options so = s->limits;
            so.stats = stats_for(s, t, i);
            if (so.stats == NULL) {
                say(s, "out of memory");
                return -1;
            }
            so.limit = s->limit;
            so.max_conns = 0;
            so.tls = tls ? s->tls : NULL;
            yd_server *srv;
            int err = yd_echo_adopt(s->workers[t].loop, fd, &s->echo, &so, &srv);
            if (err < 0) {
                say(s, "cannot serve socket-activated descriptor %d: %s", 3 + i, yd_strerror(err));
                return -1;
            }
            if (t == 0)
                name_listener(s, i, srv);
        }
    }
    return (int)n;
}

/* The "listening on" lines, once every listener of every thread (and --metrics) is up. */
static void print_listening(struct serve *s)
{
    for (int i = 0; i < s->nservers; i++) {
        for (unsigned k = 0; k < yd_server_socket_count(s->servers[i]); k++) {
            char name[300];
            if (listener_address(s, i, s->servers[i], k, name, sizeof name) > 0)
                printf("listening on %s\n", name);
        }
    }
    char url[320];
    if (s->metrics != NULL && metrics_url(s->metrics, url, sizeof url) > 0)
        printf("metrics on %s\n", url);
    fflush(stdout);
}

/* ---- inetd ------------------------------------------------------------------------------- */

/* Whether descriptor fd is the same file as *st. */
static int same_file(int fd, const struct stat *st)
{
    struct stat other;
    return fstat(fd, &other) == 0 && other.st_dev == st->st_dev && other.st_ino == st->st_ino;
}

/*
 * --inetd: standard input must be a socket (the connection, or a UDP socket); we read and write
 * it through descriptor 0. Descriptors 1 and 2 may be that socket too (inetd gives it as all
 * three): they are pointed at /dev/null, so that logs never go to the client, and so that
 * closing the connection really closes it (the client sees the end at once, not when we exit).
 */
static int check_inetd_stdio(struct serve *s)
{
    struct stat in;
    if (fstat(STDIN_FILENO, &in) < 0 || !S_ISSOCK(in.st_mode)) {
        say(s, "--inetd: standard input is not a socket (run it from inetd, systemd Accept=yes, "
               "or socat EXEC:)");
        return -1;
    }
    for (int fd = STDOUT_FILENO; fd <= STDERR_FILENO; fd++) {
        if (!same_file(fd, &in))
            continue;
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, fd) < 0) {
            /* Nowhere to log but the client: better to fail than to write to it. */
            return -1;
        }
        close(null);
    }
    return 0;
}

/* --inetd with --stats: once the one connection is gone, the stats timer must not keep the
 * process alive. Looks every INETD_WATCH_MS. */
static void on_inetd_watch(yd_timer *timer, void *data)
{
    struct serve *s = data;
    yd_stats_snapshot now;
    memset(&now, 0, sizeof now);
    yd_stats_add_to(s->workers[0].stats[0], &now);
    if (now.conns_closed == 0 || now.conns_active > 0)
        return;
    yd_timer_free(timer);
    if (s->stats_timer != NULL) {
        yd_timer_free(s->stats_timer);
        s->stats_timer = NULL;
    }
}

static int serve_inetd(struct serve *s)
{
    yd_server_options so = s->limits;
    so.stats = stats_for(s, 0, 0);
    if (so.stats == NULL) {
        say(s, "out of memory");
        return -1;
    }
    so.max_conns = 0; /* one connection: nothing to limit */
    /* stdout is the client here: nothing may be printed to it. */
    int err = yd_echo_serve_fd(s->workers[0].loop, STDIN_FILENO, &s->echo, &so);
    if (err < 0) {
        say(s, "--inetd: cannot serve standard input: %s", yd_strerror(err));
        return -1;
    }
    return 0;
}

/* ---- Statistics and shutdown -------------------------------------------------------------- */

/*
 * Every counter of the process: the listeners' on every thread, and the metrics endpoint's bad
 * requests as http. Only those: scrapes are not echo traffic, and a request the library ends
 * (too long, too slow) is already one bad request; its kinds, added here, would count it twice
 * and make the summary disagree with /metrics.
 */
static void merged(const struct serve *s, struct serve_counts *c)
{
    memset(c, 0, sizeof *c);
    for (int t = 0; t < s->threads; t++)
        for (int i = 0; i < MAX_LISTEN; i++)
            if (s->workers[t].stats[i] != NULL)
                yd_stats_add_to(s->workers[t].stats[i], &c->sum);
    c->http_errors = atomic_load_explicit(&s->metrics_own.bad_requests, memory_order_relaxed);
}

/* metrics_collect_fn: listener i's counters, summed over the threads. */
static int collect_listener(void *ctx, unsigned i, struct metrics_listener *out)
{
    struct serve *s = ctx;
    if (i >= (unsigned)s->nnames)
        return 0;
    out->name = s->names[i];
    out->datagram = s->datagram[i];
    for (int t = 0; t < s->threads; t++)
        if (s->workers[t].stats[i] != NULL)
            yd_stats_add_to(s->workers[t].stats[i], &out->sum);
    return 1;
}

static int start_metrics(struct serve *s)
{
    int err = yd_stats_new(&s->metrics_own.conns);
    if (err == 0)
        err = metrics_start(s->workers[0].loop, s->metrics_addr, collect_listener, s,
                            &s->metrics_own, &s->metrics);
    if (err < 0) {
        say(s, "cannot serve metrics on %s: %s", s->metrics_addr, yd_strerror(err));
        return -1;
    }
    return 0;
}

static void on_stats_timer(yd_timer *timer, void *data)
{
    (void)timer;
    struct serve *s = data;
    struct serve_counts now;
    merged(s, &now);
    stats_report_interval(&s->report, &now, yd_loop_now_ms(s->workers[0].loop));
}

/* On the main loop: lets it return once every worker thread has finished (and it has too). */
static void check_workers(struct serve *s)
{
    if (s->keepalive != NULL && atomic_load(&s->finished) == s->threads - 1) {
        yd_timer_free(s->keepalive);
        s->keepalive = NULL;
    }
}

static void on_keepalive(yd_timer *timer, void *data)
{
    (void)timer;
    check_workers(data);
}

static void on_worker_finished(yd_loop *loop, void *data)
{
    (void)loop;
    check_workers(data);
}

static void drain_worker(yd_loop *loop, void *data)
{
    struct worker *w = data;
    if (!atomic_load(&w->done))
        yd_loop_drain(loop, w->serve->drain_ms);
}

/* yd_shutdown_cb, second signal: the library then exits at once with 128 + signum. */
static void on_second_signal(yd_loop *loop, int signum, void *data)
{
    (void)loop;
    struct serve *s = data;
    struct cli_line l = {.len = 0};
    if (s->echo.json) {
        cli_line_begin_event(&l, "exiting");
        cli_line_add(&l, ",\"signal\":%d}", signum);
    } else {
        cli_line_add(&l, "yodel serve: second signal, exiting now");
    }
    cli_line_write(&l);
}

/* yd_shutdown_cb, first signal: every thread drains. */
static void on_first_signal(yd_loop *loop, int signum, void *data)
{
    (void)loop;
    struct serve *s = data;
    struct cli_line l = {.len = 0};
    if (!s->quiet && s->echo.json) {
        cli_line_begin_event(&l, "draining");
        cli_line_add(&l, ",\"signal\":%d,\"drain_ms\":%llu}", signum,
                     (unsigned long long)s->drain_ms);
        cli_line_write(&l);
    } else if (!s->quiet) {
        cli_line_add(&l, "yodel serve: %s, draining connections (up to %llu ms)", strsignal(signum),
                     (unsigned long long)s->drain_ms);
        cli_line_write(&l);
    }
    if (s->stats_timer != NULL) {
        yd_timer_free(s->stats_timer);
        s->stats_timer = NULL;
    }
    metrics_draining(s->metrics); /* /readyz says 503 while connections finish */
    for (int t = 1; t < s->threads; t++)
        yd_loop_call_threadsafe(s->workers[t].loop, drain_worker, &s->workers[t]);
    yd_loop_drain(s->workers[0].loop, s->drain_ms);
    /* The main loop stays up (and a second signal is acted on at once) until the other threads
     * have drained too; they say so when they finish, and we also look now and then. */
    if (s->keepalive != NULL)
        yd_timer_start(s->keepalive, WORKERS_POLL_MS, WORKERS_POLL_MS);
    check_workers(s);
}

/*
 * SIGHUP: the certificate, key and CA files are read again, once, for the one configuration
 * every thread shares; connections open go on with what they negotiated, new ones get the new
 * files. A reload that fails keeps the old configuration and says why.
 */
static void on_sighup(yd_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    struct serve *s = data;
    char err[TLS_ERR_BYTES];
    if (s->tls == NULL) {
        /* systemctl reload must not kill a server that has nothing to reload. */
        if (!s->quiet)
            say(s, "SIGHUP: nothing to reload (no --cert)");
        return;
    }
    if (yd_tls_reload(s->tls, err, sizeof err) < 0) {
        say(s, "reload failed: %s (still serving the old certificate)", err);
        return;
    }
    if (s->quiet)
        return;
    struct cli_line l = {.len = 0};
    if (s->echo.json) {
        cli_line_begin_event(&l, "reloaded");
        cli_line_add(&l, ",\"cert\":");
        cli_line_add_json_string(&l, s->tls_options.cert_file);
        cli_line_add(&l, "}");
    } else {
        cli_line_add(&l, "yodel serve: reloaded the certificate from %s", s->tls_options.cert_file);
    }
    cli_line_write(&l);
}

/* --cert: the TLS configuration; SIGHUP reloads it (watched on the main loop only, and without
 * --cert too, so that a reload never kills the server). */
static int setup_tls(struct serve *s)
{
    char err[TLS_ERR_BYTES];
    int r = s->tls_options.cert_file == NULL
                ? 0
                : yd_tls_server_new(&s->tls_options, &s->tls, err, sizeof err);
    if (r < 0) {
        say(s, "cannot set up TLS: %s", err[0] ? err : yd_strerror(r));
        return -1;
    }
    r = yd_signal_new(s->workers[0].loop, SIGHUP, on_sighup, s, &s->sighup);
    if (r < 0) {
        say(s, "cannot watch SIGHUP: %s", yd_strerror(r));
        return -1;
    }
    return 0;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    yd_loop_run(w->loop);
    atomic_store(&w->done, 1);
    atomic_fetch_add(&w->serve->finished, 1);
    /* If this cannot be queued (out of memory), the main loop's poll still sees the count. */
    yd_loop_call_threadsafe(w->serve->workers[0].loop, on_worker_finished, w->serve);
    return NULL;
}

static void free_workers(struct serve *s)
{
    for (int t = 0; t < s->threads; t++)
        if (s->workers[t].started)
            pthread_join(s->workers[t].thread, NULL);
    /* Freed with the main loop, as any handle left on it; a worker's last message, run as the
     * loop is freed, must not touch it. */
    s->keepalive = NULL;
    for (int t = 0; t < s->threads; t++) {
        if (s->workers[t].loop != NULL)
            yd_loop_free(s->workers[t].loop);
        for (int i = 0; i < MAX_LISTEN; i++)
            yd_stats_free(s->workers[t].stats[i]);
    }
    yd_stats_free(s->metrics_own.conns); /* after the loop: a request still open counts into it */
    yd_conn_limit_free(s->limit);
    yd_tls_free(s->tls);
}

/* Tells the other threads to stop at once: they are started only when everything is up, so
 * this is only for a failure while starting them. */
static void stop_worker(yd_loop *loop, void *data)
{
    struct worker *w = data;
    if (!atomic_load(&w->done))
        yd_loop_drain(loop, 0);
}

static int run(struct serve *s)
{
    if (s->inetd && check_inetd_stdio(s) < 0)
        return EXIT_RUNTIME;
    int err;
    if (s->limits.max_conns > 0 && (err = yd_conn_limit_new(s->limits.max_conns, &s->limit)) < 0) {
        say(s, "cannot set up --max-conns: %s", yd_strerror(err));
        return EXIT_RUNTIME;
    }
    for (int t = 0; t < s->threads; t++) {
        s->workers[t].serve = s;
        if ((err = yd_loop_new(&s->workers[t].loop)) < 0) {
            say(s, "cannot create event loop %d of %d: %s", t + 1, s->threads, yd_strerror(err));
            return EXIT_RUNTIME;
        }
    }
    yd_loop *main_loop = s->workers[0].loop;
    /* Signals are watched before the first "listening on" line: a script that stops us as soon
     * as it reads that line must get the graceful shutdown, not the default death. */
    if ((err = yd_loop_on_shutdown_signals(main_loop, on_first_signal, on_second_signal, s)) < 0) {
        say(s, "cannot watch signals: %s", yd_strerror(err));
        return EXIT_RUNTIME;
    }
    if (setup_tls(s) < 0)
        return EXIT_RUNTIME;
    if (s->inetd) {
        if (serve_inetd(s) < 0)
            return EXIT_RUNTIME;
    } else {
        int activated = adopt_activated(s);
        if (activated < 0 || (activated == 0 && listen_all(s) < 0))
            return EXIT_RUNTIME;
        if (s->metrics_addr != NULL && start_metrics(s) < 0)
            return EXIT_RUNTIME;
        /* Only now is every promise of those lines kept. */
        print_listening(s);
    }
    stats_report_init(&s->report, s->echo.json, yd_loop_now_ms(main_loop));
    if (s->stats_ms > 0) {
        if ((err = yd_timer_new(main_loop, on_stats_timer, s, &s->stats_timer)) < 0 ||
            (err = yd_timer_start(s->stats_timer, s->stats_ms, s->stats_ms)) < 0) {
            say(s, "cannot start the --stats timer: %s", yd_strerror(err));
            return EXIT_RUNTIME;
        }
        yd_timer *watch;
        if (s->inetd && ((err = yd_timer_new(main_loop, on_inetd_watch, s, &watch)) < 0 ||
                         (err = yd_timer_start(watch, INETD_WATCH_MS, INETD_WATCH_MS)) < 0)) {
            say(s, "cannot start the --stats timer: %s", yd_strerror(err));
            return EXIT_RUNTIME;
        }
    }
    if (s->threads > 1) {
        /* Armed far ahead: it only holds the loop; on_signal makes it poll. */
        if ((err = yd_timer_new(main_loop, on_keepalive, s, &s->keepalive)) < 0 ||
            (err = yd_timer_start(s->keepalive, 3600 * 1000, 3600 * 1000)) < 0) {
            say(s, "cannot start the shutdown timer: %s", yd_strerror(err));
            return EXIT_RUNTIME;
        }
    }
    for (int t = 1; t < s->threads; t++) {
        if ((err = pthread_create(&s->workers[t].thread, NULL, run_worker, &s->workers[t])) != 0) {
            say(s, "cannot start thread %d of %d: %s", t + 1, s->threads, strerror(err));
            for (int u = 1; u < t; u++)
                yd_loop_call_threadsafe(s->workers[u].loop, stop_worker, &s->workers[u]);
            return EXIT_RUNTIME;
        }
        s->workers[t].started = 1;
    }
    yd_loop_run(main_loop);
    metrics_stop(s->metrics);
    s->metrics = NULL;
    for (int t = 1; t < s->threads; t++) {
        pthread_join(s->workers[t].thread, NULL);
        s->workers[t].started = 0;
    }
    if (!s->quiet) {
        struct serve_counts total;
        merged(s, &total);
        stats_report_summary(&s->report, &total, yd_loop_now_ms(main_loop));
    }
    return EXIT_OK;
}

int cmd_serve(int argc, char **argv)
{
    static struct serve s; /* large (one slot per possible thread): keep it off the stack */
    memset(&s, 0, sizeof s);
    s.drain_ms = 5000;
    parse_args(&s, argc, argv);
    if (s.threads == 0)
        s.threads = cli_cpu_count();
    if (s.inetd)
        s.threads = 1;
    if (s.nlisten == 0) {
        s.listen[s.nlisten++] = "tcp://127.0.0.1:8888";
        s.listen[s.nlisten++] = "udp://127.0.0.1:8888";
    }
    /* A peer that resets while we write must be an error to handle, not a signal that kills. */
    signal(SIGPIPE, SIG_IGN);
    int status = run(&s);
    free_workers(&s);
    return status;
}
