"""--inetd goes through the same setup as normal serving: --idle-timeout, --stats, SIGTERM drains
and exits 0 with a summary, a UDP socket on stdin is served; stdin that is not a socket is an
error; logs never go to the client when stderr is its socket (attack #18, newcomer F11)."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

NOT_A_SOCKET = ("yodel serve: --inetd: standard input is not a socket (run it from inetd, "
                "systemd Accept=yes, or socat EXEC:)\n")


def thread_variants():
    """--threads 1, and the default thread count (--inetd serves with one thread whatever)."""
    default = [] if len(os.sched_getaffinity(0)) >= 2 else ["--threads", "2"]
    return [("--threads 1", ["--threads", "1"]), ("default threads", default)]


class Inetd:
    """`yodel serve --inetd ARGS` with sock as stdin and stdout (stderr to a log file, or sock
    too when stderr_is_sock), as inetd runs it."""

    def __init__(self, test, sock, *args, stderr_is_sock=False):
        self.log, child_err = harness.child_log()
        self.proc = subprocess.Popen([harness.YODEL_BIN, "serve", "--inetd"] + list(args),
                                     stdin=sock, stdout=sock,
                                     stderr=sock if stderr_is_sock else child_err)
        child_err.close()
        test.addCleanup(self.kill)

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_stderr(self, predicate, what):
        return hard.wait_for(lambda: predicate(self.stderr()) or self.proc.poll() is not None,
                             harness.IO_TIMEOUT, what) and self.stderr()

    def wait(self, timeout=None):
        try:
            return self.proc.wait(timeout=timeout or harness.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("yodel serve --inetd still running; stderr: %r"
                                 % self.stderr())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def stream_pair():
    ours, theirs = socket.socketpair()
    ours.settimeout(harness.IO_TIMEOUT)
    return ours, theirs


class InetdStream(unittest.TestCase):
    def test_inetd_closes_an_idle_connection_after_the_idle_timeout(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                ours, theirs = stream_pair()
                with ours, theirs:
                    srv = Inetd(self, theirs, "-m", "line", "--idle-timeout", "300ms", *threads)
                    theirs.close()
                    self.assertEqual(hard.round_trip(ours, b"hi\n"), b"hi\n")
                    start = time.monotonic()
                    self.assertIn(hard.closed_by_peer(ours, 5 * hard.SLOW), ("eof", "reset"))
                    self.assertLess(time.monotonic() - start, 4 * hard.SLOW)
                self.assertEqual(srv.wait(), 0, srv.stderr())
                self.assertRegex(srv.stderr(), r"(?m)^yodel serve: summary: .* idle_timeout=1\b")

    def test_inetd_prints_stats_lines_with_stats(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                ours, theirs = stream_pair()
                with ours, theirs:
                    srv = Inetd(self, theirs, "--stats=100ms", *threads)
                    theirs.close()
                    self.assertEqual(hard.round_trip(ours, b"ping"), b"ping")
                    srv.wait_stderr(lambda t: t.count("yodel serve: stats:") >= 2,
                                    "two stats lines")
                    ours.shutdown(socket.SHUT_WR)
                    self.assertEqual(harness.recv_until_eof(ours), b"")
                self.assertEqual(srv.wait(), 0, srv.stderr())
                self.assertRegex(srv.stderr(), r"(?m)^yodel serve: stats: active=1 ")

    def test_inetd_sigterm_echoes_what_was_received_and_exits_0(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                ours, theirs = stream_pair()
                with ours, theirs:
                    srv = Inetd(self, theirs, "-m", "line", "--delay", "300ms", "-v",
                                "--drain-timeout", "5s", *threads)
                    theirs.close()
                    ours.sendall(b"in flight\n")
                    srv.wait_stderr(lambda t: "received" in t, "the line read by the server")
                    srv.proc.send_signal(signal.SIGTERM)
                    self.assertEqual(harness.recv_until_eof(ours), b"in flight\n")
                self.assertEqual(srv.wait(), 0, srv.stderr())
                err = srv.stderr()
                self.assertIn("draining", err)
                self.assertRegex(err, r"(?m)^yodel serve: summary: .* messages=1 ")

    def test_inetd_second_signal_exits_at_once(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                ours, theirs = stream_pair()
                with ours, theirs:
                    srv = Inetd(self, theirs, "-m", "line", "--delay", "20s", "-v",
                                "--drain-timeout", "30s", *threads)
                    theirs.close()
                    ours.sendall(b"held\n")
                    srv.wait_stderr(lambda t: "received" in t, "the line read by the server")
                    srv.proc.send_signal(signal.SIGTERM)
                    srv.wait_stderr(lambda t: "draining" in t, "the draining line")
                    srv.proc.send_signal(signal.SIGINT)
                    self.assertEqual(srv.wait(timeout=3 * hard.SLOW), 128 + signal.SIGINT)

    def test_inetd_logs_go_nowhere_when_stderr_is_the_client_socket(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                ours, theirs = stream_pair()
                with ours, theirs:
                    srv = Inetd(self, theirs, "-m", "line", "-v", *threads, stderr_is_sock=True)
                    theirs.close()
                    ours.sendall(b"one\ntwo\n")
                    ours.shutdown(socket.SHUT_WR)
                    # Only the echo: no "connected"/"received" log, no summary.
                    self.assertEqual(harness.recv_until_eof(ours), b"one\ntwo\n")
                self.assertEqual(srv.wait(), 0)

    def test_inetd_with_stdin_not_a_socket_fails_with_one_line(self):
        for name, threads in thread_variants():
            for stdin in ("pipe", "file", "devnull"):
                with self.subTest(threads=name, stdin=stdin):
                    cmd = [harness.YODEL_BIN, "serve", "--inetd", "-m", "upper"] + threads
                    if stdin == "pipe":
                        r = subprocess.run(cmd, input=b"x\n", stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, timeout=harness.CMD_TIMEOUT)
                    else:
                        path = os.devnull if stdin == "devnull" else os.path.abspath(__file__)
                        with open(path, "rb") as f:
                            r = subprocess.run(cmd, stdin=f, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE,
                                               timeout=harness.CMD_TIMEOUT)
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertEqual(r.stdout, b"")
                    self.assertEqual(r.stderr.decode(), NOT_A_SOCKET)


class InetdDatagram(unittest.TestCase):
    def test_inetd_serves_a_udp_socket_on_stdin_until_sigterm(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as served, \
                        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    served.bind(("127.0.0.1", 0))
                    srv = Inetd(self, served, "-m", "upper", *threads)
                    client.settimeout(harness.IO_TIMEOUT)
                    for i in range(3):
                        client.sendto(b"datagram %d" % i, served.getsockname())
                        reply, peer = client.recvfrom(65536)
                        self.assertEqual(reply, b"DATAGRAM %d" % i)
                        self.assertEqual(peer, served.getsockname())
                srv.proc.send_signal(signal.SIGTERM)
                self.assertEqual(srv.wait(), 0, srv.stderr())
                self.assertRegex(srv.stderr(), r"(?m)^yodel serve: summary: .* messages=3 ")


if __name__ == "__main__":
    unittest.main()
