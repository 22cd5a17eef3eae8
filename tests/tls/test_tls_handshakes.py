"""Handshakes that fail, and those that must: plaintext on a TLS port, a hello cut short, a
client that stops mid-handshake, the wrong version, mutual TLS with the right, a wrong or no
client certificate. Each failure closes that one connection, is counted as tls_handshake (in
the summary, --json and Prometheus), and the server goes on serving."""

import json
import os
import re
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import hard, harness, opslib  # noqa: E402


class Base(hard.ThreadVariant):
    @classmethod
    def setUpClass(cls):
        cls.pki = tlslib.pki()

    def serve_tls(self, *args, **kw):
        srv = self.serve("-l", "tls://127.0.0.1:0", "-m", "line", *self.pki.server_args(),
                         *args, **kw)
        self.addCleanup(srv.kill)
        return srv

    def assert_still_serving(self, listener, ctx=None):
        with tlslib.tls_connect(listener, ctx) as s:
            self.assertEqual(tlslib.round_trip(s, b"still serving\n"), b"still serving\n")

    def counts(self, srv):
        return hard.stop_summary(self, srv)


@hard.both_thread_counts
class BadHandshakes(Base):
    def test_plaintext_on_a_tls_port_is_closed_counted_and_the_server_goes_on(self):
        srv = self.serve_tls()
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertIn(hard.closed_by_peer(s, tlslib.IO_TIMEOUT), ("eof", "reset"))
        self.assert_still_serving(li)
        counts = self.counts(srv)
        self.assertEqual(counts["tls_handshake"], 1)
        self.assertEqual(counts["accepted"], 2)
        self.assertEqual(counts["reset"] + counts["io"], 0)

    def test_a_hello_cut_short_by_eof_is_counted_at_once(self):
        srv = self.serve_tls("--handshake-timeout", "60s")
        li = tlslib.tls_listener(srv)
        hello = tlslib.client_hello()
        with harness.connect(li) as s:
            s.sendall(hello[: len(hello) // 2])
            s.shutdown(socket.SHUT_WR)
            # Not the 60 s handshake timeout: the EOF ends it.
            self.assertIn(hard.closed_by_peer(s, tlslib.IO_TIMEOUT), ("eof", "reset"))
        self.assert_still_serving(li)
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)

    def test_a_client_that_stops_mid_hello_is_dropped_after_the_handshake_timeout(self):
        srv = self.serve_tls("--handshake-timeout", "1s")
        li = tlslib.tls_listener(srv)
        hello = tlslib.client_hello()
        with harness.connect(li) as s:
            s.sendall(hello[:20])
            started = time.monotonic()
            self.assertIn(hard.closed_by_peer(s, 10 * tlslib.SLOW), ("eof", "reset"))
            waited = time.monotonic() - started
        self.assertGreaterEqual(waited, 0.9)
        self.assert_still_serving(li)
        counts = self.counts(srv)
        self.assertEqual(counts["tls_handshake"], 1)
        self.assertEqual(counts["idle_timeout"], 0)

    def test_a_client_that_connects_and_says_nothing_is_dropped_after_the_handshake_timeout(self):
        srv = self.serve_tls("--handshake-timeout", "1s")
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            started = time.monotonic()
            self.assertIn(hard.closed_by_peer(s, 10 * tlslib.SLOW), ("eof", "reset"))
            self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assert_still_serving(li)
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)

    def test_a_client_that_stops_after_its_hello_is_dropped_after_the_handshake_timeout(self):
        # A whole hello, then silence: the server answered and waits for the client's Finished.
        srv = self.serve_tls("--handshake-timeout", "1s")
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            s.sendall(tlslib.client_hello())
            started = time.monotonic()
            deadline = started + 10 * tlslib.SLOW
            got = b""
            while time.monotonic() < deadline:  # the server's flight, then its close
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += chunk
            self.assertGreater(len(got), 0, "the server never answered the hello")
            self.assertGreaterEqual(time.monotonic() - started, 0.9)
            self.assertLess(time.monotonic(), deadline, "not dropped")
        self.assert_still_serving(li)
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)

    def test_the_default_handshake_timeout_does_not_drop_a_client_within_a_second(self):
        srv = self.serve_tls()
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            self.assertIsNone(hard.closed_by_peer(s, 1.0))
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)  # dropped by the drain

    def test_a_client_that_closes_without_close_notify_is_no_error(self):
        srv = self.serve_tls()
        li = tlslib.tls_listener(srv)
        s = tlslib.tls_connect(li)
        self.assertEqual(tlslib.round_trip(s, b"bye\n"), b"bye\n")
        os.close(s.detach())  # the TCP socket closed, without the TLS layer's goodbye
        self.assert_still_serving(li)
        counts = self.counts(srv)
        self.assertEqual(counts["closed"], 2)
        self.assertEqual(sum(v for k, v in counts.items()
                             if k in ("reset", "io", "tls_handshake", "drain_timeout")), 0)


@hard.both_thread_counts
class Versions(Base):
    def test_tls_min_1_3_refuses_a_tls_1_2_only_client(self):
        srv = self.serve_tls("--tls-min", "1.3")
        li = tlslib.tls_listener(srv)
        ctx = tlslib.client_context(max_version=ssl.TLSVersion.TLSv1_2)
        reason = tlslib.handshake_refused(li, ctx)
        self.assertIsNotNone(reason)
        self.assertRegex(reason, r"(?i)version|alert")
        with tlslib.tls_connect(li) as s:
            self.assertEqual(s.version(), "TLSv1.3")
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)

    def test_tls_min_1_3_refuses_openssl_s_client_with_tls1_2(self):
        tlslib.require_tools(self, "openssl")
        srv = self.serve_tls("--tls-min", "1.3")
        c = tlslib.s_client(tlslib.tls_listener(srv), "-tls1_2")
        with c:
            status, out, err = c.wait()
        self.assertNotEqual(status, 0)
        self.assertRegex(err, r"(?i)protocol version|alert")
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)


@hard.both_thread_counts
class MutualTls(Base):
    def serve_mutual(self, *args):
        return self.serve_tls("--client-ca", self.pki.path("client-ca.pem"), *args)

    def test_a_client_with_a_certificate_the_ca_signed_is_served(self):
        srv = self.serve_mutual()
        ctx = tlslib.client_context(cert="client")
        self.assert_still_serving(tlslib.tls_listener(srv), ctx)
        self.assertEqual(self.counts(srv)["tls_handshake"], 0)

    def test_socat_with_a_client_certificate_is_served(self):
        tlslib.require_tools(self, "socat")
        srv = self.serve_mutual()
        c = tlslib.socat_client(tlslib.tls_listener(srv), "cert=" + self.pki.path("client.pem"),
                                "key=" + self.pki.path("client.key"))
        with c:
            c.write(b"mutual\n")
            self.assertEqual(c.read_exactly(7), b"mutual\n")
            status, _, err = c.wait()
        self.assertEqual(status, 0, err)

    def test_the_asyncio_client_with_a_certificate_is_served(self):
        srv = self.serve_mutual()
        status, out, err = tlslib.asyncio_client(tlslib.tls_listener(srv).port, "line",
                                                 cert="client")
        self.assertEqual(status, 0, err)
        self.assertIn("Received: 'Hello World!\\n'", out)

    def test_a_client_without_a_certificate_is_refused_and_counted(self):
        srv = self.serve_mutual()
        li = tlslib.tls_listener(srv)
        self.assertIsNotNone(tlslib.handshake_refused(li, tlslib.client_context()))
        self.assert_still_serving(li, tlslib.client_context(cert="client"))
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)

    def test_a_client_whose_certificate_another_ca_signed_is_refused_and_counted(self):
        srv = self.serve_mutual()
        li = tlslib.tls_listener(srv)
        self.assertIsNotNone(tlslib.handshake_refused(li, tlslib.client_context(cert="stranger")))
        self.assertIsNotNone(tlslib.handshake_refused(
            li, tlslib.client_context(cert="stranger", max_version=ssl.TLSVersion.TLSv1_2)))
        self.assert_still_serving(li, tlslib.client_context(cert="client"))
        self.assertEqual(self.counts(srv)["tls_handshake"], 2)

    def test_ncat_without_a_certificate_gets_nothing_back(self):
        tlslib.require_tools(self, "ncat")
        srv = self.serve_mutual()
        with tlslib.ncat_client(tlslib.tls_listener(srv)) as c:
            c.write(b"let me in\n")
            status, out, err = c.wait()
        self.assertEqual(out, b"")
        self.assertEqual(self.counts(srv)["tls_handshake"], 1)

    def test_verbose_logs_the_connection_of_a_mutual_tls_client(self):
        srv = self.serve_mutual("-v")
        li = tlslib.tls_listener(srv)
        with tlslib.tls_connect(li, tlslib.client_context(cert="client")) as s:
            port = s.getsockname()[1]
            self.assertEqual(tlslib.round_trip(s, b"who\n"), b"who\n")
        srv.wait_stderr(lambda t: re.search(r"127\.0\.0\.1:%d connected" % port, t),
                        what="the connected line")

    def test_verbose_logs_the_verified_subject_of_a_mutual_tls_client(self):
        srv = self.serve_mutual("-v")
        li = tlslib.tls_listener(srv)
        with tlslib.tls_connect(li, tlslib.client_context(cert="client")) as s:
            port = s.getsockname()[1]
            self.assertEqual(tlslib.round_trip(s, b"who\n"), b"who\n")
        srv.wait_stderr(
            lambda t: ("yodel: 127.0.0.1:%d connected (TLSv1.3, CN=client,O=yodel)\n" % port)
            in t, what="the subject on the connected line")


@hard.both_thread_counts
class ProxyHeaderThenHandshake(Base):
    """--proxy-protocol on a TLS listener: the cleartext header first, then the handshake,
    each with its own deadline, and nothing of a header delivered as a message."""

    def test_a_header_that_never_ends_is_dropped_after_its_own_5s_not_the_handshake_timeout(self):
        srv = self.serve_tls("--proxy-protocol", "--handshake-timeout", "60s")
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            s.sendall(b"PROXY ")
            started = time.monotonic()
            self.assertIn(hard.closed_by_peer(s, 12 * tlslib.SLOW), ("eof", "reset"))
            self.assertGreaterEqual(time.monotonic() - started, 4.5)
        counts = self.counts(srv)
        self.assertEqual(counts["proxy_header"], 1)
        self.assertEqual(counts["tls_handshake"], 0)

    def test_the_handshake_timeout_counts_from_the_end_of_the_header(self):
        srv = self.serve_tls("--proxy-protocol", "--handshake-timeout", "1s")
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            s.sendall(b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 %d\r\n" % li.port)
            started = time.monotonic()
            self.assertIn(hard.closed_by_peer(s, 10 * tlslib.SLOW), ("eof", "reset"))
            waited = time.monotonic() - started
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 4.0)  # not the header's 5 s plus the handshake's
        counts = self.counts(srv)
        self.assertEqual(counts["tls_handshake"], 1)
        self.assertEqual(counts["proxy_header"], 0)

    def test_a_header_cut_short_by_a_shutdown_is_not_a_message(self):
        for listen in ("127.0.0.1:0", "tls://127.0.0.1:0"):
            with self.subTest(listen=listen):
                tls = listen.startswith("tls")
                srv = self.serve("-l", listen, "-m", "line", "--proxy-protocol",
                                 *(self.pki.server_args() if tls else []))
                self.addCleanup(srv.kill)
                li = tlslib.tls_listener(srv) if tls else srv.tcp
                with harness.connect(li) as s:
                    s.sendall(b"PROXY TCP4 1.1.1.1 2")
                    counts = self.counts(srv)  # SIGTERM: the drain closes it
                    got = b""
                    try:
                        got = harness.recv_until_eof(s, tlslib.IO_TIMEOUT)
                    except ConnectionResetError:
                        pass
                self.assertEqual(got, b"")
                self.assertEqual(counts["messages"], 0)
                self.assertEqual(counts["io"] + counts["reset"], 0)


class RejectLogs(Base, unittest.TestCase):
    """What the echo protocol logs for a connection that ends before on_connect."""

    def test_a_failed_handshake_is_logged_with_its_peer_without_verbose(self):
        srv = self.serve_tls()
        with harness.connect(tlslib.tls_listener(srv)) as s:
            port = s.getsockname()[1]
            s.sendall(b"plaintext\n")
            hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        # With OpenSSL's reason for plaintext on a TLS port.
        srv.wait_stderr(lambda t: "yodel: 127.0.0.1:%d TLS handshake failed (wrong version "
                        "number)\n" % port in t, what="the handshake failure")

    def test_a_handshake_timeout_is_logged_with_its_peer(self):
        srv = self.serve_tls("--handshake-timeout", "200ms")
        with harness.connect(tlslib.tls_listener(srv)) as s:
            port = s.getsockname()[1]
            hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        srv.wait_stderr(lambda t: "yodel: 127.0.0.1:%d TLS handshake timed out\n" % port in t,
                        what="the handshake timeout")

    def test_a_failed_handshake_is_a_json_event_with_json(self):
        srv = self.serve_tls("--json")
        with harness.connect(tlslib.tls_listener(srv)) as s:
            port = s.getsockname()[1]
            s.sendall(b"plaintext\n")
            hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        text = srv.wait_stderr(lambda t: '"TLS handshake failed"' in t, what="the JSON event")
        event = [json.loads(l) for l in text.splitlines() if "handshake failed" in l][0]
        self.assertEqual(event["peer"], "127.0.0.1:%d" % port)

    def test_verbose_logs_a_max_conns_refusal_with_its_peer(self):
        srv = self.serve_tls("-v", "--max-conns", "1")
        li = tlslib.tls_listener(srv)
        with tlslib.tls_connect(li) as first:
            self.assertEqual(tlslib.round_trip(first, b"in\n"), b"in\n")
            with harness.connect(li) as s:
                port = s.getsockname()[1]
                hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        srv.wait_stderr(
            lambda t: "yodel: 127.0.0.1:%d refused (too many connections)\n" % port in t,
            what="the refusal")

    def test_the_json_connected_event_names_the_version_and_subject(self):
        srv = self.serve_tls("-v", "--json", "--client-ca", self.pki.path("client-ca.pem"))
        with tlslib.tls_connect(tlslib.tls_listener(srv), tlslib.client_context(cert="client")) \
                as s:
            port = s.getsockname()[1]
            self.assertEqual(tlslib.round_trip(s, b"who\n"), b"who\n")
        text = srv.wait_stderr(lambda t: '"connected"' in t, what="the connected event")
        event = [json.loads(l) for l in text.splitlines() if '"connected"' in l][0]
        self.assertEqual((event["peer"], event["tls"], event["subject"]),
                         ("127.0.0.1:%d" % port, "TLSv1.3", "CN=client,O=yodel"))


class Counters(Base, unittest.TestCase):
    """The tls_handshake kind in every place the error kinds are reported."""

    def test_the_summary_counts_tls_handshake_failures(self):
        srv = self.serve_tls()
        li = tlslib.tls_listener(srv)
        for _ in range(3):
            with harness.connect(li) as s:
                s.sendall(b"plaintext\n")
                hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        self.assertEqual(self.counts(srv)["tls_handshake"], 3)

    def test_the_json_summary_counts_tls_handshake_failures(self):
        srv = self.serve_tls("--json")
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            s.sendall(b"plaintext\n")
            hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        status, err = srv.stop()
        self.assertEqual(status, 0, err)
        summary = [json.loads(l) for l in err.splitlines() if '"summary"' in l][-1]
        self.assertEqual(summary["errors"]["tls_handshake"], 1)

    def test_the_json_stats_lines_count_a_tls_handshake_failure_as_an_error(self):
        srv = self.serve_tls("--json", "--stats=100ms")
        li = tlslib.tls_listener(srv)
        with harness.connect(li) as s:
            s.sendall(b"plaintext\n")
            hard.closed_by_peer(s, tlslib.IO_TIMEOUT)
        srv.wait_stderr(lambda t: any(json.loads(l).get("errors") == 1 for l in t.splitlines()
                                      if '"event":"stats"' in l), what="a stats line with 1 error")

    def test_prometheus_counts_tls_handshake_failures_by_listener(self):
        srv = opslib.ops_serve("--threads", "1", "-l", "tls://127.0.0.1:0", "-l", "127.0.0.1:0",
                               "--metrics", "127.0.0.1:0", *self.pki.server_args())
        self.addCleanup(srv.kill)
        li = srv.find("tls")
        with harness.connect(li) as s:
            s.sendall(b"plaintext\n")
            hard.closed_by_peer(s, tlslib.IO_TIMEOUT)

        def scraped():
            status, _, body = opslib.scrape(srv.metrics_port)
            samples, types = opslib.parse_exposition(body)
            return samples if opslib.metric(samples, "yodel_errors_total",
                                            kind="tls_handshake") >= 1 else None

        samples = opslib.wait_until(scraped, what="tls_handshake in the metrics")
        name = "tls://127.0.0.1:%d" % li.port
        self.assertEqual(opslib.metric(samples, "yodel_errors_total", listener=name,
                                       kind="tls_handshake"), 1)
        plain = "tcp://127.0.0.1:%d" % srv.tcp.port
        self.assertEqual(opslib.metric(samples, "yodel_errors_total", listener=plain,
                                       kind="tls_handshake"), 0)
        self.assertEqual(opslib.metric(samples, "yodel_connections_accepted_total",
                                       listener=name), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
