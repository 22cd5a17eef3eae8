"""Closed standard descriptors (`<&-`, `>&-`, `2>&-`, as daemons and launchers leave them): every
subcommand still works and exits 0, and a server with all three closed keeps answering and
stops on SIGTERM (attack #1)."""

import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

CLOSE = {0: "<&-", 1: ">&-", 2: "2>&-"}


def thread_variants():
    """--threads 1, and the default thread count (at least 2)."""
    default = [] if len(os.sched_getaffinity(0)) >= 2 else ["--threads", "2"]
    return [("--threads 1", ["--threads", "1"]), ("default threads", default)]


def closed(fds, *argv):
    """A command line that runs argv with the descriptors fds closed, as the shell does."""
    redirs = " ".join(CLOSE[fd] for fd in fds)
    return ["/bin/sh", "-c", 'exec "$0" "$@" ' + redirs, harness.YODEL_BIN] + list(argv)


def wait_connectable(path, proc, timeout):
    """Polls until the Unix socket at path accepts a connection (no stdout to read the port)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError("yodel serve exited with %d before listening" % proc.returncode)
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("%s not listening within %.0fs" % (path, timeout))
        time.sleep(0.02)


def unix_round_trip(path, payload=b"ping\n"):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(harness.IO_TIMEOUT)
        s.connect(path)
        return hard.round_trip(s, payload)


class ClosedServer:
    """`yodel serve -l unix:PATH ARGS` with the descriptors fds closed."""

    def __init__(self, test, fds, *args):
        self.dir = harness.TempDir()
        self.path = os.path.join(self.dir.__enter__(), "s.sock")
        test.addCleanup(self.dir.__exit__)
        keep = {0: subprocess.DEVNULL, 1: subprocess.DEVNULL, 2: subprocess.DEVNULL}
        self.proc = subprocess.Popen(closed(fds, "serve", "-l", "unix:" + self.path, *args),
                                     stdin=keep[0], stdout=keep[1], stderr=keep[2])
        test.addCleanup(self.kill)
        wait_connectable(self.path, self.proc, harness.START_TIMEOUT)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=harness.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("yodel serve did not exit within %.0fs of SIGTERM"
                                 % harness.STOP_TIMEOUT)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ClosedStdio(unittest.TestCase):
    def test_serve_with_a_closed_standard_descriptor_echoes_and_exits_0(self):
        for name, threads in thread_variants():
            for fd in (0, 1, 2):
                with self.subTest(threads=name, closed=CLOSE[fd]):
                    srv = ClosedServer(self, [fd], *threads)
                    self.assertEqual(unix_round_trip(srv.path), b"ping\n")
                    self.assertEqual(srv.stop(), 0)

    def test_send_with_a_closed_standard_descriptor_exits_0(self):
        for name, threads in thread_variants():
            with harness.serve("-l", hard.LOCAL, *threads) as srv:
                for fd in (0, 1, 2):
                    with self.subTest(threads=name, closed=CLOSE[fd]):
                        r = harness.run(closed([fd], "send", "-c", srv.tcp.addr, "hello"))
                        self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(srv.stop()[0], 0)

    def test_bench_with_a_closed_standard_descriptor_runs_and_says_if_its_report_is_lost(self):
        # No crash whichever is closed; a closed stdout loses the report, which the man page
        # makes exit 1 with one line (a closed stdin or stderr loses nothing of it: exit 0).
        for name, threads in thread_variants():
            with harness.serve("-l", hard.LOCAL, *threads) as srv:
                for fd in (0, 1, 2):
                    with self.subTest(threads=name, closed=CLOSE[fd]):
                        r = harness.run(closed([fd], "bench", "-c", srv.tcp.addr, "-n", "1",
                                               "-t", "200ms", "--warmup", "0"))
                        self.assertEqual(r.returncode, 1 if fd == 1 else 0, r.stderr)
                        if fd == 1:
                            self.assertEqual(r.stderr, b"yodel bench: cannot write the report: "
                                                       b"standard output is closed\n")
                self.assertEqual(srv.stop()[0], 0)

    def test_verbose_server_with_all_three_closed_answers_under_load_and_stops_on_sigterm(self):
        # -v logs two lines per message: thousands of them once filled the pipe libuv had put
        # on descriptors 1 and 2, and the server stopped answering anything, SIGTERM included.
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                srv = ClosedServer(self, [0, 1, 2], "-m", "line", "-v", *threads)
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(harness.IO_TIMEOUT)
                    s.connect(srv.path)
                    for i in range(3000):
                        line = b"line %d\n" % i
                        self.assertEqual(hard.round_trip(s, line, timeout=5 * hard.SLOW), line)
                self.assertEqual(unix_round_trip(srv.path), b"ping\n")
                self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
