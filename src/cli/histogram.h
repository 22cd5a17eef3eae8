/*
 * A log-linear latency histogram in the spirit of HdrHistogram: values below 128 are
 * kept exactly, larger ones in buckets 1/128 of their power of two wide, so any value
 * read back is within 1/128 (0.8 %) of one that was recorded. Fixed size, no
 * allocation, one writer; histograms of several threads merge by adding counts.
 */
#ifndef YODEL_HISTOGRAM_H
#define YODEL_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS  7
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
/* Values up to 2^40 (about 18 minutes in nanoseconds); larger ones are clamped. */
#define HIST_MAX_BITS 40
#define HIST_BUCKETS  ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB_COUNT)

typedef struct histogram {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double sum;
    uint64_t buckets[HIST_BUCKETS];
} histogram;

void hist_reset(histogram *h);
void hist_record(histogram *h, uint64_t value);
/* Adds every count of src into dst. */
void hist_merge(histogram *dst, const histogram *src);
/*
 * The value at quantile q (0 <= q <= 1): the middle of the bucket holding the
 * ceil(q * count)-th smallest value, clamped to the exact min and max. 0 when empty.
 */
uint64_t hist_quantile(const histogram *h, double q);
double hist_mean(const histogram *h);

/* The bucket index of a value and the lowest value of a bucket (exposed for tests). */
unsigned hist_index(uint64_t value);
uint64_t hist_bucket_low(unsigned index);

#endif
