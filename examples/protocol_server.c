/*
 * protocol_server - the tutorials' EchoServerProtocol: the four events of a connection
 * (connection_made, data_received, eof_received, connection_lost) as yd_protocol callbacks,
 * each logged; the data is echoed and the connection closed at EOF.
 *
 *   ./protocol_server [ADDR]    default 127.0.0.1:8888; stop with Ctrl-C
 */
#include <stdio.h>
#include <yodel.h>

static void connection_made(yd_conn *conn)
{
    char peer[64];
    yd_conn_peer_name(conn, peer, sizeof(peer));
    fprintf(stderr, "connection_made: connection from %s\n", peer);
}

static void data_received(yd_conn *conn, const char *data, size_t len)
{
    fprintf(stderr, "data_received: '%.*s'\n", (int)len, data);
    yd_conn_write(conn, data, len);
}

static void eof_received(yd_conn *conn)
{
    fprintf(stderr, "eof_received: closing\n");
    yd_conn_close(conn);
}

static void connection_lost(yd_conn *conn, int status)
{
    (void)conn;
    fprintf(stderr, "connection_lost: %s\n", status < 0 ? yd_strerror(status) : "closed");
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {.on_connect = connection_made,
                                     .on_data = data_received,
                                     .on_eof = eof_received,
                                     .on_close = connection_lost};
    const yd_server_options options = {.protocol = &echo};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    yd_loop *loop;
    yd_server *server;
    char name[128];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0) {
        fprintf(stderr, "protocol_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    yd_server_address(server, 0, name, sizeof(name));
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
