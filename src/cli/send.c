/*
 * yodel send: the tutorials' echo client. Sends each message as a line and checks that the same
 * line (or --expect's) comes back; many clients at once; a message in parts with a half-close;
 * UDP with retries; or stdin to the server and the echo to stdout, like netcat.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "send.h"
#include "yodel.h"

static const char usage[] =
    "usage: yodel send [OPTIONS] MESSAGE...\n"
    "       yodel send [OPTIONS] -\n"
    "       yodel send --count N | --interval D [PROBE OPTIONS] [MESSAGE]\n"
    "\n"
    "Echo client: sends each MESSAGE as a line ('\\n' appended), prints each reply\n"
    "and checks it is the line that was sent (or --expect's). With '-', streams\n"
    "standard input to the server and the echo to standard output, half-closing at\n"
    "end of input, and checks that as many bytes came back as were sent.\n"
    "\n"
    "  -c, --connect ADDR     server: HOST:PORT (default 127.0.0.1:8888), [::1]:PORT,\n"
    "                         unix:PATH, udp://HOST:PORT, tls://HOST:PORT, tls+unix:PATH\n"
    "  -n, --clients N        N concurrent clients; client i sends 'MESSAGE from i';\n"
    "                         the replies are printed in client order\n"
    "      --parts            send everything in three writes, half-close, read to EOF\n"
    "      --udp              one datagram per message (same as a udp:// address); a\n"
    "                         MESSAGE must fit in one (65507 bytes over IPv4); a late\n"
    "                         or repeated echo of an earlier message is ignored\n"
    "      --timeout DURATION how long to wait for each reply (default 5s); with '-',\n"
    "                         how long the stream may go without progress either way\n"
    "      --retries N        UDP: send a datagram up to N times (default 3)\n"
    "      --expect TEXT      the reply every message must get: TEXT and a newline\n"
    "                         (e.g. the upper-cased line from 'yodel serve -m upper')\n"
    "      --no-check         print what comes back without comparing it\n"
    "  -q, --quiet            do not print the replies (probes: the summary only)\n"
    "      --proxy-protocol v1|v2  send a PROXY protocol header first on each\n"
    "                         connection (v2: before each UDP datagram)\n"
    "      --proxy-source ADDR:PORT, --proxy-dest ADDR:PORT  the header's ends\n"
    "                         (default: the client socket's own address, the server's)\n"
    "  -h, --help             this help\n"
    "\n"
    "TLS (a tls:// or tls+unix: address, or --tls), in every mode:\n"
    "      --tls              connect over TLS (HOST:PORT becomes tls://HOST:PORT)\n"
    "      --ca FILE          verify the server with the CAs in FILE (PEM); default:\n"
    "                         the system's CAs\n"
    "      --insecure         do not verify the server's certificate\n"
    "      --sni NAME         the server name sent and verified (default: HOST)\n"
    "      --cert FILE        a client certificate (PEM), for servers that ask\n"
    "      --key FILE         its private key (default: in --cert's file)\n"
    "\n"
    "Probe mode, like ping: one probe, the line 'MESSAGE SEQ' (default MESSAGE\n"
    "'yodel-probe'), per interval and a line per probe, then the statistics. A reply\n"
    "is the line (datagram) that ends with the probe; what precedes it is the\n"
    "backend's prefix; on a stream, a first line that is no probe is its banner.\n"
    "      --count N          send N probes (default: until interrupted)\n"
    "  -i, --interval D       from one probe's start to the next (default 1s)\n"
    "      --reconnect        a new connection (UDP socket) per probe; report the\n"
    "                         connect time (and the TLS handshake's)\n"
    "      --source-port P    bind the client socket to port P (TCP, UDP)\n"
    "      --max-loss PERCENT exit 1 when more than PERCENT of the probes are lost\n"
    "                         (default 100: only when nothing came back)\n"
    "      --tally            count the replies per backend (banner or prefix)\n"
    "      --json             one JSON object per probe, then the summary (and tally)\n"
    "  --timeout is then how long the connect and each reply may take; a probe\n"
    "  not answered in time is lost, and its reply, if it comes, is late.\n"
    "\n"
    "Exit status: 0 when every reply matched, 1 on any mismatch, loss, timeout or\n"
    "connection error (probes: loss above --max-loss), 2 for bad usage.\n";

/* The largest UDP payload: 65535 bytes less the headers (IPv6's length leaves out its own). */
#define UDP_MAX_IPV4 65507u
#define UDP_MAX_IPV6 65527u
/* Bytes of a message or reply shown in an error line; longer ones are cut. */
#define SHOW_BYTES 64
/* Room for SHOW_BYTES bytes as \xNN escapes, the quotes and the "..." of a cut. */
#define QUOTED_BYTES (SHOW_BYTES * 4 + 8)
/* How far a line reply may run past the expected one and still be read whole. */
#define REPLY_SLACK 256u

struct client;

struct run {
    yd_loop *loop;
    const char *addr;
    char **messages;
    int nmessages;
    int clients;
    int parts;
    int udp;
    int quiet;
    int no_check;
    const char *expect; /* --expect TEXT, or NULL: the reply is the line sent */
    uint64_t timeout_ms;
    int tls_asked;                       /* --tls */
    struct send_tls_options tls_options; /* --ca, --insecure, --sni, --cert, --key */
    const char *tls_only;                /* the first of those seen (an error without TLS) */
    yd_tls *tls;                         /* the address is tls:// or tls+unix: */
    int retries;
    int failures;
    int lost;
    int late; /* UDP: echoes of earlier messages, ignored */
    int stdout_failed;
    struct client *all; /* every client, in order: replies are printed in this order */
    int next_print;     /* the first client whose replies are not printed yet */
    /* Probe mode (--count, --interval): its options (the PROXY protocol ones are every mode's),
     * and the first probe-only option seen (an error without probe mode). */
    int probing;
    struct probe_options probe;
    const char *probe_only;
    int retries_set;
};

/* Reports a failed write to standard output, once; errno is the write's. */
static void stdout_error(struct run *run)
{
    if (run->stdout_failed)
        return;
    fprintf(stderr, "yodel send: writing standard output: %s\n", strerror(errno));
    run->stdout_failed = 1;
    run->failures++;
}

/* Frees the loop once: the handles still open close first, their on_close callbacks run. */
static void free_loop(struct run *run)
{
    yd_loop_free(run->loop);
    run->loop = NULL;
}

/* Connects to the server: over TLS when the address is tls:// or tls+unix:. */
static int connect_server(struct run *run, const yd_protocol *protocol, void *data, yd_conn **out)
{
    if (run->tls != NULL)
        return yd_conn_connect_tls(run->loop, run->addr, run->tls, protocol, data, out);
    return yd_conn_connect(run->loop, run->addr, protocol, data, out);
}

/* A connection's error status in words; over TLS, what most likely failed. connected: whether
 * on_connect had run (over TLS: the handshake was done); answered: whether anything came back. */
static const char *conn_failure(const struct run *run, int status, int connected, int answered)
{
    if (run->tls != NULL)
        return send_tls_failure(&run->tls_options, status, connected, answered);
    return yd_strerror(status);
}

/* " (why)" after "the server closed the connection before replying" over TLS; else "". */
static const char *early_close_hint(const struct run *run)
{
    static char hint[128];
    if (run->tls == NULL)
        return "";
    snprintf(hint, sizeof hint, " (%s)", send_tls_refusal_hint(&run->tls_options));
    return hint;
}

/*
 * The PROXY header for a connection: its ends are --proxy-source and --proxy-dest, else the
 * connection's own address and the server's. A Unix socket's ends are no addresses: the header
 * says UNKNOWN unless both options are given (check_proxy_args). Returns the header's length,
 * or a negative error.
 */
static int conn_proxy_header(const struct run *run, yd_conn *conn, char *buf)
{
    const struct probe_options *o = &run->probe;
    struct sockaddr_storage src = {0}, dst = {0};
    char text[YD_ADDR_TEXT_BYTES];
    yd_addr a;
    yd_addr_parse(run->addr, &a);
    int ip = a.transport != YD_UNIX || o->proxy_source != NULL;
    if (o->proxy_source != NULL)
        proxy_addr_parse(o->proxy_source, &src);
    else if (ip &&
             (yd_conn_sock_name(conn, text, sizeof text) < 0 || proxy_addr_parse(text, &src) < 0))
        return -ENOTCONN;
    if (o->proxy_dest != NULL)
        proxy_addr_parse(o->proxy_dest, &dst);
    else if (ip &&
             (yd_conn_peer_name(conn, text, sizeof text) < 0 || proxy_addr_parse(text, &dst) < 0))
        return -ENOTCONN;
    return proxy_header_format(o->proxy, !run->udp, ip ? (struct sockaddr *)&src : NULL,
                               ip ? (struct sockaddr *)&dst : NULL, buf);
}

/* Writes to standard output and flushes, so each reply shows as it comes. */
static void emit(struct run *run, const char *data, size_t len)
{
    if (run->stdout_failed || len == 0)
        return;
    if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
        stdout_error(run);
}

/*
 * Writes data into buf as a quoted C string ('hello\n'), cut after SHOW_BYTES bytes of data
 * ('aaaa...'...). Returns buf.
 */
static const char *quote(const char *data, size_t len, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    buf[n++] = '\'';
    for (size_t i = 0; i < len && i < SHOW_BYTES; i++) {
        unsigned char ch = (unsigned char)data[i];
        const char *esc = ch == '\n'   ? "\\n"
                          : ch == '\r' ? "\\r"
                          : ch == '\t' ? "\\t"
                          : ch == '\\' ? "\\\\"
                          : ch == '\'' ? "\\'"
                                       : NULL;
        if (esc != NULL) {
            memcpy(buf + n, esc, 2);
            n += 2;
        } else if (ch >= 0x20 && ch < 0x7f) {
            buf[n++] = (char)ch;
        } else {
            buf[n++] = '\\';
            buf[n++] = 'x';
            buf[n++] = hex[ch >> 4];
            buf[n++] = hex[ch & 15];
        }
    }
    buf[n++] = '\'';
    if (len > SHOW_BYTES) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- MESSAGE...: each message a line (or a datagram), its reply checked ---------------- */

struct client {
    struct run *run;
    int id;
    yd_conn *conn;
    yd_timer *timer;
    char *payload; /* every line this client sends, back to back */
    size_t payload_len;
    char *want; /* the replies it expects, back to back: payload, or --expect's line each */
    size_t want_len;
    int msg;          /* the message awaiting its reply */
    size_t sent;      /* where that message's line starts in payload */
    size_t line_len;  /* and its length */
    size_t want_off;  /* where its reply starts in want */
    size_t reply_len; /* and its length */
    char *got;        /* a line reply read so far; --parts: the start of everything read */
    size_t got_len;   /* (--no-check: the bytes of the reply printed so far) */
    size_t got_cap;
    size_t got_total; /* --parts: every byte read */
    char *dgram;      /* UDP with --proxy-protocol: the header, then room for a line */
    size_t header_len;
    char *out; /* -n > 1: the replies, printed in client order once this one is done */
    size_t out_len;
    size_t out_cap;
    int tries;
    int connected;
    int done;   /* finished or failed: whatever else arrives is ignored */
    int closed; /* no more replies will come: its output may be printed */
};

static void fail(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Has anything come back to this client yet? */
static int answered(const struct client *c)
{
    return c->msg > 0 || c->got_len > 0 || c->got_total > 0;
}

static void fail(struct client *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "yodel send: ");
    if (c->run->clients > 1)
        fprintf(stderr, "client %d: ", c->id);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    c->run->failures++;
}

static void print_reply(struct client *c, const char *data, size_t len)
{
    struct run *run = c->run;
    if (run->quiet || run->stdout_failed)
        return;
    if (run->clients == 1) {
        emit(run, data, len);
        return;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + len)
            cap *= 2;
        char *out = realloc(c->out, cap);
        if (out == NULL) {
            errno = ENOMEM;
            stdout_error(run);
            return;
        }
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

/* Prints the replies of every closed client not yet printed, in client order. */
static void print_in_order(struct run *run, int all)
{
    while (run->next_print < run->clients) {
        struct client *c = &run->all[run->next_print];
        if (!c->closed && !all)
            return;
        emit(run, c->out, c->out_len);
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        run->next_print++;
    }
}

/*
 * One line on what came back instead of what was wanted. sent/want are the bytes sent and
 * expected, got the first got_len of the got_total bytes received (0: more than got_len).
 */
static void report_mismatch(struct client *c, const char *what, const char *sent, size_t sent_len,
                            const char *want, size_t want_len, const char *got, size_t got_len,
                            size_t got_total)
{
    char qs[QUOTED_BYTES], qw[QUOTED_BYTES], qg[QUOTED_BYTES];
    char expected[QUOTED_BYTES + 40] = "";
    if (c->run->expect != NULL)
        snprintf(expected, sizeof expected, ", expected %zu bytes %s", want_len,
                 quote(want, want_len, qw));
    fail(c, "%s: sent %zu bytes %s%s, got %s%zu bytes %s", what, sent_len,
         quote(sent, sent_len, qs), expected, got_total == 0 ? "more than " : "",
         got_total == 0 ? got_len : got_total, quote(got, got_len, qg));
}

/* Checks one reply against the current message's. */
static void check_reply(struct client *c, const char *data, size_t len)
{
    const char *want = c->want + c->want_off;
    if (c->run->no_check || (len == c->reply_len && memcmp(data, want, len) == 0))
        return;
    report_mismatch(c, "reply differs", c->payload + c->sent, c->line_len, want, c->reply_len, data,
                    len, len);
}

/* UDP: is this the reply to a message before the current one (a late or repeated echo)? */
static int earlier_reply(const struct client *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < c->want_off) {
        const char *nl = memchr(c->want + off, '\n', c->want_off - off);
        size_t n = (size_t)(nl - (c->want + off)) + 1;
        if (n == len && memcmp(c->want + off, data, len) == 0)
            return 1;
        off += n;
    }
    return 0;
}

static void finish(struct client *c)
{
    c->done = 1;
    yd_timer_stop(c->timer);
    /* A datagram socket has nothing to flush and no FIN to send: close it at once. (Closing it
     * "once its queue is sent" waits forever while the library keeps unanswered datagrams to
     * resend to a name's next address.) */
    if (c->run->udp)
        yd_conn_abort(c->conn);
    else
        yd_conn_close(c->conn);
}

/* Writes the next line (or, for --parts, the whole payload in three writes). */
static void send_next(struct client *c)
{
    struct run *run = c->run;
    int err = 0;
    if (run->parts) {
        size_t third = c->payload_len / 3;
        size_t cuts[4] = {0, third, 2 * third, c->payload_len};
        for (int i = 0; i < 3 && err == 0; i++)
            if (cuts[i + 1] > cuts[i])
                err = yd_conn_write(c->conn, c->payload + cuts[i], cuts[i + 1] - cuts[i]);
        if (err == 0)
            err = yd_conn_shutdown(c->conn);
    } else {
        const char *line = c->payload + c->sent;
        const char *nl = memchr(line, '\n', c->payload_len - c->sent);
        c->line_len = (size_t)(nl - line) + 1;
        c->want_off = run->expect != NULL ? (size_t)c->msg * (strlen(run->expect) + 1) : c->sent;
        c->reply_len = run->expect != NULL ? strlen(run->expect) + 1 : c->line_len;
        if (c->dgram != NULL) {
            /* The PROXY header goes before each datagram: the header, then the line. */
            memcpy(c->dgram + c->header_len, line, c->line_len);
            err = yd_conn_write(c->conn, c->dgram, c->header_len + c->line_len);
        } else {
            err = yd_conn_write(c->conn, line, c->line_len);
        }
    }
    c->tries++;
    if (err == -EMSGSIZE && run->udp) {
        /* Only the kernel knows the limit for a name (IPv4 or IPv6): retrying cannot help. */
        fail(c, "message too long for a datagram to %s: %zu bytes", run->addr, c->line_len);
        finish(c);
        return;
    }
    if (err == -ECONNREFUSED) {
        fail(c, "cannot connect to %s: %s", run->addr, yd_strerror(err));
        finish(c);
        return;
    }
    if (err < 0 && !run->udp) {
        fail(c, "cannot send to %s: %s", run->addr, conn_failure(run, err, 1, answered(c)));
        c->done = 1;
        yd_conn_abort(c->conn);
        return;
    }
    /* UDP: any other error (a full socket buffer) loses this datagram like the network would:
     * the timer retries it. */
    yd_timer_start(c->timer, run->timeout_ms, 0);
}

/* The current line is answered (or given up on): send the next, or finish. */
static void next_message(struct client *c)
{
    c->sent += c->line_len;
    c->msg++;
    c->tries = 0;
    if (c->sent < c->payload_len)
        send_next(c);
    else
        finish(c);
}

/* A whole reply to the current message. */
static void reply(struct client *c, const char *data, size_t len)
{
    print_reply(c, data, len);
    check_reply(c, data, len);
    next_message(c);
}

static void on_timeout(yd_timer *timer, void *data)
{
    (void)timer;
    struct client *c = data;
    struct run *run = c->run;
    if (run->udp) {
        if (c->tries < run->retries) {
            send_next(c);
            return;
        }
        /* Lost: the datagram or its echo. Report it and go on with the next message. */
        run->lost++;
        fail(c, "no reply to a datagram after every retry");
        next_message(c);
        return;
    }
    fail(c, "timed out waiting for the reply from %s", run->addr);
    c->done = 1;
    yd_conn_abort(c->conn);
}

/* --proxy-protocol: the header first on a stream, or kept to go before each datagram. */
static int send_proxy_header(struct client *c)
{
    char header[PROXY_HEADER_MAX];
    int n = conn_proxy_header(c->run, c->conn, header);
    int err = n < 0 ? n : 0;
    if (err == 0 && c->run->udp) {
        c->dgram = malloc((size_t)n + c->payload_len); /* a line is at most the payload */
        err = c->dgram == NULL ? -ENOMEM : 0;
        if (err == 0)
            memcpy(c->dgram, header, (size_t)n);
        c->header_len = (size_t)n;
    } else if (err == 0) {
        err = yd_conn_write(c->conn, header, (size_t)n);
    }
    if (err < 0) {
        fail(c, "cannot send the PROXY header to %s: %s", c->run->addr, yd_strerror(err));
        c->done = 1;
        yd_conn_abort(c->conn);
    }
    return err;
}

static void on_connect(yd_conn *conn)
{
    struct client *c = yd_conn_data(conn);
    c->connected = 1;
    if (c->run->probe.proxy != PROXY_NONE && send_proxy_header(c) < 0)
        return;
    send_next(c);
}

/* --parts: everything that comes back is one reply, checked at EOF. */
static void parts_data(struct client *c, const char *data, size_t len)
{
    size_t room = c->got_cap - c->got_len;
    size_t n = len < room ? len : room;
    memcpy(c->got + c->got_len, data, n);
    c->got_len += n;
    c->got_total += len;
    print_reply(c, data, len);
}

/*
 * A stream: the reply to a line is the bytes up to the next '\n'. Read whole when they fit
 * got (the longest expected reply plus REPLY_SLACK); a longer one is reported, cut.
 */
static void line_data(struct client *c, const char *data, size_t len)
{
    while (len > 0 && !c->done) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - data) + 1 : len;
        if (c->run->no_check) {
            /* Nothing to compare: print as it comes, a '\n' ends the reply. */
            print_reply(c, data, take);
            c->got_len += take;
            data += take;
            len -= take;
            if (nl != NULL) {
                c->got_len = 0;
                next_message(c);
            }
            continue;
        }
        if (c->got_len + take > c->got_cap) {
            /* Show what came: the start of the reply, with its length when it is known. */
            size_t room = c->got_cap - c->got_len;
            memcpy(c->got + c->got_len, data, room);
            print_reply(c, c->got, c->got_cap);
            char what[300];
            snprintf(what, sizeof what, "the reply is longer than the message sent to %s",
                     c->run->addr);
            report_mismatch(c, what, c->payload + c->sent, c->line_len, c->want + c->want_off,
                            c->reply_len, c->got, c->got_cap, nl != NULL ? c->got_len + take : 0);
            finish(c);
            return;
        }
        if (c->got_len == 0 && nl != NULL) {
            reply(c, data, take); /* the whole reply in this read: check it where it landed */
        } else {
            memcpy(c->got + c->got_len, data, take);
            c->got_len += take;
            if (nl != NULL) {
                size_t n = c->got_len;
                c->got_len = 0;
                reply(c, c->got, n);
            }
        }
        data += take;
        len -= take;
    }
}

/* UDP: each datagram is a reply, unless it repeats the reply to an earlier message. */
static void datagram_data(struct client *c, const char *data, size_t len)
{
    const char *want = c->want + c->want_off;
    int match = len == c->reply_len && memcmp(data, want, len) == 0;
    if (!match && !c->run->no_check && earlier_reply(c, data, len)) {
        c->run->late++; /* a retry's echo, or a duplicate: the real reply may still come */
        return;
    }
    reply(c, data, len);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    struct client *c = yd_conn_data(conn);
    if (c->done)
        return;
    if (c->run->parts)
        parts_data(c, data, len);
    else if (c->run->udp)
        datagram_data(c, data, len);
    else
        line_data(c, data, len);
}

static void on_eof(yd_conn *conn)
{
    struct client *c = yd_conn_data(conn);
    struct run *run = c->run;
    if (c->done) {
        yd_conn_close(conn);
        return;
    }
    if (run->parts) {
        if (!run->no_check &&
            (c->got_total != c->want_len || memcmp(c->got, c->want, c->want_len) != 0))
            report_mismatch(c, "what came back differs", c->payload, c->payload_len, c->want,
                            c->want_len, c->got, c->got_len, c->got_total);
    } else if (c->got_len > 0) {
        /* A last reply without its newline, ended by the close: still a reply. */
        if (!run->no_check) {
            print_reply(c, c->got, c->got_len);
            check_reply(c, c->got, c->got_len);
        }
        if (c->sent + c->line_len < c->payload_len)
            fail(c, "%s closed the connection after %d of %d replies", run->addr, c->msg + 1,
                 run->nmessages);
    } else {
        fail(c, "%s closed the connection before replying%s", run->addr,
             answered(c) ? "" : early_close_hint(run));
    }
    finish(c);
}

static void on_close(yd_conn *conn, int status)
{
    struct client *c = yd_conn_data(conn);
    struct run *run = c->run;
    send_tls_note(conn);
    if (!c->done) {
        c->done = 1;
        /* A connected UDP socket learns of a closed port from ICMP, after connecting. */
        if (status == -ECONNREFUSED || (status < 0 && !c->connected))
            fail(c, "cannot connect to %s: %s", run->addr, conn_failure(run, status, 0, 0));
        else if (status < 0)
            fail(c, "lost the connection to %s: %s", run->addr,
                 conn_failure(run, status, 1, answered(c)));
        else
            fail(c, "%s closed the connection before replying%s", run->addr,
                 answered(c) ? "" : early_close_hint(run));
    }
    yd_timer_free(c->timer);
    c->timer = NULL;
    c->conn = NULL;
    c->closed = 1;
    print_in_order(run, 0);
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

/* What client c expects back: its own payload, or --expect's line once per message. */
static int build_want(struct client *c)
{
    const struct run *run = c->run;
    size_t longest = 0;
    if (run->expect == NULL) {
        c->want = c->payload;
        c->want_len = c->payload_len;
        for (size_t off = 0; off < c->payload_len;) {
            const char *nl = memchr(c->payload + off, '\n', c->payload_len - off);
            size_t n = (size_t)(nl - (c->payload + off)) + 1;
            longest = n > longest ? n : longest;
            off += n;
        }
    } else {
        size_t n = strlen(run->expect) + 1;
        c->want_len = n * (size_t)run->nmessages;
        c->want = malloc(c->want_len);
        if (c->want == NULL)
            return -ENOMEM;
        for (int i = 0; i < run->nmessages; i++) {
            memcpy(c->want + (size_t)i * n, run->expect, n - 1);
            c->want[(size_t)i * n + n - 1] = '\n';
        }
        longest = n;
    }
    /* --parts keeps everything that came back, up to one byte more than expected. */
    c->got_cap = run->parts ? c->want_len + 1 : longest + REPLY_SLACK;
    if (run->udp)
        return 0;
    c->got = malloc(c->got_cap);
    return c->got == NULL ? -ENOMEM : 0;
}

static int send_messages(struct run *run)
{
    struct client *clients = calloc((size_t)run->clients, sizeof *clients);
    if (clients == NULL) {
        fprintf(stderr, "yodel send: out of memory\n");
        return EXIT_RUNTIME;
    }
    run->all = clients;
    for (int i = 0; i < run->clients; i++) {
        struct client *c = &clients[i];
        c->run = run;
        c->id = i;
        c->closed = 1; /* until its connection is under way */
    }
    for (int i = 0; i < run->clients; i++) {
        struct client *c = &clients[i];
        c->payload = build_payload(run, i, &c->payload_len);
        if (c->payload == NULL || build_want(c) < 0 ||
            yd_timer_new(run->loop, on_timeout, c, &c->timer) < 0) {
            fprintf(stderr, "yodel send: out of memory\n");
            run->failures++;
            break;
        }
        int err = connect_server(run, &client_protocol, c, &c->conn);
        if (err < 0) {
            fprintf(stderr, "yodel send: cannot connect to %s: %s\n", run->addr, yd_strerror(err));
            yd_timer_free(c->timer);
            c->timer = NULL;
            run->failures++;
            break;
        }
        c->closed = 0;
    }
    yd_loop_run(run->loop);
    free_loop(run); /* any connection still open closes now, while its client exists */
    print_in_order(run, 1);
    for (int i = 0; i < run->clients; i++) {
        if (clients[i].want != clients[i].payload)
            free(clients[i].want);
        free(clients[i].payload);
        free(clients[i].got);
        free(clients[i].dgram);
    }
    free(clients);
    if (run->late > 0)
        fprintf(stderr, "yodel send: %d late or duplicate datagram(s) ignored\n", run->late);
    if (run->lost > 0)
        fprintf(stderr, "yodel send: %d datagram(s) lost\n", run->lost);
    return run->failures > 0 ? EXIT_RUNTIME : EXIT_OK;
}

/* ---- '-': standard input to the server, the echo to standard output ---------------------- */

/*
 * The input goes to the server only while the connection's write queue is empty, at most
 * STREAM_CHUNK bytes at a time: the queue then never passes YD_HIGH_WATERMARK, so the
 * connection never stops reading the echo. (Were it to stop, an echo server that stops reading
 * us until we read it would deadlock with us: newcomer F2.) What wakes the input again is the
 * next echo, or the tick, which also watches for a stream that stopped moving.
 */
#define STREAM_CHUNK YD_HIGH_WATERMARK
#define TICK_MS      5u

struct pipe_run {
    struct run *run;
    yd_conn *server; /* NULL once closed */
    yd_conn *input;  /* NULL when stdin is a regular file (read with plain read()) or closed */
    yd_timer *tick;
    uint64_t sent;     /* bytes handed to the server connection (not the PROXY header) */
    uint64_t echoed;   /* bytes that came back */
    size_t header_len; /* --proxy-protocol: the header written first */
    /* What the tick saw last: bytes the kernel took, bytes back, and when either moved. */
    uint64_t seen_moved;
    uint64_t seen_echoed;
    uint64_t last_progress_ms;
    int file;          /* stdin is a regular file or a device: read() it, it cannot be polled */
    int connected;     /* the connection to the server was made */
    int input_done;    /* the input ended (or failed): our half-close is on its way */
    int input_paused;  /* waiting for the write queue to empty */
    int input_closing; /* we closed the input ourselves: its close is no error */
    int eof;           /* the server half-closed */
    int ticking;
    int failed;
};

static void stream_fail(struct pipe_run *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reports the first failure only: what follows from it (our own aborts) is no news. */
static void stream_fail(struct pipe_run *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    va_list ap;
    fprintf(stderr, "yodel send: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The input bytes the kernel took: what was written less what is queued, the header aside. */
static uint64_t moved(const struct pipe_run *p)
{
    uint64_t queued = p->server != NULL ? yd_conn_write_queued(p->server) : 0;
    uint64_t taken = p->sent + p->header_len - queued;
    return taken > p->header_len ? taken - p->header_len : 0;
}

/* Is anything owed to us: bytes to send, an echo, or the server's close after our EOF? */
static int waiting(const struct pipe_run *p)
{
    if (p->server == NULL)
        return 0;
    return yd_conn_write_queued(p->server) > 0 || p->input_done ||
           (!p->run->no_check && p->echoed < p->sent);
}

static void start_tick(struct pipe_run *p)
{
    if (p->ticking || p->tick == NULL)
        return;
    p->ticking = 1;
    p->seen_moved = moved(p);
    p->seen_echoed = p->echoed;
    p->last_progress_ms = yd_loop_now_ms(p->run->loop);
    yd_timer_start(p->tick, TICK_MS, TICK_MS);
}

static void stop_input(struct pipe_run *p)
{
    if (p->input != NULL) {
        p->input_closing = 1;
        yd_conn_abort(p->input);
    }
}

/* Ends the exchange at once: the failure is reported, the rest is our own doing. */
static void stream_abort(struct pipe_run *p)
{
    p->failed = 1;
    stop_input(p);
    if (p->server != NULL)
        yd_conn_abort(p->server);
}

static void input_finished(struct pipe_run *p)
{
    p->input_done = 1;
    if (p->server != NULL)
        yd_conn_shutdown(p->server);
    start_tick(p);
}

static int write_server(struct pipe_run *p, const char *data, size_t len)
{
    int err = yd_conn_write(p->server, data, len);
    if (err < 0) {
        stream_fail(p, "cannot send to %s: %s", p->run->addr,
                    conn_failure(p->run, err, 1, p->echoed > 0));
        stream_abort(p);
        return err;
    }
    p->sent += len;
    start_tick(p);
    return 0;
}

/* A regular file never blocks: read it whenever the queue is empty. */
static void pump_file(struct pipe_run *p)
{
    static char buf[STREAM_CHUNK];
    while (!p->failed && !p->input_done && p->server != NULL &&
           yd_conn_write_queued(p->server) == 0) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            stream_fail(p, "reading standard input: %s", strerror(errno));
            stream_abort(p);
            return;
        }
        if (n == 0) {
            input_finished(p);
            return;
        }
        if (write_server(p, buf, (size_t)n) < 0)
            return;
    }
}

/* Sends more input if the write queue is empty. */
static void push(struct pipe_run *p)
{
    if (p->failed || p->input_done || p->server == NULL || yd_conn_write_queued(p->server) > 0)
        return;
    if (p->file) {
        pump_file(p);
    } else if (p->input_paused && p->input != NULL) {
        p->input_paused = 0;
        yd_conn_resume_reading(p->input);
    }
}

static void on_tick(yd_timer *timer, void *data)
{
    struct pipe_run *p = data;
    uint64_t now = yd_loop_now_ms(p->run->loop);
    if (moved(p) != p->seen_moved || p->echoed != p->seen_echoed) {
        p->seen_moved = moved(p);
        p->seen_echoed = p->echoed;
        p->last_progress_ms = now;
    }
    push(p);
    if (!waiting(p)) {
        /* Waiting for input only (a terminal, a quiet pipe): no timeout applies. */
        yd_timer_stop(timer);
        p->ticking = 0;
        return;
    }
    if (now - p->last_progress_ms >= p->run->timeout_ms) {
        stream_fail(p,
                    "timed out: nothing moved to or from %s for %llu ms (%llu bytes sent, "
                    "%llu came back)",
                    p->run->addr, (unsigned long long)p->run->timeout_ms,
                    (unsigned long long)moved(p), (unsigned long long)p->echoed);
        stream_abort(p);
    }
}

static void input_data(yd_conn *conn, const char *data, size_t len)
{
    struct pipe_run *p = yd_conn_data(conn);
    if (p->server == NULL || write_server(p, data, len) < 0)
        return;
    if (yd_conn_write_queued(p->server) > 0) {
        /* The kernel is full: no more until the queue is empty (one read is at most
         * STREAM_CHUNK bytes, so the queue stays at or below the high watermark). */
        p->input_paused = 1;
        yd_conn_pause_reading(conn);
    }
}

static void input_eof(yd_conn *conn)
{
    struct pipe_run *p = yd_conn_data(conn);
    p->input_closing = 1;
    yd_conn_close(conn);
    input_finished(p);
}

static void input_close(yd_conn *conn, int status)
{
    struct pipe_run *p = yd_conn_data(conn);
    p->input = NULL;
    if (status < 0 && !p->input_closing) {
        stream_fail(p, "reading standard input: %s", yd_strerror(status));
        stream_abort(p);
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
        p->file = 1; /* files and /dev/null cannot be polled */
        pump_file(p);
        return;
    }
    int err = yd_conn_open_fd(p->run->loop, STDIN_FILENO, &input_protocol, p, &p->input);
    if (err < 0) {
        stream_fail(p, "cannot read standard input: %s", yd_strerror(err));
        stream_abort(p);
    }
}

static void server_connect(yd_conn *conn)
{
    struct pipe_run *p = yd_conn_data(conn);
    p->connected = 1;
    if (p->run->probe.proxy != PROXY_NONE) {
        char header[PROXY_HEADER_MAX];
        int n = conn_proxy_header(p->run, conn, header);
        int err = n < 0 ? n : yd_conn_write(conn, header, (size_t)n);
        if (err < 0) {
            stream_fail(p, "cannot send the PROXY header to %s: %s", p->run->addr,
                        yd_strerror(err));
            stream_abort(p);
            return;
        }
        p->header_len = (size_t)n;
    }
    start_input(p);
}

static void server_data(yd_conn *conn, const char *data, size_t len)
{
    struct pipe_run *p = yd_conn_data(conn);
    p->echoed += len;
    if (fwrite(data, 1, len, stdout) != len) {
        stdout_error(p->run);
        stream_abort(p);
        return;
    }
    push(p); /* an echo came back: the queue may have room again */
}

/*
 * The server half-closed. Fine once our input is all sent and (unless --no-check) all of it
 * came back; before that, what was not echoed is lost.
 */
static void server_eof(yd_conn *conn)
{
    struct pipe_run *p = yd_conn_data(conn);
    const char *addr = p->run->addr;
    unsigned long long sent = moved(p), echoed = p->echoed;
    p->eof = 1;
    if (!p->input_done) {
        stream_fail(p,
                    "%s closed the connection before the end of the input (%llu bytes sent, "
                    "%llu came back)%s",
                    addr, sent, echoed, echoed == 0 ? early_close_hint(p->run) : "");
        stop_input(p);
    } else if (!p->run->no_check && echoed < p->sent) {
        stream_fail(p, "%s closed the connection after echoing %llu of %llu bytes", addr, echoed,
                    (unsigned long long)p->sent);
    } else if (!p->run->no_check && echoed > p->sent) {
        stream_fail(p, "%s sent back %llu bytes for the %llu sent", addr, echoed,
                    (unsigned long long)p->sent);
    }
    yd_conn_close(conn);
}

static void server_close(yd_conn *conn, int status)
{
    struct pipe_run *p = yd_conn_data(conn);
    send_tls_note(conn);
    p->server = NULL;
    if (status < 0 && !p->failed) {
        if (!p->connected)
            stream_fail(p, "cannot connect to %s: %s", p->run->addr,
                        conn_failure(p->run, status, 0, 0));
        else
            stream_fail(p, "%s: %s%s (%llu bytes sent, %llu came back)", p->run->addr,
                        conn_failure(p->run, status, 1, p->echoed > 0),
                        p->input_done ? "" : " before the end of the input",
                        (unsigned long long)p->sent, (unsigned long long)p->echoed);
    }
    stop_input(p);
    yd_timer_free(p->tick);
    p->tick = NULL;
}

static const yd_protocol server_protocol = {
    .on_connect = server_connect,
    .on_data = server_data,
    .on_eof = server_eof,
    .on_close = server_close,
};

static int send_stdin(struct run *run)
{
    struct pipe_run p = {.run = run};
    if (yd_timer_new(run->loop, on_tick, &p, &p.tick) < 0) {
        fprintf(stderr, "yodel send: out of memory\n");
        return EXIT_RUNTIME;
    }
    int err = connect_server(run, &server_protocol, &p, &p.server);
    if (err < 0) {
        fprintf(stderr, "yodel send: cannot connect to %s: %s\n", run->addr, yd_strerror(err));
        yd_timer_free(p.tick);
        return EXIT_RUNTIME;
    }
    yd_loop_run(run->loop);
    free_loop(run); /* anything still open closes now, while p exists */
    if (fflush(stdout) != 0)
        stdout_error(run);
    return p.failed || run->stdout_failed ? EXIT_RUNTIME : EXIT_OK;
}

/* ---- Options ------------------------------------------------------------------------------ */

enum {
    OPT_PARTS = 256,
    OPT_UDP,
    OPT_TIMEOUT,
    OPT_RETRIES,
    OPT_EXPECT,
    OPT_NO_CHECK,
    OPT_RECONNECT,
    OPT_SOURCE_PORT,
    OPT_MAX_LOSS,
    OPT_TALLY,
    OPT_JSON,
    OPT_PROXY_PROTOCOL,
    OPT_PROXY_SOURCE,
    OPT_PROXY_DEST,
    OPT_TLS,
    OPT_CA,
    OPT_INSECURE,
    OPT_SNI,
    OPT_CERT,
    OPT_KEY
};

static const struct option longopts[] = {
    {"connect", required_argument, NULL, 'c'},
    {"clients", required_argument, NULL, 'n'},
    {"parts", no_argument, NULL, OPT_PARTS},
    {"udp", no_argument, NULL, OPT_UDP},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"expect", required_argument, NULL, OPT_EXPECT},
    {"no-check", no_argument, NULL, OPT_NO_CHECK},
    {"count", required_argument, NULL, 'C'},
    {"interval", required_argument, NULL, 'i'},
    {"reconnect", no_argument, NULL, OPT_RECONNECT},
    {"source-port", required_argument, NULL, OPT_SOURCE_PORT},
    {"max-loss", required_argument, NULL, OPT_MAX_LOSS},
    {"tally", no_argument, NULL, OPT_TALLY},
    {"json", no_argument, NULL, OPT_JSON},
    {"proxy-protocol", required_argument, NULL, OPT_PROXY_PROTOCOL},
    {"proxy-source", required_argument, NULL, OPT_PROXY_SOURCE},
    {"proxy-dest", required_argument, NULL, OPT_PROXY_DEST},
    {"tls", no_argument, NULL, OPT_TLS},
    {"ca", required_argument, NULL, OPT_CA},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"sni", required_argument, NULL, OPT_SNI},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static double opt_percent(const char *opt, const char *value)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0')
        usage_error("send", "%s: '%s' is not a number", opt, value);
    if (!(v >= 0 && v <= 100))
        usage_error("send", "%s: %s is out of range (0 to 100 percent)", opt, value);
    return v;
}

static enum proxy_version opt_proxy_version(const char *value)
{
    if (strcmp(value, "v1") == 0 || strcmp(value, "1") == 0)
        return PROXY_V1;
    if (strcmp(value, "v2") == 0 || strcmp(value, "2") == 0)
        return PROXY_V2;
    usage_error("send", "--proxy-protocol: unknown version '%s' (use v1 or v2)", value);
}

static const char *opt_proxy_addr(const char *opt, const char *value)
{
    struct sockaddr_storage ss;
    if (proxy_addr_parse(value, &ss) < 0)
        usage_error("send",
                    "%s: bad address '%s' (use a numeric IPV4:PORT or [IPV6]:PORT, e.g. "
                    "192.0.2.1:5000)",
                    opt, value);
    return value;
}

/* The long name of option c (for the error that a mode or a transport does not take it). */
static const char *option_name(int c)
{
    for (const struct option *lo = longopts; lo->name != NULL; lo++)
        if (lo->val == c)
            return lo->name;
    return "?";
}

/* The TLS options: each but --tls needs a TLS address. Returns 1 if c was one. */
static int parse_tls_option(struct run *run, int c, const char *arg)
{
    struct send_tls_options *o = &run->tls_options;
    switch (c) {
    case OPT_TLS:
        run->tls_asked = 1;
        return 1;
    case OPT_CA:
        o->ca_file = arg;
        break;
    case OPT_INSECURE:
        o->insecure = 1;
        break;
    case OPT_SNI:
        if (arg[0] == '\0')
            usage_error("send", "--sni: the name is empty");
        o->server_name = arg;
        break;
    case OPT_CERT:
        o->cert_file = arg;
        break;
    case OPT_KEY:
        o->key_file = arg;
        break;
    default:
        return 0;
    }
    if (run->tls_only == NULL)
        run->tls_only = option_name(c);
    return 1;
}

/* The options only probe mode takes (and the PROXY protocol's, which every mode takes).
 * Returns 1 if c was one. */
static int parse_probe_option(struct run *run, int c, const char *arg)
{
    struct probe_options *o = &run->probe;
    switch (c) {
    case 'C':
        o->count = (uint64_t)opt_long("send", "--count", arg, 1, 1000000000L);
        run->probing = 1;
        return 1;
    case 'i':
        o->interval_ms = opt_duration_ms("send", "--interval", arg);
        if (o->interval_ms == 0)
            usage_error("send", "--interval: must be above 0");
        run->probing = 1;
        return 1;
    case OPT_RECONNECT:
        o->reconnect = 1;
        break;
    case OPT_SOURCE_PORT:
        o->source_port = (int)opt_long("send", "--source-port", arg, 1, 65535);
        break;
    case OPT_MAX_LOSS:
        o->max_loss_pct = opt_percent("--max-loss", arg);
        break;
    case OPT_TALLY:
        o->tally = 1;
        break;
    case OPT_JSON:
        o->json = 1;
        break;
    case OPT_PROXY_PROTOCOL:
        o->proxy = opt_proxy_version(arg);
        return 1;
    case OPT_PROXY_SOURCE:
        o->proxy_source = opt_proxy_addr("--proxy-source", arg);
        return 1;
    case OPT_PROXY_DEST:
        o->proxy_dest = opt_proxy_addr("--proxy-dest", arg);
        return 1;
    default:
        return 0;
    }
    if (run->probe_only == NULL)
        run->probe_only = option_name(c);
    return 1;
}

static void parse_args(struct run *run, int argc, char **argv)
{
    int c;
    while ((c = cli_getopt("send", argc, argv, "c:n:qhi:", longopts)) != -1) {
        if (parse_probe_option(run, c, optarg) || parse_tls_option(run, c, optarg))
            continue;
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
            run->retries_set = 1;
            break;
        case OPT_EXPECT:
            if (strchr(optarg, '\n') != NULL)
                usage_error("send", "--expect: the reply is one line: no newline in TEXT");
            run->expect = optarg;
            break;
        case OPT_NO_CHECK:
            run->no_check = 1;
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
    if (run->nmessages == 0 && !run->probing)
        usage_error("send", "no MESSAGE given (use '-' for standard input)");
    if (run->expect != NULL && run->no_check)
        usage_error("send", "--expect and --no-check: choose one");
    for (int i = 0; i < run->nmessages; i++)
        if (strchr(run->messages[i], '\n') != NULL)
            usage_error("send", "MESSAGE %d contains a newline: each message is one line", i + 1);
}

/* Probe mode's own rules, and what it does not take (the address is resolved already). */
static void check_probe_args(struct run *run)
{
    struct probe_options *o = &run->probe;
    yd_addr a;
    yd_addr_parse(run->addr, &a);
    if (run->nmessages > 1 || (run->nmessages == 1 && strcmp(run->messages[0], "-") == 0))
        usage_error("send", "probe mode (--count, --interval) takes one MESSAGE, the probe's text");
    if (run->clients > 1 || run->parts || run->expect != NULL || run->retries_set)
        usage_error("send", "%s: not in probe mode (--count, --interval)",
                    run->clients > 1 ? "-n"
                    : run->parts     ? "--parts"
                    : run->expect    ? "--expect (use --no-check)"
                                     : "--retries (a lost probe is lost)");
    o->message = run->nmessages == 1 ? run->messages[0] : "yodel-probe";
    if (strlen(o->message) > 1024)
        usage_error("send", "MESSAGE: a probe's text is at most 1024 bytes");
    if (o->source_port != 0 && a.transport == YD_UNIX)
        usage_error("send", "--source-port: a Unix socket has no port");
    if (o->source_port != 0 && o->reconnect && a.transport == YD_TCP)
        usage_error("send", "--source-port with --reconnect over TCP: the kernel does not reuse "
                            "an address pair in TIME-WAIT");
    o->addr = run->addr;
    o->timeout_ms = run->timeout_ms;
    o->quiet = run->quiet;
    o->no_check = run->no_check;
    o->tls_options = &run->tls_options;
}

/* The PROXY protocol options, in every mode (the address is resolved already). */
static void check_proxy_args(const struct run *run)
{
    const struct probe_options *o = &run->probe;
    yd_addr a;
    yd_addr_parse(run->addr, &a);
    if (o->proxy == PROXY_V1 && a.transport == YD_UDP)
        usage_error("send", "--proxy-protocol v1 is for streams: use v2 over UDP");
    if (o->proxy == PROXY_NONE && (o->proxy_source != NULL || o->proxy_dest != NULL))
        usage_error("send", "--proxy-source, --proxy-dest: only with --proxy-protocol");
    if (a.transport == YD_UNIX && (o->proxy_source == NULL) != (o->proxy_dest == NULL))
        usage_error("send", "--proxy-source and --proxy-dest: a Unix socket needs both (or "
                            "neither: the header then says UNKNOWN)");
    if (o->proxy != PROXY_NONE && a.tls && !run->probing)
        usage_error("send", "--proxy-protocol over TLS: only in probe mode (--count, "
                            "--interval), which sends the header before the handshake");
}

/*
 * The address to connect to, made udp:// for --udp or tls:// (tls+unix:) for --tls, in static
 * storage; and how the TLS options go with it.
 */
static const char *resolve_transport(struct run *run)
{
    static char buf[YD_ADDR_TEXT_BYTES];
    const struct send_tls_options *t = &run->tls_options;
    yd_addr a;
    yd_addr_parse(run->addr, &a);
    if (a.transport == YD_UDP)
        run->udp = 1;
    if (run->udp && run->tls_asked)
        usage_error("send", "--tls and %s: TLS needs a stream (TCP or a Unix socket)",
                    a.transport == YD_UDP ? "a udp:// address" : "--udp");
    if (run->udp && a.tls)
        usage_error("send", "--udp: not with a TLS address (TLS needs a stream)");
    if (!a.tls && !run->tls_asked && run->tls_only != NULL)
        usage_error("send", "--%s: only over TLS (a tls:// or tls+unix: address, or --tls)",
                    run->tls_only);
    if (t->ca_file != NULL && t->insecure)
        usage_error(
            "send",
            "--ca and --insecure: choose one (--insecure skips the verification --ca is for)");
    if (t->key_file != NULL && t->cert_file == NULL)
        usage_error("send", "--key needs --cert (the client certificate the key is for)");
    if (run->udp && a.transport == YD_UNIX)
        usage_error("send", "--udp: a Unix socket address cannot be UDP");
    if (run->udp == (a.transport == YD_UDP) && run->tls_asked <= a.tls)
        return run->addr;
    if (run->udp)
        a.transport = YD_UDP;
    else
        a.tls = 1;
    yd_addr_format(&a, buf, sizeof buf);
    return buf;
}

/*
 * UDP: each line must fit in one datagram. The limit depends on the family: known here for an
 * address literal; for a name, what fits neither family is refused here and the kernel says
 * the rest (EMSGSIZE) when sending.
 */
static void check_datagram_sizes(const struct run *run)
{
    yd_addr a;
    unsigned char bin[16];
    yd_addr_parse(run->addr, &a);
    int v4 = inet_pton(AF_INET, a.host, bin) == 1;
    int v6 = inet_pton(AF_INET6, a.host, bin) == 1;
    size_t limit = v4 ? UDP_MAX_IPV4 : UDP_MAX_IPV6;
    char from[32] = "";
    if (run->clients > 1)
        snprintf(from, sizeof from, " from %d", run->clients - 1);
    for (int i = 0; i < run->nmessages; i++) {
        size_t len = strlen(run->messages[i]) + strlen(from) + 1;
        if (len <= limit)
            continue;
        if (v4 || v6)
            usage_error("send",
                        "--udp: MESSAGE %d is %zu bytes as a line, more than the %zu bytes of a "
                        "UDP datagram over %s",
                        i + 1, len, limit, v4 ? "IPv4" : "IPv6");
        usage_error("send",
                    "--udp: MESSAGE %d is %zu bytes as a line, more than a UDP datagram holds "
                    "(%u bytes over IPv4, %u over IPv6)",
                    i + 1, len, UDP_MAX_IPV4, UDP_MAX_IPV6);
    }
}

/* The mode's own rules for the plain modes (MESSAGE..., '-'). Returns whether it streams. */
static int check_plain_args(const struct run *run)
{
    if (run->probe_only != NULL)
        usage_error("send", "--%s: only in probe mode (--count, --interval)", run->probe_only);
    int streaming = run->nmessages == 1 && strcmp(run->messages[0], "-") == 0;
    if (streaming && (run->clients > 1 || run->parts || run->udp))
        usage_error("send", "'-' streams one connection: not with -n, --parts or --udp");
    if (streaming && run->expect != NULL)
        usage_error("send", "--expect: not with '-' (a stream is not cut into messages)");
    if (run->parts && run->udp)
        usage_error("send", "--parts needs a stream: not with --udp");
    if (run->udp)
        check_datagram_sizes(run);
    return streaming;
}

/* The TLS configuration for a tls:// or tls+unix: address (exits 2 if a file is bad). */
static void make_tls(struct run *run)
{
    yd_addr a;
    yd_addr_parse(run->addr, &a);
    if (!a.tls)
        return;
    run->tls_options.handshake_timeout_ms = run->timeout_ms;
    run->tls = send_tls_new(&run->tls_options);
}

static int run_plain(struct run *run, int streaming)
{
    if (yd_loop_new(&run->loop) < 0) {
        fprintf(stderr, "yodel send: out of memory\n");
        return EXIT_RUNTIME;
    }
    int status = streaming ? send_stdin(run) : send_messages(run);
    free_loop(run);
    /* Replies still in stdio's buffer are replies too: a failed last flush is a failure. */
    if (fflush(stdout) != 0)
        stdout_error(run);
    return run->stdout_failed ? EXIT_RUNTIME : status;
}

int cmd_send(int argc, char **argv)
{
    struct run run = {.addr = "127.0.0.1:8888",
                      .clients = 1,
                      .timeout_ms = 5000,
                      .retries = 3,
                      .probe = {.interval_ms = 1000, .max_loss_pct = 100}};
    parse_args(&run, argc, argv);
    run.addr = resolve_transport(&run);
    check_proxy_args(&run);
    int streaming = 0;
    if (run.probing)
        check_probe_args(&run);
    else
        streaming = check_plain_args(&run);
    make_tls(&run);
    run.probe.tls = run.tls;
    signal(SIGPIPE, SIG_IGN);
    int status = run.probing ? send_probe(&run.probe) : run_plain(&run, streaming);
    yd_tls_free(run.tls);
    return status;
}
