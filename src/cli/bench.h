/*
 * yodel bench, inside: what its files share. Where a change belongs:
 *
 *   bench.c         options, their checks, and cmd_bench: the main flow of a run
 *   bench_run.c     the threads: connect batching, warmup and measuring, the tick (sends on
 *                   --rate's schedule, timeouts), Ctrl-C, and main waiting for them all
 *   bench_conn.c    one connection: connect, send, receive, verify, time out, and with
 *                   --reconnect-every close and connect again (the life of one round trip is
 *                   drawn at its top)
 *   bench_tls.c     the TLS options' checks and the one client configuration every connection
 *                   shares
 *   bench_report.c  the threads' counts merged, and the text and JSON reports (with --hist
 *                   the .hgrm file)
 *   bench_interval.c --interval: each worker's copy of its totals at each interval's end, and
 *                   the thread that prints one line per interval from them
 *   bench_merge.c   yodel bench merge and yodel bench compare: summaries read back
 *   bench_load.c    the load shape's options: several targets (-c repeated, their figures in
 *                   the reports), --bind, --connect-rate, --rate A:B --ramp, --slo
 *   bench_findmax.c --find-max: steps of -t at rising rates, bisected, until the SLO breaks
 *   bench_codec.c   the messages; bench_json.c the JSON string writer; histogram.c latency
 *
 * A struct bench is shared by every thread; each struct worker belongs to its thread (its
 * loop, its clients), except progress, which main reads while the run goes on, its connect
 * results, which main reads once it is ready, and its counts, read once it has ended.
 */
#ifndef YODEL_BENCH_H
#define YODEL_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "histogram.h"
#include "yodel.h"

#define CONNECT_BATCH    64
#define MAX_WINDOW_BYTES (1024u * 1024u)
#define NO_SEQ           UINT64_MAX
#define LOST_RECORD_MIN  16
/* --rate: offering less than this share of the target fails the run. */
#define TARGET_SHARE 0.9
/* -c and --bind, repeated. */
#define MAX_TARGETS 64
#define MAX_BINDS   256

/* --slo: what a --find-max step must hold (bench_load.c parses it). */
typedef struct slo {
    uint64_t latency_ns[4]; /* p50, p90, p99, p99.9; 0: no bound */
    int has_errors;
    int errors_pct; /* the bound is a share of the messages sent, not a count */
    double errors;  /* % or count */
} slo;
/* --percentiles: how many the summary may list. */
#define MAX_PERCENTILES 16

typedef struct config {
    const char *addr;
    int udp;
    size_t conns;
    size_t size;
    size_t depth;
    uint64_t duration_ms;
    uint64_t warmup_ms;
    uint64_t timeout_ms;
    uint64_t rate; /* 0: closed loop */
    unsigned threads;
    int json;
    uint64_t reconnect_every; /* 0: keep each connection; N: a new one after N round trips */
    /* TLS (bench_tls.c): tls:// or --tls, and the client's certificate options. */
    int tls;
    int insecure;
    int resume; /* --resume: reconnections resume the TLS session */
    const char *ca_file;
    const char *sni;
    const char *cert_file;
    const char *key_file;
    /* Load shape (bench_load.c): several targets (addr is the first), source addresses, the
     * pace of connects, a ramp of --rate, and the max-rate search. */
    const char *addrs[MAX_TARGETS];
    size_t ntargets;
    const char *binds[MAX_BINDS];
    size_t nbinds;
    uint64_t connect_rate; /* new connections/s in all; 0: batches of CONNECT_BATCH */
    uint64_t rate_from;    /* --rate A:B: A, where the ramp starts (rate is B); else rate */
    uint64_t ramp_ms;      /* --ramp: from rate_from to rate over this, from the measuring on */
    const char *rate_text; /* --rate as given, for the error lines */
    int find_max;
    const char *slo_text;
    slo slo;
    /* Reports: --interval (0: off), --percentiles (in %), --hist. */
    uint64_t interval_ms;
    double percentiles[MAX_PERCENTILES];
    size_t npercentiles;
    const char *hist_file;
} config;

typedef struct counters {
    uint64_t round_trips; /* verified and measured */
    uint64_t connect;     /* connections that never came up */
    uint64_t mismatch;    /* echoes that differ from what was sent */
    uint64_t reset;
    uint64_t closed; /* the server closed while we were still talking */
    uint64_t io;
    uint64_t timeout;   /* a TCP reply later than --timeout: the connection is dropped */
    uint64_t lost;      /* a datagram without a reply within --timeout */
    uint64_t duplicate; /* a datagram answered again, or lost longer ago than we remember */
    uint64_t reordered;
    uint64_t late;     /* a datagram that came back after being counted lost */
    uint64_t sent;     /* messages sent while measuring: the offered load */
    uint64_t connects; /* connections that came up again while measuring (--reconnect-every) */
    uint64_t resumed;  /* of those, TLS handshakes that resumed a session (--resume) */
} counters;

enum client_state {
    CLIENT_IDLE,
    CLIENT_CONNECTING,
    CLIENT_OPEN,
    CLIENT_CLOSING,
    CLIENT_RECONNECTING, /* --reconnect-every: closing, to connect again in on_close */
    CLIENT_WAITING,      /* with --connect-rate: closed, waiting for its turn to connect */
    CLIENT_DEAD
};

struct worker;

/* -c repeated: one target's counts on one thread (bench_load.c). */
typedef struct target_tally {
    counters cnt;
    histogram hist;
    int connect_error; /* the first connect that could not start (not for its --bind source): the
                          others are not tried */
} target_tally;

typedef struct client {
    struct worker *w;
    yd_conn *conn;
    enum client_state state;
    uint32_t index;
    size_t inflight;
    uint64_t next_seq; /* of the next message to send */
    uint64_t acked;    /* TCP: the sequence number the next echo must carry; UDP: one past
                          the highest that came back */
    uint64_t next_due_ns;
    size_t rx_off;      /* stream: bytes of the next echo received so far */
    int rx_bad;         /* stream: those bytes differ from what was sent */
    uint32_t target;    /* -c repeated: which one this connection goes to (index % targets) */
    size_t lost_next;   /* UDP: where the next lost sequence number goes in lost[] */
    char *msg;          /* the message template; its header is rewritten per send */
    uint64_t *start_ns; /* DEPTH slots: when each message in flight started */
    uint64_t *slot_seq; /* UDP only: which message each slot holds, or NO_SEQ */
    uint64_t *lost;     /* UDP only: the last lost_record() sequence numbers counted lost */
    /* Not per message (after the fields that are, so that those keep their places). */
    uint64_t connect_ns; /* when the current connection's connect was called */
    uint64_t conn_seq;   /* --reconnect-every: the first sequence number of this connection */
} client;

struct bench;

/*
 * --interval: what a worker hands over at each interval's end (bench_interval.c), under
 * the printer's lock: a copy of its run totals, from which main subtracts the previous copy.
 */
typedef struct interval_snap {
    histogram hist;
    counters cnt;
    uint64_t start_ns; /* when the worker began recording */
    uint64_t at_ns;    /* when this copy was taken */
    size_t open;       /* connections up at that moment */
    unsigned seq;      /* intervals handed over: 0 before the first copy */
    int final;         /* recording has ended: no copy follows */
} interval_snap;

typedef struct worker {
    /* Set by main before the thread starts. */
    struct bench *b;
    unsigned id;
    pthread_t thread;
    /* The thread's loop, its timers, and on thread 0 the signals (bench_run.c). */
    yd_loop *loop;
    yd_timer *tick;
    yd_timer *phase;
    /* Its connections (clients), and their slots and messages in one arena (bench_conn.c). */
    client *clients;
    size_t nclients;
    char *arena;
    size_t next_connect;
    size_t connecting;
    size_t open;      /* connections whose on_close has not run yet */
    size_t connected; /* connections that came up */
    size_t inflight;
    int first_connect_error;
    int first_reconnect_error; /* --reconnect-every: why the first reconnect failed */
    int setup_error;
    /* Phases, in this order (a run that ends early skips some): ready, started, recording
     * (cleared again at stopping), stopping, finishing (bench_run.c). */
    int ready;
    int started;
    int recording;
    int stopping;
    int finishing;
    int all_dead; /* every connection of this thread ended before the run did */
    /* Times, the --rate interval, and what the reports read (bench_report.c). */
    uint64_t connect_start_ns;
    uint64_t record_start_ns;
    uint64_t record_end_ns;
    uint64_t interval_ns; /* --rate: between two sends of one connection */
    counters cnt;
    histogram send_lag;        /* --rate: how late each send went out against its schedule */
    uint64_t verified;         /* round trips so far, warmup included */
    _Atomic uint64_t progress; /* the same, for the main thread's progress line */
    histogram hist;
    /* From the connect call to on_connect (with TLS the handshake's end): the first connects,
     * or with --reconnect-every those made while measuring. */
    histogram connect_lat;
    char tls_version[16]; /* what the first connection negotiated, "" before */
    /* Load shape (bench_load.c, bench_run.c): counts per target (NULL with one target); the
     * pace of connects (--connect-rate) and the clients waiting for their turn to reconnect
     * (a ring of client numbers); when the first connects ended; --find-max's step end. */
    target_tally *tally;
    int start_error; /* with one target: the first connect that could not start (as above) */
    uint64_t connect_interval_ns;
    uint64_t next_connect_ns;
    uint32_t *waiting;
    size_t waiting_head;
    size_t waiting_len;
    size_t oldest_connect; /* before the start: the first client that may still be connecting */
    uint64_t ready_ns;
    int step_done;
    /* --interval (bench_interval.c): the boundary timer and what main last got. */
    yd_timer *ivl_timer;
    unsigned ivl_seq;
    interval_snap ivl;
} worker;

typedef struct bench {
    config cfg;
    char addr[300];
    yd_tls *tls; /* NULL without TLS; shared by every connection of every thread */
    worker *workers;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ready;
    unsigned done;
    _Atomic int interrupted;
    _Atomic int abort_run;
    /* -c repeated: each target's address as connects go to it (addr is the first, or with
     * several the list); --find-max: the rate of the next step and the steps that ended. */
    char target_addr[MAX_TARGETS][YD_ADDR_TEXT_BYTES];
    yd_addr target[MAX_TARGETS]; /* the same, parsed once: what each connect goes to */
    uint64_t step_rate;
    unsigned steps_done;
    FILE *hist_out;              /* --hist, opened before the run */
    struct intervals *intervals; /* --interval: main's printer (bench_interval.c) */
} bench;

typedef struct result {
    counters cnt;
    histogram hist;
    histogram send_lag;
    histogram connect_lat;
    double connect_rate;     /* --reconnect-every: connections that came up/s while measuring */
    const char *tls_version; /* "TLSv1.3", or NULL without TLS */
    int first_reconnect_error;
    double rate;       /* verified round trips/s while measuring */
    double offered;    /* messages sent/s while measuring */
    double duration_s; /* how long the measurement ran: less than -t if every connection died */
    size_t connected;
    int target_missed;      /* --rate: offered less than TARGET_SHARE of it */
    int all_dead;           /* every connection ended before the run did */
    size_t merged;          /* yodel bench merge: how many runs were added up (0: one run) */
    double connect_phase_s; /* from the first connect to the last of the first ones ending */
} result;

/* Inline: the receive path reads it once per read. */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* bench_tls.c: checks the TLS options together (exits 2 naming a bad one); with TLS, makes
 * b->tls (exits 2 for a file it cannot use, 1 if out of memory) and says on stderr that
 * --insecure verifies nothing. */
void tls_check_options(const config *cfg);
void tls_setup(bench *b);
/* Why a connect failed, for the one line that says so ("connection refused", or what a failed
 * TLS handshake may mean). */
/* Keeps the first handshake failure's reason (yd_conn_tls_error) for tls_connect_error. */
void tls_note_failure(const char *reason);
const char *tls_connect_error(const bench *b, int status);

/* bench_conn.c: one connection, on its worker's loop. */
/* Bytes of the worker's arena each client takes (its slots and message), and its setup there. */
size_t client_mem_size(const config *cfg);
void client_init(client *c, worker *w, uint32_t index, char *mem);
/* Starts connecting (the client's callbacks follow); a negative errno if it cannot start. */
int client_connect(client *c);
/* The run starts: the client's first sends. */
void client_start(client *c, uint64_t now);
/* On the worker's tick: drop what timed out, then send what is due. */
void client_check_timeouts(client *c, uint64_t now);
void client_on_tick(client *c, uint64_t now);
/* Gives up a connect still under way (the connect deadline, Ctrl-C). */
void client_abort_connect(client *c);
/* Closes an open or connecting client: the end of the run. */
void client_close(client *c);
/* --connect-rate: a client waiting to reconnect connects now (its turn came). */
void client_take_turn(client *c);
/* --find-max, between steps: a client whose connection ended connects again; 0 or an error. */
int client_revive(client *c);

/* bench_run.c, for main: the threads' life. A failure other than -ENOMEM exits at once, with
 * one line on stderr and status 1. */
/* Starts one worker per --threads: 0, or -ENOMEM. */
int run_start_threads(bench *b);
/* Waits for every worker's connects; returns how many came up, and the first error. */
size_t run_wait_connected(bench *b, int *first_error);
/* Starts the load (or, with no connection up, ends at once) and waits for every worker. */
void run_measure(bench *b, size_t connected);
void run_free(bench *b);

/* bench_run.c, the worker's side of a connection's events. */
/* A connect ended, up or not. */
void worker_connect_done(worker *w);
/* A connection closed (it had been up). */
void worker_conn_closed(worker *w);
/* Closes every connection; the worker's loop ends after the last one. */
void worker_finish(worker *w);
/* Stopping, and nothing is in flight any more: the run (or, --find-max, the step) is over. */
void worker_drained(worker *w);
/* --connect-rate: the client waits for its turn to connect again (client_take_turn()). */
void worker_wait_turn(worker *w, client *c);
/* --find-max, for main: starts the next step at b->step_rate on every worker, waits for its end
 * (0, or -ETIMEDOUT), and at the end closes everything and waits for the threads. */
int run_step(bench *b);
void run_end_steps(bench *b);

/* bench_load.c: the load shape's options, and the figures per target. */
enum {
    OPT_BIND = 0x400,
    OPT_CONNECT_RATE,
    OPT_RAMP,
    OPT_FIND_MAX,
    OPT_SLO,
};
/* Takes -c, --rate and the options above into cfg; 0 if c is none of them (exits 2 on a bad
 * value). */
int load_take_option(int c, const char *arg, config *cfg);
/* The checks of these options together, once all are read; exits 2 naming a problem. */
void load_check_options(config *cfg);
/* b->target_addr, each formatted with the transport and TLS of the run, and b->addr. */
void load_format_targets(bench *b);
/* Where connection `index` goes from: NULL without --bind. */
const char *load_source(const bench *b, uint32_t index);
/* --rate: the rate (round trips/s) asked for ns into the measuring, and its mean over -t. */
double load_rate_at(const config *cfg, uint64_t ns);
double load_mean_rate(const config *cfg);
/* -c repeated: the worker's tallies (NULL with one target); 0 or -ENOMEM. */
int load_alloc_tally(worker *w);
/* The report's lines on the load shape (connect phase and rate, ramp, figures per target), in
 * the text report and as members of the JSON summary (",\"targets\":[...]", ...). */
void load_print_text(const bench *b, const result *r);
void load_json(FILE *f, const bench *b, const result *r);

/* bench_findmax.c: the max-rate search, run by main instead of run_measure(); its exit status. */
int findmax_run(bench *b, size_t connected);

/* bench_report.c: once every thread has ended. */
void report_merge(const bench *b, result *r);
int report_failed(const result *r);
/* Warnings on stderr, then the text or JSON report on stdout; with --hist, the .hgrm file. */
void report_print(const bench *b, const result *r);
/* Every error counted (what makes the exit status 1), for the report and each interval. */
uint64_t counters_errors(const counters *c);
/* The name of a percentile (in %) in the text report, "p50", "p99.99999", and in the JSON
 * reports, "p50", "p99_9" (the dot as '_'). */
void percentile_name(char *buf, size_t size, double pct);
void percentile_key(char *buf, size_t size, double pct);
/* --hist FILE: opened before the run, so that a path it cannot write fails at once (exit 2). */
void report_open_hist(bench *b);
/* Writes and closes it: 0, or -1 after saying on stderr why it failed. */
int report_write_hist(bench *b, const result *r);

/* bench_interval.c: --interval. The worker's side, on its loop (bench_run.c calls them). */
/* Its boundary timer, when --interval is set: 0 or a negative errno. */
int interval_setup(worker *w);
/* Recording began: the first interval starts now. */
void interval_begin(worker *w);
/* Recording ended: the last (maybe partial) interval is handed over; the timer is freed. */
void interval_end(worker *w);
/* Main's side: the printer thread starts before the load and prints each interval once every
 * worker handed it over (or a quarter interval after the first did); interval_stop() prints
 * what remains, once every worker has ended, and joins it. */
int intervals_start(bench *b);
void intervals_stop(bench *b);

/* bench_merge.c: yodel bench merge FILE... and yodel bench compare BASE NEW (argv[0] is
 * "merge" or "compare"); the exit status. */
int bench_merge_main(int argc, char **argv);
int bench_compare_main(int argc, char **argv);

#endif
