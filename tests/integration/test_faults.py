"""yodel serve's injected faults, for testing clients: --drop (datagrams left unanswered),
--reset (connections reset after their first reply), --delay D~J (jitter, replies in order).
Each is off by default; bad values exit 2 naming the option."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import serve  # noqa: E402

LOCAL = "127.0.0.1:0"
UDP_LOCAL = "udp://127.0.0.1:0"
THREADS = ("1", "2")
# How long a marker datagram waits for its echo before it is sent again (it may be dropped too).
MARKER_WAIT = 0.5 * harness.SLOW
BATCH = 50


class UdpCounter:
    """Sends numbered datagrams in batches and counts the echoes. After each batch a marker is
    sent until its echo comes back: the server answers one sender's datagrams in order, so by
    then every echo of the batch that is coming has come. No wait for a quiet period."""

    def __init__(self, listener):
        self.listener = listener
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.answered = set()
        self.markers = 0

    def close(self):
        self.sock.close()

    def _receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65536)
        except socket.timeout:
            return None
        return data

    def _take(self, data):
        if data.startswith(b"d"):
            n = int(data[1:])
            if n in self.answered:
                raise AssertionError("datagram %d answered twice" % n)
            self.answered.add(n)

    def batch(self, first, count):
        for n in range(first, first + count):
            self.sock.sendto(b"d%d" % n, self.listener.sockaddr)
        self.markers += 1
        marker = b"m%d" % self.markers
        deadline = time.monotonic() + harness.IO_TIMEOUT
        while time.monotonic() < deadline:
            self.sock.sendto(marker, self.listener.sockaddr)
            wait_until = time.monotonic() + MARKER_WAIT
            while time.monotonic() < wait_until:
                data = self._receive(max(wait_until - time.monotonic(), 0.001))
                if data == marker:
                    return
                if data is not None:
                    self._take(data)
        raise AssertionError("marker %r never came back within %.0fs" % (marker, harness.IO_TIMEOUT))


class Drop(unittest.TestCase):
    def count_answered(self, srv, total):
        counter = UdpCounter(srv.udp)
        try:
            for first in range(0, total, BATCH):
                counter.batch(first, min(BATCH, total - first))
            return len(counter.answered)
        finally:
            counter.close()

    def test_drop_10_leaves_about_10_percent_of_1000_datagrams_unanswered(self):
        for threads in THREADS:
            with self.subTest(threads=threads):
                with serve("-l", UDP_LOCAL, "--drop", "10", "--threads", threads) as srv:
                    dropped = 1000 - self.count_answered(srv, 1000)
                    # Binomial(1000, 0.1): 100 +- 9.5; 40..180 is far outside chance.
                    self.assertGreaterEqual(dropped, 40)
                    self.assertLessEqual(dropped, 180)
                    self.assertEqual(srv.stop()[0], 0)

    def test_without_drop_every_datagram_is_answered(self):
        with serve("-l", UDP_LOCAL) as srv:
            self.assertEqual(self.count_answered(srv, 200), 200)

    def test_drop_does_not_touch_stream_connections(self):
        with serve("-l", UDP_LOCAL, "-l", LOCAL, "--drop", "100") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"kept"), b"kept")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(MARKER_WAIT)
                s.sendto(b"lost", srv.udp.sockaddr)
                with self.assertRaises(socket.timeout):
                    s.recvfrom(65536)


class Reset(unittest.TestCase):
    def first_reply_then_reset(self, listener, payload, first):
        """Sends payload; returns (what came back, whether the connection was reset)."""
        with harness.connect(listener) as s:
            s.sendall(payload)
            try:
                s.shutdown(socket.SHUT_WR)  # without a reset, the server closes after our EOF
            except OSError:
                pass  # the reset came first: what it left to read is read below
            got = harness.recv_exactly(s, len(first))
            try:
                rest = harness.recv_until_eof(s)
            except ConnectionResetError:
                return got, True
            return got + rest, False

    def test_reset_100_resets_every_connection_after_its_first_reply(self):
        for threads in THREADS:
            with self.subTest(threads=threads):
                with serve("-l", LOCAL, "-m", "line", "--reset", "100",
                           "--threads", threads) as srv:
                    for _ in range(10):
                        got, reset = self.first_reply_then_reset(srv.tcp, b"one\ntwo\n", b"one\n")
                        self.assertEqual(got, b"one\n")
                        self.assertTrue(reset, "connection closed without a reset")
                    self.assertEqual(srv.stop()[0], 0)

    def test_reset_waits_for_a_delayed_first_reply(self):
        with serve("-l", LOCAL, "-m", "line", "--reset", "100", "--delay", "30ms") as srv:
            got, reset = self.first_reply_then_reset(srv.tcp, b"one\ntwo\n", b"one\n")
            self.assertEqual(got, b"one\n")
            self.assertTrue(reset)

    def test_reset_in_raw_mode_follows_the_first_chunk(self):
        with serve("-l", LOCAL, "--reset", "100") as srv:
            got, reset = self.first_reply_then_reset(srv.tcp, b"chunk", b"chunk")
            self.assertEqual(got, b"chunk")
            self.assertTrue(reset)

    def test_reset_50_resets_some_connections_and_not_others(self):
        with serve("-l", LOCAL, "-m", "line", "--reset", "50") as srv:
            resets = 0
            for _ in range(40):
                got, reset = self.first_reply_then_reset(srv.tcp, b"one\ntwo\n", b"one\n")
                self.assertEqual(got, b"one\n" if reset else b"one\ntwo\n")
                resets += reset
            # Binomial(40, 0.5): 20 +- 3.2.
            self.assertGreaterEqual(resets, 5)
            self.assertLessEqual(resets, 35)

    def test_without_reset_connections_close_cleanly(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            got, reset = self.first_reply_then_reset(srv.tcp, b"one\ntwo\n", b"one\n")
            self.assertEqual((got, reset), (b"one\ntwo\n", False))


class Jitter(unittest.TestCase):
    def test_delay_50ms_jitter_20ms_replies_take_30_to_70ms(self):
        with serve("-l", LOCAL, "-m", "line", "--delay", "50ms~20ms") as srv:
            with harness.connect(srv.tcp) as s:
                times = []
                for i in range(30):
                    line = b"%d\n" % i
                    start = time.monotonic()
                    s.sendall(line)
                    self.assertEqual(harness.recv_exactly(s, len(line)), line)
                    times.append(time.monotonic() - start)
        # The loop's timers count whole milliseconds from a clock read at the wake-up: 1 ms of
        # slack below; above, whatever a loaded machine adds.
        self.assertGreaterEqual(min(times), 0.029, times)
        self.assertLessEqual(max(times), 0.070 + 0.3 * harness.SLOW, times)
        # Jitter, not a fixed delay: uniform over 40 ms, 30 draws spread far more than 10 ms.
        self.assertGreater(max(times) - min(times), 0.010, times)

    def test_delay_with_jitter_keeps_replies_in_order(self):
        lines = b"".join(b"line %d\n" % i for i in range(200))
        with serve("-l", LOCAL, "-m", "line", "--delay", "50ms~20ms") as srv:
            with harness.connect(srv.tcp) as s:
                start = time.monotonic()
                s.sendall(lines)
                first = harness.recv_exactly(s, len(b"line 0\n"))
                elapsed = time.monotonic() - start
                rest = harness.recv_exactly(s, len(lines) - len(first))
        self.assertEqual(first + rest, lines)
        self.assertGreaterEqual(elapsed, 0.029)

    def test_delay_without_jitter_is_unchanged(self):
        with serve("-l", LOCAL, "-m", "line", "--delay", "40ms") as srv:
            with harness.connect(srv.tcp) as s:
                start = time.monotonic()
                s.sendall(b"x\n")
                self.assertEqual(harness.recv_exactly(s, 2), b"x\n")
                self.assertGreaterEqual(time.monotonic() - start, 0.039)


class Usage(unittest.TestCase):
    def assert_usage_error(self, *args, names):
        r = harness.yodel("serve", "-l", LOCAL, *args, timeout=harness.START_TIMEOUT)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 2, err)
        self.assertEqual(len(harness.stderr_lines(err)), 1, err)
        for name in names:
            self.assertIn(name, err)

    def test_drop_above_100_exits_2(self):
        self.assert_usage_error("--drop", "101", names=("--drop", "101"))

    def test_drop_that_is_no_number_exits_2(self):
        self.assert_usage_error("--drop", "some", names=("--drop", "some"))

    def test_negative_reset_exits_2(self):
        self.assert_usage_error("--reset", "-1", names=("--reset", "-1"))

    def test_reset_nan_exits_2(self):
        self.assert_usage_error("--reset", "nan", names=("--reset", "nan"))

    def test_jitter_above_the_delay_exits_2(self):
        self.assert_usage_error("--delay", "5ms~6ms", names=("--delay", "5ms~6ms"))

    def test_jitter_without_a_duration_exits_2(self):
        self.assert_usage_error("--delay", "5ms~", names=("--delay", "5ms~"))

    def test_percent_sign_is_accepted(self):
        with serve("-l", UDP_LOCAL, "--drop", "0%", "--reset", "0.0") as srv:
            self.assertEqual(harness.udp_exchange(srv.udp, b"x"), b"x")

    def test_help_lists_the_identity_and_fault_options(self):
        r = harness.yodel("serve", "--help")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        for word in ("--banner", "--prefix", "info", "--drop", "--reset", "~JITTER",
                     "{env:NAME}", "{tls_subject}"):
            self.assertIn(word, out)


if __name__ == "__main__":
    unittest.main()
