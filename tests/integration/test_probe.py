"""yodel send's probe mode (--count, --interval), ping's way: a line per probe and a summary,
against `yodel serve` (TCP, UDP, Unix) and small Python servers that drop, delay or report what
they saw (newcomer F7). Every probe interval here is 50-100 ms and every timeout short."""

import json
import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PythonPeer, send, serve  # noqa: E402

FAST = ["--interval", "50ms", "--timeout", "2s"]
SUMMARY_RE = re.compile(r"^(\d+) sent, (\d+) received, (?:(\d+) late, )?([\d.]+)% loss, time \d+ms$",
                        re.M)
RTT_RE = re.compile(r"^rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms, "
                    r"p50 ([\d.]+) ms, p99 ([\d.]+) ms$", re.M)


def out_err(r):
    return r.stdout.decode(), r.stderr.decode()


def summary(text):
    """(sent, received, late, loss %) from the summary line."""
    m = SUMMARY_RE.search(text)
    if m is None:
        raise AssertionError("no summary line in %r" % text)
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), float(m.group(4))


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Echoes every datagram but each third, which it drops.
PY_UDP_DROP_THIRD = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
n = 0
while True:
    data, peer = s.recvfrom(65536)
    n += 1
    if n % 3:
        s.sendto(data, peer)
"""

# Echoes every datagram; the one of probe 2 only after 450 ms.
PY_UDP_DELAY_SECOND = r"""
import socket, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65536)
    if data.endswith(b" 2\n"):
        threading.Timer(0.45, s.sendto, (data, peer)).start()
    else:
        s.sendto(data, peer)
"""

# Echoes every datagram and prints the port it came from.
PY_UDP_PORTS = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65536)
    print("from", peer[1], flush=True)
    s.sendto(data, peer)
"""

# A line echo server that prints each connection's source port.
PY_TCP_PORTS = r"""
import asyncio
async def handle(reader, writer):
    print("conn", writer.get_extra_info("peername")[1], flush=True)
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
""" + harness._serve_on_port_0("handle")


class ProbeAgainstYodelServe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.TempDir()
        path = os.path.join(cls.tmp.__enter__(), "s.sock")
        cls.server = serve("-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0", "-l", "unix:" + path)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.__exit__(None, None, None)

    def check_probes(self, addr, transport):
        r = send("-c", addr, "--count", "4", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        lines = out.splitlines()
        self.assertEqual(lines[0], "PROBE %s (%s): 4 probes every 50ms" % (addr, transport))
        for seq in range(1, 5):
            self.assertRegex(lines[seq], r"^seq=%d bytes=14 time=[\d.]+ ms$" % seq)
        self.assertEqual(lines[5], "--- %s probe statistics ---" % addr)
        self.assertEqual(summary(out), (4, 4, 0, 0.0))
        rtt = [float(x) for x in RTT_RE.search(out).groups()]
        self.assertTrue(rtt[0] <= rtt[1] <= rtt[2], rtt)
        self.assertEqual(len(lines), 8, out)

    def test_tcp_probes_print_a_line_each_and_a_summary(self):
        self.check_probes(self.server.tcp.addr.replace("tcp://", ""), "tcp")

    def test_udp_probes_print_a_line_each_and_a_summary(self):
        self.check_probes(self.server.udp.addr, "udp")

    def test_unix_probes_print_a_line_each_and_a_summary(self):
        self.check_probes(self.server.unix.addr, "unix")

    def test_json_gives_one_probe_object_per_probe_then_a_summary(self):
        r = send("-c", self.server.tcp.addr, "--count", "3", "--json", *FAST)
        self.assertEqual(r.returncode, 0, out_err(r))
        objs = [json.loads(line) for line in r.stdout.decode().splitlines()]
        self.assertEqual([o["type"] for o in objs], ["probe"] * 3 + ["summary"])
        self.assertEqual([o["seq"] for o in objs[:3]], [1, 2, 3])
        for o in objs[:3]:
            self.assertEqual(o["status"], "reply")
            self.assertGreater(o["rtt_ms"], 0)
        s = objs[3]
        self.assertEqual((s["sent"], s["received"], s["loss_pct"]), (3, 3, 0))
        self.assertEqual(set(s["rtt_ms"]), {"min", "avg", "max", "mdev", "p50", "p99"})

    def test_reconnect_opens_a_connection_per_probe_and_reports_connect_times(self):
        r = send("-c", self.server.tcp.addr, "--count", "3", "--reconnect", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertEqual(len(re.findall(r"^seq=\d bytes=14 connect=[\d.]+ ms time=[\d.]+ ms$",
                                        out, re.M)), 3, out)
        self.assertRegex(out, r"(?m)^connect min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms$")

    def test_the_message_is_the_probe_text(self):
        r = send("-c", self.server.tcp.addr, "--count", "1", "--no-check", "-q", "hello", *FAST)
        self.assertEqual(r.returncode, 0, out_err(r))
        r = send("-c", self.server.udp.addr, "--count", "1", "--json", "hello", *FAST)
        self.assertEqual(json.loads(r.stdout.decode().splitlines()[0])["bytes"], len("hello 1\n"))


class ProbeLoss(unittest.TestCase):
    def test_udp_probes_a_server_drops_are_lost_and_counted(self):
        with PythonPeer(PY_UDP_DROP_THIRD) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--count", "6",
                     "--interval", "50ms", "--timeout", "300ms")
        out, err = out_err(r)
        self.assertEqual(r.returncode, 0, (out, err))  # default --max-loss: only all lost fails
        self.assertRegex(out, r"(?m)^seq=3 timeout$")
        self.assertRegex(out, r"(?m)^seq=6 timeout$")
        self.assertEqual(summary(out), (6, 4, 0, 33.3))

    def test_max_loss_below_the_loss_exits_1_and_above_it_exits_0(self):
        with PythonPeer(PY_UDP_DROP_THIRD) as peer:
            addr = "udp://127.0.0.1:%d" % peer.port
            args = ["--count", "3", "--interval", "50ms", "--timeout", "300ms", "-q"]
            over = send("-c", addr, "--max-loss", "30", *args)
            under = send("-c", addr, "--max-loss", "34", *args)
        self.assertEqual(over.returncode, 1, out_err(over))
        self.assertEqual(under.returncode, 0, out_err(under))
        self.assertEqual(summary(over.stdout.decode())[3], 33.3)

    def test_every_probe_lost_exits_1(self):
        with PythonPeer(harness.PY_SILENT_UDP) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--count", "2",
                     "--interval", "50ms", "--timeout", "200ms")
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        self.assertEqual(summary(out), (2, 0, 0, 100.0))
        self.assertNotIn("rtt min", out)

    def test_a_late_udp_reply_is_counted_late_never_as_another_probes_answer(self):
        with PythonPeer(PY_UDP_DELAY_SECOND) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--count", "8",
                     "--interval", "100ms", "--timeout", "300ms", "--json")
        objs = [json.loads(line) for line in r.stdout.decode().splitlines()]
        probes = {o["seq"]: o for o in objs if o["type"] == "probe"}
        self.assertEqual(probes[2]["status"], "timeout")
        self.assertTrue(all(probes[s]["status"] == "reply" for s in probes if s != 2), probes)
        self.assertIn({"type": "late", "seq": 2}, objs)
        s = objs[-1]
        self.assertEqual((s["sent"], s["received"], s["late"]), (8, 7, 1))
        self.assertEqual(r.returncode, 0, out_err(r))

    def test_a_refused_connect_is_a_lost_probe_and_the_next_probe_tries_again(self):
        port = free_port(socket.SOCK_STREAM)
        r = send("-c", "127.0.0.1:%d" % port, "--count", "2", *FAST)
        out, err = out_err(r)
        self.assertEqual(r.returncode, 1, (out, err))
        self.assertRegex(out, r"(?m)^seq=1 error: cannot connect: connection refused$")
        self.assertRegex(out, r"(?m)^seq=2 error: cannot connect: connection refused$")
        self.assertEqual(summary(out), (2, 0, 0, 100.0))


class ProbeSourcePort(unittest.TestCase):
    def test_udp_source_port_is_the_port_the_server_sees(self):
        port = harness.source_port(socket.SOCK_DGRAM)
        with PythonPeer(PY_UDP_PORTS) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--count", "2", "--reconnect",
                     "--source-port", port, *FAST)
            seen = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(re.findall(r"from (\d+)", seen), [str(port)] * 2)

    def test_tcp_source_port_is_the_port_the_server_sees(self):
        port = harness.source_port(socket.SOCK_STREAM)
        with PythonPeer(PY_TCP_PORTS) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--count", "2", "--source-port", port,
                     *FAST)
            seen = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(re.findall(r"conn (\d+)", seen), [str(port)])


class ProbeBadOptions(unittest.TestCase):
    CASES = [
        (["--count", "0"], "--count: 0 is out of range"),
        (["--interval", "0"], "--interval: must be above 0"),
        (["--count", "1", "--max-loss", "120"], "--max-loss: 120 is out of range"),
        (["--count", "1", "--proxy-protocol", "v3"], "--proxy-protocol: unknown version 'v3'"),
        (["--tally", "hello"], "--tally: only in probe mode"),
        (["--json", "hello"], "--json: only in probe mode"),
        (["--count", "1", "-n", "2"], "-n: not in probe mode"),
        (["--count", "1", "a", "b"], "takes one MESSAGE"),
        (["--count", "1", "--udp", "--proxy-protocol", "v1"], "v1 is for streams"),
        (["--count", "1", "--proxy-source", "1.2.3.4:5"], "only with --proxy-protocol"),
        (["--count", "1", "--proxy-protocol", "v2", "--proxy-source", "host:5"],
         "--proxy-source: bad address 'host:5'"),
        (["--count", "1", "-c", "unix:/x", "--source-port", "5000"], "a Unix socket has no port"),
        (["--count", "1", "-c", "tls://127.0.0.1:1", "--udp"], "--udp: not with a TLS address"),
    ]

    def test_bad_probe_options_exit_2_naming_the_problem(self):
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
