/*
 * yodel send: the tutorials' echo client. Sends each message as a line and checks that the same
 * line comes back; many clients at once; a message in parts with a half-close; UDP with
 * retries; or stdin to the server and the echo to stdout, like netcat.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "yodel.h"

static const char usage[] =
    "usage: yodel send [OPTIONS] MESSAGE...\n"
    "       yodel send [OPTIONS] -\n"
    "\n"
    "Echo client: sends each MESSAGE as a line ('\\n' appended), prints each reply\n"
    "and checks it is the line that was sent. With '-', streams standard input to\n"
    "the server and the echo to standard output, half-closing at end of input.\n"
    "\n"
    "  -c, --connect ADDR     server: HOST:PORT (default 127.0.0.1:8888), [::1]:PORT,\n"
    "                         unix:PATH, udp://HOST:PORT\n"
    "  -n, --clients N        N concurrent clients; client i sends 'MESSAGE from i'\n"
    "      --parts            send everything in three writes, half-close, read to EOF\n"
    "      --udp              one datagram per message (same as a udp:// address)\n"
    "      --timeout DURATION how long to wait for each reply (default 5s)\n"
    "      --retries N        UDP: send a datagram up to N times (default 3)\n"
    "  -q, --quiet            do not print the replies\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 when every reply matched, 1 on any mismatch, loss or\n"
    "connection error, 2 for bad usage.\n";

struct run {
    yd_loop *loop;
    const char *addr;
    char **messages;
    int nmessages;
    int clients;
    int parts;
    int udp;
    int quiet;
    uint64_t timeout_ms;
    int retries;
    int failures;
    int lost;
};

struct client {
    struct run *run;
    int id;
    yd_conn *conn;
    yd_timer *timer;
    char *expect; /* the payload: every line this client sends, back to back */
    size_t expect_len;
    size_t sent;     /* bytes of expect sent: all but the current line are answered */
    size_t line_len; /* length of the line awaiting its reply */
    char *got;       /* --parts: everything received so far */
    size_t got_len;
    int tries;
    int done;
};

static void fail(struct client *c, const char *fmt, const char *detail)
{
    fprintf(stderr, "yodel send: ");
    if (c->run->clients > 1)
        fprintf(stderr, "client %d: ", c->id);
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    c->run->failures++;
}

static void print_reply(struct client *c, const char *data, size_t len)
{
    if (!c->run->quiet) {
        fwrite(data, 1, len, stdout);
        fflush(stdout);
    }
}

/* Writes the next line (or, for --parts, the whole payload in three writes). */
static void send_next(struct client *c)
{
    struct run *run = c->run;
    if (run->parts) {
        size_t third = c->expect_len / 3;
        size_t cuts[4] = {0, third, 2 * third, c->expect_len};
        for (int i = 0; i < 3; i++)
            if (cuts[i + 1] > cuts[i])
                yd_conn_write(c->conn, c->expect + cuts[i], cuts[i + 1] - cuts[i]);
        c->sent = c->expect_len;
        yd_conn_shutdown(c->conn);
    } else {
        const char *line = c->expect + c->sent;
        const char *nl = memchr(line, '\n', c->expect_len - c->sent);
        c->line_len = (size_t)(nl - line) + 1;
        yd_conn_write(c->conn, line, c->line_len);
    }
    c->tries++;
    yd_timer_start(c->timer, run->timeout_ms, 0);
}

static void finish(struct client *c)
{
    c->done = 1;
    yd_timer_stop(c->timer);
    yd_conn_close(c->conn);
}

/* The current line is answered (or given up on): send the next, or finish. */
static void next_message(struct client *c)
{
    c->sent += c->line_len;
    c->tries = 0;
    if (c->sent < c->expect_len)
        send_next(c);
    else
        finish(c);
}

static void on_timeout(yd_timer *timer, void *data)
{
    (void)timer;
    struct client *c = data;
    struct run *run = c->run;
    if (run->udp && !run->parts) {
        if (c->tries < run->retries) {
            send_next(c);
            return;
        }
        /* Lost: the datagram or its echo. Report it and go on with the next message. */
        run->lost++;
        fail(c, "no reply to %s", "a datagram after every retry");
        next_message(c);
        return;
    }
    fail(c, "timed out waiting for the reply from %s", run->addr);
    c->done = 1;
    yd_conn_abort(c->conn);
}

static void on_connect(yd_conn *conn)
{
    struct client *c = yd_conn_data(conn);
    if (!c->run->parts && !c->run->udp)
        yd_conn_set_read_mode(conn, YD_READ_LINE, c->expect_len + 1);
    send_next(c);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    struct client *c = yd_conn_data(conn);
    if (c->done)
        return;
    if (c->run->parts) {
        /* Everything that came back, up to one byte more than was sent (a mismatch anyway). */
        size_t room = c->expect_len + 1 - c->got_len;
        size_t n = len < room ? len : room;
        memcpy(c->got + c->got_len, data, n);
        c->got_len += n;
        print_reply(c, data, len);
        return;
    }
    print_reply(c, data, len);
    const char *want = c->expect + c->sent;
    if (len != c->line_len || memcmp(data, want, len) != 0) {
        c->run->failures++;
        fprintf(stderr, "yodel send: %sreply differs: sent %zu bytes '%.*s', got %zu bytes\n",
                c->run->clients > 1 ? "a " : "", c->line_len, (int)c->line_len - 1, want, len);
    }
    next_message(c);
}

static void on_eof(yd_conn *conn)
{
    struct client *c = yd_conn_data(conn);
    if (c->done) {
        yd_conn_close(conn);
        return;
    }
    if (c->run->parts) {
        if (c->got_len != c->expect_len || memcmp(c->got, c->expect, c->got_len) != 0)
            fail(c, "what came back differs from what was sent to %s", c->run->addr);
    } else {
        fail(c, "%s closed the connection before replying", c->run->addr);
    }
    finish(c);
}

static void on_close(yd_conn *conn, int status)
{
    struct client *c = yd_conn_data(conn);
    if (!c->done) {
        c->done = 1;
        if (status == -EMSGSIZE)
            fail(c, "the reply is longer than the message sent to %s", c->run->addr);
        else if (status < 0)
            fail(c, "cannot talk to the server: %s", yd_strerror(status));
        else
            fail(c, "%s closed the connection before replying", c->run->addr);
    }
    yd_timer_free(c->timer);
    c->timer = NULL;
}

static const yd_protocol client_protocol = {
    .on_connect = on_connect,
    .on_data = on_data,
    .on_eof = on_eof,
    .on_close = on_close,
};

/* Client i's payload: each message as a line, " from i" added when there are several clients. */
static char *build_payload(const struct run *run, int id, size_t *len)
{
    size_t cap = 1;
    for (int i = 0; i < run->nmessages; i++)
        cap += strlen(run->messages[i]) + 32;
    char *p = malloc(cap);
    if (p == NULL)
        return NULL;
    size_t n = 0;
    for (int i = 0; i < run->nmessages; i++) {
        if (run->clients > 1)
            n += (size_t)snprintf(p + n, cap - n, "%s from %d\n", run->messages[i], id);
        else
            n += (size_t)snprintf(p + n, cap - n, "%s\n", run->messages[i]);
    }
    *len = n;
    return p;
}

static int send_messages(struct run *run)
{
    struct client *clients = calloc((size_t)run->clients, sizeof *clients);
    if (clients == NULL)
        return EXIT_RUNTIME;
    for (int i = 0; i < run->clients; i++) {
        struct client *c = &clients[i];
        c->run = run;
        c->id = i;
        c->expect = build_payload(run, i, &c->expect_len);
        if (run->parts)
            c->got = malloc(c->expect_len + 1);
        if (c->expect == NULL || (run->parts && c->got == NULL) ||
            yd_timer_new(run->loop, on_timeout, c, &c->timer) < 0) {
            fprintf(stderr, "yodel send: out of memory\n");
            return EXIT_RUNTIME;
        }
        int err = yd_conn_connect(run->loop, run->addr, &client_protocol, c, &c->conn);
        if (err < 0) {
            fprintf(stderr, "yodel send: cannot connect to %s: %s\n", run->addr, yd_strerror(err));
            yd_timer_free(c->timer);
            c->timer = NULL;
            run->failures++;
            break;
        }
    }
    yd_loop_run(run->loop);
    for (int i = 0; i < run->clients; i++) {
        free(clients[i].expect);
        free(clients[i].got);
    }
    free(clients);
    if (run->lost > 0)
        fprintf(stderr, "yodel send: %d datagram(s) lost\n", run->lost);
    return run->failures > 0 ? EXIT_RUNTIME : EXIT_OK;
}

/* ---- '-': standard input to the server, the echo to standard output ---------------------- */

struct pipe_run {
    struct run *run;
    yd_conn *server;
    yd_conn *input; /* NULL when stdin is a regular file, read with plain read() */
    yd_timer *timer;
    int input_done;
    int failed;
};

static void input_finished(struct pipe_run *p)
{
    p->input_done = 1;
    yd_conn_shutdown(p->server);
    yd_timer_start(p->timer, p->run->timeout_ms, 0);
}

/* A regular file never blocks: read it as fast as the server's queue allows. */
static void pump_file(struct pipe_run *p)
{
    static char buf[64 * 1024];
    while (!p->input_done && yd_conn_write_queued(p->server) < YD_HIGH_WATERMARK) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fprintf(stderr, "yodel send: reading standard input: %s\n", strerror(errno));
        if (n <= 0) {
            input_finished(p);
            return;
        }
        if (yd_conn_write(p->server, buf, (size_t)n) < 0)
            return;
    }
}

static void input_data(yd_conn *conn, const char *data, size_t len)
{
    struct pipe_run *p = yd_conn_data(conn);
    yd_conn_write(p->server, data, len);
    if (yd_conn_write_queued(p->server) > YD_HIGH_WATERMARK)
        yd_conn_pause_reading(conn); /* the server is slower than our input: wait for it */
}

static void input_eof(yd_conn *conn)
{
    struct pipe_run *p = yd_conn_data(conn);
    yd_conn_close(conn);
    input_finished(p);
}

static void input_close(yd_conn *conn, int status)
{
    struct pipe_run *p = yd_conn_data(conn);
    p->input = NULL;
    if (status < 0 && !p->input_done) {
        fprintf(stderr, "yodel send: reading standard input: %s\n", yd_strerror(status));
        input_finished(p);
    }
}

static const yd_protocol input_protocol = {
    .on_data = input_data,
    .on_eof = input_eof,
    .on_close = input_close,
};

static void start_input(struct pipe_run *p)
{
    struct stat st;
    if (fstat(STDIN_FILENO, &st) == 0 && (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)) &&
        !isatty(STDIN_FILENO)) {
        pump_file(p); /* files and /dev/null cannot be polled */
        return;
    }
    int err = yd_conn_open_fd(p->run->loop, STDIN_FILENO, &input_protocol, p, &p->input);
    if (err < 0) {
        fprintf(stderr, "yodel send: cannot read standard input: %s\n", yd_strerror(err));
        p->failed = 1;
        input_finished(p);
    }
}

static void server_connect(yd_conn *conn)
{
    start_input(yd_conn_data(conn));
}

static void server_data(yd_conn *conn, const char *data, size_t len)
{
    struct pipe_run *p = yd_conn_data(conn);
    if (fwrite(data, 1, len, stdout) != len) {
        fprintf(stderr, "yodel send: writing standard output: %s\n", strerror(errno));
        p->failed = 1;
        yd_conn_abort(conn);
    }
}

static void server_drain(yd_conn *conn)
{
    struct pipe_run *p = yd_conn_data(conn);
    if (p->input != NULL)
        yd_conn_resume_reading(p->input);
    else if (!p->input_done)
        pump_file(p);
}

static void server_close(yd_conn *conn, int status)
{
    struct pipe_run *p = yd_conn_data(conn);
    fflush(stdout);
    if (status < 0) {
        fprintf(stderr, "yodel send: %s: %s\n", p->run->addr, yd_strerror(status));
        p->failed = 1;
    }
    if (p->input != NULL)
        yd_conn_abort(p->input);
    yd_timer_free(p->timer);
}

static const yd_protocol server_protocol = {
    .on_connect = server_connect,
    .on_data = server_data,
    .on_drain = server_drain,
    .on_close = server_close,
};

static void pipe_timeout(yd_timer *timer, void *data)
{
    (void)timer;
    struct pipe_run *p = data;
    fprintf(stderr, "yodel send: timed out waiting for %s to finish echoing\n", p->run->addr);
    p->failed = 1;
    yd_conn_abort(p->server);
}

static int send_stdin(struct run *run)
{
    struct pipe_run p = {.run = run};
    if (yd_timer_new(run->loop, pipe_timeout, &p, &p.timer) < 0)
        return EXIT_RUNTIME;
    int err = yd_conn_connect(run->loop, run->addr, &server_protocol, &p, &p.server);
    if (err < 0) {
        fprintf(stderr, "yodel send: cannot connect to %s: %s\n", run->addr, yd_strerror(err));
        yd_timer_free(p.timer);
        return EXIT_RUNTIME;
    }
    yd_loop_run(run->loop);
    return p.failed ? EXIT_RUNTIME : EXIT_OK;
}

/* ---- Options ------------------------------------------------------------------------------ */

enum { OPT_PARTS = 256, OPT_UDP, OPT_TIMEOUT, OPT_RETRIES };

static const struct option longopts[] = {
    {"connect", required_argument, NULL, 'c'},
    {"clients", required_argument, NULL, 'n'},
    {"parts", no_argument, NULL, OPT_PARTS},
    {"udp", no_argument, NULL, OPT_UDP},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void parse_args(struct run *run, int argc, char **argv)
{
    int c;
    while ((c = cli_getopt("send", argc, argv, "c:n:qh", longopts)) != -1) {
        switch (c) {
        case 'c':
            run->addr = opt_addr("send", "-c", optarg);
            break;
        case 'n':
            run->clients = (int)opt_long("send", "-n", optarg, 1, 100000);
            break;
        case OPT_PARTS:
            run->parts = 1;
            break;
        case OPT_UDP:
            run->udp = 1;
            break;
        case OPT_TIMEOUT:
            run->timeout_ms = opt_duration_ms("send", "--timeout", optarg);
            if (run->timeout_ms == 0)
                usage_error("send", "--timeout: must be above 0");
            break;
        case OPT_RETRIES:
            run->retries = (int)opt_long("send", "--retries", optarg, 1, 1000);
            break;
        case 'q':
            run->quiet = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(EXIT_OK);
        }
    }
    run->messages = argv + optind;
    run->nmessages = argc - optind;
    if (run->nmessages == 0)
        usage_error("send", "no MESSAGE given (use '-' for standard input)");
    for (int i = 0; i < run->nmessages; i++)
        if (strchr(run->messages[i], '\n') != NULL)
            usage_error("send", "MESSAGE %d contains a newline: each message is one line", i + 1);
}

/* The address to connect to, made udp:// for --udp (in static storage). */
static const char *resolve_transport(struct run *run)
{
    static char buf[300];
    yd_addr a;
    yd_addr_parse(run->addr, &a);
    if (a.transport == YD_UDP)
        run->udp = 1;
    if (!run->udp || a.transport == YD_UDP)
        return run->addr;
    if (a.transport == YD_UNIX)
        usage_error("send", "--udp: a Unix socket address cannot be UDP");
    a.transport = YD_UDP;
    yd_addr_format(&a, buf, sizeof buf);
    return buf;
}

int cmd_send(int argc, char **argv)
{
    struct run run = {.addr = "127.0.0.1:8888", .clients = 1, .timeout_ms = 5000, .retries = 3};
    parse_args(&run, argc, argv);
    run.addr = resolve_transport(&run);
    int streaming = run.nmessages == 1 && strcmp(run.messages[0], "-") == 0;
    if (streaming && (run.clients > 1 || run.parts || run.udp))
        usage_error("send", "'-' streams one connection: not with -n, --parts or --udp");
    if (run.parts && run.udp)
        usage_error("send", "--parts needs a stream: not with --udp");
    signal(SIGPIPE, SIG_IGN);
    if (yd_loop_new(&run.loop) < 0) {
        fprintf(stderr, "yodel send: out of memory\n");
        return EXIT_RUNTIME;
    }
    int status = streaming ? send_stdin(&run) : send_messages(&run);
    yd_loop_free(run.loop);
    return status;
}
