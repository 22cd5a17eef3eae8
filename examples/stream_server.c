/*
 * stream_server - PyMOTW's asyncio echo server ("asyncio - Asynchronous I/O", echo server with
 * coroutines): read whatever bytes arrive (reader.read(128)), echo them as they arrive, and
 * close when the client half-closes (EOF). It teaches a byte stream without framing, write
 * back-pressure (a client that does not read stops being read), and on_eof.
 *
 * Test with: ./stream_server &  then  nc -N 127.0.0.1 8888 < /etc/hosts, or ./parts_client
 *
 *   ./stream_server [ADDR]      default 127.0.0.1:8888; stop with Ctrl-C
 */
#include <stdio.h>
#include <yodel.h>

static void on_connect(yd_conn *conn)
{
    char peer[YD_ADDR_TEXT_BYTES] = "?";
    yd_conn_peer_name(conn, peer, sizeof(peer)); /* on failure the name stays "?" */
    fprintf(stderr, "connection accepted from %s\n", peer);
    int err = yd_conn_set_read_mode(conn, YD_READ_CHUNK, 0);
    if (err < 0) {
        fprintf(stderr, "read mode: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    fprintf(stderr, "received %zu bytes\n", len);
    /* A slow reader makes the queue grow: yodel then stops reading from this client. */
    int err = yd_conn_write(conn, data, len);
    if (err < 0) {
        fprintf(stderr, "write: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_eof(yd_conn *conn)
{
    fprintf(stderr, "EOF: closing once the echo is sent\n");
    yd_conn_close(conn);
}

static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    fprintf(stderr, "closed%s%s\n", status < 0 ? ": " : "", status < 0 ? yd_strerror(status) : "");
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {
        .on_connect = on_connect, .on_data = on_data, .on_eof = on_eof, .on_close = on_close};
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
        fprintf(stderr, "stream_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
