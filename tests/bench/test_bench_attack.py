#!/usr/bin/python3
"""yodel bench attacked: behaviours an adversarial review found wrong once (one test each).

Every test runs the real binary (YODEL_BIN) against a real server on 127.0.0.1 port 0, and every
wait has a deadline.
"""
import json
import os
import select
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from harness import PythonPeer, Server  # noqa: E402
from test_bench import YODEL, PythonServer, bench, bench_json  # noqa: E402

# An echo server that closes each connection after CLOSE_AFTER bytes (a server that dies).
PY_CLOSING_ECHO = r"""
import asyncio, sys
CLOSE_AFTER = int(sys.argv[1])
async def handle(reader, writer):
    seen = 0
    while seen < CLOSE_AFTER:
        data = await reader.read(CLOSE_AFTER - seen)
        if not data:
            break
        seen += len(data)
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def syn_sent_to(port):
    """How many local sockets are connecting (SYN_SENT) to 127.0.0.1:port."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if r[2] == "0100007F:%04X" % port and r[3] == "02")


def peer(code, *argv):
    """A PythonPeer running code with argv."""
    return PythonPeer("import sys; sys.argv[1:] = %r\n" % (list(argv),) + code)


class BenchAttackTest(unittest.TestCase):
    def serve(self, *args):
        server = Server(["-l", "127.0.0.1:0", "--threads", "1", *args])
        self.addCleanup(server.kill)
        return server

    def refusing_address(self):
        """A port bound and not listening: connects to it are refused while the test runs."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % sock.getsockname()[1]

    def unanswered_address(self):
        """A listener whose backlog is full: connects to it get no answer (SYN_SENT)."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(4):
            c = socket.socket()
            self.addCleanup(c.close)
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
        return listener.getsockname()[1]

    # --bind

    def test_a_source_address_that_cannot_be_bound_fails_only_its_own_connections(self):
        server = self.serve()
        # [::1] cannot be the source of a connection to an IPv4 target; 127.0.0.1 can. Connections
        # 0 and 2 come from the first, 1 and 3 from the second: two of four are up and measured.
        result, report = bench_json("-c", server.tcp.addr, "-n", "4", "--bind", "[::1]",
                                    "--bind", "127.0.0.1", "--threads", "1", "-t", "0.2s",
                                    "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(report["connected"], 2, result.stderr)
        self.assertEqual(report["error_counts"]["connect"], 2)
        self.assertGreater(report["round_trips"], 0)
        self.assertIn("2 of 4 connections failed", result.stderr)

    # -c repeated

    def test_a_target_without_a_round_trip_shows_no_latency_in_the_text_report(self):
        server = self.serve()
        refusing = self.refusing_address()
        result = bench("-c", server.tcp.addr, "-c", refusing, "-n", "2", "-t", "0.2s",
                       "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = [line for line in result.stdout.splitlines() if line.startswith("  target 2")]
        self.assertEqual(len(lines), 1, result.stdout)
        self.assertIn("0 round trips", lines[0])
        self.assertIn("p50 n/a, p99 n/a", lines[0])

    def test_an_interrupted_connect_is_not_blamed_on_the_server(self):
        port = self.unanswered_address()
        before = syn_sent_to(port)  # this test's own connects that fill the backlog
        proc = subprocess.Popen([YODEL, "bench", "-c", "127.0.0.1:%d" % port, "-n", "2", "-t",
                                 "5s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        # Both connects are under way (SYN_SENT to the port, state 02 in /proc/net/tcp).
        deadline = time.monotonic() + 10
        while syn_sent_to(port) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 1, err)
        self.assertNotIn("software caused connection abort", err)
        self.assertIn("canceled", err)

    # --percentiles

    def test_a_percentile_with_many_decimals_keeps_them_in_its_name(self):
        server = self.serve()
        result, report = bench_json("-c", server.tcp.addr, "-n", "1", "-t", "0.2s", "--warmup",
                                    "0", "--percentiles", "99.99999")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("p99_99999", report["latency_us"])
        self.assertNotIn("p100", report["latency_us"])

    def test_a_percentile_given_twice_exits_2_naming_it(self):
        result = bench("-c", "127.0.0.1:9", "--percentiles", "50,90,50")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("--percentiles", result.stderr)
        self.assertIn("50", result.stderr)

    # merge and compare

    def summary_file(self, server, *args):
        """A yodel bench --json summary of a short run against server, in a temporary file."""
        result, _ = bench_json("-c", server.tcp.addr, "-n", "1", "-t", "0.1s", "--warmup", "0",
                               *args)
        self.assertEqual(result.returncode, 0, result.stderr)
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "run.json")
        with open(path, "w") as f:
            f.write(result.stdout)
        return path

    def test_merge_refuses_one_run_given_twice(self):
        path = self.summary_file(self.serve())
        copy = path + ".copy.json"
        shutil.copy(path, copy)
        result = bench("merge", path, copy)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("twice", result.stderr)

    def test_merge_says_a_find_max_summary_has_nothing_to_merge(self):
        server = self.serve()
        result = bench("-c", server.tcp.addr, "-n", "1", "--find-max", "--slo", "p99<=10s",
                       "--rate", "100000000", "-t", "0.1s", "--warmup", "0", "--json")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "find-max.json")
        with open(path, "w") as f:
            f.write(result.stdout)
        merged = bench("merge", path)
        self.assertEqual(merged.returncode, 2, merged.stderr)
        self.assertIn("--find-max", merged.stderr)
        self.assertNotIn("before merge", merged.stderr)

    # --find-max

    def test_find_max_exits_1_when_every_connection_ends_during_the_search(self):
        # Step 1 (100/s for 0.2 s over 2 connections) sends about 10 messages of 64 B on each;
        # step 2 (200/s) about 20, but the server closes each connection after 15.
        with peer(PY_CLOSING_ECHO, str(15 * 64)) as server:
            result = bench("-c", "127.0.0.1:%d" % server.port, "-n", "2", "--threads", "1",
                           "--find-max", "--slo", "p99<=1s", "--rate", "100", "-t", "0.2s",
                           "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("every connection ended", result.stderr)


    # a report to a closed stdout

    def with_stdout_closed(self, *args):
        """yodel bench ARGS run with descriptor 1 closed (`>&-`)."""
        return subprocess.run(["/bin/sh", "-c", 'exec "$0" bench "$@" >&-', YODEL, *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=60)

    def assert_report_lost(self, result):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stderr.count("standard output is closed"), 1, result.stderr)

    def test_a_run_whose_report_goes_to_a_closed_stdout_exits_1(self):
        server = self.serve()
        self.assert_report_lost(self.with_stdout_closed("-c", server.tcp.addr, "-n", "1", "-t",
                                                        "0.1s", "--warmup", "0"))

    def test_a_merge_whose_report_goes_to_a_closed_stdout_exits_1(self):
        path = self.summary_file(self.serve())
        self.assert_report_lost(self.with_stdout_closed("merge", path))

    def test_a_compare_whose_result_goes_to_a_closed_stdout_exits_1(self):
        path = self.summary_file(self.serve())
        self.assert_report_lost(self.with_stdout_closed("compare", path, path))


    def test_merge_refuses_bucket_counts_that_wrap_around_to_the_histograms_count(self):
        path = self.summary_file(self.serve())
        with open(path) as f:
            summary = json.loads(f.read())
        # 2^64 - 1 + 1 is 0 in 64 bits: the buckets would "add up" to a count of 0.
        summary["latency_histogram"].update(count=0, counts=[[0, 2**64 - 1], [1, 1]])
        with open(path, "w") as f:
            json.dump(summary, f)
        result = bench("merge", path)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(path, result.stderr)


    # --rate A:B --ramp

    def test_a_ramp_from_a_rate_to_the_same_rate_exits_2_saying_there_is_nothing_to_ramp(self):
        result = bench("-c", "127.0.0.1:9", "--rate", "1000:1000", "--ramp", "1s")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("1000:1000", result.stderr)
        self.assertIn("nothing to ramp", result.stderr)


    # --slo

    def assert_slo_refused(self, slo, why):
        result = bench("-c", "127.0.0.1:9", "--find-max", "--slo", slo)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(why, result.stderr)

    def test_an_slo_with_a_trailing_comma_exits_2_naming_the_empty_term(self):
        self.assert_slo_refused("p99<=1ms,", "empty term")

    def test_an_slo_that_bounds_one_metric_twice_exits_2_naming_it(self):
        self.assert_slo_refused("p99<=1ms,p99<=2ms", "p99 is bound twice")


    # --find-max interrupted

    def test_an_interrupted_find_max_says_the_rate_it_found_is_a_lower_bound(self):
        server = self.serve()
        proc = subprocess.Popen([YODEL, "bench", "-c", server.tcp.addr, "-n", "1", "--find-max",
                                 "--slo", "p99<=10s", "--rate", "100", "-t", "1s", "--warmup",
                                 "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.kill)
        lines = []
        deadline = time.monotonic() + 30
        while not any(line.startswith("  step 1 ") for line in lines):
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            self.assertTrue(ready, "no step 1 line within 30 s: %r" % lines)
            line = proc.stdout.readline()
            self.assertTrue(line, "stdout ended before step 1: %r" % lines)
            lines.append(line)
        self.assertIn("held", lines[-1])
        proc.send_signal(signal.SIGINT)  # during step 2
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("interrupted after 1 step\n", err)
        summary = out.splitlines()[-1]
        self.assertIn("at least 100 round trips/s", summary)
        self.assertIn("lower bound", summary)

    def test_a_find_max_interrupted_before_its_first_step_ended_still_prints_its_json_summary(self):
        sending = threading.Event()

        def echo(sock):
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                sending.set()
                sock.sendall(data)

        server = PythonServer(echo)
        self.addCleanup(server.stop)
        proc = subprocess.Popen([YODEL, "bench", "-c", server.address, "-n", "1", "--find-max",
                                 "--slo", "p99<=10s", "--rate", "100", "-t", "30s", "--warmup",
                                 "0", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.addCleanup(proc.kill)
        self.assertTrue(sending.wait(30), "step 1 sent nothing within 30 s")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 1, err)  # no rate is known to hold
        summary = json.loads(out.splitlines()[-1])
        self.assertEqual(summary["type"], "summary", out)
        self.assertIs(summary["interrupted"], True)
        self.assertIsNone(summary["max_rate_per_s"])
        self.assertEqual(summary["steps"], [])


    def test_compare_refuses_a_side_without_a_round_trip_naming_its_file(self):
        # What a run stopped by SIGTERM in its warmup writes: duration 0, no samples.
        real = self.summary_file(self.serve())
        with open(real) as f:
            summary = json.loads(f.read())
        summary.update(round_trips=0, round_trips_per_s=0, duration_s=0, sent=0)
        summary["latency_histogram"].update(count=0, min_ns=None, max_ns=None, sum_ns=0,
                                            counts=[])
        empty = real + ".empty.json"
        with open(empty, "w") as f:
            json.dump(summary, f)
        result = bench("compare", empty, real)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(empty, result.stderr)
        self.assertIn("no round trip", result.stderr)

    def test_merge_of_a_directory_says_it_is_a_directory(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        result = bench("merge", tmp)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("%s: is a directory" % tmp, result.stderr)

    def test_merge_of_one_run_says_1_run(self):
        result = bench("merge", self.summary_file(self.serve()))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("  merged         1 run made", result.stdout)


    def test_a_ramp_missed_is_measured_against_the_ramps_mean_in_the_report_and_on_stderr(self):
        # Each reply takes 300 ms and one message is in flight: at most about 4/s offered, far
        # below the ramp's mean (10 + 21) / 2 = 15.5/s.
        server = self.serve("--delay", "300ms")
        result = bench("-c", server.tcp.addr, "-n", "1", "--rate", "10:21", "--ramp", "1s", "-t",
                       "1s", "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        target = [line for line in result.stdout.splitlines() if "target rate" in line]
        self.assertEqual(len(target), 1, result.stdout)
        self.assertIn("target rate    15.5 round trips/s", target[0])
        share = target[0].rsplit("(", 1)[1].rstrip(")")  # "25.8 %"
        self.assertIn(", %s of the 15.5 asked for" % share, result.stderr)


    def test_merge_of_a_rate_run_reports_its_target_rate_not_nan(self):
        result = bench("merge", self.summary_file(self.serve(), "--rate", "100"))
        self.assertIn("  target rate    100 round trips/s", result.stdout)
        self.assertNotIn("nan", result.stdout)


if __name__ == "__main__":
    unittest.main()
