/*
 * A log-linear latency histogram in the spirit of HdrHistogram: values below 128 are
 * kept exactly, larger ones in buckets 1/128 of their power of two wide, so any value
 * read back is within 1/128 (0.8 %) of one that was recorded. Fixed size, no
 * allocation, one writer; histograms of several threads merge by adding counts.
 */
#ifndef YODEL_HISTOGRAM_H
#define YODEL_HISTOGRAM_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS  7
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
/* Values up to 2^40 (about 18 minutes in nanoseconds); larger ones are clamped. */
#define HIST_MAX_BITS 40
#define HIST_BUCKETS  ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB_COUNT)
/*
 * The same layout in HdrHistogram's terms (its .hgrm footer): 256 sub-buckets, the first
 * bucket exact up to 255, each next one covering twice the range at half the resolution.
 */
#define HIST_HDR_SUB_BUCKETS (2 * HIST_SUB_COUNT)
#define HIST_HDR_BUCKETS     (HIST_MAX_BITS - HIST_SUB_BITS)

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
/* The standard deviation, from each bucket's middle (as HdrHistogram computes it). */
double hist_stddev(const histogram *h);
/*
 * out = now - before, bucket by bucket: what was recorded between two copies of one
 * histogram (--interval). min and max become the bounds of the lowest and highest bucket
 * that gained counts, so quantiles keep the bucket error and no more.
 */
void hist_diff(histogram *out, const histogram *now, const histogram *before);
/*
 * Writes the percentile distribution as HdrHistogram's hdr_percentiles_print (CLASSIC) does,
 * the .hgrm text that wrk2 --latency prints and HdrHistogram's plotter reads: a header, one
 * row per percentile step (5 ticks per halving of the distance to 100 %), the last at
 * percentile 1 with 1/(1-p) "inf", then the #[Mean ...], #[Max ...], #[Buckets ...] footer.
 * Values are divided by scale (1e6: ns to ms, as wrk2). Returns 0, or -1 if a write failed.
 */
int hist_write_hgrm(const histogram *h, FILE *f, double scale);

/* The bucket index of a value and the lowest value of a bucket (exposed for tests). */
unsigned hist_index(uint64_t value);
uint64_t hist_bucket_low(unsigned index);
/* The highest value that lands in a bucket (HdrHistogram's "highest equivalent value"). */
uint64_t hist_bucket_high(unsigned index);

#endif
