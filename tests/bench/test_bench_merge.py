#!/usr/bin/python3
"""yodel bench merge and yodel bench compare, on summaries of real runs.

merge: two `yodel bench` processes run at the same time against one `yodel serve` (port 0 on
127.0.0.1); their merged summary must hold exactly what the server received, and percentiles
of the two histograms combined. compare: files made from a real run's summary with a figure
edited. Every wait has a deadline.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from test_bench_live import quantile_ns  # noqa: E402

YODEL = harness.YODEL_BIN
DEADLINE_S = 30
SIZE = 64


def yodel_bench(*args):
    return harness.run([YODEL, "bench"] + [str(a) for a in args], timeout=DEADLINE_S)


class BenchMergeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write(self, name, obj_or_text):
        with open(self.path(name), "w") as f:
            f.write(obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text))
        return self.path(name)

    def serve(self, *args):
        server = harness.serve("-l", "127.0.0.1:0", *(args or ("-q",)))
        self.addCleanup(server.kill)
        return server

    def concurrent_runs(self, server, extra=()):
        """Two yodel bench --json at once; returns their stdout files' paths."""
        paths, procs = [], []
        for name in ("a.json", "b.json"):
            f = open(self.path(name), "wb")
            self.addCleanup(f.close)
            procs.append(subprocess.Popen(
                [YODEL, "bench", "--json", "-c", server.tcp.addr, "-n", "3", "-s", str(SIZE),
                 "-t", "1s", "--warmup", "0", *extra],
                stdout=f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL))
            paths.append(self.path(name))
        for p in procs:
            try:
                _, err = p.communicate(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                p.kill()
                raise
            self.assertEqual(p.returncode, 0, err)
        return paths

    def summary(self, path):
        with open(path) as f:
            return json.loads(f.read().splitlines()[-1])

    def merge(self, *paths):
        out = yodel_bench("merge", "--json", *paths)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1)
        return json.loads(lines[0])

    def real_summary(self):
        server = self.serve()
        out = yodel_bench("--json", "-c", server.tcp.addr, "-n", "2", "-t", "300ms",
                          "--warmup", "0")
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_merge_of_two_concurrent_runs_holds_exactly_what_the_server_received(self):
        server = self.serve("--json")  # its summary at the stop: bytes it received
        a, b = self.concurrent_runs(server)
        merged = self.merge(a, b)
        _, err = server.stop()
        m = re.search(r'"event":"summary".*"bytes_in":(\d+)', err)
        self.assertIsNotNone(m, err)
        sa, sb = self.summary(a), self.summary(b)
        self.assertEqual(merged["sent"], sa["sent"] + sb["sent"])
        self.assertEqual(merged["sent"] * SIZE, int(m.group(1)),
                         "every message the runs sent, and no other, reached the server")
        self.assertEqual(merged["round_trips"], sa["round_trips"] + sb["round_trips"])
        self.assertEqual(merged["merged_runs"], 2)
        self.assertEqual(merged["connections"], 6)
        self.assertAlmostEqual(merged["round_trips_per_s"],
                               sa["round_trips_per_s"] + sb["round_trips_per_s"], delta=0.2)
        self.assertEqual(merged["errors"], 0)

    def test_merged_percentiles_are_those_of_the_two_histograms_combined(self):
        server = self.serve()
        a, b = self.concurrent_runs(server)
        merged = self.merge(a, b)
        combined = {}
        for s in (self.summary(a), self.summary(b)):
            for i, c in s["latency_histogram"]["counts"]:
                combined[i] = combined.get(i, 0) + c
        hist = {"counts": sorted(combined.items()),
                "min_ns": min(self.summary(p)["latency_histogram"]["min_ns"] for p in (a, b)),
                "max_ns": max(self.summary(p)["latency_histogram"]["max_ns"] for p in (a, b))}
        self.assertEqual(sorted(map(tuple, merged["latency_histogram"]["counts"])), hist["counts"])
        for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)):
            want = quantile_ns(hist, q) / 1000
            # The histogram's stated error is 1/128 of the value; the report rounds to 0.1 us.
            self.assertAlmostEqual(merged["latency_us"][key], want, delta=want / 128 + 0.06)

    def test_merge_takes_the_summary_from_json_lines_with_intervals(self):
        server = self.serve()
        a, b = self.concurrent_runs(server, extra=("--interval", "500ms"))
        with open(a) as f:
            self.assertGreater(len(f.read().splitlines()), 1, "intervals, then the summary")
        merged = self.merge(a, b)
        self.assertEqual(merged["round_trips"],
                         self.summary(a)["round_trips"] + self.summary(b)["round_trips"])

    def test_merge_text_report_says_how_many_runs(self):
        s = self.real_summary()
        # Another run with the same figures (one file twice is refused).
        a, b = self.write("a.json", s), self.write("b.json", dict(s, ts=s["ts"] + 1))
        out = yodel_bench("merge", a, b)
        self.assertEqual(out.returncode, 0, out.stderr)
        text = out.stdout.decode()
        self.assertIn("merged         2 runs", text)
        self.assertIn("round trips    %d " % (2 * s["round_trips"]), text)

    def test_merge_refuses_a_file_that_is_not_a_summary_with_one_line(self):
        s = self.real_summary()
        good = self.write("good.json", s)
        for bad in ('{"type":"interval","round_trips":1}', "not json", "", '{"type":"summary"}'):
            out = yodel_bench("merge", good, self.write("bad.json", bad))
            self.assertEqual(out.returncode, 2, bad)
            err = out.stderr.decode().splitlines()
            self.assertEqual(len(err), 1, err)
            self.assertIn("bad.json", err[0])

    def test_merge_refuses_a_histogram_of_another_layout(self):
        s = self.real_summary()
        other = dict(s, latency_histogram=dict(s["latency_histogram"], sub_bits=5))
        out = yodel_bench("merge", self.write("a.json", s), self.write("b.json", other))
        self.assertEqual(out.returncode, 2)
        self.assertIn("layout differs", out.stderr.decode())

    def test_merge_and_compare_without_files_exit_2(self):
        for args in (("merge",), ("compare",), ("compare", "one.json"), ("merge", "--bogus")):
            out = yodel_bench(*args)
            self.assertEqual(out.returncode, 2, args)
            self.assertEqual(len(out.stderr.decode().splitlines()), 1)

    def compare(self, base, new, *extra):
        return yodel_bench("compare", self.write("base.json", base),
                           self.write("new.json", new), *extra)

    def test_compare_exits_1_on_a_20_percent_drop_in_round_trips(self):
        s = self.real_summary()
        out = self.compare(s, dict(s, round_trips_per_s=s["round_trips_per_s"] * 0.8))
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertRegex(out.stdout.decode(), r"round trips/s .* -20\.0 %  REGRESSED")

    def test_compare_exits_0_within_the_threshold(self):
        s = self.real_summary()
        out = self.compare(s, dict(s, round_trips_per_s=s["round_trips_per_s"] * 0.97))
        self.assertEqual(out.returncode, 0, out.stdout)
        out = self.compare(s, dict(s, round_trips_per_s=s["round_trips_per_s"] * 0.8),
                           "--threshold", "25%")
        self.assertEqual(out.returncode, 0, out.stdout)

    def test_compare_exits_1_when_latency_doubles(self):
        s = self.real_summary()
        h = s["latency_histogram"]
        # One bucket power of two up: every latency about doubles.
        slower = dict(h, counts=[[i + 128, c] for i, c in h["counts"]], min_ns=h["min_ns"] * 2,
                      max_ns=h["max_ns"] * 2 + 1000)
        out = self.compare(s, dict(s, latency_histogram=slower))
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertRegex(out.stdout.decode(), r"p99 \(us\) .*REGRESSED")

    def test_compare_exits_1_when_errors_appear(self):
        s = self.real_summary()
        out = self.compare(s, dict(s, error_counts=dict(s["error_counts"], reset=1)))
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertRegex(out.stdout.decode(), r"errors .*REGRESSED")

    def test_compare_bad_threshold_exits_2(self):
        s = self.real_summary()
        for value in ("abc", "-1%", "5%%", ""):
            out = self.compare(s, s, "--threshold", value)
            self.assertEqual(out.returncode, 2, value)
            self.assertIn("--threshold", out.stderr.decode())


if __name__ == "__main__":
    unittest.main()
