/* yodel serve's identity and fault options: --banner, --prefix, -m info, --delay D~J, --drop,
 * --reset. Kept apart from serve.c, which only hands them over. */
#ifndef YODEL_SERVE_IDENTITY_H
#define YODEL_SERVE_IDENTITY_H

#include "yodel.h"

/* Their getopt values: above serve.c's own. */
enum { OPT_BANNER = 400, OPT_PREFIX, OPT_DROP, OPT_RESET };

#define IDENTITY_LONGOPTS                                                                          \
    {"banner", required_argument, NULL, OPT_BANNER},                                               \
        {"prefix", required_argument, NULL, OPT_PREFIX},                                           \
        {"drop", required_argument, NULL, OPT_DROP},                                               \
    {                                                                                              \
        "reset", required_argument, NULL, OPT_RESET                                                \
    }

#define IDENTITY_USAGE                                                                             \
    "      --banner TEXT        send TEXT as soon as a connection opens (TCP, Unix, TLS)\n"        \
    "      --prefix TEXT        put TEXT before each echoed line (line, upper) and datagram\n"     \
    "                           TEXT fields: {hostname} {peer} {local} {listener} {pid}\n"         \
    "                           {env:NAME} {proxy} {tls_subject}; escapes \\n \\r \\t \\\\;\n"     \
    "                           {{ and }} for braces\n"                                            \
    "      --drop PERCENT       leave PERCENT of datagrams unanswered, at random\n"                \
    "      --reset PERCENT      reset PERCENT of connections right after their first reply\n"

/* Handles c if it is one of the options above (returns 1), else returns 0. A bad value exits 2
 * naming the option. */
int parse_identity_option(yd_echo_options *echo, int c, const char *value);

/* --delay D or D~J (D-J to D+J, uniformly). */
void parse_delay(yd_echo_options *echo, const char *value);

/* Once every option is read: exits 2 if they contradict each other (a prefix in raw mode on a
 * stream listener, a prefix with -m info). listen: the -l addresses (none: the defaults). */
void check_identity_options(const yd_echo_options *echo, const char *const *listen, int nlisten);

#endif
