/*
 * yd_addr_parse on arbitrary text. Checked: a parsed address is well-formed (host and path
 * NUL-terminated inside their arrays, non-empty where they must be, the right one empty
 * for the transport), its port is the number after the last ':', and written back in
 * canonical form it parses to the same address.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yodel.h"

static void check_well_formed(const yd_addr *a)
{
    if (memchr(a->host, '\0', sizeof a->host) == NULL ||
        memchr(a->path, '\0', sizeof a->path) == NULL)
        abort();
    switch (a->transport) {
    case YD_TCP:
    case YD_UDP:
        if (a->host[0] == '\0' || a->path[0] != '\0')
            abort();
        break;
    case YD_UNIX:
        if (a->path[0] == '\0' || a->host[0] != '\0' || a->port != 0)
            abort();
        break;
    default:
        abort();
    }
}

/* The port is the decimal text after the last ':', read independently (no 16-bit wrap). */
static void check_port_text(const char *text, uint16_t port)
{
    const char *colon = strrchr(text, ':');
    char *end;
    if (colon == NULL || colon[1] < '0' || colon[1] > '9')
        abort();
    errno = 0;
    unsigned long long value = strtoull(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || value > 65535 || value != port)
        abort();
}

static void format(const yd_addr *a, char *buf, size_t len)
{
    const char *scheme = a->transport == YD_UDP ? "udp://" : "tcp://";
    int n;
    if (a->transport == YD_UNIX && strncmp(a->path, "//", 2) == 0)
        n = snprintf(buf, len, "unix://%s", a->path); /* "unix:" + "//x" would read as "x" */
    else if (a->transport == YD_UNIX)
        n = snprintf(buf, len, "unix:%s", a->path);
    else if (strchr(a->host, ':') != NULL)
        n = snprintf(buf, len, "%s[%s]:%u", scheme, a->host, (unsigned)a->port);
    else
        n = snprintf(buf, len, "%s%s:%u", scheme, a->host, (unsigned)a->port);
    if (n < 0 || (size_t)n >= len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    yd_addr a;
    memset(&a, 0xa5, sizeof a);
    if (yd_addr_parse(text, &a) == 0) {
        check_well_formed(&a);
        if (a.transport != YD_UNIX)
            check_port_text(text, a.port);
        char canon[512];
        yd_addr b;
        memset(&b, 0x5a, sizeof b);
        format(&a, canon, sizeof canon);
        if (yd_addr_parse(canon, &b) != 0 || a.transport != b.transport || a.port != b.port ||
            strcmp(a.host, b.host) != 0 || strcmp(a.path, b.path) != 0)
            abort();
    }
    free(text);
    return 0;
}
