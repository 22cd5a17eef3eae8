"""Startup failures are told as they are: the real error in one line and exit 1, and never a
"listening on" line from a server that then fails (attack #22, newcomer F14)."""

import os
import resource
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402


def thread_variants():
    """--threads 1, and the default thread count (at least 2)."""
    default = [] if len(os.sched_getaffinity(0)) >= 2 else ["--threads", "2"]
    return [("--threads 1", ["--threads", "1"]), ("default threads", default)]


def run_with_nofile(nofile, *args):
    """`ulimit -n NOFILE; yodel serve ARGS` to completion."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = dict(os.environ)
    if hard.SANITIZE:
        # LeakSanitizer needs descriptors of its own at exit, which this limit leaves none of.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    try:
        return subprocess.run([harness.YODEL_BIN, "serve"] + list(args), preexec_fn=limit, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=harness.CMD_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("yodel serve under ulimit -n %d still running" % nofile) from e


class Startup(unittest.TestCase):
    def assert_one_line_exit_1(self, r):
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, b"", "a listening line from a server that failed")
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("yodel serve: "), lines)
        return lines[0]

    def test_out_of_descriptors_while_creating_event_loops_names_the_real_error(self):
        # 6 descriptors: room for libuv's signal pipe and part of the first loop. 12: the first
        # loop or two, then the next one fails.
        cases = [(name, threads, 6) for name, threads in thread_variants()]
        cases.append(("--threads 8", ["--threads", "8"], 12))
        for name, threads, nofile in cases:
            with self.subTest(threads=name, nofile=nofile):
                r = run_with_nofile(nofile, "-l", hard.LOCAL, *threads)
                line = self.assert_one_line_exit_1(r)
                self.assertRegex(line, r"^yodel serve: cannot create event loop \d+ of \d+: "
                                       r"too many open files$")

    def test_no_listening_line_when_a_later_listener_fails(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", 0))
                    taken.listen()
                    addr = "127.0.0.1:%d" % taken.getsockname()[1]
                    r = harness.yodel("serve", "-l", hard.LOCAL, "-l", "udp://" + hard.LOCAL,
                                      "-l", addr, *threads)
                line = self.assert_one_line_exit_1(r)
                self.assertEqual(line, "yodel serve: cannot listen on %s: address already in use"
                                 % addr)

    def test_no_listening_line_when_metrics_cannot_listen(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", 0))
                    taken.listen()
                    addr = "127.0.0.1:%d" % taken.getsockname()[1]
                    r = harness.yodel("serve", "-l", hard.LOCAL, "--metrics", addr, *threads)
                line = self.assert_one_line_exit_1(r)
                self.assertEqual(line, "yodel serve: cannot serve metrics on %s: address already "
                                       "in use" % addr)

    def test_listen_fds_of_minus_one_is_reported_in_one_line(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                r = harness.run(["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=-1 exec "$0" "$@"',
                                 harness.YODEL_BIN, "serve"] + threads)
                line = self.assert_one_line_exit_1(r)
                self.assertIn("LISTEN_FDS=-1", line)


if __name__ == "__main__":
    unittest.main()
