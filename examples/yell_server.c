/*
 * yell_server - the tutorials' "yell" server: every newline-terminated line comes back in upper
 * case. Try it with: nc 127.0.0.1 1234
 *
 *   ./yell_server [ADDR]        default 127.0.0.1:1234; stop with Ctrl-C
 */
#include <stdio.h>
#include <yodel.h>

#define MAX_LINE 4096

static void on_connect(yd_conn *conn)
{
    yd_conn_set_read_mode(conn, YD_READ_LINE, MAX_LINE);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    char loud[MAX_LINE]; /* data is read-only and len <= MAX_LINE */
    yd_ascii_upper(loud, data, len);
    yd_conn_write(conn, loud, len);
}

/* No on_eof: when the client half-closes, the connection closes after the last reply. */
static void on_close(yd_conn *conn, int status)
{
    char peer[64] = "?";
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
    char name[128];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0) {
        fprintf(stderr, "yell_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    yd_server_address(server, 0, name, sizeof(name));
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C has drained every connection */
    return err < 0 || yd_loop_free(loop) < 0;
}
