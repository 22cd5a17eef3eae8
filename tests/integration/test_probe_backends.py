"""yodel send's probe against servers that say who they are (a prefix on every reply, a banner
line on connect), --tally through a round-robin forwarder (the traffic-shifting check), and the
PROXY protocol header (--proxy-protocol v1, v2) checked by a server that parses it."""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PythonPeer, send  # noqa: E402

FAST = ["--interval", "50ms", "--timeout", "2s"]


def out_err(r):
    return r.stdout.decode(), r.stderr.decode()


def froms(out):
    return re.findall(r"^seq=\d+ .* from=(.*)$", out, re.M)


# A line echo server that puts PREFIX before every reply (yodel serve --prefix's shape).
def py_prefix_server(prefix):
    return r"""
import asyncio
async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(%r + line)
        await writer.drain()
    writer.close()
""" % prefix.encode() + harness._serve_on_port_0("handle")


# The same over UDP.
def py_udp_prefix_server(prefix):
    return r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(%r + data, peer)
""" % prefix.encode()


# A line echo server that sends a banner line when a connection opens.
PY_BANNER_SERVER = r"""
import asyncio
async def handle(reader, writer):
    writer.write(b"banner-b\n")
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
""" + harness._serve_on_port_0("handle")


# A TCP forwarder in front of BACKENDS: connection i goes to backend i % len(BACKENDS).
def py_round_robin(ports):
    return r"""
import asyncio, itertools
BACKENDS = itertools.cycle(%r)
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
async def handle(reader, writer):
    r2, w2 = await asyncio.open_connection("127.0.0.1", next(BACKENDS))
    await asyncio.gather(pipe(reader, w2), pipe(r2, writer), return_exceptions=True)
""" % (list(ports),) + harness._serve_on_port_0("handle")


# Reads a PROXY header (v1 or v2) first, prints what it says next to what the socket says, then
# echoes lines.
PY_PROXY_TCP = r"""
import asyncio, socket, struct
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
def v2_addrs(fam, body):
    if fam >> 4 == 1:
        s, d, sp, dp = struct.unpack("!4s4sHH", body[:12])
        return socket.inet_ntop(socket.AF_INET, s), socket.inet_ntop(socket.AF_INET, d), sp, dp
    s, d, sp, dp = struct.unpack("!16s16sHH", body[:36])
    return socket.inet_ntop(socket.AF_INET6, s), socket.inet_ntop(socket.AF_INET6, d), sp, dp
async def handle(reader, writer):
    first = await reader.readexactly(12)
    if first == SIG:
        ver, fam, n = struct.unpack("!BBH", await reader.readexactly(4))
        src, dst, sp, dp = v2_addrs(fam, await reader.readexactly(n))
        hdr = "v2 %02x %02x %s %s %d %d" % (ver, fam, src, dst, sp, dp)
    else:
        rest = await reader.readuntil(b"\r\n")
        hdr = "v1 " + (first + rest).decode().rstrip("\r\n")
    peer = writer.get_extra_info("peername")
    sock = writer.get_extra_info("sockname")
    print("header", hdr, "| peer", peer[0], peer[1], "| sock", sock[0], sock[1], flush=True)
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
""" + harness._serve_on_port_0("handle")

# The same for UDP: every datagram starts with a v2 header; the rest is echoed.
PY_PROXY_UDP = r"""
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65536)
    assert data[:12] == b"\r\n\r\n\x00\r\nQUIT\n", data
    ver, fam, n = struct.unpack("!BBH", data[12:16])
    src, dst, sp, dp = struct.unpack("!4s4sHH", data[16:28])
    print("header v2 %02x %02x %s %s %d %d | peer %s %d" % (
        ver, fam, socket.inet_ntoa(src), socket.inet_ntoa(dst), sp, dp, peer[0], peer[1]),
        flush=True)
    s.sendto(data[16 + n:], peer)
"""


class ProbeNamesTheBackend(unittest.TestCase):
    def test_a_reply_prefix_names_the_backend(self):
        with PythonPeer(py_prefix_server("pod-a: ")) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--count", "2", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertEqual(froms(out), ["pod-a", "pod-a"])
        self.assertRegex(out, r"(?m)^seq=1 bytes=21 time=")  # the prefix's bytes counted

    def test_a_udp_reply_prefix_names_the_backend(self):
        with PythonPeer(py_udp_prefix_server("pod-u | ")) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--count", "2", *FAST)
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(froms(r.stdout.decode()), ["pod-u", "pod-u"])

    def test_a_banner_line_names_the_backend_for_every_probe_of_the_connection(self):
        with PythonPeer(PY_BANNER_SERVER) as peer:
            addr = "127.0.0.1:%d" % peer.port
            kept = send("-c", addr, "--count", "3", *FAST)
            fresh = send("-c", addr, "--count", "2", "--reconnect", *FAST)
        for r, n in ((kept, 3), (fresh, 2)):
            out, err = out_err(r)
            self.assertEqual(r.returncode, 0, (out, err))
            self.assertEqual(froms(out), ["banner-b"] * n)
            self.assertEqual(summary_loss(out), 0)

    def test_a_plain_echo_names_no_backend(self):
        with PythonPeer(harness.PY_LINE_SERVER) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--count", "2", "--json", "--tally",
                     *FAST)
        objs = [json.loads(line) for line in r.stdout.decode().splitlines()]
        self.assertEqual([o.get("from") for o in objs[:2]], [None, None])
        self.assertEqual(objs[-1]["backends"], [{"backend": "-", "replies": 2,
                                                 "share_pct": 100.0}])

    def test_a_reply_that_is_not_the_probe_is_a_mismatch(self):
        with PythonPeer(harness.PY_WRONG_SERVER) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--count", "2", "--interval", "50ms",
                     "--timeout", "300ms")
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        # The first line of a connection that is no probe is taken as its banner: the timeout
        # says so; the next wrong line is a mismatch.
        self.assertRegex(out, r"(?m)^seq=1 timeout: the only line back, 'something else', was "
                              r"taken as a banner$")
        self.assertRegex(out, r"(?m)^seq=2 mismatch: got 15 bytes 'something else'$")

    def test_no_check_takes_any_line_as_the_reply(self):
        with PythonPeer(harness.PY_WRONG_SERVER) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--count", "2", "--no-check", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertEqual(len(re.findall(r"(?m)^seq=\d bytes=15 time=[\d.]+ ms$", out)), 2, out)


def summary_loss(out):
    return float(re.search(r"([\d.]+)% loss", out).group(1))


class ProbeTally(unittest.TestCase):
    def test_tally_counts_replies_per_backend_through_a_round_robin_forwarder(self):
        peers = [PythonPeer(py_prefix_server("pod-%s: " % n)) for n in "abc"]
        try:
            with PythonPeer(py_round_robin(p.port for p in peers)) as lb:
                r = send("-c", "127.0.0.1:%d" % lb.port, "--count", "6", "--reconnect",
                         "--tally", *FAST)
                rj = send("-c", "127.0.0.1:%d" % lb.port, "--count", "3", "--reconnect",
                          "--tally", "--json", *FAST)
        finally:
            for p in peers:
                p.stop()
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertEqual(sorted(froms(out)), ["pod-a", "pod-a", "pod-b", "pod-b", "pod-c",
                                              "pod-c"])
        table = out[out.index("backend  replies  share"):].splitlines()
        self.assertEqual(len(table), 4, out)
        for row in table[1:]:
            self.assertRegex(row, r"^pod-[abc]\s+2\s+33\.3%$")
        tally = json.loads(rj.stdout.decode().splitlines()[-1])
        self.assertEqual(tally["type"], "tally")
        self.assertEqual(sorted(b["backend"] for b in tally["backends"]),
                         ["pod-a", "pod-b", "pod-c"])
        self.assertEqual({b["replies"] for b in tally["backends"]}, {1})

    def test_tally_rows_are_sorted_by_replies(self):
        peers = [PythonPeer(py_prefix_server("pod-%s: " % n)) for n in "ab"]
        try:
            # a, b, a: a has 2 of 3 replies.
            with PythonPeer(py_round_robin(p.port for p in peers)) as lb:
                r = send("-c", "127.0.0.1:%d" % lb.port, "--count", "3", "--reconnect",
                         "--tally", "-q", *FAST)
        finally:
            for p in peers:
                p.stop()
        out = r.stdout.decode()
        rows = out[out.index("backend  replies  share"):].splitlines()[1:]
        self.assertEqual([row.split() for row in rows], [["pod-a", "2", "66.7%"],
                                                         ["pod-b", "1", "33.3%"]])


class ProbeProxyProtocol(unittest.TestCase):
    def headers(self, version, *extra):
        with PythonPeer(PY_PROXY_TCP) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--count", "2", "--proxy-protocol",
                     version, *extra, *FAST)
            seen = peer.stop()
        self.assertEqual(r.returncode, 0, (out_err(r), seen))
        return re.findall(r"^header (.*) \| peer (\S+) (\d+) \| sock (\S+) (\d+)$", seen, re.M)

    def test_v1_header_gives_the_client_socket_and_the_server_address(self):
        [(hdr, peer, pport, sock, sport)] = self.headers("v1")  # one connection, one header
        self.assertEqual(hdr, "v1 PROXY TCP4 %s %s %s %s" % (peer, sock, pport, sport))

    def test_v2_header_gives_the_client_socket_and_the_server_address(self):
        [(hdr, peer, pport, sock, sport)] = self.headers("v2")
        self.assertEqual(hdr, "v2 21 11 %s %s %s %s" % (peer, sock, pport, sport))

    def test_reconnect_sends_a_header_on_each_connection(self):
        seen = self.headers("v1", "--reconnect")
        self.assertEqual(len(seen), 2)
        for hdr, peer, pport, sock, sport in seen:
            self.assertEqual(hdr, "v1 PROXY TCP4 %s %s %s %s" % (peer, sock, pport, sport))

    def test_proxy_source_and_dest_replace_the_header_ends(self):
        [(hdr, *_)] = self.headers("v1", "--proxy-source", "192.0.2.7:4321",
                                   "--proxy-dest", "198.51.100.1:443")
        self.assertEqual(hdr, "v1 PROXY TCP4 192.0.2.7 198.51.100.1 4321 443")
        [(hdr, *_)] = self.headers("v2", "--proxy-source", "[2001:db8::7]:4321")
        self.assertRegex(hdr, r"^v2 21 21 2001:db8::7 ::ffff:127\.0\.0\.1 4321 \d+$")

    def test_v2_over_udp_puts_the_header_before_each_datagram(self):
        with PythonPeer(PY_PROXY_UDP) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--count", "2",
                     "--proxy-protocol", "v2", *FAST)
            seen = peer.stop()
        self.assertEqual(r.returncode, 0, (out_err(r), seen))
        headers = re.findall(r"^header v2 21 12 (\S+) (\S+) (\d+) (\d+) \| peer (\S+) (\d+)$",
                             seen, re.M)
        self.assertEqual(len(headers), 2, seen)
        for src, dst, sp, dp, peer_ip, peer_port in headers:
            self.assertEqual((src, sp), (peer_ip, peer_port))
            self.assertEqual((dst, int(dp)), ("127.0.0.1", peer.port))


if __name__ == "__main__":
    unittest.main()
