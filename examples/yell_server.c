/*
 * yell_server - the tutorials' "yell" server: every newline-terminated line comes back in upper
 * case, line after line, until the client closes. It teaches YD_READ_LINE (one on_data per
 * line, with a limit) and yd_ascii_upper.
 *
 * Test with: ./yell_server &  then  nc 127.0.0.1 1234  (type lines)
 *
 *   ./yell_server [ADDR]        default 127.0.0.1:1234; stop with Ctrl-C
 */
#include <stdio.h>
#include <yodel.h>

#define MAX_LINE 4096

static void on_connect(yd_conn *conn)
{
    int err = yd_conn_set_read_mode(conn, YD_READ_LINE, MAX_LINE);
    if (err < 0) {
        fprintf(stderr, "read mode: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    char loud[MAX_LINE + 1]; /* data is read-only; a line is at most MAX_LINE bytes and '\n' */
    yd_ascii_upper(loud, data, len);
    int err = yd_conn_write(conn, loud, len);
    if (err < 0) {
        fprintf(stderr, "write: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

/* No on_eof: when the client half-closes, the connection closes after the last reply. */
static void on_close(yd_conn *conn, int status)
{
    char peer[YD_ADDR_TEXT_BYTES] = "?";
    yd_conn_peer_name(conn, peer, sizeof(peer));
    if (status < 0)
        fprintf(stderr, "%s: %s\n", peer, yd_strerror(status));
}

int main(int argc, char **argv)
{
    static const yd_protocol yell = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const yd_server_options options = {.protocol = &yell};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:1234";
    yd_loop *loop;
    yd_server *server;
    char name[YD_ADDR_TEXT_BYTES];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0 ||
        (err = yd_server_address(server, 0, name, sizeof(name))) < 0) {
        fprintf(stderr, "yell_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
