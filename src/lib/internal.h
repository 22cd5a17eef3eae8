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
#define TLS_BUF_BYTES  (64u * 1024u)

struct call {
    struct call *next;
    void (*fn)(yd_loop *loop, void *data);
    void *data;
};

struct yd_loop {
    uv_loop_t uv;
    char *read_buf; /* one read buffer for every socket of the loop: idle connections own none */
    char *tls_buf;  /* the same for plaintext out of TLS, made with the first TLS connection */
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
    int freeing; /* yd_loop_free under way: nothing new starts on it (-ECANCELED) */
};

void yd__loop_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
/* Makes sure the sweep timer runs at least every every_ms (idle timeouts, draining). */
void yd__loop_want_sweep(yd_loop *loop, uint64_t every_ms);
/* How often to sweep for an idle timeout: a quarter of it, within 10 ms..1 s. */
uint64_t yd__loop_sweep_period(uint64_t idle_timeout_ms);
void yd__loop_kick(yd_loop *loop);

/* ---- Transports: the one seam between a connection and its socket ----------------------- */

/*
 * What conn.c asks of a kind of socket, as redis's ConnectionType: conn.c frames, queues and
 * closes without knowing what carries the bytes; each kind (stream.c: TCP, Unix, terminal;
 * dgram.c: a connected UDP socket) fills this table, and a TLS transport slots in here
 * beneath every protocol. A transport reports back through the yd__conn_* events below.
 */
struct yd__transport {
    const char *name;    /* "tcp", "unix", "tty", "udp" */
    int datagram;        /* each write is one datagram: nothing is queued, no half-close */
    size_t handle_size;  /* of its libuv handle: a connection is allocated with room for it only */
    int read_at_connect; /* its read_start may run while a TCP connect is under way (TLS's
                            may not: its reads belong to the handshake) */
    /* Wraps a connected descriptor (the connection owns it from then on). */
    int (*open)(yd_conn *conn, int fd);
    /* Connected: per-kind socket options (TCP_NODELAY), a handshake. 0: ready, on_connect runs
     * now; 1: not yet, the transport calls yd__conn_ready later; < 0: failed. */
    int (*start)(yd_conn *conn);
    /* Starts or stops reading: bytes go to yd__conn_received (or yd__conn_datagram). */
    int (*read_start)(yd_conn *conn);
    int (*read_stop)(yd_conn *conn);
    /* Writes what the kernel takes now, never blocking: bytes taken (0: none), or -error. */
    int (*try_write)(yd_conn *conn, const char *data, size_t len);
    /* Writes queued bytes in the background; yd__conn_written when done. Streams only. */
    int (*write)(yd_conn *conn, const uv_buf_t *iov, unsigned n);
    /* Sends EOF after what was written; yd__conn_shut when done. Streams only. */
    int (*shutdown)(yd_conn *conn);
    /* Closes the socket, resetting a TCP peer if reset; yd__conn_closed when done. */
    void (*close)(yd_conn *conn, int reset);
    /* "127.0.0.1:50312", "[::1]:50312", "unix", "tty": the length, or a negative error. */
    int (*peer_name)(const yd_conn *conn, char *buf, size_t len);
};

extern const struct yd__transport yd__tcp_transport;      /* stream.c */
extern const struct yd__transport yd__unix_transport;     /* stream.c */
extern const struct yd__transport yd__tty_transport;      /* stream.c */
extern const struct yd__transport yd__udp_transport;      /* dgram.c */
extern const struct yd__transport yd__tls_tcp_transport;  /* tls.c */
extern const struct yd__transport yd__tls_unix_transport; /* tls.c */

/* stream.c's pieces that tls.c shares. */
int yd__stream_tcp_open(yd_conn *conn, int fd);
int yd__stream_unix_open(yd_conn *conn, int fd);
int yd__stream_tcp_peer_name(const yd_conn *conn, char *buf, size_t len);
int yd__stream_unix_peer_name(const yd_conn *conn, char *buf, size_t len);

/* tls.c: a connection's TLS state on yd_tls (server or client; host for SNI and verification). */
struct yd__tls_conn;
int yd__tls_attach(yd_conn *conn, yd_tls *tls, const char *host);
void yd__tls_detach(yd_conn *conn); /* frees the state of a connection that never opened */
void yd__tls_ref(yd_tls *tls);
void yd__tls_unref(yd_tls *tls);

/* The transport for a descriptor of unknown kind (inetd, stdin): the one switch on its type. */
const struct yd__transport *yd__transport_of_fd(int fd);

/* ---- conn.c: connections ------------------------------------------------------------------ */

/* A connection's life, in order; it only moves forward (asserted in conn.c). */
enum conn_phase {
    PHASE_OPENING, /* handle made: connecting, or on_connect still to run from the loop */
    PHASE_OPEN,    /* on_connect has run: reading and writing */
    PHASE_CLOSING, /* yd_conn_close: what is queued is sent, then the handle closes */
    PHASE_CLOSED   /* the handle is closing; on_close runs once it has */
};

/* Why reading is stopped: any of these, or a phase past PHASE_OPEN. */
enum read_stop {
    RS_PAUSED = 1 << 0,  /* yd_conn_pause_reading */
    RS_FULL = 1 << 1,    /* the write queue passed the high watermark (back-pressure) */
    RS_EOF = 1 << 2,     /* the peer half-closed */
    RS_STASHED = 1 << 3, /* pend holds unframed bytes read before a pause */
};

/* The write side: EOF is wanted once the queue empties, then sent. */
enum write_side { WRITE_OPEN, WRITE_SHUT_WANTED, WRITE_SHUT_SENT };

struct yd__connecting;

struct yd_conn {
    /* ---- Used by every connection ---- */
    const struct yd__transport *transport;
    yd_loop *loop;
    const yd_protocol *protocol;
    void *data;
    struct yd_conn *prev, *next; /* the loop's list */
    uint8_t phase;               /* enum conn_phase */
    uint8_t served;              /* accepted (or yd_server_serve_fd): drained by its loop */
    uint8_t on_connect_due;      /* on_connect still to run from the loop's kick */
    uint8_t reframe_due;         /* read mode changed over a partial message: frame it again */
    uint8_t started;             /* counted as active until closed */
    uint8_t ready;               /* on_connect ran (after the handshake, for TLS) */
    uint64_t ready_deadline_ms;  /* a handshake not done by then is dropped (0: none) */
    uint8_t proxy_expected;      /* a PROXY header comes first (pend gathers it) */
    uint8_t proxied;             /* peer is the original client a PROXY header named */
    int status;                  /* what on_close will be told */
    yd_server *server;           /* that accepted it, while the server is open */
    yd_stats *stats;
    yd_conn_limit *limit; /* released when the connection closes */
    uint64_t last_active_ms;
    uint64_t idle_timeout_ms;
    uint8_t moved; /* bytes moved since the last drain sweep (the loop's clock can lag) */
    union {        /* the peer as accept4 gave it (family 0 when unknown): named even after close */
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    /* ---- Reading and framing ---- */
    uint8_t read_mode;
    uint8_t read_stops; /* enum read_stop */
    uint8_t reading;    /* the transport is reading now */
    size_t read_arg;    /* the line limit (without '\n') or the exact size */
    char *pend;         /* the start of a message split across reads */
    size_t pend_len, pend_cap;
    /* ---- Writing ---- */
    uint8_t write_side; /* enum write_side */
    struct bufq wq;     /* bytes the kernel has not taken yet */
    size_t inflight;    /* bytes of wq handed to the transport's write */
    size_t held;        /* bytes the protocol holds to send later (yd_conn_set_held) */
    /* ---- Transport state ---- */
    uv_write_t wreq;
    union {
        uv_shutdown_t shut;
        uv_connect_t connect;
    } req;
    struct yd__connecting *connecting;
    struct yd__tls_conn *tls; /* tls.c's state, for a TLS transport */
    const char *tls_error;    /* why the handshake failed: a static string of OpenSSL's */
    /* ---- Last: a connection is allocated with room for its transport's handle only (a TCP
     * connection does not pay for the largest, a terminal's) ---- */
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_tty_t tty;
        uv_udp_t udp;
    } h;
};

/* Opens conn on fd through its transport. On failure conn is gone (closed silently) and fd is
 * still the caller's. */
int yd__conn_open(yd_conn *conn, int fd);
/* connect.c: resolves addr into a new conn->connecting (the addresses to try in turn). */
int yd__connecting_resolve(yd_conn *conn, const yd_addr *addr, int socktype,
                           const struct sockaddr_storage *source, socklen_t source_len);
/* Binds an attempt's fresh socket to the source, if there is one (before its connect). */
int yd__connecting_bind(yd_conn *conn);
/* dgram.c: connects a datagram connection to every address of a name in turn. */
int yd__dgram_connect(yd_conn *conn, const yd_addr *addr, const struct sockaddr_storage *source,
                      socklen_t source_len);

/* Allocates a connection on a transport, linked into the loop. Handle not initialised. */
yd_conn *yd__conn_new(yd_loop *loop, const struct yd__transport *transport,
                      const yd_protocol *protocol, void *data);
/* Frees a connection whose handle was never initialised. */
void yd__conn_discard(yd_conn *conn);
/* Runs on_connect from the loop's next kick (so that it never runs before *out is set). */
void yd__conn_start_soon(yd_conn *conn);
/* The handle is connected: counts it, starts the transport; on_connect once it is ready. */
void yd__conn_start(yd_conn *conn);
/* The transport is ready (a handshake done): runs on_connect, starts reading. */
void yd__conn_ready(yd_conn *conn);
/* Ends a connection before on_connect (a failed handshake, a bad PROXY header, max-conns):
 * counted as kind; an accepted one's protocol hears on_reject instead of on_close. */
void yd__conn_reject(yd_conn *conn, int status, enum yd_error_kind kind);
/* Runs the on_connect calls due (the loop's kick timer). */
void yd__conn_run_kicks(yd_loop *loop);
/* Closes without telling the protocol (a refused or never-announced connection). */
void yd__conn_close_silently(yd_conn *conn);
/* Idle timeouts and draining: called by the loop's sweep timer. */
void yd__conn_sweep(yd_loop *loop, uint64_t now_ms);

/*
 * The PROXY header before anything else, for a stream transport's read: 0 once it is read
 * (*data and *len are then the payload after it; if they point into *hold, free it after use);
 * 1 when the caller stops here: more bytes are needed (all taken), or the header was bad and the
 * connection is rejected (counted as proxy_header).
 */
int yd__conn_proxy_read(yd_conn *conn, const char **data, size_t *len, char **hold);
/* Before on_connect: the transport reads by itself until the PROXY header is in. */
void yd__conn_expect_proxy(yd_conn *conn);
/* The reason a connection not ready yet is rejected at its deadline. */
enum yd_error_kind yd__conn_opening_kind(const yd_conn *conn);

/* Events from the transport. */
void yd__conn_received(yd_conn *conn, const char *data, size_t len);
void yd__conn_datagram(yd_conn *conn, const char *data, size_t len);
void yd__conn_read_eof(yd_conn *conn);
void yd__conn_read_error(yd_conn *conn, int err);
void yd__conn_written(yd_conn *conn, int status);
void yd__conn_shut(yd_conn *conn, int status);
void yd__conn_closed(yd_conn *conn);

/* ---- server.c accepting into conn.c -------------------------------------------------------- */

/* Wraps a descriptor accept4 returned (peer: its address); NULL (counted, fd closed) if that
 * fails. Not started yet. */
yd_conn *yd__conn_accept(yd_server *server, int fd, const struct sockaddr *peer,
                         socklen_t peer_len);

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
    yd_tls *tls;                   /* every connection speaks TLS (a reference held) */
    int background; /* yd_server_unref: does not keep the loop alive, outlives a drain */
    unsigned nsockets;
    unsigned open_handles;    /* freed when the last listener handle has closed */
    size_t conns;             /* connections it accepted that are still open */
    struct listener *current; /* the socket a datagram came in on, during on_datagram */
    /* During on_datagram: the client the datagram's PROXY header named (family 0: none). */
    struct sockaddr_storage current_source;
    char unix_path[108];
    struct listener sockets[MAX_SOCKETS];
};

/* Called by conn.c when a connection a server accepted closes. */
void yd__server_conn_closed(yd_server *server);

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
/* A connection's source: "IP", "[IPv6]", "IP:PORT" or "[IPv6]:PORT" (numeric only; port 0 when
 * none). -EINVAL for anything else. */
int yd__source_parse(const char *text, struct sockaddr_storage *out, socklen_t *len);

/* connect.c, dgram.c: the addresses of a name still to try, allocated to hold just those (a
 * numeric address: one, and no resolver's worth of room zeroed per connect). */
struct yd__connecting {
    int next;             /* the address being tried */
    int count;            /* addresses in addr */
    unsigned kept;        /* datagram clients: datagrams kept to send again at the next address */
    socklen_t source_len; /* 0, or the address each attempt binds to first (yd_conn_connect_from) */
    struct sockaddr_storage source;
    struct yd__target {
        socklen_t len;
        struct sockaddr_storage sa;
    } addr[];
};

/* ---- error.c ----------------------------------------------------------------------------- */

/* libuv's codes are negative errno values on Unix: one mapping for both. */
enum yd_error_kind yd__error_kind_of(int status);

#endif
