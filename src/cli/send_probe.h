/*
 * The probe's report (send_probe_report.c): what send_probe.c tells it as probes go and what it
 * prints, a line per probe, then the summary and the tally, as text or JSON lines.
 */
#ifndef YODEL_SEND_PROBE_H
#define YODEL_SEND_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "send.h"

/* The backend named in a line and in the tally: the longest kept, in bytes. */
#define BACKEND_MAX 128
/* Distinct backends the tally tells apart; replies from any further ones count as "(other)". */
#define TALLY_MAX 1000

struct tally_row {
    char backend[BACKEND_MAX + 1];
    uint64_t replies;
};

/* Timings are kept in nanoseconds, one entry per answered probe (per connect and per TLS
 * handshake with --reconnect). */
struct series {
    uint64_t *ns;
    size_t len, cap;
};

struct probe_report {
    const struct probe_options *o;
    const char *transport; /* "tcp", "udp", "unix", "tls", "tls+unix" */
    uint64_t sent, received, late;
    uint64_t start_ns, end_ns; /* the first probe's start and the last one's end */
    struct series rtt, connect, handshake;
    char tls_version[32]; /* what the last reply's connection negotiated (TLS), or "" */
    struct tally_row *rows;
    size_t nrows;
    int failed; /* writing standard output failed, or out of memory: reported once */
};

/* A monotonic clock in nanoseconds. */
uint64_t probe_now_ns(void);

void report_start(struct probe_report *r);
/* Probe seq went out (or tried to connect). */
void report_sent(struct probe_report *r, uint64_t seq);
/* The probe in flight when interrupted: not counted. */
void report_unsend(struct probe_report *r);
/* An answered probe. */
struct probe_reply {
    uint64_t seq;
    size_t bytes;            /* the reply's, with a prefix or line end */
    uint64_t rtt_ns;         /* from the probe's write to its reply */
    uint64_t connect_ns;     /* --reconnect: its connect time (else ignored) */
    uint64_t handshake_ns;   /* --reconnect over TLS: its handshake's time (else ignored) */
    const char *tls_version; /* over TLS: what its connection negotiated ("TLSv1.3"); or NULL */
    const char *backend;     /* who answered (backend_len 0: nobody said) */
    size_t backend_len;
};

void report_reply(struct probe_report *r, const struct probe_reply *reply);
/* seq is lost: status is "timeout", "error" or "mismatch"; detail says more (or NULL). */
void report_lost(struct probe_report *r, uint64_t seq, const char *status, const char *detail);
/* The reply to an earlier probe, after that one was given up on (or a duplicate). */
void report_late(struct probe_report *r, uint64_t seq);
/* The summary, then the tally if asked. */
void report_end(struct probe_report *r);
/* 0, or 1: the loss is above --max-loss, nothing came back, or the report could not be made. */
int report_exit_status(const struct probe_report *r);
void report_free(struct probe_report *r);

#endif
