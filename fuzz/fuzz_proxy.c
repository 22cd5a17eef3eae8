/*
 * yd_proxy_parse on arbitrary bytes, and on every prefix of them, as a connection's reader
 * calls it while the header trickles in; and yd_proxy_format followed by yd_proxy_parse.
 * Checked:
 *  - it never reads past len: each call gets an exact-size heap copy, so ASan sees any over-read;
 *  - answers over growing prefixes are 0 until the first that is not, then that same answer
 *    (a length never changes, -EPROTO stays), and YD_PROXY_MAX_BYTES bytes always decide;
 *  - a header found is consistent: header_len is the answer, a v1 line ends with CRLF within 107
 *    bytes, TLV pointers lie inside the header, a local one has no address;
 *  - what it parsed formats and parses back to the same addresses (TCP over IPv4 or IPv6);
 *  - addresses and ports taken from the input round-trip through yd_proxy_format, versions 1
 *    and 2, and a buffer one byte short is -ENOBUFS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "yodel.h"

/* Enough for any header plus bytes after it: every prefix up to here is checked. */
#define PREFIX_LIMIT (YD_PROXY_MAX_BYTES + 16)

/* A header with its pointers as offsets, so two parses of copies compare equal. */
struct result {
    long rc;
    yd_proxy_header h;
    ptrdiff_t authority_at, unique_id_at;
};

static void parse_exact(const uint8_t *data, size_t n, struct result *r)
{
    char *copy = malloc(n > 0 ? n : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, n);
    memset(r, 0, sizeof *r);
    r->rc = yd_proxy_parse(copy, n, &r->h);
    if (r->rc > 0) {
        r->authority_at = r->h.authority != NULL ? r->h.authority - copy : -1;
        r->unique_id_at = r->h.unique_id != NULL ? r->h.unique_id - copy : -1;
        r->h.authority = NULL;
        r->h.unique_id = NULL;
    }
    free(copy);
}

/* Field by field: the struct's padding is nobody's business. */
static bool same(const struct result *a, const struct result *b)
{
    const yd_proxy_header *x = &a->h, *y = &b->h;
    return a->rc == b->rc && x->version == y->version && x->local == y->local &&
           x->family == y->family && x->socktype == y->socktype &&
           memcmp(&x->src, &y->src, sizeof x->src) == 0 &&
           memcmp(&x->dst, &y->dst, sizeof x->dst) == 0 && x->header_len == y->header_len &&
           a->authority_at == b->authority_at && x->authority_len == y->authority_len &&
           a->unique_id_at == b->unique_id_at && x->unique_id_len == y->unique_id_len &&
           x->ssl == y->ssl;
}

static void check_inside(ptrdiff_t at, size_t len, size_t header_len)
{
    if (at == -1) {
        if (len != 0)
            abort();
        return;
    }
    if (at < 0 || (size_t)at + len > header_len)
        abort();
}

static void check_header(const uint8_t *data, size_t n, const struct result *r)
{
    const yd_proxy_header *h = &r->h;
    if ((size_t)r->rc > n || (size_t)r->rc > YD_PROXY_MAX_BYTES || h->header_len != (size_t)r->rc)
        abort();
    if (h->version == 1) {
        if (h->header_len > 107 || data[h->header_len - 2] != '\r' ||
            data[h->header_len - 1] != '\n' || memcmp(data, "PROXY ", 6) != 0 ||
            h->socktype != SOCK_STREAM || r->authority_at != -1 || r->unique_id_at != -1 || h->ssl)
            abort();
    } else if (h->version != 2 || h->header_len < 16) {
        abort();
    }
    if (h->family != 0 && h->family != AF_INET && h->family != AF_INET6 && h->family != AF_UNIX)
        abort();
    if (h->src.ss_family != h->family || h->dst.ss_family != h->family)
        abort();
    if (h->local && h->family != 0)
        abort();
    if (h->unique_id_len > 128)
        abort();
    check_inside(r->authority_at, h->authority_len, h->header_len);
    check_inside(r->unique_id_at, h->unique_id_len, h->header_len);
}

/* The addresses parsed, formatted again as the same version, parse back to themselves. */
static void check_reformat(const struct result *r)
{
    const yd_proxy_header *h = &r->h;
    if (h->family != AF_INET && h->family != AF_INET6)
        return;
    char buf[YD_PROXY_MAX_BYTES];
    long n = yd_proxy_format(h->version, &h->src, &h->dst, buf, sizeof buf);
    if (n <= 0)
        abort();
    struct result again;
    parse_exact((const uint8_t *)buf, (size_t)n, &again);
    if (again.rc != n || again.h.family != h->family ||
        memcmp(&again.h.src, &h->src, sizeof h->src) != 0 ||
        memcmp(&again.h.dst, &h->dst, sizeof h->dst) != 0)
        abort();
}

static void check_prefixes(const uint8_t *data, size_t size)
{
    struct result first = {0}, r;
    size_t limit = size < PREFIX_LIMIT ? size : PREFIX_LIMIT;
    for (size_t k = 0; k <= limit; k++) {
        parse_exact(data, k, &r);
        if (r.rc < 0 && r.rc != -EPROTO)
            abort();
        if (first.rc == 0) {
            first = r;
            if (r.rc > 0)
                check_header(data, k, &r);
        } else if (!same(&r, &first)) {
            abort(); /* decided, then changed its mind */
        }
        if (k >= YD_PROXY_MAX_BYTES && r.rc == 0)
            abort(); /* still undecided past the longest header */
    }
    if (size > limit) {
        parse_exact(data, size, &r);
        if (!same(&r, &first))
            abort();
    }
    if (first.rc > 0)
        check_reformat(&first);
}

/* Addresses from the input: byte 0 picks the version and family, then 2 x 16 address bytes
 * and 2 x 2 port bytes. */
static void check_format_round_trip(const uint8_t *data, size_t size)
{
    if (size < 1 + 32 + 4)
        return;
    int version = (data[0] & 1) + 1;
    int family = (data[0] & 2) ? AF_INET6 : AF_INET;
    struct sockaddr_storage src, dst;
    memset(&src, 0, sizeof src);
    memset(&dst, 0, sizeof dst);
    uint16_t sport = (uint16_t)(data[33] << 8 | data[34]);
    uint16_t dport = (uint16_t)(data[35] << 8 | data[36]);
    if (family == AF_INET) {
        struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(sport)};
        struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(dport)};
        memcpy(&s.sin_addr, data + 1, 4);
        memcpy(&d.sin_addr, data + 17, 4);
        memcpy(&src, &s, sizeof s);
        memcpy(&dst, &d, sizeof d);
    } else {
        struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(sport)};
        struct sockaddr_in6 d = {.sin6_family = AF_INET6, .sin6_port = htons(dport)};
        memcpy(&s.sin6_addr, data + 1, 16);
        memcpy(&d.sin6_addr, data + 17, 16);
        memcpy(&src, &s, sizeof s);
        memcpy(&dst, &d, sizeof d);
    }
    char buf[YD_PROXY_MAX_BYTES];
    long n = yd_proxy_format(version, &src, &dst, buf, sizeof buf);
    if (n <= 0 || yd_proxy_format(version, &src, &dst, buf, (size_t)n - 1) != -ENOBUFS)
        abort();
    struct result r;
    parse_exact((const uint8_t *)buf, (size_t)n, &r);
    if (r.rc != n || r.h.version != version || r.h.family != family || r.h.local ||
        memcmp(&r.h.src, &src, sizeof src) != 0 || memcmp(&r.h.dst, &dst, sizeof dst) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_prefixes(data, size);
    check_format_round_trip(data, size);
    return 0;
}
