/* Socket addresses: resolving a parsed address and naming a bound or peer one. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "internal.h"

static void add_result(struct resolved *r, const struct sockaddr *sa, socklen_t len)
{
    for (int i = 0; i < r->count; i++) /* /etc/hosts may list an address twice */
        if (r->len[i] == len && memcmp(&r->addr[i], sa, len) == 0)
            return;
    if (r->count == RESOLVED_MAX || len > sizeof r->addr[0])
        return;
    memcpy(&r->addr[r->count], sa, len);
    r->len[r->count++] = len;
}

/* A numeric address needs no resolver: getaddrinfo would allocate, format the port and look at
 * the configuration for each connect (bench --reconnect-every makes thousands a second). 1 if
 * host was one (added to r), else 0. Scoped IPv6 ("fe80::1%eth0") goes to getaddrinfo. */
static int numeric_into(struct resolved *r, const char *host, uint16_t port)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (inet_pton(AF_INET, host, &in.sin_addr) == 1)
        add_result(r, (struct sockaddr *)&in, sizeof in);
    else if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1)
        add_result(r, (struct sockaddr *)&in6, sizeof in6);
    else
        return 0;
    return 1;
}

static int resolve_into(struct resolved *r, const char *host, uint16_t port, int socktype,
                        int passive)
{
    if (numeric_into(r, host, port))
        return 0;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo *res;
    int err = getaddrinfo(host, service, &hints, &res);
    if (err == EAI_SYSTEM)
        return -errno;
    if (err == EAI_MEMORY)
        return -ENOMEM;
    if (err == EAI_AGAIN)
        return -EAGAIN; /* the resolver could not answer now: worth trying again */
    if (err != 0)
        return YD_ERESOLVE; /* no such name, or no address of the family asked for */
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        add_result(r, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int yd__addr_resolve(const yd_addr *addr, int socktype, int passive, struct resolved *out)
{
    out->count = 0;
    out->localhost = strcasecmp(addr->host, "localhost") == 0;
    if (!out->localhost)
        return resolve_into(out, addr->host, addr->port, socktype, passive);
    /* RFC 6761: localhost is the loopback addresses, whatever /etc/hosts forgot to say (many
     * systems list only 127.0.0.1); asyncio's "localhost" is then both, as users expect. */
    int err = resolve_into(out, "127.0.0.1", addr->port, socktype, passive);
    if (err == 0)
        err = resolve_into(out, "::1", addr->port, socktype, passive);
    return out->count > 0 ? 0 : err;
}

int yd__sockaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        n = snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        n = snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        n = snprintf(buf, len, "unix");
    } else {
        return -EAFNOSUPPORT;
    }
    if (n < 0 || (size_t)n >= len)
        return -ENOBUFS;
    return n;
}

int yd__sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* The port of "HOST:PORT" after the host (NULL: none); -1 for a bad one. */
static int parse_port(const char *text)
{
    if (text == NULL || *text == '\0')
        return 0;
    if (*text != ':' || text[1] == '\0')
        return -1;
    char *end;
    long port = strtol(text + 1, &end, 10);
    return *end != '\0' || port < 0 || port > 65535 ? -1 : (int)port;
}

int yd__source_parse(const char *text, struct sockaddr_storage *out, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    const char *rest = NULL;
    if (text[0] == '[') { /* "[v6]" or "[v6]:PORT" */
        const char *close = strchr(text, ']');
        if (close == NULL || (size_t)(close - text - 1) >= sizeof host)
            return -EINVAL;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        rest = close + 1;
    } else {
        const char *colon = strchr(text, ':');
        int v6 = colon != NULL && strchr(colon + 1, ':') != NULL; /* a bare IPv6 address */
        size_t n = colon == NULL || v6 ? strlen(text) : (size_t)(colon - text);
        if (n >= sizeof host)
            return -EINVAL;
        memcpy(host, text, n);
        host[n] = '\0';
        rest = v6 ? NULL : colon;
    }
    int port = parse_port(rest);
    if (port < 0)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return -EINVAL; /* a source is a numeric address: resolving it could block */
}

int yd_sockaddr_format(const void *sockaddr, char *buf, size_t len)
{
    return yd__sockaddr_format(sockaddr, buf, len);
}
