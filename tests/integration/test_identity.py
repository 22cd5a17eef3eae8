"""yodel serve says who answered and what it saw: --banner, --prefix and -m info, over TCP, UDP
and Unix sockets, with one thread and with several."""

import json
import os
import socket
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import serve  # noqa: E402

LOCAL = "127.0.0.1:0"
UDP_LOCAL = "udp://127.0.0.1:0"
# One thread, and several (the default on a machine with more than one CPU).
THREADS = ("1", "2")


def sockname(sock):
    host, port = sock.getsockname()[:2]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Banner(unittest.TestCase):
    def test_banner_is_sent_before_the_client_says_anything(self):
        for threads in THREADS:
            with self.subTest(threads=threads):
                with serve("-l", LOCAL, "--threads", threads,
                           "--banner", "hello from {hostname}\\n") as srv:
                    with harness.connect(srv.tcp) as s:
                        want = ("hello from %s\n" % socket.gethostname()).encode()
                        self.assertEqual(harness.recv_exactly(s, len(want)), want)
                    self.assertEqual(srv.stop()[0], 0)

    def test_banner_names_the_client_as_the_server_saw_it(self):
        with serve("-l", LOCAL, "--banner", "you are {peer}\\n") as srv:
            with harness.connect(srv.tcp) as s:
                want = ("you are %s\n" % sockname(s)).encode()
                self.assertEqual(harness.recv_exactly(s, len(want)), want)

    def test_banner_comes_before_the_echo_in_line_mode(self):
        with serve("-l", LOCAL, "-m", "line", "--banner", "pid {pid}\\n") as srv:
            banner = ("pid %d\n" % srv.proc.pid).encode()
            got = harness.exchange(srv.tcp, b"one\ntwo\n")
            self.assertEqual(got, banner + b"one\ntwo\n")

    def test_banner_is_read_by_socat(self):
        harness.require_tool(self, "socat")
        with serve("-l", LOCAL, "--banner", "hi {{there}}\\r\\n") as srv:
            r = harness.socat("-T", "5", "-", "TCP:127.0.0.1:%d" % srv.tcp.port, input=b"")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"hi {there}\r\n")

    def test_banner_is_read_by_nc(self):
        harness.require_tool(self, "nc")
        with serve("-l", LOCAL, "-m", "line", "--banner", "banner {listener}\\n") as srv:
            # nc sends the line, and the server's close after our EOF ends nc.
            r = harness.nc("-q", "1", "127.0.0.1", srv.tcp.port, input=b"ping\n")
            if r.returncode != 0 and b"invalid option" in r.stderr:
                self.skipTest("this nc has no -q")
            want = ("banner %s\nping\n" % srv.tcp.addr).encode()
            self.assertEqual(r.stdout, want)

    def test_banner_is_sent_on_unix_sockets(self):
        with harness.TempDir() as d:
            path = os.path.join(d, "s")
            with serve("-l", "unix:" + path, "--banner", "{peer} on {listener}\\n") as srv:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(harness.IO_TIMEOUT)
                    s.connect(path)
                    want = ("unix on unix:%s\n" % path).encode()
                    self.assertEqual(harness.recv_exactly(s, len(want)), want)

    def test_udp_listener_sends_no_banner(self):
        with serve("-l", UDP_LOCAL, "--banner", "hello\\n") as srv:
            self.assertEqual(harness.udp_exchange(srv.udp, b"x"), b"x")


class Prefix(unittest.TestCase):
    def test_lines_come_back_prefixed_with_hostname_and_the_clients_own_address(self):
        for threads in THREADS:
            with self.subTest(threads=threads):
                with serve("-l", LOCAL, "-m", "line", "--threads", threads,
                           "--prefix", "{hostname} {peer}: ") as srv:
                    with harness.connect(srv.tcp) as s:
                        prefix = ("%s %s: " % (socket.gethostname(), sockname(s))).encode()
                        s.sendall(b"one\ntwo\n")
                        want = prefix + b"one\n" + prefix + b"two\n"
                        self.assertEqual(harness.recv_exactly(s, len(want)), want)
                    self.assertEqual(srv.stop()[0], 0)

    def test_each_connection_gets_its_own_peer(self):
        with serve("-l", LOCAL, "-m", "line", "--prefix", "[{peer}] ") as srv:
            with harness.connect(srv.tcp) as a, harness.connect(srv.tcp) as b:
                for s in (a, b, a):
                    s.sendall(b"x\n")
                    want = ("[%s] x\n" % sockname(s)).encode()
                    self.assertEqual(harness.recv_exactly(s, len(want)), want)

    def test_upper_mode_upper_cases_the_line_not_the_prefix(self):
        with serve("-l", LOCAL, "-m", "upper", "--prefix", "pid {pid} said: ") as srv:
            got = harness.exchange(srv.tcp, b"hello\n")
            self.assertEqual(got, ("pid %d said: HELLO\n" % srv.proc.pid).encode())

    def test_prefix_names_local_address_and_listener(self):
        with serve("-l", LOCAL, "-m", "line", "--prefix", "{local} {listener} ") as srv:
            got = harness.exchange(srv.tcp, b"x\n")
            self.assertEqual(got, ("127.0.0.1:%d %s x\n" % (srv.tcp.port, srv.tcp.addr)).encode())

    def test_prefix_of_a_plain_connection_has_empty_proxy_and_tls_subject(self):
        with serve("-l", LOCAL, "-m", "line", "--prefix", "<{proxy}|{tls_subject}> ") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"x\n"), b"<|> x\n")

    def test_datagrams_come_back_prefixed_with_their_sender(self):
        for threads in THREADS:
            with self.subTest(threads=threads):
                with serve("-l", UDP_LOCAL, "--threads", threads,
                           "--prefix", "{peer} via {listener}: ") as srv:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.bind(("127.0.0.1", 0))
                        s.settimeout(harness.IO_TIMEOUT)
                        for payload in (b"one", b"two\n", b""):
                            s.sendto(payload, srv.udp.sockaddr)
                            reply, _ = s.recvfrom(65536)
                            want = ("%s via %s: " % (sockname(s), srv.udp.addr)).encode()
                            self.assertEqual(reply, want + payload)

    def test_prefix_without_per_peer_fields_is_put_on_every_datagram(self):
        with serve("-l", UDP_LOCAL, "-m", "upper", "--prefix", "{local}> ") as srv:
            want = ("127.0.0.1:%d> ABC" % srv.udp.port).encode()
            for _ in range(3):
                self.assertEqual(harness.udp_exchange(srv.udp, b"abc"), want)

    def test_prefix_from_an_environment_variable(self):
        with mock.patch.dict(os.environ, {"POD_NAME": "pod-a"}):
            srv = serve("-l", LOCAL, "-l", UDP_LOCAL, "-m", "line",
                        "--prefix", "{env:POD_NAME}: ")
        with srv:
            self.assertEqual(harness.exchange(srv.tcp, b"hi\n"), b"pod-a: hi\n")
            self.assertEqual(harness.udp_exchange(srv.udp, b"hi"), b"pod-a: hi")

    def test_unset_environment_variable_is_empty(self):
        with mock.patch.dict(os.environ):
            os.environ.pop("YODEL_TEST_UNSET", None)
            srv = serve("-l", LOCAL, "-m", "line", "--prefix", "<{env:YODEL_TEST_UNSET}> ")
        with srv:
            self.assertEqual(harness.exchange(srv.tcp, b"hi\n"), b"<> hi\n")

    def test_escapes_and_braces_in_a_prefix(self):
        with serve("-l", LOCAL, "-m", "line", "--prefix", "{{pid}}\\t\\\\ ") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"x\n"), b"{pid}\t\\ x\n")

    def test_raw_mode_with_only_udp_listeners_prefixes_datagrams(self):
        with serve("-l", UDP_LOCAL, "-m", "raw", "--prefix", "> ") as srv:
            self.assertEqual(harness.udp_exchange(srv.udp, b"x"), b"> x")

    def test_delayed_replies_keep_their_prefix(self):
        with serve("-l", LOCAL, "-m", "line", "--delay", "20ms", "--prefix", "p: ") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"a\nb\n"), b"p: a\np: b\n")


class Info(unittest.TestCase):
    def read_json_line(self, sock):
        buf = b""
        while not buf.endswith(b"\n"):
            buf += harness.recv_exactly(sock, 1)
        return json.loads(buf)

    def test_info_answers_each_line_with_json_naming_peer_local_and_listener(self):
        for threads in THREADS:
            with self.subTest(threads=threads):
                with serve("-l", LOCAL, "-m", "info", "--threads", threads) as srv:
                    with harness.connect(srv.tcp) as s:
                        s.sendall(b"first\nsecond line\n")
                        one, two = self.read_json_line(s), self.read_json_line(s)
                        self.assertEqual(one["peer"], sockname(s))
                        self.assertEqual(one["local"], "127.0.0.1:%d" % srv.tcp.port)
                        self.assertEqual(one["listener"], srv.tcp.addr)
                        self.assertEqual(one["hostname"], socket.gethostname())
                        self.assertEqual(one["pid"], srv.proc.pid)
                        self.assertIsNone(one["proxy"])
                        self.assertIsNone(one["tls"])
                        self.assertIsNone(one["tls_subject"])
                        self.assertEqual((one["messages"], one["bytes"]), (1, 6))
                        self.assertEqual((two["messages"], two["bytes"]), (2, 12))
                    self.assertEqual(srv.stop()[0], 0)

    def test_info_answers_each_datagram(self):
        with serve("-l", UDP_LOCAL, "-m", "info") as srv:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                s.settimeout(harness.IO_TIMEOUT)
                s.sendto(b"12345", srv.udp.sockaddr)
                reply, _ = s.recvfrom(65536)
                self.assertTrue(reply.endswith(b"}\n"), reply)
                info = json.loads(reply)
                self.assertEqual(info["peer"], sockname(s))
                self.assertEqual(info["local"], "127.0.0.1:%d" % srv.udp.port)
                self.assertEqual(info["listener"], srv.udp.addr)
                self.assertEqual(info["bytes"], 5)
                self.assertEqual(info["messages"], 1)

    def test_info_names_the_ipv6_socket_a_client_came_through(self):
        if not has_ipv6_loopback():
            self.skipTest("no ::1")
        with serve("-l", LOCAL, "-l", "[::1]:0", "-m", "info") as srv:
            v6 = srv.find("tcp", socket.AF_INET6)
            with harness.connect(v6) as s:
                s.sendall(b"x\n")
                info = self.read_json_line(s)
                self.assertEqual(info["listener"], v6.addr)
                self.assertEqual(info["local"], "[::1]:%d" % v6.port)
                self.assertEqual(info["peer"], sockname(s))

    def test_info_of_a_host_name_listener_names_the_socket_of_each_family(self):
        if not has_ipv6_loopback():
            self.skipTest("no ::1")
        # localhost is always 127.0.0.1 and ::1: one server, two sockets.
        with serve("-l", "localhost:0", "-m", "info", expect=2) as srv:
            for li in srv.listeners:
                with harness.connect(li) as s:
                    s.sendall(b"x\n")
                    info = self.read_json_line(s)
                    self.assertEqual(info["listener"], li.addr)
                    self.assertEqual(info["peer"], sockname(s))

    def test_info_of_a_udp_host_name_listener_names_the_socket_of_each_family(self):
        if not has_ipv6_loopback():
            self.skipTest("no ::1")
        with serve("-l", "udp://localhost:0", "-m", "info", expect=2) as srv:
            for li in srv.listeners:
                with socket.socket(li.family, socket.SOCK_DGRAM) as s:
                    s.bind((li.host, 0))
                    s.settimeout(harness.IO_TIMEOUT)
                    s.sendto(b"x", li.sockaddr)
                    info = json.loads(s.recvfrom(65536)[0])
                    self.assertEqual(info["listener"], li.addr)
                    self.assertEqual(info["peer"], sockname(s))

    def test_info_line_is_answered_for_a_final_line_without_newline(self):
        with serve("-l", LOCAL, "-m", "info") as srv:
            got = harness.exchange(srv.tcp, b"no newline")
            self.assertEqual(json.loads(got)["bytes"], 10)


class BadTemplates(unittest.TestCase):
    def assert_usage_error(self, *args, names):
        r = harness.yodel("serve", "-l", LOCAL, *args, timeout=harness.START_TIMEOUT)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 2, err)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(len(harness.stderr_lines(err)), 1, err)
        for name in names:
            self.assertIn(name, err)

    def test_unknown_field_exits_2_naming_the_field(self):
        self.assert_usage_error("-m", "line", "--prefix", "{hostnme} ",
                                names=("--prefix", "unknown field {hostnme}"))

    def test_unterminated_field_in_banner_exits_2(self):
        self.assert_usage_error("--banner", "hello {peer", names=("--banner", "unterminated {peer"))

    def test_bad_environment_variable_name_exits_2(self):
        self.assert_usage_error("-m", "line", "--prefix", "{env:POD-NAME}",
                                names=("--prefix", "{env:POD-NAME}"))

    def test_unknown_escape_exits_2(self):
        self.assert_usage_error("--banner", "a\\qb", names=("--banner", "\\q"))

    def test_prefix_in_raw_mode_on_a_stream_listener_exits_2(self):
        self.assert_usage_error("--prefix", "x", names=("--prefix", "raw"))

    def test_prefix_with_info_mode_exits_2(self):
        self.assert_usage_error("-m", "info", "--prefix", "x", names=("--prefix", "info"))

    def test_unknown_mode_names_info_among_the_modes(self):
        self.assert_usage_error("-m", "whoami", names=("-m", "whoami", "info"))


if __name__ == "__main__":
    unittest.main()
