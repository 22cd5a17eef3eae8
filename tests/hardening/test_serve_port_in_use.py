"""A port already in use is an error with any thread count: a second `yodel serve` (or the same
-l twice in one process) fails with `cannot listen on ADDR: address already in use`, exit 1,
instead of quietly taking a share of the traffic through SO_REUSEPORT (attack #7, newcomer F5)."""

import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402


def thread_variants():
    """--threads 1, and the default thread count (at least 2)."""
    default = [] if len(os.sched_getaffinity(0)) >= 2 else ["--threads", "2"]
    return [("--threads 1", ["--threads", "1"]), ("default threads", default)]


def stop_summary(test, srv):
    """Stops srv with SIGTERM, asserts exit 0, returns the summary's counters (hard.py's
    helper, for the summary line's "yodel serve:" prefix)."""
    status, err = srv.stop()
    test.assertEqual(status, 0, err)
    lines = re.findall(r"^yodel(?: serve)?: summary: .*$", err, re.M)
    test.assertTrue(lines, err)
    return {k: int(v) for k, v in re.findall(r"\b(\w+)=(\d+)", lines[-1])}


def free_port():
    """A port free for TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if harness.free_port(port):
            return port
    raise AssertionError("no free port found")


class PortInUse(unittest.TestCase):
    def assert_in_use(self, r, addr):
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, b"", "no listening line for a server that failed")
        self.assertEqual(r.stderr.decode(),
                         "yodel serve: cannot listen on %s: address already in use\n" % addr)

    def test_second_server_on_the_same_tcp_port_fails_and_the_first_keeps_serving(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with harness.serve("-l", hard.LOCAL, *threads) as first:
                    addr = "127.0.0.1:%d" % first.tcp.port
                    r = harness.yodel("serve", "-l", addr, *threads)
                    self.assert_in_use(r, addr)
                    for i in range(10):
                        self.assertTrue(hard.echo_ok(first.tcp, b"still mine %d\n" % i))
                    counts = stop_summary(self, first)
                self.assertEqual(counts["accepted"], 10, counts)

    def test_second_server_on_the_same_udp_port_fails(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with harness.serve("-l", "udp://" + hard.LOCAL, *threads) as first:
                    addr = "udp://127.0.0.1:%d" % first.udp.port
                    r = harness.yodel("serve", "-l", addr, *threads)
                    self.assert_in_use(r, addr)
                    for i in range(10):
                        self.assertEqual(harness.udp_exchange(first.udp, b"d%d" % i), b"d%d" % i)
                    counts = stop_summary(self, first)
                self.assertEqual(counts["messages"], 10, counts)

    def test_second_server_with_another_thread_count_fails_too(self):
        one, default = thread_variants()
        for a, b in [(one, default), (default, one)]:
            with self.subTest(first=a[0], second=b[0]):
                with harness.serve("-l", hard.LOCAL, *a[1]) as first:
                    addr = "127.0.0.1:%d" % first.tcp.port
                    self.assert_in_use(harness.yodel("serve", "-l", addr, *b[1]), addr)
                    self.assertEqual(stop_summary(self, first)["accepted"], 0)

    def test_the_same_address_twice_in_one_process_fails(self):
        for name, threads in thread_variants():
            for scheme in ("", "udp://"):
                with self.subTest(threads=name, scheme=scheme or "tcp"):
                    addr = "%s127.0.0.1:%d" % (scheme, free_port())
                    r = harness.yodel("serve", "-l", addr, "-l", addr, *threads)
                    self.assert_in_use(r, addr)

    def test_a_port_held_by_another_program_with_so_reuseport_is_in_use(self):
        # nc -l and many servers set SO_REUSEPORT: joining their group would split the traffic.
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with socket.socket() as other:
                    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    other.bind(("127.0.0.1", 0))
                    other.listen()
                    addr = "127.0.0.1:%d" % other.getsockname()[1]
                    self.assert_in_use(harness.yodel("serve", "-l", addr, *threads), addr)

    def test_port_in_use_is_a_json_error_line_with_json(self):
        import json
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with harness.serve("-l", hard.LOCAL, *threads) as first:
                    addr = "127.0.0.1:%d" % first.tcp.port
                    r = harness.yodel("serve", "-l", addr, "--json", *threads)
                    self.assertEqual(r.returncode, 1, r.stderr)
                    lines = r.stderr.decode().splitlines()
                    self.assertEqual(len(lines), 1, lines)
                    event = json.loads(lines[0])
                    self.assertEqual(event["event"], "error", event)
                    self.assertEqual(event["message"],
                                     "cannot listen on %s: address already in use" % addr)
                    self.assertIn("ts", event)
                    self.assertEqual(first.stop()[0], 0)


if __name__ == "__main__":
    unittest.main()
