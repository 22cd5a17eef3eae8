"""The serve options over TLS: --once, --delay, --max-conns, --idle-timeout, the drain on
SIGTERM (close_notify sent, nothing received lost), and back-pressure: a TLS client pushing
256 MiB without reading keeps the server's RSS under 64 MiB."""

import hashlib
import os
import select
import signal
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import hard, harness  # noqa: E402

MIB = hard.MIB

PUSH_LIMIT = 256 * MIB
RSS_LIMIT_KIB = (64 + (64 if hard.SANITIZE else 0)) * 1024


class Base(hard.ThreadVariant):
    @classmethod
    def setUpClass(cls):
        cls.pki = tlslib.pki()

    def serve_tls(self, *args):
        srv = self.serve("-l", "tls://127.0.0.1:0", *self.pki.server_args(), *args)
        self.addCleanup(srv.kill)
        return srv


@hard.both_thread_counts
class Modes(Base):
    def test_once_replies_to_the_first_line_then_sends_close_notify(self):
        srv = self.serve_tls("-m", "line", "--once")
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            s.sendall(b"first\nsecond\n")
            self.assertEqual(tlslib.recv_until_close_notify(s), b"first\n")
        counts = hard.stop_summary(self, srv)
        self.assertEqual(counts["messages"], 1)

    def test_once_in_raw_mode_replies_to_the_first_read(self):
        srv = self.serve_tls("-m", "raw", "--once")
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            s.sendall(b"only this")
            self.assertEqual(tlslib.recv_until_close_notify(s), b"only this")

    def test_delay_holds_each_reply_and_blocks_no_other_client(self):
        srv = self.serve_tls("-m", "line", "--delay", "400ms")
        li = tlslib.tls_listener(srv)
        with tlslib.tls_connect(li) as slow, tlslib.tls_connect(li) as other:
            started = time.monotonic()
            slow.sendall(b"slow\n")
            other.sendall(b"other\n")
            self.assertEqual(tlslib.recv_exactly(other, 6), b"other\n")
            self.assertEqual(tlslib.recv_exactly(slow, 5), b"slow\n")
            self.assertGreaterEqual(time.monotonic() - started, 0.39)

    def test_upper_mode_with_delay_upper_cases_the_held_reply(self):
        srv = self.serve_tls("-m", "upper", "--delay", "100ms")
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertEqual(tlslib.round_trip(s, b"quiet\n"), b"QUIET\n")


@hard.both_thread_counts
class Limits(Base):
    def test_max_conns_refuses_a_third_tls_client_and_counts_it_as_refused(self):
        srv = self.serve_tls("-m", "line", "--max-conns", "2")
        li = tlslib.tls_listener(srv)
        first = tlslib.tls_connect(li)
        second = tlslib.tls_connect(li)
        try:
            for s in (first, second):
                self.assertEqual(tlslib.round_trip(s, b"in\n"), b"in\n")
            self.assertIsNotNone(tlslib.handshake_refused(li, tlslib.client_context()))
            first.close()
            # The slot is free once the server has seen the close: a bounded retry.
            hard.wait_for(lambda: tlslib.handshake_refused(li, tlslib.client_context()) is None,
                          tlslib.IO_TIMEOUT, "a connection after one closed")
        finally:
            first.close()
            second.close()
        counts = hard.stop_summary(self, srv)
        self.assertGreaterEqual(counts["refused"], 1)
        self.assertEqual(counts["tls_handshake"], 0, "a refusal is not a failed handshake")

    def test_idle_timeout_closes_a_silent_tls_connection_and_counts_it(self):
        srv = self.serve_tls("-m", "line", "--idle-timeout", "1s")
        with tlslib.tls_connect(tlslib.tls_listener(srv), ragged_ok=True) as s:
            self.assertEqual(tlslib.round_trip(s, b"then nothing\n"), b"then nothing\n")
            started = time.monotonic()
            deadline = started + 10 * tlslib.SLOW
            closed = False
            while time.monotonic() < deadline and not closed:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    closed = s.recv(100) == b""
                except (ConnectionError, ssl.SSLError):
                    closed = True
            self.assertTrue(closed, "still open after 10 s")
            self.assertGreaterEqual(time.monotonic() - started, 0.9)
        counts = hard.stop_summary(self, srv)
        self.assertEqual(counts["idle_timeout"], 1)
        self.assertEqual(counts["tls_handshake"], 0)


@hard.both_thread_counts
class Drain(Base):
    def test_sigterm_echoes_all_a_stalled_tls_client_sent_then_sends_close_notify(self):
        srv = self.serve_tls("-m", "raw", "--drain-timeout", "20s")
        s = tlslib.tls_connect(tlslib.tls_listener(srv), timeout=30 * tlslib.SLOW)
        self.addCleanup(s.close)
        # Megabytes the server has not echoed yet: in its queues and the socket buffers.
        pushed = push_tls_until_stalled(s, PUSH_LIMIT, stall=0.5 * tlslib.SLOW)
        self.assertGreater(pushed, 0)
        srv.send_signal(signal.SIGTERM)
        srv.wait_stderr(lambda t: "draining" in t, what="the draining line")
        # Quiet now: the drain echoes everything, then closes with close_notify (the read
        # ends with b"", not SSLEOFError).
        got = tlslib.recv_until_close_notify(s, timeout=30 * tlslib.SLOW, limit=PUSH_LIMIT)
        self.assertEqual(len(got), pushed, srv.read_stderr())
        self.assertEqual(got, pattern(pushed))
        self.assertEqual(srv.wait_exit(timeout=30 * tlslib.SLOW)[0], 0)
        counts = hard.summary(srv.stderr)
        self.assertEqual(counts["bytes_out"], pushed)
        self.assertEqual(counts["drain_timeout"] + counts["reset"] + counts["io"], 0)

    def test_sigterm_delivers_a_held_reply_before_close_notify(self):
        srv = self.serve_tls("-m", "line", "--delay", "500ms", "-v")
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            s.sendall(b"held\n")
            srv.wait_stderr(lambda t: "received 5 bytes" in t, what="the received line")
            srv.send_signal(signal.SIGTERM)
            self.assertEqual(tlslib.recv_until_close_notify(s), b"held\n")
        self.assertEqual(srv.wait_exit()[0], 0)

    def test_sigterm_closes_an_idle_tls_client_with_close_notify(self):
        srv = self.serve_tls("-m", "line")
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertEqual(tlslib.round_trip(s, b"hi\n"), b"hi\n")
            srv.send_signal(signal.SIGTERM)
            self.assertEqual(tlslib.recv_until_close_notify(s), b"")
        self.assertEqual(srv.wait_exit()[0], 0)


# One TLS record's worth of plaintext (16 KiB at most): SSL_write sends a chunk whole or not at
# all, so a write the kernel cut short leaves the server a record it cannot decrypt, never part
# of one it can. Byte i of the stream is BLOCK[i % len(BLOCK)].
BLOCK = hashlib.sha256(b"yodel tls").digest() * 500  # 16000 bytes


def pattern(n):
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


def push_tls_until_stalled(s, limit, stall):
    """Writes up to limit bytes of BLOCKs over the TLS socket s without reading; stops once it
    has not been writable for `stall` seconds. Returns the bytes SSL_write took. One thread
    only: an SSL object is not to be read and written from two at once."""
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 60 * tlslib.SLOW
    try:
        while sent < limit and time.monotonic() < deadline:
            if not select.select([], [s], [], stall)[1]:
                return sent
            try:
                sent += s.send(BLOCK)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                continue
        return sent
    finally:
        s.setblocking(True)


@hard.both_thread_counts
class BackPressure(Base):
    def test_a_tls_client_that_never_reads_keeps_server_rss_under_64_mib(self):
        srv = self.serve_tls("-m", "raw")
        pid = srv.proc.pid
        peak = [hard.rss_kib(pid)]
        baseline = peak[0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], hard.rss_kib(pid))
                except (OSError, AssertionError):
                    return
                done.wait(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            s = tlslib.tls_connect(tlslib.tls_listener(srv))
            self.addCleanup(s.close)
            sent = push_tls_until_stalled(s, PUSH_LIMIT, stall=0.5 * tlslib.SLOW)
            peak[0] = max(peak[0], hard.rss_kib(pid))
        finally:
            done.set()
            t.join(5)
        if os.environ.get("HARDENING_VERBOSE"):
            print("\npushed %d bytes over TLS; RSS baseline %d KiB, peak %d KiB"
                  % (sent, baseline, peak[0]), file=sys.stderr)
        self.assertLess(sent, 64 * MIB, "the server read %d bytes without the client reading"
                        % sent)
        self.assertLess(peak[0], RSS_LIMIT_KIB, "RSS peaked at %d KiB (baseline %d KiB)"
                        % (peak[0], baseline))
        self.assertIsNone(srv.proc.poll())
        # And the server still serves others.
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as other:
            self.assertEqual(tlslib.round_trip(other, b"other"), b"other")

    def test_a_stalled_tls_client_gets_every_byte_back_once_it_reads(self):
        srv = self.serve_tls("-m", "raw")
        s = tlslib.tls_connect(tlslib.tls_listener(srv), timeout=60 * tlslib.SLOW)
        self.addCleanup(s.close)
        pushed = push_tls_until_stalled(s, PUSH_LIMIT, stall=0.5 * tlslib.SLOW)
        self.assertLess(pushed, PUSH_LIMIT, "never stalled")
        got = tlslib.recv_exactly(s, pushed, timeout=60 * tlslib.SLOW)
        self.assertEqual(got, pattern(pushed))
        # The connection goes on as before.
        self.assertEqual(tlslib.round_trip(s, b"and more"), b"and more")


if __name__ == "__main__":
    unittest.main(verbosity=2)
