/* Counters: written by one loop thread, read by any. */
#include <stdlib.h>

#include "internal.h"

int yd_stats_new(yd_stats **out)
{
    if (out == NULL)
        return -EINVAL;
    yd_stats *stats = calloc(1, sizeof *stats);
    if (stats == NULL)
        return -ENOMEM;
    *out = stats;
    return 0;
}

void yd_stats_free(yd_stats *stats)
{
    free(stats);
}

#define LOAD(field) atomic_load_explicit(&stats->field, memory_order_relaxed)

void yd_stats_add_to(const yd_stats *stats, yd_stats_snapshot *sum)
{
    sum->conns_accepted += LOAD(conns_accepted);
    sum->conns_active += LOAD(conns_active);
    sum->conns_refused += LOAD(conns_refused);
    sum->conns_closed += LOAD(conns_closed);
    sum->messages += LOAD(messages);
    sum->bytes_in += LOAD(bytes_in);
    sum->bytes_out += LOAD(bytes_out);
    for (int i = 0; i < YD_ERR__COUNT; i++)
        sum->errors[i] += LOAD(errors[i]);
}

void yd_stats_count_error(yd_stats *stats, enum yd_error_kind kind)
{
    if ((unsigned)kind < YD_ERR__COUNT)
        STAT_ADD(stats, errors[kind], 1);
}

int yd_conn_limit_new(size_t max_conns, yd_conn_limit **out)
{
    if (max_conns == 0 || out == NULL)
        return -EINVAL; /* a limit of none would refuse every connection */
    yd_conn_limit *limit = calloc(1, sizeof *limit);
    if (limit == NULL)
        return -ENOMEM;
    limit->max = max_conns;
    *out = limit;
    return 0;
}

void yd_conn_limit_free(yd_conn_limit *limit)
{
    free(limit);
}
