"""yodel send --proxy-protocol in the plain modes (MESSAGE..., -n, '-', UDP): the header goes
first on each connection (before each datagram), its ends the client socket's own address and
the server's, or --proxy-source and --proxy-dest; servers that parse it say what they read."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PythonPeer, send  # noqa: E402
from test_probe_backends import PY_PROXY_TCP, PY_PROXY_UDP  # noqa: E402

# "header v1 PROXY TCP4 SRC DST SPORT DPORT | peer HOST PORT | sock HOST PORT" (PY_PROXY_TCP)
V1_LINE = re.compile(r"(?m)^header v1 PROXY TCP4 (\S+) (\S+) (\d+) (\d+) \| peer (\S+) (\d+) "
                     r"\| sock (\S+) (\d+)$")
# "header v2 21 11 SRC DST SPORT DPORT | peer HOST PORT | sock HOST PORT"
V2_LINE = re.compile(r"(?m)^header v2 21 11 (\S+) (\S+) (\d+) (\d+) \| peer (\S+) (\d+) "
                     r"\| sock (\S+) (\d+)$")


def out_err(r):
    return r.stdout.decode(), r.stderr.decode()


class ProxyHeaderInPlainModes(unittest.TestCase):
    def assert_own_ends(self, headers, n):
        """Each header names the connection it came on: its source is the client socket the
        server sees, its destination the server's socket."""
        self.assertEqual(len(headers), n, headers)
        for src, dst, sport, dport, peer, pport, sock, lport in headers:
            self.assertEqual((src, sport), (peer, pport))
            self.assertEqual((dst, dport), (sock, lport))

    def test_a_message_goes_after_a_v1_header_naming_the_connections_own_ends(self):
        with PythonPeer(PY_PROXY_TCP) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--proxy-protocol", "v1", "Hello There")
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(r.stdout, b"Hello There\n")
        self.assert_own_ends(V1_LINE.findall(log), 1)

    def test_each_of_ten_clients_sends_the_header_of_its_own_connection(self):
        with PythonPeer(PY_PROXY_TCP) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--proxy-protocol", "v2", "-n", "10", "hi")
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        headers = V2_LINE.findall(log)
        self.assert_own_ends(headers, 10)
        self.assertEqual(len({h[2] for h in headers}), 10)  # ten source ports

    def test_stdin_streams_after_a_v2_header_and_the_echo_is_checked_without_it(self):
        data = b"".join(b"line %d\n" % i for i in range(1000))
        with PythonPeer(PY_PROXY_TCP) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--proxy-protocol", "v2", "-", input=data)
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertTrue(r.stdout == data, "the echo differs from the input")
        self.assert_own_ends(V2_LINE.findall(log), 1)

    def test_proxy_source_and_dest_replace_the_connections_ends(self):
        with PythonPeer(PY_PROXY_TCP) as peer:
            r = send("-c", "127.0.0.1:%d" % peer.port, "--proxy-protocol", "v1",
                     "--proxy-source", "192.0.2.1:5000", "--proxy-dest", "[2001:db8::2]:80", "x")
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        # A mix of families is written as IPv6, the IPv4 end mapped.
        self.assertRegex(log, r"(?m)^header v1 PROXY TCP6 ::ffff:192\.0\.2\.1 2001:db8::2 5000 80 ")

    def test_each_udp_datagram_carries_a_v2_header(self):
        with PythonPeer(PY_PROXY_UDP) as peer:
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--proxy-protocol", "v2", "one",
                     "two")
            log = peer.stop()
        self.assertEqual(r.returncode, 0, out_err(r))
        self.assertEqual(r.stdout, b"one\ntwo\n")
        headers = re.findall(r"(?m)^header v2 21 12 127\.0\.0\.1 127\.0\.0\.1 (\d+) (\d+) \| "
                             r"peer 127\.0\.0\.1 (\d+)$", log)
        self.assertEqual(len(headers), 2, log)
        for sport, dport, pport in headers:
            self.assertEqual((sport, dport), (pport, str(peer.port)))

    def test_v1_over_udp_exits_2_in_the_message_mode_too(self):
        r = send("-c", "udp://127.0.0.1:1", "--proxy-protocol", "v1", "hi")
        self.assertEqual(r.returncode, 2, out_err(r))
        self.assertIn("v1 is for streams", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
