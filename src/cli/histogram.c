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

uint64_t hist_bucket_high(unsigned index)
{
    return hist_bucket_low(index) + bucket_width(index) - 1;
}

static double bucket_middle(unsigned index)
{
    return (double)hist_bucket_low(index) + (double)(bucket_width(index) - 1) / 2.0;
}

double hist_stddev(const histogram *h)
{
    if (h->count == 0)
        return 0;
    double mean = hist_mean(h), total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        double dev = bucket_middle(i) - mean;
        total += dev * dev * (double)h->buckets[i];
    }
    return sqrt(total / (double)h->count);
}

void hist_diff(histogram *out, const histogram *now, const histogram *before)
{
    hist_reset(out);
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t n = now->buckets[i] - before->buckets[i];
        if (n == 0)
            continue;
        out->buckets[i] = n;
        if (out->count == 0)
            out->min = hist_bucket_low(i);
        out->max = hist_bucket_high(i);
        out->count += n;
    }
    out->sum = now->sum - before->sum;
}

/*
 * The percentile to report after level (in %), as HdrHistogram's percentile iterator steps:
 * ticks steps per halving of the distance to 100 %.
 */
static double next_level(double level, int ticks)
{
    double half_distance = pow(2, floor(log(100.0 / (100.0 - level)) / log(2)) + 1);
    return level + 100.0 / (ticks * half_distance);
}

static int hgrm_row(FILE *f, uint64_t value, double scale, double level, uint64_t seen)
{
    double p = level / 100.0;
    return fprintf(f, "%12.3f %12f %12llu %12.2f\n", (double)value / scale, p,
                   (unsigned long long)seen, 1.0 / (1.0 - p));
}

/* The rows: a bucket gets a row for every level its counts reach, the last bucket one. */
static int hgrm_rows(const histogram *h, FILE *f, double scale, unsigned *last)
{
    double level = 0;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS && seen < h->count; i++) {
        if (h->buckets[i] == 0)
            continue;
        seen += h->buckets[i];
        *last = i;
        double reached = 100.0 * (double)seen / (double)h->count;
        do {
            if (level > reached)
                break;
            if (hgrm_row(f, hist_bucket_high(i), scale, level, seen) < 0)
                return -1;
            level = next_level(level, 5);
        } while (seen < h->count);
    }
    return 0;
}

int hist_write_hgrm(const histogram *h, FILE *f, double scale)
{
    unsigned last = 0;
    if (fprintf(f, "%12s %12s %12s %12s\n\n", "Value", "Percentile", "TotalCount",
                "1/(1-Percentile)") < 0 ||
        hgrm_rows(h, f, scale, &last) < 0)
        return -1;
    if (h->count > 0 && hgrm_row(f, hist_bucket_high(last), scale, 100.0, h->count) < 0)
        return -1;
    if (fprintf(f,
                "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n"
                "#[Max     = %12.3f, Total count    = %12llu]\n"
                "#[Buckets = %12d, SubBuckets     = %12d]\n",
                hist_mean(h) / scale, hist_stddev(h) / scale,
                h->count > 0 ? (double)h->max / scale : 0.0, (unsigned long long)h->count,
                HIST_HDR_BUCKETS, HIST_HDR_SUB_BUCKETS) < 0)
        return -1;
    return 0;
}
