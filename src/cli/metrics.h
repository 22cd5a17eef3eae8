/* The --metrics endpoint of yodel serve: Prometheus text over a tiny HTTP/1.0 server. */
#ifndef YODEL_METRICS_H
#define YODEL_METRICS_H

#include <stdatomic.h>

#include "yodel.h"

/* One listener's series: its label value and its counters, summed over the threads. */
struct metrics_listener {
    const char *name; /* "tcp://127.0.0.1:8888" */
    int datagram;     /* a UDP listener: it has no connections to count */
    yd_stats_snapshot sum;
};

/*
 * Fills *out for listener i (out->sum is zeroed). Returns 1, or 0 when there is no listener
 * i. Called on the metrics loop's thread for every scrape; it must only read (yd_stats_add_to).
 */
typedef int (*metrics_collect_fn)(void *ctx, unsigned i, struct metrics_listener *out);

struct metrics;

/*
 * The endpoint's own counters, which the caller owns: they must outlive the loop's last
 * connection (a request may end after metrics_stop). Not echo traffic: the library counts the
 * endpoint's connections in conns, the endpoint its bad requests (malformed, unknown, too long
 * or too slow; the errors of kind "http" in reports) in bad_requests.
 */
struct metrics_counters {
    yd_stats *conns;
    _Atomic uint64_t bad_requests;
};

/*
 * Serves GET /metrics on addr ("HOST:PORT", port 0 for an ephemeral one) from loop, and a
 * page linking it at /, counting into own. Returns 0 and sets *out, or a negative error from
 * yd_server_listen.
 */
int metrics_start(yd_loop *loop, const char *addr, metrics_collect_fn collect, void *ctx,
                  struct metrics_counters *own, struct metrics **out);

/* Writes "http://HOST:PORT/metrics" into buf. Returns its length, or a negative error. */
int metrics_url(const struct metrics *m, char *buf, size_t len);

/*
 * Stops listening. Requests in progress finish on their own (or by their deadline);
 * the memory goes when the last one has closed. Call it once, on the loop's thread,
 * before yd_loop_drain() (which would close the server behind our back).
 */
void metrics_stop(struct metrics *m);

/* A drain began: /readyz answers 503 from now on (/healthz stays 200), and the endpoint no
 * longer keeps its loop alive. */
void metrics_draining(struct metrics *m);

#endif
