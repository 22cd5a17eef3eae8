/*
 * protocol_client - the tutorials' EchoClientProtocol: connection_made sends the message and
 * half-closes, data_received prints the echo, connection_lost stops the loop (the tutorial's
 * on_con_lost future). Exits 0 only if the whole message came back.
 *
 *   ./protocol_client [ADDR]    default 127.0.0.1:8888
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

static const char message[] = "Hello World!";
static char reply[256];
static size_t reply_len;

static void connection_made(yd_conn *conn)
{
    yd_conn_write(conn, message, strlen(message));
    printf("data sent: '%s'\n", message);
    yd_conn_shutdown(conn);
}

static void data_received(yd_conn *conn, const char *data, size_t len)
{
    printf("data received: '%.*s'\n", (int)len, data);
    if (len > sizeof(reply) - reply_len) {
        yd_conn_abort(conn);
        return;
    }
    memcpy(reply + reply_len, data, len);
    reply_len += len;
}

static void eof_received(yd_conn *conn)
{
    printf("eof received\n");
    yd_conn_close(conn);
}

static void connection_lost(yd_conn *conn, int status)
{
    printf("the server closed the connection%s%s\n", status < 0 ? ": " : "",
           status < 0 ? yd_strerror(status) : "");
    yd_loop_stop(yd_conn_loop(conn));
}

int main(int argc, char **argv)
{
    static const yd_protocol client = {.on_connect = connection_made,
                                       .on_data = data_received,
                                       .on_eof = eof_received,
                                       .on_close = connection_lost};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    yd_loop *loop;
    yd_conn *conn;
    int err;

    if ((err = yd_loop_new(&loop)) < 0)
        return 1;
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) == 0)
        err = yd_loop_run(loop); /* until connection_lost stops it */
    else
        fprintf(stderr, "protocol_client: %s: %s\n", addr, yd_strerror(err));
    yd_loop_free(loop);
    return err < 0 || reply_len != strlen(message) || memcmp(reply, message, reply_len) != 0;
}
