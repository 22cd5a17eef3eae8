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

#include "yodel.h"

_Noreturn void usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "yodel %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'yodel %s --help')\n", cmd);
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
        usage_error(cmd, "%s: bad address '%s' (use HOST:PORT, udp://HOST:PORT, unix:PATH)", opt,
                    value);
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
