/* Signals delivered on the loop (libuv turns them into loop events, so callbacks may do
 * anything a callback may do). */
#include <signal.h>
#include <stdlib.h>

#include "internal.h"

struct yd_signal {
    uv_signal_t uv; /* first: yd_loop_free() frees leftovers through the handle */
    yd_signal_cb cb;
    void *data;
};

static void on_signal(uv_signal_t *s, int signum)
{
    yd_signal *sig = (yd_signal *)s;
    sig->cb(sig, signum, sig->data);
}

int yd_signal_new(yd_loop *loop, int signum, yd_signal_cb cb, void *data, yd_signal **out)
{
    yd_signal *sig = malloc(sizeof *sig);
    if (sig == NULL)
        return -ENOMEM;
    uv_signal_init(&loop->uv, &sig->uv);
    sig->cb = cb;
    sig->data = data;
    int err = uv_signal_start(&sig->uv, on_signal, signum);
    if (err < 0) {
        uv_close((uv_handle_t *)&sig->uv, (uv_close_cb)free);
        return err;
    }
    /* A signal watcher alone should not keep the loop running. */
    uv_unref((uv_handle_t *)&sig->uv);
    *out = sig;
    return 0;
}

void yd_signal_free(yd_signal *sig)
{
    if (sig != NULL)
        uv_close((uv_handle_t *)&sig->uv, (uv_close_cb)free);
}

static void on_shutdown_signal(yd_signal *sig, int signum, void *data)
{
    (void)signum;
    uint64_t *drain_ms = data;
    yd_loop *loop = sig->uv.loop->data;
    if (*drain_ms == UINT64_MAX) {
        yd_loop_stop(loop); /* the second signal: the operator insists */
        return;
    }
    yd_loop_drain(loop, *drain_ms);
    *drain_ms = UINT64_MAX;
}

int yd_loop_drain_on_signals(yd_loop *loop, uint64_t drain_ms)
{
    /* One setting shared by both watchers, freed with the loop like any leftover handle. */
    struct shutdown_watch {
        yd_signal sigint; /* first: freeing the handle frees the whole */
        uint64_t drain_ms;
    } *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    signal(SIGPIPE, SIG_IGN);
    w->drain_ms = drain_ms == UINT64_MAX ? drain_ms - 1 : drain_ms;
    uv_signal_init(&loop->uv, &w->sigint.uv);
    w->sigint.cb = on_shutdown_signal;
    w->sigint.data = &w->drain_ms;
    yd_signal *term;
    int err = uv_signal_start(&w->sigint.uv, on_signal, SIGINT);
    if (err == 0)
        err = yd_signal_new(loop, SIGTERM, on_shutdown_signal, &w->drain_ms, &term);
    if (err < 0) {
        uv_close((uv_handle_t *)&w->sigint.uv, (uv_close_cb)free);
        return err;
    }
    uv_unref((uv_handle_t *)&w->sigint.uv);
    return 0;
}
