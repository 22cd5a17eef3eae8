/*
 * The failure bound of a loop run, as libuv's tests have one: the test runs the loop until its
 * expectation is met (the loop ends by itself, or a callback stops it), then checks callback
 * counts. The watchdog only fails a run that would otherwise hang: after its time, a thread
 * stops the loop (through yd_loop_call_threadsafe) and the test fails. It is a thread, not a
 * timer of the loop, so it never keeps the loop alive: a loop that should end by itself must.
 */
#ifndef YODEL_TEST_WATCHDOG_H
#define YODEL_TEST_WATCHDOG_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "yodel.h"

/* Far above any expected run (a few ms, a few hundred under valgrind), below ctest's TIMEOUT. */
#define WATCHDOG_MS 5000

struct watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    yd_loop *loop;
    uint64_t ms;
    int done;  /* set by the test when the run is over */
    int fired; /* set by the thread when it stopped the loop */
};

static inline void watchdog_on_fire(yd_loop *loop, void *data)
{
    (void)data;
    yd_loop_stop(loop);
}

static inline void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(w->ms / 1000);
    until.tv_nsec += (long)(w->ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    int err = 0;
    while (!w->done && err != ETIMEDOUT)
        err = pthread_cond_timedwait(&w->cond, &w->lock, &until);
    if (!w->done) {
        w->fired = 1;
        yd_loop_call_threadsafe(w->loop, watchdog_on_fire, NULL);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static inline void watchdog_start(struct watchdog *w, yd_loop *loop, uint64_t ms)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->lock, NULL);
    w->loop = loop;
    w->ms = ms;
    w->done = 0;
    w->fired = 0;
    pthread_create(&w->thread, NULL, watchdog_main, w);
}

/* Ends the watch; returns whether the watchdog had to stop the loop (the test then fails). */
static inline int watchdog_stop(struct watchdog *w)
{
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    return w->fired;
}

/* Runs the loop until it ends by itself or a callback stops it; fails the test if the watchdog
 * had to. */
#define RUN_LOOP(loop)                                                                             \
    do {                                                                                           \
        struct watchdog run_loop_w;                                                                \
        watchdog_start(&run_loop_w, (loop), WATCHDOG_MS);                                          \
        yd_loop_run(loop);                                                                         \
        if (watchdog_stop(&run_loop_w))                                                            \
            fail_msg("the loop still ran after %d ms", WATCHDOG_MS);                               \
    } while (0)

#endif
