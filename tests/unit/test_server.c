/*
 * Servers through the public API, on real loopback sockets: the max-conns refusal, the several
 * sockets of one name on port 0, YD_REUSEPORT_OWN and _JOIN, and a datagram server's replies.
 * Clients are yd_conn connections on the same loop (or plain sockets where the test must see
 * an address itself). Each run lasts until the awaited counts are reached (watchdog.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "watchdog.h"
#include "yodel.h"

#define GREETING     "hi\n"
#define MAX_CLIENTS  8
#define MAX_SERVERS  2
#define GREETING_LEN (sizeof GREETING - 1)

struct scene;

struct client {
    struct scene *scene;
    yd_conn *conn;
    size_t got; /* greeting bytes received */
    int closed;
};

struct scene {
    yd_loop *loop;
    yd_stats *stats;
    yd_server *servers[MAX_SERVERS];
    struct client clients[MAX_CLIENTS];
    int nclients;
    int served;        /* server side: on_connect */
    int server_closed; /* server side: on_close */
    int v4_peer;       /* server side: a peer from 127.0.0.1 was served */
    int v6_peer;       /* server side: a peer from ::1 was served */
    int greeted;       /* clients that got the whole greeting */
    int refused;       /* clients closed without a byte of it */
    int want_greeted;  /* the run stops at these counts */
    int want_refused;
};

static void check_done(struct scene *s)
{
    if (s->greeted == s->want_greeted && s->refused == s->want_refused)
        yd_loop_stop(s->loop);
}

/* The server greets each connection it serves, and keeps it open. */
static void server_on_connect(yd_conn *conn)
{
    struct scene *s = yd_conn_data(conn);
    s->served++;
    char peer[YD_ADDR_TEXT_BYTES];
    assert_true(yd_conn_peer_name(conn, peer, sizeof peer) > 0);
    if (strncmp(peer, "127.0.0.1:", 10) == 0)
        s->v4_peer = 1;
    else if (strncmp(peer, "[::1]:", 6) == 0)
        s->v6_peer = 1;
    assert_int_equal(yd_conn_write(conn, GREETING, GREETING_LEN), 0);
}

static void server_on_close(yd_conn *conn, int status)
{
    (void)status;
    struct scene *s = yd_conn_data(conn);
    s->server_closed++;
}

static const yd_protocol greeter = {.on_connect = server_on_connect, .on_close = server_on_close};

static void client_on_data(yd_conn *conn, const char *data, size_t len)
{
    struct client *c = yd_conn_data(conn);
    assert_true(c->got + len <= GREETING_LEN);
    assert_memory_equal(data, &GREETING[c->got], len);
    c->got += len;
    if (c->got == GREETING_LEN) {
        c->scene->greeted++;
        check_done(c->scene);
    }
}

static void client_on_close(yd_conn *conn, int status)
{
    (void)status;
    struct client *c = yd_conn_data(conn);
    c->closed = 1;
    c->conn = NULL;
    if (c->got == 0) {
        c->scene->refused++;
        check_done(c->scene);
    }
}

static const yd_protocol client = {.on_data = client_on_data, .on_close = client_on_close};

static void scene_open(struct scene *s)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(yd_loop_new(&s->loop), 0);
    assert_int_equal(yd_stats_new(&s->stats), 0);
}

static void scene_close(struct scene *s)
{
    assert_int_equal(yd_loop_free(s->loop), 0); /* closes servers and connections left */
    yd_stats_free(s->stats);
}

static yd_server_options greeter_options(struct scene *s)
{
    yd_server_options o = {.protocol = &greeter, .data = s, .stats = s->stats};
    return o;
}

static void connect_client(struct scene *s, const char *addr)
{
    assert_true(s->nclients < MAX_CLIENTS);
    struct client *c = &s->clients[s->nclients++];
    c->scene = s;
    assert_int_equal(yd_conn_connect(s->loop, addr, &client, c, &c->conn), 0);
}

/* Runs until want_greeted clients got the greeting and want_refused were closed without it. */
static void run_until_counts(struct scene *s, int greeted, int refused)
{
    s->want_greeted = greeted;
    s->want_refused = refused;
    RUN_LOOP(s->loop);
    assert_int_equal(s->greeted, greeted);
    assert_int_equal(s->refused, refused);
}

static yd_stats_snapshot snapshot(const struct scene *s)
{
    yd_stats_snapshot snap;
    memset(&snap, 0, sizeof snap);
    yd_stats_add_to(s->stats, &snap);
    return snap;
}

static void text_of(char *buf, size_t len, const char *host, int port)
{
    assert_true(snprintf(buf, len, "%s:%d", host, port) < (int)len);
}

/* ---- max-conns ------------------------------------------------------------------------------ */

/* Three clients of a server with max_conns 2; its two served connections stay open. */
static void run_max_conns_scene(struct scene *s)
{
    scene_open(s);
    yd_server_options o = greeter_options(s);
    o.max_conns = 2;
    assert_int_equal(yd_server_listen(s->loop, "127.0.0.1:0", &o, &s->servers[0]), 0);
    char addr[64];
    text_of(addr, sizeof addr, "127.0.0.1", yd_server_port(s->servers[0]));
    for (int i = 0; i < 3; i++)
        connect_client(s, addr);
    run_until_counts(s, 2, 1);
}

static void test_connection_past_max_conns_is_closed_at_once_and_counted_as_refused(void **state)
{
    (void)state;
    struct scene s;
    run_max_conns_scene(&s);
    yd_stats_snapshot snap = snapshot(&s);
    assert_int_equal(snap.conns_accepted, 3);
    assert_int_equal(snap.conns_refused, 1);
    assert_int_equal(snap.conns_active, 2);
    scene_close(&s);
}

static void test_connections_up_to_max_conns_are_served(void **state)
{
    (void)state;
    struct scene s;
    run_max_conns_scene(&s);
    /* The protocol heard of the two served connections only; they are still open. */
    assert_int_equal(s.served, 2);
    assert_int_equal(s.server_closed, 0);
    int open = 0;
    for (int i = 0; i < s.nclients; i++)
        open += !s.clients[i].closed && s.clients[i].got == GREETING_LEN;
    assert_int_equal(open, 2);
    scene_close(&s);
    assert_int_equal(s.server_closed, 2);
}

/* ---- Several sockets on port 0 ---------------------------------------------------------- */

static void test_localhost_on_port_0_binds_both_loopbacks_on_one_port(void **state)
{
    (void)state;
    struct scene s;
    scene_open(&s);
    yd_server_options o = greeter_options(&s);
    assert_int_equal(yd_server_listen(s.loop, "localhost:0", &o, &s.servers[0]), 0);
    assert_int_equal(yd_server_socket_count(s.servers[0]), 2);
    int port = yd_server_port(s.servers[0]);
    assert_true(port > 0);
    int v4 = 0, v6 = 0;
    for (unsigned i = 0; i < 2; i++) {
        char text[YD_ADDR_TEXT_BYTES];
        assert_true(yd_server_address(s.servers[0], i, text, sizeof text) > 0);
        yd_addr a;
        assert_int_equal(yd_addr_parse(text, &a), 0);
        assert_int_equal(a.transport, YD_TCP);
        assert_int_equal(a.port, port);
        v4 += strcmp(a.host, "127.0.0.1") == 0;
        v6 += strcmp(a.host, "::1") == 0;
    }
    assert_int_equal(v4, 1);
    assert_int_equal(v6, 1);
    char text[YD_ADDR_TEXT_BYTES];
    assert_int_equal(yd_server_address(s.servers[0], 2, text, sizeof text), -EINVAL);
    scene_close(&s);
}

static void test_localhost_on_port_0_serves_a_connection_on_each_loopback(void **state)
{
    (void)state;
    struct scene s;
    scene_open(&s);
    yd_server_options o = greeter_options(&s);
    assert_int_equal(yd_server_listen(s.loop, "localhost:0", &o, &s.servers[0]), 0);
    int port = yd_server_port(s.servers[0]);
    char addr[64];
    text_of(addr, sizeof addr, "127.0.0.1", port);
    connect_client(&s, addr);
    text_of(addr, sizeof addr, "[::1]", port);
    connect_client(&s, addr);
    run_until_counts(&s, 2, 0);
    assert_int_equal(s.served, 2);
    assert_true(s.v4_peer);
    assert_true(s.v6_peer);
    scene_close(&s);
}

/* ---- SO_REUSEPORT ------------------------------------------------------------------------- */

/* A listening socket of "another process" on 127.0.0.1, an ephemeral port; returns its fd. */
static int listen_elsewhere(int reuseport, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    if (reuseport)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof in;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    *port = ntohs(in.sin_port);
    return fd;
}

static void test_reuseport_own_refuses_a_port_another_socket_holds_even_if_it_shares(void **state)
{
    (void)state;
    struct scene s;
    scene_open(&s);
    int port;
    int other = listen_elsewhere(1, &port);
    char addr[64];
    text_of(addr, sizeof addr, "127.0.0.1", port);
    yd_server_options o = greeter_options(&s);
    o.reuseport = YD_REUSEPORT_OWN;
    yd_server *srv = NULL;
    assert_int_equal(yd_server_listen(s.loop, addr, &o, &srv), -EADDRINUSE);
    assert_null(srv);
    close(other);
    scene_close(&s);
}

static void test_reuseport_own_refuses_a_port_an_own_server_holds(void **state)
{
    (void)state;
    struct scene s;
    scene_open(&s);
    yd_server_options o = greeter_options(&s);
    o.reuseport = YD_REUSEPORT_OWN;
    assert_int_equal(yd_server_listen(s.loop, "127.0.0.1:0", &o, &s.servers[0]), 0);
    char addr[64];
    text_of(addr, sizeof addr, "127.0.0.1", yd_server_port(s.servers[0]));
    yd_server *srv = NULL;
    assert_int_equal(yd_server_listen(s.loop, addr, &o, &srv), -EADDRINUSE);
    scene_close(&s);
}

static void test_reuseport_join_shares_the_port_of_an_own_server(void **state)
{
    (void)state;
    struct scene s;
    scene_open(&s);
    yd_server_options o = greeter_options(&s);
    o.reuseport = YD_REUSEPORT_OWN;
    assert_int_equal(yd_server_listen(s.loop, "127.0.0.1:0", &o, &s.servers[0]), 0);
    int port = yd_server_port(s.servers[0]);
    char addr[64];
    text_of(addr, sizeof addr, "127.0.0.1", port);
    o.reuseport = YD_REUSEPORT_JOIN;
    assert_int_equal(yd_server_listen(s.loop, addr, &o, &s.servers[1]), 0);
    assert_int_equal(yd_server_port(s.servers[1]), port);
    /* Connections to the port are served (by one socket or the other). */
    for (int i = 0; i < 4; i++)
        connect_client(&s, addr);
    run_until_counts(&s, 4, 0);
    assert_int_equal(s.served, 4);
    scene_close(&s);
}

static void test_reuseport_join_cannot_take_a_port_held_without_sharing(void **state)
{
    (void)state;
    struct scene s;
    scene_open(&s);
    int port;
    int other = listen_elsewhere(0, &port);
    char addr[64];
    text_of(addr, sizeof addr, "127.0.0.1", port);
    yd_server_options o = greeter_options(&s);
    o.reuseport = YD_REUSEPORT_JOIN;
    yd_server *srv = NULL;
    assert_int_equal(yd_server_listen(s.loop, addr, &o, &srv), -EADDRINUSE);
    close(other);
    scene_close(&s);
}

/* ---- Datagrams ---------------------------------------------------------------------------- */

struct echo_scene {
    yd_loop *loop;
    int datagrams;
};

static void echo_datagram(yd_server *server, const char *data, size_t len, const void *peer,
                          unsigned peer_len)
{
    struct echo_scene *e = yd_server_data(server);
    assert_int_equal(yd_server_send_to(server, data, len, peer, peer_len), 0);
    e->datagrams++;
    yd_loop_stop(e->loop); /* the reply is sent: the client reads it */
}

static const yd_protocol datagram_echo = {.on_datagram = echo_datagram};

static void
test_datagram_server_on_a_wildcard_address_replies_from_the_address_it_was_sent_to(void **state)
{
    (void)state;
    struct echo_scene e = {0};
    assert_int_equal(yd_loop_new(&e.loop), 0);
    yd_server_options o = {.protocol = &datagram_echo, .data = &e};
    yd_server *srv;
    /* Wildcard: the kernel would pick the reply's source by the route (127.0.0.1). */
    assert_int_equal(yd_server_listen(e.loop, "udp://0.0.0.0:0", &o, &srv), 0);
    int port = yd_server_port(srv);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in self = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&self, sizeof self), 0);
    struct timeval bound = {.tv_sec = WATCHDOG_MS / 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound), 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, "127.0.0.2", &to.sin_addr), 1);
    assert_int_equal(sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof to), 4);

    RUN_LOOP(e.loop);
    assert_int_equal(e.datagrams, 1);
    char buf[16];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    assert_int_equal(recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl), 4);
    assert_memory_equal(buf, "ping", 4);
    char host[INET_ADDRSTRLEN];
    assert_non_null(inet_ntop(AF_INET, &from.sin_addr, host, sizeof host));
    assert_string_equal(host, "127.0.0.2");
    assert_int_equal(ntohs(from.sin_port), port);
    close(fd);
    assert_int_equal(yd_loop_free(e.loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_past_max_conns_is_closed_at_once_and_counted_as_refused),
        cmocka_unit_test(test_connections_up_to_max_conns_are_served),
        cmocka_unit_test(test_localhost_on_port_0_binds_both_loopbacks_on_one_port),
        cmocka_unit_test(test_localhost_on_port_0_serves_a_connection_on_each_loopback),
        cmocka_unit_test(test_reuseport_own_refuses_a_port_another_socket_holds_even_if_it_shares),
        cmocka_unit_test(test_reuseport_own_refuses_a_port_an_own_server_holds),
        cmocka_unit_test(test_reuseport_join_shares_the_port_of_an_own_server),
        cmocka_unit_test(test_reuseport_join_cannot_take_a_port_held_without_sharing),
        cmocka_unit_test(
            test_datagram_server_on_a_wildcard_address_replies_from_the_address_it_was_sent_to),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
