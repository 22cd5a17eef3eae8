"""SIGINT/SIGTERM: stop accepting, echo everything already received (and what arrives while
draining, up to --drain-timeout), close, print the summary, exit 0; a second signal exits at
once with 128+signum. No byte received before the signal is lost."""

import hashlib
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import MIB, harness  # noqa: E402

BLOCK = hashlib.sha256(b"drain").digest() * 2048  # 64 KiB; byte i of a stream is BLOCK[i % 64K]


def pattern(n):
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


def signal_and_wait_for_drain(srv, sig=signal.SIGTERM):
    srv.send_signal(sig)
    srv.wait_stderr(lambda t: "draining" in t, timeout=5 * hard.SLOW, what="the draining line")


def read_all(sock, timeout):
    """Everything until EOF; a reset is reported as such, with what came before it."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not chunk:
            return b"".join(chunks), "eof"
        chunks.append(chunk)


@hard.both_thread_counts
class Drain(hard.ThreadVariant):
    def test_data_not_yet_echoed_at_the_signal_is_echoed_in_full(self):
        with self.serve("-l", hard.LOCAL) as srv:
            with harness.connect(srv.tcp) as s:
                # Megabytes the server has not echoed yet: in its queue and socket buffers.
                pushed = hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW,
                                                 chunk=BLOCK)
                signal_and_wait_for_drain(srv)
                got, how = read_all(s, 20 * hard.SLOW)
            self.assertEqual(len(got), pushed, "got %d of %d bytes, then %s"
                             % (len(got), pushed, how))
            self.assertEqual(got, pattern(pushed))
            self.assertEqual(how, "eof")
            status, err = srv.wait_exit()
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual(counts["bytes_out"], pushed, counts)

    def test_data_from_a_half_closed_client_is_echoed_in_full_after_the_signal(self):
        with self.serve("-l", hard.LOCAL) as srv:
            with harness.connect(srv.tcp) as s:
                pushed = hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW,
                                                 chunk=BLOCK)
                s.shutdown(socket.SHUT_WR)
                signal_and_wait_for_drain(srv)
                got, how = read_all(s, 20 * hard.SLOW)
            self.assertEqual((len(got), how), (pushed, "eof"))
            self.assertEqual(got, pattern(pushed))
            self.assertEqual(srv.wait_exit()[0], 0)

    def test_client_sending_during_the_drain_is_echoed_until_the_deadline(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--drain-timeout", "1s") as srv:
            with harness.connect(srv.tcp) as s:
                sent, got = b"", b""
                signalled = ended = None
                how = None
                start = time.monotonic()
                n = 0
                while time.monotonic() - start < 6 * hard.SLOW:
                    if signalled is None and time.monotonic() - start > 0.3:
                        srv.send_signal(signal.SIGTERM)
                        signalled = time.monotonic()
                    line = b"line %d\n" % n
                    n += 1
                    try:
                        s.sendall(line)
                        sent += line
                    except OSError:
                        how = "send failed"
                    s.settimeout(0.02)
                    try:
                        chunk = s.recv(65536)
                        if not chunk:
                            how = "eof"
                        got += chunk
                    except socket.timeout:
                        pass
                    except ConnectionResetError:
                        how = "reset"
                    if how is not None:
                        ended = time.monotonic()
                        break
            self.assertIsNotNone(ended, "the connection outlived a 1 s drain by 5 s")
            self.assertTrue(sent.startswith(got), "echo is not a prefix of what was sent")
            # Lines sent well after the signal were still echoed...
            last = int(got.rstrip(b"\n").rsplit(b"\n", 1)[-1].split()[1]) if got else -1
            lines_before_signal = int(0.3 / 0.02)
            self.assertGreater(last, lines_before_signal + 10,
                               "nothing echoed after the signal (last line %d)" % last)
            # ...until the deadline, and not much past it.
            self.assertGreater(ended - signalled, 0.8, how)
            self.assertLess(ended - signalled, 2.5 * hard.SLOW, how)
            status, err = srv.wait_exit(timeout=3 * hard.SLOW)
            self.assertEqual(status, 0, err)
            hard.summary(err)

    def test_server_exits_promptly_once_the_drain_deadline_passes(self):
        with self.serve("-l", hard.LOCAL, "--drain-timeout", "500ms") as srv:
            with harness.connect(srv.tcp) as s:
                hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW)
                started = time.monotonic()
                signal_and_wait_for_drain(srv)
                # The client never reads: only the deadline can end it.
                status, err = srv.wait_exit(timeout=5 * hard.SLOW)
                took = time.monotonic() - started
                self.assertEqual(hard.closed_by_peer(s, 2 * hard.SLOW), "reset")
            self.assertEqual(status, 0, err)
            self.assertGreater(took, 0.4)
            self.assertLess(took, 2.0 * hard.SLOW)
            hard.summary(err)

    def test_idle_clients_are_closed_soon_after_the_signal(self):
        with self.serve("-l", hard.LOCAL) as srv:
            socks = [harness.connect(srv.tcp) for _ in range(20)]
            try:
                for s in socks:
                    self.assertEqual(hard.round_trip(s, b"hi"), b"hi")
                started = time.monotonic()
                srv.send_signal(signal.SIGTERM)
                outcomes = [hard.closed_by_peer(s, 5 * hard.SLOW) for s in socks]
                took = time.monotonic() - started
            finally:
                for s in socks:
                    s.close()
            self.assertEqual(set(outcomes), {"eof"}, outcomes)
            self.assertLess(took, 1.5 * hard.SLOW, "default drain is 5 s; quiet clients go first")
            status, err = srv.wait_exit(timeout=3 * hard.SLOW)
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual((counts["accepted"], counts["closed"]), (20, 20), counts)

    def test_sigint_alone_drains_and_exits_0_with_a_summary(self):
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            with harness.connect(srv.tcp) as s:
                self.assertEqual(hard.round_trip(s, b"before\n"), b"before\n")
                srv.send_signal(signal.SIGINT)
                # Still served while draining, then closed once quiet.
                self.assertEqual(hard.round_trip(s, b"during\n"), b"during\n")
                self.assertEqual(hard.closed_by_peer(s, 5 * hard.SLOW), "eof")
            status, err = srv.wait_exit()
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual((counts["accepted"], counts["closed"]), (1, 1), counts)

    def test_partial_line_received_before_the_signal_is_not_dropped_silently(self):
        # "Echo everything received": a line without its '\n' yet is echoed before the close
        # (as at EOF), or the connection is reset so that the client knows. Never a clean FIN
        # with the bytes gone.
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"full line\npartial line")
                self.assertEqual(harness.recv_exactly(s, 10), b"full line\n")
                # One 22-byte segment: the full line's echo means the partial one was read too
                # (bytes_in in the summary confirms it).
                srv.send_signal(signal.SIGTERM)
                got, how = read_all(s, 10 * hard.SLOW)
            status, err = srv.wait_exit()
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual(counts["bytes_in"], 22, counts)
            self.assertTrue(how == "reset" or (how == "eof" and got == b"partial line"),
                            "after the signal: %r then %s" % (got, how))

    def test_default_drain_timeout_is_5_seconds(self):
        with self.serve("-l", hard.LOCAL) as srv:
            with harness.connect(srv.tcp) as s:
                # Never reads: only the deadline ends its drain.
                hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW)
                started = time.monotonic()
                signal_and_wait_for_drain(srv)
                status, err = srv.wait_exit(timeout=15 * hard.SLOW)
                took = time.monotonic() - started
            self.assertEqual(status, 0, err)
            self.assertGreater(took, 4.5)
            self.assertLess(took, 7.0 * hard.SLOW)

    def test_connection_force_closed_at_the_drain_deadline_is_counted(self):
        # A connection reset at the deadline lost data: the summary must not read "0 errors".
        with self.serve("-l", hard.LOCAL, "--drain-timeout", "300ms") as srv:
            with harness.connect(srv.tcp) as s:
                hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW)
                signal_and_wait_for_drain(srv)
                status, err = srv.wait_exit(timeout=5 * hard.SLOW)
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual(counts.get("drain_timeout"), 1, counts)

    def test_listeners_are_closed_when_draining_starts(self):
        with self.serve("-l", hard.LOCAL, "--drain-timeout", "30s") as srv:
            with harness.connect(srv.tcp) as s:
                hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW)
                signal_and_wait_for_drain(srv)
                # The listener closes in the loop iteration after the line is printed.
                hard.wait_for(lambda: not hard.echo_ok(srv.tcp, timeout=1), 5 * hard.SLOW,
                              "new connections refused while draining")
                with self.assertRaises(ConnectionRefusedError):
                    harness.connect(srv.tcp).close()
            srv.kill()


@hard.both_thread_counts
class SecondSignal(hard.ThreadVariant):
    def assert_second_signal_exits_at_once(self, first, second):
        with self.serve("-l", hard.LOCAL, "--drain-timeout", "30s") as srv:
            # With several loops, the client is on a worker thread and the main loop (which
            # watches the signals) has nothing left to drain: the case users hit half the time.
            s = hard.connect_on_a_worker(srv) if self.threads > 1 else harness.connect(srv.tcp)
            with s:
                # A client that never reads keeps the drain going for its 30 s.
                hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW)
                signal_and_wait_for_drain(srv, first)
                started = time.monotonic()
                srv.send_signal(second)
                status, err = srv.wait_exit(timeout=5 * hard.SLOW)
                took = time.monotonic() - started
        self.assertEqual(status, 128 + second, err)
        self.assertLess(took, 1.0 * hard.SLOW)

    def test_second_sigterm_exits_at_once_with_143(self):
        self.assert_second_signal_exits_at_once(signal.SIGTERM, signal.SIGTERM)

    def test_sigint_then_sigint_exits_at_once_with_130(self):
        self.assert_second_signal_exits_at_once(signal.SIGINT, signal.SIGINT)

    def test_sigterm_then_sigint_exits_at_once_with_130(self):
        self.assert_second_signal_exits_at_once(signal.SIGTERM, signal.SIGINT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
