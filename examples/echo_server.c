/*
 * echo_server - the tutorials' handle_echo_client: for each client read one line, log it with
 * the peer's address, wait a moment (a timer, so no other client waits), send it back, close.
 *
 *   ./echo_server [ADDR]        default 127.0.0.1:8888; stop with Ctrl-C
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yodel.h>

#define DELAY_MS 200
#define MAX_LINE 1024

typedef struct client {
    yd_conn *conn;
    yd_timer *timer;
    char peer[64];
    size_t len;
    char line[MAX_LINE];
} client;

static void on_timer(yd_timer *timer, void *data)
{
    client *c = data;
    (void)timer;
    fprintf(stderr, "send '%.*s' to %s\n", (int)strcspn(c->line, "\n"), c->line, c->peer);
    yd_conn_write(c->conn, c->line, c->len);
    yd_conn_close(c->conn);
}

static void on_connect(yd_conn *conn)
{
    client *c = calloc(1, sizeof(*c));
    yd_conn_set_data(conn, c);
    if (c == NULL || yd_timer_new(yd_conn_loop(conn), on_timer, c, &c->timer) < 0) {
        yd_conn_abort(conn);
        return;
    }
    c->conn = conn;
    yd_conn_peer_name(conn, c->peer, sizeof(c->peer));
    yd_conn_set_read_mode(conn, YD_READ_LINE, MAX_LINE - 1); /* room for a NUL */
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    memcpy(c->line, data, len); /* len < MAX_LINE, see on_connect */
    c->len = len;
    fprintf(stderr, "received '%.*s' from %s\n", (int)strcspn(c->line, "\n"), c->line, c->peer);
    yd_conn_pause_reading(conn); /* one line per client: no more on_data */
    yd_timer_start(c->timer, DELAY_MS, 0);
}

/* A client may half-close right after its line: stay open to send the delayed reply. */
static void on_eof(yd_conn *conn)
{
    client *c = yd_conn_data(conn);
    if (c->len == 0)
        yd_conn_close(conn);
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
        .on_connect = on_connect, .on_data = on_data, .on_eof = on_eof, .on_close = on_close};
    const yd_server_options options = {.protocol = &echo};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    yd_loop *loop;
    yd_server *server;
    char name[128];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0) {
        fprintf(stderr, "echo_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    yd_server_address(server, 0, name, sizeof(name));
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
