/* Statistics lines for people (or JSON for machines): per interval and at shutdown. */
#ifndef YODEL_STATS_REPORT_H
#define YODEL_STATS_REPORT_H

#include "yodel.h"

/* What the lines report: the library's counters of every listener, and the errors of kind
 * "http" the metrics endpoint counts itself (the library has no such kind). */
struct serve_counts {
    yd_stats_snapshot sum;
    uint64_t http_errors;
};

struct stats_report {
    int json;
    uint64_t start_ms;
    uint64_t last_ms;
    struct serve_counts last;
};

void stats_report_init(struct stats_report *r, int json, uint64_t now_ms);
/* One line on stderr: the rates since the previous call. */
void stats_report_interval(struct stats_report *r, const struct serve_counts *now, uint64_t now_ms);
/* One line on stderr: the totals since start. */
void stats_report_summary(struct stats_report *r, const struct serve_counts *now, uint64_t now_ms);

#endif
