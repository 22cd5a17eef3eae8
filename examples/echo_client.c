/*
 * echo_client - the tutorials' tcp_echo_client: connect, send "Hello There\n", print the reply
 * and disconnect. Exits 0 only if the reply is the message.
 *
 *   ./echo_client [ADDR]        default 127.0.0.1:8888
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

static const char message[] = "Hello There\n";
static int echoed; /* the reply matched */

static void on_connect(yd_conn *conn)
{
    printf("send: %s", message);
    yd_conn_set_read_mode(conn, YD_READ_LINE, 1024);
    yd_conn_write(conn, message, strlen(message));
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    printf("received: %.*s", (int)len, data); /* the line keeps its newline */
    echoed = len == strlen(message) && memcmp(data, message, len) == 0;
    yd_conn_close(conn);
}

static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    if (status < 0)
        fprintf(stderr, "echo_client: %s\n", yd_strerror(status));
    else if (!echoed)
        fprintf(stderr, "echo_client: the reply was not the message\n");
}

int main(int argc, char **argv)
{
    static const yd_protocol client = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    yd_loop *loop;
    yd_conn *conn;
    int err;

    if ((err = yd_loop_new(&loop)) < 0)
        return 1;
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) == 0)
        err = yd_loop_run(loop); /* returns once the connection is closed */
    else
        fprintf(stderr, "echo_client: %s: %s\n", addr, yd_strerror(err));
    yd_loop_free(loop);
    return err < 0 || !echoed;
}
