#!/usr/bin/python3
"""The shape of `yodel bench`'s load: connects paced by --connect-rate, source addresses
(--bind), a ramp of the open-loop rate (--rate A:B --ramp D) and several targets (-c repeated).

What bench claims is checked against what the real `yodel serve` saw: its -v log (one JSON line
per connection and message, with the peer address and a timestamp) and its summary at shutdown.
YODEL_BIN names the binary; every wait has a deadline.
"""
import json
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from harness import Server  # noqa: E402
from test_bench import bench, bench_json  # noqa: E402

SIZE = 64


def events(server, kind):
    """The server's -v --json log lines of one kind ("connected", "received", ...)."""
    out = []
    for line in server.read_stderr().splitlines():
        if line.startswith("{") and '"event":"%s"' % kind in line:
            out.append(json.loads(line))
    return out


def bytes_in(stderr):
    """The bytes a stopped `yodel serve` says it received, from its summary line."""
    m = re.search(r"bytes_in=(\d+)", stderr)
    if m is None:
        raise AssertionError("no summary with bytes_in in %r" % stderr)
    return int(m.group(1))


class BenchLoadTest(unittest.TestCase):
    def serve(self, *args):
        server = Server(["-l", "127.0.0.1:0", *args])
        self.addCleanup(server.kill)
        return server

    def assert_usage_error(self, result, *words):
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        for word in words:
            self.assertIn(word, result.stderr)

    # --connect-rate

    def test_200_connections_at_connect_rate_100_take_about_2_s_to_come_up(self):
        server = self.serve("-v", "--json")
        result, report = bench_json("-c", server.tcp.addr, "-n", "200", "--connect-rate", "100",
                                    "-t", "0.2s", "--warmup", "0", "--threads", "2")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(report["connected"], 200)
        self.assertEqual(report["connect_rate"], 100)
        # 199 intervals of 10 ms: the first connect to the last is 1.99 s (generous bounds).
        self.assertGreaterEqual(report["connect_phase_s"], 1.7)
        self.assertLess(report["connect_phase_s"], 6.0)
        # The server saw them arrive over the same time: its own timestamps (ms).
        accepted = [e["ts"] for e in events(server, "connected")]
        self.assertEqual(len(accepted), 200)
        self.assertGreaterEqual(max(accepted) - min(accepted), 1.7)

    def test_reconnects_under_reconnect_every_are_paced_by_the_connect_rate(self):
        server = self.serve()
        result, report = bench_json("-c", server.tcp.addr, "-n", "10", "--reconnect-every", "1",
                                    "--connect-rate", "200", "-t", "1s", "--warmup", "0.2s")
        self.assertEqual(result.returncode, 0, result.stderr)
        # Unpaced, 10 connections on loopback reconnect thousands of times a second.
        self.assertGreater(report["connects_per_s"], 100)
        self.assertLess(report["connects_per_s"], 240)
        self.assertEqual(report["errors"], 0)

    def test_connect_latency_is_reported_for_the_reconnects_under_reconnect_every(self):
        server = self.serve()
        result, report = bench_json("-c", server.tcp.addr, "-n", "4", "--reconnect-every", "2",
                                    "-t", "0.5s", "--warmup", "0.1s")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(report["connects"], 4)
        self.assertIsNotNone(report["connect_us"]["p50"])
        self.assertIsNotNone(report["connect_us"]["p99"])
        self.assertGreater(report["connect_us"]["max"], 0)

    def test_connect_rate_0_exits_2_naming_the_option(self):
        self.assert_usage_error(bench("--connect-rate", "0"), "--connect-rate", "0")

    # --bind

    def test_bind_spreads_the_connections_over_the_source_addresses_half_each(self):
        server = self.serve("-v", "--json")
        result = bench("-c", server.tcp.addr, "-n", "10", "-t", "0.2s", "--warmup", "0",
                       "--bind", "127.0.0.2", "--bind", "127.0.0.3")
        self.assertEqual(result.returncode, 0, result.stderr)
        peers = [e["peer"].rsplit(":", 1)[0] for e in events(server, "connected")]
        self.assertEqual(sorted(peers), ["127.0.0.2"] * 5 + ["127.0.0.3"] * 5)

    def test_a_bind_address_that_is_not_numeric_exits_2_naming_it(self):
        self.assert_usage_error(bench("--bind", "nonsense"), "--bind", "nonsense")

    def test_a_bind_address_that_is_not_local_fails_the_connects_with_exit_1(self):
        server = self.serve()
        result = bench("-c", server.tcp.addr, "-n", "2", "-t", "0.2s", "--bind", "192.0.2.1")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot connect", result.stderr)

    # --rate A:B --ramp D

    def test_a_ramp_raises_the_offered_rate_linearly_from_a_to_b(self):
        server = self.serve("-v", "--json")
        result, report = bench_json("-c", server.tcp.addr, "-n", "10", "--rate", "200:1000",
                                    "--ramp", "1s", "-t", "2s", "--warmup", "0")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(report["ramp"], {"from_per_s": 200, "to_per_s": 1000, "duration_s": 1.0})
        # 600/s on average over the ramp, then 1000/s: 800/s over the 2 s.
        self.assertGreater(report["offered_per_s"], 700)
        self.assertLess(report["offered_per_s"], 880)
        # What the server received, per half second from the first message: rising, then flat.
        received = [e["ts"] for e in events(server, "received")]
        start = min(received)
        halves = [sum(1 for t in received if k * 0.5 <= t - start < (k + 1) * 0.5)
                  for k in range(4)]
        self.assertLess(halves[0], halves[1], halves)
        self.assertLess(halves[1], halves[2], halves)

    def test_a_falling_ramp_exits_2_naming_the_problem(self):
        self.assert_usage_error(bench("--rate", "5:1", "--ramp", "1s"), "--rate 5:1", "below")

    def test_a_ramp_without_ramp_duration_exits_2(self):
        self.assert_usage_error(bench("--rate", "1:5"), "--ramp")

    def test_a_ramp_longer_than_the_run_exits_2(self):
        self.assert_usage_error(bench("--rate", "1:5", "--ramp", "20s", "-t", "10s"), "--ramp",
                                "longer than -t")

    # -c repeated

    def test_each_targets_figures_are_what_its_own_server_counted(self):
        first, second = self.serve(), self.serve()
        result, report = bench_json("-c", first.tcp.addr, "-c", second.tcp.addr, "-n", "10",
                                    "-t", "1s", "--warmup", "0")
        self.assertEqual(result.returncode, 0, result.stderr)
        targets = report["targets"]
        self.assertEqual([t["address"] for t in targets], [first.tcp.addr, second.tcp.addr])
        for server, target in zip((first, second), targets):
            _, stderr = server.stop()
            # Without a warmup every message sent was measured: the server got exactly these.
            self.assertEqual(bytes_in(stderr), target["sent"] * SIZE)
            # Those still in flight at the end (5 connections, depth 1) came back unmeasured.
            self.assertLessEqual(target["sent"] - target["round_trips"], 5)
            self.assertGreater(target["round_trips"], 0)
            self.assertEqual(target["errors"], 0)
            self.assertIsNotNone(target["p99_us"])
        self.assertEqual(sum(t["round_trips"] for t in targets), report["round_trips"])

    def test_a_target_that_refuses_counts_its_errors_and_not_the_others(self):
        good = self.serve()
        refusing = Server(["-l", "127.0.0.1:0"])
        gone = refusing.tcp.addr
        refusing.stop()
        result, report = bench_json("-c", good.tcp.addr, "-c", gone, "-n", "4", "-t", "0.3s",
                                    "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(report["targets"][0]["errors"], 0)
        self.assertGreater(report["targets"][0]["round_trips"], 0)
        self.assertEqual(report["targets"][1]["errors"], 2)
        self.assertEqual(report["targets"][1]["round_trips"], 0)

    def test_targets_of_different_kinds_exit_2(self):
        self.assert_usage_error(bench("-c", "127.0.0.1:1", "-c", "udp://127.0.0.1:1"),
                                "udp://127.0.0.1:1")


if __name__ == "__main__":
    unittest.main()
