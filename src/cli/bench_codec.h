/*
 * The messages of yodel bench: SIZE bytes, a header with the message's sequence number and
 * its connection's index in hex, printable bytes that depend on the connection, and a final
 * '\n' (the only one, so line-mode servers echo it too). Pure functions, no allocation: a
 * connection keeps one template and rewrites its sequence digits before each send.
 */
#ifndef YODEL_BENCH_CODEC_H
#define YODEL_BENCH_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define CODEC_SEQ_DIGITS   12
#define CODEC_INDEX_DIGITS 8
#define CODEC_HEADER_LEN   (CODEC_SEQ_DIGITS + CODEC_INDEX_DIGITS)
/* The smallest message: one header digit and the '\n'. */
#define CODEC_MIN_SIZE 2

/*
 * Writes the template of connection index into msg (size >= CODEC_MIN_SIZE bytes), with
 * sequence number 0. A message shorter than the header keeps the header's start.
 */
void codec_fill_template(char *msg, size_t size, uint32_t index);

/*
 * How many hex digits of the sequence number a message of this size carries (the low ones,
 * so even a 2-byte message tells its neighbours apart), and the numbers it can tell apart:
 * the rest wrap around.
 */
unsigned codec_seq_digits(size_t size);
uint64_t codec_seq_mask(size_t size);

/* Writes seq's digits into a message or template. */
void codec_put_seq(char *msg, size_t size, uint64_t seq);

/* Reads the (masked) sequence number of a message: 0, or -1 if the header is not hex. */
int codec_get_seq(const char *msg, size_t size, uint64_t *seq);

/*
 * Whether data is bytes off .. off + len of message seq of the connection whose template is
 * tmpl (any sequence digits): echoes are checked piece by piece where they land.
 * off + len must not pass size.
 */
int codec_piece_matches(const char *tmpl, size_t size, uint64_t seq, size_t off, const char *data,
                        size_t len);

#endif
