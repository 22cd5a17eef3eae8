/* Signals delivered on the loop (libuv turns them into loop events, so callbacks may do
 * anything a callback may do). */
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
