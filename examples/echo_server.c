/*
 * echo_server - the Python docs' handle_echo ("Streams", TCP echo server using streams): for
 * each client read once, up to 100 bytes (reader.read(100): no newline needed), log it with
 * the peer's address, send it back, close. As the tutorials' handle_echo_client, it waits a
 * moment before the reply. It teaches per-client state and a timer per client, so that one
 * client's wait blocks nobody.
 *
 * Test with: ./echo_server &  then  nc 127.0.0.1 8888  (type a line), or ./echo_client
 *
 *   ./echo_server [ADDR]        default 127.0.0.1:8888; stop with Ctrl-C
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yodel.h>

#define DELAY_MS 200
#define READ_MAX 100 /* reader.read(100) */

typedef struct client {
    yd_timer *timer;
    size_t len;
    char data[READ_MAX];
    char peer[YD_ADDR_TEXT_BYTES];
} client;

static int shown(const char *data, size_t len) /* logged without a line's '\n' */
{
    return (int)(len > 0 && data[len - 1] == '\n' ? len - 1 : len);
}

static void on_timer(yd_timer *timer, void *conn)
{
    client *c = yd_conn_data(conn);
    (void)timer;
    fprintf(stderr, "Send: '%.*s'\nClose the connection\n", shown(c->data, c->len), c->data);
    int err = yd_conn_write(conn, c->data, c->len);
    if (err < 0)
        fprintf(stderr, "%s: %s\n", c->peer, yd_strerror(err));
    yd_conn_close(conn); /* once the reply is sent */
}

static void on_connect(yd_conn *conn)
{
    client *c = calloc(1, sizeof(*c));
    yd_conn_set_data(conn, c);
    if (c == NULL || yd_timer_new(yd_conn_loop(conn), on_timer, conn, &c->timer) < 0 ||
        yd_conn_peer_name(conn, c->peer, sizeof(c->peer)) < 0)
        yd_conn_abort(conn);
}

/* Paused after its first read, the connection reads nothing more, not even a half-close: a
 * client that half-closes after its message still gets the reply. */
static void on_data(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    c->len = len < READ_MAX ? len : READ_MAX;
    memcpy(c->data, data, c->len);
    fprintf(stderr, "Received '%.*s' from %s\n", shown(c->data, c->len), c->data, c->peer);
    yd_conn_pause_reading(conn);
    if (yd_timer_start(c->timer, DELAY_MS, 0) < 0)
        yd_conn_abort(conn);
}

static void on_close(yd_conn *conn, int status)
{
    client *c = yd_conn_data(conn);
    if (status < 0)
        fprintf(stderr, "%s: %s\n", c ? c->peer : "?", yd_strerror(status));
    if (c != NULL && c->timer != NULL)
        yd_timer_free(c->timer);
    free(c);
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const yd_server_options options = {.protocol = &echo};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    yd_loop *loop;
    yd_server *server;
    char name[YD_ADDR_TEXT_BYTES];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0 ||
        (err = yd_server_address(server, 0, name, sizeof(name))) < 0) {
        fprintf(stderr, "echo_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
