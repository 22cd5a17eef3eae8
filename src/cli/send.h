/*
 * yodel send, cut by idea: send.c parses the options and runs the echo client (MESSAGE... and
 * '-'); send_probe.c is the ping-like probe (--count, --interval) and send_probe_report.c its
 * lines, summary and tally; send_proxy.c writes the PROXY protocol header sent first;
 * send_tls.c makes the TLS client configuration and words its failures.
 */
#ifndef YODEL_SEND_H
#define YODEL_SEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "yodel.h"

/* ---- PROXY protocol (send_proxy.c) --------------------------------------------------------- */

enum proxy_version { PROXY_NONE, PROXY_V1, PROXY_V2 };

/* Room for the longest header written: v1 with two IPv6 addresses is at most 107 bytes (the
 * spec's own bound); v2 with two IPv6 addresses is 16 + 36 bytes. */
#define PROXY_HEADER_MAX 108

/*
 * Writes the PROXY protocol header (HAProxy's proxy-protocol.txt) for a connection from src to
 * dst into buf (PROXY_HEADER_MAX bytes). src and dst are AF_INET or AF_INET6 addresses (a mix
 * is written as IPv6, the IPv4 one mapped to ::ffff:a.b.c.d), or both NULL when the ends are not
 * IP addresses (a Unix socket): v1 "PROXY UNKNOWN", v2 the PROXY command with family UNSPEC.
 * stream: 1 for TCP, 0 for UDP (v2 only: v1 knows no datagrams). Returns the header's length,
 * or -EINVAL (v1 over UDP, an address of another family).
 */
int proxy_header_format(enum proxy_version version, int stream, const struct sockaddr *src,
                        const struct sockaddr *dst, char *buf);

/* Parses a numeric "IPV4:PORT" or "[IPV6]:PORT" (--proxy-source, --proxy-dest). 0 or -EINVAL. */
struct sockaddr_storage;
int proxy_addr_parse(const char *text, struct sockaddr_storage *out);

/* ---- TLS (send_tls.c) ---------------------------------------------------------------------- */

struct yd_tls;

/* --ca, --insecure, --sni, --cert, --key (send.c has checked how they combine). */
struct send_tls_options {
    const char *ca_file;     /* verify the server with these CAs; NULL: the system's */
    const char *cert_file;   /* a client certificate, or NULL */
    const char *key_file;    /* its key; NULL: in cert_file */
    const char *server_name; /* SNI and the name verified; NULL: the address's host */
    int insecure;            /* do not verify the server */
    uint64_t handshake_timeout_ms;
};

/*
 * The client configuration. A file that cannot be read or used exits 2 with one line naming
 * it; --insecure is said once on stderr.
 */
struct yd_tls *send_tls_new(const struct send_tls_options *o);

/*
 * The end of an error line for a TLS connection that failed with status: handshaken says
 * whether on_connect had run, answered whether anything came back since. -EPROTO, all the
 * library says of a failed handshake, becomes what most likely failed ("TLS handshake failed
 * (certificate not verified?)"); so does an error before the first answer (a server that
 * wants a client certificate says so then, in TLS 1.3). The text is in static storage.
 */
/* Notes why conn's handshake failed, for send_tls_failure: call it first thing in on_close. */
void send_tls_note(const yd_conn *conn);
const char *send_tls_failure(const struct send_tls_options *o, int status, int handshaken,
                             int answered);

/*
 * Why a TLS server may end a session before its first answer, with an alert, a reset or a plain
 * close: in TLS 1.3 that is how a refused (or missing) client certificate shows.
 */
const char *send_tls_refusal_hint(const struct send_tls_options *o);

/* ---- The probe (send_probe.c) --------------------------------------------------------------- */

struct probe_options {
    const char *addr;         /* the server, udp:// for --udp (checked by yd_addr_parse) */
    const char *message;      /* each probe is the line "MESSAGE SEQ" */
    uint64_t count;           /* probes to send; 0: until SIGINT or SIGTERM */
    uint64_t interval_ms;     /* from one probe's start to the next one's */
    uint64_t timeout_ms;      /* for the connect, and for each reply */
    int reconnect;            /* a new connection (a new UDP socket) per probe */
    int source_port;          /* bind the client socket to this port first; 0: any */
    double max_loss_pct;      /* exit 1 above this loss (and whenever nothing came back) */
    int tally;                /* count the replies per backend */
    int json;                 /* one JSON object per line */
    int quiet;                /* the summary (and tally) only */
    int no_check;             /* any line (datagram) that comes back answers the probe */
    enum proxy_version proxy; /* send a PROXY header first on each connection */
    const char *proxy_source; /* the header's source, "HOST:PORT" (numeric); NULL: our own */
    const char *proxy_dest;   /* the header's destination; NULL: the server's address */
    struct yd_tls *tls;       /* a TLS client of this (addr is tls:// or tls+unix:), or NULL */
    const struct send_tls_options *tls_options;
};

/* Runs the probes and prints their report. Returns the exit status. */
int send_probe(const struct probe_options *options);

#endif
