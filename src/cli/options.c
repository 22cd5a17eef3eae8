/* Option parsing shared by the subcommands: one line on stderr and exit 2 for bad usage. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "yodel.h"

static void line_vadd(struct cli_line *l, const char *fmt, va_list ap)
{
    size_t room = sizeof l->buf - 1 - l->len; /* one byte stays free for the '\n' */
    int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
    if (n > 0)
        l->len += (size_t)n < room ? (size_t)n : room;
}

void cli_line_add(struct cli_line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    line_vadd(l, fmt, ap);
    va_end(ap);
}

void cli_line_add_json_string(struct cli_line *l, const char *text)
{
    cli_line_add(l, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            cli_line_add(l, "\\%c", *p);
        else if (*p == '\n')
            cli_line_add(l, "\\n");
        else if (*p < 0x20 || *p >= 0x7f)
            cli_line_add(l, "\\u%04x", *p);
        else
            cli_line_add(l, "%c", *p);
    }
    cli_line_add(l, "\"");
}

void cli_line_add_ts(struct cli_line *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cli_line_add(l, "\"ts\":%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
}

void cli_line_begin_event(struct cli_line *l, const char *event)
{
    cli_line_add(l, "{");
    cli_line_add_ts(l);
    cli_line_add(l, ",\"event\":\"%s\"", event);
}

void cli_line_write(struct cli_line *l)
{
    l->buf[l->len++] = '\n';
    size_t done = 0;
    while (done < l->len) {
        ssize_t n = write(STDERR_FILENO, l->buf + done, l->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere left to tell anyone */
        done += (size_t)n;
    }
    l->len = 0;
}

_Noreturn void usage_error(const char *cmd, const char *fmt, ...)
{
    struct cli_line l = {.len = 0};
    cli_line_add(&l, "yodel %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    line_vadd(&l, fmt, ap);
    va_end(ap);
    cli_line_add(&l, " (see 'yodel %s --help')", cmd);
    cli_line_write(&l);
    exit(EXIT_USAGE);
}

uint64_t opt_duration_ms(const char *cmd, const char *opt, const char *value)
{
    uint64_t ms;
    if (yd_parse_duration_ms(value, &ms) < 0)
        usage_error(cmd, "%s: bad duration '%s' (use 500ms, 2s, 1m)", opt, value);
    return ms;
}

uint64_t opt_size(const char *cmd, const char *opt, const char *value, uint64_t min, uint64_t max)
{
    uint64_t n;
    if (yd_parse_size(value, &n) < 0)
        usage_error(cmd, "%s: bad size '%s' (use 512, 64k, 1m)", opt, value);
    if (n < min || n > max)
        usage_error(cmd, "%s: %s is out of range (%llu to %llu bytes)", opt, value,
                    (unsigned long long)min, (unsigned long long)max);
    return n;
}

long opt_long(const char *cmd, const char *opt, const char *value, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0')
        usage_error(cmd, "%s: '%s' is not a number", opt, value);
    if (n < min || n > max)
        usage_error(cmd, "%s: %s is out of range (%ld to %ld)", opt, value, min, max);
    return n;
}

const char *opt_addr(const char *cmd, const char *opt, const char *value)
{
    yd_addr addr;
    if (yd_addr_parse(value, &addr) < 0)
        usage_error(
            cmd,
            "%s: bad address '%s' (use HOST:PORT, udp://HOST:PORT, tls://HOST:PORT, unix:PATH)",
            opt, value);
    return value;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    opterr = 0;
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c != '?' && c != ':')
        return c;
    const char *arg = argv[optind - 1];
    if (arg != NULL && strncmp(arg, "--", 2) == 0) {
        /* For long options optopt is the option's value, not a character: look the name up. */
        size_t n = strcspn(arg + 2, "=");
        for (const struct option *o = longopts; o->name != NULL; o++) {
            if (strlen(o->name) == n && strncmp(o->name, arg + 2, n) == 0) {
                if (o->has_arg == no_argument)
                    usage_error(cmd, "option --%s takes no value", o->name);
                usage_error(cmd, "option --%s needs a value", o->name);
            }
        }
        usage_error(cmd, "unknown option '%.*s'", (int)(n + 2), arg);
    }
    if (optopt != 0 && strchr(shortopts, optopt) != NULL)
        usage_error(cmd, "option -%c needs a value", optopt);
    if (optopt != 0)
        usage_error(cmd, "unknown option -%c", optopt);
    usage_error(cmd, "unknown option '%s'", arg != NULL ? arg : "?");
}

int cli_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}
