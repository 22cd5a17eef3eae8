/*
 * parts_client - PyMOTW's asyncio echo client ("asyncio - Asynchronous I/O", echo client with
 * coroutines): write the message in three parts, half-close (write_eof), then read until the
 * server's EOF. It teaches yd_conn_shutdown: the server learns that nothing more comes, echoes
 * the rest and closes. Exits 0 only if the whole message came back.
 *
 * Test with: ./stream_server &  then  ./parts_client  (or against PyMOTW's server)
 *
 *   ./parts_client [ADDR]       default 127.0.0.1:8888
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

static const char *const parts[] = {"This is the message. ", "It will be sent ", "in parts."};
static const char whole[] = "This is the message. It will be sent in parts.";
static char reply[sizeof(whole)];
static size_t reply_len;
static int close_status = -1; /* on_close's status; -1 until then */

static void on_connect(yd_conn *conn)
{
    int err = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && err == 0; i++) {
        printf("sending '%s'\n", parts[i]);
        err = yd_conn_write(conn, parts[i], strlen(parts[i]));
    }
    if (err < 0 || (err = yd_conn_shutdown(conn)) < 0) { /* EOF after the last part */
        fprintf(stderr, "parts_client: %s\n", yd_strerror(err));
        yd_conn_abort(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    printf("received '%.*s'\n", (int)len, data);
    if (len > sizeof(reply) - reply_len) { /* more than was sent: not an echo */
        yd_conn_abort(conn);
        return;
    }
    memcpy(reply + reply_len, data, len);
    reply_len += len;
}

/* With no on_eof, the connection closes when the server's EOF arrives. */
static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    if (status < 0)
        fprintf(stderr, "parts_client: %s\n", yd_strerror(status));
    close_status = status;
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
        fprintf(stderr, "parts_client: %s\n", yd_strerror(err));
        return 1;
    }
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) == 0)
        err = yd_loop_run(loop); /* returns once the connection is closed */
    else
        fprintf(stderr, "parts_client: %s: %s\n", addr, yd_strerror(err));
    if (yd_loop_free(loop) < 0)
        err = -1;
    printf("the whole reply: '%.*s'\n", (int)reply_len, reply);
    return err < 0 || close_status != 0 || reply_len != strlen(whole) ||
           memcmp(reply, whole, reply_len) != 0;
}
