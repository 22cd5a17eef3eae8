/*
 * yd_template_check and yd_template_expand on arbitrary text. Checked: the two agree on what is
 * a template (expand is -EINVAL exactly when check is); a good template expands, within its
 * bound, to the same text at once and in two steps (the server's way: fields that never change
 * first, keeping the others); the kept output is a template again; an expansion cut at any
 * smaller buffer is -ENOBUFS and a prefix of the whole.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "yodel.h"

#define OUT_BYTES 8192

static const char *env(const char *name, void *data)
{
    (void)data;
    return strcmp(name, "X") == 0 ? "{\\}" : NULL;
}

static const yd_template_values all = {
    .hostname = "h{o}st",
    .peer = "[::1]:5",
    .local = "1.2.3.4:80",
    .listener = "tcp://x:1",
    .proxy = "p\\",
    .tls_subject = "CN=}{",
    .pid = 77,
    .env = env,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024)
        return 0; /* the output bound below holds for short templates */
    char *tmpl = malloc(size + 1);
    static char whole[OUT_BYTES], partial[OUT_BYTES], twice[OUT_BYTES], cut[OUT_BYTES];
    if (tmpl == NULL)
        abort();
    memcpy(tmpl, data, size);
    tmpl[size] = '\0';

    char err[64];
    int fields = yd_template_check(tmpl, err, sizeof err);
    int n = yd_template_expand(tmpl, &all, whole, sizeof whole);
    if ((fields < 0) != (n == -EINVAL) || (fields < 0 && err[0] == '\0'))
        abort();
    if (fields >= 0) {
        if (n < 0 || (size_t)n != strlen(whole))
            abort();
        yd_template_values start = all;
        start.keep = YD_TEMPLATE_PEER | YD_TEMPLATE_LOCAL | YD_TEMPLATE_LISTENER |
                     YD_TEMPLATE_PROXY | YD_TEMPLATE_TLS_SUBJECT;
        if (yd_template_expand(tmpl, &start, partial, sizeof partial) < 0 ||
            yd_template_check(partial, NULL, 0) < 0)
            abort();
        yd_template_values conn = all;
        conn.hostname = "other";
        conn.env = NULL;
        if (yd_template_expand(partial, &conn, twice, sizeof twice) != n ||
            strcmp(whole, twice) != 0)
            abort();
        size_t len = (size_t)(data[0] % 64) + 1;
        int c = yd_template_expand(tmpl, &all, cut, len);
        if ((size_t)n < len ? c != n : c != -ENOBUFS)
            abort();
        if (strncmp(cut, whole, strlen(cut)) != 0)
            abort();
    }
    free(tmpl);
    return 0;
}
