/* Shared-private declarations of libyodel: the structures behind the opaque handles. */
#ifndef YODEL_INTERNAL_H
#define YODEL_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <uv.h>

#include "yodel.h"

/* ---- bufq.c: a byte queue of pooled fixed-size blocks ----------------------------------- */

#define BLOCK_BYTES (16u * 1024u)

struct block {
    struct block *next;
    uint32_t start, end; /* the unread bytes are data[start, end) */
    char data[];
};

/* Free blocks kept per loop, so steady-state queueing allocates nothing. */
struct block_pool {
    struct block *free;
    size_t count;
};

struct bufq {
    struct block *head, *tail;
    size_t len;
};

int yd__bufq_push(struct bufq *q, struct block_pool *pool, const char *data, size_t len);
/* Fills at most max_iov buffers with the queue's first bytes; returns their count. */
unsigned yd__bufq_peek(const struct bufq *q, uv_buf_t *iov, unsigned max_iov, size_t *bytes);
/* Copies the first len bytes out without consuming them; returns how many were there. */
size_t yd__bufq_copyout(const struct bufq *q, void *out, size_t len);
void yd__bufq_consume(struct bufq *q, struct block_pool *pool, size_t len);
void yd__bufq_clear(struct bufq *q, struct block_pool *pool);
void yd__block_pool_clear(struct block_pool *pool);

/* ---- stats.c ----------------------------------------------------------------------------- */

struct yd_stats {
    _Atomic uint64_t conns_accepted, conns_active, conns_refused, conns_closed;
    _Atomic uint64_t messages, bytes_in, bytes_out;
    _Atomic uint64_t errors[YD_ERR__COUNT];
};

/*
 * One thread writes a yd_stats, others only read it: a relaxed load and store is
 * enough (plain moves on x86), where an atomic add would lock the bus per message.
 */
#define STAT_ADD(st, field, n)                                                                     \
    do {                                                                                           \
        if ((st) != NULL)                                                                          \
            atomic_store_explicit(&(st)->field,                                                    \
                                  atomic_load_explicit(&(st)->field, memory_order_relaxed) + (n),  \
                                  memory_order_relaxed);                                           \
    } while (0)
#define STAT_SUB(st, field, n) STAT_ADD(st, field, (uint64_t)0 - (uint64_t)(n))

struct yd_conn_limit {
    size_t max;
    _Atomic size_t open;
};

/* ---- loop.c ------------------------------------------------------------------------------ */

#define READ_BUF_BYTES (64u * 1024u)

struct call {
    struct call *next;
    void (*fn)(yd_loop *loop, void *data);
    void *data;
};

struct yd_loop {
    uv_loop_t uv;
    char *read_buf; /* one read buffer for every socket of the loop: idle connections own none */
    struct block_pool pool;
    struct yd_conn *conns;     /* every open connection */
    struct yd_server *servers; /* every open server */
    uv_timer_t kick;           /* runs deferred on_connect calls */
    uv_timer_t sweep;          /* idle timeouts and draining */
    uint64_t sweep_every_ms;
    int draining;
    uint64_t drain_deadline_ms;
    uv_async_t async;
    pthread_mutex_t calls_lock;
    struct call *calls;
};

void yd__loop_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
/* Makes sure the sweep timer runs at least every every_ms (idle timeouts, draining). */
void yd__loop_want_sweep(yd_loop *loop, uint64_t every_ms);
/* How often to sweep for an idle timeout: a quarter of it, within 10 ms..1 s. */
uint64_t yd__loop_sweep_period(uint64_t idle_timeout_ms);
void yd__loop_kick(yd_loop *loop);

/* ---- conn.c ------------------------------------------------------------------------------ */

enum conn_kind { CONN_TCP, CONN_PIPE, CONN_TTY, CONN_UDP };

enum conn_flag {
    CF_CONNECTED = 1 << 0,
    CF_READING = 1 << 1,
    CF_USER_PAUSED = 1 << 2,
    CF_FULL = 1 << 3, /* write queue above the high watermark: reading paused */
    CF_EOF = 1 << 4,
    CF_SHUT_WANTED = 1 << 5,
    CF_SHUT_SENT = 1 << 6,
    CF_CLOSE_WANTED = 1 << 7, /* close once the write queue is empty */
    CF_CLOSING = 1 << 8,      /* uv_close called or about to be */
    CF_NEED_CONNECT = 1 << 9, /* on_connect still to run from the loop */
    CF_ACCEPTED = 1 << 10,    /* accepted by a server (drained on shutdown) */
    CF_STASHED = 1 << 11,     /* pend holds unframed bytes read before a pause */
    CF_SWITCHING = 1 << 12,   /* a datagram client moving to the next address of its name */
};

struct connect_state;

struct yd_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_tty_t tty;
        uv_udp_t udp;
    } h;
    yd_loop *loop;
    const yd_protocol *protocol;
    void *data;
    yd_server *server;
    yd_stats *stats;
    yd_conn_limit *limit;        /* released when the connection closes */
    struct yd_conn *prev, *next; /* the loop's list */
    uint32_t flags;
    uint8_t kind;
    uint8_t read_mode;
    int status;      /* what on_close will be told */
    size_t read_arg; /* the line limit or the exact size */
    char *pend;      /* the start of a message split across reads */
    size_t pend_len, pend_cap;
    struct bufq wq;  /* bytes the kernel has not taken yet */
    size_t inflight; /* bytes of wq handed to uv_write */
    size_t held;     /* bytes a protocol holds to send later (echo --delay) */
    uint64_t last_active_ms;
    uint64_t idle_timeout_ms;
    uv_write_t wreq;
    union {
        uv_shutdown_t shut;
        uv_connect_t connect;
    } req;
    struct connect_state *connecting;
    union { /* the peer as accept4 gave it (family 0 when unknown): named even after close */
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
};

/* Allocates a connection of a kind, linked into the loop. Handle not initialised. */
yd_conn *yd__conn_new(yd_loop *loop, enum conn_kind kind, const yd_protocol *protocol, void *data);
/* Wraps a descriptor accept4 returned (peer: its address); NULL (counted, fd closed) if that
 * fails. Not started yet. */
yd_conn *yd__conn_accept(yd_server *server, int fd, const struct sockaddr *peer,
                         socklen_t peer_len);
/* Makes an opened connection one the loop serves: counted as accepted, drained on shutdown. */
void yd__conn_serve(yd_conn *conn, yd_stats *stats);
/* Closes an accepted connection without telling its protocol (max-conns). */
void yd__conn_refuse(yd_conn *conn);
/* Frees a connection whose handle was never initialised. */
void yd__conn_discard(yd_conn *conn);
/* A connection whose handle is ready: counts it, runs on_connect, starts reading. */
void yd__conn_start(yd_conn *conn);
/* Runs deferred on_connect calls. */
void yd__conn_run_kicks(yd_loop *loop);
/* Closes with an error: counts it by kind and resets the connection. */
void yd__conn_fail(yd_conn *conn, int status);
/* Idle timeouts and draining: called by the loop's sweep timer. */
void yd__conn_sweep(yd_loop *loop, uint64_t now_ms);

/* ---- server.c ---------------------------------------------------------------------------- */

#define MAX_SOCKETS 16

/* One socket of a server. yodel owns the descriptor and watches it with a uv_poll (see
 * server.c for why it accepts and reads datagrams by itself). */
struct listener {
    uv_poll_t poll;
    uv_timer_t retry; /* accepting paused after EMFILE resumes from here */
    int fd;
    int family;
    yd_server *server;
    int dst_family; /* the current datagram's destination address, for the reply's source */
    union {
        struct in_pktinfo v4;
        struct in6_pktinfo v6;
    } dst;
};

struct yd_server {
    yd_loop *loop;
    yd_server_options options;
    yd_transport transport;
    struct yd_server *prev, *next; /* the loop's list */
    unsigned nsockets;
    unsigned open_handles;    /* freed when the last listener handle has closed */
    size_t conns;             /* connections it accepted that are still open */
    struct listener *current; /* the socket a datagram came in on, during on_datagram */
    void (*on_free)(void *data);
    char unix_path[108];
    struct listener sockets[MAX_SOCKETS];
};

/* Called by conn.c when a connection a server accepted closes. */
void yd__server_conn_closed(yd_server *server);
/* Sets a hook run when the server's memory is freed (echo.c frees its context there). */
void yd__server_set_on_free(yd_server *server, void (*on_free)(void *data));

/* ---- addr.c ------------------------------------------------------------------------------ */

#define RESOLVED_MAX 16

/* The addresses a name stands for, in the resolver's order, without duplicates. */
struct resolved {
    int count;
    int localhost; /* synthesised: an address the host lacks (no IPv6) may be skipped */
    socklen_t len[RESOLVED_MAX];
    struct sockaddr_storage addr[RESOLVED_MAX];
};

/* Resolves a parsed address; YD_ERESOLVE for a name that does not resolve. */
int yd__addr_resolve(const yd_addr *addr, int socktype, int passive, struct resolved *out);
/* "127.0.0.1:80", "[::1]:80" or "unix"; returns the length or a negative error. */
int yd__sockaddr_format(const struct sockaddr *sa, char *buf, size_t len);
int yd__sockaddr_port(const struct sockaddr *sa);

/* ---- error.c ----------------------------------------------------------------------------- */

/* libuv's codes are negative errno values on Unix: one mapping for both. */
enum yd_error_kind yd__error_kind_of(int status);

#endif
