/* yodel: echo server, echo client and echo benchmark on libyodel. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "yodel.h"

static const char usage[] =
    "usage: yodel COMMAND [OPTIONS]\n"
    "\n"
    "The asyncio echo tutorials, in C.\n"
    "\n"
    "commands:\n"
    "  serve    run an echo server (TCP, UDP, Unix sockets; raw, line and upper modes)\n"
    "  send     echo client: send messages and check what comes back\n"
    "  bench    load generator for any echo server\n"
    "\n"
    "  yodel COMMAND --help   options of one command\n"
    "  yodel --version        print the version\n";

/* Which of descriptors 0, 1 and 2 were closed at start (bit fd set): see cli_fd_was_closed(). */
static unsigned closed_at_start;

int cli_fd_was_closed(int fd)
{
    return fd >= 0 && fd <= 2 && (closed_at_start >> fd & 1u);
}

/*
 * Opens /dev/null onto any of descriptors 0, 1 and 2 that is closed. Otherwise the next
 * descriptors opened (libuv's epoll descriptor and its signal pipe) would take those numbers:
 * our output would go into libuv's pipe, and libuv aborts when it closes a descriptor below 3.
 * Each one filled is remembered: what is written to it is lost, which a report must not hide.
 */
static void open_standard_descriptors(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1)
            continue;
        closed_at_start |= 1u << fd;
        /* open returns the lowest free descriptor: fd itself, as the lower ones are open. */
        int null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (null >= 0 && null != fd) {
            dup2(null, fd);
            close(null);
        }
    }
}

int main(int argc, char **argv)
{
    open_standard_descriptors();
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("yodel %s (libuv based)\n", yd_version());
        return EXIT_OK;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "send") == 0)
        return cmd_send(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "yodel: unknown command '%s' (see 'yodel --help')\n", cmd);
    return EXIT_USAGE;
}
