/*
 * parts_client - the tutorials' client that writes its message in three parts, half-closes
 * (write_eof) and reads until EOF. Exits 0 only if the whole message came back.
 *
 *   ./parts_client [ADDR]       default 127.0.0.1:8888
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

static const char *const parts[] = {"This is the message. ", "It will be sent ", "in parts."};
static char reply[256];
static size_t reply_len;

static void on_connect(yd_conn *conn)
{
    yd_conn_set_read_mode(conn, YD_READ_CHUNK, 0);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        printf("sending: '%s'\n", parts[i]);
        yd_conn_write(conn, parts[i], strlen(parts[i]));
    }
    yd_conn_shutdown(conn); /* EOF after the last part: the server echoes, then closes */
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    if (len > sizeof(reply) - reply_len) {
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
}

int main(int argc, char **argv)
{
    static const yd_protocol client = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
    char message[256] = "";
    yd_loop *loop;
    yd_conn *conn;
    int err;

    if ((err = yd_loop_new(&loop)) < 0)
        return 1;
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) == 0)
        err = yd_loop_run(loop);
    else
        fprintf(stderr, "parts_client: %s: %s\n", addr, yd_strerror(err));
    yd_loop_free(loop);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        strcat(message, parts[i]);
    printf("received: '%.*s'\n", (int)reply_len, reply);
    return err < 0 || reply_len != strlen(message) || memcmp(reply, message, reply_len) != 0;
}
