/* JSON output of yodel bench: one string writer, so every string is escaped the same way. */
#ifndef YODEL_BENCH_JSON_H
#define YODEL_BENCH_JSON_H

#include <stddef.h>
#include <stdio.h>

/*
 * Writes s as a JSON string (RFC 8259): quotes, backslashes and control characters escaped;
 * well-formed UTF-8 as it is; any other byte (a Unix path may hold any) as the code point of
 * the same value, \u00XX.
 */
void json_string(FILE *f, const char *s);

/* The length of the well-formed UTF-8 sequence at p (RFC 3629), or 0 if it is not one. */
size_t utf8_length(const unsigned char *p);

#endif
