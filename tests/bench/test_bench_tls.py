#!/usr/bin/python3
"""`yodel bench` over TLS, and with --reconnect-every (connection churn).

The TLS echo server is written here (Python's ssl, a thread per connection, TCP_NODELAY), and
counts the connections it served, so the test can check bench's connect count against the
server's. Certificates are made with the openssl command once per run. YODEL_BIN names the
binary; every wait has a deadline.
"""
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_bench import DEADLINE_S, Server, bench, bench_json  # noqa: E402

CERTS = None  # the directory of the certificates, made by setUpModule


def setUpModule():
    global CERTS
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("no openssl command to make certificates")
    CERTS = tempfile.mkdtemp(prefix="yodel-bench-tls-")
    # server: the one the servers present; other: a CA that did not sign it; client: the
    # certificate a client presents for mutual TLS (self-signed: its own CA).
    for name in ("server", "other", "client"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", cert(name, "key"),
                        "-out", cert(name, "crt"), "-days", "2", "-subj", "/CN=" + name,
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=DEADLINE_S)


def tearDownModule():
    if CERTS is not None:
        shutil.rmtree(CERTS)


def cert(name, ext):
    return os.path.join(CERTS, "%s.%s" % (name, ext))


def echo(sock):
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def corrupting_echo(sock):
    """Echoes everything with its first byte changed."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(bytes([data[0] ^ 0x01]) + data[1:])


class EchoServer:
    """An echo server in this process, over TLS when given a context: handler(sock) serves one
    connection; `served` counts the connections that came up (their handshake done)."""

    def __init__(self, context=None, handler=echo):
        owner = self
        self.served = 0
        self.lock = threading.Lock()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                sock.settimeout(DEADLINE_S)
                # Without it, TLS 1.3's session tickets meet delayed ACKs (40 ms per connection).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    if context is not None:
                        sock = context.wrap_socket(sock, server_side=True)
                    with owner.lock:
                        owner.served += 1
                    handler(sock)
                except OSError:  # ssl.SSLError too: a client that did not trust us
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        self.port = self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def server_context(client_ca=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert("server", "crt"), cert("server", "key"))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


SHORT = ["-t", "500ms", "--warmup", "0"]


class BenchTlsTest(unittest.TestCase):
    def echo_server(self, tls=True, handler=echo, client_ca=None):
        server = EchoServer(server_context(client_ca) if tls else None, handler)
        self.addCleanup(server.stop)
        return server

    def assert_clean(self, result, report):
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(report["round_trips"], 0)
        self.assertEqual(report["errors"], 0, report["error_counts"])

    def assert_connects_match(self, report, server, conns):
        """With --warmup 0 a connection's first measured event is an echo, then connects and
        echoes alternate: up to one connect per connection is still ahead at the end. The
        server saw the first connects, the measured ones, and at most one more each."""
        self.assertLessEqual(report["connects"], report["round_trips"])
        self.assertGreaterEqual(report["connects"], report["round_trips"] - conns)
        self.assertGreaterEqual(server.served, conns + report["connects"])
        self.assertLessEqual(server.served, 2 * conns + report["connects"])

    def test_tls_run_verifies_every_echo_and_reports_handshake_percentiles(self):
        server = self.echo_server()
        result, report = bench_json("-c", "tls://127.0.0.1:%d" % server.port, "--ca",
                                    cert("server", "crt"), "-n", "3", "-p", "2", *SHORT)
        self.assert_clean(result, report)
        self.assertEqual(result.stderr, "")
        self.assertTrue(report["tls"])
        self.assertTrue(report["verified"])
        self.assertRegex(report["tls_version"], r"^TLSv1\.[23]$")
        self.assertEqual(report["transport"], "tcp")
        self.assertEqual(report["address"], "tls://127.0.0.1:%d" % server.port)
        handshake = report["handshake_us"]
        self.assertGreater(handshake["min"], 0)
        self.assertLessEqual(handshake["min"], handshake["p50"])
        self.assertLessEqual(handshake["p50"], handshake["p99"])
        self.assertLessEqual(handshake["p99"], handshake["max"])
        self.assertIsNone(report["connect_us"], "with TLS the connect is in the handshake")

    def test_corrupted_tls_echo_counts_mismatches_and_exits_1(self):
        server = self.echo_server(handler=corrupting_echo)
        result, report = bench_json("-c", "tls://127.0.0.1:%d" % server.port, "--insecure",
                                    "-n", "2", *SHORT)
        self.assertEqual(result.returncode, 1)
        self.assertGreater(report["error_counts"]["mismatch"], 0)
        self.assertEqual(report["round_trips"], 0, "a wrong echo is not a round trip")

    def test_tls_flag_makes_a_plain_address_tls(self):
        server = self.echo_server()
        result, report = bench_json("-c", "127.0.0.1:%d" % server.port, "--tls", "--ca",
                                    cert("server", "crt"), "-n", "1", *SHORT)
        self.assert_clean(result, report)
        self.assertEqual(report["address"], "tls://127.0.0.1:%d" % server.port)

    def test_insecure_says_once_that_nothing_is_verified(self):
        server = self.echo_server()
        result, report = bench_json("-c", "tls://127.0.0.1:%d" % server.port, "--insecure",
                                    "-n", "2", *SHORT)
        self.assert_clean(result, report)
        self.assertEqual(result.stderr, "yodel bench: --insecure: the server's certificate is "
                                        "not verified\n")
        self.assertFalse(report["verified"])

    def test_certificate_from_another_ca_exits_1_with_one_clear_line(self):
        server = self.echo_server()
        result = bench("-c", "tls://127.0.0.1:%d" % server.port, "--ca", cert("other", "crt"),
                       "-n", "3", *SHORT)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("TLS handshake failed", lines[0])
        self.assertIn("not signed by a CA in " + cert("other", "crt"), lines[0])

    def test_tls_address_alone_verifies_with_the_system_cas(self):
        server = self.echo_server()
        result = bench("-c", "tls://127.0.0.1:%d" % server.port, "-n", "1", *SHORT)
        self.assertEqual(result.returncode, 1, "a test certificate no system trusts")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("not signed by a CA the system trusts (--ca)", result.stderr)

    def test_sni_names_the_certificate_to_verify(self):
        server = self.echo_server()
        args = ["-c", "tls://127.0.0.1:%d" % server.port, "--ca", cert("server", "crt"), "-n",
                "1", *SHORT]
        result, report = bench_json(*args, "--sni", "localhost")
        self.assert_clean(result, report)
        result = bench(*args, "--sni", "elsewhere.example")
        self.assertEqual(result.returncode, 1)
        self.assertIn("not for 'elsewhere.example'", result.stderr)

    def test_client_certificate_is_presented_with_cert_and_key(self):
        server = self.echo_server(client_ca=cert("client", "crt"))
        args = ["-c", "tls://127.0.0.1:%d" % server.port, "--ca", cert("server", "crt"), "-n",
                "1", *SHORT]
        result, report = bench_json(*args, "--cert", cert("client", "crt"), "--key",
                                    cert("client", "key"))
        self.assert_clean(result, report)
        result = bench(*args)
        self.assertEqual(result.returncode, 1, "the server wants a certificate: " +
                         result.stderr)

    def test_plain_run_reports_connect_latency_and_no_handshake(self):
        addr = Server("-l", "127.0.0.1:0", "--threads", "1")
        self.addCleanup(addr.stop)
        result, report = bench_json("-c", addr.address, "-n", "3", *SHORT)
        self.assert_clean(result, report)
        self.assertEqual(report["connect_us"]["min"] > 0, True)
        self.assertIsNone(report["handshake_us"])
        self.assertFalse(report["tls"])
        self.assertIsNone(report["connects"], "without --reconnect-every")
        self.assertIn("connect (us)", bench("-c", addr.address, "-n", "1", *SHORT).stdout)

    def test_reconnect_every_1_makes_a_connection_per_verified_round_trip(self):
        server = self.echo_server(tls=False)
        result, report = bench_json("-c", "127.0.0.1:%d" % server.port, "-n", "2",
                                    "--reconnect-every", "1", *SHORT)
        self.assert_clean(result, report)
        self.assertEqual(report["reconnect_every"], 1)
        self.assertGreater(report["connects"], 0)
        self.assert_connects_match(report, server, 2)
        self.assertGreater(report["connect_us"]["p50"], 0)
        self.assertIsNone(report["handshakes_per_s"])

    def test_reconnect_every_1_over_tls_makes_a_full_handshake_per_round_trip(self):
        server = self.echo_server()
        result, report = bench_json("-c", "tls://127.0.0.1:%d" % server.port, "--ca",
                                    cert("server", "crt"), "-n", "2", "--reconnect-every", "1",
                                    *SHORT)
        self.assert_clean(result, report)
        self.assertGreater(report["connects"], 0)
        self.assert_connects_match(report, server, 2)
        self.assertEqual(report["handshakes_per_s"], report["connects_per_s"])
        self.assertFalse(report["resumed"])

    def test_resume_makes_reconnections_resume_the_tls_session(self):
        server = self.echo_server()
        result, report = bench_json("-c", "tls://127.0.0.1:%d" % server.port, "--ca",
                                    cert("server", "crt"), "-n", "2", "--reconnect-every", "1",
                                    "--resume", *SHORT)
        self.assert_clean(result, report)
        self.assertGreater(report["connects"], 0)
        # The first reconnection of each connection may come before its ticket: nearly all
        # others resume.
        self.assertGreaterEqual(report["resumed"], report["connects"] // 2, report)

    def test_resume_without_reconnect_every_is_a_usage_error(self):
        result = bench("-c", "tls://127.0.0.1:1", "--insecure", "--resume")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--resume", result.stderr)

    def test_reconnect_every_n_with_depth_sends_n_per_connection(self):
        server = self.echo_server(tls=False)
        result, report = bench_json("-c", "127.0.0.1:%d" % server.port, "-n", "2", "-p", "3",
                                    "--reconnect-every", "5", *SHORT)
        self.assert_clean(result, report)
        # Each connection carries 5 round trips: the measured ones over the connects, give or
        # take a connection's worth at each end.
        self.assertLessEqual(report["connects"] * 5, report["round_trips"])
        self.assertGreaterEqual((report["connects"] + 2) * 5, report["round_trips"])

    def test_reconnecting_to_a_corrupting_server_counts_mismatches_and_exits_1(self):
        server = self.echo_server(handler=corrupting_echo)
        result, report = bench_json("-c", "tls://127.0.0.1:%d" % server.port, "--insecure",
                                    "-n", "2", "--reconnect-every", "1", *SHORT)
        self.assertEqual(result.returncode, 1)
        self.assertGreater(report["error_counts"]["mismatch"], 0)
        self.assertEqual(report["round_trips"], 0)

    def test_help_names_the_tls_options_bench_compare_looks_for(self):
        result = bench("--help")
        for option in ("--tls", "--insecure", "--ca", "--sni", "--cert", "--key",
                       "--reconnect-every", "tls://"):
            self.assertIn(option, result.stdout)

    def test_bad_tls_and_reconnect_combinations_exit_2_with_one_line(self):
        cases = [
            (["--insecure"], "--insecure: only with TLS"),
            (["--ca", __file__], "--ca: only with TLS"),
            (["--sni", "x", "-c", "127.0.0.1:1"], "--sni: only with TLS"),
            (["--tls", "--ca", __file__, "--insecure"], "--ca with --insecure"),
            (["--tls", "--udp"], "--tls: not over UDP"),
            (["-c", "tls://127.0.0.1:1", "--udp"], "is a TLS address"),
            (["-c", "udp://127.0.0.1:1", "--tls"], "--tls: not over UDP"),
            (["--tls", "--key", __file__], "--key: without --cert"),
            (["--tls", "--ca", "/nonexistent/ca.pem"], "--ca: cannot read /nonexistent/ca.pem"),
            (["--tls", "--cert", __file__], "TLS: "),
            (["--tls", "--sni", ""], "--sni: the name is empty"),
            (["--reconnect-every", "0"], "--reconnect-every"),
            (["--reconnect-every", "1", "--udp"], "--reconnect-every: not with UDP"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                result = bench(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertEqual(result.stdout, "")
                lines = result.stderr.splitlines()
                self.assertEqual(len(lines), 1, result.stderr)
                self.assertTrue(lines[0].startswith("yodel bench: "), lines[0])
                self.assertIn(expected, lines[0])


if __name__ == "__main__":
    unittest.main(argv=sys.argv, verbosity=2)
