"""--stats and --json: the statistics an operator reads on stderr."""

import json
import re
import socket
import threading
import time
import unittest

from opslib import IO_TIMEOUT, harness, ops_serve, wait_until

STATS_RE = re.compile(
    r"^yodel serve: stats: active=(\d+) accepted=(\d+) refused=(\d+) (\d+) msg/s in=(\d+) B/s "
    r"out=(\d+) B/s errors=(\d+)$")


class LineClient:
    """Keeps one connection busy: a line, its echo, the next line, until stopped."""

    def __init__(self, listener):
        self.sock = harness.connect(listener)
        self.stop = threading.Event()
        self.count = 0
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 3 * IO_TIMEOUT
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                line = b"message %d\n" % self.count
                self.sock.sendall(line)
                got = harness.recv_exactly(self.sock, len(line))
                if got != line:
                    raise AssertionError("echo %r for %r" % (got, line))
                self.count += 1
                time.sleep(0.002)
        except Exception as e:  # reported by close()
            self.error = e

    def close(self):
        self.stop.set()
        self.thread.join(IO_TIMEOUT)
        self.sock.close()
        if self.error is not None:
            raise self.error
        return self.count


class StatsTest(unittest.TestCase):
    def test_stats_interval_prints_rates_while_a_client_sends(self):
        with ops_serve("-l", "127.0.0.1:0", "-m", "line", "--stats=200ms") as srv:
            client = LineClient(srv.tcp)
            try:
                text = srv.wait_stderr(
                    lambda t: any((m := STATS_RE.match(l)) and int(m.group(4)) > 0
                                  and int(m.group(1)) == 1 for l in t.splitlines()),
                    what="a stats line with 1 active connection and messages/s above 0")
            finally:
                sent = client.close()
            status, stderr = srv.stop()
        self.assertEqual(status, 0)
        self.assertGreater(sent, 0)
        busy = [STATS_RE.match(l) for l in text.splitlines() if STATS_RE.match(l)]
        m = next(m for m in busy if int(m.group(4)) > 0)
        self.assertEqual(int(m.group(2)), 1, m.group(0))
        self.assertGreater(int(m.group(5)), 0, "bytes/s in: " + m.group(0))
        self.assertGreater(int(m.group(6)), 0, "bytes/s out: " + m.group(0))
        summary = [l for l in stderr.splitlines() if l.startswith("yodel serve: summary:")]
        self.assertEqual(len(summary), 1, stderr)
        self.assertIn("accepted=1 ", summary[0])
        self.assertIn("messages=%d " % sent, summary[0])

    def test_stats_lines_come_at_the_interval(self):
        with ops_serve("-l", "127.0.0.1:0", "--stats=100ms") as srv:
            start = time.monotonic()
            srv.wait_stderr(lambda t: t.count("yodel serve: stats:") >= 5, what="five stats lines")
            elapsed = time.monotonic() - start
            srv.stop()
        # Five lines at 100 ms take about 0.5 s: not one per second, not a burst.
        self.assertGreater(elapsed, 0.3)
        self.assertLess(elapsed, 3.0 * harness.SLOW)

    def test_summary_is_printed_at_shutdown_without_stats_option(self):
        with ops_serve("-l", "127.0.0.1:0") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"ping"), b"ping")
            status, stderr = srv.stop()
        self.assertEqual(status, 0)
        self.assertNotIn("yodel serve: stats:", stderr)
        self.assertRegex(stderr, r"yodel serve: summary: [\d.]+s accepted=1 refused=0 closed=1 "
                                 r"messages=1 bytes_in=4 bytes_out=4 errors:")

    def test_json_makes_every_stderr_line_one_json_object(self):
        with ops_serve("-l", "127.0.0.1:0", "-m", "line", "--json", "-v", "--stats=100ms",
                       "--max-line", "16") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"hello\nworld\n"), b"hello\nworld\n")
            with harness.connect(srv.tcp) as s:
                s.sendall(b"x" * 64 + b"\n")
                try:
                    harness.recv_until_eof(s)
                except ConnectionResetError:
                    pass  # closed for the long line, with it unread: a reset is fine
            srv.wait_stderr(lambda t: t.count('"event":"stats"') >= 2, what="two JSON stats")
            status, stderr = srv.stop()
        self.assertEqual(status, 0)
        events = []
        for line in stderr.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                self.fail("stderr line is not JSON under --json: %r" % line)
            self.assertIsInstance(obj, dict, line)
            events.append(obj)
        kinds = {e.get("event") for e in events}
        self.assertTrue({"stats", "summary"} <= kinds, kinds)
        self.assertGreaterEqual(len(kinds - {"stats", "summary"}), 2,
                                "no -v connection logs among %r" % kinds)
        summary = [e for e in events if e.get("event") == "summary"]
        self.assertEqual(len(summary), 1)
        self.assertEqual(summary[0]["conns_accepted"], 2)
        self.assertEqual(summary[0]["errors"]["line_too_long"], 1)
        stats = [e for e in events if e.get("event") == "stats"]
        for key in ("conns_active", "conns_accepted", "conns_refused", "messages_per_s",
                    "bytes_in_per_s", "bytes_out_per_s", "errors"):
            self.assertIn(key, stats[-1])

    def test_json_log_of_binary_data_is_escaped_and_the_server_survives(self):
        # Every byte of this payload needs the longest escape, \u00XX: the preview must fit.
        payload = bytes(range(0x80, 0x80 + 100))
        with ops_serve("-l", "127.0.0.1:0", "--json", "-v") as srv:
            self.assertEqual(harness.exchange(srv.tcp, payload), payload)
            self.assertEqual(harness.exchange(srv.tcp, b"still up\n"), b"still up\n")
            status, stderr = srv.stop()
        self.assertEqual(status, 0)
        received = [json.loads(line) for line in stderr.splitlines()
                    if '"event":"received"' in line]
        self.assertTrue(received, stderr)
        self.assertTrue(received[0]["data"].startswith("\x80\x81\x82"), received[0])
        self.assertTrue(received[0]["data"].endswith("..."), received[0])

    def test_summary_and_stats_count_bad_requests_to_the_metrics_endpoint(self):
        from opslib import http_request
        with ops_serve("-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--stats=100ms") as srv:
            for _ in range(3):
                self.assertEqual(http_request(srv.metrics_port, b"GET /nope HTTP/1.0\r\n\r\n")[0],
                                 404)
            text = srv.wait_stderr(
                lambda t: any((m := STATS_RE.match(l)) and int(m.group(7)) == 3
                              for l in t.splitlines()),
                what="a stats line with the 3 bad requests as errors")
            self.assertTrue(text)
            status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertRegex(stderr, r"(?m)^yodel serve: summary: .* http=3\b")

    def test_json_stats_draining_and_summary_events_carry_a_timestamp(self):
        with ops_serve("-l", "127.0.0.1:0", "--json", "--stats=100ms") as srv:
            srv.wait_stderr(lambda t: '"event":"stats"' in t, what="a JSON stats line")
            before = time.time()
            status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        events = {}
        for line in stderr.splitlines():
            obj = json.loads(line)
            events.setdefault(obj["event"], obj)
        self.assertTrue({"stats", "draining", "summary"} <= set(events), events)
        for name in ("stats", "draining", "summary"):
            ts = events[name].get("ts")
            self.assertIsInstance(ts, float, events[name])
            self.assertLess(abs(ts - before), 60, events[name])
        self.assertGreaterEqual(events["summary"]["ts"], events["draining"]["ts"])

    def test_every_line_of_the_server_on_stderr_starts_with_yodel_serve(self):
        with ops_serve("-l", "127.0.0.1:0", "--stats=100ms", "--metrics", "127.0.0.1:0") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"ping"), b"ping")
            srv.wait_stderr(lambda t: "stats:" in t, what="a stats line")
            status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        lines = [l for l in stderr.splitlines() if l.strip()]
        self.assertTrue(any("draining" in l for l in lines), lines)
        self.assertTrue(any("summary:" in l for l in lines), lines)
        for line in lines:
            self.assertTrue(line.startswith("yodel serve: "), line)

    def test_summary_counts_a_connection_reset_at_the_drain_deadline_as_drain_timeout(self):
        with ops_serve("-l", "127.0.0.1:0", "-m", "line", "--delay", "10s", "--drain-timeout",
                       "200ms", "-v") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"never answered\n")
                srv.wait_stderr(lambda t: "received" in t, what="the line read by the server")
                status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertRegex(stderr, r"(?m)^yodel serve: summary: .* drain_timeout=1\b")

    def test_summary_with_json_lists_drain_timeout_among_the_errors(self):
        with ops_serve("-l", "127.0.0.1:0", "--json") as srv:
            status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        summary = [json.loads(l) for l in stderr.splitlines() if '"summary"' in l]
        self.assertEqual(len(summary), 1, stderr)
        self.assertEqual(summary[0]["errors"].get("drain_timeout"), 0, summary[0])
        self.assertEqual(summary[0]["errors"].get("http"), 0, summary[0])


if __name__ == "__main__":
    unittest.main()
