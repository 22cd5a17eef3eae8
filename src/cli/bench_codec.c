/* yodel bench's messages: see bench_codec.h for their layout. */
#include "bench_codec.h"

#include <string.h>

static const char hex_digits[] = "0123456789abcdef";

static void put_hex(char *dst, uint64_t v, unsigned digits)
{
    for (unsigned i = digits; i-- > 0; v >>= 4)
        dst[i] = hex_digits[v & 15];
}

static int get_hex(const char *src, unsigned digits, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < digits; i++) {
        char ch = src[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* How many header bytes a message of this size carries: the final '\n' comes first. */
static size_t header_len(size_t size)
{
    return size - 1 < CODEC_HEADER_LEN ? size - 1 : CODEC_HEADER_LEN;
}

void codec_fill_template(char *msg, size_t size, uint32_t index)
{
    char header[CODEC_HEADER_LEN];
    put_hex(header, 0, CODEC_SEQ_DIGITS);
    put_hex(header + CODEC_SEQ_DIGITS, index, CODEC_INDEX_DIGITS);
    size_t h = header_len(size);
    memcpy(msg, header, h);
    for (size_t i = h; i + 1 < size; i++)
        msg[i] = (char)('!' + (i * 7 + index * 13) % 94);
    msg[size - 1] = '\n';
}

unsigned codec_seq_digits(size_t size)
{
    size_t h = header_len(size);
    return h < CODEC_SEQ_DIGITS ? (unsigned)h : CODEC_SEQ_DIGITS;
}

uint64_t codec_seq_mask(size_t size)
{
    return (1ull << (4 * codec_seq_digits(size))) - 1;
}

void codec_put_seq(char *msg, size_t size, uint64_t seq)
{
    put_hex(msg, seq, codec_seq_digits(size));
}

int codec_get_seq(const char *msg, size_t size, uint64_t *seq)
{
    return get_hex(msg, codec_seq_digits(size), seq);
}

int codec_piece_matches(const char *tmpl, size_t size, uint64_t seq, size_t off, const char *data,
                        size_t len)
{
    unsigned hs = codec_seq_digits(size);
    if (off < hs) {
        char digits[CODEC_SEQ_DIGITS];
        size_t n = hs - off < len ? hs - off : len;
        put_hex(digits, seq, hs);
        if (memcmp(data, digits + off, n) != 0)
            return 0;
        data += n;
        off += n;
        len -= n;
    }
    return len == 0 || memcmp(data, tmpl + off, len) == 0;
}
