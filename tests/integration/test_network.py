"""The network-testing features end to end on a real `yodel serve`: the PROXY protocol as a
server expects it (a client without the header, one that never sends it), and a ping-like
probe against injected loss. YODEL_BIN names the binary; every wait has a deadline."""

import json
import os
import re
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def summary_value(stderr, name):
    m = re.search(r"summary: .*\b%s=(\d+)" % name, stderr)
    if m is None:
        raise AssertionError("no %s in the summary: %r" % (name, stderr[-1500:]))
    return int(m.group(1))


class ProxyProtocolServer(unittest.TestCase):
    def serve(self, *extra):
        srv = harness.serve("-l", "127.0.0.1:0", "-m", "line", "--proxy-protocol", "-v", *extra)
        self.addCleanup(srv.kill)
        return srv

    def exchange(self, srv, header, line=b"hello\n"):
        """The echo of line, sent right after header on one connection."""
        with socket.create_connection(srv.tcp.sockaddr, timeout=harness.IO_TIMEOUT) as s:
            s.sendall(header + line)
            return harness.recv_exactly(s, len(line))

    def test_v2_header_makes_its_client_the_peer_in_the_log(self):
        srv = self.serve()
        sig = b"\r\n\r\n\x00\r\nQUIT\n"
        header = (sig + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
                  socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1") +
                  struct.pack("!HH", 40000, srv.tcp.port))
        self.assertEqual(self.exchange(srv, header), b"hello\n")
        srv.wait_stderr(lambda t: "yodel: 198.51.100.9:40000 connected" in t,
                        what="the original client as the peer")

    def test_a_connection_without_the_header_is_dropped_and_counted(self):
        srv = self.serve()
        with socket.create_connection(srv.tcp.sockaddr, timeout=harness.IO_TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                got = harness.recv_until_eof(s, harness.IO_TIMEOUT)
            except ConnectionResetError:
                got = b""
        self.assertEqual(got, b"")  # nothing is echoed before a valid header
        srv.wait_stderr(lambda t: "bad PROXY header" in t, what="the rejection logged")
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertEqual(summary_value(stderr, "proxy_header"), 1)

    def test_a_client_that_never_sends_the_header_is_dropped_after_the_timeout(self):
        srv = self.serve()
        started = time.monotonic()
        with socket.create_connection(srv.tcp.sockaddr, timeout=20) as s:
            try:
                got = s.recv(100)
            except ConnectionResetError:
                got = b""
        waited = time.monotonic() - started
        self.assertEqual(got, b"")
        self.assertGreaterEqual(waited, 4.5)  # the 5 s header deadline, not at once
        srv.wait_stderr(lambda t: "no PROXY header in time" in t, what="the timeout logged")
        status, stderr = srv.stop()
        self.assertEqual(summary_value(stderr, "proxy_header"), 1)


class ProxyProtocolDatagrams(unittest.TestCase):
    def test_a_datagram_behind_a_v2_header_names_its_client_and_the_reply_goes_to_the_proxy(self):
        srv = harness.serve("-l", "udp://127.0.0.1:0", "-m", "info", "--proxy-protocol", "-v")
        self.addCleanup(srv.kill)
        sig = b"\r\n\r\n\x00\r\nQUIT\n"
        header = (sig + bytes([0x21, 0x12]) + struct.pack("!H", 12) +
                  socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1") +
                  struct.pack("!HH", 40000, srv.udp.port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the proxy
            s.settimeout(harness.IO_TIMEOUT)
            s.sendto(header + b"hello\n", ("127.0.0.1", srv.udp.port))
            reply = json.loads(s.recv(65536))
        self.assertEqual(reply["peer"], "198.51.100.9:40000")
        self.assertEqual(reply["proxy"], "198.51.100.9:40000")
        self.assertEqual(reply["bytes"], 6)
        srv.wait_stderr(lambda t: "yodel: 198.51.100.9:40000 datagram" in t,
                        what="the original client in the log")


    def test_a_datagram_behind_a_v1_or_a_stream_v2_header_is_dropped_and_counted(self):
        srv = harness.serve("-l", "udp://127.0.0.1:0", "--proxy-protocol")
        self.addCleanup(srv.kill)
        sig = b"\r\n\r\n\x00\r\nQUIT\n"
        stream_v2 = (sig + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
                     socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1") +
                     struct.pack("!HH", 40000, srv.udp.port))
        v1 = b"PROXY UDP4 198.51.100.9 127.0.0.1 40000 %d\r\n" % srv.udp.port
        dgram_v2 = stream_v2[:13] + bytes([0x12]) + stream_v2[14:]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(harness.IO_TIMEOUT)
            for header in (v1, stream_v2, dgram_v2):
                s.sendto(header + b"hello\n", ("127.0.0.1", srv.udp.port))
            # The one answer is the last one's: the two before it were read first, and dropped.
            self.assertEqual(s.recv(65536), b"hello\n")
        status, stderr = srv.stop()
        self.assertEqual(summary_value(stderr, "proxy_header"), 2)
        self.assertEqual(summary_value(stderr, "messages"), 1)


class ProbeAgainstInjectedLoss(unittest.TestCase):
    def test_probe_sees_about_the_dropped_share_and_max_loss_sets_the_exit_status(self):
        srv = harness.serve("-l", "udp://127.0.0.1:0", "--drop", "10")
        self.addCleanup(srv.kill)
        r = harness.send("-c", "udp://127.0.0.1:%d" % srv.udp.port, "--count", "300",
                         "--interval", "2ms", "--timeout", "300ms", "--max-loss", "1", "probe",
                         timeout=60)
        out = r.stdout.decode()
        m = re.search(r"(\d+) sent, (\d+) received, ([\d.]+)% loss", out)
        self.assertIsNotNone(m, out[-500:])
        loss = float(m.group(3))
        # 10 % dropped at random: 300 probes put it between 3 and 20 % nearly always.
        self.assertGreaterEqual(loss, 3, out[-500:])
        self.assertLessEqual(loss, 20, out[-500:])
        self.assertEqual(r.returncode, 1, out[-500:])  # more than --max-loss 1
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.assertEqual(summary_value(stderr, "injected_drop"), 300 - int(m.group(2)))


if __name__ == "__main__":
    unittest.main()
