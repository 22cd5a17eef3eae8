"""yodel send over TLS (tls:// addresses, --tls) in every mode, against TLS echo servers written
as the asyncio tutorials write them (asyncio.start_server with ssl=context): verification with
--ca, a certificate from another CA, --insecure, --sni, client certificates, the probe's
handshake times and bad combinations. Certificates are made at test time with the openssl
command, in a temporary directory: no key is committed."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PythonPeer, send  # noqa: E402

FAST = ["--interval", "50ms", "--timeout", "5s"]
CERTS = None  # the directory setUpModule fills


def cert(name):
    return os.path.join(CERTS, name)


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=harness.CMD_TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr.decode()))


def make_ca(name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", cert(name + ".key"), "-out", cert(name + ".pem"), "-days", "2",
            "-subj", "/CN=yodel test %s" % name)


def make_leaf(name, ca, cn, san=None, client=False):
    """A certificate for cn signed by ca, with subjectAltName san (a server's)."""
    ext = cert(name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("keyUsage=digitalSignature\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        f.write("subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        if san:
            f.write("subjectAltName=%s\n" % san)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", cert(name + ".key"), "-out", cert(name + ".csr"), "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", cert(name + ".csr"), "-CA", cert(ca + ".pem"), "-CAkey",
            cert(ca + ".key"), "-CAcreateserial", "-out", cert(name + ".pem"), "-days", "2",
            "-extfile", ext)


def setUpModule():
    global CERTS
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("the openssl command is not installed")
    CERTS = tempfile.mkdtemp(prefix="yodel-tls-", dir="/tmp")
    make_ca("ca")
    make_ca("other-ca")
    make_leaf("server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1")
    make_leaf("name-only", "ca", "echo.test", "DNS:echo.test")
    make_leaf("stranger", "other-ca", "localhost", "DNS:localhost,IP:127.0.0.1")
    make_leaf("client", "ca", "yodel client", client=True)


def tearDownModule():
    if CERTS is not None:
        shutil.rmtree(CERTS, ignore_errors=True)


# Both servers print the SNI they were sent and, when client certificates are required, the
# client's common name; the %(...)r fields are filled by py_tls_server.
TLS_CONTEXT = r"""
import ssl
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(%(cert)r, %(key)r)
if %(client_ca)r:
    ctx.load_verify_locations(%(client_ca)r)
    ctx.verify_mode = ssl.CERT_REQUIRED
def on_sni(sock, name, context):
    print("sni", name, flush=True)
ctx.sni_callback = on_sni
def say_client(peer):
    if peer:
        print("client", dict(x[0] for x in peer["subject"])["commonName"], flush=True)
"""

# The tutorial's line echo server, with ssl=ctx.
ASYNCIO_LINE_SERVER = r"""
import asyncio
async def handle(reader, writer):
    print("peer port", writer.get_extra_info("peername")[1], flush=True)
    say_client(writer.get_extra_info("peercert"))
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except (ConnectionError, ssl.SSLError) as e:
        print("error", e, flush=True)
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""

# asyncio's SSL transport cannot half-close: on the client's close_notify it shuts the whole
# connection, and what the handler has not echoed yet is lost. TLS 1.3 allows the half-close
# (RFC 8446, 6.1), and the ssl module's blocking sockets keep it: a thread per connection.
# 'raw' echoes bytes as they come until EOF; 'eof' reads everything to EOF, then echoes it.
# With proxy, a PROXY v1 line is read (and printed) before the handshake, as a load balancer
# sends it.
THREADED_SERVER = r"""
import os, socket, threading
def handle(raw):
    try:
        if %(proxy)r:
            line = b""
            while not line.endswith(b"\r\n") and len(line) < 108:
                line += raw.recv(1)
            print("header", line.decode().rstrip(), flush=True)
        with ctx.wrap_socket(raw, server_side=True) as s:
            say_client(s.getpeercert())
            if %(mode)r == "corrupt":  # a record no key made, in place of the echo
                s.recv(65536)
                with socket.socket(fileno=os.dup(s.fileno())) as plain:
                    plain.sendall(b"\x17\x03\x03\x00\x20" + b"G" * 32)
                    plain.recv(1)  # until the client has gone
            elif %(mode)r == "raw":
                while data := s.recv(65536):
                    s.sendall(data)
            else:
                buf = b""
                while data := s.recv(65536):
                    buf += data
                print("got %%d bytes" %% len(buf), flush=True)
                s.sendall(buf)
    except (ConnectionError, ssl.SSLError) as e:
        print("error", e, flush=True)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print(ls.getsockname()[1], flush=True)
while True:
    conn, _ = ls.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"""


def py_tls_server(server="server", mode="line", client_ca=None, proxy=False):
    """A TLS echo server with the certificate server.pem; mode 'line' (asyncio), 'raw' or 'eof'
    (threads); client_ca: client certificates signed by it are required; proxy: a PROXY v1
    header comes first ('raw', 'eof')."""
    fields = {"cert": cert(server + ".pem"), "key": cert(server + ".key"),
              "client_ca": client_ca, "mode": mode, "proxy": proxy}
    body = ASYNCIO_LINE_SERVER if mode == "line" else THREADED_SERVER % fields
    return TLS_CONTEXT % fields + body


def tls_addr(peer, host="127.0.0.1"):
    return "tls://%s:%d" % (host, peer.port)


def out_err(r):
    return r.stdout.decode(), r.stderr.decode()


class SendOverTls(unittest.TestCase):
    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, out_err(r))

    def test_a_message_comes_back_over_tls_verified_with_ca(self):
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "Hello There")
        self.assert_ok(r)
        self.assertEqual(r.stdout, b"Hello There\n")
        self.assertEqual(r.stderr, b"")

    def test_tls_flag_makes_a_plain_host_port_a_tls_address(self):
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", "localhost:%d" % peer.port, "--tls", "--ca", cert("ca.pem"), "hi")
        self.assert_ok(r)
        self.assertEqual(r.stdout, b"hi\n")

    def test_five_megabytes_from_stdin_come_back_whole_over_tls(self):
        data = os.urandom(5 << 20)
        with PythonPeer(py_tls_server(mode="raw")) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "-", input=data)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(len(r.stdout), len(data))
        self.assertTrue(r.stdout == data, "the echo differs from the input")

    def test_ten_clients_each_get_their_own_message_back_over_tls(self):
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "-n", "10", "MESSAGE")
        self.assert_ok(r)
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["MESSAGE from %d" % i for i in range(10)])

    def test_parts_over_tls_half_close_and_get_everything_back_at_eof(self):
        with PythonPeer(py_tls_server(mode="eof")) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--parts", "one", "two",
                     "three")
            log = peer.stop()
        self.assert_ok(r)
        self.assertEqual(r.stdout, b"one\ntwo\nthree\n")
        # The server answered only after reading to EOF: the half-close went through TLS.
        self.assertIn("got 14 bytes", log.splitlines())

    def test_sni_names_the_server_to_verify_when_the_address_is_an_ip(self):
        with PythonPeer(py_tls_server("name-only")) as peer:
            by_ip = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "hi")
            by_name = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--sni", "echo.test",
                           "hi")
            log = peer.stop()
        self.assertEqual(by_ip.returncode, 1, out_err(by_ip))
        self.assertIn("certificate not verified", by_ip.stderr.decode())
        self.assert_ok(by_name)
        self.assertEqual(by_name.stdout, b"hi\n")
        self.assertIn("sni echo.test", log.splitlines())


class TlsVerification(unittest.TestCase):
    def test_a_certificate_from_another_ca_exits_1_with_one_line_naming_the_address(self):
        with PythonPeer(py_tls_server("stranger")) as peer:
            addr = tls_addr(peer)
            r = send("-c", addr, "--ca", cert("ca.pem"), "hello")
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        self.assertEqual(out, "")
        lines = harness.stderr_lines(err)
        self.assertEqual(len(lines), 1, lines)
        # The guess, then OpenSSL's own reason (yd_conn_tls_error).
        self.assertRegex(lines[0], r"^yodel send: cannot connect to %s: TLS handshake failed "
                         r"\(certificate not verified\?\): .*certificate" % re.escape(addr))

    def test_a_certificate_from_another_ca_fails_the_stdin_mode_too(self):
        with PythonPeer(py_tls_server("stranger", mode="raw")) as peer:
            addr = tls_addr(peer)
            r = send("-c", addr, "--ca", cert("ca.pem"), "-", input=b"data\n")
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        self.assertEqual(len(harness.stderr_lines(err)), 1, err)
        self.assertIn(addr, err)
        self.assertIn("certificate not verified", err)

    def test_insecure_says_so_once_and_accepts_any_certificate(self):
        with PythonPeer(py_tls_server("stranger")) as peer:
            r = send("-c", tls_addr(peer), "--insecure", "-n", "3", "hello")
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertEqual(out.splitlines(), ["hello from 0", "hello from 1", "hello from 2"])
        self.assertEqual(harness.stderr_lines(err), [
            "yodel send: --insecure: the server's certificate is not verified"])


class ClientCertificates(unittest.TestCase):
    def test_a_client_certificate_is_accepted_by_a_server_that_requires_one(self):
        with PythonPeer(py_tls_server(client_ca=cert("ca.pem"))) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--cert", cert("client.pem"),
                     "--key", cert("client.key"), "hello")
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(r.stdout, b"hello\n")
        self.assertIn("client yodel client", log.splitlines())

    def test_a_server_that_requires_a_client_certificate_refuses_a_client_without_one(self):
        with PythonPeer(py_tls_server(client_ca=cert("ca.pem"))) as peer:
            addr = tls_addr(peer)
            r = send("-c", addr, "--ca", cert("ca.pem"), "hello")
            log = peer.stop()
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        self.assertEqual(out, "")
        lines = harness.stderr_lines(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(addr, lines[0])
        self.assertIn("client certificate", lines[0])
        self.assertNotIn("client yodel client", log)


class BrokenSessions(unittest.TestCase):
    def test_a_corrupt_record_after_the_handshake_is_named_in_openssls_words(self):
        with PythonPeer(py_tls_server(mode="corrupt")) as peer:
            addr = tls_addr(peer)
            r = send("-c", addr, "--ca", cert("ca.pem"), "hello")
            peer.stop()
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        lines = harness.stderr_lines(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(addr, lines[0])
        self.assertIn("TLS error: ", lines[0])
        self.assertRegex(lines[0], r"(?i)bad record mac|decryption failed")
        self.assertNotIn("client certificate", lines[0])


class ProbeOverTls(unittest.TestCase):
    def test_probe_with_reconnect_reports_each_handshake_and_their_spread(self):
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--count", "3",
                     "--reconnect", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertTrue(out.startswith("PROBE %s (tls): 3 probes" % tls_addr(peer)), out)
        probes = re.findall(r"(?m)^seq=(\d) bytes=14 connect=[\d.]+ ms handshake=[\d.]+ ms "
                            r"time=[\d.]+ ms$", out)
        self.assertEqual(probes, ["1", "2", "3"], out)
        self.assertRegex(out, r"(?m)^connect min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms$")
        self.assertRegex(out, r"(?m)^handshake min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms$")

    def test_probe_json_reports_the_tls_version_and_handshake_times(self):
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--count", "2",
                     "--reconnect", "--json", *FAST)
        self.assertEqual(r.returncode, 0, out_err(r))
        objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
        probes = [o for o in objs if o["type"] == "probe"]
        self.assertEqual([p["status"] for p in probes], ["reply", "reply"])
        for p in probes:
            self.assertIn(p["tls_version"], ("TLSv1.2", "TLSv1.3"))
            self.assertGreater(p["handshake_ms"], 0)
        summary = objs[-1]
        self.assertEqual(summary["type"], "summary")
        self.assertEqual(summary["transport"], "tls")
        self.assertEqual(summary["tls_version"], probes[0]["tls_version"])
        self.assertEqual(set(summary["handshake_ms"]), {"min", "avg", "max"})

    def test_probe_text_output_without_reconnect_is_unchanged_over_tls(self):
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--count", "2", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertEqual(len(re.findall(r"(?m)^seq=\d bytes=14 time=[\d.]+ ms$", out)), 2, out)
        self.assertNotIn("handshake", out)

    def test_probe_source_port_over_tls_is_the_port_the_server_sees(self):
        port = harness.source_port()
        with PythonPeer(py_tls_server()) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--count", "2",
                     "--source-port", port, *FAST)
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(re.findall(r"peer port (\d+)", log), [str(port)])

    def test_probe_sends_the_proxy_header_before_the_tls_handshake(self):
        with PythonPeer(py_tls_server(mode="raw", proxy=True)) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--count", "2", "--reconnect",
                     "--proxy-protocol", "v1", "--proxy-source", "192.0.2.7:4000", *FAST)
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(re.findall(r"(?m)^header (.*)$", log),
                         ["PROXY TCP4 192.0.2.7 127.0.0.1 4000 %d" % peer.port] * 2)

    def test_probe_that_cannot_verify_the_server_loses_each_probe_and_exits_1(self):
        with PythonPeer(py_tls_server("stranger")) as peer:
            r = send("-c", tls_addr(peer), "--ca", cert("ca.pem"), "--count", "2",
                     "--reconnect", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        errors = re.findall(r"(?m)^seq=\d error: (.*)$", out)
        self.assertEqual(len(errors), 2, out)
        for e in errors:
            self.assertTrue(e.startswith("TLS handshake failed (certificate not verified?)"), e)
        self.assertIn("2 sent, 0 received, 100% loss", out)


class BadTlsOptions(unittest.TestCase):
    CASES = [
        (["--tls", "--udp", "hi"], "--tls and --udp: TLS needs a stream"),
        (["-c", "udp://127.0.0.1:1", "--tls", "hi"], "--tls and a udp:// address"),
        (["-c", "tls://127.0.0.1:1", "--udp", "hi"], "--udp: not with a TLS address"),
        (["--tls", "--ca", "CA", "--insecure", "hi"], "--ca and --insecure: choose one"),
        (["--tls", "--key", "KEY", "hi"], "--key needs --cert"),
        (["--ca", "CA", "hi"], "--ca: only over TLS"),
        (["--insecure", "--count", "1"], "--insecure: only over TLS"),
        (["--tls", "--ca", "/nonexistent/ca.pem", "hi"], "--ca: cannot read /nonexistent/ca.pem"),
        (["--tls", "--sni", "", "hi"], "--sni: the name is empty"),
        (["--tls", "--proxy-protocol", "v1", "hi"], "--proxy-protocol over TLS: only in probe"),
    ]

    def test_bad_tls_combinations_exit_2_naming_the_problem(self):
        for args, message in self.CASES:
            with self.subTest(args=args):
                r = send(*args)
                err = r.stderr.decode()
                self.assertEqual(r.returncode, 2, err)
                self.assertIn(message, err)
                self.assertEqual(len(err.splitlines()), 1, err)
                self.assertEqual(r.stdout, b"")


if __name__ == "__main__":
    unittest.main()
