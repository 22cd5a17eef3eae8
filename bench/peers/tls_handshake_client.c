/*
 * Full TLS handshakes per second: CONNS connections at once, each in a loop of connect,
 * a full handshake (a new SSL every time, never resuming a session), one 64-byte echo
 * compared with memcmp, close_notify and close. OpenSSL 3 client defaults (TLS 1.2 and 1.3,
 * its default groups and ciphers), the server's certificate not verified.
 *
 *   tls_handshake_client HOST:PORT CONNS SECONDS [WARMUP_SECONDS]
 * Prints one JSON object: {"handshakes_per_s": ..., "handshakes": ..., "errors": ...}
 (a handshake counts once its echo came back, in the SECONDS after the warmup; errors count
 * over the whole run). Exit 1 when there were errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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

#define MSG_SIZE 64

enum state { CONNECTING, HANDSHAKING, WRITING, READING };

typedef struct slot {
    int fd;
    SSL *ssl;
    enum state state;
    unsigned events;
    size_t got;
    char in[MSG_SIZE];
} slot;

static int epfd;
static SSL_CTX *ctx;
static struct sockaddr_in server;
static char msg[MSG_SIZE];
static unsigned long long done;
static unsigned long errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_for(slot *s, unsigned events)
{
    if (s->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
    s->events = events;
}

static void finish(slot *s, int ok)
{
    if (ok) {
        SSL_shutdown(s->ssl); /* our close_notify; not waiting for the server's */
        done++;
    } else {
        errors++;
    }
    SSL_free(s->ssl);
    s->ssl = NULL;
    close(s->fd); /* also removes it from epoll */
    s->fd = -1;
    ERR_clear_error();
}

/* Opens a new connection in the slot; 0, or -1 when the socket could not be made. */
static int start(slot *s)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->ssl = SSL_new(ctx);
    if (s->ssl == NULL || !SSL_set_fd(s->ssl, s->fd)) {
        finish(s, 0);
        return -1;
    }
    s->state = CONNECTING;
    s->got = 0;
    if (connect(s->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
        finish(s, 0);
        return -1;
    }
    s->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
    return 0;
}

/* After an SSL call returned rc <= 0: 0 when it has to wait (the events set), -1 on failure. */
static int blocked(slot *s, int rc)
{
    switch (SSL_get_error(s->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        wait_for(s, EPOLLIN);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        wait_for(s, EPOLLOUT);
        return 0;
    default:
        return -1;
    }
}

/* Moves the slot's connection on as far as it goes; 1 when it ended (ok or not). */
static int step(slot *s)
{
    int rc = 0;
    switch (s->state) {
    case CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            finish(s, 0);
            return 1;
        }
        s->state = HANDSHAKING;
    } /* fall through */
    case HANDSHAKING:
        rc = SSL_connect(s->ssl);
        if (rc <= 0)
            break;
        s->state = WRITING;
        /* fall through */
    case WRITING:
        rc = SSL_write(s->ssl, msg, MSG_SIZE);
        if (rc <= 0)
            break;
        s->state = READING;
        /* fall through */
    case READING:
        for (;;) {
            rc = SSL_read(s->ssl, s->in + s->got, (int)(MSG_SIZE - s->got));
            if (rc <= 0)
                break;
            s->got += (size_t)rc;
            if (s->got == MSG_SIZE) {
                finish(s, memcmp(s->in, msg, MSG_SIZE) == 0);
                return 1;
            }
        }
        break;
    }
    if (blocked(s, rc) < 0) {
        finish(s, 0);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tls_handshake_client HOST:PORT CONNS SECONDS [WARMUP]\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "tls_handshake_client: bad address %s\n", argv[1]);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    int conns = atoi(argv[2]);
    double seconds = atof(argv[3]);
    double warmup = argc > 4 ? atof(argv[4]) : 1.0;
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(colon + 1));
    if (conns < 1 || seconds <= 0 || inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "tls_handshake_client: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        fprintf(stderr, "tls_handshake_client: no TLS context\n");
        return 1;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every handshake a full one */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    for (size_t j = 0; j + 1 < MSG_SIZE; j++)
        msg[j] = (char)('!' + (j * 7) % 94);
    msg[MSG_SIZE - 1] = '\n';
    epfd = epoll_create1(EPOLL_CLOEXEC);
    slot *slots = calloc((size_t)conns, sizeof *slots);
    if (epfd < 0 || slots == NULL) {
        perror("tls_handshake_client");
        return 1;
    }
    for (int i = 0; i < conns; i++)
        if (start(&slots[i]) < 0) {
            perror("tls_handshake_client: socket");
            return 1;
        }
    double t0 = now_s(), measure_from = t0 + warmup, end = measure_from + seconds;
    unsigned long long at_measure = 0;
    int measuring = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, 100);
        for (int i = 0; i < n; i++) {
            slot *s = events[i].data.ptr;
            if (step(s) && start(s) < 0) {
                perror("tls_handshake_client: socket");
                return 1;
            }
        }
        double t = now_s();
        if (!measuring && t >= measure_from) {
            measuring = 1;
            at_measure = done;
            measure_from = t;
        }
        if (t >= end) {
            unsigned long long count = done - at_measure;
            printf("{\"handshakes_per_s\":%.1f,\"handshakes\":%llu,\"errors\":%lu}\n",
                   (double)count / (t - measure_from), count, errors);
            return errors ? 1 : 0;
        }
    }
}
