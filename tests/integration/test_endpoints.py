"""Endpoints: UDP, IPv6, host names, Unix sockets, several listeners, and yodel send to each."""

import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PythonPeer, TempDir, send, serve  # noqa: E402


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = have_ipv6_loopback()


class Udp(unittest.TestCase):
    def test_udp_echoes_each_datagram_as_one_datagram(self):
        with serve("-l", "udp://127.0.0.1:0") as srv:
            li = srv.udp
            self.assertRegex(li.line, r"^listening on udp://127\.0\.0\.1:\d+$")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(harness.IO_TIMEOUT)
                msgs = [b"one", b"two\n", b"\x00binary\xff", b"x" * 1000]
                for m in msgs:
                    s.sendto(m, li.sockaddr)
                for m in msgs:
                    # Loopback keeps datagram order; each comes back whole and alone.
                    got, src = s.recvfrom(65536)
                    self.assertEqual(got, m)
                    self.assertEqual(src, li.sockaddr)
            self.assertEqual(srv.stop()[0], 0)

    def test_udp_upper_mode_uppercases_the_datagram(self):
        with serve("-l", "udp://127.0.0.1:0", "-m", "upper") as srv:
            got = harness.udp_exchange(srv.udp, b"hello udp \xe9\n")
            self.assertEqual(got, b"HELLO UDP \xe9\n")
            self.assertEqual(srv.stop()[0], 0)

    def test_udp_echoes_a_60_kib_datagram_whole(self):
        data = os.urandom(60 * 1024)
        with serve("-l", "udp://127.0.0.1:0") as srv:
            self.assertEqual(harness.udp_exchange(srv.udp, data), data)
            self.assertEqual(srv.stop()[0], 0)

    def test_udp_drops_datagrams_from_low_source_ports_and_keeps_serving(self):
        if os.geteuid() != 0:
            self.skipTest("binding source port 1000 needs root")
        # One thread: with several, the kernel may hand the two source ports to different
        # sockets, and the ordering argument below would not hold.
        with serve("-l", "udp://127.0.0.1:0", "--threads", "1") as srv:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as low:
                low.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    low.bind(("127.0.0.1", 1000))
                except OSError as e:
                    self.skipTest("cannot bind UDP 127.0.0.1:1000: %s" % e)
                low.settimeout(0.5)
                for _ in range(3):
                    low.sendto(b"from port 1000", srv.udp.sockaddr)
                # An ordinary client sent after them is answered, so the server has handled
                # the low-port datagrams (same socket, in order) and kept serving.
                self.assertEqual(harness.udp_exchange(srv.udp, b"normal"), b"normal")
                with self.assertRaises(socket.timeout):
                    low.recvfrom(65536)
            status, err = srv.stop()
        self.assertEqual(status, 0, err)
        # The summary names each error kind with its count: "... udp_low_port=3 ...".
        self.assertRegex(err, r"udp_low_port\W{0,2}3\b")


@unittest.skipUnless(IPV6, "no IPv6 loopback")
class Ipv6(unittest.TestCase):
    def test_ipv6_loopback_tcp_echo(self):
        with serve("-l", "[::1]:0") as srv:
            li = srv.tcp
            self.assertEqual(li.host, "::1")
            self.assertRegex(li.line, r"^listening on tcp://\[::1\]:\d+$")
            self.assertEqual(harness.exchange(li, b"over v6"), b"over v6")
            self.assertEqual(srv.stop()[0], 0)

    def test_ipv6_loopback_udp_echo(self):
        with serve("-l", "udp://[::1]:0") as srv:
            self.assertEqual(harness.udp_exchange(srv.udp, b"v6 datagram"), b"v6 datagram")
            self.assertEqual(srv.stop()[0], 0)

    def test_send_to_an_ipv6_address(self):
        with serve("-l", "[::1]:0", "-m", "line") as srv:
            r = send("-c", "[::1]:%d" % srv.tcp.port, "Hello There")
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Hello There", r.stdout.decode().splitlines())


class HostNames(unittest.TestCase):
    def test_localhost_binds_every_address_it_resolves_to_on_one_port(self):
        resolved = {ai[4][0] for ai in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
        if not IPV6:
            resolved.discard("::1")
        # SPEC: localhost is 127.0.0.1 and ::1; this host's resolver may list only one of them.
        allowed = resolved | ({"127.0.0.1", "::1"} if IPV6 else {"127.0.0.1"})
        with serve("-l", "localhost:0", expect=len(resolved)) as srv:
            # A second line may follow the ones the resolver promises; read what was printed.
            hosts = {li.host for li in srv.listeners}
            self.assertTrue(resolved <= hosts, (resolved, srv.listeners))
            self.assertTrue(hosts <= allowed, srv.listeners)
            self.assertEqual(len({li.port for li in srv.listeners}), 1, srv.listeners)
            for li in srv.listeners:
                msg = b"via " + li.host.encode()
                self.assertEqual(harness.exchange(li, msg), msg)
            self.assertEqual(srv.stop()[0], 0)

    @unittest.skipUnless(IPV6, "no IPv6 loopback")
    def test_localhost_listens_on_both_127_0_0_1_and_ipv6_loopback(self):
        with serve("-l", "localhost:0", expect=2) as srv:
            hosts = sorted(li.host for li in srv.listeners)
            self.assertEqual(hosts, ["127.0.0.1", "::1"])
            self.assertEqual(len({li.port for li in srv.listeners}), 1, srv.listeners)
            for li in srv.listeners:
                self.assertEqual(harness.exchange(li, b"both"), b"both")
            self.assertEqual(srv.stop()[0], 0)


class UnixSockets(unittest.TestCase):
    def test_unix_socket_echoes_to_socat(self):
        harness.require_tool(self, "socat")
        with TempDir() as d:
            path = os.path.join(d, "echo.sock")
            with serve("-l", "unix:" + path, "-m", "line") as srv:
                self.assertEqual(srv.unix.line, "listening on unix:" + path)
                r = harness.socat("-t", "5", "-", "UNIX-CONNECT:" + path, input=b"over unix\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, b"over unix\n")
                self.assertEqual(srv.stop()[0], 0)

    def test_unix_socket_echoes_to_nc(self):
        harness.require_tool(self, "nc")
        with TempDir() as d:
            path = os.path.join(d, "echo.sock")
            with serve("-l", "unix:" + path, "-m", "upper") as srv:
                r = harness.nc("-N", "-U", path, input=b"netcat over unix\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, b"NETCAT OVER UNIX\n")
                self.assertEqual(srv.stop()[0], 0)

    def test_stale_unix_socket_file_is_replaced(self):
        with TempDir() as d:
            path = os.path.join(d, "stale.sock")
            # A socket file nobody listens on, as a crashed server leaves behind.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()
            self.assertTrue(os.path.exists(path))
            with serve("-l", "unix:" + path) as srv:
                self.assertEqual(harness.exchange(srv.unix, b"fresh"), b"fresh")
                self.assertEqual(srv.stop()[0], 0)

    def test_live_unix_socket_is_not_replaced(self):
        with TempDir() as d:
            path = os.path.join(d, "live.sock")
            with serve("-l", "unix:" + path) as first:
                r = harness.yodel("serve", "-l", "unix:" + path, timeout=harness.START_TIMEOUT)
                err = r.stderr.decode()
                self.assertEqual(r.returncode, 1, err)
                self.assertEqual(r.stdout, b"")
                self.assertIn(path, err)
                self.assertTrue(re.search(r"in use|already|exists|listening", err, re.I), err)
                # The first server still owns the path and still answers.
                self.assertEqual(harness.exchange(first.unix, b"still mine"), b"still mine")
                self.assertEqual(first.stop()[0], 0)

    def test_unix_socket_file_is_removed_on_shutdown(self):
        with TempDir() as d:
            path = os.path.join(d, "gone.sock")
            with serve("-l", "unix:" + path) as srv:
                self.assertTrue(os.path.exists(path))
                self.assertEqual(srv.stop()[0], 0)
            self.assertFalse(os.path.exists(path))

    def test_send_to_a_unix_socket(self):
        with TempDir() as d:
            path = os.path.join(d, "send.sock")
            with serve("-l", "unix:" + path, "-m", "line") as srv:
                r = send("-c", "unix:" + path, "Hello There")
                self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Hello There", r.stdout.decode().splitlines())


class SeveralListeners(unittest.TestCase):
    def test_tcp_udp_unix_and_ipv6_listeners_in_one_process_are_all_served(self):
        with TempDir() as d:
            path = os.path.join(d, "multi.sock")
            args = ["-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0", "-l", "unix:" + path]
            if IPV6:
                args += ["-l", "[::1]:0"]
            with serve(*args, "-m", "upper") as srv:
                self.assertEqual(len(srv.listeners), len(args) // 2)
                v4 = srv.find("tcp", socket.AF_INET)
                self.assertEqual(harness.exchange(v4, b"tcp\n"), b"TCP\n")
                self.assertEqual(harness.udp_exchange(srv.udp, b"udp\n"), b"UDP\n")
                self.assertEqual(harness.exchange(srv.unix, b"unix\n"), b"UNIX\n")
                if IPV6:
                    v6 = srv.find("tcp", socket.AF_INET6)
                    self.assertEqual(harness.exchange(v6, b"six\n"), b"SIX\n")
                self.assertEqual(srv.stop()[0], 0)
            self.assertFalse(os.path.exists(path))


class SendUdp(unittest.TestCase):
    def test_send_to_a_udp_address_gets_the_datagram_back(self):
        with serve("-l", "udp://127.0.0.1:0") as srv:
            r = send("-c", srv.udp.addr, "Hello There")
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Hello There", r.stdout.decode().splitlines())

    def test_send_udp_option_with_a_host_port_address(self):
        with serve("-l", "udp://127.0.0.1:0", "-m", "line") as srv:
            r = send("--udp", "-c", "127.0.0.1:%d" % srv.udp.port, "one", "two")
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(), ["one", "two"])

    def test_send_udp_exits_1_when_the_server_upper_cases(self):
        with serve("-l", "udp://127.0.0.1:0", "-m", "upper") as srv:
            r = send("-c", srv.udp.addr, "--timeout", "2s", "quiet please")
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))

    def test_send_udp_retries_then_reports_loss_when_nothing_answers(self):
        with PythonPeer(harness.PY_SILENT_UDP) as peer:
            t0 = time.monotonic()
            r = send("-c", "udp://127.0.0.1:%d" % peer.port, "--timeout", "300ms",
                     "--retries", "3", "Hello There", timeout=20)
            elapsed = time.monotonic() - t0
            log = peer.stop().splitlines()
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))
        self.assertIn(b"lost", r.stderr)
        # Three tries, each waiting out the timeout.
        self.assertIn("datagram 3", log)
        self.assertNotIn("datagram 4", log)
        self.assertGreaterEqual(elapsed, 0.85)

if __name__ == "__main__":
    unittest.main(verbosity=2)
