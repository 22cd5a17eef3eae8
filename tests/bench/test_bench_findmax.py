#!/usr/bin/python3
"""`yodel bench --find-max --slo ...`: the highest rate a server holds under an SLO.

The server with a known ceiling is the real `yodel serve --delay 50ms`: each connection waits
50 ms for each echo, so 50 connections with one message in flight each make at most
50 / 50 ms = 1000 round trips/s, however fast the machine (a long delay makes the time the
machine adds to each round trip a small share of it). Steps are short (-t 1s, 0.2 s warmup) to
keep the test quick. YODEL_BIN names the binary; every wait has a deadline.
"""
import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from harness import Server  # noqa: E402
from test_bench import YODEL, bench  # noqa: E402

CEILING = 1000  # round trips/s: 50 connections, depth 1, 50 ms each
DEADLINE_S = 120


def find_max(*args):
    return subprocess.run([YODEL, "bench", "--find-max", *args], capture_output=True, text=True,
                          timeout=DEADLINE_S)


class BenchFindMaxTest(unittest.TestCase):
    def serve(self, *args):
        server = Server(["-l", "127.0.0.1:0", *args])
        self.addCleanup(server.kill)
        return server

    def assert_usage_error(self, result, *words):
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        for word in words:
            self.assertIn(word, result.stderr)

    def test_find_max_finds_the_ceiling_of_a_delaying_server_within_10_percent(self):
        server = self.serve("--delay", "50ms", "-q")
        # p50, not p99: a step of one second has few samples, and a machine busy with other
        # work would break a p99 bound at any rate. Past the ceiling the queue grows and the
        # median (counted from when each message was due) runs away within the step.
        result = find_max("-c", server.tcp.addr, "-n", "50", "--rate", "200", "--slo",
                          "p50<=60ms,errors<=0", "-t", "1s", "--warmup", "0.2s", "--json")
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        self.assertEqual(result.returncode, 0, result.stderr)
        steps, summary = lines[:-1], lines[-1]
        self.assertTrue(all(s["type"] == "step" for s in steps), steps)
        self.assertEqual(summary["type"], "summary")
        self.assertEqual(summary["mode"], "find-max")
        # The steps printed as they ended are the summary's steps.
        self.assertEqual([dict(s, type=None) for s in steps],
                         [dict(s, type=None) for s in summary["steps"]])
        # Doubling from 200: 200, 400, 800 held; 1600 did not; then bisected.
        self.assertEqual([s["rate_per_s"] for s in steps[:4]], [200, 400, 800, 1600])
        self.assertFalse(steps[3]["held"])
        held = [s["rate_per_s"] for s in steps if s["held"]]
        self.assertEqual(summary["max_rate_per_s"], max(held))
        self.assertGreaterEqual(summary["max_rate_per_s"], CEILING * 0.9, steps)
        self.assertLessEqual(summary["max_rate_per_s"], CEILING * 1.1, steps)
        # Bisected to within 5 %: the lowest rate that broke is just above the highest that held.
        self.assertLessEqual(summary["broke_at_per_s"], summary["max_rate_per_s"] * 1.05 + 1)

    def test_find_max_prints_one_line_per_step_and_exits_1_when_the_first_step_breaks(self):
        server = self.serve("--delay", "10ms", "-q")
        result = find_max("-c", server.tcp.addr, "-n", "2", "--rate", "50", "--slo", "p50<=1ms",
                          "-t", "0.3s", "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        steps = [line for line in result.stdout.splitlines() if line.lstrip().startswith("step ")]
        self.assertEqual(len(steps), 1, result.stdout)
        self.assertIn("broke: p50", steps[0])
        self.assertIn("none held", result.stdout)
        self.assertIn("no rate held", result.stderr)

    def test_find_max_with_reconnect_every_offers_each_steps_rate_on_fresh_connections(self):
        # 20 ms per echo: most connections have their one message in flight when a step stops.
        server = self.serve("--delay", "20ms", "-q")
        result = find_max("-c", server.tcp.addr, "-n", "10", "--reconnect-every", "1", "--rate",
                          "150", "--slo", "errors<=0", "-t", "0.3s", "--warmup", "0.1s", "--json")
        steps = [json.loads(line) for line in result.stdout.splitlines()][:-1]
        self.assertEqual(result.returncode, 0, result.stderr)
        # A connection whose round trip ended after its step stopped must reconnect for the
        # next step (it once stayed open, its one round trip used, and sent nothing more).
        self.assertEqual([s["rate_per_s"] for s in steps[:2]], [150, 300])
        for s in steps[:2]:
            self.assertTrue(s["held"], s)
            self.assertGreaterEqual(s["offered_per_s"], 0.9 * s["rate_per_s"], s)

    def test_a_latency_that_is_not_a_duration_exits_2_naming_it(self):
        self.assert_usage_error(find_max("--slo", "p99<=banana"), "banana", "p99")

    def test_an_unknown_slo_metric_exits_2_naming_it(self):
        self.assert_usage_error(find_max("--slo", "p98<=1ms"), "unknown metric 'p98'")

    def test_a_latency_without_a_unit_exits_2(self):
        self.assert_usage_error(find_max("--slo", "p99<=5"), "p99", "'5'")

    def test_an_error_bound_that_is_not_a_share_or_a_count_exits_2(self):
        self.assert_usage_error(find_max("--slo", "errors<=lots"), "lots")

    def test_find_max_without_slo_exits_2(self):
        self.assert_usage_error(find_max(), "--slo")

    def test_slo_without_find_max_exits_2(self):
        self.assert_usage_error(bench("--slo", "p99<=1ms"), "--find-max")


if __name__ == "__main__":
    unittest.main()
