/*
 * The TLS reference load generator: epoll_client.c over OpenSSL 3. CONNS connections, each
 * keeping DEPTH messages of SIZE bytes in flight (a printable pattern per connection, one
 * final '\n'); each echo is compared with memcmp. OpenSSL client defaults (TLS 1.2 and 1.3),
 * the server's certificate not verified. `bench/compare --tls` holds `yodel bench` to it, and
 * uses it for the round-trip scenarios when `yodel bench` has no TLS.
 *
 *   tls_epoll_client HOST:PORT CONNS SIZE SECONDS [WARMUP_SECONDS [DEPTH]]
 * Prints one JSON object:
 *   {"round_trips_per_s": ..., "round_trips": ..., "mb_per_s": ..., "errors": ...}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    int fd;
    SSL *ssl;
    int dead;
    unsigned events;
    unsigned owed; /* messages to write: DEPTH at first, then one per echo received */
    size_t got;
    char *msg;
    char *in;
} client;

static int epfd;
static size_t size;
static unsigned long long count;
static unsigned long errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_for(client *c, unsigned events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

static void fail(client *c)
{
    errors++;
    c->dead = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    ERR_clear_error();
}

/* Writes what is owed and reads what arrived, until OpenSSL has to wait for the socket. */
static void step(client *c)
{
    unsigned want = EPOLLIN;
    for (;;) {
        while (c->owed > 0 && !(want & EPOLLOUT)) {
            int rc = SSL_write(c->ssl, c->msg, (int)size);
            if (rc > 0) {
                c->owed--;
                continue;
            }
            int err = SSL_get_error(c->ssl, rc);
            if (err == SSL_ERROR_WANT_WRITE)
                want |= EPOLLOUT;
            else if (err != SSL_ERROR_WANT_READ) {
                fail(c);
                return;
            }
            break;
        }
        int rc = SSL_read(c->ssl, c->in + c->got, (int)(size - c->got));
        if (rc <= 0) {
            int err = SSL_get_error(c->ssl, rc);
            if (err == SSL_ERROR_WANT_WRITE)
                want |= EPOLLOUT;
            else if (err != SSL_ERROR_WANT_READ) {
                fail(c);
                return;
            }
            break;
        }
        c->got += (size_t)rc;
        if (c->got < size)
            continue;
        c->got = 0;
        if (memcmp(c->in, c->msg, size) != 0)
            errors++;
        count++;
        c->owed++; /* written on the next pass, unless the socket is full */
    }
    wait_for(c, want);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tls_epoll_client HOST:PORT CONNS SIZE SECONDS [WARMUP [DEPTH]]\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "tls_epoll_client: bad address %s\n", argv[1]);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    int conns = atoi(argv[2]);
    size = (size_t)atol(argv[3]);
    double seconds = atof(argv[4]);
    double warmup = argc > 5 ? atof(argv[5]) : 1.0;
    int depth = argc > 6 ? atoi(argv[6]) : 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (conns < 1 || size < 2 || size > (1 << 20) || seconds <= 0 || depth < 1 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "tls_epoll_client: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        fprintf(stderr, "tls_epoll_client: no TLS context\n");
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    client *clients = calloc((size_t)conns, sizeof *clients);
    if (epfd < 0 || clients == NULL) {
        perror("tls_epoll_client");
        return 1;
    }
    for (int i = 0; i < conns; i++) {
        client *c = &clients[i];
        c->msg = malloc(size);
        c->in = malloc(size);
        if (c->msg == NULL || c->in == NULL) {
            perror("tls_epoll_client");
            return 1;
        }
        for (size_t j = 0; j + 1 < size; j++)
            c->msg[j] = (char)('!' + (j * 7 + (size_t)i * 13) % 94);
        c->msg[size - 1] = '\n';
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("tls_epoll_client: connect");
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->ssl = SSL_new(ctx);
        if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) || SSL_connect(c->ssl) != 1) {
            fprintf(stderr, "tls_epoll_client: handshake failed: %s\n",
                    ERR_reason_error_string(ERR_get_error()));
            return 1;
        }
        /* The handshake ran blocking; the echo loop does not. */
        if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0) {
            perror("tls_epoll_client: fcntl");
            return 1;
        }
        c->owed = (unsigned)depth;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        step(c);
    }
    double start = now_s(), measure_from = start + warmup, end = measure_from + seconds;
    unsigned long long at_measure = 0;
    int measuring = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, 100);
        for (int i = 0; i < n; i++) {
            client *c = events[i].data.ptr;
            if (!c->dead)
                step(c);
        }
        double t = now_s();
        if (!measuring && t >= measure_from) {
            measuring = 1;
            at_measure = count;
            measure_from = t;
        }
        if (t >= end) {
            double rate = (double)(count - at_measure) / (t - measure_from);
            printf("{\"round_trips_per_s\":%.1f,\"round_trips\":%llu,\"mb_per_s\":%.3f,"
                   "\"errors\":%lu}\n",
                   rate, count - at_measure, rate * (double)size / 1e6, errors);
            return errors ? 1 : 0;
        }
    }
}
