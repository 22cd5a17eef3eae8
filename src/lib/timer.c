/* Timers: a thin wrapper over uv_timer_t that keeps libuv out of the public header. */
#include <stdlib.h>

#include "internal.h"

struct yd_timer {
    uv_timer_t uv; /* first: yd_loop_free() frees leftovers through the handle */
    yd_timer_cb cb;
    void *data;
};

static void on_timer(uv_timer_t *t)
{
    yd_timer *timer = (yd_timer *)t;
    timer->cb(timer, timer->data);
}

int yd_timer_new(yd_loop *loop, yd_timer_cb cb, void *data, yd_timer **out)
{
    if (cb == NULL || out == NULL)
        return -EINVAL;
    if (loop->freeing)
        return -ECANCELED;
    yd_timer *timer = malloc(sizeof *timer);
    if (timer == NULL)
        return -ENOMEM;
    uv_timer_init(&loop->uv, &timer->uv);
    timer->cb = cb;
    timer->data = data;
    *out = timer;
    return 0;
}

int yd_timer_start(yd_timer *timer, uint64_t timeout_ms, uint64_t repeat_ms)
{
    return uv_timer_start(&timer->uv, on_timer, timeout_ms, repeat_ms);
}

void yd_timer_stop(yd_timer *timer)
{
    uv_timer_stop(&timer->uv);
}

void yd_timer_free(yd_timer *timer)
{
    if (timer != NULL)
        uv_close((uv_handle_t *)&timer->uv, (uv_close_cb)free);
}

yd_loop *yd_timer_loop(const yd_timer *timer)
{
    return timer->uv.loop->data;
}
