/*
 * Lines, and nothing about where their bytes come from: the framing rules of the line
 * modes as pure functions over a buffer, so they can be unit-tested and fuzzed alone.
 */
#include <errno.h>
#include <string.h>

#include "yodel.h"

/*
 * Only the first max_line bytes are searched, whatever len is: a client streaming bytes
 * without a '\n' costs a bounded scan per call, never one over everything it has sent.
 *
 * When there is no '\n', exactly max_line bytes still mean "need more" (0), as the header
 * says: at end of stream those bytes are a last line without '\n' of max_line bytes, which
 * is within the limit. Past max_line bytes without a '\n', no ending can keep it within.
 */
long yd_frame_line(const char *buf, size_t len, size_t max_line)
{
    size_t window = len < max_line ? len : max_line;
    const char *nl = window > 0 ? memchr(buf, '\n', window) : NULL;
    if (nl != NULL)
        return (long)(nl - buf) + 1;
    if (len <= max_line)
        return 0;
    return -EMSGSIZE;
}

/* Byte by byte, not toupper(): the locale must not change what goes on the wire. */
void yd_ascii_upper(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        dst[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
}
