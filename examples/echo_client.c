/*
 * echo_client - the Python docs' tcp_echo_client ("Streams", TCP echo client using streams),
 * with the tutorials' message "Hello There\n": connect, send the message, print the reply,
 * close. It teaches a client as callbacks: the loop returns once its last connection is closed.
 * It reads the reply as a line, so however TCP cuts the bytes the whole echo is compared; it
 * exits 0 only if the reply is the message.
 *
 * Test with: ./echo_server &  then  ./echo_client  (or against the docs' handle_echo)
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
    int err;
    printf("Send: 'Hello There'\n");
    if ((err = yd_conn_set_read_mode(conn, YD_READ_LINE, 1024)) < 0 ||
        (err = yd_conn_write(conn, message, strlen(message))) < 0) {
        fprintf(stderr, "echo_client: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    int shown = (int)(len > 0 && data[len - 1] == '\n' ? len - 1 : len); /* without the '\n' */
    printf("Received: '%.*s'\nClose the connection\n", shown, data);
    echoed = len == strlen(message) && memcmp(data, message, len) == 0;
    yd_conn_close(conn);
}

/* Also the end of a failed connect (status -ECONNREFUSED, ...). */
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

    if ((err = yd_loop_new(&loop)) < 0) {
        fprintf(stderr, "echo_client: %s\n", yd_strerror(err));
        return 1;
    }
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) == 0)
        err = yd_loop_run(loop); /* returns once the connection is closed */
    else
        fprintf(stderr, "echo_client: %s: %s\n", addr, yd_strerror(err));
    if (yd_loop_free(loop) < 0)
        err = -1;
    return err < 0 || !echoed;
}
