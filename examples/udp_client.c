/*
 * udp_client - the Python docs' UDP EchoClientProtocol ("Transports and Protocols", UDP Echo
 * Client): send one datagram, print the one that comes back, close. It teaches a connected
 * udp:// connection (each write one datagram, each datagram one on_data) and, since datagrams
 * get lost where the docs' client would wait forever, a timer that gives up after two seconds.
 * Exits 0 only if the reply is the message.
 *
 * Test with: ./udp_server &  then  ./udp_client  (or against the docs' UDP server)
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
    int err;
    printf("Send: %s\n", message);
    if ((err = yd_conn_write(conn, message, strlen(message))) < 0 || /* one datagram */
        (err = yd_timer_start(timeout, TIMEOUT_MS, 0)) < 0) {
        fprintf(stderr, "udp_client: %s\n", yd_strerror(err));
        yd_conn_close(conn);
    }
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    printf("Received: %.*s\nClose the socket\n", (int)len, data);
    echoed = len == strlen(message) && memcmp(data, message, len) == 0;
    yd_conn_close(conn);
}

/* Also the end of an unreachable server: status -ECONNREFUSED (the docs' error_received). */
static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    if (status < 0)
        fprintf(stderr, "udp_client: %s\n", yd_strerror(status));
    printf("Connection closed\n");
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

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_conn_connect(loop, addr, &client, NULL, &conn)) < 0 ||
        (err = yd_timer_new(loop, on_timeout, conn, &timeout)) < 0) { /* before on_connect */
        fprintf(stderr, "udp_client: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    err = yd_loop_run(loop);
    if (yd_loop_free(loop) < 0)
        err = -1;
    return err < 0 || !echoed;
}
