/* Statistics lines for people (or JSON for machines): per interval and at shutdown. */
#ifndef YODEL_STATS_REPORT_H
#define YODEL_STATS_REPORT_H

#include "yodel.h"

struct stats_report {
    int json;
    uint64_t start_ms;
    uint64_t last_ms;
    yd_stats_snapshot last;
};

void stats_report_init(struct stats_report *r, int json, uint64_t now_ms);
/* One line on stderr: the rates since the previous call. */
void stats_report_interval(struct stats_report *r, const yd_stats_snapshot *now, uint64_t now_ms);
/* One line on stderr: the totals since start. */
void stats_report_summary(struct stats_report *r, const yd_stats_snapshot *now, uint64_t now_ms);

#endif
