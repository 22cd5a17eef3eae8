/*
 * protocol_client - the Python docs' EchoClientProtocol ("Transports and Protocols", TCP Echo
 * Client). It teaches a client that lets the server end the exchange: connection_made sends the
 * message (and never half-closes), data_received prints what comes back, and connection_lost,
 * the server's close, stops the loop: the docs' on_con_lost future. Exits 0 only if what came
 * back before the close is the whole message.
 *
 * Test with: ./protocol_server &  then  ./protocol_client  (or against the docs' server)
 *
 *   ./protocol_client [ADDR]    default 127.0.0.1:8888
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

static const char message[] = "Hello World!";
static char reply[sizeof(message)];
static size_t reply_len;
static int lost_status = -1; /* connection_lost's status; -1 until then */

static void connection_made(yd_conn *conn)
{
    int err = yd_conn_write(conn, message, strlen(message));
    if (err < 0) {
        fprintf(stderr, "protocol_client: write: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
        return;
    }
    printf("Data sent: '%s'\n", message);
}

static void data_received(yd_conn *conn, const char *data, size_t len)
{
    printf("Data received: '%.*s'\n", (int)len, data);
    if (len > sizeof(reply) - reply_len) { /* more than was sent: not an echo */
        yd_conn_abort(conn);
        return;
    }
    memcpy(reply + reply_len, data, len);
    reply_len += len;
}

/* No eof_received: the server's close ends the connection (asyncio's default). */
static void connection_lost(yd_conn *conn, int status)
{
    if (status < 0)
        fprintf(stderr, "protocol_client: %s\n", yd_strerror(status));
    else
        printf("The server closed the connection\n");
    lost_status = status;
    yd_loop_stop(yd_conn_loop(conn)); /* on_con_lost.set_result(True) */
}

int main(int argc, char **argv)
{
    static const yd_protocol client = {
        .on_connect = connection_made, .on_data = data_received, .on_close = connection_lost};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    yd_loop *loop;
    yd_conn *conn;
    int err;

    if ((err = yd_loop_new(&loop)) < 0) {
        fprintf(stderr, "protocol_client: %s\n", yd_strerror(err));
        return 1;
    }
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) == 0)
        err = yd_loop_run(loop); /* until connection_lost stops it */
    else
        fprintf(stderr, "protocol_client: %s: %s\n", addr, yd_strerror(err));
    if (yd_loop_free(loop) < 0)
        err = -1;
    return err < 0 || lost_status != 0 || reply_len != strlen(message) ||
           memcmp(reply, message, reply_len) != 0;
}
