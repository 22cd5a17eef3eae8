/*
 * yd_parse_duration_ms on arbitrary text. Checked: a result is at most ~100 years; it is
 * the exact value rounded down (compared with long double arithmetic, within its error);
 * it is 0 only for a zero duration; and "<result>ms" parses back to the same value.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yodel.h"

#define MAX_DURATION_MS (100ull * 365 * 24 * 3600 * 1000)

static long double unit_ms(const char *unit)
{
    if (strcmp(unit, "ms") == 0)
        return 1;
    if (strcmp(unit, "m") == 0)
        return 60000;
    if (strcmp(unit, "h") == 0)
        return 3600000;
    return 1000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';

    uint64_t ms = 0;
    if (yd_parse_duration_ms(text, &ms) == 0) {
        if (ms > MAX_DURATION_MS)
            abort();
        char *unit;
        long double exact = strtold(text, &unit) * unit_ms(unit);
        /* long double has 64 bits of mantissa: plenty below 2^42 ms, with slack for the
         * rounding of strtold and of the multiplication. */
        if (exact - (long double)ms >= 1.0L + 1e-6L || (long double)ms > exact + 1e-6L)
            abort();
        if (ms == 0 && strpbrk(text, "123456789") != NULL)
            abort();
        char back[32];
        uint64_t again = 0;
        snprintf(back, sizeof back, "%llums", (unsigned long long)ms);
        if (yd_parse_duration_ms(back, &again) != 0 || again != ms)
            abort();
    }
    free(text);
    return 0;
}
