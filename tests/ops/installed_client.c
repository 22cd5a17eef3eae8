/* Built by test_install.py against an installed libyodel: header, pkg-config and library. */
#include <stdio.h>
#include <string.h>
#include <yodel.h>

static yd_server *server;
static char got[64];
static size_t got_len;

static void on_connect(yd_conn *conn)
{
    yd_conn_write(conn, "hello\n", 6);
    yd_conn_shutdown(conn);
}

static void on_data(yd_conn *conn, const char *data, size_t len)
{
    (void)conn;
    if (got_len + len <= sizeof got) {
        memcpy(got + got_len, data, len);
        got_len += len;
    }
}

static void on_close(yd_conn *conn, int status)
{
    (void)conn;
    if (status < 0)
        fprintf(stderr, "client: %s\n", yd_strerror(status));
    yd_server_close(server); /* nothing left: yd_loop_run returns */
}

int main(void)
{
    static const yd_protocol client = {
        .on_connect = on_connect, .on_data = on_data, .on_close = on_close};
    yd_echo_options echo = {.mode = YD_ECHO_RAW};
    yd_loop *loop;
    yd_conn *conn;
    char addr[64];
    if (yd_loop_new(&loop) < 0 || yd_echo_listen(loop, "127.0.0.1:0", &echo, NULL, &server) < 0)
        return 1;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", yd_server_port(server));
    if (yd_conn_connect(loop, addr, &client, NULL, &conn) < 0)
        return 1;
    yd_loop_run(loop);
    printf("libyodel %s echo: %.*s", yd_version(), (int)got_len, got);
    return yd_loop_free(loop) < 0 ? 1 : 0;
}
