/* Signals delivered on the loop (libuv turns them into loop events, so callbacks may do
 * anything a callback may do). */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

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
    if (loop->freeing)
        return -ECANCELED;
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

/* One policy for both signals: the first asks the program to finish, the second ends it. */
struct shutdown_watch {
    yd_signal sigint; /* first: freeing the handle (a leftover in yd_loop_free) frees the whole */
    yd_signal *sigterm;
    yd_shutdown_cb on_first, on_second;
    void *data;
    uint64_t drain_ms; /* for yd_loop_drain_on_signals */
    int signals;
};

static void on_shutdown_signal(yd_signal *sig, int signum, void *data)
{
    (void)sig;
    struct shutdown_watch *w = data;
    yd_loop *loop = w->sigint.uv.loop->data;
    if (w->signals++ == 0) {
        w->on_first(loop, signum, w->data);
        return;
    }
    /* The operator insists: leave now, as a process killed by that signal would. */
    if (w->on_second != NULL)
        w->on_second(loop, signum, w->data);
    _exit(128 + signum);
}

static int watch_shutdown(yd_loop *loop, yd_shutdown_cb on_first, yd_shutdown_cb on_second,
                          void *data, struct shutdown_watch **out)
{
    if (on_first == NULL)
        return -EINVAL;
    if (loop->freeing)
        return -ECANCELED;
    struct shutdown_watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    signal(SIGPIPE, SIG_IGN);
    w->on_first = on_first;
    w->on_second = on_second;
    w->data = data;
    uv_signal_init(&loop->uv, &w->sigint.uv);
    w->sigint.cb = on_shutdown_signal;
    w->sigint.data = w;
    int err = uv_signal_start(&w->sigint.uv, on_signal, SIGINT);
    if (err == 0)
        err = yd_signal_new(loop, SIGTERM, on_shutdown_signal, w, &w->sigterm);
    if (err < 0) {
        uv_close((uv_handle_t *)&w->sigint.uv, (uv_close_cb)free);
        return err;
    }
    uv_unref((uv_handle_t *)&w->sigint.uv);
    *out = w;
    return 0;
}

int yd_loop_on_shutdown_signals(yd_loop *loop, yd_shutdown_cb on_first, yd_shutdown_cb on_second,
                                void *data)
{
    struct shutdown_watch *w;
    return watch_shutdown(loop, on_first, on_second, data, &w);
}

static void drain_loop(yd_loop *loop, int signum, void *data)
{
    (void)signum;
    const struct shutdown_watch *w = data;
    yd_loop_drain(loop, w->drain_ms);
}

int yd_loop_drain_on_signals(yd_loop *loop, uint64_t drain_ms)
{
    struct shutdown_watch *w;
    int err = watch_shutdown(loop, drain_loop, NULL, NULL, &w);
    if (err == 0) {
        w->data = w;
        w->drain_ms = drain_ms;
    }
    return err;
}
