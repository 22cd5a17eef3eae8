/* Log-linear histogram: see histogram.h for the error bound. */
#include "histogram.h"

#include <math.h>
#include <string.h>

void hist_reset(histogram *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t value)
{
    if (value >= (1ull << HIST_MAX_BITS))
        value = (1ull << HIST_MAX_BITS) - 1;
    if (value < HIST_SUB_COUNT)
        return (unsigned)value;
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - HIST_SUB_BITS;
    /* value >> shift lies in [SUB_COUNT, 2 * SUB_COUNT): the top bits of the value. */
    return (shift + 1) * HIST_SUB_COUNT + (unsigned)(value >> shift) - HIST_SUB_COUNT;
}

uint64_t hist_bucket_low(unsigned index)
{
    if (index < HIST_SUB_COUNT)
        return index;
    unsigned shift = index / HIST_SUB_COUNT - 1;
    uint64_t top = HIST_SUB_COUNT + index % HIST_SUB_COUNT;
    return top << shift;
}

static uint64_t bucket_width(unsigned index)
{
    return index < HIST_SUB_COUNT ? 1 : 1ull << (index / HIST_SUB_COUNT - 1);
}

void hist_record(histogram *h, uint64_t value)
{
    h->buckets[hist_index(value)]++;
    h->count++;
    h->sum += (double)value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void hist_merge(histogram *dst, const histogram *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const histogram *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen < rank)
            continue;
        uint64_t v = hist_bucket_low(i) + bucket_width(i) / 2;
        if (v < h->min)
            return h->min;
        return v > h->max ? h->max : v;
    }
    return h->max;
}

double hist_mean(const histogram *h)
{
    return h->count == 0 ? 0 : h->sum / (double)h->count;
}
