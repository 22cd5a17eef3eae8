/*
 * Pure parsers for the strings a user types: addresses, durations and sizes. Nothing here
 * allocates, does I/O or touches global state, so each function can be unit-tested and
 * fuzzed alone. Every parser is strict: the whole string must match, with no surrounding
 * whitespace, sign or trailing garbage, and on failure *out is left untouched.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "yodel.h"

/* About 100 years: far beyond any sane timeout, and far below what a uint64_t holds. */
#define MAX_DURATION_MS (100ull * 365 * 24 * 3600 * 1000)

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A decimal port, 0..65535: digits only (no sign, no spaces), leading zeros allowed. */
static int parse_port(const char *s, uint16_t *out)
{
    uint32_t port = 0;
    if (*s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        if (!is_digit(*s))
            return -EINVAL;
        port = port * 10 + (uint32_t)(*s - '0');
        if (port > 65535) /* stop before a long run of digits can wrap */
            return -EINVAL;
    }
    *out = (uint16_t)port;
    return 0;
}

/*
 * A host name or IPv4 address, as it appears before ":PORT". The characters are kept to
 * those of DNS names and dotted quads so that a host never contains the ':' that would make
 * "HOST:PORT" ambiguous (IPv6 must be bracketed), nor spaces or control bytes that would
 * turn into confusing log lines.
 */
static bool is_host_char(char c)
{
    return is_alnum(c) || c == '.' || c == '-' || c == '_';
}

/*
 * The inside of "[...]": an IPv6 address, optionally with a "%zone" (fe80::1%eth0). It must
 * contain a ':' so that "[127.0.0.1]:80" is not silently taken for IPv6.
 */
static bool is_ipv6_literal(const char *s, size_t n)
{
    bool colon = false;
    size_t i = 0;
    for (; i < n && s[i] != '%'; i++) {
        if (s[i] == ':')
            colon = true;
        else if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f') &&
                 !(s[i] >= 'A' && s[i] <= 'F') && s[i] != '.')
            return false;
    }
    if (i < n) { /* a zone: an interface name or number, not empty */
        if (i + 1 == n)
            return false;
        for (i++; i < n; i++) {
            if (!is_host_char(s[i]))
                return false;
        }
    }
    return colon;
}

/* "HOST:PORT" or "[V6]:PORT" into addr->host and addr->port. */
static int parse_host_port(const char *s, yd_addr *addr)
{
    const char *host = s;
    size_t host_len;
    const char *colon;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        host = s + 1;
        host_len = (size_t)(close - host);
        if (!is_ipv6_literal(host, host_len))
            return -EINVAL;
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        host_len = (size_t)(colon - s);
        for (size_t i = 0; i < host_len; i++) {
            if (!is_host_char(s[i]))
                return -EINVAL;
        }
    }
    if (host_len == 0 || host_len >= sizeof addr->host)
        return -EINVAL;
    if (parse_port(colon + 1, &addr->port) < 0)
        return -EINVAL;
    memcpy(addr->host, host, host_len);
    addr->host[host_len] = '\0';
    return 0;
}

/*
 * Any byte but NUL is allowed in a Unix socket path; it must be non-empty and leave room for
 * the NUL in sun_path, which is the size of yd_addr.path.
 */
static int parse_unix_path(const char *s, yd_addr *addr)
{
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof addr->path)
        return -EINVAL;
    memcpy(addr->path, s, len + 1);
    return 0;
}

int yd_addr_parse(const char *text, yd_addr *out)
{
    yd_addr addr;
    int rc;
    if (text == NULL || out == NULL)
        return -EINVAL;
    /* Filled in a local copy so that a failed parse leaves *out as it was. */
    memset(&addr, 0, sizeof addr);
    /* "unix://" is tried first and stripped once, so "unix:///run/y.sock" is /run/y.sock.
     * A path that itself starts with "//" must therefore be written "unix:////x": whoever
     * prints an address (yd_server_address) has to use "unix://" + path for such a path or
     * it will not parse back to the same socket. */
    if (starts_with(text, "unix://")) {
        addr.transport = YD_UNIX;
        rc = parse_unix_path(text + strlen("unix://"), &addr);
    } else if (starts_with(text, "unix:")) {
        addr.transport = YD_UNIX;
        rc = parse_unix_path(text + strlen("unix:"), &addr);
    } else if (starts_with(text, "tls+unix:")) {
        addr.transport = YD_UNIX;
        addr.tls = 1;
        rc = parse_unix_path(text + strlen("tls+unix:"), &addr);
    } else if (starts_with(text, "tls://")) {
        addr.transport = YD_TCP;
        addr.tls = 1;
        rc = parse_host_port(text + strlen("tls://"), &addr);
    } else if (starts_with(text, "udp://")) {
        addr.transport = YD_UDP;
        rc = parse_host_port(text + strlen("udp://"), &addr);
    } else if (starts_with(text, "tcp://")) {
        addr.transport = YD_TCP;
        rc = parse_host_port(text + strlen("tcp://"), &addr);
    } else {
        addr.transport = YD_TCP;
        rc = parse_host_port(text, &addr);
    }
    if (rc < 0)
        return rc;
    *out = addr;
    return 0;
}

/* Milliseconds per unit, or 0 for an unknown unit. Units are lower-case, as in "500ms". */
static uint64_t duration_unit_ms(const char *unit)
{
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        return 1000;
    if (strcmp(unit, "ms") == 0)
        return 1;
    if (strcmp(unit, "m") == 0)
        return 60 * 1000;
    if (strcmp(unit, "h") == 0)
        return 3600 * 1000;
    return 0;
}

/*
 * floor(0.DIGITS * unit_ms), exactly, for any number of digits: the digits are multiplied
 * by unit_ms from the last one to the first as in long multiplication, and the carry out of
 * the first digit is the integer part. The carry stays below unit_ms, so nothing overflows.
 */
static uint64_t fraction_times(const char *digits, size_t n, uint64_t unit_ms)
{
    uint64_t carry = 0;
    while (n-- > 0)
        carry = ((uint64_t)(digits[n] - '0') * unit_ms + carry) / 10;
    return carry;
}

/*
 * Grammar: DIGITS [ "." DIGITS ] [ "ms" | "s" | "m" | "h" ]; no unit means seconds. The
 * result is rounded down to whole milliseconds, except that a non-zero duration below 1 ms
 * ("0.0001s", "0.5ms") is rejected rather than rounded to 0: a 0 usually means "no timeout"
 * or "no delay", and a tiny value silently becoming "none" would be a surprise. ".5" and
 * "5." are rejected too: digits are required on both sides of the point. Values above about
 * 100 years are rejected, which also keeps every product below 2^64.
 */
int yd_parse_duration_ms(const char *text, uint64_t *out_ms)
{
    uint64_t whole = 0;
    const char *s = text;
    const char *frac = NULL;
    size_t frac_len = 0;
    bool nonzero = false;
    if (text == NULL || out_ms == NULL || !is_digit(*s))
        return -EINVAL;
    for (; is_digit(*s); s++) {
        whole = whole * 10 + (uint64_t)(*s - '0');
        if (whole > MAX_DURATION_MS)
            return -EINVAL;
        nonzero |= *s != '0';
    }
    if (*s == '.') {
        frac = ++s;
        for (; is_digit(*s); s++)
            nonzero |= *s != '0';
        frac_len = (size_t)(s - frac);
        if (frac_len == 0)
            return -EINVAL;
    }
    uint64_t unit_ms = duration_unit_ms(s);
    if (unit_ms == 0 || whole > MAX_DURATION_MS / unit_ms)
        return -EINVAL;
    uint64_t ms = whole * unit_ms + fraction_times(frac, frac_len, unit_ms);
    if (ms > MAX_DURATION_MS || (ms == 0 && nonzero))
        return -EINVAL;
    *out_ms = ms;
    return 0;
}

/*
 * Grammar: DIGITS [ k | m | g ] [ b ], case-insensitive, 1024-based: "512", "512b", "64k",
 * "64KB", "1M", "2g". No decimals, no sign, no spaces, nothing that does not fit a uint64_t.
 */
int yd_parse_size(const char *text, uint64_t *out_bytes)
{
    uint64_t n = 0;
    uint64_t unit = 1;
    const char *s = text;
    if (text == NULL || out_bytes == NULL || !is_digit(*s))
        return -EINVAL;
    for (; is_digit(*s); s++) {
        uint64_t digit = (uint64_t)(*s - '0');
        if (n > (UINT64_MAX - digit) / 10)
            return -EINVAL;
        n = n * 10 + digit;
    }
    switch (*s) {
    case 'k':
    case 'K':
        unit = 1024ull;
        s++;
        break;
    case 'm':
    case 'M':
        unit = 1024ull * 1024;
        s++;
        break;
    case 'g':
    case 'G':
        unit = 1024ull * 1024 * 1024;
        s++;
        break;
    default:
        break;
    }
    if (*s == 'b' || *s == 'B')
        s++;
    if (*s != '\0' || n > UINT64_MAX / unit)
        return -EINVAL;
    *out_bytes = n * unit;
    return 0;
}

int yd_addr_format(const yd_addr *addr, char *buf, size_t len)
{
    int n;
    if (addr->transport == YD_UNIX && addr->tls) {
        n = snprintf(buf, len, "tls+unix:%s", addr->path); /* never stripped twice */
    } else if (addr->transport == YD_UNIX) {
        /* "unix://" is stripped once by the parser: a path starting with "//" needs it. */
        n = snprintf(
            buf, len, "%s%s",
            addr->path[0] == '/' && addr->path[1] == '/' ? "unix://" : "unix:", addr->path);
    } else {
        const char *scheme = addr->transport == YD_UDP ? "udp" : addr->tls ? "tls" : "tcp";
        int v6 = strchr(addr->host, ':') != NULL;
        n = snprintf(buf, len, "%s://%s%s%s:%u", scheme, v6 ? "[" : "", addr->host, v6 ? "]" : "",
                     (unsigned)addr->port);
    }
    return n < 0 || (size_t)n >= len ? -ENOBUFS : n;
}
