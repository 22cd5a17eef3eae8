/*
 * The TLS reference peer: a single-threaded epoll echo server over OpenSSL 3, the TLS
 * counterpart of epoll_server.c. Non-blocking sockets, one SSL per connection, OpenSSL's
 * defaults (TLS 1.2 and 1.3, its default ciphers and groups) with SSL_MODE_RELEASE_BUFFERS,
 * so an idle connection holds no record buffers.
 *
 * Each connection does the next thing it has to do whenever its socket is ready: finish the
 * handshake (SSL_accept), write what the kernel did not take yet, or read and echo. When
 * OpenSSL answers SSL_ERROR_WANT_READ or SSL_ERROR_WANT_WRITE, the connection waits for that
 * readiness (a read may need to write and a write to read). While a write is pending the
 * connection reads nothing more, so memory stays bounded.
 *
 *   tls_epoll_server PORT CERT.pem KEY.pem     (PORT 0: an ephemeral port)
 * Prints "listening on tls://127.0.0.1:PORT" and serves until killed.
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
#include <unistd.h>

#define READ_SIZE 16384 /* one TLS record of plaintext at most */

typedef struct peer {
    int fd;
    SSL *ssl;
    unsigned events; /* what epoll waits for on fd now */
    int handshaken;  /* SSL_accept finished */
    char *pending;   /* plaintext SSL_write has to be called with again, or NULL */
    size_t pending_len;
} peer;

static int epfd;
static char buf[READ_SIZE];

static void drop(peer *p)
{
    if (p->handshaken)
        SSL_shutdown(p->ssl); /* one close_notify, best effort: the socket does not block us */
    SSL_free(p->ssl);
    close(p->fd);
    free(p->pending);
    free(p);
    ERR_clear_error();
}

static void wait_for(peer *p, unsigned events)
{
    if (p->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = p};
    epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &ev);
    p->events = events;
}

/* After an SSL call returned rc <= 0: 0 when it has to wait (the events set), -1 when done. */
static int blocked(peer *p, int rc)
{
    switch (SSL_get_error(p->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        wait_for(p, EPOLLIN);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        wait_for(p, EPOLLOUT);
        return 0;
    default: /* close_notify, EOF, reset or a TLS error */
        return -1;
    }
}

/* Writes n bytes of plaintext; 0 when written or waiting (with a copy kept), -1 on error. */
static int echo(peer *p, const char *data, size_t n)
{
    int rc = SSL_write(p->ssl, data, (int)n);
    if (rc > 0)
        return 0;
    if (blocked(p, rc) < 0)
        return -1;
    if (p->pending == NULL) { /* OpenSSL wants the same bytes again: keep them */
        p->pending = malloc(n);
        if (p->pending == NULL)
            return -1;
        memcpy(p->pending, data, n);
        p->pending_len = n;
    }
    return 0;
}

/* Does what the connection has to do next, until OpenSSL has to wait for the socket. */
static void step(peer *p)
{
    if (!p->handshaken) {
        int rc = SSL_accept(p->ssl);
        if (rc <= 0) {
            if (blocked(p, rc) < 0)
                drop(p);
            return;
        }
        p->handshaken = 1;
    }
    if (p->pending != NULL) {
        int rc = SSL_write(p->ssl, p->pending, (int)p->pending_len);
        if (rc <= 0) {
            if (blocked(p, rc) < 0)
                drop(p);
            return;
        }
        free(p->pending);
        p->pending = NULL;
    }
    /* Read until OpenSSL wants more from the socket: it may hold decrypted records already,
       which level-triggered epoll would never report again. */
    for (;;) {
        int n = SSL_read(p->ssl, buf, sizeof buf);
        if (n <= 0) {
            if (blocked(p, n) < 0)
                drop(p);
            return;
        }
        if (echo(p, buf, (size_t)n) < 0) {
            drop(p);
            return;
        }
        if (p->pending != NULL)
            return; /* waiting to write: read nothing more until it is sent */
    }
}

static void accept_all(int lfd, SSL_CTX *ctx)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE: try again on the next readiness */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer *p = calloc(1, sizeof *p);
        SSL *ssl = p != NULL ? SSL_new(ctx) : NULL;
        if (ssl == NULL || !SSL_set_fd(ssl, fd)) {
            SSL_free(ssl);
            free(p);
            close(fd);
            continue;
        }
        p->fd = fd;
        p->ssl = ssl;
        p->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tls_epoll_server PORT CERT.pem KEY.pem\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes with write(): a reset peer must not kill us */
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tls_epoll_server: %s\n", ERR_reason_error_string(ERR_get_error()));
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int port = atoi(argv[1]);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
        perror("tls_epoll_server");
        return 1;
    }
    printf("listening on tls://127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    static peer listener;
    listener.fd = lfd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        for (int i = 0; i < n; i++) {
            peer *p = events[i].data.ptr;
            if (p == &listener)
                accept_all(lfd, ctx);
            else
                step(p);
        }
    }
}
