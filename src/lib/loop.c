/* The event loop: libuv's, plus the few things every endpoint of a loop shares. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void on_kick(uv_timer_t *t)
{
    yd__conn_run_kicks(t->data);
}

static void on_sweep(uv_timer_t *t)
{
    yd_loop *loop = t->data;
    yd__conn_sweep(loop, uv_now(&loop->uv));
}

static void on_async(uv_async_t *a)
{
    yd_loop *loop = a->data;
    pthread_mutex_lock(&loop->calls_lock);
    struct call *list = loop->calls;
    loop->calls = NULL;
    pthread_mutex_unlock(&loop->calls_lock);
    /* The list was pushed newest first: reverse it so calls run in the order they were made. */
    struct call *ordered = NULL;
    while (list != NULL) {
        struct call *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered != NULL) {
        struct call *c = ordered;
        ordered = c->next;
        c->fn(loop, c->data);
        free(c);
    }
}

int yd_loop_new(yd_loop **out)
{
    if (out == NULL)
        return -EINVAL;
    yd_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return -ENOMEM;
    int err = -ENOMEM;
    loop->read_buf = malloc(READ_BUF_BYTES);
    if (loop->read_buf == NULL)
        goto fail;
    err = uv_loop_init(&loop->uv);
    if (err < 0)
        goto fail;
    loop->uv.data = loop;
    pthread_mutex_init(&loop->calls_lock, NULL);
    uv_async_init(&loop->uv, &loop->async, on_async);
    uv_timer_init(&loop->uv, &loop->kick);
    uv_timer_init(&loop->uv, &loop->sweep);
    /* libuv opens a reserve descriptor when a loop's first stream is made: make it now, so a
     * server holds as many descriptors before its first client as after its last. */
    uv_tcp_t first;
    uv_tcp_init(&loop->uv, &first);
    uv_close((uv_handle_t *)&first, NULL);
    uv_run(&loop->uv, UV_RUN_NOWAIT); /* lets the close finish while first is in scope */
    loop->async.data = loop->kick.data = loop->sweep.data = loop;
    /* The loop's own handles must not keep yd_loop_run() from returning; the kick timer is
     * the exception: while it is armed, an on_connect is owed. */
    uv_unref((uv_handle_t *)&loop->async);
    uv_unref((uv_handle_t *)&loop->sweep);
    *out = loop;
    return 0;
fail:
    free(loop->read_buf);
    free(loop);
    return err;
}

int yd_loop_run(yd_loop *loop)
{
    return uv_run(&loop->uv, UV_RUN_DEFAULT);
}

void yd_loop_stop(yd_loop *loop)
{
    uv_stop(&loop->uv);
}

uint64_t yd_loop_now_ms(const yd_loop *loop)
{
    return uv_now(&loop->uv);
}

int yd_loop_call_threadsafe(yd_loop *loop, void (*fn)(yd_loop *loop, void *data), void *data)
{
    struct call *c = malloc(sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->fn = fn;
    c->data = data;
    pthread_mutex_lock(&loop->calls_lock);
    c->next = loop->calls;
    loop->calls = c;
    pthread_mutex_unlock(&loop->calls_lock);
    return uv_async_send(&loop->async);
}

/* Before the closing run: a timer still running would keep it going (and fire inside
 * yd_loop_free); stopped and unreferenced, nothing but the closes keeps the loop alive. The
 * handles are not closed yet: an on_close may still free its own timer first. */
static void quiet_leftover(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TIMER)
        uv_timer_stop((uv_timer_t *)h);
    uv_unref(h);
}

static void close_leftover(uv_handle_t *h, void *arg)
{
    (void)arg;
    /* Timers and signals put their uv handle first, so the handle is the allocation. */
    if (!uv_is_closing(h))
        uv_close(h, (uv_close_cb)free);
}

int yd_loop_free(yd_loop *loop)
{
    if (loop == NULL)
        return 0;
    /* Calls made while the loop was stopped run first, while the loop can still take the
     * handles they make (the closes below then close those too). */
    on_async(&loop->async);
    /* From here on, what the on_close callbacks below try to start (a reconnect, a back-off
     * timer) is refused: the runs that close everything would otherwise wait for it. */
    loop->freeing = 1;
    for (yd_conn *conn = loop->conns; conn != NULL; conn = conn->next)
        yd_conn_abort(conn); /* closing is deferred: the list stays intact meanwhile */
    while (loop->servers != NULL)
        yd_server_close(loop->servers);
    uv_close((uv_handle_t *)&loop->async, NULL);
    uv_close((uv_handle_t *)&loop->kick, NULL);
    uv_close((uv_handle_t *)&loop->sweep, NULL);
    uv_walk(&loop->uv, quiet_leftover, NULL);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    uv_walk(&loop->uv, close_leftover, NULL);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop->uv) != 0)
        return -EBUSY;
    on_async(&loop->async); /* runs calls made after the last iteration, then frees them */
    pthread_mutex_destroy(&loop->calls_lock);
    yd__block_pool_clear(&loop->pool);
    free(loop->tls_buf);
    free(loop->read_buf);
    free(loop);
    return 0;
}

void yd__loop_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    /* Each read is consumed (delivered or copied aside) before the next one, so one buffer
     * per loop serves every socket. */
    yd_loop *loop = handle->loop->data;
    *buf = uv_buf_init(loop->read_buf, READ_BUF_BYTES);
}

void yd__loop_want_sweep(yd_loop *loop, uint64_t every_ms)
{
    if (every_ms == 0)
        every_ms = 1;
    if (uv_is_active((uv_handle_t *)&loop->sweep) && loop->sweep_every_ms <= every_ms)
        return;
    loop->sweep_every_ms = every_ms;
    uv_timer_start(&loop->sweep, on_sweep, every_ms, every_ms);
}

uint64_t yd__loop_sweep_period(uint64_t idle_timeout_ms)
{
    uint64_t every = idle_timeout_ms / 4;
    return every < 10 ? 10 : every > 1000 ? 1000 : every;
}

void yd__loop_kick(yd_loop *loop)
{
    if (!uv_is_active((uv_handle_t *)&loop->kick))
        uv_timer_start(&loop->kick, on_kick, 0, 0);
}

void yd_loop_drain(yd_loop *loop, uint64_t drain_ms)
{
    yd_server *next;
    for (yd_server *srv = loop->servers; srv != NULL; srv = next) {
        next = srv->next;
        if (!srv->background) /* a health endpoint answers through the drain */
            yd_server_close(srv);
    }
    loop->draining = 1;
    loop->drain_deadline_ms = uv_now(&loop->uv) + drain_ms;
    /* The sweep now keeps the loop alive until the last connection is gone. */
    uv_ref((uv_handle_t *)&loop->sweep);
    yd__loop_want_sweep(loop, 20);
    yd__conn_sweep(loop, uv_now(&loop->uv));
}
