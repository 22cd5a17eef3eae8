/*
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt, versions 1 and 2): the header a proxy
 * sends before a relayed connection's bytes to name its client. A parser and a formatter, pure
 * functions over buffers: nothing here allocates, does I/O or keeps state, so both are
 * unit-tested and fuzzed alone.
 *
 * The parser answers for whatever prefix of the stream it is given: 0 (need more) while the bytes
 * may still begin a valid header, then, for good, the header's length or -EPROTO. ("May": two
 * parts, noted below, are judged only once whole.) It never reads past len and never uses a
 * length from the wire before checking it against the bytes it was given.
 *
 * Version 1: one line of US-ASCII, at most 107 bytes with its CRLF (spec 2.1):
 *
 *   line    = "PROXY" SP ( tcp4 / tcp6 / unknown ) CRLF
 *   tcp4    = "TCP4" SP ipv4 SP ipv4 SP port SP port
 *   tcp6    = "TCP6" SP ipv6 SP ipv6 SP port SP port
 *   unknown = "UNKNOWN" [ SP *( any byte but CR and LF ) ]    ; the rest is ignored
 *   ipv4    = dec8 "." dec8 "." dec8 "." dec8                  ; dec8 is 0..255
 *   port    = decimal 0..65535
 *   ipv6    = 1..45 hex digits, ':' and '.' that inet_pton(AF_INET6) reads: "2001:db8::1", and
 *             "::ffff:192.0.2.1" too, which is how inet_ntop (so HAProxy) writes a mapped address
 *
 * Exactly one SP between fields; decimals without a leading zero ("0" alone is one); the source
 * address first; the line ends with CR LF, never a lone CR or LF. Numbers and IPv4 addresses are
 * checked byte by byte; an IPv6 address is judged once the byte after it has come, and until then
 * only its alphabet and length are.
 *
 * Version 2: 16 bytes, then the `len` more they announce (spec 2.2):
 *
 *   header    = signature ver_cmd fam len addresses *tlv
 *   signature = 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *   ver_cmd   = 20 (version 2, LOCAL) / 21 (version 2, PROXY)
 *   fam       = 00 (UNSPEC: no address)
 *             / 11 / 12 (TCP / UDP over IPv4: source, destination, 4 bytes each; ports, 2 each)
 *             / 21 / 22 (TCP / UDP over IPv6: 16-byte addresses, then the ports)
 *             / 31 / 32 (UNIX stream / datagram: two 108-byte paths)
 *   len       = 2 bytes, big-endian: what follows the 16 bytes; 16 + len <= YD_PROXY_MAX_BYTES
 *   tlv       = type length-hi length-lo value      ; value: length bytes, inside the header
 *
 * Everything is network byte order. The 16 bytes are checked as they arrive; the rest only once
 * all len bytes are in (the spec: "must not start to parse an address before the whole address
 * block is received"). The addresses of a LOCAL header are skipped: the receiver keeps the
 * connection's own. TLVs follow the addresses; each must fit in the header, and those read here
 * may come only once:
 *
 *   02 AUTHORITY   the host name the client asked for (SNI): pointed to
 *   03 CRC32C      4 bytes: CRC32c (RFC 4960 app. B) of the whole header with these 4 bytes 0
 *   05 UNIQUE_ID   at most 128 bytes: pointed to
 *   20 SSL         client (1 byte: bit 0 PP2_CLIENT_SSL), verify (4 bytes), then sub-TLVs in
 *                  the same format, each inside the SSL TLV
 *   others (ALPN, NOOP, NETNS, custom, unknown): skipped
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "yodel.h"

/* The longest v1 line, the spec's worst case: "PROXY UNKNOWN " + two 39-byte IPv6 addresses +
 * " 65535 65535\r\n". */
#define V1_MAX_BYTES 107
/* The longest IPv6 text, INET6_ADDRSTRLEN - 1: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255". */
#define V6_TEXT_BYTES 45

#define V2_FIXED_BYTES     16
#define V2_LOCAL           0x20
#define V2_PROXY           0x21
#define V2_UNIX_PATH_BYTES 108
#define TLV_HEAD_BYTES     3 /* type, length-hi, length-lo */

#define PP2_TYPE_AUTHORITY   0x02
#define PP2_TYPE_CRC32C      0x03
#define PP2_TYPE_UNIQUE_ID   0x05
#define PP2_TYPE_SSL         0x20
#define PP2_CLIENT_SSL       0x01
#define PP2_SSL_FIXED_BYTES  5 /* client, verify */
#define PP2_UNIQUE_ID_BYTES  128
#define CRC32C_BYTES         4
#define CRC32C_POLY_REVERSED 0x82F63B78u

_Static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) == V2_UNIX_PATH_BYTES,
               "a v2 UNIX address is a whole sun_path");
_Static_assert(sizeof(struct sockaddr_un) <= sizeof(struct sockaddr_storage),
               "a sockaddr_un fits yd_proxy_header's addresses");

static const unsigned char V2_SIGNATURE[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* The answers of every step below: 1 done (go on), 0 need more bytes, -EPROTO malformed. */
#define TRY(step)                                                                                  \
    do {                                                                                           \
        int rc_ = (step);                                                                          \
        if (rc_ <= 0)                                                                              \
            return rc_;                                                                            \
    } while (0)

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* An address of family (AF_INET, AF_INET6) from its network-order bytes and a host-order port. */
static void set_inet(struct sockaddr_storage *ss, int family, const void *addr, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        memcpy(&sin.sin_addr, addr, sizeof sin.sin_addr);
        memcpy(ss, &sin, sizeof sin);
    } else {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        memcpy(&sin6.sin6_addr, addr, sizeof sin6.sin6_addr);
        memcpy(ss, &sin6, sizeof sin6);
    }
}

/* ---- Version 1 ------------------------------------------------------------------------- */

/* The bytes of a v1 line: at most the first V1_MAX_BYTES of the buffer are looked at. */
struct line {
    const char *p;
    const char *end;
    bool full; /* end is the 107th byte: a line that runs into it is too long */
};

/* The line ran out of bytes: more may finish it, unless all 107 it may have are here. */
static int line_short(const struct line *l)
{
    return l->full ? -EPROTO : 0;
}

static int line_expect(struct line *l, const char *text)
{
    size_t n = strlen(text);
    size_t have = (size_t)(l->end - l->p);
    size_t k = have < n ? have : n;
    if (memcmp(l->p, text, k) != 0)
        return -EPROTO;
    if (k < n)
        return line_short(l);
    l->p += n;
    return 1;
}

/* The protocol after "PROXY ": AF_INET for "TCP4 ", AF_INET6 for "TCP6 ", 0 for "UNKNOWN". */
static int line_protocol(struct line *l, int *family)
{
    static const struct {
        const char *text;
        int family;
    } names[] = {{"TCP4 ", AF_INET}, {"TCP6 ", AF_INET6}, {"UNKNOWN", AF_UNSPEC}};
    int rc = -EPROTO;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct line attempt = *l;
        int got = line_expect(&attempt, names[i].text);
        if (got == 1) {
            *l = attempt;
            *family = names[i].family;
            return 1;
        }
        if (got == 0)
            rc = 0; /* "TCP" could still become either */
    }
    return rc;
}

/* A decimal up to max with no leading zero. It ends at a non-digit, so that byte must be in. */
static int line_decimal(struct line *l, uint32_t max, uint32_t *out)
{
    const char *start = l->p;
    uint32_t v = 0;
    for (; l->p < l->end && is_digit(*l->p); l->p++) {
        if (l->p > start && v == 0)
            return -EPROTO; /* a leading zero */
        v = v * 10 + (uint32_t)(*l->p - '0');
        if (v > max) /* also stops a long run of digits before it can wrap */
            return -EPROTO;
    }
    if (l->p == l->end)
        return line_short(l);
    if (l->p == start)
        return -EPROTO;
    *out = v;
    return 1;
}

static int line_ipv4(struct line *l, unsigned char out[4])
{
    for (int i = 0; i < 4; i++) {
        uint32_t octet;
        if (i > 0)
            TRY(line_expect(l, "."));
        TRY(line_decimal(l, 255, &octet));
        out[i] = (unsigned char)octet;
    }
    return 1;
}

/* A run of IPv6 text characters up to the byte after it, then inet_pton on a bounded copy. */
static int line_ipv6(struct line *l, unsigned char out[16])
{
    const char *start = l->p;
    for (; l->p < l->end && (is_hex(*l->p) || *l->p == ':' || *l->p == '.'); l->p++) {
        if (l->p - start == V6_TEXT_BYTES)
            return -EPROTO;
    }
    if (l->p == l->end)
        return line_short(l);
    char text[V6_TEXT_BYTES + 1];
    size_t n = (size_t)(l->p - start);
    memcpy(text, start, n);
    text[n] = '\0';
    return inet_pton(AF_INET6, text, out) == 1 ? 1 : -EPROTO;
}

/* "SRC DST SPORT DPORT" of TCP4 or TCP6, up to (not including) the CRLF. */
static int line_addresses(struct line *l, int family, yd_proxy_header *h)
{
    unsigned char addr[2][16];
    uint32_t port[2];
    for (int i = 0; i < 2; i++) {
        TRY(family == AF_INET ? line_ipv4(l, addr[i]) : line_ipv6(l, addr[i]));
        TRY(line_expect(l, " "));
    }
    TRY(line_decimal(l, 65535, &port[0]));
    TRY(line_expect(l, " "));
    TRY(line_decimal(l, 65535, &port[1]));
    h->family = family;
    set_inet(&h->src, family, addr[0], (uint16_t)port[0]);
    set_inet(&h->dst, family, addr[1], (uint16_t)port[1]);
    return 1;
}

/* After "UNKNOWN": nothing, or a space and bytes to ignore, up to (not including) the CR. */
static int line_unknown(struct line *l)
{
    if (l->p == l->end)
        return line_short(l);
    if (*l->p == '\r')
        return 1;
    if (*l->p != ' ')
        return -EPROTO;
    for (l->p++; l->p < l->end && *l->p != '\r'; l->p++) {
        if (*l->p == '\n')
            return -EPROTO; /* a lone LF never ends the line */
    }
    return l->p == l->end ? line_short(l) : 1;
}

static int parse_v1_line(struct line *l, yd_proxy_header *h)
{
    int family;
    TRY(line_expect(l, "PROXY "));
    TRY(line_protocol(l, &family));
    if (family == AF_UNSPEC) {
        TRY(line_unknown(l));
        h->local = 1;
    } else {
        TRY(line_addresses(l, family, h));
    }
    TRY(line_expect(l, "\r\n"));
    return 1;
}

static long parse_v1(const char *buf, size_t len, yd_proxy_header *h)
{
    struct line l = {buf, buf + (len < V1_MAX_BYTES ? len : V1_MAX_BYTES), len >= V1_MAX_BYTES};
    long rc = parse_v1_line(&l, h);
    if (rc <= 0)
        return rc;
    h->version = 1;
    h->socktype = SOCK_STREAM;
    h->header_len = (size_t)(l.p - buf);
    return (long)h->header_len;
}

/* ---- Version 2 ------------------------------------------------------------------------- */

static uint32_t load_be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t load_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The bytes of the address block for a fam byte, or -1 for one the spec does not list. */
static int v2_address_bytes(unsigned char fam)
{
    switch (fam) {
    case 0x00:
        return 0;
    case 0x11:
    case 0x12:
        return 2 * 4 + 2 * 2;
    case 0x21:
    case 0x22:
        return 2 * 16 + 2 * 2;
    case 0x31:
    case 0x32:
        return 2 * V2_UNIX_PATH_BYTES;
    default:
        return -1;
    }
}

static void set_unix(struct sockaddr_storage *ss, const unsigned char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, sizeof sun.sun_path);
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &sun, sizeof sun);
}

/* The addresses of a PROXY command; the block's size was checked against the header's. */
static void v2_addresses(unsigned char fam, const unsigned char *a, yd_proxy_header *h)
{
    static const int families[] = {AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX};
    static const int socktypes[] = {0, SOCK_STREAM, SOCK_DGRAM};
    h->family = families[fam >> 4];
    h->socktype = socktypes[fam & 0x0F];
    if (h->family == AF_INET) {
        set_inet(&h->src, AF_INET, a, (uint16_t)load_be16(a + 8));
        set_inet(&h->dst, AF_INET, a + 4, (uint16_t)load_be16(a + 10));
    } else if (h->family == AF_INET6) {
        set_inet(&h->src, AF_INET6, a, (uint16_t)load_be16(a + 32));
        set_inet(&h->dst, AF_INET6, a + 16, (uint16_t)load_be16(a + 34));
    } else if (h->family == AF_UNIX) {
        set_unix(&h->src, a);
        set_unix(&h->dst, a + V2_UNIX_PATH_BYTES);
    }
}

/*
 * The next TLV of b[*at..end): its type, and where its value starts and how long it is, all
 * inside end; *at moves past it. Returns 1 for a TLV, 0 at end, -EPROTO when one runs past end.
 */
static int tlv_next(const unsigned char *b, size_t *at, size_t end, unsigned *type,
                    size_t *value_at, size_t *n)
{
    if (*at >= end)
        return 0;
    if (end - *at < TLV_HEAD_BYTES)
        return -EPROTO;
    *type = b[*at];
    *n = load_be16(b + *at + 1);
    if (*n > end - *at - TLV_HEAD_BYTES)
        return -EPROTO;
    *value_at = *at + TLV_HEAD_BYTES;
    *at = *value_at + *n;
    return 1;
}

/* TLVs nobody reads here (the SSL sub-TLVs) must still fit: 1 if all do, else -EPROTO. */
static int tlv_check_all(const unsigned char *b, size_t at, size_t end)
{
    unsigned type;
    size_t value_at, n;
    int rc;
    while ((rc = tlv_next(b, &at, end, &type, &value_at, &n)) == 1)
        continue;
    return rc == 0 ? 1 : rc;
}

/* CRC32c (Castagnoli, reflected, as RFC 4960 appendix B computes it), one bit at a time: a
 * header is at most YD_PROXY_MAX_BYTES, so no table is worth its cache lines. */
static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (CRC32C_POLY_REVERSED & (0u - (crc & 1u)));
    }
    return crc;
}

/* The CRC32c of the header b[0..total) with its checksum field (at `at`) read as zeroes. */
static bool v2_crc_matches(const unsigned char *b, size_t total, size_t at)
{
    static const unsigned char zeroes[CRC32C_BYTES];
    uint32_t crc = 0xFFFFFFFFu;
    crc = crc32c_update(crc, b, at);
    crc = crc32c_update(crc, zeroes, CRC32C_BYTES);
    crc = crc32c_update(crc, b + at + CRC32C_BYTES, total - at - CRC32C_BYTES);
    return (crc ^ 0xFFFFFFFFu) == load_be32(b + at);
}

/* What the TLVs of one header said, while they are read. */
struct tlv_state {
    unsigned seen; /* bit per interpreted type: each may come once */
    size_t crc_at; /* offset of the CRC32C value, 0 if none */
};

/* The types read here, one bit each: a header may give each only once. */
static unsigned tlv_bit(unsigned type)
{
    switch (type) {
    case PP2_TYPE_AUTHORITY:
        return 1u << 0;
    case PP2_TYPE_CRC32C:
        return 1u << 1;
    case PP2_TYPE_UNIQUE_ID:
        return 1u << 2;
    case PP2_TYPE_SSL:
        return 1u << 3;
    default:
        return 0;
    }
}

/* One TLV, whose value (n bytes at offset at of b) lies inside the header. */
static int v2_tlv(unsigned type, const unsigned char *b, size_t at, size_t n, struct tlv_state *st,
                  yd_proxy_header *h)
{
    const unsigned char *v = b + at;
    if (st->seen & tlv_bit(type))
        return -EPROTO; /* two answers to one question: refuse rather than pick one */
    st->seen |= tlv_bit(type);
    switch (type) {
    case PP2_TYPE_AUTHORITY:
        h->authority = (const char *)v;
        h->authority_len = n;
        return 1;
    case PP2_TYPE_CRC32C:
        if (n != CRC32C_BYTES)
            return -EPROTO;
        st->crc_at = at;
        return 1;
    case PP2_TYPE_UNIQUE_ID:
        if (n > PP2_UNIQUE_ID_BYTES)
            return -EPROTO;
        h->unique_id = (const char *)v;
        h->unique_id_len = n;
        return 1;
    case PP2_TYPE_SSL:
        if (n < PP2_SSL_FIXED_BYTES)
            return -EPROTO;
        h->ssl = (v[0] & PP2_CLIENT_SSL) != 0;
        return tlv_check_all(b, at + PP2_SSL_FIXED_BYTES, at + n);
    default:
        return 1; /* ALPN, NOOP, NETNS, custom or unknown: skipped */
    }
}

/* The TLVs in b[at..total), total being the header's length; then the CRC, if one was given. */
static int v2_tlvs(const unsigned char *b, size_t at, size_t total, yd_proxy_header *h)
{
    struct tlv_state st = {0, 0};
    unsigned type;
    size_t value_at, n;
    int rc;
    while ((rc = tlv_next(b, &at, total, &type, &value_at, &n)) == 1)
        TRY(v2_tlv(type, b, value_at, n, &st, h));
    if (rc < 0)
        return rc;
    if (st.crc_at != 0 && !v2_crc_matches(b, total, st.crc_at))
        return -EPROTO;
    return 1;
}

static long parse_v2(const unsigned char *b, size_t len, yd_proxy_header *h)
{
    size_t sig = len < sizeof V2_SIGNATURE ? len : sizeof V2_SIGNATURE;
    if (memcmp(b, V2_SIGNATURE, sig) != 0)
        return -EPROTO;
    if (len > 12 && b[12] != V2_LOCAL && b[12] != V2_PROXY)
        return -EPROTO; /* another version, or a command the spec does not define */
    if (len > 13 && v2_address_bytes(b[13]) < 0)
        return -EPROTO;
    if (len < V2_FIXED_BYTES)
        return 0;
    size_t total = V2_FIXED_BYTES + load_be16(b + 14);
    if (total > YD_PROXY_MAX_BYTES)
        return -EPROTO;
    if (len < total)
        return 0;
    size_t tlvs_at = V2_FIXED_BYTES + (size_t)v2_address_bytes(b[13]);
    if (tlvs_at > total)
        return -EPROTO; /* the addresses do not fit in the length given */
    if (b[12] == V2_PROXY)
        v2_addresses(b[13], b + V2_FIXED_BYTES, h);
    else
        h->local = 1; /* the spec: discard the addresses, family included */
    if (v2_tlvs(b, tlvs_at, total, h) < 0)
        return -EPROTO;
    h->version = 2;
    h->header_len = total;
    return (long)total;
}

/* ---- Both ------------------------------------------------------------------------------ */

long yd_proxy_parse(const char *buf, size_t len, yd_proxy_header *out)
{
    yd_proxy_header h;
    long rc;
    if (out == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    if (len == 0)
        return 0;
    /* Filled in a local copy so that anything but success leaves *out as it was. */
    memset(&h, 0, sizeof h);
    if (buf[0] == (char)V2_SIGNATURE[0])
        rc = parse_v2((const unsigned char *)buf, len, &h);
    else if (buf[0] == 'P')
        rc = parse_v1(buf, len, &h);
    else
        rc = -EPROTO;
    if (rc > 0)
        *out = h;
    return rc;
}

/* ---- Formatting ------------------------------------------------------------------------ */

/* An AF_INET or AF_INET6 sockaddr as its family, network-order address bytes and port. */
struct endpoint {
    int family;
    unsigned char addr[16];
    uint16_t port; /* host order */
};

static int read_endpoint(const void *sockaddr, struct endpoint *e)
{
    sa_family_t family;
    memcpy(&family, (const char *)sockaddr + offsetof(struct sockaddr, sa_family), sizeof family);
    if (family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sockaddr, sizeof sin);
        memcpy(e->addr, &sin.sin_addr, 4);
        e->port = ntohs(sin.sin_port);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sockaddr, sizeof sin6);
        memcpy(e->addr, &sin6.sin6_addr, 16);
        e->port = ntohs(sin6.sin6_port);
    } else {
        return -EINVAL;
    }
    e->family = family;
    return 0;
}

static long format_v1(const struct endpoint *src, const struct endpoint *dst, char *buf, size_t len)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[V1_MAX_BYTES + 1];
    if (inet_ntop(src->family, src->addr, s, sizeof s) == NULL ||
        inet_ntop(dst->family, dst->addr, d, sizeof d) == NULL)
        return -EINVAL;
    int n = snprintf(line, sizeof line, "PROXY %s %s %s %u %u\r\n",
                     src->family == AF_INET ? "TCP4" : "TCP6", s, d, (unsigned)src->port,
                     (unsigned)dst->port);
    if (n < 0 || (size_t)n >= sizeof line)
        return -EINVAL; /* cannot happen: the longest is 104 bytes */
    if ((size_t)n > len)
        return -ENOBUFS;
    memcpy(buf, line, (size_t)n);
    return n;
}

static void store_be16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static long format_v2(const struct endpoint *src, const struct endpoint *dst, char *buf, size_t len)
{
    size_t addr_len = src->family == AF_INET ? 4 : 16;
    size_t block = 2 * addr_len + 2 * 2;
    size_t total = V2_FIXED_BYTES + block;
    unsigned char *b = (unsigned char *)buf;
    if (total > len)
        return -ENOBUFS;
    memcpy(b, V2_SIGNATURE, sizeof V2_SIGNATURE);
    b[12] = V2_PROXY;
    b[13] = src->family == AF_INET ? 0x11 : 0x21; /* over TCP */
    store_be16(b + 14, (uint32_t)block);
    memcpy(b + 16, src->addr, addr_len);
    memcpy(b + 16 + addr_len, dst->addr, addr_len);
    store_be16(b + 16 + 2 * addr_len, src->port);
    store_be16(b + 16 + 2 * addr_len + 2, dst->port);
    return (long)total;
}

long yd_proxy_format(int version, const void *src, const void *dst, char *buf, size_t len)
{
    struct endpoint s, d;
    if (src == NULL || dst == NULL || (buf == NULL && len > 0))
        return -EINVAL;
    if (read_endpoint(src, &s) < 0 || read_endpoint(dst, &d) < 0 || s.family != d.family)
        return -EINVAL;
    if (version == 1)
        return format_v1(&s, &d, buf, len);
    if (version == 2)
        return format_v2(&s, &d, buf, len);
    return -EINVAL;
}
