/*
 * protocol_server - the Python docs' EchoServerProtocol ("Transports and Protocols", TCP Echo
 * Server) as yd_protocol callbacks. It teaches the events of a connection: connection_made logs
 * the peer; data_received logs the data, sends it back and closes the connection at once (one
 * answer per connection, as the docs' server: the client need not half-close); connection_lost
 * is the last event of every connection.
 *
 * Test with: ./protocol_server &  then  nc 127.0.0.1 8888  (type a line: it comes back, and nc
 * sees the close), or with the docs' EchoClientProtocol, or ./protocol_client.
 *
 *   ./protocol_server [ADDR]    default 127.0.0.1:8888; stop with Ctrl-C
 */
#include <stdio.h>
#include <yodel.h>

static void connection_made(yd_conn *conn)
{
    char peer[YD_ADDR_TEXT_BYTES] = "?";
    yd_conn_peer_name(conn, peer, sizeof(peer)); /* on failure the name stays "?" */
    fprintf(stderr, "Connection from %s\n", peer);
}

static void data_received(yd_conn *conn, const char *data, size_t len)
{
    fprintf(stderr, "Data received: '%.*s'\nSend: '%.*s'\n", (int)len, data, (int)len, data);
    int err = yd_conn_write(conn, data, len);
    if (err < 0) {
        fprintf(stderr, "write: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
        return;
    }
    fprintf(stderr, "Close the client socket\n");
    yd_conn_close(conn); /* as transport.close(): once the echo is sent */
}

/* No eof_received: a client that half-closes before sending anything is closed (asyncio's
 * default, as the docs' protocol has none). */
static void connection_lost(yd_conn *conn, int status)
{
    (void)conn;
    fprintf(stderr, "connection_lost: %s\n", status < 0 ? yd_strerror(status) : "closed");
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {
        .on_connect = connection_made, .on_data = data_received, .on_close = connection_lost};
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
        fprintf(stderr, "protocol_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
