/*
 * yodel.h - libyodel, the asyncio echo client and server building blocks in C.
 *
 * One event loop per thread (yd_loop), endpoints with protocol callbacks in the
 * shape of asyncio's Protocol (yd_protocol), stream helpers (read a chunk, a line
 * with a limit, exactly n bytes; write with back-pressure; half-close), timers,
 * signals, statistics and the echo behaviours themselves.
 *
 * Conventions:
 *  - Every function that can fail returns 0 (or a count) on success and a negative
 *    errno-style code on failure (-EINVAL, -EMFILE, ...); yd_strerror() names it.
 *  - All handles are opaque. Nothing here is thread-safe unless it says so: a loop
 *    and everything created on it belong to the thread that runs the loop.
 *  - Callbacks run on the loop's thread. A callback may close the handle it was
 *    called for; the handle stays valid until its on_close callback returns.
 */
#ifndef YODEL_H
#define YODEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h> /* struct sockaddr_storage, AF_*, SOCK_* of yd_proxy_header */

#ifdef __cplusplus
extern "C" {
#endif

#define YD_VERSION "0.1.0"

/* Marks the API: the library is built with every other symbol hidden (as libuv's UV_EXTERN). */
#if defined(YD_BUILDING) && defined(__GNUC__)
#define YD_EXTERN __attribute__((visibility("default")))
#else
#define YD_EXTERN
#endif

typedef struct yd_loop yd_loop;
typedef struct yd_server yd_server;
typedef struct yd_conn yd_conn;
typedef struct yd_timer yd_timer;
typedef struct yd_signal yd_signal;
typedef struct yd_stats yd_stats;

/* The library's version string, YD_VERSION at build time. */
YD_EXTERN const char *yd_version(void);

/* A static, human-readable name for a negative error code (or 0). */
YD_EXTERN const char *yd_strerror(int code);

/* A name that does not resolve (the resolver's EAI_NONAME, EAI_NODATA, EAI_FAIL): no errno
 * says this, so yodel has its own code, far from errno's range. */
#define YD_ERESOLVE (-30001)

/* ---- Event loop ------------------------------------------------------------------------- */

/* Creates a loop. Returns 0 and sets *out, or a negative error. */
YD_EXTERN int yd_loop_new(yd_loop **out);

/* Runs callbacks until nothing is left to wait for or yd_loop_stop() is called. */
YD_EXTERN int yd_loop_run(yd_loop *loop);

/* Makes yd_loop_run() return after the current iteration. Loop thread only. */
YD_EXTERN void yd_loop_stop(yd_loop *loop);

/*
 * Frees a loop. Closes any handle still open on it (their on_close callbacks run)
 * first; what those callbacks try to start on it (a connection, a server, a timer, a
 * signal watcher) fails with -ECANCELED. Returns 0, or -EBUSY if a handle refused to close.
 */
YD_EXTERN int yd_loop_free(yd_loop *loop);

/*
 * Graceful stop: closes every server of the loop, closes each connection a server
 * accepted once it has sent everything it received and gone quiet, and resets
 * whatever is left after drain_ms. yd_loop_run() returns when all is closed (if
 * nothing else, such as a repeating timer, keeps the loop alive).
 */
YD_EXTERN void yd_loop_drain(yd_loop *loop, uint64_t drain_ms);

/*
 * Ctrl-C done properly, the one policy of every yodel program: the first SIGINT or SIGTERM
 * calls on_first (finish what you are doing: a server drains, a load generator stops and
 * reports); a second one calls on_second if not NULL (to say so, briefly) and ends the process
 * at once with status 128 + signum, the status a shell reports for a process that signal
 * killed. SIGPIPE is ignored for the process, so a peer that resets while we write is an error
 * to handle, not a death (libuv writes with write(2); a program using libyodel without these
 * calls should ignore SIGPIPE itself). The watchers do not keep the loop alive.
 */
typedef void (*yd_shutdown_cb)(yd_loop *loop, int signum, void *data);
YD_EXTERN int yd_loop_on_shutdown_signals(yd_loop *loop, yd_shutdown_cb on_first,
                                          yd_shutdown_cb on_second, void *data);

/* The same for a server on one loop: the first signal runs yd_loop_drain(loop, drain_ms). */
YD_EXTERN int yd_loop_drain_on_signals(yd_loop *loop, uint64_t drain_ms);

/* The loop's cached monotonic clock, in milliseconds. */
YD_EXTERN uint64_t yd_loop_now_ms(const yd_loop *loop);

/*
 * Runs fn(data) on the loop's thread during its next iteration. The only function
 * here that may be called from any thread (asyncio's call_soon_threadsafe).
 * Returns 0, or -ENOMEM.
 */
YD_EXTERN int yd_loop_call_threadsafe(yd_loop *loop, void (*fn)(yd_loop *loop, void *data),
                                      void *data);

/* ---- Statistics ------------------------------------------------------------------------- */

/* Kinds of error the endpoints count. */
enum yd_error_kind {
    YD_ERR_ACCEPT,         /* accept() failed, e.g. EMFILE */
    YD_ERR_RESET,          /* a peer reset the connection (ECONNRESET, EPIPE) */
    YD_ERR_IO,             /* any other read or write error */
    YD_ERR_LINE_TOO_LONG,  /* a line beyond the read limit */
    YD_ERR_IDLE_TIMEOUT,   /* closed for sending nothing for too long */
    YD_ERR_UDP_SEND,       /* a datagram could not be sent (ICMP unreachable, full buffer) */
    YD_ERR_UDP_LOW_PORT,   /* a datagram from a source port below 1024 was dropped */
    YD_ERR_DRAIN_TIMEOUT,  /* reset at the drain deadline with work still pending */
    YD_ERR_TLS_HANDSHAKE,  /* a TLS handshake failed or did not finish in time */
    YD_ERR_PROXY_HEADER,   /* a PROXY protocol header missing, malformed or too slow */
    YD_ERR_INJECTED_DROP,  /* a datagram left unanswered on purpose (fault injection) */
    YD_ERR_INJECTED_RESET, /* a connection reset on purpose (fault injection) */
    YD_ERR__COUNT
};

/* The counters a set of endpoints keeps, as plain numbers. */
typedef struct yd_stats_snapshot {
    uint64_t conns_accepted; /* connections accepted (including refused ones) */
    uint64_t conns_active;   /* connections open now */
    uint64_t conns_refused;  /* accepted and closed at once (max-conns) */
    uint64_t conns_closed;   /* connections closed */
    uint64_t messages;       /* messages delivered: reads in chunk mode, lines in line mode,
                                datagrams for UDP */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t errors[YD_ERR__COUNT];
} yd_stats_snapshot;

/*
 * A set of counters. One loop thread writes it; any thread may read it with
 * yd_stats_add_to() at any time. Several servers on one loop may share one.
 */
YD_EXTERN int yd_stats_new(yd_stats **out);
YD_EXTERN void yd_stats_free(yd_stats *stats);

/* Adds the current values of stats to *sum: start from a zeroed snapshot, and call it once per
 * set to merge several threads' counters. (Named for what it does: it never overwrites.) */
YD_EXTERN void yd_stats_add_to(const yd_stats *stats, yd_stats_snapshot *sum);

/* Counts one error of a kind in a connection's or a server's statistics (for protocols). */
YD_EXTERN void yd_conn_count_error(yd_conn *conn, enum yd_error_kind kind);
YD_EXTERN void yd_server_count_error(yd_server *server, enum yd_error_kind kind);

/* Counts one error of the given kind (for protocols that detect their own). */
YD_EXTERN void yd_stats_count_error(yd_stats *stats, enum yd_error_kind kind);

/* "accept", "reset", "line_too_long", ...: names fit for metrics labels. */
YD_EXTERN const char *yd_error_kind_name(enum yd_error_kind kind);

/* ---- Protocols: the callbacks of an endpoint --------------------------------------------- */

/*
 * The events of a connection, as asyncio's Protocol has them. Any of them may be
 * NULL. For a datagram server, only on_datagram is used.
 */
typedef struct yd_protocol {
    /* connection_made: the connection is up; set its read mode or data here. */
    void (*on_connect)(yd_conn *conn);
    /*
     * data_received: one message, whose shape is the read mode's: the bytes of one
     * read (YD_READ_CHUNK), one line with its '\n' (YD_READ_LINE; the last line
     * of the stream may lack it), or exactly n bytes (YD_READ_EXACTLY). The bytes
     * are only valid during the call.
     */
    void (*on_data)(yd_conn *conn, const char *data, size_t len);
    /*
     * eof_received: the peer half-closed. When NULL, the connection closes once
     * its queued writes are sent (asyncio's default).
     */
    void (*on_eof)(yd_conn *conn);
    /* The write queue fell below the low watermark after passing the high one. */
    void (*on_drain)(yd_conn *conn);
    /*
     * connection_lost: the last event of a connection. status is 0 for an orderly
     * close or a negative error (-ECONNRESET, -EMSGSIZE for a line too long,
     * -ETIMEDOUT for an idle timeout, ...). The connection is freed on return.
     */
    void (*on_close)(yd_conn *conn, int status);
    /*
     * A datagram server received one datagram from `peer` (a struct sockaddr of
     * peer_len bytes). Reply with yd_server_send_to().
     */
    void (*on_datagram)(yd_server *server, const char *data, size_t len, const void *peer,
                        unsigned peer_len);
    /*
     * A connection the server accepted ended before on_connect, while the server is open:
     * refused past max_conns (status -ECONNREFUSED, kind YD_ERR__COUNT: counted as refused), or
     * a TLS handshake or PROXY header (kind YD_ERR_TLS_HANDSHAKE or YD_ERR_PROXY_HEADER) that
     * failed (-EPROTO) or did not come in time (-ETIMEDOUT). For logging (yd_conn_peer_name
     * works); no other call is allowed, and on_close will not run.
     */
    void (*on_reject)(yd_conn *conn, int status, enum yd_error_kind kind);
} yd_protocol;

/* ---- Servers ------------------------------------------------------------------------------ */

/*
 * A limit on open connections shared by servers on several loops (threads): thread-safe.
 * It must outlive every server and connection that uses it. max_conns 0 is -EINVAL (no limit is
 * no yd_conn_limit: options.limit NULL).
 */
typedef struct yd_conn_limit yd_conn_limit;
YD_EXTERN int yd_conn_limit_new(size_t max_conns, yd_conn_limit **out);
YD_EXTERN void yd_conn_limit_free(yd_conn_limit *limit);

typedef struct yd_server_options {
    const yd_protocol *protocol;   /* required */
    void *data;                    /* returned by yd_server_data() */
    yd_stats *stats;               /* counters to update, or NULL */
    size_t max_conns;              /* 0: unlimited; beyond it, accept and close at once */
    yd_conn_limit *limit;          /* or NULL; the same, counted across every server using it */
    uint64_t idle_timeout_ms;      /* 0: none; close a connection silent for this long */
    int reuseport;                 /* YD_REUSEPORT_*: one listening socket per thread */
    int backlog;                   /* 0: a sensible default (SOMAXCONN) */
    struct yd_tls *tls;            /* TLS for every connection: required for tls:// addresses */
    int proxy_protocol;            /* every connection (datagram) starts with a PROXY header */
    uint64_t proxy_timeout_ms;     /* 0: 5 s for the header to arrive */
    void (*free_data)(void *data); /* or NULL: called with data when the server is freed
                                      (not if listening fails: data stays the caller's) */
} yd_server_options;

/*
 * SO_REUSEPORT, so that several loops (threads) each listen on one port. OWN: the address must
 * be free: the socket is bound alone, so a port another process holds is -EADDRINUSE even if
 * that process allows sharing, and only then opened to sharing. JOIN: share the port of a
 * socket this process bound with OWN (the same user could join it; nobody else can).
 */
enum { YD_REUSEPORT_OFF, YD_REUSEPORT_OWN, YD_REUSEPORT_JOIN };

/*
 * Listens on an address (see yd_addr_parse: "HOST:PORT", "udp://HOST:PORT",
 * "unix:PATH", ...). A host name binds every address it resolves to, so one
 * server may own several sockets. Port 0 takes an ephemeral port; with several
 * sockets they all get the port the first one got. Returns 0 and sets *out, or a
 * negative error (-EADDRINUSE, -EACCES, ...).
 */
YD_EXTERN int yd_server_listen(yd_loop *loop, const char *addr, const yd_server_options *options,
                               yd_server **out);

/*
 * Serves an already bound socket (socket activation, inetd): a listening stream
 * socket or a datagram socket. The server owns fd once this returns 0; on failure fd is
 * still the caller's (as for yd_conn_open_fd and yd_server_serve_fd).
 */
YD_EXTERN int yd_server_adopt(yd_loop *loop, int fd, const yd_server_options *options,
                              yd_server **out);

/*
 * Serves one connected stream socket as if a server had accepted it (inetd's descriptor 0):
 * counted in options->stats, closed after options->idle_timeout_ms of silence, drained by
 * yd_loop_drain(). The connection owns fd from then on; options->protocol runs it.
 */
YD_EXTERN int yd_server_serve_fd(yd_loop *loop, int fd, const yd_server_options *options,
                                 yd_conn **out);

/* The server no longer keeps yd_loop_run from returning (a metrics or health endpoint that must
 * not outlive the real work); it goes on serving while the loop runs, yd_loop_drain leaves it
 * open, and yd_server_close still closes it. */
YD_EXTERN void yd_server_unref(yd_server *server);

/* How many sockets the server listens on. */
YD_EXTERN unsigned yd_server_socket_count(const yd_server *server);

/*
 * Writes the address of socket i as "tcp://127.0.0.1:8888", "udp://[::1]:8888", "unix:/path",
 * or for a TLS server "tls://127.0.0.1:8443", "tls+unix:/path" (as yd_conn_connect_tls reads
 * it) into buf. Returns the length, or a negative error.
 */
YD_EXTERN int yd_server_address(const yd_server *server, unsigned i, char *buf, size_t len);

/* The real port of the server's first socket (0 for a Unix socket). */
YD_EXTERN int yd_server_port(const yd_server *server);

YD_EXTERN void *yd_server_data(const yd_server *server);
YD_EXTERN yd_loop *yd_server_loop(const yd_server *server);

/* Sends one datagram to a peer given to on_datagram. Never blocks; -EAGAIN if full. */
YD_EXTERN int yd_server_send_to(yd_server *server, const void *data, size_t len, const void *peer,
                                unsigned peer_len);

/*
 * Inside on_datagram, with proxy_protocol: the original client the datagram's PROXY header named
 * ("203.0.113.7:51234"), as yd_conn_proxy_source gives it for a connection; 0 bytes when it named
 * none (a LOCAL header: a proxy's health check). Replies still go to on_datagram's peer, the
 * proxy, which forwards them.
 */
YD_EXTERN int yd_server_datagram_source(const yd_server *server, char *buf, size_t len);

/* Writes a peer given to on_datagram as "127.0.0.1:50312" or "[::1]:50312". */
YD_EXTERN int yd_sockaddr_format(const void *sockaddr, char *buf, size_t len);

/*
 * Stops listening and frees the server. Connections it accepted go on; they keep
 * the protocol and data they had. A Unix socket file it created is removed.
 */
YD_EXTERN void yd_server_close(yd_server *server);

/* ---- Connections -------------------------------------------------------------------------- */

typedef enum yd_read_mode {
    YD_READ_CHUNK,  /* on_data gets whatever one read returned */
    YD_READ_LINE,   /* on_data gets one '\n'-terminated line; arg: the longest line */
    YD_READ_EXACTLY /* on_data gets exactly arg bytes */
} yd_read_mode;

/* Back-pressure thresholds of a connection's write queue (asyncio's defaults). */
#define YD_HIGH_WATERMARK (64u * 1024u)
#define YD_LOW_WATERMARK  (16u * 1024u)

/*
 * Connects to "HOST:PORT", "[::1]:PORT", "unix:PATH" or "udp://HOST:PORT" (a
 * connected datagram socket: each write is one datagram, each datagram one
 * on_data). on_connect runs when connected; a failed connect runs on_close with
 * the error (a datagram socket: an ICMP port unreachable for the last address, at
 * any time, closes it with -ECONNREFUSED). Returns 0 and sets *out (valid until
 * on_close), or a negative error for a bad address.
 */
YD_EXTERN int yd_conn_connect(yd_loop *loop, const char *addr, const yd_protocol *protocol,
                              void *data, yd_conn **out);

/*
 * Wraps an open descriptor (a connected socket, a pipe or a terminal) as a
 * connection; on_connect runs from the loop. The connection owns fd (closing the
 * connection closes it). A regular file is -ENOTSUP: it cannot be polled.
 */
YD_EXTERN int yd_conn_open_fd(yd_loop *loop, int fd, const yd_protocol *protocol, void *data,
                              yd_conn **out);

/* The longest line YD_READ_LINE takes (and the largest YD_READ_EXACTLY message). */
#define YD_MAX_LINE_LIMIT (16u * 1024u * 1024u)

/*
 * Chooses how received bytes are cut into on_data calls. For YD_READ_LINE, arg is the longest
 * line without its '\n' (asyncio's limit; 0: 64 KiB); for YD_READ_EXACTLY the message size.
 * -EINVAL for a bad arg or one above YD_MAX_LINE_LIMIT.
 */
YD_EXTERN int yd_conn_set_read_mode(yd_conn *conn, yd_read_mode mode, size_t arg);

/*
 * Closes the connection when nothing moves either way for ms (0: never): its status is then
 * -ETIMEDOUT, counted as an idle timeout. Bytes a protocol holds (yd_conn_set_held) and writes the
 * peer reads are progress. Accepted connections get their server's idle_timeout_ms.
 */
YD_EXTERN int yd_conn_set_idle_timeout(yd_conn *conn, uint64_t ms);

/*
 * Sends bytes. Tries to write at once; whatever the kernel does not take is copied
 * into the connection's write queue. Past YD_HIGH_WATERMARK the connection stops
 * reading until the queue falls below YD_LOW_WATERMARK (then on_drain runs).
 * Returns 0, -EPIPE after yd_conn_shutdown() or close, or -ENOBUFS if the queue
 * would pass its hard limit (the caller ignored back-pressure). On a connected datagram
 * socket each write is one datagram: -EMSGSIZE over 65,507 bytes, and the kernel's error
 * (-ECONNREFUSED after an ICMP port unreachable) when it refuses one.
 */
YD_EXTERN int yd_conn_write(yd_conn *conn, const void *data, size_t len);

/* Bytes queued and not yet taken by the kernel (a datagram client that has not heard back yet
 * also counts the datagrams it keeps to send again to a name's next address, each with a 4-byte
 * length). */
YD_EXTERN size_t yd_conn_write_queued(const yd_conn *conn);

/* Half-closes: sends EOF once queued writes are sent (asyncio's write_eof). */
YD_EXTERN int yd_conn_shutdown(yd_conn *conn);

/* Closes once queued writes are sent; then on_close runs. Safe to call twice. */
YD_EXTERN void yd_conn_close(yd_conn *conn);

/* Closes now, dropping queued writes and resetting a TCP peer; then on_close runs. */
YD_EXTERN void yd_conn_abort(yd_conn *conn);

/*
 * As yd_conn_abort, for an error the protocol found (a bad message, a write the queue could not
 * take): counts it in the connection's statistics by its kind (-EMSGSIZE is a line too long,
 * -ECONNRESET a reset, ...), and on_close is told status.
 */
YD_EXTERN void yd_conn_fail(yd_conn *conn, int status);

/*
 * Tells the connection how many bytes the protocol holds to send later (echo's --delay): while
 * any are held it is not idle, and a drain waits for them.
 */
YD_EXTERN void yd_conn_set_held(yd_conn *conn, size_t bytes);

/*
 * Stops and resumes delivering on_data at once: messages already read but not yet delivered
 * are held (bounded by one read) and delivered on resume, and reading from the socket stops.
 */
YD_EXTERN void yd_conn_pause_reading(yd_conn *conn);
YD_EXTERN void yd_conn_resume_reading(yd_conn *conn);

/* Room for any address text this header writes (yd_addr_format, yd_server_address, ...). */
#define YD_ADDR_TEXT_BYTES 300

/*
 * Writes the peer's address ("127.0.0.1:50312", "[::1]:50312", "unix") into buf. For an
 * accepted connection it is known from accept on, so it may be asked in on_close too.
 */
YD_EXTERN int yd_conn_peer_name(const yd_conn *conn, char *buf, size_t len);

/*
 * The original client a PROXY protocol header named ("203.0.113.7:51234"), or 0 bytes when the
 * connection had none (or a LOCAL one: a proxy's health check). yd_conn_peer_name then names
 * that client too: the original client replaces the proxy as the peer.
 */
YD_EXTERN int yd_conn_proxy_source(const yd_conn *conn, char *buf, size_t len);

/* Writes the connection's own address ("127.0.0.1:40112"; "unix", "tty") into buf. */
YD_EXTERN int yd_conn_sock_name(const yd_conn *conn, char *buf, size_t len);

/* The connection's data: for an accepted connection, the server's options.data at first. */
YD_EXTERN void *yd_conn_data(const yd_conn *conn);
YD_EXTERN void yd_conn_set_data(yd_conn *conn, void *data);
/* The server that accepted the connection, or NULL for a client connection. */
YD_EXTERN yd_server *yd_conn_server(const yd_conn *conn);
YD_EXTERN yd_loop *yd_conn_loop(const yd_conn *conn);

/* ---- TLS ---------------------------------------------------------------------------------- */

/*
 * A TLS configuration (OpenSSL 3 underneath, never in this header): certificates, verification
 * and protocol limits, shared by every server and connection that uses it, on any thread, and
 * reloadable. Protocols never see TLS: on_data gets plaintext, yd_conn_write takes plaintext.
 */
typedef struct yd_tls yd_tls;

#define YD_TLS_1_2 0x0303
#define YD_TLS_1_3 0x0304

typedef struct yd_tls_options {
    const char *cert_file; /* PEM chain, leaf first: a server's (required), a client's (or NULL) */
    const char *key_file;  /* its private key (PEM); NULL: read from cert_file */
    const char *ca_file;   /* server: clients must present a certificate these signed (mutual
                              TLS); client: the CAs that verify the server (NULL: the system's) */
    int insecure;          /* client: do not verify the server (say so to the user) */
    const char *server_name; /* client: SNI and the name verified (NULL: the address's host) */
    int min_version;         /* 0 or YD_TLS_1_2: TLS 1.2 and 1.3; YD_TLS_1_3: 1.3 only */
    const char *alpn;        /* "h2,http/1.1"-style list to offer or accept, or NULL */
    uint64_t handshake_timeout_ms; /* 0: 10 s; a peer silent that long mid-handshake is dropped */
    int resume;                    /* client: offer the newest session the server gave (a
                                      ticket) on the next connection: an abbreviated handshake */
} yd_tls_options;

/*
 * Makes a server or client configuration from files. Returns 0 and sets *out, or a negative
 * error (-ENOENT, -EACCES: a file cannot be read; -EINVAL: a file is not PEM, or the key does not
 * match the certificate) with the reason written into err (errlen bytes, may be 0).
 * Secure defaults: TLS 1.2 and 1.3 only, OpenSSL's default ciphers, no compression, no
 * renegotiation, session tickets on.
 */
YD_EXTERN int yd_tls_server_new(const yd_tls_options *options, yd_tls **out, char *err,
                                size_t errlen);
YD_EXTERN int yd_tls_client_new(const yd_tls_options *options, yd_tls **out, char *err,
                                size_t errlen);

/*
 * Reads the files again (certificate rotation: SIGHUP). Connections already open keep what they
 * negotiated; new ones use the new files. On failure the old configuration stays and err says
 * why. Thread-safe.
 */
YD_EXTERN int yd_tls_reload(yd_tls *tls, char *err, size_t errlen);

/* Lets go of the configuration; it is freed once no server or connection uses it. */
YD_EXTERN void yd_tls_free(yd_tls *tls);

/*
 * Connects as yd_conn_connect does, over TLS: "tls://HOST:PORT" or "tls+unix:PATH" (a plain
 * address is taken as if it had the tls scheme). on_connect runs once the handshake is done; a
 * failed handshake runs on_close with -EPROTO (or -ETIMEDOUT).
 */
YD_EXTERN int yd_conn_connect_tls(yd_loop *loop, const char *addr, yd_tls *tls,
                                  const yd_protocol *protocol, void *data, yd_conn **out);

/*
 * Connects as yd_conn_connect (tls NULL) or yd_conn_connect_tls (tls set) do, from a chosen
 * source address: source is a numeric "IP", "[IPv6]", "IP:PORT" or "[IPv6]:PORT" (port 0 when
 * none: the kernel picks one at connect, per destination, so many connections can share one
 * source address), or NULL for no bind. Only the destination's addresses of the source's family
 * are tried. -EINVAL for a bad address or source, or a source with a Unix socket; a source that
 * cannot be bound returns its error (-EADDRNOTAVAIL) or, found at connect, ends in on_close.
 */
YD_EXTERN int yd_conn_connect_from(yd_loop *loop, const char *addr, const char *source, yd_tls *tls,
                                   const yd_protocol *protocol, void *data, yd_conn **out);

/*
 * As yd_conn_open_fd, for a stream socket the caller connected itself (a bound source port, a
 * connect with its own deadline), as a TLS client of tls: server_name is sent as SNI and
 * verified (NULL: none). on_connect runs once the handshake is done.
 */
YD_EXTERN int yd_conn_open_fd_tls(yd_loop *loop, int fd, yd_tls *tls, const char *server_name,
                                  const yd_protocol *protocol, void *data, yd_conn **out);

/*
 * What a TLS connection negotiated: "TLSv1.3" (NULL for a plain connection), and the verified
 * peer certificate's subject ("CN=client,O=yodel"; 0 bytes if none). Valid from on_connect on.
 */
YD_EXTERN const char *yd_conn_tls_version(const yd_conn *conn);
/*
 * Why a TLS handshake failed ("certificate verify failed: unable to get local issuer
 * certificate", "wrong version number", ...), or the session after it ("bad record mac", an
 * alert the peer sent), or NULL: a static string, valid in on_close.
 */
YD_EXTERN const char *yd_conn_tls_error(const yd_conn *conn); /* also in on_reject */

/* 1 if the handshake resumed an earlier session (yd_tls_options.resume), 0 if it was full. */
YD_EXTERN int yd_conn_tls_resumed(const yd_conn *conn);
YD_EXTERN int yd_conn_tls_peer_subject(const yd_conn *conn, char *buf, size_t len);

/* ---- Timers and signals ------------------------------------------------------------------- */

typedef void (*yd_timer_cb)(yd_timer *timer, void *data);

YD_EXTERN int yd_timer_new(yd_loop *loop, yd_timer_cb cb, void *data, yd_timer **out);
/* Runs cb after timeout_ms, then every repeat_ms if that is not 0. Restarts if running. */
YD_EXTERN int yd_timer_start(yd_timer *timer, uint64_t timeout_ms, uint64_t repeat_ms);
YD_EXTERN void yd_timer_stop(yd_timer *timer);
YD_EXTERN yd_loop *yd_timer_loop(const yd_timer *timer);
/* Stops and frees the timer (the memory goes back at the loop's next iteration). */
YD_EXTERN void yd_timer_free(yd_timer *timer);

typedef void (*yd_signal_cb)(yd_signal *signal, int signum, void *data);

/* Runs cb on the loop whenever signum arrives (SIGINT, SIGTERM, ...). */
YD_EXTERN int yd_signal_new(yd_loop *loop, int signum, yd_signal_cb cb, void *data,
                            yd_signal **out);
YD_EXTERN void yd_signal_free(yd_signal *signal);

/* ---- Parsing helpers (pure functions, no allocation) -------------------------------------- */

typedef enum yd_transport { YD_TCP, YD_UDP, YD_UNIX } yd_transport;

typedef struct yd_addr {
    yd_transport transport;
    int tls;        /* "tls://HOST:PORT" or "tls+unix:PATH": a stream carrying TLS */
    char host[256]; /* without IPv6 brackets; empty for Unix sockets */
    uint16_t port;
    char path[108]; /* Unix socket path */
} yd_addr;

/*
 * Parses "HOST:PORT", "tcp://HOST:PORT", "udp://HOST:PORT", "unix:PATH", "tls://HOST:PORT",
 * "tls+unix:PATH",
 * "[v6]:PORT". Returns 0, or -EINVAL with *out unspecified.
 */
YD_EXTERN int yd_addr_parse(const char *text, yd_addr *out);

/*
 * Connects as yd_conn_connect_from does, to an address yd_addr_parse read already: a client
 * that opens many connections to one address (bench --reconnect-every) parses it once.
 */
YD_EXTERN int yd_conn_connect_addr(yd_loop *loop, const yd_addr *addr, const char *source,
                                   yd_tls *tls, const yd_protocol *protocol, void *data,
                                   yd_conn **out);

/*
 * Writes an address in the form yd_addr_parse reads back to the same thing: "tcp://HOST:PORT",
 * "udp://[::1]:PORT", "unix:PATH". Returns the length, or -ENOBUFS if it does not fit.
 */
YD_EXTERN int yd_addr_format(const yd_addr *addr, char *buf, size_t len);

/* Parses "500ms", "2s", "1m", "1h" or a bare number of seconds ("0.5"). */
YD_EXTERN int yd_parse_duration_ms(const char *text, uint64_t *out_ms);

/* Parses a byte count with an optional k/m/g suffix, 1024-based ("64k"). */
YD_EXTERN int yd_parse_size(const char *text, uint64_t *out_bytes);

/*
 * Finds the first line in buf. Returns its length including the '\n', 0 when no
 * '\n' is in buf and len <= max_line (need more bytes), or -EMSGSIZE when the
 * line would be longer than max_line bytes (its '\n' included).
 */
YD_EXTERN long yd_frame_line(const char *buf, size_t len, size_t max_line);

/* Copies n bytes from src to dst with ASCII letters upper-cased (dst may be src). */
YD_EXTERN void yd_ascii_upper(char *dst, const char *src, size_t n);

/* ---- PROXY protocol (pure, no allocation) ------------------------------------------------ */

/*
 * The header a proxy puts before the bytes of a connection it relays, to name the client it
 * relays (HAProxy's send-proxy and send-proxy-v2): HAProxy's "The PROXY protocol", version 1 (a
 * text line) and version 2 (binary, with TLVs). It replaces the peer's address, so accept it only
 * on a port that only trusted proxies reach, and only where it is expected: never guess.
 */

/* The longest header accepted: v1's 107 bytes, v2's 16 and a generous TLV area (the smallest
 * TCP segment every host takes, 576 - 40 bytes, as the spec sizes both). */
#define YD_PROXY_MAX_BYTES 536

typedef struct yd_proxy_header {
    int version;  /* 1 or 2 */
    int local;    /* v2 LOCAL (a proxy's own connection, e.g. a health check) or v1 UNKNOWN: the
                     header gives no address; use the connection's own */
    int family;   /* of src and dst: AF_INET, AF_INET6, AF_UNIX, or 0 when the header gives no
                     address (local, or v2 AF_UNSPEC): then use the connection's own */
    int socktype; /* SOCK_STREAM or SOCK_DGRAM; 0 when v2 leaves it unspecified or is LOCAL;
                     v1 is always SOCK_STREAM */
    struct sockaddr_storage src; /* the original client (a sockaddr_in, sockaddr_in6 or
                                    sockaddr_un by family; zeroes when family is 0) */
    struct sockaddr_storage dst; /* the address it connected to (the same) */
    size_t header_len;           /* bytes the header took: the payload starts after them */
    /* v2 TLVs, pointing into the caller's buffer (valid as long as it is); NULL and 0 when
     * absent. Their bytes are the proxy's, unchecked: treat them as untrusted text. */
    const char *authority; /* PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI) */
    size_t authority_len;
    const char *unique_id; /* PP2_TYPE_UNIQUE_ID: the proxy's ID of the connection, <= 128 bytes */
    size_t unique_id_len;
    int ssl; /* PP2_TYPE_SSL with PP2_CLIENT_SSL: the client reached the proxy over TLS */
} yd_proxy_header;

/*
 * Parses a PROXY header (v1 or v2, told apart by its first byte) at the start of buf. Returns
 * its length (> 0, header_len) and fills *out; 0 when more bytes are needed, as long as buf may
 * still begin a valid header (a v1 IPv6 address, and v2's bytes after its first 16, are checked
 * once whole): read more and call again with all of it; or -EPROTO for anything malformed: not a
 * PROXY header; a bad v2 signature, version, command, family or protocol; a v1 line over 107
 * bytes with its CRLF, extra or missing spaces, a bad address or a port over 65535; a v2 length
 * past YD_PROXY_MAX_BYTES or too short for its addresses; a TLV whose length runs past the header
 * (or an SSL sub-TLV past its TLV); a CRC32C TLV that does not match; an interpreted TLV given
 * twice. Once the answer is not 0, more bytes never change it; YD_PROXY_MAX_BYTES bytes always
 * decide. Never reads past len; *out is untouched unless the return is > 0. -EINVAL if out is
 * NULL, or buf is NULL and len is not 0.
 */
YD_EXTERN long yd_proxy_parse(const char *buf, size_t len, yd_proxy_header *out);

/*
 * Writes a header for a TCP connection from src to dst (a sockaddr_in or sockaddr_in6, both of
 * one family) into buf: version 1 ("PROXY TCP4 ...\r\n") or 2 (PROXY command, no TLVs).
 * Returns its length (YD_PROXY_MAX_BYTES of room is always enough), -ENOBUFS if len is too
 * short (buf is then untouched), or -EINVAL for another version, family or mixed families.
 */
YD_EXTERN long yd_proxy_format(int version, const void *src, const void *dst, char *buf,
                               size_t len);

/* ---- Echo: the behaviours of `yodel serve` ------------------------------------------------ */

/* ---- Templates: who answered (a banner, a prefix) ----------------------------------------- */

/*
 * A template is text with fields in braces, expanded for each connection:
 *   {hostname}     the machine's name (gethostname)
 *   {peer}         the client as the server saw it: "127.0.0.1:50312", "[::1]:50312", "unix"
 *   {local}        the server's own address of the connection: "127.0.0.1:8888"
 *   {listener}     the listening socket: "tcp://127.0.0.1:8888", "udp://[::1]:8888", "unix:PATH"
 *   {pid}          the server's process id
 *   {env:NAME}     the environment variable NAME ([A-Za-z_][A-Za-z0-9_]*; empty when unset)
 *   {proxy}        the original client a PROXY protocol header named (empty when none)
 *   {tls_subject}  the verified client certificate's subject (empty when none)
 * "{{" and "}}" are literal braces; "\n", "\r", "\t" and "\\" are a newline, a carriage
 * return, a tab and a backslash (so a banner can end its line when given as a plain argument).
 * Any other byte is itself. Everything else is an error: an unknown field, "{" without its "}",
 * a lone "}", an unknown escape, a "\" at the end.
 */
enum {
    YD_TEMPLATE_HOSTNAME = 1 << 0,
    YD_TEMPLATE_PEER = 1 << 1,
    YD_TEMPLATE_LOCAL = 1 << 2,
    YD_TEMPLATE_LISTENER = 1 << 3,
    YD_TEMPLATE_PID = 1 << 4,
    YD_TEMPLATE_ENV = 1 << 5,
    YD_TEMPLATE_PROXY = 1 << 6,
    YD_TEMPLATE_TLS_SUBJECT = 1 << 7,
};

/* The longest environment variable name a template may name. */
#define YD_TEMPLATE_ENV_NAME_MAX 128

/*
 * Checks a template. Returns the set of fields it uses (YD_TEMPLATE_* bits; 0 for plain text),
 * or -EINVAL with the reason in err ("unknown field {hostnme}", "unterminated {peer", ...;
 * errlen bytes, may be 0). Pure: reads tmpl up to its NUL and nothing else.
 */
YD_EXTERN int yd_template_check(const char *tmpl, char *err, size_t errlen);

/* The values of the fields. A NULL string expands to nothing. */
typedef struct yd_template_values {
    const char *hostname, *peer, *local, *listener, *proxy, *tls_subject;
    long pid;
    /* {env:NAME}: returns NAME's value (NUL-terminated name), or NULL when unset. NULL: every
     * variable expands to nothing (the function is not called then). */
    const char *(*env)(const char *name, void *env_data);
    void *env_data;
    /*
     * YD_TEMPLATE_* fields left in the output as they are (all of them: {env:NAME} stays whole).
     * The rest of the output is then written as template text ("{" as "{{", "\" as "\\"), so
     * it expands later, with the values of the kept fields, to what the whole expansion would
     * have been: a server expands the fields that never change once and the others per peer.
     */
    unsigned keep;
} yd_template_values;

/*
 * Expands tmpl into buf (len bytes), NUL-terminated. Returns the length without the NUL;
 * -EINVAL for a bad template (see yd_template_check); -ENOBUFS when the expansion and its NUL do
 * not fit: buf then holds the longest prefix of it that does (never a broken escape), as a
 * string. Pure but for values->env.
 */
YD_EXTERN int yd_template_expand(const char *tmpl, const yd_template_values *values, char *buf,
                                 size_t len);

/* ---- Echo: the behaviours of `yodel serve` ------------------------------------------------ */

typedef enum yd_echo_mode {
    YD_ECHO_RAW,   /* bytes as they arrive, until EOF (RFC 862) */
    YD_ECHO_LINE,  /* line by line */
    YD_ECHO_UPPER, /* line by line, ASCII letters upper-cased */
    YD_ECHO_INFO   /* each line (datagram) answered with one JSON line about the connection */
} yd_echo_mode;

/* The longest banner or prefix, expanded, that a connection sends: beyond, it is cut. */
#define YD_ECHO_TEMPLATE_BYTES 4096

typedef struct yd_echo_options {
    yd_echo_mode mode;
    int once;              /* reply to the first message, then close */
    uint64_t delay_ms;     /* hold each reply this long (never blocks other clients) */
    size_t max_line_bytes; /* 0: 64 KiB */
    int verbose;           /* log connect, data, close with the peer address to stderr */
    int json;              /* logs as JSON objects */
    /* Identity (templates as yd_template_check reads them; NULL: none). */
    const char *banner; /* sent as soon as a stream connection opens (the server speaks first) */
    const char *prefix; /* put before each echoed line and datagram (not in raw streams, not
                           with YD_ECHO_INFO) */
    /* Faults, for testing clients; all off at 0. Streams only unless said. */
    uint64_t delay_jitter_ms; /* each reply held delay_ms +- this, uniformly; replies stay in
                                 order; at most delay_ms */
    double drop_percent;      /* datagrams left unanswered, chosen at random (0 to 100) */
    double reset_percent;     /* connections reset (TCP RST) right after their first reply */
} yd_echo_options;

/*
 * Listens on addr and echoes per options. server_options may be NULL or carry the
 * generic limits (its protocol and data are ignored: echo supplies its own).
 */
YD_EXTERN int yd_echo_listen(yd_loop *loop, const char *addr, const yd_echo_options *echo,
                             const yd_server_options *server_options, yd_server **out);

/* The same, for an already bound socket (see yd_server_adopt). */
YD_EXTERN int yd_echo_adopt(yd_loop *loop, int fd, const yd_echo_options *echo,
                            const yd_server_options *server_options, yd_server **out);

/*
 * Echoes on a socket handed over by inetd (descriptor 0); the loop then owns fd. A connected
 * stream socket is one connection, with server_options' stats and idle_timeout_ms, drained by
 * yd_loop_drain() like an accepted one; a datagram socket is served as a datagram server until
 * the loop stops. server_options may be NULL. -ENOTSOCK if fd is not a socket.
 */
YD_EXTERN int yd_echo_serve_fd(yd_loop *loop, int fd, const yd_echo_options *echo,
                               const yd_server_options *server_options);

#ifdef __cplusplus
}
#endif

#endif
