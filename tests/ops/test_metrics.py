"""--metrics: the Prometheus endpoint, and that no HTTP client can hurt the echo service."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from opslib import (IO_TIMEOUT, harness, http_request, metric, ops_serve, parse_exposition,
                    scrape, wait_until)


def echo_round_trip(test, listener, data=b"still here\n"):
    test.assertEqual(harness.exchange(listener, data), data)


class MetricsTest(unittest.TestCase):
    def serve(self, *extra):
        srv = ops_serve("-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0", "--metrics",
                        "127.0.0.1:0", *extra)
        self.addCleanup(self.stop_cleanly, srv)
        return srv

    def stop_cleanly(self, srv):
        """Every test ends with a graceful stop: exit 0, and nothing from the sanitizers."""
        if srv.returncode is not None:
            return
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertNotIn("Sanitizer", stderr)
        self.assertNotIn("runtime error", stderr)

    def test_metrics_line_names_the_url(self):
        srv = self.serve()
        self.assertRegex(srv.metrics_url, r"^http://127\.0\.0\.1:\d+/metrics$")
        self.assertNotEqual(srv.metrics_port, 0)
        status, _, _ = scrape(srv.metrics_port)
        self.assertEqual(status, 200)

    def test_scrape_is_prometheus_text_with_help_and_type(self):
        srv = self.serve()
        status, headers, body = scrape(srv.metrics_port)
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"),
                        headers)
        self.assertEqual(int(headers["content-length"]), len(body.encode()))
        self.assertEqual(headers.get("connection"), "close")
        samples, types = parse_exposition(body)
        for name, kind in [("yodel_connections_accepted_total", "counter"),
                           ("yodel_messages_total", "counter"),
                           ("yodel_bytes_received_total", "counter"),
                           ("yodel_bytes_sent_total", "counter"),
                           ("yodel_errors_total", "counter"),
                           ("yodel_connections_active", "gauge")]:
            self.assertEqual(types.get(name), kind, name)
            self.assertIn("# HELP %s " % name, body)
        # One series per listener, labelled with its address.
        tcp, udp = srv.tcp.addr, srv.udp.addr
        self.assertEqual(metric(samples, "yodel_messages_total", listener=tcp), 0)
        self.assertEqual(metric(samples, "yodel_messages_total", listener=udp), 0)
        self.assertEqual(metric(samples, "yodel_errors_total", listener=tcp, kind="reset"), 0)

    def test_counters_rise_with_traffic_per_listener(self):
        srv = self.serve()
        tcp, udp = srv.tcp.addr, srv.udp.addr
        with harness.connect(srv.tcp) as held:
            held.sendall(b"abc")
            self.assertEqual(harness.recv_exactly(held, 3), b"abc")
            samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
            self.assertEqual(metric(samples, "yodel_connections_active", listener=tcp), 1)
            self.assertEqual(metric(samples, "yodel_connections_accepted_total", listener=tcp), 1)
        for i in range(5):
            echo_round_trip(self, srv.tcp, b"x" * 100)
        for i in range(3):
            self.assertEqual(harness.udp_exchange(srv.udp, b"datagram"), b"datagram")

        def settled():
            # A worker thread counts a reply just after sending it: the client may see the echo
            # a moment before the scrape sees the count.
            s = parse_exposition(scrape(srv.metrics_port)[2])[0]
            done = (metric(s, "yodel_connections_active", listener=tcp) == 0
                    and metric(s, "yodel_bytes_sent_total", listener=udp) >= 24)
            return s if done else None

        samples = wait_until(settled, what="TCP closed and UDP replies counted in the metrics")
        self.assertEqual(metric(samples, "yodel_connections_accepted_total", listener=tcp), 6)
        self.assertEqual(metric(samples, "yodel_connections_closed_total", listener=tcp), 6)
        self.assertEqual(metric(samples, "yodel_bytes_received_total", listener=tcp), 503)
        self.assertEqual(metric(samples, "yodel_bytes_sent_total", listener=tcp), 503)
        self.assertEqual(metric(samples, "yodel_messages_total", listener=udp), 3)
        self.assertEqual(metric(samples, "yodel_bytes_sent_total", listener=udp), 24)

    def test_counters_merge_every_thread(self):
        srv = self.serve("--threads", "2")
        for i in range(8):
            echo_round_trip(self, srv.tcp, b"%d\n" % i)
        samples = wait_until(
            lambda: (lambda s: s if metric(s, "yodel_connections_closed_total") == 8 else None)(
                parse_exposition(scrape(srv.metrics_port)[2])[0]),
            what="8 closed connections")
        self.assertEqual(metric(samples, "yodel_connections_accepted_total",
                                listener=srv.tcp.addr), 8)
        self.assertEqual(metric(samples, "yodel_messages_total", listener=srv.tcp.addr), 8)

    def test_other_paths_get_404(self):
        srv = self.serve()
        for raw in [b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /favicon.ico HTTP/1.1\r\n\r\n",
                    b"POST /other HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]:
            status, headers, body = http_request(srv.metrics_port, raw)
            self.assertEqual(status, 404, raw)
            self.assertNotIn(b"yodel_", body)
        status, _, body = http_request(srv.metrics_port, b"GET /metrics?x=1 HTTP/1.0\n\n")
        self.assertEqual(status, 200)
        samples = parse_exposition(body.decode())[0]
        self.assertEqual(metric(samples, "yodel_errors_total", kind="http"), 3)

    def test_other_methods_on_metrics_get_405_allowing_get(self):
        srv = self.serve()
        for raw in [b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                    b"HEAD /metrics HTTP/1.0\r\n\r\n",
                    b"PUT /metrics?x=1 HTTP/1.0\r\n\r\n"]:
            status, headers, body = http_request(srv.metrics_port, raw)
            self.assertEqual(status, 405, raw)
            self.assertEqual(headers.get("allow"), "GET", headers)
            self.assertNotIn(b"yodel_", body)
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_errors_total", kind="http"), 3)

    def test_root_serves_an_html_page_linking_metrics(self):
        srv = self.serve()
        status, headers, body = http_request(srv.metrics_port, b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertIn(b'<a href="/metrics">', body)
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_errors_total", kind="http"), 0)

    def curl(self, port, path):
        """(status, body) of GET path with the real curl, as a load balancer's probe would."""
        r = subprocess.run(["curl", "-s", "--noproxy", "*", "-m", "5", "-w", "\n%{http_code}",
                            "http://127.0.0.1:%d%s" % (port, path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=15)
        body, _, code = r.stdout.rpartition("\n")
        return int(code), body

    def test_healthz_and_readyz_answer_200_while_serving(self):
        srv = self.serve()
        self.assertEqual(self.curl(srv.metrics_port, "/healthz"), (200, "ok\n"))
        self.assertEqual(self.curl(srv.metrics_port, "/readyz"), (200, "ready\n"))

    def test_readyz_answers_503_from_the_moment_a_drain_starts_and_healthz_stays_200(self):
        srv = ops_serve("-l", "127.0.0.1:0", "-m", "line", "--delay", "3s", "--metrics",
                        "127.0.0.1:0", "--drain-timeout", "10s")
        self.addCleanup(srv.kill)
        with socket.create_connection(srv.tcp.sockaddr, timeout=IO_TIMEOUT) as held:
            held.sendall(b"held across the drain\n")
            # Accepted (not still in the backlog, which the drain would close with the
            # listener): then the drain has a connection to wait for.
            wait_until(lambda: metric(parse_exposition(scrape(srv.metrics_port)[2])[0],
                                      "yodel_connections_active") >= 1, what="the held connection")
            srv.proc.send_signal(signal.SIGTERM)
            srv.wait_stderr(lambda t: "draining" in t, what="the drain")
            # A load balancer or Kubernetes stops sending now, before connections close.
            self.assertEqual(self.curl(srv.metrics_port, "/readyz"), (503, "draining\n"))
            self.assertEqual(self.curl(srv.metrics_port, "/healthz"), (200, "ok\n"))
            self.assertEqual(harness.recv_exactly(held, 22, 10), b"held across the drain\n")
        srv.proc.wait(timeout=20)  # the drain ends by itself once the held reply is sent
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertRegex(stderr, r" http=0\b")  # a probe's 503 is a state, not an error

    def test_process_metrics_describe_this_process(self):
        srv = self.serve()
        started = time.time()
        samples, types = parse_exposition(scrape(srv.metrics_port)[2])
        for name, kind in [("process_cpu_seconds_total", "counter"),
                           ("process_resident_memory_bytes", "gauge"),
                           ("process_virtual_memory_bytes", "gauge"),
                           ("process_start_time_seconds", "gauge"),
                           ("process_open_fds", "gauge"),
                           ("process_max_fds", "gauge")]:
            self.assertEqual(types.get(name), kind, name)
        pid = srv.proc.pid
        fds = len(os.listdir("/proc/%d/fd" % pid))
        self.assertLessEqual(abs(metric(samples, "process_open_fds") - fds), 2)
        with open("/proc/%d/limits" % pid) as f:
            soft = next(l.split()[3] for l in f if l.startswith("Max open files"))
        self.assertEqual(metric(samples, "process_max_fds"), int(soft))
        self.assertGreater(metric(samples, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(metric(samples, "process_virtual_memory_bytes"),
                           metric(samples, "process_resident_memory_bytes"))
        self.assertGreaterEqual(metric(samples, "process_cpu_seconds_total"), 0)
        # It started a moment before our scrape (the clock ticks are 10 ms).
        start = metric(samples, "process_start_time_seconds")
        self.assertLess(abs(start - started), 30, start)

    def test_udp_listeners_export_no_connection_series(self):
        srv = self.serve()
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        udp = srv.udp.addr
        for name in ("yodel_connections_accepted_total", "yodel_connections_refused_total",
                     "yodel_connections_closed_total", "yodel_connections_active"):
            self.assertFalse([k for k in samples if k[0] == name and ("listener", udp) in k[1]],
                             name)
            self.assertEqual(metric(samples, name, listener=srv.tcp.addr), 0)
        self.assertEqual(metric(samples, "yodel_messages_total", listener=udp), 0)
        self.assertEqual(metric(samples, "yodel_errors_total", listener=udp, kind="udp_send"), 0)

    def test_messages_total_is_described_as_messages_received(self):
        srv = self.serve()
        body = scrape(srv.metrics_port)[2]
        self.assertIn("# HELP yodel_messages_total Messages received:", body)

    def test_errors_total_has_a_drain_timeout_series(self):
        srv = self.serve()
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_errors_total", listener=srv.tcp.addr,
                                kind="drain_timeout"), 0)

    def test_promtool_accepts_the_exposition(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool is not installed (apt-get install prometheus)")
        srv = self.serve()
        self.assertEqual(harness.exchange(srv.tcp, b"traffic"), b"traffic")
        body = scrape(srv.metrics_port)[2]
        r = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.strip(), b"", r.stdout)

    def test_promtool_accepts_every_family_with_tls_unix_udp_listeners_and_errors(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool is not installed (apt-get install prometheus)")
        # tests/tls's helpers: its throw-away certificates, and `listening on tls://` lines.
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tls"))
        import tlslib
        sock = os.path.join(tempfile.mkdtemp(prefix="yodel-metrics-"), "echo.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(sock), True)
        srv = ops_serve("-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0", "-l", "unix:" + sock,
                        "-l", "tls://127.0.0.1:0", "-m", "line", "--max-line", "16",
                        "--metrics", "127.0.0.1:0", *tlslib.pki().server_args())
        self.addCleanup(self.stop_cleanly, srv)
        tls = srv.find("tls")
        self.assertEqual(harness.exchange(srv.tcp, b"tcp\n"), b"tcp\n")
        self.assertEqual(harness.udp_exchange(srv.udp, b"udp"), b"udp")
        self.assertEqual(harness.exchange(srv.unix, b"unix\n"), b"unix\n")
        with tlslib.tls_connect(tls) as s:
            self.assertEqual(tlslib.round_trip(s, b"tls\n"), b"tls\n")
        # Errors of three kinds: a line too long, a handshake that is not TLS, a bad request.
        try:
            harness.exchange(srv.tcp, b"x" * 64 + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        with harness.connect(tls) as s:
            s.sendall(b"not a client hello\r\n\r\n")
            harness.recv_until_eof(s)
        self.assertEqual(http_request(srv.metrics_port, b"GET /nowhere HTTP/1.0\r\n\r\n")[0],
                         404)

        def with_errors():
            s = parse_exposition(scrape(srv.metrics_port)[2])[0]
            return all(metric(s, "yodel_errors_total", kind=k) >= 1
                       for k in ("line_too_long", "tls_handshake", "http"))

        wait_until(with_errors, what="line_too_long, tls_handshake and http errors counted")
        body = scrape(srv.metrics_port)[2]
        samples, types = parse_exposition(body)
        families = {"yodel_build_info", "yodel_connections_accepted_total",
                    "yodel_connections_refused_total", "yodel_connections_closed_total",
                    "yodel_connections_active", "yodel_messages_total",
                    "yodel_bytes_received_total", "yodel_bytes_sent_total", "yodel_errors_total",
                    "process_cpu_seconds_total", "process_resident_memory_bytes",
                    "process_virtual_memory_bytes", "process_start_time_seconds",
                    "process_open_fds", "process_max_fds"}
        self.assertEqual(set(types), families)
        self.assertEqual({name for name, _ in samples}, families)  # each with a sample
        for li in (srv.tcp, srv.udp, srv.unix, tls):
            self.assertGreaterEqual(metric(samples, "yodel_messages_total", listener=li.addr), 1)
        r = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.strip(), b"", r.stdout)

    def test_malformed_request_gets_400_and_is_counted(self):
        srv = self.serve()
        status, _, _ = http_request(srv.metrics_port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        self.assertEqual(status, 400)
        status, _, _ = http_request(srv.metrics_port, b"GET metrics HTTP/1.0\r\n\r\n")
        self.assertEqual(status, 400)
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_errors_total", kind="http"), 2)
        echo_round_trip(self, srv.tcp)

    def test_endless_header_line_is_cut_off_and_echo_goes_on(self):
        srv = self.serve()
        with socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Long: ")
            closed = False
            deadline = time.monotonic() + IO_TIMEOUT
            try:
                while time.monotonic() < deadline:
                    s.sendall(b"a" * 4096)  # never a newline
                    echo_round_trip(self, srv.tcp, b"between chunks\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            self.assertTrue(closed, "a never-ending header line was still read after %.0fs"
                            % IO_TIMEOUT)
        echo_round_trip(self, srv.tcp)
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_errors_total", kind="http"), 1)

    def test_silent_clients_do_not_block_echo_or_scrapes_and_are_dropped(self):
        srv = self.serve()
        silent = [socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=IO_TIMEOUT)
                  for _ in range(20)]
        half = socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=IO_TIMEOUT)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        try:
            start = time.monotonic()
            echo_round_trip(self, srv.tcp)
            self.assertEqual(harness.udp_exchange(srv.udp, b"udp too"), b"udp too")
            self.assertEqual(scrape(srv.metrics_port)[0], 200)
            # Served before the endpoint's 5 s idle timeout would have freed anything blocked
            # by the silent clients (a bound on blocking, not a speed: 4 s on a loaded machine).
            self.assertLess(time.monotonic() - start, 4.0)
            # The endpoint drops them after its 5 s idle timeout.
            for s in silent + [half]:
                self.assertEqual(harness.recv_until_eof(s, timeout=10.0 * harness.SLOW), b"")
        finally:
            for s in silent + [half]:
                s.close()
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_errors_total", kind="http"), 21)

    def test_metrics_endpoint_closes_when_draining_begins(self):
        srv = self.serve("--drain-timeout", "10s")
        port = srv.metrics_port
        held = harness.connect(srv.tcp)  # keeps the server draining
        try:
            held.sendall(b"x")
            self.assertEqual(harness.recv_exactly(held, 1), b"x")
            srv.send_signal(harness.signal.SIGTERM)
            srv.wait_stderr(lambda t: "draining" in t, what="the draining message")

            def refused():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return False
                except ConnectionRefusedError:
                    return True

            wait_until(refused, what="metrics port closed while draining")
            held.shutdown(socket.SHUT_WR)
            self.assertEqual(harness.recv_until_eof(held), b"")
        finally:
            held.close()
        status, _ = srv.wait_exit()
        self.assertEqual(status, 0)

    def test_metrics_needs_a_tcp_address(self):
        for bad in ["udp://127.0.0.1:0", "unix:/tmp/yodel-metrics.sock", "nonsense"]:
            r = harness.yodel("serve", "-l", "127.0.0.1:0", "--metrics", bad)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn(b"--metrics", r.stderr)
        r = harness.yodel("serve", "--inetd", "--metrics", "127.0.0.1:0")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_metrics_address_in_use_is_a_runtime_error(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            r = harness.yodel("serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"cannot serve metrics on", r.stderr)

    def test_no_listening_line_is_printed_when_metrics_cannot_listen(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            r = harness.yodel("serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % port)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(r.stderr.decode().splitlines(),
                         ["yodel serve: cannot serve metrics on 127.0.0.1:%d: address already in "
                          "use" % port])

    def test_bad_requests_are_counted_in_the_summary_as_http_errors(self):
        srv = self.serve()
        for _ in range(2):
            self.assertEqual(http_request(srv.metrics_port, b"GET /x HTTP/1.0\r\n\r\n")[0], 404)
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertRegex(stderr, r"(?m)^yodel serve: summary: .* http=2\b")

    def test_an_oversized_scrape_is_one_http_error_in_the_summary_as_in_the_metrics(self):
        # The endpoint's connections are not echo traffic: a header line over 8 KiB is a bad
        # request (http), not also an echo client's line_too_long.
        srv = self.serve()
        with socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
            try:
                harness.recv_until_eof(s, IO_TIMEOUT)
            except ConnectionResetError:
                pass
        samples = wait_until(
            lambda: (lambda m: m if metric(m, "yodel_errors_total", kind="http") == 1 else None)(
                parse_exposition(scrape(srv.metrics_port)[2])[0]),
            IO_TIMEOUT, "the oversized request counted")
        too_long = metric(samples, "yodel_errors_total", kind="line_too_long")
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertRegex(stderr, r"(?m)^yodel serve: summary: .* line_too_long=%d\b" % too_long)
        self.assertRegex(stderr, r"(?m)^yodel serve: summary: .* http=1\b")


if __name__ == "__main__":
    unittest.main()
