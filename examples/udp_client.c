/*
 * udp_client - the tutorials' EchoClientProtocol for datagrams: one datagram out, one back.
 * Datagrams get lost, so a timer gives up after two seconds. Exits 0 only on a matching echo.
 *
 *   ./udp_client [ADDR]         default udp://127.0.0.1:9999
 */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

#define TIMEOUT_MS 2000

static const char message[] = "Hello World!";
static yd_timer *timeout;
static int echoed;

static void on_timeout(yd_timer *timer, void *conn)
{
    (void)timer;
    fprintf(stderr, "udp_client: no reply within %d ms\n", TIMEOUT_MS);
    yd_conn_close(conn);
}

static void on_connect(yd_conn *conn)
{
    printf("send: '%s'\n", message);
    yd_conn_write(conn, message, strlen(message)); /* one write, one datagram */
    yd_timer_start(timeout, TIMEOUT_MS, 0);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    printf("received: '%.*s'\n", (int)len, data);
    echoed = len == strlen(message) && memcmp(data, message, len) == 0;
    yd_conn_close(conn);
}

static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    if (status < 0)
        fprintf(stderr, "udp_client: %s\n", yd_strerror(status));
    if (timeout != NULL)
        yd_timer_free(timeout); /* nothing left to wait for: the loop ends */
}

int main(int argc, char **argv)
{
    static const yd_protocol client = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    const char *addr = argc > 1 ? argv[1] : "udp://127.0.0.1:9999";
    yd_loop *loop;
    yd_conn *conn;
    int err;

    if ((err = yd_loop_new(&loop)) < 0)
        return 1;
    if ((err = yd_conn_connect(loop, addr, &client, NULL, &conn)) < 0 ||
        (err = yd_timer_new(loop, on_timeout, conn, &timeout)) < 0)
        fprintf(stderr, "udp_client: %s: %s\n", addr, yd_strerror(err));
    else
        err = yd_loop_run(loop);
    yd_loop_free(loop);
    return err < 0 || !echoed;
}
