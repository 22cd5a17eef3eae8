/*
 * JSON in yodel bench: one string writer, so every string is escaped the same way; and one
 * reader, for the summaries yodel bench merge and compare read back.
 */
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

/*
 * The reader: a strict RFC 8259 parser, pure over a buffer, allocating nothing: each value
 * becomes a token in the caller's array, in document order (an object's members as key,
 * value, key, value ...). Strings are not unescaped: a token spans its raw text.
 */
typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_token {
    json_type type;
    size_t start; /* the value's text in the buffer: a string's without its quotes */
    size_t len;
    size_t next; /* the index of the first token after this value (and all it holds) */
} json_token;

/* Nesting deeper than this is refused (the parser recurses). */
#define JSON_MAX_DEPTH 32

/*
 * Parses s[0..len), one JSON value with optional whitespace around it. Returns the number
 * of tokens (the value is token 0), or -1 if the text is not one JSON value, nests deeper
 * than JSON_MAX_DEPTH or needs more than max tokens.
 */
long json_parse(const char *s, size_t len, json_token *tok, size_t max);
/* The token of member key's value in the object at tok[obj], or -1 if it has none. */
long json_member(const char *s, const json_token *tok, long obj, const char *key);
/* Whether the string token is exactly text. */
int json_is(const char *s, const json_token *t, const char *text);

#endif
