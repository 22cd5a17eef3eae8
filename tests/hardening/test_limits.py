"""--max-line, --max-conns and --idle-timeout: each limit closes only the connection that
crosses it, counts it, and leaves everything else alone."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

KIB = 1024


@hard.both_thread_counts
class MaxLine(hard.ThreadVariant):
    def test_overlong_line_closes_only_that_connection(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "1024") as srv:
            with harness.connect(srv.tcp) as bystander, harness.connect(srv.tcp) as offender:
                # The bystander has a line in progress when the offender crosses the limit.
                self.assertEqual(hard.round_trip(bystander, b"first\n"), b"first\n")
                bystander.sendall(b"half a ")
                offender.sendall(b"y" * 2000)
                self.assertIsNotNone(hard.closed_by_peer(offender, 5 * hard.SLOW),
                                     "the overlong line did not close its connection")
                bystander.sendall(b"line\n")
                self.assertEqual(harness.recv_exactly(bystander, 12), b"half a line\n")
            self.assertTrue(hard.echo_ok(srv.tcp, b"new client\n"))
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["line_too_long"], 1, counts)
            self.assertEqual(counts["accepted"], 3, counts)

    def test_line_of_exactly_max_line_bytes_is_echoed(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "1024") as srv:
            line = b"z" * 1023 + b"\n"
            self.assertEqual(harness.exchange(srv.tcp, line), line)
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 0)

    def test_line_of_max_line_bytes_plus_its_newline_is_echoed(self):
        # asyncio's limit, which the README cites: the '\n' is not counted.
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "1024") as srv:
            line = b"z" * 1024 + b"\n"
            self.assertEqual(harness.exchange(srv.tcp, line), line)
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 0)

    def test_line_of_max_line_plus_one_bytes_is_rejected(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "1024") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"z" * 1025 + b"\n")
                self.assertIsNotNone(hard.closed_by_peer(s, 5 * hard.SLOW))
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 1)

    def test_default_max_line_echoes_a_64_kib_line_with_its_newline(self):
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            line = b"a" * (64 * KIB) + b"\n"
            self.assertEqual(harness.exchange(srv.tcp, line), line)
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 0)

    def test_overlong_line_is_reset_and_logged_with_the_peer_without_verbose(self):
        # README, Limits and safety: "that connection is reset, logged with its peer, counted as
        # line_too_long" -- with the default log level, not only with -v.
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "64") as srv:
            with harness.connect(srv.tcp) as s:
                peer = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(b"w" * 200)
                how = hard.closed_by_peer(s, 5 * hard.SLOW)
            counts = hard.stop_summary(self, srv)
            self.assertEqual(how, "reset", "an overlong line must reset the connection")
            self.assertEqual(counts["line_too_long"], 1, counts)
            self.assertIn(peer, srv.stderr, "no log line names the peer of the overlong line")

    def test_default_max_line_is_64_kib(self):
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            line = b"a" * (64 * KIB - 1) + b"\n"
            self.assertEqual(harness.exchange(srv.tcp, line), line)
            with harness.connect(srv.tcp) as s:
                s.sendall(b"b" * (64 * KIB + 1))
                self.assertIsNotNone(hard.closed_by_peer(s, 5 * hard.SLOW))
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 1)

    def test_overlong_line_in_upper_mode_closes_the_connection(self):
        with self.serve("-l", hard.LOCAL, "-m", "upper", "--max-line", "100") as srv:
            with harness.connect(srv.tcp) as s:
                self.assertEqual(hard.round_trip(s, b"short\n"), b"SHORT\n")
                s.sendall(b"q" * 101)
                self.assertIsNotNone(hard.closed_by_peer(s, 5 * hard.SLOW))
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 1)

    def test_overlong_line_is_logged_with_the_peer(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "64", "-v") as srv:
            with harness.connect(srv.tcp) as s:
                peer = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(b"w" * 200)
                self.assertIsNotNone(hard.closed_by_peer(s, 5 * hard.SLOW))
            # The close is logged with its reason once the server has seen it.
            text = srv.wait_stderr(
                lambda t: any(peer in l and "closed" in l for l in t.splitlines()),
                what="a log line closing %s" % peer)
            closing = [l for l in text.splitlines() if peer in l and "closed" in l]
            self.assertRegex(closing[0], r"(?i)too long|message|line", closing)
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 1)

    def test_many_partial_lines_keep_server_memory_bounded(self):
        # 200 clients each parked just under a 64 KiB limit: about 12 MiB of partial lines.
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            socks = []
            try:
                for _ in range(200):
                    s = harness.connect(srv.tcp)
                    socks.append(s)
                    s.sendall(b"p" * (64 * KIB - 1))
                for s in socks:
                    s.sendall(b"\n")
                for s in socks:
                    self.assertEqual(len(harness.recv_exactly(s, 64 * KIB)), 64 * KIB)
                rss = hard.rss_kib(srv.proc.pid)
                self.assertLess(rss, (64 + (64 if hard.SANITIZE else 0)) * KIB, rss)
            finally:
                for s in socks:
                    s.close()
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 0)


@hard.both_thread_counts
class MaxConns(hard.ThreadVariant):
    def open_served(self, srv, n):
        socks = []
        for i in range(n):
            s = harness.connect(srv.tcp)
            self.addCleanup(s.close)
            self.assertEqual(hard.round_trip(s, b"held %d\n" % i), b"held %d\n" % i)
            socks.append(s)
        return socks

    def test_connection_beyond_max_conns_is_accepted_and_closed_at_once(self):
        with self.serve("-l", hard.LOCAL, "--max-conns", "3") as srv:
            self.open_served(srv, 3)
            with harness.connect(srv.tcp) as extra:
                started = time.monotonic()
                self.assertEqual(hard.closed_by_peer(extra, 5 * hard.SLOW), "eof")
                self.assertLess(time.monotonic() - started, 1.0 * hard.SLOW)
            counts = hard.stop_summary(self, srv)
            self.assertEqual((counts["accepted"], counts["refused"]), (4, 1), counts)

    def test_refused_connections_never_wait_in_the_backlog(self):
        n = 100
        with self.serve("-l", hard.LOCAL, "--max-conns", "2") as srv:
            held = self.open_served(srv, 2)
            extras = [harness.connect(srv.tcp) for _ in range(n)]
            try:
                outcomes = [hard.closed_by_peer(s, 5 * hard.SLOW) for s in extras]
            finally:
                for s in extras:
                    s.close()
            self.assertEqual(outcomes.count(None), 0, "%d of %d refused connections left open"
                             % (outcomes.count(None), n))
            # The held ones are still served.
            for s in held:
                self.assertEqual(hard.round_trip(s, b"still here\n"), b"still here\n")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["refused"], n, counts)

    def test_slot_freed_by_a_closing_client_is_given_to_a_new_one(self):
        with self.serve("-l", hard.LOCAL, "--max-conns", "2") as srv:
            held = self.open_served(srv, 2)
            held[0].close()
            # The server learns of the close asynchronously: retry until a newcomer is served.
            hard.wait_for(lambda: hard.echo_ok(srv.tcp, b"newcomer\n", timeout=2 * hard.SLOW),
                          5 * hard.SLOW, "a new client served after a slot was freed")
            self.assertEqual(hard.round_trip(held[1], b"old\n"), b"old\n")
            counts = hard.stop_summary(self, srv)
            # Attempts made before the server saw the close were refused; the rest were ours.
            self.assertEqual(counts["accepted"] - counts["refused"], 3, counts)


class MaxConnsAcrossThreads(unittest.TestCase):
    """Four loops, whatever the variant: with one loop this would prove nothing."""

    def test_max_conns_counts_across_every_thread(self):
        # SO_REUSEPORT spreads connections over the threads' sockets: the limit is the process's.
        with hard.serve("-l", hard.LOCAL, "--threads", "4", "--max-conns", "3") as srv:
            socks = [harness.connect(srv.tcp) for _ in range(12)]
            served = 0
            for i, s in enumerate(socks):
                self.addCleanup(s.close)
                try:
                    served += hard.round_trip(s, b"n %d\n" % i) == b"n %d\n" % i
                except (OSError, AssertionError):
                    pass  # refused: EOF or reset instead of the echo
            counts = hard.stop_summary(self, srv)
            self.assertEqual(served, 3, counts)
            self.assertEqual((counts["accepted"], counts["refused"]), (12, 9), counts)


@hard.both_thread_counts
class IdleTimeout(hard.ThreadVariant):
    def test_connection_silent_for_the_idle_timeout_is_closed(self):
        with self.serve("-l", hard.LOCAL, "--idle-timeout", "300ms") as srv:
            with harness.connect(srv.tcp) as s:
                started = time.monotonic()
                how = hard.closed_by_peer(s, 5 * hard.SLOW)
                took = time.monotonic() - started
            self.assertEqual(how, "eof", "an idle close is a FIN, not a reset")
            self.assertGreaterEqual(took, 0.25)
            self.assertLess(took, 1.5 * hard.SLOW)
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 1, counts)

    def test_connection_that_keeps_sending_outlives_the_idle_timeout(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--idle-timeout", "400ms") as srv:
            with harness.connect(srv.tcp) as s:
                # 1.5 s of traffic, one line every 100 ms: never 400 ms of silence.
                end = time.monotonic() + 1.5
                n = 0
                while time.monotonic() < end:
                    self.assertEqual(hard.round_trip(s, b"tick %d\n" % n), b"tick %d\n" % n)
                    n += 1
                    self.assertIsNone(hard.closed_by_peer(s, 0.1))
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 0, counts)

    def test_idle_timeout_leaves_other_connections_alone(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--idle-timeout", "300ms") as srv:
            with harness.connect(srv.tcp) as idle, harness.connect(srv.tcp) as busy:
                deadline = time.monotonic() + 5 * hard.SLOW
                closed = None
                n = 0
                while closed is None and time.monotonic() < deadline:
                    self.assertEqual(hard.round_trip(busy, b"busy %d\n" % n), b"busy %d\n" % n)
                    n += 1
                    closed = hard.closed_by_peer(idle, 0.05)
                self.assertEqual(closed, "eof")
                self.assertEqual(hard.round_trip(busy, b"after\n"), b"after\n")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 1, counts)

    def test_idle_client_that_stopped_reading_is_closed_and_counted_once(self):
        # The client pushed until the server stopped reading it, then went silent: the server
        # has replies queued that will never be read. It must still let go of it, once.
        with self.serve("-l", hard.LOCAL, "--idle-timeout", "300ms") as srv:
            pid = srv.proc.pid
            baseline = hard.fd_count(pid)  # before this client's descriptor
            s = harness.connect(srv.tcp)
            self.addCleanup(s.close)
            reset = False
            try:
                hard.push_until_stalled(s, 64 << 20, stall=0.5 * hard.SLOW)
            except ConnectionResetError:
                reset = True  # the server reset it while we were still checking for the stall
            # Closed means its descriptor is gone from the server.
            try:
                hard.wait_for(lambda: hard.fd_count(pid) <= baseline, 3 * hard.SLOW,
                              "the stalled idle connection closed by the server")
                closed = True
            except AssertionError:
                closed = False
            how = hard.closed_by_peer(s, 1 * hard.SLOW)
            s.close()
            counts = hard.stop_summary(self, srv)
            self.assertTrue(closed, "still open 3 s after a 300 ms idle timeout; summary %r"
                            % counts)
            self.assertEqual(counts["idle_timeout"], 1, counts)
            # Replies were queued that it will never read: a reset, not a FIN.
            self.assertTrue(reset or how == "reset", "closed with %r, not a reset" % how)

    def test_reply_held_by_delay_keeps_the_connection_past_the_idle_timeout(self):
        # A reply the server still holds is progress: the client is waiting for it.
        with self.serve("-l", hard.LOCAL, "-m", "line", "--delay", "800ms",
                        "--idle-timeout", "300ms") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"wait for me\n")
                got = harness.recv_exactly(s, 12, timeout=5 * hard.SLOW)
            self.assertEqual(got, b"wait for me\n")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 0, counts)

    def test_reply_sent_by_the_server_counts_as_activity(self):
        # "No progress either way": the idle clock restarts when the server sends, not only
        # when it receives. The client answers 0.6 s after the reply: within the 1.2 s timeout
        # counted from the reply (0.6 s to spare), but 1.6 s after its own last line.
        with self.serve("-l", hard.LOCAL, "-m", "line", "--delay", "1s",
                        "--idle-timeout", "1200ms") as srv:
            with harness.connect(srv.tcp) as s:
                self.assertEqual(hard.round_trip(s, b"one\n", timeout=5 * hard.SLOW), b"one\n")
                # Silent on purpose: this silence is what the test is about.
                self.assertIsNone(hard.closed_by_peer(s, 0.6),
                                  "closed within 0.6 s of the server's reply")
                self.assertEqual(hard.round_trip(s, b"two\n", timeout=5 * hard.SLOW), b"two\n")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 0, counts)


if __name__ == "__main__":
    unittest.main(verbosity=2)
