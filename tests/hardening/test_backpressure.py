"""Back-pressure: a client that sends without reading makes the server stop reading from it
(64 KiB high / 16 KiB low watermark), so its memory stays bounded and others are served."""

import hashlib
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import MIB, harness  # noqa: E402

PUSH_LIMIT = 256 * MIB
# The server's own bound: under ASan the shadow memory and allocator add a constant on top.
RSS_LIMIT_KIB = (64 + (64 if hard.SANITIZE else 0)) * 1024
# README: "a client pushing 256 MiB leaves RSS at ~2.3 MiB": the queue (64 KiB) plus one read
# and the loop's block pool, far below a MiB. ASan's quarantine keeps freed blocks around.
RSS_GROWTH_LIMIT_KIB = (16 if hard.SANITIZE else 2) * 1024
# README: "no read buffer of its own while idle (~800 B in all)" per connection.
IDLE_CONN_BYTES = 8192 if hard.SANITIZE else 1600


@hard.both_thread_counts
class BackPressure(hard.ThreadVariant):
    def setUp(self):
        self.srv = self.serve("-l", hard.LOCAL, "-m", "raw")
        self.addCleanup(self.srv.kill)
        self.baseline_kib = hard.rss_kib(self.srv.proc.pid)

    def stalled_client(self):
        s = harness.connect(self.srv.tcp)
        self.addCleanup(s.close)
        # Small buffers on our side: what the kernel can hold for us is not the point here.
        sent = hard.push_until_stalled(s, PUSH_LIMIT, stall=0.5 * hard.SLOW)
        return s, sent

    def test_client_that_never_reads_keeps_server_rss_under_64_mib(self):
        pid = self.srv.proc.pid
        peak = [0]
        done = threading.Event()

        def sample():
            # Sampled while the client pushes, not only at the end.
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], hard.rss_kib(pid))
                except (OSError, AssertionError):
                    return
                done.wait(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            s, sent = self.stalled_client()
            # Whatever the kernel let us push, the server must not have buffered it.
            peak[0] = max(peak[0], hard.rss_kib(pid))
        finally:
            done.set()
            t.join(5)
        if os.environ.get("HARDENING_VERBOSE"):
            print("\npushed %d bytes; server RSS baseline %d KiB, peak %d KiB"
                  % (sent, self.baseline_kib, peak[0]), file=sys.stderr)
        self.assertLess(sent, PUSH_LIMIT, "the server read all 256 MiB without the client reading")
        self.assertLess(peak[0], RSS_LIMIT_KIB,
                        "RSS peaked at %d KiB (baseline %d KiB) after %d bytes pushed"
                        % (peak[0], self.baseline_kib, sent))
        self.assertLess(peak[0] - self.baseline_kib, RSS_GROWTH_LIMIT_KIB,
                        "RSS grew by %d KiB (baseline %d KiB) after %d bytes pushed"
                        % (peak[0] - self.baseline_kib, self.baseline_kib, sent))
        self.assertIsNone(self.srv.proc.poll())

    def test_server_stops_reading_a_client_that_never_reads(self):
        s, sent = self.stalled_client()
        # Loopback buffers can hold tens of MiB at most; far below what we tried to push.
        self.assertLess(sent, 64 * MIB, "the server kept reading: %d bytes taken" % sent)
        # Still stalled a while later: the server did not resume on its own.
        more = hard.push_until_stalled(s, PUSH_LIMIT, stall=0.3 * hard.SLOW)
        self.assertLess(more, 1 * MIB, "the server read %d more bytes without us reading" % more)

    def test_other_clients_are_served_while_one_client_never_reads(self):
        self.stalled_client()
        for i in range(20):
            payload = b"other client %d\n" % i
            started = time.monotonic()
            self.assertEqual(harness.exchange(self.srv.tcp, payload, timeout=5 * hard.SLOW),
                             payload)
            self.assertLess(time.monotonic() - started, 2.0 * hard.SLOW)

    def test_idle_connection_costs_the_server_under_1600_bytes(self):
        # 2000 connections, each served once and then idle: what they cost the server in RSS.
        n = 2000
        pid = self.srv.proc.pid
        socks = []
        try:
            for i in range(50):  # the loops' buffers and pools exist before the baseline
                socks.append(harness.connect(self.srv.tcp))
                self.assertEqual(hard.round_trip(socks[-1], b"warm"), b"warm")
            baseline_fds = hard.fd_count(pid)
            baseline_kib = hard.rss_kib(pid)
            for i in range(n):
                socks.append(harness.connect(self.srv.tcp))
            hard.wait_for(lambda: hard.fd_count(pid) >= baseline_fds + n, 10 * hard.SLOW,
                          "%d connections accepted" % n)
            for s in socks[50:]:
                self.assertEqual(hard.round_trip(s, b"idle"), b"idle")
            grown = (hard.rss_kib(pid) - baseline_kib) * 1024
        finally:
            for s in socks:
                s.close()
        self.assertLess(grown / n, IDLE_CONN_BYTES,
                        "%d idle connections grew RSS by %d KiB" % (n, grown // 1024))

    def test_stalled_client_gets_every_byte_back_once_it_reads(self):
        # A patterned 32 MiB stream: every byte must come back, in order, after the stall.
        total = 32 * MIB
        block = hashlib.sha256(b"yodel").digest() * 2048  # 64 KiB
        s = harness.connect(self.srv.tcp)
        self.addCleanup(s.close)
        s.settimeout(None)
        sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
        pushed = hard.push_until_stalled(s, total, stall=0.5 * hard.SLOW, chunk=block)
        self.assertLess(pushed, total)

        def writer():
            stream = block * (total // len(block) + 2)
            start = pushed % len(block)
            s.sendall(stream[start : start + total - pushed])
            s.shutdown(socket.SHUT_WR)

        for off in range(0, total, len(block)):
            sent_hash.update(block[: min(len(block), total - off)])
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got = 0
        deadline = time.monotonic() + 60 * hard.SLOW
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
            got_hash.update(chunk)
            self.assertLess(time.monotonic(), deadline, "only %d of %d bytes back" % (got, total))
        t.join(10)
        self.assertEqual(got, total)
        self.assertEqual(got_hash.hexdigest(), sent_hash.hexdigest())


if __name__ == "__main__":
    unittest.main(verbosity=2)
