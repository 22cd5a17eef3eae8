/*
 * two_servers - the tutorials' servers on ephemeral ports: two servers on port 0 in ONE loop,
 * their real addresses read back, and a client to each running in parallel. It teaches port 0
 * with yd_server_address and yd_server_port, and servers and clients sharing one loop. The
 * servers are libyodel's own echo behaviours (yd_echo_listen): one echoes lines, one yells.
 *
 * Test with: ./two_servers  (it prints both ports and exits 0 when both servers answered)
 *
 *   ./two_servers [HOST]        default 127.0.0.1 (an IPv6 host in brackets: [::1])
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

typedef struct client {
    const char *message, *expected;
    int echoed;
} client;

static yd_server *servers[2];
static yd_timer *timeout;
static int answered;

static void on_connect(yd_conn *conn)
{
    client *c = yd_conn_data(conn);
    int err;
    if ((err = yd_conn_set_read_mode(conn, YD_READ_LINE, 1024)) < 0 ||
        (err = yd_conn_write(conn, c->message, strlen(c->message))) < 0) {
        fprintf(stderr, "two_servers: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    client *c = yd_conn_data(conn);
    printf("received: %.*s", (int)len, data);
    c->echoed = len == strlen(c->expected) && memcmp(data, c->expected, len) == 0;
    yd_conn_close(conn);
}

/* The last client to finish closes the servers: with nothing left open the loop returns. */
static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    if (status < 0)
        fprintf(stderr, "two_servers: %s\n", yd_strerror(status));
    if (++answered < 2)
        return;
    yd_server_close(servers[0]);
    yd_server_close(servers[1]);
    yd_timer_free(timeout);
}

static void on_timeout(yd_timer *timer, void *loop)
{
    (void)timer;
    fprintf(stderr, "two_servers: no answer within 5 s\n");
    yd_loop_stop(loop);
}

int main(int argc, char **argv)
{
    static const yd_protocol protocol = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const yd_echo_options modes[2] = {{.mode = YD_ECHO_LINE}, {.mode = YD_ECHO_UPPER}};
    client clients[2] = {{"hello, first server\n", "hello, first server\n", 0},
                         {"hello, second server\n", "HELLO, SECOND SERVER\n", 0}};
    char addr[YD_ADDR_TEXT_BYTES];
    yd_loop *loop;
    yd_conn *conn;
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_timer_new(loop, on_timeout, loop, &timeout)) < 0 ||
        (err = yd_timer_start(timeout, 5000, 0)) < 0) {
        fprintf(stderr, "two_servers: %s\n", yd_strerror(err));
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(addr, sizeof(addr), "%s:0", argc > 1 ? argv[1] : "127.0.0.1");
        if ((err = yd_echo_listen(loop, addr, &modes[i], NULL, &servers[i])) < 0 ||
            (err = yd_server_address(servers[i], 0, addr, sizeof(addr))) < 0 ||
            (err = yd_conn_connect(loop, addr, &protocol, &clients[i], &conn)) < 0) {
            fprintf(stderr, "two_servers: %s: %s\n", addr, yd_strerror(err));
            return 1;
        }
        printf("server %d listening on %s (port %d)\n", i + 1, addr, yd_server_port(servers[i]));
    }
    err = yd_loop_run(loop); /* until the last client closes the servers, or the timeout */
    if (yd_loop_free(loop) < 0)
        err = -1;
    printf("%s\n", clients[0].echoed && clients[1].echoed ? "both servers answered" : "FAILED");
    return err < 0 || !clients[0].echoed || !clients[1].echoed;
}
