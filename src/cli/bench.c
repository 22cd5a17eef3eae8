/*
 * yodel bench: a load generator for any echo server. This file: its options, their checks,
 * and cmd_bench, the main flow of a run.
 *
 * Each thread runs one yd_loop with its share of the connections (bench_run.c). A connection
 * keeps DEPTH messages in flight (closed loop), or sends on a fixed schedule (--rate, open
 * loop, latency from the intended send time as wrk2 does, and how late each send went out
 * recorded as the send lag). Every message is SIZE bytes carrying its sequence number and
 * connection index (bench_codec.h). Stream echoes are compared piece by piece where they land,
 * datagrams whole; nothing is allocated per message (bench_conn.c). Reports: text or one JSON
 * object (bench_report.c).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "bench_codec.h"
#include "cli.h"
#include "yodel.h"

static const char usage[] =
    "usage: yodel bench [-c ADDR]... [-n CONNS] [-s SIZE] [-p DEPTH] [-t DURATION]\n"
    "                   [--warmup DURATION] [--rate N | --rate A:B --ramp D] [--udp]\n"
    "                   [--threads N] [--timeout D] [--reconnect-every N] [--connect-rate R]\n"
    "                   [--bind ADDR]... [--find-max --slo SLO] [--tls]\n"
    "                   [--ca FILE | --insecure] [--sni NAME] [--cert FILE [--key FILE]]\n"
    "                   [--interval D] [--percentiles LIST] [--hist FILE] [--json]\n"
    "       yodel bench merge [--json] FILE...\n"
    "       yodel bench compare [--threshold PCT] BASE NEW\n"
    "\n"
    "Load an echo server and report round trips/s, MB/s and latency percentiles.\n"
    "Every echoed byte is checked; any mismatch, reset, unexpected close, timeout,\n"
    "lost or duplicated datagram or failed connect makes the exit status 1.\n"
    "\n"
    "  -c, --connect ADDR        server: HOST:PORT, udp://HOST:PORT, unix:PATH,\n"
    "                            tls://HOST:PORT, tls+unix:PATH (127.0.0.1:8888);\n"
    "                            repeatable: connection i goes to target i % targets,\n"
    "                            all of one kind, each with its own figures in the report\n"
    "  -n, --connections CONNS   connections, opened in batches of 64 per thread (50)\n"
    "  -s, --size SIZE           message size in bytes, its final '\\n' included (64;\n"
    "                            2 to 1m, 65507 for UDP)\n"
    "  -p, --depth DEPTH         messages in flight per connection (1; SIZE * DEPTH <= 1m)\n"
    "  -t, --duration DURATION   how long to measure (10s)\n"
    "      --warmup DURATION     load without measuring first (1s)\n"
    "      --rate N              open loop: N round trips/s in total, spread evenly over\n"
    "                            the connections and scheduled with 1 ms resolution;\n"
    "                            latency counts from when each message was due\n"
    "                            (coordinated omission corrected). The report gives the\n"
    "                            rate offered and the send lag (how late sends went out);\n"
    "                            offering less than 90 % of N is a failure (exit 1): the\n"
    "                            connections were full, so add connections or depth\n"
    "      --rate A:B --ramp D   open loop, the rate rising linearly from A to B round\n"
    "                            trips/s over the first D of -t (warmup at A), then B;\n"
    "                            B below A, D longer than -t, or one without the other\n"
    "                            is an error\n"
    "      --udp                 use UDP (same as -c udp://HOST:PORT); lost and duplicated\n"
    "                            datagrams are errors, reordered and late ones (back after\n"
    "                            being counted lost) are counted\n"
    "      --threads N           spread the connections over N event loops (1)\n"
    "      --timeout D           a reply (or a reconnect) later than this is a timeout (2s)\n"
    "      --reconnect-every N   close each connection after N round trips and connect\n"
    "                            again (1: a connection per round trip, netperf's TCP_CRR);\n"
    "                            reports connects/s (handshakes/s with TLS)\n"
    "      --connect-rate R      open new connections at R/s in all: the first ones\n"
    "                            (instead of batches), and with --reconnect-every the\n"
    "                            reconnects; the report says how long connecting took\n"
    "      --bind ADDR           connect from this source address (127.0.0.2, [::1],\n"
    "                            IP:PORT); repeatable: connections spread round-robin\n"
    "                            (127.0.0.x for more than 64k connections to one port)\n"
    "      --find-max            search the highest open-loop rate that holds --slo:\n"
    "                            steps of --warmup and -t on the same connections, the\n"
    "                            rate doubling from --rate (1000) until the SLO breaks,\n"
    "                            then bisected to within 5 %; a line per step, then the\n"
    "                            highest rate held (exit 1 if none did, or if every\n"
    "                            connection ended: the search stops there)\n"
    "      --slo SLO             what a step must hold, e.g. 'p99<=1ms,errors<=0.1%':\n"
    "                            p50, p90, p99, p99.9 <= a latency (us, ms, s); errors <=\n"
    "                            a share of the messages sent (0.1%) or a count (10);\n"
    "                            and at least 90 % of the rate offered\n"
    "      --tls                 use TLS (same as -c tls://HOST:PORT); the server's\n"
    "                            certificate is verified with the system's CAs\n"
    "      --ca FILE             verify it with these CAs (PEM) instead\n"
    "      --insecure            do not verify it (said on stderr)\n"
    "      --resume              with --reconnect-every: resume the TLS session (abbreviated\n"
    "                            handshakes); without it every handshake is full\n"
    "      --sni NAME            send NAME as SNI and verify the certificate for it\n"
    "                            (default: the address's host)\n"
    "      --cert FILE           present this client certificate (PEM; mutual TLS)\n"
    "      --key FILE            its private key (default: read from --cert's file)\n"
    "      --interval D          print one line per interval D (at least 100ms) while\n"
    "                            measuring: round trips/s, errors and p50/p99 of that\n"
    "                            interval alone (default 1s when stdout is a terminal,\n"
    "                            else none). A run whose connections all ended goes on\n"
    "                            to -t, its intervals at 0 round trips/s\n"
    "      --percentiles LIST    the latency percentiles the report gives\n"
    "                            (50,90,99,99.9; each above 0, at most 100)\n"
    "      --hist FILE           write the latency distribution to FILE in HdrHistogram's\n"
    "                            percentile format (.hgrm, values in ms, as wrk2 prints)\n"
    "      --json                print the report as one JSON object (type \"summary\");\n"
    "                            with --interval, one JSON object per line, one per\n"
    "                            interval (type \"interval\") before the summary\n"
    "  -h, --help                this help\n"
    "\n"
    "When every connection has ended (the server closed or died), the run stops at once,\n"
    "reports its rates over the time it was live, and exits 1.\n"
    "The report goes to stdout; a progress line goes to stderr when it is a terminal.\n"
    "Latency percentiles come from a log-linear histogram (within 0.8 %). Connect latency\n"
    "(with TLS: to the handshake's end) counts the first connects, or with\n"
    "--reconnect-every those made while measuring. The JSON summary carries the\n"
    "histograms' buckets, so that runs merge exactly:\n"
    "\n"
    "  merge FILE...             add up summaries (JSON, or JSON lines: the summary line) of\n"
    "                            runs made at the same time: counts and rates added,\n"
    "                            histograms bucket by bucket, percentiles recomputed\n"
    "  compare BASE NEW          each figure's change; exit 1 if one regressed by more than\n"
    "                            --threshold (5%): round trips/s down, p50, p99, p99.9 or\n"
    "                            errors up\n";

static const struct option longopts[] = {
    {"connect", required_argument, NULL, 'c'},
    {"connections", required_argument, NULL, 'n'},
    {"size", required_argument, NULL, 's'},
    {"depth", required_argument, NULL, 'p'},
    {"duration", required_argument, NULL, 't'},
    {"warmup", required_argument, NULL, 'W'},
    {"rate", required_argument, NULL, 'R'},
    {"udp", no_argument, NULL, 'U'},
    {"threads", required_argument, NULL, 'T'},
    {"timeout", required_argument, NULL, 'O'},
    {"json", no_argument, NULL, 'J'},
    {"reconnect-every", required_argument, NULL, 'E'},
    {"tls", no_argument, NULL, 'L'},
    {"ca", required_argument, NULL, 'A'},
    {"insecure", no_argument, NULL, 'I'},
    {"resume", no_argument, NULL, 'Z'},
    {"sni", required_argument, NULL, 'S'},
    {"cert", required_argument, NULL, 'C'},
    {"key", required_argument, NULL, 'K'},
    {"interval", required_argument, NULL, 'V'},
    {"percentiles", required_argument, NULL, 'P'},
    {"hist", required_argument, NULL, 'H'},
    {"help", no_argument, NULL, 'h'},
    /* The load shape (bench_load.c). */
    {"bind", required_argument, NULL, OPT_BIND},
    {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
    {"ramp", required_argument, NULL, OPT_RAMP},
    {"find-max", no_argument, NULL, OPT_FIND_MAX},
    {"slo", required_argument, NULL, OPT_SLO},
    {NULL, 0, NULL, 0},
};

/* --percentiles 50,90,99.9: each above 0 and at most 100. */
static void take_percentiles(config *cfg, const char *list)
{
    const char *p = list;
    cfg->npercentiles = 0;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0') || !(v > 0 && v <= 100))
            usage_error("bench", "--percentiles: bad value in '%s' (use 50,90,99,99.9)", list);
        if (cfg->npercentiles == MAX_PERCENTILES)
            usage_error("bench", "--percentiles: more than %d", MAX_PERCENTILES);
        /* Two of one name would be one JSON key twice. */
        char name[32], seen[32];
        percentile_name(name, sizeof name, v);
        for (size_t i = 0; i < cfg->npercentiles; i++) {
            percentile_name(seen, sizeof seen, cfg->percentiles[i]);
            if (strcmp(name, seen) == 0)
                usage_error("bench", "--percentiles: %s is in '%s' twice", name + 1, list);
        }
        cfg->percentiles[cfg->npercentiles++] = v;
        if (*end == '\0')
            return;
        p = end + 1;
    }
}

/* The options of the reports: --interval, --percentiles, --hist. */
static void take_report_option(int c, config *cfg)
{
    switch (c) {
    case 'V':
        cfg->interval_ms = opt_duration_ms("bench", "--interval", optarg);
        if (cfg->interval_ms < 100)
            usage_error("bench", "--interval: %s is too short (100ms at least)", optarg);
        break;
    case 'P':
        take_percentiles(cfg, optarg);
        break;
    case 'H':
        if (optarg[0] == '\0')
            usage_error("bench", "--hist: the file name is empty");
        cfg->hist_file = optarg;
        break;
    }
}

/* One option from cli_getopt into cfg; a bad value exits 2 naming it. */
static void take_option(int c, config *cfg)
{
    if (load_take_option(c, optarg, cfg))
        return;
    switch (c) {
    case 'h':
        fputs(usage, stdout);
        exit(EXIT_OK);
    case 'n':
        cfg->conns = (size_t)opt_long("bench", "-n", optarg, 1, 1000000);
        break;
    case 's':
        cfg->size = (size_t)opt_size("bench", "-s", optarg, CODEC_MIN_SIZE, MAX_WINDOW_BYTES);
        break;
    case 'p':
        cfg->depth = (size_t)opt_long("bench", "-p", optarg, 1, 4096);
        break;
    case 't':
        cfg->duration_ms = opt_duration_ms("bench", "-t", optarg);
        if (cfg->duration_ms == 0)
            usage_error("bench", "-t: the duration must be more than 0");
        break;
    case 'W':
        cfg->warmup_ms = opt_duration_ms("bench", "--warmup", optarg);
        break;
    case 'U':
        cfg->udp = 1;
        break;
    case 'T':
        cfg->threads = (unsigned)opt_long("bench", "--threads", optarg, 1, 256);
        break;
    case 'O':
        cfg->timeout_ms = opt_duration_ms("bench", "--timeout", optarg);
        if (cfg->timeout_ms == 0)
            usage_error("bench", "--timeout: the duration must be more than 0");
        break;
    case 'J':
        cfg->json = 1;
        break;
    case 'E':
        cfg->reconnect_every =
            (uint64_t)opt_long("bench", "--reconnect-every", optarg, 1, 1000000000);
        break;
    case 'L':
        cfg->tls = 1;
        break;
    case 'A':
        cfg->ca_file = optarg;
        break;
    case 'I':
        cfg->insecure = 1;
        break;
    case 'Z':
        cfg->resume = 1;
        break;
    case 'S':
        if (optarg[0] == '\0')
            usage_error("bench", "--sni: the name is empty");
        cfg->sni = optarg;
        break;
    case 'C':
        cfg->cert_file = optarg;
        break;
    case 'K':
        cfg->key_file = optarg;
        break;
    default:
        take_report_option(c, cfg);
    }
}

/* The checks that take several options together; exits 2 naming the problem. */
static void check_options(config *cfg)
{
    load_check_options(cfg);
    yd_addr addr;
    yd_addr_parse(cfg->addr, &addr);
    if (addr.transport == YD_UDP)
        cfg->udp = 1;
    if (addr.tls)
        cfg->tls = 1;
    if (cfg->udp && addr.transport == YD_UNIX)
        usage_error("bench", "--udp: '%s' is a Unix socket address", cfg->addr);
    if (cfg->udp && addr.tls)
        usage_error("bench", "--udp: '%s' is a TLS address", cfg->addr);
    if (cfg->udp && cfg->reconnect_every != 0)
        usage_error("bench", "--reconnect-every: not with UDP (a datagram has no connection)");
    tls_check_options(cfg);
    if (cfg->udp && cfg->size > 65507)
        usage_error("bench", "-s: %zu is too big for a UDP datagram (65507 at most)", cfg->size);
    if (cfg->size * cfg->depth > MAX_WINDOW_BYTES)
        usage_error("bench", "-s %zu with -p %zu is more than 1m in flight per connection",
                    cfg->size, cfg->depth);
    if (cfg->threads > cfg->conns)
        cfg->threads = (unsigned)cfg->conns;
}

static void parse_options(int argc, char **argv, config *cfg)
{
    *cfg = (config){.addr = "127.0.0.1:8888",
                    .conns = 50,
                    .size = 64,
                    .depth = 1,
                    .duration_ms = 10000,
                    .warmup_ms = 1000,
                    .timeout_ms = 2000,
                    .threads = 1,
                    /* Live lines by default where someone watches. */
                    .interval_ms = isatty(STDOUT_FILENO) ? 1000 : 0,
                    .percentiles = {50, 90, 99, 99.9},
                    .npercentiles = 4};
    int c;
    while ((c = cli_getopt("bench", argc, argv, "c:n:s:p:t:h", longopts)) != -1)
        take_option(c, cfg);
    if (optind < argc)
        usage_error("bench", "unexpected argument '%s'", argv[optind]);
    check_options(cfg);
}

/* Each connection takes a descriptor: lift the soft limit as far as allowed. */
static void raise_fd_limit(size_t conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= conns + 64)
        return;
    rl.rlim_cur = conns + 64 < rl.rlim_max ? conns + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Reports the run, or why there is none; returns the exit status. */
static int report(bench *b, size_t connected, int first_error)
{
    const config *cfg = &b->cfg;
    if (connected == 0) {
        fprintf(stderr, "yodel bench: cannot connect to %s: %s\n", cfg->addr,
                tls_connect_error(b, first_error));
        return EXIT_RUNTIME;
    }
    result *r = malloc(sizeof *r);
    if (r == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    if (first_error < 0)
        fprintf(stderr, "yodel bench: %zu of %zu connections failed: %s\n", cfg->conns - connected,
                cfg->conns, tls_connect_error(b, first_error));
    report_merge(b, r);
    report_print(b, r);
    int status = report_failed(r) || report_write_hist(b, r) < 0 ? EXIT_RUNTIME : EXIT_OK;
    free(r);
    return status;
}

/*
 * The run with its intervals and report or, with --find-max, the steps of the search; returns
 * the exit status.
 */
static int measure(bench *b, size_t connected, int first_error)
{
    if (b->cfg.find_max && connected > 0) {
        if (first_error < 0)
            fprintf(stderr, "yodel bench: %zu of %zu connections failed: %s\n",
                    b->cfg.conns - connected, b->cfg.conns, tls_connect_error(b, first_error));
        return findmax_run(b, connected);
    }
    if (intervals_start(b) < 0) {
        fprintf(stderr, "yodel bench: cannot start the --interval printer\n");
        return EXIT_RUNTIME;
    }
    run_measure(b, connected);
    intervals_stop(b);
    return report(b, connected, first_error);
}

/* A report that could not be written (stdout closed, a pipe whose reader left, a full disk)
 * fails the run, whatever it measured: a script must not take silence for success. A stdout
 * closed at start is /dev/null by now (main.c), where every write succeeds: asked apart. */
static int reported(const char *command, int status)
{
    if (cli_fd_was_closed(STDOUT_FILENO)) {
        fprintf(stderr, "yodel %s: cannot write the report: standard output is closed\n", command);
        return EXIT_RUNTIME;
    }
    if (fflush(stdout) == 0 && !ferror(stdout))
        return status;
    fprintf(stderr, "yodel %s: cannot write the report to stdout: %s\n", command,
            errno ? strerror(errno) : "write error");
    return EXIT_RUNTIME;
}

static int bench_main(int argc, char **argv);

int cmd_bench(int argc, char **argv)
{
    /* A write to a closed socket or pipe is an error to report, not a death (reported() says
     * what became of the report). */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "merge") == 0)
        return reported("bench merge", bench_merge_main(argc - 1, argv + 1));
    if (argc > 1 && strcmp(argv[1], "compare") == 0)
        return reported("bench compare", bench_compare_main(argc - 1, argv + 1));
    return reported("bench", bench_main(argc, argv));
}

/* Options -> connect on every thread -> warmup and measure -> report. */
static int bench_main(int argc, char **argv)
{
    bench *b = calloc(1, sizeof *b);
    if (b == NULL) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    parse_options(argc, argv, &b->cfg);
    /* The addresses as the reports name them and connects go to: formatted, udp:// with --udp,
     * tls:// (tls+unix:) with --tls. */
    load_format_targets(b);
    tls_setup(b);
    report_open_hist(b);
    raise_fd_limit(b->cfg.conns);
    if (run_start_threads(b) < 0) {
        fprintf(stderr, "yodel bench: out of memory\n");
        return EXIT_RUNTIME;
    }
    int first_error;
    size_t connected = run_wait_connected(b, &first_error);
    int status = measure(b, connected, first_error);
    run_free(b);
    free(b);
    return status;
}
