/* JSON strings for yodel bench's reports. */
#include "bench_json.h"

#include <string.h>

size_t utf8_length(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || p[0] > 0xf4)
        return 0;
    /* Stops at the first byte that is not a continuation, the terminating NUL included. */
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong three- and four-byte forms, UTF-16 surrogates, beyond U+10FFFF. */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

void json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p != '\0') {
        size_t n = utf8_length(p);
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20 || *p == 0x7f || n == 0)
            fprintf(f, "\\u%04x", *p);
        else
            fwrite(p, 1, n, f);
        p += n > 0 ? n : 1;
    }
    fputc('"', f);
}

/* ---- the reader ---- */

typedef struct parser {
    const char *s;
    size_t len;
    size_t pos;
    json_token *tok;
    size_t n;
    size_t max;
} parser;

static void skip_ws(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(const parser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* After the opening quote: to the closing one, checking escapes and control characters. */
static int scan_string(parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos++];
        if (c == '"')
            return 0;
        if (c < 0x20)
            return -1;
        if (c != '\\')
            continue;
        int e = peek(p);
        p->pos++;
        if (e == 'u') {
            for (int i = 0; i < 4; i++, p->pos++)
                if (!is_hex(peek(p)))
                    return -1;
        } else if (e < 0 || strchr("\"\\/bfnrt", e) == NULL) {
            return -1;
        }
    }
    return -1;
}

static int scan_digits(parser *p)
{
    if (!is_digit(peek(p)))
        return -1;
    while (is_digit(peek(p)))
        p->pos++;
    return 0;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(parser *p)
{
    if (peek(p) == '-')
        p->pos++;
    if (peek(p) == '0')
        p->pos++;
    else if (scan_digits(p) < 0)
        return -1;
    if (peek(p) == '.') {
        p->pos++;
        if (scan_digits(p) < 0)
            return -1;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-')
            p->pos++;
        if (scan_digits(p) < 0)
            return -1;
    }
    return 0;
}

static int scan_word(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return -1;
    p->pos += n;
    return 0;
}

static int parse_value(parser *p, int depth);

/* The members of an object or the elements of an array, after its opening bracket. */
static int parse_items(parser *p, int depth, int object)
{
    int close = object ? '}' : ']';
    skip_ws(p);
    if (peek(p) == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (object) {
            if (peek(p) != '"' || parse_value(p, depth) < 0)
                return -1;
            skip_ws(p);
            if (peek(p) != ':')
                return -1;
            p->pos++;
        }
        if (parse_value(p, depth) < 0)
            return -1;
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == close)
            return 0;
        if (c != ',')
            return -1;
    }
}

static int parse_value(parser *p, int depth)
{
    skip_ws(p);
    if (p->n == p->max || depth > JSON_MAX_DEPTH)
        return -1;
    json_token *t = &p->tok[p->n++];
    int c = peek(p), rc;
    t->start = p->pos;
    if (c == '{' || c == '[') {
        p->pos++;
        t->type = c == '{' ? JSON_OBJECT : JSON_ARRAY;
        rc = parse_items(p, depth + 1, c == '{');
    } else if (c == '"') {
        p->pos++;
        t->type = JSON_STRING;
        t->start = p->pos;
        rc = scan_string(p);
    } else if (c == 't' || c == 'f') {
        t->type = JSON_BOOL;
        rc = scan_word(p, c == 't' ? "true" : "false");
    } else if (c == 'n') {
        t->type = JSON_NULL;
        rc = scan_word(p, "null");
    } else {
        t->type = JSON_NUMBER;
        rc = scan_number(p);
    }
    t->len = p->pos - t->start - (t->type == JSON_STRING && rc == 0);
    t->next = p->n;
    return rc;
}

long json_parse(const char *s, size_t len, json_token *tok, size_t max)
{
    parser p = {.s = s, .len = len, .tok = tok, .max = max};
    if (parse_value(&p, 0) < 0)
        return -1;
    skip_ws(&p);
    return p.pos == len ? (long)p.n : -1;
}

int json_is(const char *s, const json_token *t, const char *text)
{
    return t->type == JSON_STRING && t->len == strlen(text) &&
           memcmp(s + t->start, text, t->len) == 0;
}

long json_member(const char *s, const json_token *tok, long obj, const char *key)
{
    if (tok[obj].type != JSON_OBJECT)
        return -1;
    /* Members follow the object: key, value, key, value ... until its subtree ends. */
    for (size_t i = (size_t)obj + 1; i < tok[obj].next; i = tok[i + 1].next)
        if (json_is(s, &tok[i], key))
            return (long)i + 1;
    return -1;
}
