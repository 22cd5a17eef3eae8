"""yodel serve over TLS, talked to by the real clients people use: openssl s_client, socat's
OPENSSL address, ncat --ssl and Python's asyncio streams with an ssl= context, in raw, line
and upper modes; IPv4, IPv6, host names and Unix sockets, next to plain listeners."""

import hashlib
import os
import socket
import ssl
import sys
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import harness  # noqa: E402

LINE = b"hello there\n"


def has_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class TlsClientsBase(unittest.TestCase):
    mode = "raw"

    @classmethod
    def setUpClass(cls):
        cls.pki = tlslib.pki()

    def serve(self, *args):
        srv = tlslib.serve("-l", "tls://127.0.0.1:0", "-m", self.mode, *self.pki.server_args(),
                           *args)
        self.addCleanup(srv.kill)
        return srv

    def talk(self, client, send, expect):
        """Types send into the client, reads expect back, ends input; the client must exit 0."""
        with client as c:
            c.write(send)
            self.assertEqual(c.read_exactly(len(expect)), expect)
            status, rest, err = c.wait()
            self.assertEqual((status, rest), (0, b""), err)

    def stop_clean(self, srv):
        counts = hard_summary(self, srv)
        self.assertEqual(counts["tls_handshake"], 0)
        self.assertEqual(counts["reset"] + counts["io"], 0)
        return counts


def hard_summary(testcase, srv):
    return tlslib.hard.stop_summary(testcase, srv)


class RawModeTest(TlsClientsBase):
    mode = "raw"

    def test_openssl_s_client_gets_its_line_back(self):
        tlslib.require_tools(self, "openssl")
        srv = self.serve()
        self.talk(tlslib.s_client(tlslib.tls_listener(srv)), LINE, LINE)
        self.assertEqual(self.stop_clean(srv)["accepted"], 1)

    def test_socat_openssl_gets_its_line_back(self):
        tlslib.require_tools(self, "socat")
        srv = self.serve()
        self.talk(tlslib.socat_client(tlslib.tls_listener(srv)), LINE, LINE)
        self.stop_clean(srv)

    def test_ncat_ssl_gets_its_line_back(self):
        tlslib.require_tools(self, "ncat")
        srv = self.serve()
        self.talk(tlslib.ncat_client(tlslib.tls_listener(srv)), LINE, LINE)
        self.stop_clean(srv)

    def test_socat_gets_every_byte_of_four_mebibytes_back_in_order(self):
        tlslib.require_tools(self, "socat")
        srv = self.serve()
        data = hashlib.sha256(b"yodel").digest() * (4 * 32768)  # 4 MiB, patterned
        addr = "OPENSSL:%s,cafile=%s,commonname=localhost" % (
            tlslib.tls_listener(srv).hostport, self.pki.path("root.pem"))
        r = harness.run(["socat", "-t", str(tlslib.IO_TIMEOUT), "-", addr], input=data,
                        timeout=harness.CMD_TIMEOUT * 2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), len(data))
        self.assertEqual(hashlib.sha256(r.stdout).digest(), hashlib.sha256(data).digest())
        self.assertEqual(self.stop_clean(srv)["bytes_out"], len(data))

    def test_asyncio_client_with_an_ssl_context_gets_hello_world_back(self):
        srv = self.serve()
        status, out, err = tlslib.asyncio_client(tlslib.tls_listener(srv).port, "raw")
        self.assertEqual(status, 0, err)
        self.assertEqual(out, "Send: 'Hello World!\\n'\nReceived: 'Hello World!\\n'\n"
                              "Close the connection\n")
        self.stop_clean(srv)


class LineModeTest(TlsClientsBase):
    mode = "line"

    def test_socat_openssl_gets_each_line_back_as_it_is_sent(self):
        tlslib.require_tools(self, "socat")
        srv = self.serve()
        with tlslib.socat_client(tlslib.tls_listener(srv)) as c:
            for line in (b"first\n", b"second line\n", b"\n", b"fourth\n"):
                c.write(line)
                self.assertEqual(c.read_exactly(len(line)), line)
            status, rest, err = c.wait()
        self.assertEqual((status, rest), (0, b""), err)
        self.assertEqual(self.stop_clean(srv)["messages"], 4)

    def test_ncat_ssl_gets_each_line_back_as_it_is_sent(self):
        tlslib.require_tools(self, "ncat")
        srv = self.serve()
        with tlslib.ncat_client(tlslib.tls_listener(srv)) as c:
            for line in (b"one\n", b"two\n"):
                c.write(line)
                self.assertEqual(c.read_exactly(len(line)), line)
            status, rest, err = c.wait()
        self.assertEqual((status, rest), (0, b""), err)
        self.stop_clean(srv)

    def test_openssl_s_client_gets_its_line_back(self):
        tlslib.require_tools(self, "openssl")
        srv = self.serve()
        self.talk(tlslib.s_client(tlslib.tls_listener(srv)), LINE, LINE)
        self.stop_clean(srv)

    def test_asyncio_client_reading_a_line_gets_hello_world_back(self):
        srv = self.serve()
        status, out, err = tlslib.asyncio_client(tlslib.tls_listener(srv).port, "line")
        self.assertEqual(status, 0, err)
        self.assertIn("Received: 'Hello World!\\n'\n", out)
        self.stop_clean(srv)


class UpperModeTest(TlsClientsBase):
    mode = "upper"

    def test_openssl_s_client_gets_its_line_upper_cased(self):
        tlslib.require_tools(self, "openssl")
        srv = self.serve()
        self.talk(tlslib.s_client(tlslib.tls_listener(srv)), LINE, LINE.upper())
        self.stop_clean(srv)

    def test_socat_openssl_gets_its_line_upper_cased(self):
        tlslib.require_tools(self, "socat")
        srv = self.serve()
        self.talk(tlslib.socat_client(tlslib.tls_listener(srv)), LINE, LINE.upper())
        self.stop_clean(srv)

    def test_ncat_ssl_gets_its_line_upper_cased(self):
        tlslib.require_tools(self, "ncat")
        srv = self.serve()
        self.talk(tlslib.ncat_client(tlslib.tls_listener(srv)), LINE, LINE.upper())
        self.stop_clean(srv)

    def test_asyncio_client_gets_hello_world_upper_cased(self):
        srv = self.serve()
        status, out, err = tlslib.asyncio_client(tlslib.tls_listener(srv).port, "line")
        self.assertEqual(status, 0, err)
        self.assertIn("Received: 'HELLO WORLD!\\n'\n", out)
        self.stop_clean(srv)


class AddressesTest(TlsClientsBase):
    mode = "line"

    def test_the_listening_line_of_a_tls_listener_says_tls(self):
        srv = self.serve()
        self.assertEqual([li.scheme for li in srv.listeners], ["tls"])
        self.assertRegex(srv.listeners[0].line, r"^listening on tls://127\.0\.0\.1:\d+$")

    def test_tls_and_plain_listeners_serve_side_by_side(self):
        srv = self.serve("-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0")
        self.assertEqual(sorted(li.scheme for li in srv.listeners), ["tcp", "tls", "udp"])
        with tlslib.tls_connect(srv.find("tls")) as s:
            self.assertEqual(tlslib.round_trip(s, b"secret\n"), b"secret\n")
        self.assertEqual(harness.exchange(srv.tcp, b"plain\n"), b"plain\n")
        self.assertEqual(harness.udp_exchange(srv.udp, b"datagram\n"), b"datagram\n")
        self.stop_clean(srv)

    def test_plaintext_to_the_plain_port_of_a_mixed_server_is_not_a_handshake_error(self):
        srv = self.serve("-l", "127.0.0.1:0")
        self.assertEqual(harness.exchange(srv.tcp, b"plain\n"), b"plain\n")
        self.assertEqual(self.stop_clean(srv)["tls_handshake"], 0)

    @unittest.skipUnless(has_ipv6(), "no IPv6 loopback")
    def test_an_ipv6_tls_listener_serves_openssl_s_client(self):
        tlslib.require_tools(self, "openssl")
        srv = tlslib.serve("-l", "tls://[::1]:0", "-m", "line", *self.pki.server_args())
        self.addCleanup(srv.kill)
        li = tlslib.tls_listener(srv)
        self.assertEqual(li.family, socket.AF_INET6)
        self.talk(tlslib.s_client(li), LINE, LINE)
        self.stop_clean(srv)

    @unittest.skipUnless(has_ipv6(), "no IPv6 loopback")
    def test_localhost_binds_tls_on_both_loopback_addresses(self):
        # RFC 6761, as the library does for plain TCP: localhost is 127.0.0.1 and ::1.
        srv = tlslib.serve("-l", "tls://localhost:0", "-m", "line", *self.pki.server_args(),
                           expect=2)
        self.addCleanup(srv.kill)
        self.assertEqual({li.host for li in srv.listeners}, {"127.0.0.1", "::1"})
        self.assertEqual({li.scheme for li in srv.listeners}, {"tls"})
        self.assertEqual(len({li.port for li in srv.listeners}), 1)
        for li in srv.listeners:
            with tlslib.tls_connect(li) as s:
                self.assertEqual(tlslib.round_trip(s, b"via %s\n" % li.host.encode()),
                                 b"via %s\n" % li.host.encode())
        self.stop_clean(srv)

    def test_a_tls_unix_listener_serves_a_python_ssl_client(self):
        with harness.TempDir() as d:
            path = os.path.join(d, "tls.sock")
            srv = tlslib.serve("-l", "tls+unix:" + path, "-m", "line", *self.pki.server_args())
            self.addCleanup(srv.kill)
            self.assertEqual(srv.listeners[0].line, "listening on tls+unix:" + path)
            with tlslib.tls_connect(srv.listeners[0]) as s:
                self.assertEqual(s.version() in ("TLSv1.2", "TLSv1.3"), True)
                self.assertEqual(tlslib.round_trip(s, b"over unix\n"), b"over unix\n")
            self.stop_clean(srv)


class ProtocolTest(TlsClientsBase):
    mode = "raw"

    def test_the_server_sends_its_full_chain_so_a_client_trusting_only_the_root_verifies_it(self):
        srv = self.serve()
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            self.assertEqual(subject["commonName"], "localhost")
            self.assertEqual(tlslib.peer_serial(s), tlslib.Pki.SERVER_SERIAL)

    def test_tls_1_3_is_negotiated_by_a_modern_client(self):
        srv = self.serve()
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertEqual(s.version(), "TLSv1.3")
            self.assertIsNone(s.compression())

    def test_a_tls_1_2_client_is_served_by_default(self):
        srv = self.serve()
        ctx = tlslib.client_context(max_version=ssl.TLSVersion.TLSv1_2)
        with tlslib.tls_connect(tlslib.tls_listener(srv), ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assertIsNone(s.compression())
            self.assertEqual(tlslib.round_trip(s, b"twelve"), b"twelve")
        self.stop_clean(srv)

    def test_a_tls_1_1_client_is_refused_and_counted(self):
        srv = self.serve()
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = tlslib.client_context(max_version=ssl.TLSVersion.TLSv1_1)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.assertIsNotNone(tlslib.handshake_refused(tlslib.tls_listener(srv), ctx))
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertEqual(tlslib.round_trip(s, b"still here"), b"still here")
        counts = tlslib.hard.stop_summary(self, srv)
        self.assertEqual(counts["tls_handshake"], 1)

    def test_a_session_ticket_lets_a_client_resume_its_session(self):
        srv = self.serve()
        li = tlslib.tls_listener(srv)
        ctx = tlslib.client_context()
        with tlslib.tls_connect(li, ctx) as s:
            # TLS 1.3 tickets come after the handshake: a round trip reads them.
            self.assertEqual(tlslib.round_trip(s, b"first"), b"first")
            session = s.session
        self.assertIsNotNone(session)
        self.assertTrue(session.has_ticket)
        raw = socket.create_connection(li.sockaddr, timeout=tlslib.IO_TIMEOUT)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            self.assertTrue(s.session_reused)
            self.assertEqual(tlslib.round_trip(s, b"again"), b"again")
        self.stop_clean(srv)

    def test_a_renegotiation_request_is_refused_and_the_connection_goes_on(self):
        tlslib.require_tools(self, "openssl")
        srv = self.serve()
        li = tlslib.tls_listener(srv)
        # s_client without -quiet: a line "R" asks for a renegotiation (TLS 1.2 only has it).
        c = tlslib.Interactive(["openssl", "s_client", "-tls1_2", "-connect", li.hostport,
                                "-CAfile", self.pki.path("root.pem"), "-no_ign_eof"])
        with c:
            c.write(b"R\n")
            status, out, err = c.wait()
        self.assertIn(b"RENEGOTIATING", out + err.encode())
        self.assertNotEqual(status, 0, "s_client says the renegotiation worked: %r" % err)
        with tlslib.tls_connect(li) as s:
            self.assertEqual(tlslib.round_trip(s, b"still serving"), b"still serving")

    def test_alpn_picks_the_servers_first_protocol_the_client_offers(self):
        srv = self.serve("--alpn", "h2,http/1.1")
        ctx = tlslib.client_context(alpn=["http/1.1", "h2"])
        with tlslib.tls_connect(tlslib.tls_listener(srv), ctx) as s:
            self.assertEqual(s.selected_alpn_protocol(), "h2")
            self.assertEqual(tlslib.round_trip(s, b"alpn"), b"alpn")

    def test_alpn_refuses_a_client_offering_none_of_the_servers_protocols(self):
        srv = self.serve("--alpn", "h2,http/1.1")
        ctx = tlslib.client_context(alpn=["spdy/3"])
        self.assertIsNotNone(tlslib.handshake_refused(tlslib.tls_listener(srv), ctx))
        counts = tlslib.hard.stop_summary(self, srv)
        self.assertEqual(counts["tls_handshake"], 1)

    def test_alpn_lets_a_client_offering_nothing_in(self):
        srv = self.serve("--alpn", "h2")
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertIsNone(s.selected_alpn_protocol())
            self.assertEqual(tlslib.round_trip(s, b"no alpn"), b"no alpn")


if __name__ == "__main__":
    unittest.main(verbosity=2)
