/*
 * yd_parse_size on arbitrary text. Checked: a result equals the leading number times its
 * suffix's power of 1024 without overflow, and its decimal form parses back to it.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yodel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    uint64_t n = 0;
    if (yd_parse_size(text, &n) == 0) {
        if (!isdigit((unsigned char)text[0]))
            abort();
        char *suffix;
        errno = 0;
        unsigned long long number = strtoull(text, &suffix, 10);
        if (errno != 0)
            abort();
        uint64_t unit = 1;
        switch (tolower((unsigned char)*suffix)) {
        case 'k':
            unit = 1ull << 10;
            break;
        case 'm':
            unit = 1ull << 20;
            break;
        case 'g':
            unit = 1ull << 30;
            break;
        default:
            break;
        }
        uint64_t want;
        if (__builtin_mul_overflow((uint64_t)number, unit, &want) || want != n)
            abort();
        char back[32];
        uint64_t again = 0;
        snprintf(back, sizeof back, "%llu", (unsigned long long)n);
        if (yd_parse_size(back, &again) != 0 || again != n)
            abort();
    }
    free(text);
    return 0;
}
