/*
 * udp_server - the tutorials' EchoServerProtocol for datagrams: each datagram goes back to its
 * sender as one datagram. Try it with: nc -u 127.0.0.1 9999
 *
 *   ./udp_server [ADDR]         default udp://127.0.0.1:9999; stop with Ctrl-C
 */
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <yodel.h>

static void on_datagram(yd_server *server, const char *data, size_t len, const void *peer,
                        unsigned peer_len)
{
    char host[64] = "?", port[8] = "?";
    getnameinfo(peer, peer_len, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    fprintf(stderr, "received '%.*s' from %s:%s\n", (int)len, data, host, port);
    int err = yd_server_send_to(server, data, len, peer, peer_len);
    if (err < 0)
        fprintf(stderr, "send to %s:%s: %s\n", host, port, yd_strerror(err));
}

static void on_signal(yd_signal *signal, int signum, void *loop)
{
    (void)signal, (void)signum;
    yd_loop_stop(loop);
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {.on_datagram = on_datagram};
    const yd_server_options options = {.protocol = &echo};
    const char *addr = argc > 1 ? argv[1] : "udp://127.0.0.1:9999";
    yd_loop *loop;
    yd_server *server;
    yd_signal *sigint, *sigterm;
    char name[128];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_signal_new(loop, SIGINT, on_signal, loop, &sigint)) < 0 ||
        (err = yd_signal_new(loop, SIGTERM, on_signal, loop, &sigterm)) < 0) {
        fprintf(stderr, "udp_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    yd_server_address(server, 0, name, sizeof(name));
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop);
    yd_signal_free(sigint);
    yd_signal_free(sigterm);
    yd_server_close(server);
    return err < 0 || yd_loop_free(loop) < 0;
}
