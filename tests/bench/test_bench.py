#!/usr/bin/python3
"""Behaviour of `yodel bench` against real servers on loopback.

YODEL_BIN names the binary (CMake passes $<TARGET_FILE:yodel>). Every wait has a deadline.
"""
import json
import os
import select
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest

YODEL = os.environ.get("YODEL_BIN", os.path.join(os.path.dirname(__file__), "../../build/yodel"))
DEADLINE_S = 60


class Server:
    """A `yodel serve` on an ephemeral address, stopped by PID when the test ends."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([YODEL, "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.address = self._read_address()

    def _read_address(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening on "):
                return line.split("listening on ", 1)[1].strip()
        self.stop()
        raise AssertionError("yodel serve printed no 'listening on' line within 10 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc.stdout.close()


class PythonServer:
    """A deliberately wrong echo server in this process: handler(sock) serves one client."""

    def __init__(self, handler):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(DEADLINE_S)
                try:
                    handler(self.request)
                except OSError:
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        self.address = "127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def bench(*args):
    return subprocess.run([YODEL, "bench", *args], capture_output=True, text=True,
                          timeout=DEADLINE_S)


def bench_json(*args):
    result = bench("--json", *args)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "expected one JSON line, got %r (stderr %r)" % (result.stdout,
                                                                            result.stderr)
    return result, json.loads(lines[0])


def corrupting_echo(sock):
    """Echoes everything with its first byte changed."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(bytes([data[0] ^ 0x01]) + data[1:])


def closing_after_first_message(sock):
    data = sock.recv(65536)
    if data:
        sock.sendall(data)


class BenchTest(unittest.TestCase):
    def serve(self, *args):
        server = Server(*args)
        self.addCleanup(server.stop)
        return server.address

    def python_server(self, handler):
        server = PythonServer(handler)
        self.addCleanup(server.stop)
        return server.address

    def assert_clean_run(self, result, report):
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(report["round_trips"], 0)
        self.assertGreater(report["round_trips_per_s"], 0)
        self.assertEqual(report["errors"], 0, report["error_counts"])

    def test_json_report_has_rates_latency_and_no_errors_against_yodel_serve(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "4", "-t", "1s", "--warmup", "200ms")
        self.assert_clean_run(result, report)
        for key in ("round_trips_per_s", "mb_per_s", "latency_us", "errors"):
            self.assertIn(key, report)
        latency = report["latency_us"]
        for key in ("min", "p50", "p90", "p99", "p999", "max"):
            self.assertIn(key, latency)
        self.assertLessEqual(latency["min"], latency["p50"])
        self.assertLessEqual(latency["p50"], latency["p99"])
        self.assertLessEqual(latency["p99"], latency["max"])
        self.assertAlmostEqual(report["mb_per_s"], report["round_trips_per_s"] * 64 / 1e6,
                               places=2)
        self.assertEqual(report["connected"], 4)
        self.assertEqual(result.stderr, "", "nothing but the report when not a terminal")

    def test_corrupted_echo_counts_mismatches_and_exits_1(self):
        addr = self.python_server(corrupting_echo)
        result, report = bench_json("-c", addr, "-n", "2", "-t", "500ms", "--warmup", "0")
        self.assertEqual(result.returncode, 1)
        self.assertGreater(report["error_counts"]["mismatch"], 0)
        self.assertEqual(report["errors"], report["error_counts"]["mismatch"])
        self.assertEqual(report["round_trips"], 0, "a wrong echo is not a round trip")

    def test_server_that_closes_early_counts_an_error_and_exits_1(self):
        addr = self.python_server(closing_after_first_message)
        result, report = bench_json("-c", addr, "-n", "3", "-t", "500ms", "--warmup", "0")
        self.assertEqual(result.returncode, 1)
        counts = report["error_counts"]
        self.assertEqual(counts["closed"] + counts["reset"], 3, counts)

    def test_silent_server_counts_timeouts_and_exits_1(self):
        addr = self.python_server(lambda sock: sock.recv(65536) and time.sleep(3))
        result, report = bench_json("-c", addr, "-n", "2", "-t", "300ms", "--warmup", "0",
                                    "--timeout", "500ms")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(report["error_counts"]["timeout"], 2, report["error_counts"])

    def test_refused_connections_are_reported_and_exit_1(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = bench("-c", "127.0.0.1:%d" % port, "-n", "3", "-t", "200ms")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("refused", result.stderr.lower())

    def test_line_mode_server_echoes_every_message(self):
        addr = self.serve("-l", "127.0.0.1:0", "-m", "line")
        result, report = bench_json("-c", addr, "-n", "3", "-s", "100", "-p", "4", "-t",
                                    "500ms", "--warmup", "0")
        self.assert_clean_run(result, report)

    def test_pipelined_large_messages_are_verified(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "2", "-s", "4k", "-p", "16", "-t",
                                    "500ms", "--warmup", "0")
        self.assert_clean_run(result, report)
        self.assertEqual(report["size"], 4096)
        self.assertEqual(report["depth"], 16)

    def test_udp_round_trips_without_loss(self):
        addr = self.serve("-l", "udp://127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "2", "-p", "2", "-t", "500ms",
                                    "--warmup", "0")
        self.assert_clean_run(result, report)
        self.assertEqual(report["transport"], "udp")

    def test_unix_socket_server(self):
        path = os.path.join(tempfile.mkdtemp(prefix="yodel-bench-"), "echo.sock")
        self.addCleanup(os.rmdir, os.path.dirname(path))
        addr = self.serve("-l", "unix:" + path)
        result, report = bench_json("-c", addr, "-n", "2", "-t", "500ms", "--warmup", "0")
        self.assert_clean_run(result, report)
        self.assertEqual(report["transport"], "unix")

    def test_threads_share_the_connections(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "5", "--threads", "2", "-t", "500ms",
                                    "--warmup", "0")
        self.assert_clean_run(result, report)
        self.assertEqual(report["connected"], 5)
        self.assertEqual(report["threads"], 2)

    def test_rate_holds_the_requested_round_trips_per_second(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result, report = bench_json("-c", addr, "-n", "4", "--rate", "2000", "-t", "1s",
                                    "--warmup", "200ms")
        self.assert_clean_run(result, report)
        self.assertEqual(report["rate"], 2000)
        self.assertGreater(report["round_trips_per_s"], 1600)
        self.assertLess(report["round_trips_per_s"], 2400)

    def test_text_report_when_not_json(self):
        addr = self.serve("-l", "127.0.0.1:0")
        result = bench("-c", addr, "-n", "2", "-t", "300ms", "--warmup", "0")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("round trips", result.stdout)
        self.assertIn("p99.9", result.stdout)
        self.assertEqual(result.stderr, "")

    def test_help_exits_0_and_names_every_option(self):
        result = bench("--help")
        self.assertEqual(result.returncode, 0)
        for option in ("-c", "-n", "-s", "-p", "-t", "--warmup", "--rate", "--udp",
                       "--threads", "--json"):
            self.assertIn(option, result.stdout)

    def test_bad_options_exit_2_with_one_line(self):
        cases = [
            ["--bogus"],
            ["-n", "0"],
            ["-n", "many"],
            ["-s", "1"],
            ["-s", "lots"],
            ["-p", "0"],
            ["-t", "0"],
            ["-t", "soon"],
            ["--rate", "0"],
            ["--threads", "0"],
            ["-c", "nowhere"],
            ["-c"],
            ["-s", "64k", "-p", "64"],
            ["--udp", "-s", "100k"],
            ["extra"],
        ]
        for args in cases:
            with self.subTest(args=args):
                result = bench(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertEqual(result.stdout, "")
                lines = result.stderr.splitlines()
                self.assertEqual(len(lines), 1, result.stderr)
                self.assertTrue(lines[0].startswith("yodel bench: "), lines[0])


if __name__ == "__main__":
    unittest.main(argv=sys.argv, verbosity=2)
