/*
 * threaded_client - the tutorials' blocking client, run in several threads at once against an
 * asynchronous server: for each message connect, send a line, read the line back, close. It
 * teaches that the server's clients need nothing of libyodel: plain POSIX sockets and threads,
 * only the address parsing comes from libyodel. Exits 0 only if every reply matched.
 *
 * Test with: ./echo_server &  then  ./threaded_client 127.0.0.1:8888 4 5
 *
 *   ./threaded_client ADDR [THREADS [MESSAGES]]    default 4 threads x 5 messages
 */
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yodel.h>

static yd_addr server;
static char port[8];
static int messages = 5;

/* One blocking round trip; every blocking call gives up after 5 s. Returns 1 on a match. */
static int echo_once(const char *line)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    struct timeval limit = {.tv_sec = 5};
    char reply[128];
    size_t len = strlen(line), got = 0;
    ssize_t n = 1;

    if (getaddrinfo(server.host, port, &hints, &ai) != 0)
        return 0;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    int ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit)) == 0 &&
             setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit)) == 0 &&
             connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
             send(fd, line, len, MSG_NOSIGNAL) == (ssize_t)len;
    freeaddrinfo(ai);
    while (ok && got < len && (n = recv(fd, reply + got, sizeof(reply) - got, 0)) > 0)
        got += (size_t)n;
    if (fd >= 0)
        close(fd);
    return ok && got == len && memcmp(reply, line, len) == 0;
}

static void *run(void *arg)
{
    long id = (long)arg, echoed = 0;
    char line[64];
    for (int i = 0; i < messages; i++) {
        snprintf(line, sizeof(line), "thread %ld, message %d\n", id, i);
        echoed += echo_once(line);
    }
    printf("thread %ld: %ld of %d echoed\n", id, echoed, messages);
    return (void *)echoed;
}

int main(int argc, char **argv)
{
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    long echoed = 0;
    pthread_t tids[64];

    messages = argc > 3 ? atoi(argv[3]) : messages;
    if (argc < 2 || yd_addr_parse(argv[1], &server) < 0 || server.transport != YD_TCP ||
        threads < 1 || threads > 64 || messages < 1) {
        fprintf(stderr, "usage: threaded_client HOST:PORT [THREADS (1-64) [MESSAGES]]\n");
        return 2;
    }
    snprintf(port, sizeof(port), "%u", (unsigned)server.port);
    for (long i = 0; i < threads; i++) {
        if (pthread_create(&tids[i], NULL, run, (void *)i) != 0) {
            threads = (int)i; /* run with the threads we got; the count below then fails */
            break;
        }
    }
    for (int i = 0; i < threads; i++) {
        void *result;
        if (pthread_join(tids[i], &result) == 0)
            echoed += (long)result;
    }
    printf("%ld of %ld replies matched\n", echoed, (long)threads * messages);
    return echoed != (long)threads * messages;
}
