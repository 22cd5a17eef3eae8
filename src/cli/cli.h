/* Shared by the yodel subcommands: entry points and option-parsing helpers. */
#ifndef YODEL_CLI_H
#define YODEL_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Each subcommand: argv[0] is the subcommand's name. Returns the exit status. */
int cmd_serve(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Exit statuses (SPEC.md). */
enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/*
 * Prints "yodel CMD: MESSAGE (see 'yodel CMD --help')" as one line on stderr and
 * exits with status 2.
 */
_Noreturn void usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Option-value parsers: each exits through usage_error() naming the option on bad input. */
uint64_t opt_duration_ms(const char *cmd, const char *opt, const char *value);
uint64_t opt_size(const char *cmd, const char *opt, const char *value, uint64_t min, uint64_t max);
long opt_long(const char *cmd, const char *opt, const char *value, long min, long max);
/* Checks that value is a valid address (yd_addr_parse) and returns it. */
const char *opt_addr(const char *cmd, const char *opt, const char *value);

/*
 * getopt_long with the project's error style: an unknown option or a missing
 * value ends in usage_error(). Same arguments and return as getopt_long.
 */
struct option;
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/*
 * Whether descriptor fd (0, 1 or 2) was closed when yodel started: main() put /dev/null on it,
 * so whatever is written there is lost (`yodel bench >&-`).
 */
int cli_fd_was_closed(int fd);

/* The CPUs this process may run on (sched_getaffinity), at least 1. */
int cli_cpu_count(void);

/*
 * One log line, built in memory and written to stderr with a single write(2), so that lines
 * written by several threads never interleave. Text beyond the buffer is cut off; the line
 * always ends with its '\n'.
 */
struct cli_line {
    char buf[4096];
    size_t len;
};

void cli_line_add(struct cli_line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds text as a JSON string: quoted, with '"', '\\' and control characters escaped. */
void cli_line_add_json_string(struct cli_line *l, const char *text);
/* Adds the wall-clock time as a JSON member, "ts":1796168946.247, as the echo logs have it. */
void cli_line_add_ts(struct cli_line *l);
/* Starts a JSON event line: {"ts":...,"event":"NAME" (the caller adds the rest and the '}'). */
void cli_line_begin_event(struct cli_line *l, const char *event);
/* Ends the line with '\n' and writes it to stderr at once; the line is empty again after. */
void cli_line_write(struct cli_line *l);

#endif
