/*
 * yodel bench: one connection (a client), from connect to close. All of it runs on its
 * worker's loop; nothing is allocated after client_init(): a client's slots and message
 * template are in its worker's arena.
 *
 * The life of one round trip:
 *   1. send_one(): the message takes slot seq % DEPTH (UDP: the next free slot, as replies
 *      may come back out of order), seq's digits are written into the connection's template
 *      (codec_put_seq) and yd_conn_write() sends it. start_ns[slot] is now, or with --rate
 *      when the message was due; the client and its worker count it in flight.
 *   2. The echo comes back. Stream: on_data_stream() compares each piece where it landed with
 *      the bytes expected at offset rx_off of message `acked` (the one due next), and keeps a
 *      difference in rx_bad until the whole message is in. Datagram: on_data_datagram() finds
 *      the slot holding the datagram's sequence number and compares the datagram whole.
 *   3. complete(): no longer in flight; a verified echo's latency (now - start_ns[slot]) is
 *      recorded while measuring, a different one is a mismatch.
 *   4. refill() sends the next message in its place (back to 1) or, with --rate, whatever
 *      has come due; client_on_tick() sends what comes due between echoes. Once the run is
 *      stopping, the worker's last echo in flight finishes the worker (worker_finish()).
 *
 * How a round trip ends otherwise:
 *   - no echo within --timeout (client_check_timeouts(), on each tick): a stream connection
 *     is dropped (timeout); a datagram is counted lost, its slot freed and its number
 *     remembered, so that an echo that comes after all is late, not a duplicate;
 *   - bytes no message in flight waits for: a stream connection is dropped (mismatch); a
 *     datagram is late, a duplicate or a mismatch (unexpected_datagram());
 *   - the connection closes (on_close()): counted by its status, or as a mismatch when the
 *     bytes received so far were wrong.
 *
 * A client's states: IDLE -> CONNECTING (client_connect) -> OPEN (on_connect) -> CLOSING (we
 * drop or close it) -> DEAD (on_close, from any state). A connect that does not come up
 * (refused, a failed TLS handshake, or aborted at the connect deadline) goes from CONNECTING to
 * DEAD and is counted as a connect error. With --reconnect-every N, a connection whose N echoes
 * are back goes OPEN -> RECONNECTING (on_data_churn closes it) -> CONNECTING (on_close connects
 * again, on the same sequence numbers: an echo of the old connection cannot pass for one of the
 * new) -> OPEN. A plain run's protocol (stream_protocol) never tests for this per message: the
 * functions on the path are inlined twice, with and without it (refill_as()).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>

#include "bench.h"
#include "bench_codec.h"
#include "histogram.h"
#include "yodel.h"

static void on_connect(yd_conn *conn);
static void on_data_stream(yd_conn *conn, const char *data, size_t len);
static void on_data_churn(yd_conn *conn, const char *data, size_t len);
static void on_data_datagram(yd_conn *conn, const char *data, size_t len);
static void on_close(yd_conn *conn, int status);

static const yd_protocol stream_protocol = {
    .on_connect = on_connect,
    .on_data = on_data_stream,
    .on_close = on_close,
};

/* --reconnect-every: the same, but each connection ends after its N round trips. */
static const yd_protocol churn_protocol = {
    .on_connect = on_connect,
    .on_data = on_data_churn,
    .on_close = on_close,
};

static const yd_protocol datagram_protocol = {
    .on_connect = on_connect,
    .on_data = on_data_datagram,
    .on_close = on_close,
};

/*
 * Counts one event of the client's: in its worker's counters and, with several targets, in
 * its target's tally too (a test per count, not per byte; errors are rare, sends are not, but
 * a branch on a pointer the worker already holds in cache costs next to nothing).
 */
#define COUNT(c, field)                                                                            \
    do {                                                                                           \
        (c)->w->cnt.field++;                                                                       \
        if ((c)->w->tally != NULL)                                                                 \
            (c)->w->tally[(c)->target].cnt.field++;                                                \
    } while (0)

/* How many lost sequence numbers a UDP connection remembers, to tell late from duplicate. */
static size_t lost_record(const config *cfg)
{
    return cfg->depth * 2 > LOST_RECORD_MIN ? cfg->depth * 2 : LOST_RECORD_MIN;
}

/* Per connection: start_ns[depth], for UDP slot_seq[depth] and lost[], then the message. */
static size_t slot_words(const config *cfg)
{
    return cfg->depth + (cfg->udp ? cfg->depth + lost_record(cfg) : 0);
}

size_t client_mem_size(const config *cfg)
{
    return (slot_words(cfg) * sizeof(uint64_t) + cfg->size + 15) & ~(size_t)15;
}

void client_init(client *c, worker *w, uint32_t index, char *mem)
{
    const config *cfg = &w->b->cfg;
    c->w = w;
    c->index = index;
    c->target = index % (uint32_t)cfg->ntargets;
    c->start_ns = (uint64_t *)mem;
    c->slot_seq = cfg->udp ? c->start_ns + cfg->depth : NULL;
    c->lost = cfg->udp ? c->slot_seq + cfg->depth : NULL;
    c->msg = mem + slot_words(cfg) * sizeof(uint64_t);
    codec_fill_template(c->msg, cfg->size, c->index);
    /* slot_seq and lost follow each other: NO_SEQ in both. */
    for (size_t s = 0; cfg->udp && s < cfg->depth + lost_record(cfg); s++)
        c->slot_seq[s] = NO_SEQ;
}

int client_connect(client *c)
{
    worker *w = c->w;
    const bench *b = w->b;
    const yd_protocol *proto = b->cfg.udp               ? &datagram_protocol
                               : b->cfg.reconnect_every ? &churn_protocol
                                                        : &stream_protocol;
    c->state = CLIENT_CONNECTING;
    c->connect_ns = now_ns();
    /* -c repeated: this client's target; --bind: its source address (NULL: none). */
    int rc = yd_conn_connect_addr(w->loop, &b->target[c->target], load_source(b, c->index), b->tls,
                                  proto, c, &c->conn);
    if (rc < 0)
        c->state = CLIENT_DEAD;
    return rc;
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

static void count_close_status(client *c, int status)
{
    if (status == 0)
        COUNT(c, closed);
    else if (status == -ECONNRESET || status == -EPIPE)
        COUNT(c, reset);
    else if (status == -ETIMEDOUT)
        COUNT(c, timeout);
    else
        COUNT(c, io);
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
        count_close_status(c, rc);
        drop_client(c);
        return;
    }
    c->next_seq++;
    if (w->recording) {
        COUNT(c, sent);
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
 * Whether the connection may send another message: always, unless (churn: with
 * --reconnect-every, a constant where it is inlined) it has sent its N already.
 */
#define ALWAYS_INLINE inline __attribute__((always_inline))
static ALWAYS_INLINE int may_send(const client *c, int churn)
{
    return !churn || c->next_seq - c->conn_seq < c->w->b->cfg.reconnect_every;
}

/*
 * Tops the connection up: to DEPTH in flight in a closed loop; with --rate, every
 * message already due while the connection was full is sent now, its latency counted
 * from when it was due. Inlined with churn a constant, so that a run without
 * --reconnect-every does not test it per message.
 */
static ALWAYS_INLINE void refill_as(client *c, uint64_t now, int churn)
{
    worker *w = c->w;
    size_t depth = w->b->cfg.depth;
    while (c->state == CLIENT_OPEN && c->inflight < depth && may_send(c, churn)) {
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

/* refill_as() where it is not per message (a connect, the start, a tick). */
static void refill(client *c, uint64_t now)
{
    if (c->w->b->cfg.reconnect_every != 0)
        refill_as(c, now, 1);
    else
        refill_as(c, now, 0);
}

/*
 * A connection is up (with TLS, its handshake done): its connect time is recorded (the first
 * connects, or those made while measuring). Before the start it is one of the first connects;
 * after it, a reconnect (--reconnect-every), counted while measuring, which sends at once.
 */
static void on_connect(yd_conn *conn)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    uint64_t now = now_ns();
    c->state = CLIENT_OPEN;
    c->conn_seq = c->next_seq;
    if (!w->b->cfg.udp && (!w->started || w->recording))
        hist_record(&w->connect_lat, now - c->connect_ns);
    if (w->tls_version[0] == '\0' && yd_conn_tls_version(conn) != NULL)
        snprintf(w->tls_version, sizeof w->tls_version, "%s", yd_conn_tls_version(conn));
    if (!w->started) {
        w->connected++;
        worker_connect_done(w);
        return;
    }
    if (w->recording) {
        COUNT(c, connects);
        w->cnt.resumed += (uint64_t)yd_conn_tls_resumed(conn);
    }
    if (!w->stopping)
        refill(c, now);
}

/* The run starts: spread the first sends over one interval so the rate is even from the start. */
void client_start(client *c, uint64_t now)
{
    worker *w = c->w;
    c->next_due_ns = now + w->interval_ns * c->index / w->b->cfg.conns;
    refill(c, now);
}

/* --rate: sends what came due since the last tick (churn as in refill_as()). */
static ALWAYS_INLINE void send_due_as(client *c, uint64_t now, int churn)
{
    worker *w = c->w;
    /* A send late only because of this timer's resolution counts from now. */
    while (c->state == CLIENT_OPEN && c->inflight < w->b->cfg.depth && c->next_due_ns <= now &&
           may_send(c, churn)) {
        send_one(c, now, now);
        c->next_due_ns += w->interval_ns;
    }
}

/* Sends what is due: closed loop, tops up; with --rate, what came due since the last tick. */
void client_on_tick(client *c, uint64_t now)
{
    worker *w = c->w;
    if (w->interval_ns == 0)
        refill(c, now);
    else if (w->b->cfg.reconnect_every != 0)
        send_due_as(c, now, 1);
    else
        send_due_as(c, now, 0);
}

/*
 * A message came back: as it was sent if ok, else a mismatch. Sends the next, or ends (churn as
 * in refill_as()).
 */
static ALWAYS_INLINE void complete(client *c, uint64_t now, uint64_t start_ns, int ok, int churn)
{
    worker *w = c->w;
    c->inflight--;
    w->inflight--;
    if (!ok) {
        COUNT(c, mismatch);
    } else {
        w->verified++;
        atomic_store_explicit(&w->progress, w->verified, memory_order_relaxed);
        if (w->recording) {
            hist_record(&w->hist, now - start_ns);
            w->cnt.round_trips++;
            if (w->tally != NULL) {
                hist_record(&w->tally[c->target].hist, now - start_ns);
                w->tally[c->target].cnt.round_trips++;
            }
        }
    }
    if (!w->stopping)
        refill_as(c, now, churn);
    else if (w->inflight == 0)
        worker_drained(w);
}

/*
 * Stream echoes arrive in whatever pieces the reads return: each piece is compared where it
 * landed with the bytes expected at that offset of the echo due next (acked), so a server
 * that answers with something else (a banner, an error page) is a mismatch even when it
 * closes before a whole message came back. (churn as in refill_as().)
 */
static ALWAYS_INLINE void stream_received(yd_conn *conn, const char *data, size_t len, int churn)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    size_t size = w->b->cfg.size;
    uint64_t now = now_ns();
    while (len > 0 && c->state == CLIENT_OPEN) {
        if (c->inflight == 0) {
            /* Bytes nobody asked for: the stream cannot be trusted from here on. */
            COUNT(c, mismatch);
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
        complete(c, now, c->start_ns[seq % w->b->cfg.depth], ok, churn);
    }
}

static void on_data_stream(yd_conn *conn, const char *data, size_t len)
{
    stream_received(conn, data, len, 0);
}

/*
 * --reconnect-every N: once the connection's N echoes are all back (and verified: bytes beyond
 * them were a mismatch above), it closes, and on_close() connects again.
 */
static void on_data_churn(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    stream_received(conn, data, len, 1);
    if (c->state == CLIENT_OPEN && !w->stopping && c->inflight == 0 &&
        c->acked - c->conn_seq >= w->b->cfg.reconnect_every) {
        c->state = CLIENT_RECONNECTING;
        yd_conn_close(c->conn);
    }
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
    int sent = c->next_seq > mask || got < c->next_seq;
    if (!sent || !echo_matches(c, data, len, got))
        COUNT(c, mismatch);
    else if (forget_lost(c, got, mask))
        COUNT(c, late);
    else
        COUNT(c, duplicate);
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
        COUNT(c, mismatch);
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
        COUNT(c, reordered);
    else
        c->acked = seq + 1;
    c->slot_seq[slot] = NO_SEQ;
    complete(c, now_ns(), c->start_ns[slot], echo_matches(c, data, len, seq), 0);
}

/* Stream: the oldest echo in flight waited more than limit: the connection is dropped. */
static void check_stream_timeout(client *c, uint64_t now, uint64_t limit)
{
    worker *w = c->w;
    if (now - c->start_ns[c->acked % w->b->cfg.depth] > limit) {
        COUNT(c, timeout);
        drop_client(c);
    }
}

/* Datagram: each one in flight for more than limit is lost; its slot takes the next. */
static void check_datagram_timeouts(client *c, uint64_t now, uint64_t limit)
{
    worker *w = c->w;
    for (size_t s = 0; s < w->b->cfg.depth; s++) {
        if (c->slot_seq[s] == NO_SEQ || now - c->start_ns[s] <= limit)
            continue;
        remember_lost(c, c->slot_seq[s]);
        c->slot_seq[s] = NO_SEQ;
        COUNT(c, lost);
        c->inflight--;
        w->inflight--;
    }
}

/*
 * Drops what waited more than --timeout: a reconnect (--reconnect-every) not up yet, a TCP
 * connection with an old reply, a lost datagram.
 */
void client_check_timeouts(client *c, uint64_t now)
{
    worker *w = c->w;
    const config *cfg = &w->b->cfg;
    uint64_t limit = cfg->timeout_ms * 1000000u;
    if (c->state == CLIENT_CONNECTING && now - c->connect_ns > limit) {
        if (w->first_reconnect_error == 0)
            w->first_reconnect_error = -ETIMEDOUT;
        yd_conn_abort(c->conn); /* on_close: a connect error */
        return;
    }
    if (c->state != CLIENT_OPEN || c->inflight == 0)
        return;
    if (!cfg->udp)
        check_stream_timeout(c, now, limit);
    else
        check_datagram_timeouts(c, now, limit);
}

/* At the connect deadline: a connect the kernel does not answer is a connect error. */
void client_abort_connect(client *c)
{
    if (c->state == CLIENT_CONNECTING)
        yd_conn_abort(c->conn);
}

/*
 * The run is over: closes the connection, or gives up its connect; on_close follows. A client
 * waiting for its turn to reconnect has no connection: it ends here.
 */
void client_close(client *c)
{
    if (c->state == CLIENT_OPEN || c->state == CLIENT_CONNECTING) {
        c->state = CLIENT_CLOSING;
        yd_conn_close(c->conn);
    } else if (c->state == CLIENT_WAITING) {
        c->state = CLIENT_DEAD;
        c->w->open--;
    }
}

/*
 * A connect that did not come up: a connect error. One of the first: room for the next
 * connect. A reconnect: the client is gone, as a dropped one is.
 */
static void on_connect_failed(client *c, int status)
{
    worker *w = c->w;
    int error = status < 0 ? status : -ECONNREFUSED;
    COUNT(c, connect);
    w->open--;
    if (w->started) {
        if (w->first_reconnect_error == 0)
            w->first_reconnect_error = error;
        worker_conn_closed(w);
        return;
    }
    if (w->first_connect_error == 0)
        w->first_connect_error = error;
    worker_connect_done(w);
}

/*
 * --reconnect-every: the connection closed after its N round trips; a new one starts, unless
 * the run is stopping. With --connect-rate (paced) it waits for its turn (bench_run.c), the
 * client still counted open. Returns whether it started or waits (on_close then has nothing
 * more to do).
 */
static int reconnect(client *c, int paced)
{
    worker *w = c->w;
    if (w->stopping || w->finishing)
        return 0;
    if (paced) {
        c->state = CLIENT_WAITING;
        worker_wait_turn(w, c);
        return 1;
    }
    int rc = client_connect(c);
    if (rc == 0)
        return 1;
    /* Refused before it started (no ephemeral port left: EADDRNOTAVAIL, no descriptor). */
    COUNT(c, connect);
    if (w->first_reconnect_error == 0)
        w->first_reconnect_error = rc;
    return 0;
}

/*
 * Every connection ends here, once. Connecting: a connect error. Open: the server closed, reset
 * or failed it (counted unless the run was finishing anyway). Closing: we dropped it, having
 * counted why, or closed it at the end. Reconnecting: we closed it after its N round trips, and
 * the next connection of this client starts (the client stays open). Its messages in flight are
 * given up; the worker then sees whether its run goes on.
 */
static void on_close(yd_conn *conn, int status)
{
    client *c = yd_conn_data(conn);
    worker *w = c->w;
    enum client_state was = c->state;
    c->state = CLIENT_DEAD;
    c->conn = NULL;
    if (was == CLIENT_CONNECTING) {
        if (yd_conn_tls_error(conn) != NULL)
            tls_note_failure(yd_conn_tls_error(conn));
        on_connect_failed(c, status);
        return;
    }
    if (was == CLIENT_RECONNECTING && reconnect(c, w->connect_interval_ns != 0))
        return;
    w->open--;
    /* A server that sent something else and closed: the wrong bytes are the error. */
    if (was == CLIENT_OPEN && !w->finishing && c->rx_bad)
        COUNT(c, mismatch);
    else if (was == CLIENT_OPEN && !w->finishing)
        count_close_status(c, status);
    w->inflight -= c->inflight;
    c->inflight = 0;
    worker_conn_closed(w);
}

/* --connect-rate: the turn of a client waiting to reconnect came. */
void client_take_turn(client *c)
{
    worker *w = c->w;
    if (c->state != CLIENT_WAITING)
        return; /* ended meanwhile (the run is finishing) */
    c->state = CLIENT_DEAD;
    if (reconnect(c, 0))
        return;
    w->open--;
    worker_conn_closed(w);
}

/*
 * --find-max, between steps: a client whose connection ended (dropped after a timeout, or
 * closed after its N round trips as the step stopped) connects again, from a clean slate (what
 * it had in flight was given up with the connection); one whose N are done reconnects. 0, or
 * why it cannot start.
 */
int client_revive(client *c)
{
    const config *cfg = &c->w->b->cfg;
    /* --reconnect-every: open, its N round trips done as the last step stopped (it was not
     * closed then): it closes now, and on_close() connects again. */
    if (c->state == CLIENT_OPEN && cfg->reconnect_every != 0 &&
        c->next_seq - c->conn_seq >= cfg->reconnect_every) {
        c->state = CLIENT_RECONNECTING;
        yd_conn_close(c->conn);
        return 0;
    }
    if (c->state != CLIENT_DEAD)
        return 0;
    c->acked = c->next_seq;
    c->rx_off = 0;
    c->rx_bad = 0;
    c->inflight = 0;
    for (size_t s = 0; cfg->udp && s < cfg->depth; s++)
        c->slot_seq[s] = NO_SEQ;
    return client_connect(c);
}
