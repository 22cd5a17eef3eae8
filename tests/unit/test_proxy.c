/*
 * yd_proxy_parse and yd_proxy_format: the PROXY protocol, versions 1 and 2 (HAProxy's
 * proxy-protocol.txt). Every input is parsed where it ends at a guard page, so a read one byte
 * past len faults.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "guard.h"

#include "yodel.h"

#define TEXT(s) (s), (sizeof(s) - 1)

static struct guard g;

static int open_guard(void **state)
{
    (void)state;
    guard_open(&g);
    return 0;
}

static int close_guard(void **state)
{
    (void)state;
    guard_close(&g);
    return 0;
}

/* Parses n bytes placed to end at the guard page. The header's TLV pointers point there: valid
 * until the next call. */
static long parse(const void *bytes, size_t n, yd_proxy_header *h)
{
    const char *buf = guard_place(&g, bytes, n);
    assert_ptr_equal(buf + n, guard_end(&g));
    return yd_proxy_parse(buf, n, h);
}

static yd_proxy_header parse_ok(const void *bytes, size_t n)
{
    yd_proxy_header h;
    memset(&h, 0x5a, sizeof h);
    long rc = parse(bytes, n, &h);
    if (rc != (long)n)
        fail_msg("%zu-byte header gave %ld", n, rc);
    assert_int_equal(h.header_len, n);
    return h;
}

static void assert_refused(const void *bytes, size_t n, const char *what)
{
    yd_proxy_header h;
    long rc = parse(bytes, n, &h);
    if (rc != -EPROTO)
        fail_msg("%s: %ld, expected -EPROTO", what, rc);
}

static void assert_refused_text(const char *text)
{
    assert_refused(text, strlen(text), text);
}

static void assert_needs_more(const void *bytes, size_t n, const char *what)
{
    yd_proxy_header h;
    long rc = parse(bytes, n, &h);
    if (rc != 0)
        fail_msg("%s (%zu bytes): %ld, expected 0 (need more)", what, n, rc);
}

/* ---- Addresses ------------------------------------------------------------------------- */

static struct sockaddr_in in4(const char *text, uint16_t port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, text, &sin.sin_addr), 1);
    return sin;
}

static struct sockaddr_in6 in6(const char *text, uint16_t port)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
    return sin6;
}

static void assert_in4(const struct sockaddr_storage *ss, const char *text, uint16_t port)
{
    struct sockaddr_in want = in4(text, port), got;
    assert_int_equal(ss->ss_family, AF_INET);
    memcpy(&got, ss, sizeof got);
    assert_int_equal(ntohs(got.sin_port), port);
    assert_memory_equal(&got.sin_addr, &want.sin_addr, sizeof want.sin_addr);
}

static void assert_in6(const struct sockaddr_storage *ss, const char *text, uint16_t port)
{
    struct sockaddr_in6 want = in6(text, port), got;
    assert_int_equal(ss->ss_family, AF_INET6);
    memcpy(&got, ss, sizeof got);
    assert_int_equal(ntohs(got.sin6_port), port);
    assert_memory_equal(&got.sin6_addr, &want.sin6_addr, sizeof want.sin6_addr);
}

static void assert_no_address(const yd_proxy_header *h)
{
    static const struct sockaddr_storage zero;
    assert_int_equal(h->family, 0);
    assert_memory_equal(&h->src, &zero, sizeof zero);
    assert_memory_equal(&h->dst, &zero, sizeof zero);
}

static void assert_no_tlvs(const yd_proxy_header *h)
{
    assert_null(h->authority);
    assert_int_equal(h->authority_len, 0);
    assert_null(h->unique_id);
    assert_int_equal(h->unique_id_len, 0);
    assert_int_equal(h->ssl, 0);
}

/* ---- Building v2 headers --------------------------------------------------------------- */

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

struct v2 {
    unsigned char b[1024];
    size_t n;
};

static void v2_put(struct v2 *v, const void *p, size_t n)
{
    assert_true(v->n + n <= sizeof v->b);
    memcpy(v->b + v->n, p, n);
    v->n += n;
}

static void v2_put16(struct v2 *v, unsigned x)
{
    unsigned char p[2] = {(unsigned char)(x >> 8), (unsigned char)x};
    v2_put(v, p, 2);
}

/* The 16 fixed bytes, with the length set by v2_done. */
static void v2_start(struct v2 *v, unsigned char ver_cmd, unsigned char fam)
{
    v->n = 0;
    v2_put(v, SIG, sizeof SIG);
    v2_put(v, &ver_cmd, 1);
    v2_put(v, &fam, 1);
    v2_put16(v, 0);
}

/* 192.0.2.1:56324 -> 198.51.100.11:443 as an IPv4 address block. */
static void v2_put_ipv4_block(struct v2 *v)
{
    static const unsigned char block[12] = {192, 0, 2, 1, 198, 51, 100, 11, 0xDC, 0x04, 0x01, 0xBB};
    v2_put(v, block, sizeof block);
}

/* 2001:db8::1:56324 -> 2001:db8::2:443 as an IPv6 address block. */
static void v2_put_ipv6_block(struct v2 *v)
{
    unsigned char a[16];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", a), 1);
    v2_put(v, a, 16);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::2", a), 1);
    v2_put(v, a, 16);
    v2_put16(v, 56324);
    v2_put16(v, 443);
}

static void v2_tlv(struct v2 *v, unsigned char type, const void *value, size_t n)
{
    v2_put(v, &type, 1);
    v2_put16(v, (unsigned)n);
    v2_put(v, value, n);
}

/* Sets the length field to what follows the 16 bytes; returns the header's length. */
static size_t v2_done(struct v2 *v)
{
    size_t len = v->n - 16;
    v->b[14] = (unsigned char)(len >> 8);
    v->b[15] = (unsigned char)len;
    return v->n;
}

/* CRC32c, written here apart from the library's: MSB-first over the reflected input would be
 * one more way to get it wrong, so this is the textbook reflected form, checked against the
 * standard check value below. */
static uint32_t crc32c(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n-- > 0) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

/* Appends a CRC32C TLV, sets the length, and fills the checksum over the whole header. */
static size_t v2_done_with_crc(struct v2 *v)
{
    static const unsigned char zero[4];
    v2_tlv(v, 0x03, zero, 4);
    size_t n = v2_done(v);
    uint32_t crc = crc32c(v->b, n);
    unsigned char *at = v->b + n - 4;
    at[0] = (unsigned char)(crc >> 24);
    at[1] = (unsigned char)(crc >> 16);
    at[2] = (unsigned char)(crc >> 8);
    at[3] = (unsigned char)crc;
    return n;
}

static void test_crc32c_helper_gives_the_standard_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc32c((const unsigned char *)"123456789", 9), 0xE3069283u);
}

/* ---- Version 1 ------------------------------------------------------------------------- */

static void test_v1_tcp4_gives_both_addresses_and_ports(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(TEXT("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.family, AF_INET);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_in4(&h.src, "192.168.0.1", 56324);
    assert_in4(&h.dst, "192.168.0.11", 443);
    assert_no_tlvs(&h);
}

static void test_v1_tcp4_extreme_addresses_and_ports(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(TEXT("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n"));
    assert_in4(&h.src, "255.255.255.255", 65535);
    assert_in4(&h.dst, "0.0.0.0", 0);
}

static void test_v1_tcp6_gives_both_addresses_and_ports(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(TEXT("PROXY TCP6 2001:db8::1 2001:DB8::2 56324 443\r\n"));
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.family, AF_INET6);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_in6(&h.src, "2001:db8::1", 56324);
    assert_in6(&h.dst, "2001:db8::2", 443);
}

static void test_v1_tcp6_longest_line_of_104_bytes_is_accepted(void **state)
{
    (void)state;
    const char line[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(sizeof line - 1, 104);
    yd_proxy_header h = parse_ok(TEXT(line));
    assert_in6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void test_v1_tcp6_mapped_ipv4_as_inet_ntop_writes_it_is_accepted(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(TEXT("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"));
    assert_in6(&h.src, "::ffff:192.0.2.1", 1);
    assert_in6(&h.dst, "::1", 2);
}

static void test_v1_unknown_alone_is_local(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(TEXT("PROXY UNKNOWN\r\n"));
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_no_address(&h);
}

static void test_v1_unknown_ignores_the_rest_of_its_line(void **state)
{
    (void)state;
    yd_proxy_header h =
        parse_ok(TEXT("PROXY UNKNOWN ffff:f::f:ffff whatever it says, \x01\x7f\xff 65535\r\n"));
    assert_int_equal(h.local, 1);
    assert_no_address(&h);
}

/* "PROXY UNKNOWN " and filler up to n bytes with the CRLF. */
static size_t unknown_line(char *buf, size_t n)
{
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memset(buf + 14, 'x', n - 14 - 2);
    memcpy(buf + n - 2, "\r\n", 2);
    return n;
}

static void test_v1_line_of_107_bytes_is_accepted(void **state)
{
    (void)state;
    char line[107];
    parse_ok(line, unknown_line(line, 107));
}

static void test_v1_line_of_108_bytes_is_refused(void **state)
{
    (void)state;
    char line[108];
    assert_refused(line, unknown_line(line, 108), "a 108-byte line");
}

static void test_v1_107_bytes_without_crlf_are_refused(void **state)
{
    (void)state;
    char line[200];
    unknown_line(line, sizeof line);
    assert_needs_more(line, 106, "106 bytes without CRLF");
    assert_refused(line, 107, "107 bytes without CRLF");
    assert_refused(line, 108, "108 bytes without CRLF");
    assert_refused(line, sizeof line, "200 bytes with CRLF at the end");
    /* A CR as the 107th byte: its LF would be the 108th. */
    line[106] = '\r';
    assert_refused(line, 107, "CR as the 107th byte");
}

static void test_v1_wrong_spacing_is_refused(void **state)
{
    (void)state;
    assert_refused_text("PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11  56324 443\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324  443\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n");
    assert_refused_text(" PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXYTCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324443\r\n");
    assert_refused_text("PROXY\tTCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY TCP4\t192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_refused_text("PROXY UNKNOWN\t\r\n");
    assert_refused_text("PROXY UNKNOWNX\r\n");
}

static void test_v1_missing_fields_are_refused(void **state)
{
    (void)state;
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1\r\n");
    assert_refused_text("PROXY TCP4\r\n");
    assert_refused_text("PROXY\r\n");
    assert_refused_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 80\r\n");
}

static void test_v1_other_protocol_names_are_refused(void **state)
{
    (void)state;
    assert_refused_text("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_refused_text("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_refused_text("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_refused_text("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_refused_text("PROXY unknown\r\n");
}

static void test_v1_bad_ipv4_addresses_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "256.0.0.1", "1.2.3",     "1.2.3.4.5",  "01.2.3.4", "1.2.3.00", "1..2.3",
        ".1.2.3",    "1.2.3.",    "-1.2.3.4",   "1.2.3.4a", "a.b.c.d",  "::1",
        "1.2.3.4/8", "localhost", "1.2.3.1000", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "PROXY TCP4 %s 5.6.7.8 1 2\r\n", bad[i]);
        assert_refused_text(line);
        snprintf(line, sizeof line, "PROXY TCP4 5.6.7.8 %s 1 2\r\n", bad[i]);
        assert_refused_text(line);
    }
}

static void test_v1_bad_ipv6_addresses_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1.2.3.4",
        "1:2:3",
        ":::",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        "fe80::1%eth0",
        "12345::1",
        "g::1",
        "[::1]",
        "0000:0000:0000:0000:0000:0000:0000:0000:",       /* 40 bytes, a colon too many */
        "0000:0000:0000:0000:0000:0000:0000:00000000000", /* 46 bytes */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "PROXY TCP6 %s ::1 1 2\r\n", bad[i]);
        assert_refused_text(line);
        snprintf(line, sizeof line, "PROXY TCP6 ::1 %s 1 2\r\n", bad[i]);
        assert_refused_text(line);
    }
}

static void test_v1_ports_over_65535_are_refused(void **state)
{
    (void)state;
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 4294967297\r\n");
    yd_proxy_header h = parse_ok(TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 65535 65535\r\n"));
    assert_in4(&h.dst, "5.6.7.8", 65535);
}

static void test_v1_ports_with_leading_zeros_or_signs_are_refused(void **state)
{
    (void)state;
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n");
}

static void test_v1_line_must_end_with_crlf(void **state)
{
    (void)state;
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n");
    assert_refused_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r");
    assert_refused_text("PROXY UNKNOWN\n");
    assert_refused_text("PROXY UNKNOWN junk\njunk\r\n");
    assert_refused_text("PROXY UNKNOWN junk\rjunk\r\n");
    assert_needs_more(TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"), "no CRLF yet");
    assert_needs_more(TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), "CR without its LF yet");
}

static void test_v1_header_len_is_exact_and_the_payload_is_untouched(void **state)
{
    (void)state;
    const char bytes[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nPROXY TCP4 9.9.9.9 9.9.9.9 9 9\r\n";
    char copy[sizeof bytes];
    memcpy(copy, bytes, sizeof bytes);
    yd_proxy_header h;
    assert_int_equal(parse(TEXT(bytes), &h), 32);
    assert_int_equal(h.header_len, 32);
    assert_in4(&h.src, "1.2.3.4", 1);
    assert_memory_equal(guard_end(&g) - (sizeof bytes - 1), copy, sizeof bytes - 1);
}

/* ---- Version 2 ------------------------------------------------------------------------- */

static void test_v2_proxy_tcp_over_ipv4(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.family, AF_INET);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_int_equal(h.header_len, 28);
    assert_in4(&h.src, "192.0.2.1", 56324);
    assert_in4(&h.dst, "198.51.100.11", 443);
    assert_no_tlvs(&h);
}

static void test_v2_proxy_udp_over_ipv4(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x12);
    v2_put_ipv4_block(&v);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.family, AF_INET);
    assert_int_equal(h.socktype, SOCK_DGRAM);
    assert_in4(&h.src, "192.0.2.1", 56324);
}

static void test_v2_proxy_tcp_over_ipv6(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x21);
    v2_put_ipv6_block(&v);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.header_len, 52);
    assert_int_equal(h.family, AF_INET6);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_in6(&h.src, "2001:db8::1", 56324);
    assert_in6(&h.dst, "2001:db8::2", 443);
}

static void test_v2_proxy_udp_over_ipv6(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x22);
    v2_put_ipv6_block(&v);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.family, AF_INET6);
    assert_int_equal(h.socktype, SOCK_DGRAM);
    assert_in6(&h.dst, "2001:db8::2", 443);
}

static void put_unix_path(struct v2 *v, const char *path)
{
    char p[108] = {0};
    memcpy(p, path, strlen(path));
    v2_put(v, p, sizeof p);
}

static void check_unix(unsigned char fam, int socktype)
{
    struct v2 v;
    v2_start(&v, 0x21, fam);
    put_unix_path(&v, "/run/client.sock");
    put_unix_path(&v, "/run/yodel.sock");
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.header_len, 16 + 216);
    assert_int_equal(h.family, AF_UNIX);
    assert_int_equal(h.socktype, socktype);
    struct sockaddr_un src, dst;
    memcpy(&src, &h.src, sizeof src);
    memcpy(&dst, &h.dst, sizeof dst);
    assert_int_equal(src.sun_family, AF_UNIX);
    assert_string_equal(src.sun_path, "/run/client.sock");
    assert_string_equal(dst.sun_path, "/run/yodel.sock");
}

static void test_v2_proxy_unix_stream(void **state)
{
    (void)state;
    check_unix(0x31, SOCK_STREAM);
}

static void test_v2_proxy_unix_datagram(void **state)
{
    (void)state;
    check_unix(0x32, SOCK_DGRAM);
}

static void test_v2_proxy_unspec_gives_no_address(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x00);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.socktype, 0);
    assert_no_address(&h);
}

static void test_v2_local_is_local_with_no_address(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x20, 0x00);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.header_len, 16);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.socktype, 0);
    assert_no_address(&h);
}

static void test_v2_local_skips_the_addresses_it_carries(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x20, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.com", 11);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.local, 1);
    assert_no_address(&h);
    assert_int_equal(h.authority_len, 11);
    assert_memory_equal(h.authority, "example.com", 11);
}

static void test_v2_other_versions_and_commands_are_refused(void **state)
{
    (void)state;
    static const unsigned char bad[] = {0x00, 0x01, 0x10, 0x11, 0x22, 0x2F, 0x31, 0x30, 0xF1};
    for (size_t i = 0; i < sizeof bad; i++) {
        struct v2 v;
        v2_start(&v, bad[i], 0x11);
        v2_put_ipv4_block(&v);
        size_t n = v2_done(&v);
        char what[64];
        snprintf(what, sizeof what, "ver_cmd 0x%02x", bad[i]);
        assert_refused(v.b, n, what);
        assert_refused(v.b, 13, what); /* known as soon as the byte is in */
    }
}

static void test_v2_other_families_and_protocols_are_refused(void **state)
{
    (void)state;
    /* Nibbles past AF_UNIX or DGRAM, and the pairings the spec does not list. */
    static const unsigned char bad[] = {0x41, 0xF1, 0x13, 0x1F, 0x10, 0x20, 0x30, 0x01, 0x02};
    for (size_t i = 0; i < sizeof bad; i++) {
        struct v2 v;
        v2_start(&v, 0x21, bad[i]);
        v2_put_ipv6_block(&v);
        size_t n = v2_done(&v);
        char what[64];
        snprintf(what, sizeof what, "fam 0x%02x", bad[i]);
        assert_refused(v.b, n, what);
        assert_refused(v.b, 14, what);
    }
}

static void test_v2_signature_with_any_byte_changed_is_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof SIG; i++) {
        struct v2 v;
        v2_start(&v, 0x21, 0x11);
        v2_put_ipv4_block(&v);
        size_t n = v2_done(&v);
        v.b[i] ^= 0x20;
        char what[64];
        snprintf(what, sizeof what, "signature byte %zu", i);
        assert_refused(v.b, n, what);
        assert_refused(v.b, i + 1, what);
    }
}

static void test_v2_length_past_the_maximum_is_refused_from_the_fixed_bytes(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x00);
    v.b[14] = (YD_PROXY_MAX_BYTES - 16 + 1) >> 8;
    v.b[15] = (YD_PROXY_MAX_BYTES - 16 + 1) & 0xFF;
    assert_refused(v.b, 16, "length 521");
    v.b[14] = 0xFF;
    v.b[15] = 0xFF;
    assert_refused(v.b, 16, "length 65535");
}

static void test_v2_header_of_the_maximum_length_is_accepted(void **state)
{
    (void)state;
    static const unsigned char pad[YD_PROXY_MAX_BYTES];
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x04, pad, YD_PROXY_MAX_BYTES - v.n - 3); /* a NOOP up to the limit */
    size_t n = v2_done(&v);
    assert_int_equal(n, YD_PROXY_MAX_BYTES);
    parse_ok(v.b, n);
}

static void test_v2_length_too_short_for_its_addresses_is_refused(void **state)
{
    (void)state;
    static const struct {
        unsigned char fam;
        size_t need;
    } cases[] = {{0x11, 12}, {0x12, 12}, {0x21, 36}, {0x22, 36}, {0x31, 216}, {0x32, 216}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static const unsigned char zeros[216];
        struct v2 v;
        v2_start(&v, 0x21, cases[i].fam);
        v2_put(&v, zeros, cases[i].need - 1);
        char what[64];
        snprintf(what, sizeof what, "fam 0x%02x with %zu address bytes", cases[i].fam,
                 cases[i].need - 1);
        assert_refused(v.b, v2_done(&v), what);
    }
}

static void test_v2_authority_tlv_points_into_the_buffer(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x02, "echo.example.com", 16);
    size_t n = v2_done(&v);
    yd_proxy_header h = parse_ok(v.b, n);
    assert_ptr_equal(h.authority, guard_end(&g) - 16);
    assert_int_equal(h.authority_len, 16);
    assert_memory_equal(h.authority, "echo.example.com", 16);
    assert_null(h.unique_id);
    assert_int_equal(h.ssl, 0);
}

static void test_v2_unique_id_tlv_points_into_the_buffer(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x05, "\x00\x01uid\xff", 6);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.unique_id_len, 6);
    assert_memory_equal(h.unique_id, "\x00\x01uid\xff", 6);
    assert_null(h.authority);
}

static void test_v2_unique_id_of_128_bytes_is_accepted_and_129_refused(void **state)
{
    (void)state;
    unsigned char id[129];
    memset(id, 'u', sizeof id);
    struct v2 v;
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x05, id, 128);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.unique_id_len, 128);
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x05, id, 129);
    assert_refused(v.b, v2_done(&v), "a 129-byte unique ID");
}

/* An SSL TLV: client flags, verify 0, and sub-TLVs version and CN. */
static void put_ssl_tlv(struct v2 *v, unsigned char client)
{
    unsigned char value[64];
    size_t n = 0;
    value[n++] = client;
    memset(value + n, 0, 4);
    n += 4;
    memcpy(value + n, "\x21\x00\x07TLSv1.3", 10); /* PP2_SUBTYPE_SSL_VERSION */
    n += 10;
    /* PP2_SUBTYPE_SSL_CN; octal \006, as "\x06c" would be one hex escape */
    memcpy(value + n, "\x22\x00\006client", 9);
    n += 9;
    v2_tlv(v, 0x20, value, n);
}

static void test_v2_ssl_tlv_with_sub_tlvs_says_ssl(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    put_ssl_tlv(&v, 0x01 | 0x02 | 0x04);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.ssl, 1);
}

static void test_v2_ssl_tlv_without_the_client_ssl_flag_is_not_ssl(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    put_ssl_tlv(&v, 0x02);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_int_equal(h.ssl, 0);
}

static void test_v2_ssl_tlv_shorter_than_its_fixed_fields_is_refused(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\x00\x00\x00", 4);
    assert_refused(v.b, v2_done(&v), "a 4-byte SSL TLV");
}

static void test_v2_ssl_sub_tlv_running_past_its_tlv_is_refused(void **state)
{
    (void)state;
    struct v2 v;
    /* The sub-TLV claims 8 bytes, has 7 inside the SSL TLV; a NOOP after it gives the header
     * the bytes, so only the SSL TLV's own bound catches it. */
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\x00\x00\x00\x00\x21\x00\x08TLSv1.3", 15);
    v2_tlv(&v, 0x04, "pad", 3);
    assert_refused(v.b, v2_done(&v), "a sub-TLV one byte too long");
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x20, "\x01\x00\x00\x00\x00\x21\x00", 7); /* a sub-TLV head cut short */
    v2_tlv(&v, 0x04, "pad", 3);
    assert_refused(v.b, v2_done(&v), "a sub-TLV head cut short");
}

static void test_v2_noop_alpn_and_unknown_tlvs_are_skipped(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x21);
    v2_put_ipv6_block(&v);
    v2_tlv(&v, 0x04, "", 0);
    v2_tlv(&v, 0x01, "h2", 2);
    v2_tlv(&v, 0x04, "\x02\x00\x10", 3); /* a NOOP whose value looks like a TLV head */
    v2_tlv(&v, 0x30, "netns", 5);
    v2_tlv(&v, 0xE0, "custom", 6);
    v2_tlv(&v, 0xFF, "future", 6);
    yd_proxy_header h = parse_ok(v.b, v2_done(&v));
    assert_in6(&h.src, "2001:db8::1", 56324);
    assert_no_tlvs(&h);
}

static void test_v2_every_tlv_at_once(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x01, "http/1.1", 8);
    v2_tlv(&v, 0x02, "sni.example", 11);
    v2_tlv(&v, 0x05, "id-42", 5);
    put_ssl_tlv(&v, 0x01);
    v2_tlv(&v, 0x04, "", 0);
    yd_proxy_header h = parse_ok(v.b, v2_done_with_crc(&v));
    assert_int_equal(h.authority_len, 11);
    assert_memory_equal(h.authority, "sni.example", 11);
    assert_int_equal(h.unique_id_len, 5);
    assert_memory_equal(h.unique_id, "id-42", 5);
    assert_int_equal(h.ssl, 1);
    assert_in4(&h.dst, "198.51.100.11", 443);
}

static void test_v2_correct_crc32c_is_accepted(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.com", 11);
    parse_ok(v.b, v2_done_with_crc(&v));
    v2_start(&v, 0x20, 0x00); /* a LOCAL health check may carry one too */
    parse_ok(v.b, v2_done_with_crc(&v));
}

static void test_v2_crc32c_that_does_not_match_is_refused(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    size_t n = v2_done_with_crc(&v);
    v.b[n - 1] ^= 0x01;
    assert_refused(v.b, n, "a checksum with one bit flipped");
    v.b[n - 1] ^= 0x01;
    v.b[16] ^= 0x01; /* the source address, not the checksum */
    assert_refused(v.b, n, "a header with one bit flipped");
}

static void test_v2_crc32c_of_the_wrong_size_is_refused(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x03, "\x00\x00\x00", 3);
    assert_refused(v.b, v2_done(&v), "a 3-byte CRC32C");
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x03, "\x00\x00\x00\x00\x00", 5);
    assert_refused(v.b, v2_done(&v), "a 5-byte CRC32C");
}

static void test_v2_interpreted_tlv_given_twice_is_refused(void **state)
{
    (void)state;
    static const unsigned char types[] = {0x02, 0x05};
    for (size_t i = 0; i < sizeof types; i++) {
        struct v2 v;
        v2_start(&v, 0x21, 0x00);
        v2_tlv(&v, types[i], "one", 3);
        v2_tlv(&v, types[i], "two", 3);
        assert_refused(v.b, v2_done(&v), "a TLV twice");
    }
    struct v2 v;
    v2_start(&v, 0x21, 0x00);
    put_ssl_tlv(&v, 0x01);
    put_ssl_tlv(&v, 0x00);
    assert_refused(v.b, v2_done(&v), "SSL twice");
}

static void test_v2_tlv_running_past_the_header_is_refused(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x02, "example.com", 11);
    size_t n = v2_done(&v);
    v.b[n - 11 - 1] = 12; /* its length says 12: one byte past the header */
    /* A payload byte follows in the buffer: the parser must not take it as the TLV's. */
    v.b[n] = 'x';
    assert_refused(v.b, n + 1, "a TLV one byte too long");
    v.b[n - 11 - 2] = 0x80; /* 32780 */
    assert_refused(v.b, n + 1, "a TLV far too long");
}

static void test_v2_tlv_head_cut_by_the_header_end_is_refused(void **state)
{
    (void)state;
    for (size_t left = 1; left < 3; left++) {
        struct v2 v;
        v2_start(&v, 0x21, 0x11);
        v2_put_ipv4_block(&v);
        v2_put(&v, "\x04\x00", left);
        assert_refused(v.b, v2_done(&v), "a TLV head cut short");
    }
}

static void test_v2_header_len_is_exact_and_the_payload_is_untouched(void **state)
{
    (void)state;
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x02, "a", 1);
    size_t n = v2_done(&v);
    /* The payload looks like more TLVs, a bad CRC among them: none may count. */
    v2_tlv(&v, 0x03, "\xde\xad\xbe\xef", 4);
    v2_tlv(&v, 0x02, "payload", 7);
    unsigned char copy[sizeof v.b];
    memcpy(copy, v.b, v.n);
    yd_proxy_header h;
    assert_int_equal(parse(v.b, v.n, &h), (long)n);
    assert_int_equal(h.header_len, n);
    assert_int_equal(h.authority_len, 1);
    assert_memory_equal(guard_end(&g) - v.n, copy, v.n);
}

/* Bytes HAProxy 2.6.12 sent (captured from its server connections), for "server ... send-proxy-v2
 * proxy-v2-options crc32c,unique-id,authority,ssl" relaying a plain TCP client: */
static const unsigned char HAPROXY_PROXY_V2[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
    0x21, 0x11, 0x00, 0x1e,                         /* PROXY, TCP over IPv4, 30 bytes */
    0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, /* 127.0.0.1 -> 127.0.0.1 */
    0xe3, 0x0e, 0x49, 0x49,                         /* 58126 -> 18761 */
    0x03, 0x00, 0x04, 0x1c, 0x00, 0x4b, 0x20,       /* CRC32C */
    0x05, 0x00, 0x00,                               /* UNIQUE_ID, empty */
    0x20, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, /* SSL: not over TLS */
};

/* ... and for "check-send-proxy" health checks with "send-proxy-v2 proxy-v2-options crc32c": */
static const unsigned char HAPROXY_LOCAL_V2[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
    0x20, 0x00, 0x00, 0x07,                   /* LOCAL, UNSPEC, 7 bytes */
    0x03, 0x00, 0x04, 0xa9, 0xb8, 0x7e, 0x8f, /* CRC32C */
};

static void test_v2_what_haproxy_sends_for_a_relayed_client_is_accepted(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(HAPROXY_PROXY_V2, sizeof HAPROXY_PROXY_V2);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_in4(&h.src, "127.0.0.1", 58126);
    assert_in4(&h.dst, "127.0.0.1", 18761);
    assert_non_null(h.unique_id);
    assert_int_equal(h.unique_id_len, 0);
    assert_null(h.authority);
    assert_int_equal(h.ssl, 0);
}

static void test_v2_what_haproxy_sends_for_a_health_check_is_local(void **state)
{
    (void)state;
    yd_proxy_header h = parse_ok(HAPROXY_LOCAL_V2, sizeof HAPROXY_LOCAL_V2);
    assert_int_equal(h.local, 1);
    assert_no_address(&h);
    unsigned char bad[sizeof HAPROXY_LOCAL_V2];
    memcpy(bad, HAPROXY_LOCAL_V2, sizeof bad);
    bad[sizeof bad - 1] ^= 0x80; /* its checksum is checked, not just skipped */
    assert_refused(bad, sizeof bad, "HAProxy's health check with a wrong CRC");
}

/* ---- Both: prefixes, other protocols, arguments ---------------------------------------- */

#define MAX_VALID 20

/* Stores header k of valid_headers; returns the next k. */
static size_t keep(unsigned char out[][YD_PROXY_MAX_BYTES], size_t *lens, size_t k,
                   const void *bytes, size_t n)
{
    assert_true(k < MAX_VALID && n <= YD_PROXY_MAX_BYTES);
    memcpy(out[k], bytes, n);
    lens[k] = n;
    return k + 1;
}

/* One valid header of each kind (at most MAX_VALID), with its length in lens. */
static size_t valid_headers(unsigned char out[][YD_PROXY_MAX_BYTES], size_t *lens)
{
    static const char *const lines[] = {
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 56324 443\r\n",
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::1 65535 65535\r\n",
        "PROXY UNKNOWN\r\n",
        "PROXY UNKNOWN anything at all\r\n",
    };
    static const struct {
        unsigned char fam;
        size_t bytes;
    } blocks[] = {{0x00, 0},  {0x11, 12},  {0x12, 12}, {0x21, 36},
                  {0x22, 36}, {0x31, 216}, {0x32, 216}};
    static const unsigned char zeros[216];
    size_t k = 0;
    struct v2 v;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        k = keep(out, lens, k, lines[i], strlen(lines[i]));
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        v2_start(&v, 0x21, blocks[i].fam);
        v2_put(&v, zeros, blocks[i].bytes);
        k = keep(out, lens, k, v.b, v2_done(&v));
    }
    v2_start(&v, 0x20, 0x00);
    k = keep(out, lens, k, v.b, v2_done(&v));
    k = keep(out, lens, k, HAPROXY_PROXY_V2, sizeof HAPROXY_PROXY_V2);
    k = keep(out, lens, k, HAPROXY_LOCAL_V2, sizeof HAPROXY_LOCAL_V2);
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    v2_tlv(&v, 0x02, "sni.example", 11);
    v2_tlv(&v, 0x05, "id", 2);
    put_ssl_tlv(&v, 0x01);
    return keep(out, lens, k, v.b, v2_done_with_crc(&v));
}

static void test_every_truncation_of_a_valid_header_needs_more(void **state)
{
    (void)state;
    static unsigned char headers[MAX_VALID][YD_PROXY_MAX_BYTES];
    size_t lens[MAX_VALID];
    size_t count = valid_headers(headers, lens);
    for (size_t i = 0; i < count; i++) {
        for (size_t n = 0; n < lens[i]; n++) {
            yd_proxy_header h, before;
            memset(&h, 0x5a, sizeof h);
            memcpy(&before, &h, sizeof h);
            long rc = parse(headers[i], n, &h);
            if (rc != 0)
                fail_msg("header %zu cut at %zu of %zu bytes: %ld, expected 0", i, n, lens[i], rc);
            assert_memory_equal(&h, &before, sizeof h);
        }
        parse_ok(headers[i], lens[i]);
    }
}

static void test_every_valid_header_followed_by_payload_gives_its_own_length(void **state)
{
    (void)state;
    static unsigned char headers[MAX_VALID][YD_PROXY_MAX_BYTES];
    size_t lens[MAX_VALID];
    size_t count = valid_headers(headers, lens);
    static const char payload[] = "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0cGET / HTTP/1.1\r\n\r\n";
    for (size_t i = 0; i < count; i++) {
        unsigned char buf[YD_PROXY_MAX_BYTES + sizeof payload];
        memcpy(buf, headers[i], lens[i]);
        memcpy(buf + lens[i], payload, sizeof payload - 1);
        for (size_t extra = 1; extra < sizeof payload; extra++) {
            yd_proxy_header h;
            assert_int_equal(parse(buf, lens[i] + extra, &h), (long)lens[i]);
            assert_int_equal(h.header_len, lens[i]);
        }
    }
}

static void test_other_protocols_are_refused_at_their_first_wrong_byte(void **state)
{
    (void)state;
    assert_refused(TEXT("G"), "HTTP's first byte");
    assert_refused(TEXT("\x16\x03\x01"), "a TLS record");
    assert_refused(TEXT("S"), "SSH's first byte");
    assert_refused(TEXT("PO"), "POST");
    assert_refused(TEXT("PROXY\r\n"), "PROXY alone");
    assert_refused(TEXT("\r\n\r\n\r"), "a v2 signature gone wrong at byte 5");
    assert_refused(TEXT("\x00"), "a NUL byte");
}

static void test_empty_buffer_needs_more(void **state)
{
    (void)state;
    assert_needs_more("", 0, "nothing");
    yd_proxy_header h;
    assert_int_equal(yd_proxy_parse(NULL, 0, &h), 0);
}

static void test_null_arguments_are_einval(void **state)
{
    (void)state;
    yd_proxy_header h;
    assert_int_equal(yd_proxy_parse("PROXY UNKNOWN\r\n", 15, NULL), -EINVAL);
    assert_int_equal(yd_proxy_parse(NULL, 1, &h), -EINVAL);
}

static void test_failed_parse_leaves_the_header_untouched(void **state)
{
    (void)state;
    yd_proxy_header h, before;
    memset(&h, 0x5a, sizeof h);
    memcpy(&before, &h, sizeof h);
    assert_int_equal(parse(TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), &h), -EPROTO);
    assert_memory_equal(&h, &before, sizeof h);
}

/* ---- Formatting and round trips -------------------------------------------------------- */

static void test_format_v1_writes_the_spec_example_line(void **state)
{
    (void)state;
    struct sockaddr_in src = in4("192.168.0.1", 56324), dst = in4("192.168.0.11", 443);
    char buf[YD_PROXY_MAX_BYTES];
    long n = yd_proxy_format(1, &src, &dst, buf, sizeof buf);
    assert_int_equal(n, 47);
    assert_memory_equal(buf, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 47);
}

static void test_format_v2_writes_the_proxy_command_over_tcp(void **state)
{
    (void)state;
    struct sockaddr_in src = in4("192.0.2.1", 56324), dst = in4("198.51.100.11", 443);
    char buf[YD_PROXY_MAX_BYTES];
    struct v2 v;
    v2_start(&v, 0x21, 0x11);
    v2_put_ipv4_block(&v);
    size_t want = v2_done(&v);
    assert_int_equal(yd_proxy_format(2, &src, &dst, buf, sizeof buf), (long)want);
    assert_memory_equal(buf, v.b, want);
}

static void round_trip(int version, const void *src, const void *dst, int family)
{
    char buf[YD_PROXY_MAX_BYTES];
    long n = yd_proxy_format(version, src, dst, buf, sizeof buf);
    assert_true(n > 0);
    yd_proxy_header h = parse_ok(buf, (size_t)n);
    assert_int_equal(h.version, version);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.family, family);
    assert_int_equal(h.socktype, SOCK_STREAM);
    assert_no_tlvs(&h);
    char text[2][INET6_ADDRSTRLEN];
    const void *in[2] = {src, dst};
    const struct sockaddr_storage *out[2] = {&h.src, &h.dst};
    for (int i = 0; i < 2; i++) {
        if (family == AF_INET) {
            const struct sockaddr_in *sin = in[i];
            inet_ntop(AF_INET, &sin->sin_addr, text[i], sizeof text[i]);
            assert_in4(out[i], text[i], ntohs(sin->sin_port));
        } else {
            const struct sockaddr_in6 *sin6 = in[i];
            inet_ntop(AF_INET6, &sin6->sin6_addr, text[i], sizeof text[i]);
            assert_in6(out[i], text[i], ntohs(sin6->sin6_port));
        }
    }
}

static void test_round_trip_v1_ipv4(void **state)
{
    (void)state;
    struct sockaddr_in a = in4("127.0.0.1", 50312), b = in4("10.1.2.3", 7);
    round_trip(1, &a, &b, AF_INET);
    struct sockaddr_in c = in4("0.0.0.0", 0), d = in4("255.255.255.255", 65535);
    round_trip(1, &c, &d, AF_INET);
}

static void test_round_trip_v1_ipv6(void **state)
{
    (void)state;
    struct sockaddr_in6 a = in6("::1", 50312), b = in6("2001:db8::42", 7);
    round_trip(1, &a, &b, AF_INET6);
    struct sockaddr_in6 c = in6("::ffff:192.0.2.1", 1), d = in6("::", 0);
    round_trip(1, &c, &d, AF_INET6);
    struct sockaddr_in6 e = in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    round_trip(1, &e, &e, AF_INET6);
}

static void test_round_trip_v2_ipv4(void **state)
{
    (void)state;
    struct sockaddr_in a = in4("127.0.0.1", 50312), b = in4("10.1.2.3", 7);
    round_trip(2, &a, &b, AF_INET);
}

static void test_round_trip_v2_ipv6(void **state)
{
    (void)state;
    struct sockaddr_in6 a = in6("::1", 50312), b = in6("2001:db8::42", 7);
    round_trip(2, &a, &b, AF_INET6);
    struct sockaddr_in6 c = in6("::ffff:192.0.2.1", 1), d = in6("::", 0);
    round_trip(2, &c, &d, AF_INET6);
}

static void test_format_into_too_small_a_buffer_is_enobufs_and_writes_nothing(void **state)
{
    (void)state;
    struct sockaddr_in6 a = in6("2001:db8::1", 1), b = in6("2001:db8::2", 2);
    for (int version = 1; version <= 2; version++) {
        char full[YD_PROXY_MAX_BYTES];
        long need = yd_proxy_format(version, &a, &b, full, sizeof full);
        assert_true(need > 0);
        for (size_t len = 0; len < (size_t)need; len++) {
            char buf[YD_PROXY_MAX_BYTES];
            memset(buf, '#', sizeof buf);
            assert_int_equal(yd_proxy_format(version, &a, &b, buf, len), -ENOBUFS);
            assert_int_equal(buf[0], '#');
        }
        char exact[YD_PROXY_MAX_BYTES];
        assert_int_equal(yd_proxy_format(version, &a, &b, exact, (size_t)need), need);
    }
}

static void test_format_refuses_bad_versions_families_and_mixed_families(void **state)
{
    (void)state;
    struct sockaddr_in a = in4("127.0.0.1", 1);
    struct sockaddr_in6 b = in6("::1", 2);
    struct sockaddr_un u = {.sun_family = AF_UNIX, .sun_path = "/tmp/x"};
    char buf[YD_PROXY_MAX_BYTES];
    assert_int_equal(yd_proxy_format(0, &a, &a, buf, sizeof buf), -EINVAL);
    assert_int_equal(yd_proxy_format(3, &a, &a, buf, sizeof buf), -EINVAL);
    assert_int_equal(yd_proxy_format(1, &a, &b, buf, sizeof buf), -EINVAL);
    assert_int_equal(yd_proxy_format(2, &b, &a, buf, sizeof buf), -EINVAL);
    assert_int_equal(yd_proxy_format(2, &u, &u, buf, sizeof buf), -EINVAL);
    assert_int_equal(yd_proxy_format(1, NULL, &a, buf, sizeof buf), -EINVAL);
    assert_int_equal(yd_proxy_format(1, &a, NULL, buf, sizeof buf), -EINVAL);
}

/* The guard itself: a read of the byte after a placed buffer faults (else the tests above prove
 * nothing). In a child, whose death by signal (or ASan's exit) is the expected outcome. */
static void test_guard_page_faults_a_read_one_byte_past_the_end(void **state)
{
    (void)state;
    const char *buf = guard_place(&g, "PROXY", 5);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        volatile char c = buf[5];
        (void)c;
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_helper_gives_the_standard_check_value),
        cmocka_unit_test(test_v1_tcp4_gives_both_addresses_and_ports),
        cmocka_unit_test(test_v1_tcp4_extreme_addresses_and_ports),
        cmocka_unit_test(test_v1_tcp6_gives_both_addresses_and_ports),
        cmocka_unit_test(test_v1_tcp6_longest_line_of_104_bytes_is_accepted),
        cmocka_unit_test(test_v1_tcp6_mapped_ipv4_as_inet_ntop_writes_it_is_accepted),
        cmocka_unit_test(test_v1_unknown_alone_is_local),
        cmocka_unit_test(test_v1_unknown_ignores_the_rest_of_its_line),
        cmocka_unit_test(test_v1_line_of_107_bytes_is_accepted),
        cmocka_unit_test(test_v1_line_of_108_bytes_is_refused),
        cmocka_unit_test(test_v1_107_bytes_without_crlf_are_refused),
        cmocka_unit_test(test_v1_wrong_spacing_is_refused),
        cmocka_unit_test(test_v1_missing_fields_are_refused),
        cmocka_unit_test(test_v1_other_protocol_names_are_refused),
        cmocka_unit_test(test_v1_bad_ipv4_addresses_are_refused),
        cmocka_unit_test(test_v1_bad_ipv6_addresses_are_refused),
        cmocka_unit_test(test_v1_ports_over_65535_are_refused),
        cmocka_unit_test(test_v1_ports_with_leading_zeros_or_signs_are_refused),
        cmocka_unit_test(test_v1_line_must_end_with_crlf),
        cmocka_unit_test(test_v1_header_len_is_exact_and_the_payload_is_untouched),
        cmocka_unit_test(test_v2_proxy_tcp_over_ipv4),
        cmocka_unit_test(test_v2_proxy_udp_over_ipv4),
        cmocka_unit_test(test_v2_proxy_tcp_over_ipv6),
        cmocka_unit_test(test_v2_proxy_udp_over_ipv6),
        cmocka_unit_test(test_v2_proxy_unix_stream),
        cmocka_unit_test(test_v2_proxy_unix_datagram),
        cmocka_unit_test(test_v2_proxy_unspec_gives_no_address),
        cmocka_unit_test(test_v2_local_is_local_with_no_address),
        cmocka_unit_test(test_v2_local_skips_the_addresses_it_carries),
        cmocka_unit_test(test_v2_other_versions_and_commands_are_refused),
        cmocka_unit_test(test_v2_other_families_and_protocols_are_refused),
        cmocka_unit_test(test_v2_signature_with_any_byte_changed_is_refused),
        cmocka_unit_test(test_v2_length_past_the_maximum_is_refused_from_the_fixed_bytes),
        cmocka_unit_test(test_v2_header_of_the_maximum_length_is_accepted),
        cmocka_unit_test(test_v2_length_too_short_for_its_addresses_is_refused),
        cmocka_unit_test(test_v2_authority_tlv_points_into_the_buffer),
        cmocka_unit_test(test_v2_unique_id_tlv_points_into_the_buffer),
        cmocka_unit_test(test_v2_unique_id_of_128_bytes_is_accepted_and_129_refused),
        cmocka_unit_test(test_v2_ssl_tlv_with_sub_tlvs_says_ssl),
        cmocka_unit_test(test_v2_ssl_tlv_without_the_client_ssl_flag_is_not_ssl),
        cmocka_unit_test(test_v2_ssl_tlv_shorter_than_its_fixed_fields_is_refused),
        cmocka_unit_test(test_v2_ssl_sub_tlv_running_past_its_tlv_is_refused),
        cmocka_unit_test(test_v2_noop_alpn_and_unknown_tlvs_are_skipped),
        cmocka_unit_test(test_v2_every_tlv_at_once),
        cmocka_unit_test(test_v2_correct_crc32c_is_accepted),
        cmocka_unit_test(test_v2_crc32c_that_does_not_match_is_refused),
        cmocka_unit_test(test_v2_crc32c_of_the_wrong_size_is_refused),
        cmocka_unit_test(test_v2_interpreted_tlv_given_twice_is_refused),
        cmocka_unit_test(test_v2_tlv_running_past_the_header_is_refused),
        cmocka_unit_test(test_v2_tlv_head_cut_by_the_header_end_is_refused),
        cmocka_unit_test(test_v2_header_len_is_exact_and_the_payload_is_untouched),
        cmocka_unit_test(test_v2_what_haproxy_sends_for_a_relayed_client_is_accepted),
        cmocka_unit_test(test_v2_what_haproxy_sends_for_a_health_check_is_local),
        cmocka_unit_test(test_every_truncation_of_a_valid_header_needs_more),
        cmocka_unit_test(test_every_valid_header_followed_by_payload_gives_its_own_length),
        cmocka_unit_test(test_other_protocols_are_refused_at_their_first_wrong_byte),
        cmocka_unit_test(test_empty_buffer_needs_more),
        cmocka_unit_test(test_null_arguments_are_einval),
        cmocka_unit_test(test_failed_parse_leaves_the_header_untouched),
        cmocka_unit_test(test_format_v1_writes_the_spec_example_line),
        cmocka_unit_test(test_format_v2_writes_the_proxy_command_over_tcp),
        cmocka_unit_test(test_round_trip_v1_ipv4),
        cmocka_unit_test(test_round_trip_v1_ipv6),
        cmocka_unit_test(test_round_trip_v2_ipv4),
        cmocka_unit_test(test_round_trip_v2_ipv6),
        cmocka_unit_test(test_format_into_too_small_a_buffer_is_enobufs_and_writes_nothing),
        cmocka_unit_test(test_format_refuses_bad_versions_families_and_mixed_families),
        cmocka_unit_test(test_guard_page_faults_a_read_one_byte_past_the_end),
    };
    return cmocka_run_group_tests_name("proxy", tests, open_guard, close_guard);
}
