/* The latency histogram of yodel bench: exact below 128, within 1/128 above. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "histogram.h"

static histogram h;

static void test_small_values_are_exact(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 256; v++)
        assert_int_equal(hist_bucket_low(hist_index(v)), v);
}

static void test_every_value_lands_within_one_128th_of_its_bucket(void **state)
{
    (void)state;
    for (uint64_t v = 1; v < (1ull << 39); v = v * 3 / 2 + 1) {
        unsigned i = hist_index(v);
        uint64_t low = hist_bucket_low(i);
        assert_true(low <= v);
        assert_true((double)(v - low) <= (double)v / HIST_SUB_COUNT);
        assert_true(i < HIST_BUCKETS);
    }
}

static void test_indexes_grow_with_values(void **state)
{
    (void)state;
    unsigned last = 0;
    for (uint64_t v = 0; v < (1u << 20); v++) {
        unsigned i = hist_index(v);
        assert_true(i == last || i == last + 1);
        last = i;
    }
}

static void test_quantiles_of_a_uniform_run(void **state)
{
    (void)state;
    hist_reset(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        hist_record(&h, v * 1000);
    assert_int_equal(h.count, 100000);
    assert_int_equal(hist_quantile(&h, 0), 1000);
    assert_int_equal(hist_quantile(&h, 1), 100000000);
    double p50 = (double)hist_quantile(&h, 0.5), p99 = (double)hist_quantile(&h, 0.99);
    assert_true(p50 > 50e6 * (1 - 1.0 / 128) && p50 < 50e6 * (1 + 1.0 / 128));
    assert_true(p99 > 99e6 * (1 - 1.0 / 128) && p99 < 99e6 * (1 + 1.0 / 128));
}

static void test_quantiles_stay_within_min_and_max(void **state)
{
    (void)state;
    hist_reset(&h);
    hist_record(&h, 1000001);
    assert_int_equal(hist_quantile(&h, 0.5), 1000001);
    assert_int_equal(hist_quantile(&h, 0.999), 1000001);
}

static void test_merge_adds_counts_and_keeps_extremes(void **state)
{
    (void)state;
    static histogram a, b;
    hist_reset(&a);
    hist_reset(&b);
    hist_record(&a, 10);
    hist_record(&b, 5000);
    hist_record(&b, 7);
    hist_merge(&a, &b);
    assert_int_equal(a.count, 3);
    assert_int_equal(a.min, 7);
    assert_int_equal(a.max, 5000);
    assert_int_equal(hist_quantile(&a, 0.5), 10);
}

static void test_empty_histogram_reads_zero(void **state)
{
    (void)state;
    hist_reset(&h);
    assert_int_equal(hist_quantile(&h, 0.99), 0);
    assert_true(hist_mean(&h) == 0);
}

static void test_huge_values_are_clamped_not_lost(void **state)
{
    (void)state;
    hist_reset(&h);
    hist_record(&h, UINT64_MAX / 2);
    assert_int_equal(h.count, 1);
    assert_true(hist_index(UINT64_MAX) < HIST_BUCKETS);
}

static void test_diff_holds_what_was_recorded_between_two_copies(void **state)
{
    (void)state;
    static histogram before, now, out;
    hist_reset(&now);
    hist_record(&now, 1000);
    before = now;
    hist_record(&now, 50000);
    hist_record(&now, 50000);
    hist_diff(&out, &now, &before);
    assert_int_equal(out.count, 2);
    assert_true(out.sum == 100000);
    assert_true(out.min <= 50000 && out.max >= 50000);
    assert_true(hist_quantile(&out, 0.01) > 49000);
}

static void test_hgrm_rows_end_at_percentile_one_with_the_total_count(void **state)
{
    (void)state;
    hist_reset(&h);
    for (uint64_t v = 1; v <= 1000; v++)
        hist_record(&h, v * 1000000);
    char buf[1 << 16];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    assert_non_null(f);
    assert_int_equal(hist_write_hgrm(&h, f, 1e6), 0);
    fclose(f);
    assert_non_null(strstr(buf, "Value   Percentile   TotalCount 1/(1-Percentile)\n\n"));
    assert_non_null(strstr(buf, "1.000000         1000          inf\n#[Mean    = "));
    assert_non_null(strstr(buf, "Total count    =         1000]"));
    assert_non_null(strstr(buf, "#[Buckets =           33, SubBuckets     =          256]\n"));
    /* The median row: the highest value of the bucket holding 500 ms (about 2 ms wide, so it
     * holds 499, 500 and 501 ms), the count up to that bucket, and 1/(1-0.5) = 2. */
    assert_non_null(strstr(buf, "     501.219     0.500000          501         2.00\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_every_value_lands_within_one_128th_of_its_bucket),
        cmocka_unit_test(test_indexes_grow_with_values),
        cmocka_unit_test(test_quantiles_of_a_uniform_run),
        cmocka_unit_test(test_quantiles_stay_within_min_and_max),
        cmocka_unit_test(test_merge_adds_counts_and_keeps_extremes),
        cmocka_unit_test(test_empty_histogram_reads_zero),
        cmocka_unit_test(test_huge_values_are_clamped_not_lost),
        cmocka_unit_test(test_diff_holds_what_was_recorded_between_two_copies),
        cmocka_unit_test(test_hgrm_rows_end_at_percentile_one_with_the_total_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
