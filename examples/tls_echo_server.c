/*
 * tls_echo_server - the Python docs' handle_echo ("Streams", TCP echo server using streams)
 * served over TLS, as asyncio does it with
 *     context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
 *     context.load_cert_chain(CERT, KEY)
 *     server = await asyncio.start_server(handle_echo, '127.0.0.1', 8888, ssl=context)
 * For each client: read once, up to 100 bytes, log it with the peer's address, send it back,
 * close. It teaches that a protocol never sees TLS (on_data gets plaintext, yd_conn_write
 * takes plaintext): the same callbacks serve a plain and a TLS address; yd_tls is the
 * context. With a client CA it asks for client certificates (mutual TLS) and logs the verified
 * subject; a failed handshake is logged with its peer (on_reject); SIGHUP reloads the files.
 *
 * Make a certificate, start it, talk to it:
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
 *       -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
 *       -keyout key.pem -out cert.pem
 *   ./tls_echo_server cert.pem key.pem &
 *   openssl s_client -quiet -connect 127.0.0.1:8888 -CAfile cert.pem    (type a line)
 *
 *   ./tls_echo_server CERT KEY [ADDR [CLIENT_CA]]   default tls://127.0.0.1:8888; Ctrl-C stops
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <yodel.h>

#define READ_MAX 100 /* reader.read(100) */

static int shown(const char *data, size_t len) /* logged without a line's '\n' */
{
    return (int)(len > 0 && data[len - 1] == '\n' ? len - 1 : len);
}

/* The handshake is done: for a mutual TLS client, who it is (its certificate was verified). */
static void on_connect(yd_conn *conn)
{
    char peer[YD_ADDR_TEXT_BYTES], subject[256];
    if (yd_conn_tls_peer_subject(conn, subject, sizeof(subject)) > 0 &&
        yd_conn_peer_name(conn, peer, sizeof(peer)) > 0)
        fprintf(stderr, "%s from %s is %s\n", yd_conn_tls_version(conn), peer, subject);
}

/* data = await reader.read(100): one read, then no more (a half-close waits for the reply). */
static void on_data(yd_conn *conn, const char *data, size_t len)
{
    char peer[YD_ADDR_TEXT_BYTES];
    size_t n = len < READ_MAX ? len : READ_MAX;
    yd_conn_pause_reading(conn);
    yd_conn_peer_name(conn, peer, sizeof(peer));
    fprintf(stderr, "Received '%.*s' from %s\n", shown(data, n), data, peer);
    fprintf(stderr, "Send: '%.*s'\n", shown(data, n), data);
    int err = yd_conn_write(conn, data, n);
    if (err < 0)
        fprintf(stderr, "%s: %s\n", peer, yd_strerror(err));
    fprintf(stderr, "Close the connection\n");
    yd_conn_close(conn); /* close_notify once the reply is sent */
}

static void on_close(yd_conn *conn, int status)
{
    char peer[YD_ADDR_TEXT_BYTES];
    if (status < 0 && yd_conn_peer_name(conn, peer, sizeof(peer)) > 0)
        fprintf(stderr, "%s: %s\n", peer, yd_strerror(status));
}

/* A client that never got as far as on_connect: plaintext, a bad certificate, too slow. */
static void on_reject(yd_conn *conn, int status, enum yd_error_kind kind)
{
    char peer[YD_ADDR_TEXT_BYTES];
    const char *why = yd_conn_tls_error(conn);
    if (kind == YD_ERR_TLS_HANDSHAKE && yd_conn_peer_name(conn, peer, sizeof(peer)) > 0)
        fprintf(stderr, "handshake failed from %s: %s%s%s\n", peer, yd_strerror(status),
                why ? ": " : "", why ? why : "");
}

/* Certificate rotation: new connections get the files as they are now. */
static void on_sighup(yd_signal *signal, int signum, void *tls)
{
    char err[256];
    (void)signal;
    (void)signum;
    if (yd_tls_reload(tls, err, sizeof(err)) < 0)
        fprintf(stderr, "reload failed, keeping the old certificate: %s\n", err);
    else
        fprintf(stderr, "reloaded the certificate\n");
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close, .on_reject = on_reject};
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: tls_echo_server CERT KEY [ADDR [CLIENT_CA]]\n");
        return 2;
    }
    const char *addr = argc > 3 ? argv[3] : "tls://127.0.0.1:8888";
    yd_tls_options tls_options = {
        .cert_file = argv[1], .key_file = argv[2], .ca_file = argc > 4 ? argv[4] : NULL};
    yd_tls *tls;
    char why[256];
    int err = yd_tls_server_new(&tls_options, &tls, why, sizeof(why));
    if (err < 0) {
        fprintf(stderr, "tls_echo_server: %s\n", why[0] ? why : yd_strerror(err));
        return 1;
    }
    const yd_server_options options = {.protocol = &echo, .tls = tls};
    yd_loop *loop;
    yd_server *server;
    yd_signal *hup;
    char name[YD_ADDR_TEXT_BYTES];

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0 ||
        (err = yd_signal_new(loop, SIGHUP, on_sighup, tls, &hup)) < 0 ||
        (err = yd_server_address(server, 0, name, sizeof(name))) < 0) {
        fprintf(stderr, "tls_echo_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    int failed = err < 0 || yd_loop_free(loop) < 0;
    yd_tls_free(tls); /* after the loop: SIGHUP may use it until then */
    return failed;
}
