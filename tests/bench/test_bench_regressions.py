#!/usr/bin/python3
"""`yodel bench` stays honest when the server, the network or the client itself goes wrong.

Each test is one behaviour that was once wrong (findings 2026-12-01: attack #13, #14; newcomer
F8, F14, F15). The misbehaving servers are written here, in a few lines each; the well-behaved
one is the real `yodel serve`. YODEL_BIN names the binary; every wait has a deadline.
"""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from test_bench import YODEL, PythonServer, Server, bench, bench_json  # noqa: E402

COMPLETION = os.path.join(HERE, "..", "..", "contrib", "yodel.bash-completion")


class UdpServer:
    """A UDP server in this process: handler(sock, data, peer) answers one datagram."""

    def __init__(self, handler):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = "udp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.handler = handler
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 60
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.handler(self.sock, data, peer)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        self.sock.close()


def answering_twice(sock, data, peer):
    sock.sendto(data, peer)
    sock.sendto(data, peer)


def closing_at_once(sock):
    sock.close()


def answering_with_an_http_error(sock):
    sock.recv(65536)
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def never_answering(sock):
    while sock.recv(65536):
        pass


class BenchRegressionTest(unittest.TestCase):
    def serve(self, *args):
        server = Server(*args)
        self.addCleanup(server.stop)
        return server.address

    def python_server(self, handler):
        server = PythonServer(handler)
        self.addCleanup(server.stop)
        return server.address

    def udp_server(self, handler):
        server = UdpServer(handler)
        self.addCleanup(server.stop)
        return server.address

    def timed_bench_json(self, *args):
        started = time.monotonic()
        result, report = bench_json(*args)
        return result, report, time.monotonic() - started

    # A report nobody could read is not a success: stdout full, or a pipe whose reader left.

    def test_a_report_that_cannot_be_written_exits_1_saying_why(self):
        addr = self.serve("-l", "127.0.0.1:0")
        with open("/dev/full", "w") as full:
            result = subprocess.run([YODEL, "bench", "-c", addr, "-n", "1", "-t", "200ms",
                                     "--warmup", "0"], stdout=full, stderr=subprocess.PIPE,
                                    text=True, timeout=30)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot write the report to stdout", result.stderr)

    def test_a_merge_whose_reader_has_left_exits_1(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, _ = bench_json("-c", addr, "-n", "1", "-t", "200ms", "--warmup", "0")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(result.stdout)
            f.flush()
            r, w = os.pipe()
            os.close(r)  # the reader is gone before merge writes a byte
            try:
                merged = subprocess.run([YODEL, "bench", "merge", f.name], stdout=w,
                                        stderr=subprocess.PIPE, text=True, timeout=30)
            finally:
                os.close(w)
        self.assertEqual(merged.returncode, 1, merged.stderr)
        self.assertIn("cannot write the report to stdout", merged.stderr)

    # attack #13: UDP duplicates

    def test_udp_server_that_answers_twice_counts_duplicates_and_exits_1(self):
        addr = self.udp_server(answering_twice)
        result, report = bench_json("-c", addr, "-n", "2", "-t", "300ms", "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        counts = report["error_counts"]
        self.assertGreater(counts["duplicate"], 0, report)
        self.assertEqual(report["late"], 0, "a duplicate is not late: nothing was lost")
        self.assertEqual(counts["lost"], 0, report)
        self.assertEqual(report["errors"], counts["duplicate"], report)

    def test_udp_echo_that_comes_back_after_its_timeout_is_late_not_a_duplicate(self):
        held = []

        def holding_the_first_datagram(sock, data, peer):
            if not held:
                held.append(threading.Timer(0.4, sock.sendto, (data, peer)))
                held[0].start()
                return
            sock.sendto(data, peer)

        addr = self.udp_server(holding_the_first_datagram)
        self.addCleanup(lambda: held and held[0].join(timeout=10))
        result, report = bench_json("-c", addr, "-n", "1", "-t", "1s", "--warmup", "0",
                                    "--timeout", "100ms")
        self.assertEqual(result.returncode, 1, "the loss itself is an error")
        self.assertEqual(report["error_counts"]["lost"], 1, report)
        self.assertEqual(report["late"], 1, report)
        self.assertEqual(report["error_counts"]["duplicate"], 0, report)

    def test_udp_messages_shorter_than_the_header_are_matched_without_loss(self):
        addr = self.serve("-l", "udp://127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "2", "-s", "8", "-p", "4", "-t", "300ms",
                                    "--warmup", "0")
        self.assertEqual(result.returncode, 0, (result.stderr, report))
        self.assertEqual(report["errors"], 0, report["error_counts"])
        self.assertGreater(report["round_trips"], 100)

    # attack #14: JSON strings

    def test_json_report_of_a_unix_path_with_quote_backslash_and_odd_bytes_is_valid(self):
        tmp = tempfile.mkdtemp(prefix="yodel-bench-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.fsencode(tmp) + b'/q"b\\c\xff\xc3\xa9\x01.sock'
        server = subprocess.Popen([YODEL, "serve", "-l", b"unix:" + path, "--threads", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (server.kill(), server.wait(), server.stdout.close()))
        ready, _, _ = select.select([server.stdout], [], [], 10)
        self.assertTrue(ready and server.stdout.readline().startswith(b"listening on unix:"))
        result = subprocess.run([YODEL, "bench", "--json", "-c", b"unix:" + path, "-n", "1",
                                 "-t", "200ms", "--warmup", "0"], capture_output=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout.decode("utf-8"))
        self.assertEqual(report["address"], "unix:" + tmp + '/q"b\\c\u00ff\u00e9\u0001.sock')

    # newcomer F8: open loop below target

    def test_rate_the_connections_cannot_offer_warns_reports_send_lag_and_exits_1(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "1", "--rate", "1000000", "-t", "300ms",
                                    "--warmup", "0")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(report["errors"], 0, report["error_counts"])
        self.assertTrue(report["target_missed"], report)
        self.assertLess(report["offered_per_s"], 900000)
        self.assertGreater(report["offered_per_s"], 0)
        self.assertGreater(report["send_lag_us"]["p99"], 1000, "sends went out far too late")
        self.assertLessEqual(report["send_lag_us"]["p99"], report["send_lag_us"]["max"])
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("1000000", lines[0])
        self.assertIn("-n", lines[0])
        self.assertIn("-p", lines[0])

    def test_rate_within_reach_reports_offered_rate_and_send_lag_and_passes(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result = bench("-c", addr, "-n", "2", "--rate", "400", "-t", "500ms", "--warmup", "0")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        self.assertRegex(result.stdout, r"target rate +400 round trips/s, offered [0-9.]+/s")
        self.assertRegex(result.stdout, r"send lag \(us\) +min [0-9.]+ .* max [0-9.]+")

    # newcomer F8: nothing left to measure

    def test_server_that_closes_at_once_ends_the_run_early_and_exits_1(self):
        addr = self.python_server(closing_at_once)
        result, report, elapsed = self.timed_bench_json("-c", addr, "-n", "3", "-t", "8s",
                                                        "--warmup", "0")
        self.assertEqual(result.returncode, 1)
        self.assertLess(elapsed, 4, "the run waited out -t with every connection gone")
        self.assertTrue(report["all_connections_ended"], report)
        self.assertLess(report["duration_s"], 4)
        self.assertIn("every connection ended", result.stderr)

    def test_server_killed_mid_run_ends_the_run_with_rates_over_its_live_time(self):
        server = harness.serve("-l", "127.0.0.1:0", "--threads", "1", "-v")
        self.addCleanup(server.kill)
        addr = "127.0.0.1:%d" % server.tcp.port
        proc = subprocess.Popen([YODEL, "bench", "--json", "-c", addr, "-n", "2", "-t", "8s",
                                 "--warmup", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        # The server logs every message with -v: 200 lines means the run is well under way.
        server.wait_stderr(lambda text: text.count("\n") >= 200, what="200 log lines")
        killed_at = time.monotonic()
        server.kill()
        out, err = proc.communicate(timeout=60)
        self.assertLess(time.monotonic() - killed_at, 3, "bench went on with no server")
        self.assertEqual(proc.returncode, 1, err)
        report = json.loads(out)
        self.assertTrue(report["all_connections_ended"], report)
        self.assertGreater(report["round_trips"], 0)
        self.assertLess(report["duration_s"], 7)
        live_rate = report["round_trips"] / report["duration_s"]
        self.assertAlmostEqual(report["round_trips_per_s"] / live_rate, 1, delta=0.1)

    def run_until_measuring(self, server):
        """A 30 s bench against server, returned once it has measured round trips (-v lines)."""
        addr = "127.0.0.1:%d" % server.tcp.port
        proc = subprocess.Popen([YODEL, "bench", "--json", "-c", addr, "-n", "2", "-t", "30s",
                                 "--warmup", "0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        server.wait_stderr(lambda text: text.count("\n") >= 200, what="200 log lines")
        return proc

    def test_first_signal_ends_the_run_early_with_a_report_and_exit_0(self):
        server = harness.serve("-l", "127.0.0.1:0", "--threads", "1", "-v")
        self.addCleanup(server.kill)
        proc = self.run_until_measuring(server)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0, err)
        self.assertGreater(json.loads(out)["round_trips"], 0)

    def test_second_signal_exits_at_once_with_128_plus_the_signal(self):
        server = harness.serve("-l", "127.0.0.1:0", "--threads", "1", "-v")
        self.addCleanup(server.kill)
        proc = self.run_until_measuring(server)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        # Both arrive before the loop wakes: the second ends the process before any report.
        self.assertEqual(proc.returncode, 128 + signal.SIGTERM)
        self.assertEqual(out, "")

    def test_no_round_trip_prints_latency_as_n_a_in_text(self):
        addr = self.python_server(never_answering)
        result = bench("-c", addr, "-n", "1", "-t", "200ms", "--warmup", "0", "--timeout",
                       "300ms")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stdout, r"latency \(us\) +n/a")
        self.assertNotIn("min 0.0", result.stdout)

    def test_no_round_trip_gives_null_latencies_in_json(self):
        addr = self.python_server(never_answering)
        result, report = bench_json("-c", addr, "-n", "1", "-t", "200ms", "--warmup", "0",
                                    "--timeout", "300ms")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(report["round_trips"], 0)
        self.assertEqual(set(report["latency_us"].values()), {None}, report["latency_us"])

    def test_server_answering_with_an_http_error_counts_mismatch_not_closed(self):
        addr = self.python_server(answering_with_an_http_error)
        result, report = bench_json("-c", addr, "-n", "2", "-t", "300ms", "--warmup", "0")
        self.assertEqual(result.returncode, 1)
        counts = report["error_counts"]
        self.assertGreater(counts["mismatch"], 0, counts)
        self.assertEqual(counts["closed"] + counts["reset"], 0, counts)

    # newcomer F14

    def test_address_that_does_not_resolve_fails_at_once_with_one_line(self):
        # A scoped IPv6 literal with no such interface fails in the resolver without any
        # network traffic, as a name that does not exist would after a DNS round trip.
        started = time.monotonic()
        result = bench("-c", "[::1%nosuchif]:80", "-n", "200", "-t", "5s")
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("yodel bench: cannot connect to [::1%nosuchif]:80: "),
                        lines[0])

    # newcomer F15

    def test_long_option_forms_work_like_the_short_ones(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, report = bench_json("--connect", addr, "--connections", "2", "--size", "100",
                                    "--depth", "3", "--duration", "300ms", "--warmup", "0")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual((report["connections"], report["size"], report["depth"]), (2, 100, 3))
        self.assertAlmostEqual(report["duration_s"], 0.3, delta=0.1)

    def test_bash_completion_offers_every_option_of_every_command(self):
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("no bash")
        for cmd in ("serve", "send", "bench"):
            with self.subTest(cmd=cmd):
                help_text = subprocess.run([YODEL, cmd, "--help"], capture_output=True,
                                           text=True, timeout=60).stdout
                options = set()
                for line in help_text.splitlines():
                    # Option lines are indented; prose may start with an option's name.
                    words = line.replace(",", " ").split() if line.startswith(" ") else []
                    while words and words[0].startswith("-") and len(words[0]) > 1:
                        options.add(words.pop(0).split("[")[0].split("=")[0])
                        if words and not words[0].startswith("-"):
                            break
                self.assertIn("--help", options)
                script = ('source "$1"; COMP_WORDS=(yodel %s -); COMP_CWORD=2; _yodel; '
                          'printf "%%s\\n" "${COMPREPLY[@]}"' % cmd)
                offered = subprocess.run([bash, "-c", script, "bash", COMPLETION],
                                         capture_output=True, text=True, timeout=60).stdout
                self.assertEqual(options - set(offered.split()), set())

    # the summary object

    def test_json_summary_has_type_timestamp_and_version(self):
        addr = self.serve("-l", "127.0.0.1:0")
        before = time.time()
        result, report = bench_json("-c", addr, "-n", "1", "-t", "200ms", "--warmup", "0")
        after = time.time()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(report["type"], "summary")
        self.assertGreaterEqual(report["ts"], before - 0.001)
        self.assertLessEqual(report["ts"], after)
        version = subprocess.run([YODEL, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.split()[1]
        self.assertEqual(report["version"], version)


if __name__ == "__main__":
    unittest.main(argv=sys.argv, verbosity=2)
