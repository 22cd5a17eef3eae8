/*
 * yodel bench: a load generator for any echo server.
 *
 * Each thread runs one yd_loop with its share of the connections. A connection keeps
 * DEPTH messages in flight (closed loop), or sends on a fixed schedule (--rate, open
 * loop, latency from the intended send time as wrk2 does, and how late each send went
 * out recorded as the send lag). Every message is SIZE bytes carrying its sequence
 * number and connection index (bench_codec.h). Stream echoes are compared piece by
 * piece where they land, datagrams whole; nothing is allocated per message.
 *
 * A thread's run: connect (batches of CONNECT_BATCH) -> wait for main's start -> warmup
 * -> measure for -t -> stop sending, wait for what is in flight -> close -> loop ends.
 * It ends early on Ctrl-C, or when every connection of the thread has ended (nothing is
 * left to measure). Reports: text or one JSON object (bench_json.h escapes its strings).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_codec.h"
#include "bench_json.h"
#include "cli.h"
#include "histogram.h"
#include "yodel.h"

static const char usage[] =
    "usage: yodel bench [-c ADDR] [-n CONNS] [-s SIZE] [-p DEPTH] [-t DURATION]\n"
    "                   [--warmup DURATION] [--rate N] [--udp] [--threads N] [--timeout D]\n"
    "                   [--json]\n"
    "\n"
    "Load an echo server and report round trips/s, MB/s and latency percentiles.\n"
    "Every echoed byte is checked; any mismatch, reset, unexpected close, timeout,\n"
    "lost or duplicated datagram or failed connect makes the exit status 1.\n"
    "\n"
    "  -c, --connect ADDR        server: HOST:PORT, udp://HOST:PORT, unix:PATH\n"
    "                            (127.0.0.1:8888)\n"
    "  -n, --connections CONNS   connections, opened in batches of 64 per thread (50)\n"
    "  -s, --size SIZE           message size in bytes, its final '\\n' included (64;\n"
    "                            2 to 1m, 65507 for UDP)\n"
    "  -p, --depth DEPTH         messages in flight per connection (1; SIZE * DEPTH <= 1m)\n"
    "  -t, --duration DURATION   how long to measure (10s)\n"
    "      --warmup DURATION     load without measuring first (1s)\n"
    "      --rate N              open loop: N round trips/s in total, spread evenly over\n"
    "                            the connections and scheduled with 1 ms resolution;\n"
    "                            latency counts from when each message was due\n"
    "                            (coordinated omission corrected). The report gives the\n"
    "                            rate offered and the send lag (how late sends went out);\n"
    "                            offering less than 90 % of N is a failure (exit 1): the\n"
    "                            connections were full, so add connections or depth\n"
    "      --udp                 use UDP (same as -c udp://HOST:PORT); lost and duplicated\n"
    "                            datagrams are errors, reordered and late ones (back after\n"
    "                            being counted lost) are counted\n"
    "      --threads N           spread the connections over N event loops (1)\n"
    "      --timeout D           a reply later than this is a timeout (2s)\n"
    "      --json                print the report as one JSON object\n"
    "  -h, --help                this help\n"
    "\n"
    "When every connection has ended (the server closed or died), the run stops at once,\n"
    "reports its rates over the time it was live, and exits 1.\n"
    "The report goes to stdout; a progress line goes to stderr when it is a terminal.\n"
    "Latency percentiles come from a log-linear histogram (within 0.8 %).\n";

#define CONNECT_BATCH    64
#define MAX_WINDOW_BYTES (1024u * 1024u)
#define NO_SEQ           UINT64_MAX
#define LOST_RECORD_MIN  16
/* --rate: offering less than this share of the target fails the run. */
#define TARGET_SHARE 0.9

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
    uint64_t late; /* a datagram that came back after being counted lost */
    uint64_t sent; /* messages sent while measuring: the offered load */
} counters;

enum client_state { CLIENT_IDLE, CLIENT_CONNECTING, CLIENT_OPEN, CLIENT_CLOSING, CLIENT_DEAD };

struct worker;

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
    size_t lost_next;   /* UDP: where the next lost sequence number goes in lost[] */
    char *msg;          /* the message template; its header is rewritten per send */
    uint64_t *start_ns; /* DEPTH slots: when each message in flight started */
    uint64_t *slot_seq; /* UDP only: which message each slot holds, or NO_SEQ */
    uint64_t *lost;     /* UDP only: the last lost_record() sequence numbers counted lost */
} client;

struct bench;

typedef struct worker {
    struct bench *b;
    unsigned id;
    pthread_t thread;
    yd_loop *loop;
    yd_timer *tick;
    yd_timer *phase;
    yd_signal *sigint;
    yd_signal *sigterm;
    client *clients;
    size_t nclients;
    char *arena;
    size_t next_connect;
    size_t connecting;
    size_t open;      /* connections whose on_close has not run yet */
    size_t connected; /* connections that came up */
    size_t inflight;
    int first_connect_error;
    int setup_error;
    int ready;
    int started;
    int recording;
    int stopping;
    int finishing;
    int all_dead; /* every connection of this thread ended before the run did */
    uint64_t connect_start_ns;
    uint64_t record_start_ns;
    uint64_t record_end_ns;
    uint64_t interval_ns; /* --rate: between two sends of one connection */
    counters cnt;
    histogram send_lag;        /* --rate: how late each send went out against its schedule */
    uint64_t verified;         /* round trips so far, warmup included */
    _Atomic uint64_t progress; /* the same, for the main thread's progress line */
    histogram hist;
} worker;

typedef struct bench {
    config cfg;
    char addr[300];
    worker *workers;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ready;
    unsigned done;
    _Atomic int interrupted;
    _Atomic int abort_run;
} bench;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether data is bytes off .. off+len of this connection's message seq. */
static int piece_matches(const client *c, uint64_t seq, size_t off, const char *data, size_t len)
{
    return codec_piece_matches(c->msg, c->w->b->cfg.size, seq, off, data, len);
}

/* Whether a datagram is the whole message with sequence number seq. */
static int echo_matches(const client *c, const char *data, size_t len, uint64_t seq)
{
    return len == c->w->b->cfg.size && piece_matches(c, seq, 0, data, len);
}

static void drop_client(client *c)
{
    c->state = CLIENT_CLOSING;
    yd_conn_abort(c->conn);
}

static void count_close_status(counters *cnt, int status)
{
    if (status == 0)
        cnt->closed++;
    else if (status == -ECONNRESET || status == -EPIPE)
        cnt->reset++;
    else if (status == -ETIMEDOUT)
        cnt->timeout++;
    else
        cnt->io++;
}

/*
 * Sends the next message at now, its latency counted from start_ns. With --rate, how late it
 * went out against its schedule (next_due_ns) is the client's send lag.
 */
static void send_one(client *c, uint64_t now, uint64_t start_ns)
{
    worker *w = c->w;
    const config *cfg = &w->b->cfg;
    uint64_t seq = c->next_seq;
    size_t slot = seq % cfg->depth;
    if (cfg->udp) {
        /* Replies may come back out of order, so the slot of seq may still be taken. */
        for (size_t i = 0; c->slot_seq[slot] != NO_SEQ && i < cfg->depth; i++)
            slot = (slot + 1) % cfg->depth;
        if (c->slot_seq[slot] != NO_SEQ)
            return;
    }
    codec_put_seq(c->msg, cfg->size, seq);
    int rc = yd_conn_write(c->conn, c->msg, cfg->size);
    if (rc < 0) {
        count_close_status(&w->cnt, rc);
        drop_client(c);
        return;
    }
    c->next_seq++;
    if (w->recording) {
        w->cnt.sent++;
        if (w->interval_ns != 0)
            hist_record(&w->send_lag, now > c->next_due_ns ? now - c->next_due_ns : 0);
    }
    c->start_ns[slot] = start_ns;
    if (cfg->udp)
        c->slot_seq[slot] = seq;
    c->inflight++;
    w->inflight++;
}

/*
 * Tops the connection up: to DEPTH in flight in a closed loop; with --rate, every
 * message already due while the connection was full is sent now, its latency counted
 * from when it was due.
 */
static void refill(client *c, uint64_t now)
{
    worker *w = c->w;
    size_t depth = w->b->cfg.depth;
    while (c->state == CLIENT_OPEN && c->inflight < depth) {
        if (w->interval_ns == 0) {
            send_one(c, now, now);
            continue;
        }
        if (c->next_due_ns > now)
            return;
        send_one(c, now, c->next_due_ns);
        c->next_due_ns += w->interval_ns;
    }
}

static void finish(worker *w);

static void complete(client *c, uint64_t now, uint64_t start_ns, int ok)
{
    worker *w = c->w;
    c->inflight--;
    w->inflight--;
    if (!ok) {
        w->cnt.mismatch++;
    } else {
        w->verified++;
        atomic_store_explicit(&w->progress, w->verified, memory_order_relaxed);
        if (w->recording) {
            hist_record(&w->hist, now - start_ns);
            w->cnt.round_trips++;
        }
    }
    if (!w->stopping)
        refill(c, now);
    else if (w->inflight == 0)
        finish(w);
}

/*
 * Stream echoes arrive in whatever pieces the reads return: each piece is compared where it
 * landed with the bytes expected at that offset of the echo due next (acked), so a server
 * that answers with something else (a banner, an error page) is a mismatch even when it
 * closes before a whole message came back.
 */
static void on_data_stream(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    size_t size = w->b->cfg.size;
    uint64_t now = now_ns();
    while (len > 0 && c->state == CLIENT_OPEN) {
        if (c->inflight == 0) {
            /* Bytes nobody asked for: the stream cannot be trusted from here on. */
            w->cnt.mismatch++;
            drop_client(c);
            return;
        }
        size_t n = size - c->rx_off < len ? size - c->rx_off : len;
        if (!c->rx_bad && !piece_matches(c, c->acked, c->rx_off, data, n))
            c->rx_bad = 1;
        c->rx_off += n;
        data += n;
        len -= n;
        if (c->rx_off < size)
            return;
        uint64_t seq = c->acked++;
        int ok = !c->rx_bad;
        c->rx_off = 0;
        c->rx_bad = 0;
        /* May send more, or end the run and close this connection. */
        complete(c, now, c->start_ns[seq % w->b->cfg.depth], ok);
    }
}

/* How many lost sequence numbers a UDP connection remembers, to tell late from duplicate. */
static size_t lost_record(const config *cfg)
{
    return cfg->depth * 2 > LOST_RECORD_MIN ? cfg->depth * 2 : LOST_RECORD_MIN;
}

static void remember_lost(client *c, uint64_t seq)
{
    const config *cfg = &c->w->b->cfg;
    c->lost[c->lost_next] = seq;
    c->lost_next = (c->lost_next + 1) % lost_record(cfg);
}

/* Whether seq (its low digits: mask) is one of the remembered lost ones; forgets it if so. */
static int forget_lost(client *c, uint64_t got, uint64_t mask)
{
    size_t n = lost_record(&c->w->b->cfg);
    for (size_t i = 0; i < n; i++) {
        if (c->lost[i] != NO_SEQ && (c->lost[i] & mask) == got) {
            c->lost[i] = NO_SEQ;
            return 1;
        }
    }
    return 0;
}

/*
 * A datagram that no message in flight waits for: late if it was counted lost not long ago
 * (not an error: the loss was), else a duplicate of one already answered (the server, or
 * the network, sent it twice) or, if it is not a message this connection sent, a mismatch.
 */
static void unexpected_datagram(client *c, const char *data, size_t len, uint64_t got,
                                uint64_t mask)
{
    counters *cnt = &c->w->cnt;
    int sent = c->next_seq > mask || got < c->next_seq;
    if (!sent || !echo_matches(c, data, len, got))
        cnt->mismatch++;
    else if (forget_lost(c, got, mask))
        cnt->late++;
    else
        cnt->duplicate++;
}

static void on_data_datagram(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    const config *cfg = &w->b->cfg;
    if (c->state != CLIENT_OPEN)
        return;
    uint64_t mask = codec_seq_mask(cfg->size);
    uint64_t got;
    if (len != cfg->size || codec_get_seq(data, len, &got) < 0) {
        w->cnt.mismatch++;
        return;
    }
    size_t slot = cfg->depth;
    for (size_t i = 0; i < cfg->depth && slot == cfg->depth; i++)
        if (c->slot_seq[i] != NO_SEQ && (c->slot_seq[i] & mask) == got)
            slot = i;
    if (slot == cfg->depth) {
        unexpected_datagram(c, data, len, got, mask);
        return;
    }
    uint64_t seq = c->slot_seq[slot];
    /* Reordered: it came back after a message sent later than it did. */
    if (seq < c->acked)
        w->cnt.reordered++;
    else
        c->acked = seq + 1;
    c->slot_seq[slot] = NO_SEQ;
    complete(c, now_ns(), c->start_ns[slot], echo_matches(c, data, len, seq));
}

static void mark(worker *w, int *flag, unsigned *count)
{
    bench *b = w->b;
    pthread_mutex_lock(&b->lock);
    if (!*flag) {
        *flag = 1;
        (*count)++;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
}

static void connect_next(worker *w);

static void connect_done(worker *w)
{
    w->connecting--;
    connect_next(w);
}

static void on_connect(yd_conn *conn)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    c->state = CLIENT_OPEN;
    w->connected++;
    connect_done(w);
    if (w->started && !w->stopping)
        refill(c, now_ns());
}

static void end_recording(worker *w);

/* Nothing is left to measure: the run ends now, its rates over the time it was live. */
static void end_dead(worker *w)
{
    w->all_dead = 1;
    end_recording(w);
}

static void on_close(yd_conn *conn, int status)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    enum client_state was = c->state;
    c->state = CLIENT_DEAD;
    c->conn = NULL;
    if (was == CLIENT_CONNECTING) {
        w->cnt.connect++;
        if (w->first_connect_error == 0)
            w->first_connect_error = status < 0 ? status : -ECONNREFUSED;
        w->open--;
        connect_done(w);
        return;
    }
    w->open--;
    /* A server that sent something else and closed: the wrong bytes are the error. */
    if (was == CLIENT_OPEN && !w->finishing && c->rx_bad)
        w->cnt.mismatch++;
    else if (was == CLIENT_OPEN && !w->finishing)
        count_close_status(&w->cnt, status);
    w->inflight -= c->inflight;
    c->inflight = 0;
    if (w->finishing) {
        if (w->open == 0)
            yd_loop_stop(w->loop);
        return;
    }
    if (w->started && !w->stopping && w->open == 0)
        end_dead(w);
    else if (w->stopping && w->inflight == 0)
        finish(w);
}

static const yd_protocol stream_protocol = {
    .on_connect = on_connect,
    .on_data = on_data_stream,
    .on_close = on_close,
};

static const yd_protocol datagram_protocol = {
    .on_connect = on_connect,
    .on_data = on_data_datagram,
    .on_close = on_close,
};

/* Keeps at most CONNECT_BATCH connects outstanding; tells main when all are done. */
static void connect_next(worker *w)
{
    const yd_protocol *proto = w->b->cfg.udp ? &datagram_protocol : &stream_protocol;
    while (w->connecting < CONNECT_BATCH && w->next_connect < w->nclients &&
           !atomic_load(&w->b->interrupted)) {
        client *c = &w->clients[w->next_connect++];
        c->state = CLIENT_CONNECTING;
        w->connecting++;
        w->open++;
        int rc = yd_conn_connect(w->loop, w->b->addr, proto, c, &c->conn);
        if (rc < 0) {
            /* The name is resolved before connecting: a failure here (no such host, ...)
             * would be the same for every connection, each after its own wait on the
             * resolver. The rest of this thread's connections fail with it. */
            c->state = CLIENT_DEAD;
            w->connecting--;
            w->open--;
            w->cnt.connect += 1 + (w->nclients - w->next_connect);
            w->next_connect = w->nclients;
            if (w->first_connect_error == 0)
                w->first_connect_error = rc;
        }
    }
    if (w->connecting == 0 && !w->ready)
        mark(w, &w->ready, &w->b->ready);
}

static void begin_recording(worker *w)
{
    hist_reset(&w->hist);
    w->cnt.round_trips = 0;
    w->recording = 1;
    w->record_start_ns = now_ns();
    yd_timer_start(w->phase, w->b->cfg.duration_ms, 0);
}

static void end_recording(worker *w)
{
    if (w->stopping)
        return;
    if (w->recording)
        w->record_end_ns = now_ns();
    w->recording = 0;
    w->stopping = 1;
    yd_timer_stop(w->phase);
    if (w->inflight == 0)
        finish(w);
}

static void on_phase(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    if (!w->recording)
        begin_recording(w);
    else
        end_recording(w);
}

/* Closes every connection; the loop stops when the last on_close has run. */
static void finish(worker *w)
{
    if (w->finishing)
        return;
    w->finishing = 1;
    yd_timer_free(w->tick);
    yd_timer_free(w->phase);
    w->tick = w->phase = NULL;
    if (w->sigint != NULL) {
        yd_signal_free(w->sigint);
        yd_signal_free(w->sigterm);
        w->sigint = w->sigterm = NULL;
    }
    for (size_t i = 0; i < w->nclients; i++) {
        client *c = &w->clients[i];
        if (c->state == CLIENT_OPEN || c->state == CLIENT_CONNECTING) {
            c->state = CLIENT_CLOSING;
            yd_conn_close(c->conn);
        }
    }
    if (w->open == 0)
        yd_loop_stop(w->loop);
}

/* Drops what waited too long: a TCP connection with an old reply, a lost datagram. */
static void check_timeouts(worker *w, uint64_t now)
{
    const config *cfg = &w->b->cfg;
    uint64_t limit = cfg->timeout_ms * 1000000u;
    for (size_t i = 0; i < w->nclients; i++) {
        client *c = &w->clients[i];
        if (c->state != CLIENT_OPEN || c->inflight == 0)
            continue;
        if (!cfg->udp) {
            if (now - c->start_ns[c->acked % cfg->depth] > limit) {
                w->cnt.timeout++;
                drop_client(c);
            }
            continue;
        }
        for (size_t s = 0; s < cfg->depth; s++) {
            if (c->slot_seq[s] == NO_SEQ || now - c->start_ns[s] <= limit)
                continue;
            remember_lost(c, c->slot_seq[s]);
            c->slot_seq[s] = NO_SEQ;
            w->cnt.lost++;
            c->inflight--;
            w->inflight--;
        }
    }
}

static void on_tick(yd_timer *timer, void *data)
{
    (void)timer;
    worker *w = data;
    uint64_t now = now_ns();
    if (!w->started) {
        /* A connect the kernel does not answer (a full backlog) must not hang the run. */
        uint64_t limit = (w->b->cfg.timeout_ms > 10000 ? w->b->cfg.timeout_ms : 10000) * 1000000u;
        if (now - w->connect_start_ns > limit || atomic_load(&w->b->interrupted)) {
            for (size_t i = 0; i < w->nclients; i++)
                if (w->clients[i].state == CLIENT_CONNECTING)
                    yd_conn_abort(w->clients[i].conn);
        }
        return;
    }
    if (atomic_load(&w->b->interrupted))
        end_recording(w);
    check_timeouts(w, now);
    if (w->stopping) {
        if (w->inflight == 0)
            finish(w);
        return;
    }
    for (size_t i = 0; i < w->nclients; i++) {
        client *c = &w->clients[i];
        if (w->interval_ns == 0) {
            refill(c, now);
            continue;
        }
        /* A send late only because of this timer's resolution counts from now. */
        while (c->state == CLIENT_OPEN && c->inflight < w->b->cfg.depth && c->next_due_ns <= now) {
            send_one(c, now, now);
            c->next_due_ns += w->interval_ns;
        }
    }
}

static void on_start(yd_loop *loop, void *data)
{
    (void)loop;
    worker *w = data;
    const config *cfg = &w->b->cfg;
    uint64_t now = now_ns();
    w->started = 1;
    if (atomic_load(&w->b->abort_run) || atomic_load(&w->b->interrupted)) {
        w->stopping = 1;
        finish(w);
        return;
    }
    if (w->open == 0) {
        /* None of this thread's connections came up, or all ended while the others connected. */
        end_dead(w);
        return;
    }
    if (cfg->rate > 0) {
        double per_conn = (double)cfg->rate / (double)cfg->conns;
        w->interval_ns = (uint64_t)(1e9 / per_conn);
        if (w->interval_ns == 0)
            w->interval_ns = 1;
        yd_timer_start(w->tick, 1, 1);
    } else {
        yd_timer_start(w->tick, 10, 10);
    }
    /* Without a warmup, the first sends are measured too. */
    if (cfg->warmup_ms == 0)
        begin_recording(w);
    else
        yd_timer_start(w->phase, cfg->warmup_ms, 0);
    for (size_t i = 0; i < w->nclients; i++) {
        client *c = &w->clients[i];
        /* Spread the first sends over one interval so the rate is even from the start. */
        c->next_due_ns = now + w->interval_ns * c->index / cfg->conns;
        refill(c, now);
    }
}

/* The first Ctrl-C ends the run early, with a report; each loop's tick notices it. */
static void on_signal(yd_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    bench *b = ((worker *)data)->b;
    if (atomic_exchange(&b->interrupted, 1))
        _exit(130);
}

static int worker_setup(worker *w)
{
    const config *cfg = &w->b->cfg;
    size_t first = cfg->conns * w->id / cfg->threads;
    size_t last = cfg->conns * (w->id + 1) / cfg->threads;
    w->nclients = last - first;
    /* Per connection: start_ns[depth], for UDP slot_seq[depth] and lost[], then the message. */
    size_t words = cfg->depth + (cfg->udp ? cfg->depth + lost_record(cfg) : 0);
    size_t per = (words * sizeof(uint64_t) + cfg->size + 15) & ~(size_t)15;
    w->clients = calloc(w->nclients, sizeof *w->clients);
    w->arena = malloc(w->nclients * per + 16);
    if (w->clients == NULL || w->arena == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < w->nclients; i++) {
        client *c = &w->clients[i];
        char *mem = w->arena + i * per;
        c->w = w;
        c->index = (uint32_t)(first + i);
        c->start_ns = (uint64_t *)mem;
        c->slot_seq = cfg->udp ? c->start_ns + cfg->depth : NULL;
        c->lost = cfg->udp ? c->slot_seq + cfg->depth : NULL;
        c->msg = mem + words * sizeof(uint64_t);
        codec_fill_template(c->msg, cfg->size, c->index);
        /* slot_seq and lost follow each other: NO_SEQ in both. */
        for (size_t s = 0; cfg->udp && s < cfg->depth + lost_record(cfg); s++)
            c->slot_seq[s] = NO_SEQ;
    }
    hist_reset(&w->hist);
    hist_reset(&w->send_lag);
    int rc = yd_loop_new(&w->loop);
    if (rc < 0)
        return rc;
    if ((rc = yd_timer_new(w->loop, on_tick, w, &w->tick)) < 0 ||
        (rc = yd_timer_new(w->loop, on_phase, w, &w->phase)) < 0)
        return rc;
    if (w->id == 0 && ((rc = yd_signal_new(w->loop, SIGINT, on_signal, w, &w->sigint)) < 0 ||
                       (rc = yd_signal_new(w->loop, SIGTERM, on_signal, w, &w->sigterm)) < 0))
        return rc;
    /* The tick keeps the loop alive until main says start; it also bounds the connects. */
    yd_timer_start(w->tick, 10, 10);
    w->connect_start_ns = now_ns();
    connect_next(w);
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int rc = worker_setup(w);
    if (rc < 0) {
        w->setup_error = rc;
        mark(w, &w->ready, &w->b->ready);
    } else {
        yd_loop_run(w->loop);
    }
    if (w->loop != NULL)
        yd_loop_free(w->loop);
    int done = 0;
    mark(w, &done, &w->b->done);
    return NULL;
}

/* Waits until *count reaches n or the deadline passes; shows progress on a terminal. */
static int wait_for(bench *b, unsigned *count, unsigned n, uint64_t deadline_ns, int progress)
{
    uint64_t started = now_ns();
    uint64_t last_rt = 0, last_ns = started;
    pthread_mutex_lock(&b->lock);
    while (*count < n) {
        uint64_t now = now_ns();
        if (now >= deadline_ns)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait_ns = progress ? 250000000u : deadline_ns - now;
        if (wait_ns > deadline_ns - now)
            wait_ns = deadline_ns - now;
        ts.tv_sec += (time_t)(wait_ns / 1000000000u);
        ts.tv_nsec += (long)(wait_ns % 1000000000u);
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        if (!progress || *count >= n)
            continue;
        uint64_t rt = 0;
        for (unsigned i = 0; i < b->cfg.threads; i++)
            rt += atomic_load_explicit(&b->workers[i].progress, memory_order_relaxed);
        now = now_ns();
        double secs = (double)(now - started) / 1e9;
        double rate = rt >= last_rt ? (double)(rt - last_rt) * 1e9 / (double)(now - last_ns) : 0;
        const char *phase = secs * 1000 < (double)b->cfg.warmup_ms ? "warmup" : "run";
        fprintf(stderr, "\r\033[K%6.1fs  %-6s  %12.0f round trips/s", secs, phase, rate);
        last_rt = rt;
        last_ns = now;
    }
    int ok = *count >= n;
    pthread_mutex_unlock(&b->lock);
    if (progress)
        fputs("\r\033[K", stderr);
    return ok ? 0 : -ETIMEDOUT;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

typedef struct result {
    counters cnt;
    histogram hist;
    histogram send_lag;
    double rate;       /* verified round trips/s while measuring */
    double offered;    /* messages sent/s while measuring */
    double duration_s; /* how long the measurement ran: less than -t if every connection died */
    size_t connected;
    int target_missed; /* --rate: offered less than TARGET_SHARE of it */
    int all_dead;      /* every connection ended before the run did */
} result;

static uint64_t error_total(const counters *c)
{
    return c->connect + c->mismatch + c->reset + c->closed + c->io + c->timeout + c->lost +
           c->duplicate;
}

static void add_counters(counters *to, const counters *c)
{
    to->round_trips += c->round_trips;
    to->connect += c->connect;
    to->mismatch += c->mismatch;
    to->reset += c->reset;
    to->closed += c->closed;
    to->io += c->io;
    to->timeout += c->timeout;
    to->lost += c->lost;
    to->duplicate += c->duplicate;
    to->reordered += c->reordered;
    to->late += c->late;
    to->sent += c->sent;
}

/* Rates add up over the threads, each over the time its own measurement was live. */
static void merge(bench *b, result *r)
{
    memset(r, 0, sizeof *r);
    hist_reset(&r->hist);
    hist_reset(&r->send_lag);
    r->all_dead = 1;
    for (unsigned i = 0; i < b->cfg.threads; i++) {
        worker *w = &b->workers[i];
        add_counters(&r->cnt, &w->cnt);
        hist_merge(&r->hist, &w->hist);
        hist_merge(&r->send_lag, &w->send_lag);
        r->connected += w->connected;
        r->all_dead &= w->all_dead;
        if (w->record_end_ns > w->record_start_ns) {
            double secs = (double)(w->record_end_ns - w->record_start_ns) / 1e9;
            r->rate += (double)w->cnt.round_trips / secs;
            r->offered += (double)w->cnt.sent / secs;
            if (secs > r->duration_s)
                r->duration_s = secs;
        }
    }
    /* A run stopped before measuring (Ctrl-C in the warmup) makes no claim about the rate. */
    r->target_missed =
        b->cfg.rate > 0 && r->duration_s > 0 && r->offered < TARGET_SHARE * (double)b->cfg.rate;
}

static const char *transport_name(const bench *b)
{
    if (b->cfg.udp)
        return "udp";
    return strncmp(b->addr, "unix:", 5) == 0 ? "unix" : "tcp";
}

/* "name":value for a duration in microseconds, or null when nothing was measured. */
static void json_us(FILE *f, const char *name, const histogram *h, uint64_t ns)
{
    fprintf(f, "\"%s\":", name);
    if (h->count == 0)
        fputs("null", f);
    else
        fprintf(f, "%.1f", us(ns));
}

static void json_latency(FILE *f, const histogram *h)
{
    fputc('{', f);
    json_us(f, "min", h, h->min);
    fprintf(f, ",\"mean\":");
    if (h->count == 0)
        fputs("null", f);
    else
        fprintf(f, "%.1f", hist_mean(h) / 1000.0);
    const struct {
        const char *name;
        double q;
    } quantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++) {
        fputc(',', f);
        json_us(f, quantiles[i].name, h, hist_quantile(h, quantiles[i].q));
    }
    fputc(',', f);
    json_us(f, "max", h, h->max);
    fputc('}', f);
}

static double unix_time_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
}

static void print_json(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    const counters *c = &r->cnt;
    FILE *f = stdout;
    fprintf(f, "{\"type\":\"summary\",\"ts\":%.3f,\"version\":", unix_time_s());
    json_string(f, yd_version());
    fputs(",\"address\":", f);
    json_string(f, b->addr);
    fputs(",\"transport\":", f);
    json_string(f, transport_name(b));
    fprintf(f, ",\"connections\":%zu,\"connected\":%zu,\"size\":%zu,\"depth\":%zu,\"threads\":%u,",
            cfg->conns, r->connected, cfg->size, cfg->depth, cfg->threads);
    if (cfg->rate > 0)
        fprintf(f, "\"rate\":%llu,", (unsigned long long)cfg->rate);
    else
        fputs("\"rate\":null,", f);
    fprintf(f,
            "\"offered_per_s\":%.1f,\"target_missed\":%s,\"all_connections_ended\":%s,"
            "\"duration_s\":%.3f,\"warmup_s\":%.3f,\"round_trips\":%llu,"
            "\"round_trips_per_s\":%.1f,\"mb_per_s\":%.3f,\"latency_us\":",
            r->offered, r->target_missed ? "true" : "false", r->all_dead ? "true" : "false",
            r->duration_s, (double)cfg->warmup_ms / 1000.0, (unsigned long long)c->round_trips,
            r->rate, r->rate * (double)cfg->size / 1e6);
    json_latency(f, &r->hist);
    fputs(",\"send_lag_us\":", f);
    if (cfg->rate > 0)
        json_latency(f, &r->send_lag);
    else
        fputs("null", f);
    fprintf(f,
            ",\"errors\":%llu,\"error_counts\":{\"connect\":%llu,\"mismatch\":%llu,"
            "\"reset\":%llu,\"closed\":%llu,\"io\":%llu,\"timeout\":%llu,\"lost\":%llu,"
            "\"duplicate\":%llu},\"reordered\":%llu,\"late\":%llu}\n",
            (unsigned long long)error_total(c), (unsigned long long)c->connect,
            (unsigned long long)c->mismatch, (unsigned long long)c->reset,
            (unsigned long long)c->closed, (unsigned long long)c->io,
            (unsigned long long)c->timeout, (unsigned long long)c->lost,
            (unsigned long long)c->duplicate, (unsigned long long)c->reordered,
            (unsigned long long)c->late);
}

/* One report line of percentiles, or n/a when nothing was measured. */
static void print_percentiles(const char *label, const histogram *h)
{
    if (h->count == 0) {
        printf("  %-13s n/a (nothing measured)\n", label);
        return;
    }
    printf("  %-13s min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", label,
           us(h->min), us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)),
           us(hist_quantile(h, 0.99)), us(hist_quantile(h, 0.999)), us(h->max));
}

static void print_errors(const counters *c)
{
    printf("  errors        %llu", (unsigned long long)error_total(c));
    const struct {
        const char *name;
        uint64_t n;
    } kinds[] = {{"connect", c->connect}, {"mismatch", c->mismatch},
                 {"reset", c->reset},     {"closed", c->closed},
                 {"io", c->io},           {"timeout", c->timeout},
                 {"lost", c->lost},       {"duplicate", c->duplicate}};
    const char *sep = " (";
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (kinds[i].n == 0)
            continue;
        printf("%s%s %llu", sep, kinds[i].name, (unsigned long long)kinds[i].n);
        sep = ", ";
    }
    printf("%s\n", *sep == ',' ? ")" : "");
}

static void print_text(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    const counters *c = &r->cnt;
    printf("yodel bench: %s, %zu connection%s (%zu up), %zu B messages, depth %zu, %s, "
           "%u thread%s\n",
           b->addr, cfg->conns, cfg->conns == 1 ? "" : "s", r->connected, cfg->size, cfg->depth,
           cfg->rate > 0 ? "open loop" : "closed loop", cfg->threads, cfg->threads == 1 ? "" : "s");
    if (cfg->rate > 0)
        printf("  target rate   %llu round trips/s, offered %.1f/s (%.1f %%)\n",
               (unsigned long long)cfg->rate, r->offered, 100.0 * r->offered / (double)cfg->rate);
    printf("  duration      %.2f s (after %.2f s warmup)\n", r->duration_s,
           (double)cfg->warmup_ms / 1000.0);
    printf("  round trips   %llu  (%.1f/s)\n", (unsigned long long)c->round_trips, r->rate);
    printf("  throughput    %.2f MB/s of payload each way\n", r->rate * (double)cfg->size / 1e6);
    print_percentiles("latency (us)", &r->hist);
    if (cfg->rate > 0)
        print_percentiles("send lag (us)", &r->send_lag);
    print_errors(c);
    if (cfg->udp)
        printf("  datagrams     %llu reordered, %llu late\n", (unsigned long long)c->reordered,
               (unsigned long long)c->late);
}

/* What made the run fail besides counted errors, one line each on stderr. */
static void print_warnings(const bench *b, const result *r)
{
    const config *cfg = &b->cfg;
    if (r->all_dead)
        fprintf(stderr,
                "yodel bench: every connection ended after %.2f s of measuring; the run "
                "stopped there\n",
                r->duration_s);
    if (r->target_missed)
        fprintf(stderr,
                "yodel bench: offered %.1f round trips/s, %.1f %% of the %llu asked for (send "
                "lag p99 %.1f us): try more connections (-n) or depth (-p)\n",
                r->offered, 100.0 * r->offered / (double)cfg->rate, (unsigned long long)cfg->rate,
                us(hist_quantile(&r->send_lag, 0.99)));
}

static void parse_options(int argc, char **argv, config *cfg)
{
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, 'c'},
        {"connections", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"depth", required_argument, NULL, 'p'},
        {"duration", required_argument, NULL, 't'},
        {"warmup", required_argument, NULL, 'W'},
        {"rate", required_argument, NULL, 'R'},
        {"udp", no_argument, NULL, 'U'},
        {"threads", required_argument, NULL, 'T'},
        {"timeout", required_argument, NULL, 'O'},
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *cfg = (config){.addr = "127.0.0.1:8888",
                    .conns = 50,
                    .size = 64,
                    .depth = 1,
                    .duration_ms = 10000,
                    .warmup_ms = 1000,
                    .timeout_ms = 2000,
                    .threads = 1};
    int c;
    while ((c = cli_getopt("bench", argc, argv, "c:n:s:p:t:h", longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            exit(EXIT_OK);
        case 'c':
            cfg->addr = opt_addr("bench", "-c", optarg);
            break;
        case 'n':
            cfg->conns = (size_t)opt_long("bench", "-n", optarg, 1, 1000000);
            break;
        case 's':
            cfg->size = (size_t)opt_size("bench", "-s", optarg, CODEC_MIN_SIZE, MAX_WINDOW_BYTES);
            break;
        case 'p':
            cfg->depth = (size_t)opt_long("bench", "-p", optarg, 1, 4096);
            break;
        case 't':
            cfg->duration_ms = opt_duration_ms("bench", "-t", optarg);
            if (cfg->duration_ms == 0)
                usage_error("bench", "-t: the duration must be more than 0");
            break;
        case 'W':
            cfg->warmup_ms = opt_duration_ms("bench", "--warmup", optarg);
            break;
        case 'R':
            cfg->rate = (uint64_t)opt_long("bench", "--rate", optarg, 1, 1000000000);
            break;
        case 'U':
            cfg->udp = 1;
            break;
        case 'T':
            cfg->threads = (unsigned)opt_long("bench", "--threads", optarg, 1, 256);
            break;
        case 'O':
            cfg->timeout_ms = opt_duration_ms("bench", "--timeout", optarg);
            if (cfg->timeout_ms == 0)
                usage_error("bench", "--timeout: the duration must be more than 0");
            break;
        case 'J':
            cfg->json = 1;
            break;
        }
    }
    if (optind < argc)
        usage_error("bench", "unexpected argument '%s'", argv[optind]);
    yd_addr addr;
    yd_addr_parse(cfg->addr, &addr);
    if (addr.transport == YD_UDP)
        cfg->udp = 1;
    if (cfg->udp && addr.transport == YD_UNIX)
        usage_error("bench", "--udp: '%s' is a Unix socket address", cfg->addr);
    if (cfg->udp && cfg->size > 65507)
        usage_error("bench", "-s: %zu is too big for a UDP datagram (65507 at most)", cfg->size);
    if (cfg->size * cfg->depth > MAX_WINDOW_BYTES)
        usage_error("bench", "-s %zu with -p %zu is more than 1m in flight per connection",
                    cfg->size, cfg->depth);
    if (cfg->threads > cfg->conns)
        cfg->threads = (unsigned)cfg->conns;
}

/* Each connection takes a descriptor: lift the soft limit as far as allowed. */
static void raise_fd_limit(size_t conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= conns + 64)
        return;
    rl.rlim_cur = conns + 64 < rl.rlim_max ? conns + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int cmd_bench(int argc, char **argv)
{
    bench *b = calloc(1, sizeof *b);
    if (b == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    parse_options(argc, argv, &b->cfg);
    const config *cfg = &b->cfg;
    yd_addr addr;
    yd_addr_parse(cfg->addr, &addr); /* checked by opt_addr */
    if (cfg->udp)
        addr.transport = YD_UDP;
    yd_addr_format(&addr, b->addr, sizeof b->addr);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg->conns);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->workers = calloc(cfg->threads, sizeof *b->workers);
    if (b->workers == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    unsigned started = 0;
    for (; started < cfg->threads; started++) {
        worker *w = &b->workers[started];
        w->b = b;
        w->id = started;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            break;
    }
    if (started < cfg->threads) {
        fprintf(stderr, "yodel bench: cannot start %u threads\n", cfg->threads);
        _exit(EXIT_RUNTIME);
    }
    int progress = isatty(STDERR_FILENO);
    uint64_t connect_limit_ms = cfg->timeout_ms > 10000 ? cfg->timeout_ms : 10000;
    if (wait_for(b, &b->ready, cfg->threads, now_ns() + (connect_limit_ms + 5000) * 1000000u, 0) <
        0) {
        fprintf(stderr, "yodel bench: connecting to %s did not finish in time\n", b->addr);
        _exit(EXIT_RUNTIME);
    }
    size_t connected = 0;
    int first_error = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        worker *w = &b->workers[i];
        if (w->setup_error < 0) {
            fprintf(stderr, "yodel bench: %s\n", yd_strerror(w->setup_error));
            _exit(EXIT_RUNTIME);
        }
        connected += w->connected;
        if (first_error == 0)
            first_error = w->first_connect_error;
    }
    if (connected == 0)
        atomic_store(&b->abort_run, 1);
    for (unsigned i = 0; i < cfg->threads; i++)
        yd_loop_call_threadsafe(b->workers[i].loop, on_start, &b->workers[i]);
    uint64_t run_ms = cfg->warmup_ms + cfg->duration_ms + cfg->timeout_ms + 10000;
    if (wait_for(b, &b->done, cfg->threads, now_ns() + run_ms * 1000000u, progress) < 0) {
        fprintf(stderr, "yodel bench: the run did not end in time\n");
        _exit(EXIT_RUNTIME);
    }
    for (unsigned i = 0; i < cfg->threads; i++)
        pthread_join(b->workers[i].thread, NULL);
    int status = EXIT_RUNTIME;
    result *r = malloc(sizeof *r);
    if (connected == 0) {
        fprintf(stderr, "yodel bench: cannot connect to %s: %s\n", cfg->addr,
                yd_strerror(first_error));
    } else if (r == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
    } else {
        if (first_error < 0)
            fprintf(stderr, "yodel bench: %zu of %zu connections failed: %s\n",
                    cfg->conns - connected, cfg->conns, yd_strerror(first_error));
        merge(b, r);
        print_warnings(b, r);
        if (cfg->json)
            print_json(b, r);
        else
            print_text(b, r);
        fflush(stdout);
        int failed = error_total(&r->cnt) > 0 || r->target_missed || r->all_dead;
        status = failed ? EXIT_RUNTIME : EXIT_OK;
    }
    for (unsigned i = 0; i < cfg->threads; i++) {
        free(b->workers[i].clients);
        free(b->workers[i].arena);
    }
    free(b->workers);
    free(r);
    free(b);
    return status;
}
