#!/usr/bin/python3
"""yodel bench while it runs and the whole latency spectrum: --interval (lines and JSON lines,
read from the pipe before the process ends), --percentiles, --hist (.hgrm), the histogram in
the summary, and scripts/plot-hgrm.

Real `yodel serve` on 127.0.0.1 port 0 (tests/integration/harness.py). Runs are short; every
wait has a deadline.
"""
import json
import math
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

YODEL = harness.YODEL_BIN
PLOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "plot-hgrm")
DEADLINE_S = 30
SUB_BITS = 7  # histogram.h: HIST_SUB_BITS


def bucket_low(i):
    if i < 1 << SUB_BITS:
        return i
    shift = i // (1 << SUB_BITS) - 1
    return ((1 << SUB_BITS) + i % (1 << SUB_BITS)) << shift


def bucket_width(i):
    return 1 if i < 1 << SUB_BITS else 1 << (i // (1 << SUB_BITS) - 1)


def quantile_ns(hist, q):
    """histogram.c hist_quantile() over a summary's sparse "counts": the middle of the bucket
    holding the ceil(q * count)-th value, clamped to min and max."""
    total = sum(c for _, c in hist["counts"])
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, c in sorted(hist["counts"]):
        seen += c
        if seen >= rank:
            v = bucket_low(i) + bucket_width(i) // 2
            return min(max(v, hist["min_ns"]), hist["max_ns"])
    return hist["max_ns"]


class LiveBench:
    """A `yodel bench` whose stdout is read line by line while it runs."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([YODEL, "bench", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.buf = b""
        self.deadline = time.monotonic() + DEADLINE_S

    def line(self):
        """The next stdout line, or None at EOF; fails past the deadline."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line from yodel bench within %d s" % DEADLINE_S)
            if not select.select([fd], [], [], left)[0]:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def rest(self):
        lines = []
        while (line := self.line()) is not None:
            lines.append(line)
        return lines

    def wait(self):
        try:
            err = self.proc.stderr.read().decode()
            return self.proc.wait(timeout=max(self.deadline - time.monotonic(), 1)), err
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def bench(*args):
    return harness.run([YODEL, "bench"] + [str(a) for a in args], timeout=DEADLINE_S)


class BenchLiveTest(unittest.TestCase):
    def serve(self):
        server = harness.serve("-l", "127.0.0.1:0", "-q")
        self.addCleanup(server.kill)
        return server

    def live(self, *args):
        run = LiveBench(*args)
        self.addCleanup(run.kill)
        return run

    def json_lines(self, *args):
        out = bench("--json", *args)
        lines = [json.loads(l) for l in out.stdout.decode().splitlines()]
        return out, lines

    def test_interval_objects_arrive_on_the_pipe_while_the_run_goes(self):
        server = self.serve()
        run = self.live("-c", server.tcp.addr, "-n", "2", "-t", "2s", "--warmup", "0",
                        "--interval", "200ms", "--json")
        first = json.loads(run.line())
        self.assertIsNone(run.proc.poll(), "the first interval came before the run ended")
        self.assertEqual(first["type"], "interval")
        for key in ("elapsed_s", "interval_s", "round_trips", "round_trips_per_s", "errors",
                    "connections_open"):
            self.assertIn(key, first)
        self.assertGreater(first["round_trips_per_s"], 0)
        self.assertLessEqual(first["latency_us"]["p50"], first["latency_us"]["p99"])
        rest = [json.loads(l) for l in run.rest()]
        status, err = run.wait()
        self.assertEqual(status, 0, err)
        self.assertEqual([o["type"] for o in rest[:-1]], ["interval"] * (len(rest) - 1))
        self.assertEqual(rest[-1]["type"], "summary")
        elapsed = [first["elapsed_s"]] + [o["elapsed_s"] for o in rest[:-1]]
        self.assertEqual(elapsed, sorted(elapsed))
        self.assertGreaterEqual(len(elapsed), 8)

    def test_interval_round_trips_add_up_to_the_summary(self):
        server = self.serve()
        out, lines = self.json_lines("-c", server.tcp.addr, "-n", "4", "--threads", "2",
                                     "-t", "1500ms", "--warmup", "200ms", "--interval", "300ms")
        self.assertEqual(out.returncode, 0, out.stderr)
        *intervals, summary = lines
        self.assertEqual(summary["type"], "summary")
        self.assertEqual(sum(o["round_trips"] for o in intervals), summary["round_trips"])
        self.assertTrue(all(o["errors"] == 0 for o in intervals))

    def test_a_killed_server_shows_as_zero_round_trips_and_errors_in_the_intervals(self):
        server = self.serve()
        run = self.live("-c", server.tcp.addr, "-n", "4", "-t", "2s", "--warmup", "0",
                        "--interval", "200ms", "--json")
        before = [json.loads(run.line()) for _ in range(2)]
        self.assertTrue(all(o["round_trips_per_s"] > 0 for o in before), before)
        server.kill()
        after = [json.loads(l) for l in run.rest()]
        status, err = run.wait()
        self.assertEqual(status, 1, "connections lost are errors")
        *intervals, summary = after
        self.assertGreater(sum(o["errors"] for o in intervals), 0, intervals)
        zero = [o for o in intervals if o["round_trips_per_s"] == 0]
        self.assertTrue(zero, "no interval at 0 round trips/s after the kill: %r" % intervals)
        self.assertTrue(all(o["connections_open"] == 0 for o in zero))
        self.assertGreaterEqual(intervals[-1]["elapsed_s"], 1.9, "the clock went on to -t")
        self.assertTrue(summary["all_connections_ended"])
        self.assertIn("0 round trips/s", err)

    def test_text_intervals_are_one_line_each_before_the_report(self):
        server = self.serve()
        out = bench("-c", server.tcp.addr, "-n", "2", "-t", "1s", "--warmup", "0",
                    "--interval", "250ms")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.decode().splitlines()
        pattern = re.compile(r"^ +\d+\.\d\d s +\d+\.\d round trips/s +\d+ errors +p50 +[\d.]+ us"
                             r" +p99 +[\d.]+ us +\d+ open$")
        intervals = [l for l in lines if pattern.match(l)]
        self.assertEqual(len(intervals), 4, lines)
        self.assertEqual(lines[:4], intervals, "the intervals come first")
        self.assertTrue(lines[4].startswith("yodel bench: "), lines)

    def test_intervals_are_on_by_default_when_stdout_is_a_terminal(self):
        server = self.serve()
        master, slave = pty.openpty()
        proc = subprocess.Popen([YODEL, "bench", "-c", server.tcp.addr, "-n", "1", "-t", "1.5s",
                                 "--warmup", "0"], stdout=slave, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        os.close(slave)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        out, deadline = b"", time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if not select.select([master], [], [], deadline - time.monotonic())[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        self.assertEqual(proc.wait(timeout=DEADLINE_S), 0)
        self.assertIn(b"1.00 s", out)
        self.assertIn(b"round trips/s", out.split(b"yodel bench:")[0])

    def test_bad_interval_values_exit_2_naming_the_option(self):
        for value in ("0", "50ms", "banana", ""):
            out = bench("--interval", value)
            self.assertEqual(out.returncode, 2, value)
            err = out.stderr.decode().splitlines()
            self.assertEqual(len(err), 1, err)
            self.assertIn("--interval", err[0])

    def test_percentiles_list_sets_the_summary_percentiles(self):
        server = self.serve()
        out, lines = self.json_lines("-c", server.tcp.addr, "-n", "2", "-t", "500ms",
                                     "--warmup", "0", "--percentiles", "50,75,99.99")
        self.assertEqual(out.returncode, 0, out.stderr)
        latency = lines[-1]["latency_us"]
        self.assertEqual([k for k in latency if k.startswith("p")], ["p50", "p75", "p99_99"])
        self.assertLessEqual(latency["p75"], latency["p99_99"])
        text = bench("-c", server.tcp.addr, "-n", "2", "-t", "300ms", "--warmup", "0",
                     "--percentiles", "50,75,99.99").stdout.decode()
        self.assertRegex(text, r"latency \(us\) +min [\d.]+  p50 [\d.]+  p75 [\d.]+  "
                               r"p99\.99 [\d.]+  max")

    def test_bad_percentiles_exit_2_naming_the_option(self):
        for value in ("", "50,", "abc", "0", "101", "50,,99", "-5"):
            out = bench("--percentiles", value)
            self.assertEqual(out.returncode, 2, value)
            self.assertIn("--percentiles", out.stderr.decode())

    def test_hist_file_is_hdrhistogram_percentile_text_holding_every_round_trip(self):
        server = self.serve()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "run.hgrm")
            out, lines = self.json_lines("-c", server.tcp.addr, "-n", "2", "-t", "1s",
                                         "--warmup", "0", "--hist", path)
            self.assertEqual(out.returncode, 0, out.stderr)
            with open(path) as f:
                text = f.read()
        summary = lines[-1]
        head, blank, *rows = text.splitlines()
        self.assertEqual(head.split(), ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"])
        self.assertEqual(blank, "")
        footer = [r for r in rows if r.startswith("#[")]
        self.assertEqual(len(footer), 3)
        self.assertRegex(footer[0], r"^#\[Mean    = +[\d.]+, StdDeviation   = +[\d.]+\]$")
        self.assertRegex(footer[1], r"^#\[Max     = +[\d.]+, Total count    = +\d+\]$")
        self.assertRegex(footer[2], r"^#\[Buckets = +\d+, SubBuckets     = +\d+\]$")
        table = [r.split() for r in rows if not r.startswith("#")]
        values = [float(r[0]) for r in table]
        pcts = [float(r[1]) for r in table]
        counts = [int(r[2]) for r in table]
        self.assertEqual(values, sorted(values))
        self.assertEqual(pcts, sorted(pcts))
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(pcts[0], 0.0)
        self.assertEqual(pcts[-1], 1.0)
        self.assertEqual(table[-1][3], "inf")
        inverse = [float(r[3]) for r in table[:-1]]
        self.assertEqual(inverse, sorted(inverse))
        # Percentiles are printed to 6 places, so 1/(1-p) is checked where that is enough.
        for r in table[:-1]:
            if float(r[1]) <= 0.999:
                self.assertAlmostEqual(float(r[3]), 1 / (1 - float(r[1])), delta=0.01 * float(r[3]))
        self.assertEqual(counts[-1], summary["round_trips"])
        self.assertEqual(int(footer[1].split("=")[-1].strip(" ]")), summary["round_trips"])
        # Values are in milliseconds: the median is the summary's p50 (in us) within a bucket.
        median = next(v for v, p in zip(values, pcts) if p >= 0.5)
        self.assertAlmostEqual(median * 1000, summary["latency_us"]["p50"],
                               delta=summary["latency_us"]["p50"] / 64 + 1)

    def test_hist_to_a_path_it_cannot_write_exits_2_before_the_run(self):
        out = bench("-c", "127.0.0.1:1", "--hist", "/nonexistent-dir/x.hgrm")
        self.assertEqual(out.returncode, 2)
        self.assertIn("--hist", out.stderr.decode())

    def test_summary_histogram_holds_every_round_trip_and_gives_its_percentiles(self):
        server = self.serve()
        out, lines = self.json_lines("-c", server.tcp.addr, "-n", "2", "-t", "1s",
                                     "--warmup", "0")
        self.assertEqual(out.returncode, 0, out.stderr)
        summary = lines[-1]
        hist = summary["latency_histogram"]
        self.assertEqual((hist["unit"], hist["sub_bits"]), ("ns", SUB_BITS))
        self.assertEqual(sum(c for _, c in hist["counts"]), summary["round_trips"])
        self.assertTrue(all(c > 0 for _, c in hist["counts"]), "sparse: no empty bucket")
        for key, q in (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999)):
            self.assertAlmostEqual(quantile_ns(hist, q) / 1000, summary["latency_us"][key],
                                   delta=0.06)
        connect = summary["connect_histogram"]
        self.assertEqual(sum(c for _, c in connect["counts"]), 2, "the two first connects")

    def test_plot_hgrm_draws_one_path_per_file_in_an_svg(self):
        server = self.serve()
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for n in ("1", "4"):
                path = os.path.join(tmp, "n%s.hgrm" % n)
                out = bench("-c", server.tcp.addr, "-n", n, "-t", "500ms", "--warmup", "0",
                            "--hist", path)
                self.assertEqual(out.returncode, 0, out.stderr)
                paths.append(path)
            svg = os.path.join(tmp, "plot.svg")
            out = harness.run([sys.executable, PLOT, "-o", svg] + paths)
            self.assertEqual(out.returncode, 0, out.stderr)
            root = ET.parse(svg).getroot()
        ns = "{http://www.w3.org/2000/svg}"
        self.assertEqual(root.tag, ns + "svg")
        titled = [p.find(ns + "title").text for p in root.iter(ns + "path")]
        self.assertEqual(titled, ["n1.hgrm", "n4.hgrm"])


if __name__ == "__main__":
    unittest.main()
