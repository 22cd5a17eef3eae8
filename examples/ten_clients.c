/*
 * ten_clients - the tutorials' tcp_echo_client, "the same with 10 clients at once": ten
 * connections on one loop, each sends its own line and prints its reply. It teaches many
 * connections in one thread, each with its own data (yd_conn_data). Exits 0 only if all ten
 * got their own message back.
 *
 * Test with: ./echo_server &  then  ./ten_clients  (the ten replies come after one delay)
 *
 *   ./ten_clients [ADDR]        default 127.0.0.1:8888
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

#define CLIENTS 10

typedef struct client {
    int id;
    int echoed;
    char message[64];
} client;

static void on_connect(yd_conn *conn)
{
    client *c = yd_conn_data(conn);
    int err;
    if ((err = yd_conn_set_read_mode(conn, YD_READ_LINE, 1024)) < 0 ||
        (err = yd_conn_write(conn, c->message, strlen(c->message))) < 0) {
        fprintf(stderr, "client %d: %s\n", c->id, yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    printf("client %d received: %.*s", c->id, (int)len, data);
    c->echoed = len == strlen(c->message) && memcmp(data, c->message, len) == 0;
    yd_conn_close(conn);
}

static void on_close(yd_conn *conn, int status)
{
    client *c = yd_conn_data(conn);
    if (status < 0)
        fprintf(stderr, "client %d: %s\n", c->id, yd_strerror(status));
}

int main(int argc, char **argv)
{
    static const yd_protocol protocol = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    client clients[CLIENTS] = {0};
    yd_loop *loop;
    yd_conn *conn;
    int echoed = 0, err;

    if ((err = yd_loop_new(&loop)) < 0) {
        fprintf(stderr, "ten_clients: %s\n", yd_strerror(err));
        return 1;
    }
    for (int i = 0; i < CLIENTS; i++) {
        clients[i].id = i;
        snprintf(clients[i].message, sizeof(clients[i].message), "Hello There from client %d\n", i);
        if ((err = yd_conn_connect(loop, addr, &protocol, &clients[i], &conn)) < 0)
            fprintf(stderr, "ten_clients: %s: %s\n", addr, yd_strerror(err));
    }
    err = yd_loop_run(loop); /* all ten run at once; returns when the last one is closed */
    if (yd_loop_free(loop) < 0)
        err = -1;
    for (int i = 0; i < CLIENTS; i++)
        echoed += clients[i].echoed;
    printf("%d of %d clients got their own message back\n", echoed, CLIENTS);
    return err < 0 || echoed != CLIENTS;
}
