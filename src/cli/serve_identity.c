/* yodel serve --banner, --prefix, --delay D~J, --drop, --reset: their values and how they go
 * together. The behaviour itself is libyodel's (echo.c, template.c). */
#include "serve_identity.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Room for the reason a template is bad ("unknown field {...}"). */
#define TEMPLATE_ERR_BYTES 128

static const char *opt_template(const char *opt, const char *value)
{
    char err[TEMPLATE_ERR_BYTES];
    if (yd_template_check(value, err, sizeof err) < 0)
        usage_error("serve", "%s: %s", opt, err);
    return value;
}

/* "10", "2.5", "10%": 0 to 100. */
static double opt_percent(const char *opt, const char *value)
{
    char *end;
    errno = 0;
    double p = strtod(value, &end);
    if (end != value && *end == '%')
        end++;
    if (errno != 0 || end == value || *end != '\0' || !isfinite(p))
        usage_error("serve", "%s: '%s' is not a percentage (use 10 or 2.5)", opt, value);
    if (p < 0 || p > 100)
        usage_error("serve", "%s: %s is out of range (0 to 100)", opt, value);
    return p;
}

int parse_identity_option(yd_echo_options *echo, int c, const char *value)
{
    switch (c) {
    case OPT_BANNER:
        echo->banner = opt_template("--banner", value);
        return 1;
    case OPT_PREFIX:
        echo->prefix = opt_template("--prefix", value);
        return 1;
    case OPT_DROP:
        echo->drop_percent = opt_percent("--drop", value);
        return 1;
    case OPT_RESET:
        echo->reset_percent = opt_percent("--reset", value);
        return 1;
    default:
        return 0;
    }
}

void parse_delay(yd_echo_options *echo, const char *value)
{
    const char *tilde = strchr(value, '~');
    if (tilde == NULL) {
        echo->delay_ms = opt_duration_ms("serve", "--delay", value);
        echo->delay_jitter_ms = 0;
        return;
    }
    char delay[64];
    size_t n = (size_t)(tilde - value);
    if (n < sizeof delay) {
        memcpy(delay, value, n);
        delay[n] = '\0';
    }
    if (n >= sizeof delay || yd_parse_duration_ms(delay, &echo->delay_ms) < 0 ||
        yd_parse_duration_ms(tilde + 1, &echo->delay_jitter_ms) < 0)
        usage_error("serve", "--delay: bad duration '%s' (use 500ms, or 50ms~20ms for jitter)",
                    value);
    if (echo->delay_jitter_ms > echo->delay_ms)
        usage_error("serve",
                    "--delay: the jitter in '%s' is above the delay (no reply comes "
                    "before it is sent)",
                    value);
}

/* Whether any listener is a stream one (the defaults include tcp://127.0.0.1:8888). */
static int has_stream_listener(const char *const *listen, int nlisten)
{
    for (int i = 0; i < nlisten; i++) {
        yd_addr a;
        if (yd_addr_parse(listen[i], &a) == 0 && a.transport != YD_UDP)
            return 1;
    }
    return nlisten == 0;
}

void check_identity_options(const yd_echo_options *echo, const char *const *listen, int nlisten)
{
    if (echo->prefix == NULL)
        return;
    if (echo->mode == YD_ECHO_INFO)
        usage_error("serve", "--prefix does not go with -m info (its answer is a JSON line)");
    if (echo->mode == YD_ECHO_RAW && has_stream_listener(listen, nlisten))
        usage_error("serve", "--prefix: raw mode has no lines to prefix (use -m line or upper; "
                             "datagrams are prefixed in any mode)");
}
