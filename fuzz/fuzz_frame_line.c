/*
 * yd_frame_line over a stream cut at arbitrary points, as a connection's reader sees it.
 * Input: byte 0 picks max_line (1..256), byte 1 seeds the chunk sizes, the rest is the
 * stream. Checked: every line ends with its only '\n' and fits max_line; 0 only when more
 * bytes could still make a line; -EMSGSIZE only when they could not; the lines delivered
 * are the stream, in order; the answer never depends on bytes past max_line; and
 * yd_ascii_upper upper-cases exactly a-z of each line.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "yodel.h"

/* An exact-size heap copy, so that ASan reports any read past len. */
static long frame_exact(const char *buf, size_t len, size_t max_line)
{
    char *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, buf, len);
    long n = yd_frame_line(copy, len, max_line);
    free(copy);
    return n;
}

/* The same question with only the first max_line bytes in memory: reading more crashes. */
static long frame_window(const char *buf, size_t len, size_t max_line)
{
    size_t window = len < max_line ? len : max_line;
    char *copy = malloc(window > 0 ? window : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, buf, window);
    long n = yd_frame_line(copy, len, max_line);
    free(copy);
    return n;
}

static void check_upper(const char *line, size_t n)
{
    char out[256], in_place[256];
    memcpy(in_place, line, n);
    yd_ascii_upper(out, line, n);
    yd_ascii_upper(in_place, in_place, n);
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        char want = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
        if (out[i] != want || in_place[i] != want)
            abort();
    }
}

/* Returns how many bytes were consumed as lines, or -1 after -EMSGSIZE. */
static long drain_lines(const char *buf, size_t len, size_t max_line)
{
    size_t off = 0;
    for (;;) {
        long n = frame_exact(buf + off, len - off, max_line);
        if (n != frame_window(buf + off, len - off, max_line))
            abort();
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t want_len = nl != NULL ? (size_t)(nl - (buf + off)) + 1 : 0;
        if (n > 0) {
            if ((size_t)n > max_line || (size_t)n != want_len || buf[off + (size_t)n - 1] != '\n')
                abort();
            check_upper(buf + off, (size_t)n);
            off += (size_t)n;
            continue;
        }
        if (n == 0) {
            if (nl != NULL || len - off > max_line)
                abort();
            return (long)off;
        }
        if (n != -EMSGSIZE || (nl != NULL && want_len <= max_line) ||
            (nl == NULL && len - off <= max_line))
            abort();
        return -1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_line = (size_t)data[0] + 1;
    uint32_t rng = data[1] * 2654435761u + 1;
    const char *stream = (const char *)data + 2;
    size_t total = size - 2;

    /* The reader's buffer: never more than max_line plus one chunk, as in conn.c. */
    char buf[256 + 64];
    size_t len = 0;
    size_t fed = 0;
    size_t consumed = 0;
    while (fed < total) {
        rng = rng * 1103515245u + 12345u;
        size_t chunk = 1 + (rng >> 16) % 64;
        if (chunk > total - fed)
            chunk = total - fed;
        memcpy(buf + len, stream + fed, chunk);
        len += chunk;
        fed += chunk;
        long kept = drain_lines(buf, len, max_line);
        if (kept < 0)
            return 0;
        if (memcmp(buf, stream + consumed, (size_t)kept) != 0)
            abort();
        consumed += (size_t)kept;
        memmove(buf, buf + kept, len - (size_t)kept);
        len -= (size_t)kept;
        if (len > max_line)
            abort();
    }
    if (consumed + len != total)
        abort();
    return 0;
}
