/*
 * The reference load generator: a tight hand-written epoll ping-pong client, the
 * figure `yodel bench` is held to (at least 0.9 of its round trips/s against the same
 * server). Same message shape as yodel bench: SIZE bytes, printable, one final '\n',
 * a pattern per connection; each echo is compared with memcmp.
 *
 *   epoll_client HOST:PORT CONNS SIZE SECONDS [WARMUP_SECONDS]
 * Prints one JSON object: {"round_trips_per_s": ..., "round_trips": ..., "errors": ...}.
 *
 *   epoll_client --crr HOST:PORT CONNS SIZE SECONDS [WARMUP_SECONDS]
 * netperf's TCP_CRR, the figure `yodel bench --reconnect-every 1` is held to: CONNS slots, each
 * in a loop of a non-blocking connect, one message sent, its echo read whole and compared,
 * close. Prints {"connects_per_s": ..., "connects": ..., "errors": ...} (a connection counts
 * once its echo came back, in the SECONDS after the warmup).
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
#include <time.h>
#include <unistd.h>

typedef struct client {
    int fd;
    size_t got;
    char *msg;
    char *in;
} client;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --crr: one slot's connection, from connect to close. */
typedef struct crr_slot {
    int fd;
    int connected;
    size_t got;
} crr_slot;

static int crr_open(int epfd, crr_slot *c, const struct sockaddr_in *sa)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    c->connected = 0;
    c->got = 0;
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* The connect finished: send the message and wait for its echo. 0, or -1 on an error. */
static int crr_connected(int epfd, crr_slot *c, const char *msg, size_t size)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
        return -1;
    c->connected = 1;
    if (send(c->fd, msg, size, MSG_NOSIGNAL) != (ssize_t)size)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* The measured window: it opens after the warmup; at its end the report is printed. */
struct window {
    double from, end;
    int measuring;
    unsigned long long at; /* the count when it opened */
};

static void window_init(struct window *w, double warmup, double seconds)
{
    w->from = now_s() + warmup;
    w->end = w->from + seconds;
    w->measuring = 0;
    w->at = 0;
}

/* 1 once the window has ended (the report printed as {"WHAT_per_s":...,"WHAT":...,"errors":...}).
 */
static int window_check(struct window *w, unsigned long long count, unsigned long errors,
                        const char *what)
{
    double t = now_s();
    if (!w->measuring && t >= w->from) {
        w->measuring = 1;
        w->at = count;
        w->from = t;
    }
    if (t < w->end)
        return 0;
    double rate = (double)(count - w->at) / (t - w->from);
    printf("{\"%s_per_s\":%.1f,\"%s\":%llu,\"errors\":%lu}\n", what, rate, what, count - w->at,
           errors);
    return 1;
}

/* Reads the echo; 1 when it is whole and right, 0 for more to come, -1 on an error. */
static int crr_read(crr_slot *c, const char *msg, char *in, size_t size)
{
    ssize_t r = recv(c->fd, in + c->got, size - c->got, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0)
        return -1;
    c->got += (size_t)r;
    if (c->got < size)
        return 0;
    return memcmp(in, msg, size) == 0 ? 1 : -1;
}

static int run_crr(const struct sockaddr_in *sa, int conns, size_t size, double seconds,
                   double warmup)
{
    int epfd = epoll_create1(0);
    crr_slot *slots = calloc((size_t)conns, sizeof *slots);
    char *msg = malloc(size), *in = malloc(size);
    if (epfd < 0 || slots == NULL || msg == NULL || in == NULL)
        return 1;
    for (size_t j = 0; j + 1 < size; j++)
        msg[j] = (char)('!' + (j * 7) % 94);
    msg[size - 1] = '\n';
    unsigned long errors = 0;
    for (int i = 0; i < conns; i++)
        if (crr_open(epfd, &slots[i], sa) < 0)
            errors++;
    struct window w;
    window_init(&w, warmup, seconds);
    unsigned long long count = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, 100);
        for (int i = 0; i < n; i++) {
            crr_slot *c = events[i].data.ptr;
            int rc = c->connected ? crr_read(c, msg, in, size) : crr_connected(epfd, c, msg, size);
            if (rc == 0)
                continue;
            if (rc < 0)
                errors++;
            else
                count++;
            close(c->fd); /* also leaves the epoll set */
            if (crr_open(epfd, c, sa) < 0)
                errors++;
        }
        if (window_check(&w, count, errors, "connects"))
            return errors ? 1 : 0;
    }
}

int main(int argc, char **argv)
{
    int crr = argc > 1 && strcmp(argv[1], "--crr") == 0;
    argc -= crr;
    argv += crr;
    if (argc < 5) {
        fprintf(stderr, "usage: epoll_client [--crr] HOST:PORT CONNS SIZE SECONDS [WARMUP]\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "epoll_client: bad address %s\n", argv[1]);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    int conns = atoi(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    double seconds = atof(argv[4]);
    double warmup = argc > 5 ? atof(argv[5]) : 1.0;
    if (conns < 1 || size < 2 || seconds <= 0) {
        fprintf(stderr, "epoll_client: bad arguments\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (crr)
        return run_crr(&sa, conns, size, seconds, warmup);
    int epfd = epoll_create1(0);
    client *clients = calloc((size_t)conns, sizeof *clients);
    unsigned long errors = 0;
    for (int i = 0; i < conns; i++) {
        client *c = &clients[i];
        c->msg = malloc(size);
        c->in = malloc(size);
        for (size_t j = 0; j + 1 < size; j++)
            c->msg[j] = (char)('!' + (j * 7 + (size_t)i * 13) % 94);
        c->msg[size - 1] = '\n';
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("epoll_client: connect");
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        if (send(c->fd, c->msg, size, MSG_NOSIGNAL) != (ssize_t)size)
            errors++;
    }
    struct window w;
    window_init(&w, warmup, seconds);
    unsigned long long count = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, 100);
        for (int i = 0; i < n; i++) {
            client *c = events[i].data.ptr;
            ssize_t r = recv(c->fd, c->in + c->got, size - c->got, 0);
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                errors++;
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->got += (size_t)r;
            if (c->got < size)
                continue;
            c->got = 0;
            if (memcmp(c->in, c->msg, size) != 0)
                errors++;
            count++;
            if (send(c->fd, c->msg, size, MSG_NOSIGNAL) != (ssize_t)size)
                errors++;
        }
        if (window_check(&w, count, errors, "round_trips"))
            return errors ? 1 : 0;
    }
}
