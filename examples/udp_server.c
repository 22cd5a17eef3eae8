/*
 * udp_server - the Python docs' UDP EchoServerProtocol ("Transports and Protocols", UDP Echo
 * Server). It teaches a datagram server: one on_datagram callback for every peer, and each
 * datagram sent back to its sender as one datagram with yd_server_send_to.
 *
 * Test with: ./udp_server &  then  nc -u 127.0.0.1 9999  (type a line), or ./udp_client
 *
 *   ./udp_server [ADDR]         default udp://127.0.0.1:9999; stop with Ctrl-C
 */
#include <stdio.h>
#include <yodel.h>

static void on_datagram(yd_server *server, const char *data, size_t len, const void *peer,
                        unsigned peer_len)
{
    char name[YD_ADDR_TEXT_BYTES] = "?";
    yd_sockaddr_format(peer, name, sizeof(name)); /* on failure the name stays "?" */
    fprintf(stderr, "Received '%.*s' from %s\nSend '%.*s' to %s\n", (int)len, data, name, (int)len,
            data, name);
    int err = yd_server_send_to(server, data, len, peer, peer_len);
    if (err < 0) /* a full buffer or an unreachable peer loses this datagram only */
        fprintf(stderr, "send to %s: %s\n", name, yd_strerror(err));
}

int main(int argc, char **argv)
{
    static const yd_protocol echo = {.on_datagram = on_datagram};
    const yd_server_options options = {.protocol = &echo};
    const char *addr = argc > 1 ? argv[1] : "udp://127.0.0.1:9999";
    yd_loop *loop;
    yd_server *server;
    char name[YD_ADDR_TEXT_BYTES];
    int err;

    if ((err = yd_loop_new(&loop)) < 0 ||
        (err = yd_server_listen(loop, addr, &options, &server)) < 0 ||
        (err = yd_loop_drain_on_signals(loop, 1000)) < 0 ||
        (err = yd_server_address(server, 0, name, sizeof(name))) < 0) {
        fprintf(stderr, "udp_server: %s: %s\n", addr, yd_strerror(err));
        return 1;
    }
    printf("listening on %s\n", name);
    fflush(stdout);
    err = yd_loop_run(loop); /* until Ctrl-C closes the server */
    return err < 0 || yd_loop_free(loop) < 0;
}
