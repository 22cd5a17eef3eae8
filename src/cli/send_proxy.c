/*
 * The PROXY protocol header a load balancer sends before the client's bytes (HAProxy's
 * doc/proxy-protocol.txt), so that `yodel send --proxy-protocol` can stand in for one.
 *
 * v1 is one text line: "PROXY TCP4 SRC DST SPORT DPORT\r\n" (TCP6 for IPv6, "PROXY UNKNOWN\r\n"
 * when the ends are not IP addresses). v2 is binary: the 12-byte signature, ver/cmd 0x21
 * (version 2, PROXY), the family and transport (0x11 TCP4, 0x12 UDP4, 0x21 TCP6, 0x22 UDP6,
 * 0x00 UNSPEC), the length of what follows (big-endian), then the source and destination
 * addresses and the source and destination ports, in network byte order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "send.h"
#include "yodel.h"

static const unsigned char v2_signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                               0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* An address as 16 bytes of IPv6 (an IPv4 one mapped) or 4 of IPv4, and its port. */
struct ends {
    int family;
    unsigned char src[16], dst[16];
    uint16_t src_port, dst_port; /* network byte order */
};

static void put_addr(const struct sockaddr *sa, int family, unsigned char *out, uint16_t *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        *port = in6->sin6_port;
        return;
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    *port = in->sin_port;
    if (family == AF_INET) {
        memcpy(out, &in->sin_addr, 4);
        return;
    }
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(out, mapped, 12);
    memcpy(out + 12, &in->sin_addr, 4);
}

static int get_ends(const struct sockaddr *src, const struct sockaddr *dst, struct ends *e)
{
    if ((src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
        (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
        return -EINVAL;
    e->family = src->sa_family == dst->sa_family ? src->sa_family : AF_INET6;
    put_addr(src, e->family, e->src, &e->src_port);
    put_addr(dst, e->family, e->dst, &e->dst_port);
    return 0;
}

static int format_v1(const struct ends *e, char *buf)
{
    if (e == NULL)
        return snprintf(buf, PROXY_HEADER_MAX, "PROXY UNKNOWN\r\n");
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    inet_ntop(e->family, e->src, s, sizeof s);
    inet_ntop(e->family, e->dst, d, sizeof d);
    return snprintf(buf, PROXY_HEADER_MAX, "PROXY %s %s %s %u %u\r\n",
                    e->family == AF_INET ? "TCP4" : "TCP6", s, d, ntohs(e->src_port),
                    ntohs(e->dst_port));
}

static int format_v2(const struct ends *e, int stream, char *buf)
{
    size_t alen = e == NULL ? 0 : e->family == AF_INET ? 4 : 16;
    size_t len = 2 * alen + (e == NULL ? 0 : 4);
    unsigned char *p = (unsigned char *)buf;
    memcpy(p, v2_signature, sizeof v2_signature);
    p[12] = 0x21;
    p[13] =
        e == NULL ? 0x00 : (unsigned char)((e->family == AF_INET ? 0x10 : 0x20) | (stream ? 1 : 2));
    p[14] = (unsigned char)(len >> 8);
    p[15] = (unsigned char)len;
    if (e != NULL) {
        memcpy(p + 16, e->src, alen);
        memcpy(p + 16 + alen, e->dst, alen);
        memcpy(p + 16 + 2 * alen, &e->src_port, 2);
        memcpy(p + 18 + 2 * alen, &e->dst_port, 2);
    }
    return (int)(16 + len);
}

int proxy_addr_parse(const char *text, struct sockaddr_storage *out)
{
    yd_addr a;
    memset(out, 0, sizeof *out);
    if (yd_addr_parse(text, &a) < 0 || a.transport == YD_UNIX)
        return -EINVAL;
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, a.host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(a.port);
        return 0;
    }
    if (inet_pton(AF_INET6, a.host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(a.port);
        return 0;
    }
    return -EINVAL;
}

int proxy_header_format(enum proxy_version version, int stream, const struct sockaddr *src,
                        const struct sockaddr *dst, char *buf)
{
    struct ends e;
    if ((src == NULL) != (dst == NULL) || (version == PROXY_V1 && !stream))
        return -EINVAL;
    if (src != NULL && get_ends(src, dst, &e) < 0)
        return -EINVAL;
    if (version == PROXY_V1)
        return format_v1(src != NULL ? &e : NULL, buf);
    if (version == PROXY_V2)
        return format_v2(src != NULL ? &e : NULL, stream, buf);
    return -EINVAL;
}
