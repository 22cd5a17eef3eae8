/*
 * The "plain C" peer: a single-threaded epoll echo server, about as little as an echo
 * server can do. Reads what arrives and writes it straight back; when the kernel
 * does not take all of it, keeps the rest and stops reading that client until it is
 * sent (so memory stays bounded).
 *
 *   epoll_server PORT     (0: an ephemeral port)
 * Prints "listening on tcp://127.0.0.1:PORT" and serves until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE 65536

typedef struct peer {
    int fd;
    char *pending; /* bytes the kernel did not take yet, or NULL */
    size_t pending_len;
    size_t pending_off;
} peer;

static int epfd;
static char buf[READ_SIZE];

static void drop(peer *p)
{
    close(p->fd);
    free(p->pending);
    free(p);
}

static void set_events(peer *p, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = p};
    epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &ev);
}

/* Sends what is pending; returns 0 when all is sent, 1 when some is left, -1 on error. */
static int flush_pending(peer *p)
{
    while (p->pending_off < p->pending_len) {
        ssize_t n =
            send(p->fd, p->pending + p->pending_off, p->pending_len - p->pending_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        if (n < 0)
            return -1;
        p->pending_off += (size_t)n;
    }
    free(p->pending);
    p->pending = NULL;
    return 0;
}

static void on_readable(peer *p)
{
    ssize_t n = recv(p->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        drop(p);
        return;
    }
    ssize_t sent = send(p->fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN && errno != EINTR) {
        drop(p);
        return;
    }
    if (sent < 0)
        sent = 0;
    if (sent == n)
        return;
    p->pending_len = (size_t)(n - sent);
    p->pending_off = 0;
    p->pending = malloc(p->pending_len);
    if (p->pending == NULL) {
        drop(p);
        return;
    }
    memcpy(p->pending, buf + sent, p->pending_len);
    set_events(p, EPOLLOUT);
}

static void on_writable(peer *p)
{
    int rc = flush_pending(p);
    if (rc < 0)
        drop(p);
    else if (rc == 0)
        set_events(p, EPOLLIN);
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE: try again on the next readiness */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer *p = calloc(1, sizeof *p);
        if (p == NULL) {
            close(fd);
            continue;
        }
        p->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
        perror("epoll_server");
        return 1;
    }
    printf("listening on tcp://127.0.0.1:%d\n", ntohs(sa.sin_port));
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
                accept_all(lfd);
            else if (p->pending != NULL)
                on_writable(p);
            else
                on_readable(p);
        }
    }
}
