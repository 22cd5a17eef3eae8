/*
 * TLS: a transport over a stream (TCP or a Unix socket) with OpenSSL 3. Protocols never see it:
 * conn.c hands plaintext in and gets plaintext out through the same yd__transport table as a
 * plain stream.
 *
 * The bytes' path, with a BIO of our own instead of socket or memory BIOs, so that nothing is
 * copied that OpenSSL does not copy itself:
 *  1. on_read: the socket's ciphertext lands in the loop's read buffer; t->in points at it.
 *  2. pump: SSL_do_handshake while handshaking, then SSL_read into the loop's plaintext buffer
 *     until OpenSSL wants more; bio_read hands it t->in as it asks.
 *  3. yd__conn_received: the plaintext goes to conn.c's framer and the protocol's on_data.
 *  4. yd_conn_write -> tls_try_write: SSL_write; bio_write gives each record to the kernel at
 *     once (uv_try_write); what the kernel does not take waits in t->out, and while anything
 *     waits there, conn.c queues further plaintext in its own write queue, so back-pressure
 *     (the watermarks) works on TLS connections as on plain ones.
 *  5. tls_write (conn.c's queue): encrypted into t->out and sent with uv_write; conn.c hears
 *     yd__conn_written once t->out has drained.
 * A graceful close sends close_notify and waits for t->out to drain; an abort resets at once.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define ALPN_WIRE_BYTES              256

struct yd_tls {
    pthread_mutex_t lock; /* guards ctx against a reload on another thread */
    SSL_CTX *ctx;
    int server;
    _Atomic unsigned refs; /* the owner's, and one per server and connection using it */
    char *cert_file, *key_file, *ca_file, *server_name;
    int insecure, min_version, resume;
    SSL_SESSION *session; /* client with resume: the newest session a server gave (under lock) */
    uint64_t handshake_timeout_ms;
    unsigned char alpn[ALPN_WIRE_BYTES]; /* the ALPN list in wire format: length-prefixed */
    unsigned alpn_len;
};

/* Per connection. */
struct yd__tls_conn {
    SSL *ssl;
    yd_tls *tls;
    const char *in; /* ciphertext received and not yet given to OpenSSL */
    size_t in_len;
    int eof;             /* the socket has ended: bio_read says so once in is empty */
    int handshaking;     /* on_connect waits for the handshake */
    int socket_reading;  /* uv_read_start is in force */
    int queue_only;      /* bio_write queues instead of writing at once (tls_write) */
    int plain_waiting;   /* conn.c waits for yd__conn_written */
    int close_wanted;    /* close once t->out has drained */
    int shut_wanted;     /* half-close once t->out has drained */
    struct bufq out;     /* ciphertext the kernel has not taken yet */
    size_t out_inflight; /* bytes of out handed to uv_write (with conn->wreq, which the plain
                            stream write path leaves unused under TLS) */
};

static void on_out_written(uv_write_t *req, int status);

/* ---- Configuration ------------------------------------------------------------------------ */

static void set_error(char *err, size_t errlen, const char *what, const char *file)
{
    if (errlen == 0)
        return;
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    snprintf(err, errlen, "%s%s%s%s%s", what, file ? " " : "", file ? file : "",
             reason[0] ? ": " : "", reason);
    ERR_clear_error();
}

/*
 * OpenSSL could not load file as what: the system's reason when it could not even open it (no
 * descriptor left, ...: the earliest error in the queue is then the system's), else the
 * contents were the problem. Returns the error.
 */
static int load_failed(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) != ERR_LIB_SYS || ERR_GET_REASON(e) <= 0) {
        set_error(err, errlen, what, file);
        return -EINVAL;
    }
    int sys = ERR_GET_REASON(e);
    if (errlen > 0)
        snprintf(err, errlen, "cannot read %s: %s", file, strerror(sys));
    ERR_clear_error();
    return -sys;
}

/* A file OpenSSL would fail on for a reason errno names better: -ENOENT, -EACCES. */
static int readable(const char *file, char *err, size_t errlen)
{
    if (file == NULL || access(file, R_OK) == 0)
        return 0;
    int e = errno;
    if (errlen > 0)
        snprintf(err, errlen, "cannot read %s: %s", file, strerror(e));
    return -e;
}

static int alpn_wire(yd_tls *tls, const char *list)
{
    tls->alpn_len = 0;
    while (list != NULL && *list != '\0') {
        size_t n = strcspn(list, ",");
        if (n == 0 || n > 255 || tls->alpn_len + 1 + n > sizeof tls->alpn)
            return -EINVAL;
        tls->alpn[tls->alpn_len++] = (unsigned char)n;
        memcpy(tls->alpn + tls->alpn_len, list, n);
        tls->alpn_len += (unsigned)n;
        list += n + (list[n] == ',');
    }
    return 0;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    yd_tls *tls = arg;
    if (SSL_select_next_proto((unsigned char **)out, outlen, tls->alpn, tls->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no protocol in common: RFC 7301 says refuse */
    return SSL_TLSEXT_ERR_OK;
}

static int load_identity(SSL_CTX *ctx, const yd_tls *tls, char *err, size_t errlen)
{
    int r = readable(tls->cert_file, err, errlen);
    if (r == 0)
        r = readable(tls->key_file, err, errlen);
    if (r < 0 || tls->cert_file == NULL)
        return r;
    const char *key = tls->key_file ? tls->key_file : tls->cert_file;
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
        return load_failed(err, errlen, "not a PEM certificate chain:", tls->cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL 3 checks the pair here already: say which problem it was. */
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        return load_failed(
            err, errlen,
            mismatch ? "the key does not match the certificate:" : "not a PEM private key:", key);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_error(err, errlen, "the key does not match the certificate", NULL);
        return -EINVAL;
    }
    return 0;
}

static int load_trust(SSL_CTX *ctx, const yd_tls *tls, char *err, size_t errlen)
{
    int r = readable(tls->ca_file, err, errlen);
    if (r < 0)
        return r;
    if (tls->server && tls->ca_file != NULL) {
        /* Mutual TLS: a client without a certificate these signed is refused. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(tls->ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            return load_failed(err, errlen, "not a PEM CA file:", tls->ca_file);
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    } else if (!tls->server && !tls->insecure) {
        int ok = tls->ca_file ? SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            set_error(err, errlen, "cannot load CA certificates", tls->ca_file);
            return -EINVAL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    return 0;
}

/* A client with resume keeps the newest session a server gave (TLS 1.3 sends its tickets after
 * the handshake, so this runs from SSL_read). Returns 1: the reference is ours. */
static int keep_session(SSL *ssl, SSL_SESSION *session)
{
    yd_tls *tls = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), 0);
    if (tls == NULL)
        return 0;
    pthread_mutex_lock(&tls->lock);
    SSL_SESSION *old = tls->session;
    tls->session = session;
    pthread_mutex_unlock(&tls->lock);
    SSL_SESSION_free(old);
    return 1;
}

/* A fresh SSL_CTX from the files: the secure defaults, identity, trust, ALPN. */
static int make_ctx(yd_tls *tls, SSL_CTX **out, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(tls->server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return -ENOMEM;
    SSL_CTX_set_min_proto_version(ctx,
                                  tls->min_version == YD_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* No compression (CRIME), no renegotiation; a peer that closes without close_notify is
     * an EOF, as on a plain connection. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle connections give their read and write buffers back: a few KiB each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char sid_ctx[] = "yodel";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (tls->resume) {
        SSL_CTX_set_ex_data(ctx, 0, tls);
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, keep_session);
    }
    int r = load_identity(ctx, tls, err, errlen);
    if (r == 0)
        r = load_trust(ctx, tls, err, errlen);
    if (r == 0 && tls->alpn_len > 0) {
        if (tls->server)
            SSL_CTX_set_alpn_select_cb(ctx, select_alpn, tls);
        else if (SSL_CTX_set_alpn_protos(ctx, tls->alpn, tls->alpn_len) != 0)
            r = -EINVAL;
    }
    if (r < 0) {
        SSL_CTX_free(ctx);
        return r;
    }
    *out = ctx;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void tls_unref(yd_tls *tls)
{
    if (atomic_fetch_sub(&tls->refs, 1) != 1)
        return;
    SSL_CTX_free(tls->ctx);
    SSL_SESSION_free(tls->session);
    pthread_mutex_destroy(&tls->lock);
    free(tls->cert_file);
    free(tls->key_file);
    free(tls->ca_file);
    free(tls->server_name);
    free(tls);
}

static int tls_new(int server, const yd_tls_options *o, yd_tls **out, char *err, size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    if (o == NULL || (server && o->cert_file == NULL))
        return -EINVAL;
    yd_tls *tls = calloc(1, sizeof *tls);
    if (tls == NULL)
        return -ENOMEM;
    pthread_mutex_init(&tls->lock, NULL);
    atomic_init(&tls->refs, 1);
    tls->server = server;
    tls->insecure = o->insecure;
    tls->resume = o->resume && !server;
    tls->min_version = o->min_version;
    tls->handshake_timeout_ms =
        o->handshake_timeout_ms ? o->handshake_timeout_ms : DEFAULT_HANDSHAKE_TIMEOUT_MS;
    tls->cert_file = dup_or_null(o->cert_file);
    tls->key_file = dup_or_null(o->key_file);
    tls->ca_file = dup_or_null(o->ca_file);
    tls->server_name = dup_or_null(o->server_name);
    int r = alpn_wire(tls, o->alpn);
    if (r < 0 && errlen > 0)
        snprintf(err, errlen, "bad ALPN list '%s'", o->alpn);
    if (r == 0)
        r = make_ctx(tls, &tls->ctx, err, errlen);
    if (r < 0) {
        tls_unref(tls);
        return r;
    }
    *out = tls;
    return 0;
}

int yd_tls_server_new(const yd_tls_options *options, yd_tls **out, char *err, size_t errlen)
{
    return tls_new(1, options, out, err, errlen);
}

int yd_tls_client_new(const yd_tls_options *options, yd_tls **out, char *err, size_t errlen)
{
    return tls_new(0, options, out, err, errlen);
}

int yd_tls_reload(yd_tls *tls, char *err, size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    SSL_CTX *ctx;
    int r = make_ctx(tls, &ctx, err, errlen);
    if (r < 0)
        return r; /* the old configuration stays */
    pthread_mutex_lock(&tls->lock);
    SSL_CTX *old = tls->ctx;
    tls->ctx = ctx;
    pthread_mutex_unlock(&tls->lock);
    SSL_CTX_free(old); /* connections made with it hold their own reference */
    return 0;
}

void yd_tls_free(yd_tls *tls)
{
    if (tls != NULL)
        tls_unref(tls);
}

void yd__tls_ref(yd_tls *tls)
{
    atomic_fetch_add(&tls->refs, 1);
}

void yd__tls_unref(yd_tls *tls)
{
    tls_unref(tls);
}

/* ---- The BIO between OpenSSL and the socket ---------------------------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void out_flush(yd_conn *conn);

static int bio_read(BIO *b, char *buf, int len)
{
    yd_conn *conn = BIO_get_data(b);
    struct yd__tls_conn *t = conn->tls;
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        if (t->eof)
            return 0;
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

/* A record: to the kernel at once when nothing waits before it, else queued in order. */
static int bio_write(BIO *b, const char *data, int len)
{
    yd_conn *conn = BIO_get_data(b);
    struct yd__tls_conn *t = conn->tls;
    BIO_clear_retry_flags(b);
    size_t n = (size_t)len;
    if (t->out.len == 0 && !t->queue_only && !uv_is_closing(&conn->h.handle)) {
        uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_try_write(&conn->h.stream, &buf, 1);
        if (r > 0) {
            data += r;
            n -= (size_t)r;
        }
    }
    if (n > 0 && yd__bufq_push(&t->out, &conn->loop->pool, data, n) < 0)
        return -1;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    yd_conn *conn = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return conn->tls->eof && conn->tls->in_len == 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_bio_method(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "yodel");
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
}

/* ---- Attaching to a connection ------------------------------------------------------------ */

int yd__tls_attach(yd_conn *conn, yd_tls *tls, const char *host)
{
    pthread_once(&bio_once, make_bio_method);
    if (conn->loop->tls_buf == NULL && (conn->loop->tls_buf = malloc(TLS_BUF_BYTES)) == NULL)
        return -ENOMEM; /* the loop's plaintext buffer, made with its first TLS connection */
    struct yd__tls_conn *t = calloc(1, sizeof *t);
    if (t == NULL || bio_method == NULL) {
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_lock(&tls->lock);
    t->ssl = SSL_new(tls->ctx); /* takes its own reference on the current ctx */
    if (t->ssl != NULL && tls->session != NULL)
        SSL_set_session(t->ssl, tls->session); /* offered; the server may still refuse it */
    pthread_mutex_unlock(&tls->lock);
    BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (bio == NULL) {
        SSL_free(t->ssl);
        free(t);
        return -ENOMEM;
    }
    BIO_set_data(bio, conn);
    SSL_set_bio(t->ssl, bio, bio);
    t->handshaking = 1;
    if (tls->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        const char *name = tls->server_name ? tls->server_name : host;
        if (name != NULL && name[0] != '\0') {
            SSL_set_tlsext_host_name(t->ssl, name); /* SNI (OpenSSL leaves it out for an IP) */
            if (!tls->insecure && SSL_set1_host(t->ssl, name) != 1) {
                SSL_free(t->ssl);
                free(t);
                return -EINVAL;
            }
        }
    }
    yd__tls_ref(tls);
    t->tls = tls;
    conn->tls = t;
    return 0;
}

void yd__tls_detach(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    yd__bufq_clear(&t->out, &conn->loop->pool);
    tls_unref(t->tls);
    free(t);
    conn->tls = NULL;
}

/* ---- Reading: ciphertext in, plaintext to conn.c ------------------------------------------- */

/* What the handshake did: 0 done, 1 wants more bytes, < 0 failed. */
static int handshake(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    int r = SSL_do_handshake(t->ssl);
    out_flush(conn);
    if (r == 1) {
        t->handshaking = 0;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ && !t->eof)
        return 1;
    long verify = SSL_get_verify_result(t->ssl);
    unsigned long err = ERR_peek_last_error();
    if (verify != X509_V_OK)
        conn->tls_error = X509_verify_cert_error_string(verify);
    else if (err != 0)
        conn->tls_error = ERR_reason_error_string(err);
    else
        conn->tls_error = t->eof ? "the peer closed during the handshake" : NULL;
    ERR_clear_error();
    return -EPROTO;
}

/* Exits: a handshake under way waits for more; a failed one rejects the connection; then
 * every record read goes to conn.c until OpenSSL wants more bytes, the peer's close_notify
 * (or EOF) is EOF, and any other failure fails the connection. */
static void pump(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    if (t->handshaking) {
        int r = handshake(conn);
        if (r > 0)
            return;
        if (r < 0) {
            yd__conn_reject(conn, -EPROTO, yd__conn_opening_kind(conn));
            return;
        }
        yd__conn_ready(conn);
    }
    char *plain = conn->loop->tls_buf;
    while (conn->phase == PHASE_OPEN || conn->phase == PHASE_CLOSING) {
        int n = SSL_read(t->ssl, plain, TLS_BUF_BYTES);
        if (n > 0) {
            yd__conn_received(conn, plain, (size_t)n);
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        out_flush(conn); /* what reading made: session tickets, key updates, alerts */
        if (e == SSL_ERROR_WANT_READ)
            return;
        unsigned long err = ERR_peek_last_error(); /* a bad record, an alert the peer sent */
        if (err != 0 && e != SSL_ERROR_ZERO_RETURN)
            conn->tls_error = ERR_reason_error_string(err);
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN)
            yd__conn_read_eof(conn);
        else
            yd__conn_read_error(conn, t->eof ? -ECONNRESET : -EPROTO);
        return;
    }
}

/* The handshake must be done within the configured time from now (from accept, or from the
 * end of the PROXY header that comes first). */
static void arm_handshake_deadline(yd_conn *conn)
{
    uint64_t timeout_ms = conn->tls->tls->handshake_timeout_ms;
    conn->ready_deadline_ms = uv_now(&conn->loop->uv) + timeout_ms;
    yd__loop_want_sweep(conn->loop, yd__loop_sweep_period(timeout_ms));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    yd_conn *conn = s->data;
    struct yd__tls_conn *t = conn->tls;
    if (nread < 0 && nread != UV_EOF) {
        if (t->handshaking)
            yd__conn_reject(conn, (int)nread, yd__conn_opening_kind(conn));
        else
            yd__conn_read_error(conn, (int)nread);
        return;
    }
    if (nread == UV_EOF)
        t->eof = 1;
    conn->moved = 1; /* ciphertext moving is progress, whole records or not */
    const char *data = buf->base;
    size_t len = nread > 0 ? (size_t)nread : 0;
    char *hold = NULL;
    /* A PROXY header comes before the TLS hello, each with its own deadline. */
    if (conn->proxy_expected && len > 0) {
        if (yd__conn_proxy_read(conn, &data, &len, &hold) != 0)
            return;
        arm_handshake_deadline(conn);
    }
    t->in = data;
    t->in_len = len;
    pump(conn);
    if (conn->tls != NULL)
        conn->tls->in_len = 0; /* the loop's buffer is the next read's */
    free(hold);
}

static int socket_read(yd_conn *conn, int on)
{
    struct yd__tls_conn *t = conn->tls;
    if (on == t->socket_reading || uv_is_closing(&conn->h.handle))
        return 0;
    int err = on ? uv_read_start(&conn->h.stream, yd__loop_alloc_cb, on_read)
                 : uv_read_stop(&conn->h.stream);
    if (err == 0)
        t->socket_reading = on;
    return err;
}

/* conn.c's reading is the socket's, once the handshake is done. */
static int tls_read_start(yd_conn *conn)
{
    return socket_read(conn, 1);
}

static int tls_read_stop(yd_conn *conn)
{
    return conn->tls->handshaking ? 0 : socket_read(conn, 0);
}

/* ---- Writing: plaintext from conn.c, ciphertext out ----------------------------------------- */

static void finish(yd_conn *conn);

/* The socket would not take the ciphertext: what is left of it is dropped, and the connection
 * fails (or, closed already, finishes closing). */
static void out_failed(yd_conn *conn, int err)
{
    yd__bufq_clear(&conn->tls->out, &conn->loop->pool);
    if (conn->phase == PHASE_CLOSED)
        finish(conn);
    else
        yd_conn_fail(conn, err);
}

/* Hands the queued ciphertext to libuv unless a write is under way. */
static void out_flush(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    if (t->out_inflight > 0 || t->out.len == 0 || uv_is_closing(&conn->h.handle))
        return;
    uv_buf_t iov[16];
    size_t bytes;
    unsigned n = yd__bufq_peek(&t->out, iov, 16, &bytes);
    conn->wreq.data = conn;
    int err = uv_write(&conn->wreq, &conn->h.stream, iov, n, on_out_written);
    if (err < 0) {
        out_failed(conn, err);
        return;
    }
    t->out_inflight = bytes;
}

static void on_out_written(uv_write_t *req, int status)
{
    yd_conn *conn = req->data;
    struct yd__tls_conn *t = conn->tls;
    size_t done = t->out_inflight;
    t->out_inflight = 0;
    if (status == UV_ECANCELED)
        return;
    if (status < 0) {
        out_failed(conn, status);
        return;
    }
    yd__bufq_consume(&t->out, &conn->loop->pool, done);
    conn->last_active_ms = uv_now(&conn->loop->uv);
    conn->moved = 1;
    out_flush(conn);
    if (t->out.len > 0)
        return;
    if (t->plain_waiting) {
        t->plain_waiting = 0;
        yd__conn_written(conn, 0);
        if (conn->tls == NULL)
            return;
    }
    finish(conn);
}

/* Everything the kernel takes now; nothing while earlier ciphertext still waits. */
static int tls_try_write(yd_conn *conn, const char *data, size_t len)
{
    struct yd__tls_conn *t = conn->tls;
    if (t->handshaking || t->out.len > 0)
        return 0;
    int n = SSL_write(t->ssl, data, (int)len); /* never short: bio_write takes every record */
    if (n <= 0) {
        ERR_clear_error();
        return -EPROTO;
    }
    out_flush(conn);
    return n;
}

static int tls_write(yd_conn *conn, const uv_buf_t *iov, unsigned n)
{
    struct yd__tls_conn *t = conn->tls;
    t->queue_only = 1; /* completion must come from uv_write, after conn.c set inflight */
    for (unsigned i = 0; i < n; i++) {
        if (SSL_write(t->ssl, iov[i].base, (int)iov[i].len) <= 0) {
            t->queue_only = 0;
            ERR_clear_error();
            return -EPROTO;
        }
    }
    t->queue_only = 0;
    t->plain_waiting = 1;
    out_flush(conn);
    return 0;
}

/* ---- Half-close and close ------------------------------------------------------------------ */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    yd__conn_shut(req->data, status);
}

static void send_close_notify(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    if (t->handshaking || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        return;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    out_flush(conn);
}

/* TLS has no half-close of its own: close_notify, then EOF on the socket once it is sent. */
static int tls_shutdown(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    send_close_notify(conn);
    t->shut_wanted = 1;
    finish(conn);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    yd_conn *conn = h->data;
    yd__tls_detach(conn);
    yd__conn_closed(conn);
}

static void close_now(yd_conn *conn, int reset)
{
    if (uv_is_closing(&conn->h.handle))
        return;
    if (reset && conn->transport == &yd__tls_tcp_transport &&
        uv_tcp_close_reset(&conn->h.tcp, on_closed) == 0)
        return;
    uv_close(&conn->h.handle, on_closed);
}

/* What waits for the ciphertext to drain: a half-close, a close. */
static void finish(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    if (t->out.len > 0 || t->out_inflight > 0)
        return;
    if (t->shut_wanted && !t->close_wanted) {
        t->shut_wanted = 0;
        conn->req.shut.data = conn;
        int err = uv_shutdown(&conn->req.shut, &conn->h.stream, on_shutdown);
        if (err < 0 && err != UV_ENOTCONN)
            yd_conn_fail(conn, err);
    }
    if (t->close_wanted)
        close_now(conn, 0);
}

/* A graceful close sends close_notify and what waits before it; an abort resets at once. */
static void tls_close(yd_conn *conn, int reset)
{
    struct yd__tls_conn *t = conn->tls;
    if (t == NULL || reset) {
        close_now(conn, reset);
        return;
    }
    send_close_notify(conn);
    t->close_wanted = 1;
    finish(conn);
}

/* ---- Start ---------------------------------------------------------------------------------- */

/* The handshake first: on_connect waits for it (returns 1: not ready yet). */
static int tls_start(yd_conn *conn)
{
    struct yd__tls_conn *t = conn->tls;
    if (conn->transport == &yd__tls_tcp_transport)
        uv_tcp_nodelay(&conn->h.tcp, 1);
    if (!conn->proxy_expected) /* else the header's own deadline runs first (on_read) */
        arm_handshake_deadline(conn);
    int err = socket_read(conn, 1);
    if (err < 0)
        return err;
    if (!t->tls->server) {
        int r = handshake(conn); /* the client speaks first: its hello goes out now */
        if (r < 0)
            return r;
    }
    return 1;
}

/* ---- What a connection negotiated ------------------------------------------------------------ */

const char *yd_conn_tls_version(const yd_conn *conn)
{
    if (conn->tls == NULL || conn->tls->handshaking)
        return NULL;
    return SSL_get_version(conn->tls->ssl);
}

const char *yd_conn_tls_error(const yd_conn *conn)
{
    return conn->tls_error;
}

int yd_conn_tls_resumed(const yd_conn *conn)
{
    if (conn->tls == NULL || conn->tls->handshaking)
        return 0;
    return SSL_session_reused(conn->tls->ssl) == 1;
}

int yd_conn_tls_peer_subject(const yd_conn *conn, char *buf, size_t len)
{
    if (len == 0)
        return -ENOBUFS;
    buf[0] = '\0';
    if (conn->tls == NULL || conn->tls->handshaking)
        return 0;
    X509 *peer = SSL_get0_peer_certificate(conn->tls->ssl);
    if (peer == NULL)
        return 0;
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL)
        return -ENOMEM;
    X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
    char *text;
    long n = BIO_get_mem_data(mem, &text);
    int w = snprintf(buf, len, "%.*s", (int)n, text);
    BIO_free(mem);
    return w < 0 || (size_t)w >= len ? -ENOBUFS : w;
}

/* ---- The transports ------------------------------------------------------------------------- */

/* Everything but the socket underneath is the same for TLS over TCP and over a Unix socket. */
#define TLS_OPS                                                                                    \
    .start = tls_start, .read_start = tls_read_start, .read_stop = tls_read_stop,                  \
    .try_write = tls_try_write, .write = tls_write, .shutdown = tls_shutdown, .close = tls_close

const struct yd__transport yd__tls_tcp_transport = {
    .name = "tls",
    .handle_size = sizeof(uv_tcp_t),
    .open = yd__stream_tcp_open,
    TLS_OPS,
    .peer_name = yd__stream_tcp_peer_name,
};

const struct yd__transport yd__tls_unix_transport = {
    .name = "tls+unix",
    .handle_size = sizeof(uv_pipe_t),
    .open = yd__stream_unix_open,
    TLS_OPS,
    .peer_name = yd__stream_unix_peer_name,
};
