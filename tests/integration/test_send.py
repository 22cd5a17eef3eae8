"""yodel send: against yodel serve and against asyncio servers written like the tutorials."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PythonPeer, send, serve  # noqa: E402

LOCAL = "127.0.0.1:0"


def py_addr(peer):
    return "127.0.0.1:%d" % peer.port


class SendSucceeds(unittest.TestCase):
    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, "stdout %r stderr %r" % (r.stdout, r.stderr))

    def test_send_prints_the_reply_from_yodel_serve_and_exits_0(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            r = send("-c", srv.tcp.addr, "Hello There")
            self.assertEqual(srv.stop()[0], 0)
        self.assert_ok(r)
        self.assertIn("Hello There", r.stdout.decode().splitlines())

    def test_send_accepts_a_plain_host_port_address(self):
        with serve("-l", LOCAL) as srv:
            r = send("-c", "127.0.0.1:%d" % srv.tcp.port, "Hello There")
            self.assertEqual(srv.stop()[0], 0)
        self.assert_ok(r)
        self.assertIn("Hello There", r.stdout.decode().splitlines())

    def test_send_prints_the_reply_from_the_tutorial_asyncio_server(self):
        with PythonPeer(harness.PY_ECHO_SERVER) as peer:
            r = send("-c", py_addr(peer), "Hello There")
            log = peer.stop()
        self.assert_ok(r)
        self.assertIn("Hello There", r.stdout.decode().splitlines())
        # The server got the message as a line, as the tutorial's client sends it.
        self.assertIn("got Hello There", log.splitlines())

    def test_send_several_messages_gets_each_one_back(self):
        msgs = ["first message", "second one", "third"]
        with serve("-l", LOCAL, "-m", "line") as srv:
            r = send("-c", srv.tcp.addr, *msgs)
            self.assertEqual(srv.stop()[0], 0)
        self.assert_ok(r)
        lines = r.stdout.decode().splitlines()
        for m in msgs:
            self.assertIn(m, lines)

    def test_send_several_messages_to_the_tutorial_line_server(self):
        msgs = ["alpha", "beta", "gamma"]
        with PythonPeer(harness.PY_LINE_SERVER) as peer:
            r = send("-c", py_addr(peer), *msgs)
            log = peer.stop()
        self.assert_ok(r)
        for m in msgs:
            self.assertIn(m, r.stdout.decode().splitlines())
            self.assertIn("got " + m, log.splitlines())

    def test_send_ten_clients_each_send_their_own_numbered_message(self):
        with PythonPeer(harness.PY_ECHO_SERVER) as peer:
            r = send("-c", py_addr(peer), "-n", "10", "MESSAGE")
            log = peer.stop()
        self.assert_ok(r)
        got = sorted(l for l in log.splitlines() if l.startswith("got "))
        self.assertEqual(got, sorted("got MESSAGE from %d" % i for i in range(10)), log)

    def test_send_ten_clients_against_yodel_serve(self):
        with serve("-l", LOCAL, "-m", "line", "-v") as srv:
            r = send("-c", srv.tcp.addr, "-n", "10", "MESSAGE")
            status, err = srv.stop()
        self.assert_ok(r)
        self.assertEqual(status, 0)
        out = r.stdout.decode()
        for i in range(10):
            self.assertIn("MESSAGE from %d" % i, out)

    def test_send_parts_writes_then_half_closes_and_reads_until_eof(self):
        # This server answers only after the client's EOF: without the half-close send hangs.
        with PythonPeer(harness.PY_READ_TO_EOF_SERVER) as peer:
            r = send("-c", py_addr(peer), "--parts", "--timeout", "5s", "Hello There")
            log = peer.stop()
        self.assert_ok(r)
        self.assertIn("Hello There", r.stdout.decode())
        self.assertIn("got 12 bytes", log)

    def test_send_parts_against_yodel_serve_raw_mode(self):
        with serve("-l", LOCAL, "-m", "raw") as srv:
            r = send("-c", srv.tcp.addr, "--parts", "Hello There")
            self.assertEqual(srv.stop()[0], 0)
        self.assert_ok(r)
        self.assertIn("Hello There", r.stdout.decode())


    def test_send_quiet_prints_nothing_and_still_checks_the_reply(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            ok = send("-q", "-c", srv.tcp.addr, "Hello There")
            srv.stop()
        self.assert_ok(ok)
        self.assertEqual(ok.stdout, b"")
        with serve("-l", LOCAL, "-m", "upper") as srv:
            bad = send("-q", "-c", srv.tcp.addr, "Hello There")
            srv.stop()
        self.assertEqual(bad.returncode, 1)


class SendStdin(unittest.TestCase):
    def test_stdin_mode_streams_one_mebibyte_of_binary_to_stdout(self):
        payload = os.urandom(1 << 20)
        with serve("-l", LOCAL, "-m", "raw") as srv:
            r = send("-c", srv.tcp.addr, "-", input=payload, timeout=60 * harness.SLOW)
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), len(payload))
        self.assertTrue(r.stdout == payload, "stdin echo differs")

    def test_stdin_mode_half_closes_at_eof(self):
        data = b"line one\nline two\nno newline"
        with PythonPeer(harness.PY_READ_TO_EOF_SERVER) as peer:
            r = send("-c", py_addr(peer), "--timeout", "5s", "-", input=data)
            log = peer.stop()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data)
        self.assertIn("got %d bytes" % len(data), log)

    def test_stdin_mode_with_upper_mode_prints_what_came_back(self):
        with serve("-l", LOCAL, "-m", "upper") as srv:
            r = send("-c", srv.tcp.addr, "-", input=b"shout this\n")
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.stdout, b"SHOUT THIS\n")


class SendFails(unittest.TestCase):
    def assert_runtime_failure(self, r):
        self.assertEqual(r.returncode, 1, "stdout %r stderr %r" % (r.stdout, r.stderr))
        self.assertNotEqual(r.stderr.strip(), b"", "a failure should say why on stderr")

    def test_send_exits_1_when_the_reply_differs(self):
        with PythonPeer(harness.PY_WRONG_SERVER) as peer:
            r = send("-c", py_addr(peer), "--timeout", "5s", "Hello There")
        self.assert_runtime_failure(r)

    def test_send_exits_1_when_the_server_upper_cases(self):
        with serve("-l", LOCAL, "-m", "upper") as srv:
            r = send("-c", srv.tcp.addr, "Hello There")
            self.assertEqual(srv.stop()[0], 0)
        self.assert_runtime_failure(r)

    def test_send_exits_1_when_the_connection_is_refused(self):
        # A bound socket that does not listen: connecting to it is refused.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            r = send("-c", "127.0.0.1:%d" % port, "--timeout", "5s", "Hello There")
        self.assert_runtime_failure(r)

    def test_send_exits_1_on_timeout_when_the_server_never_answers(self):
        with PythonPeer(harness.PY_SILENT_SERVER) as peer:
            t0 = time.monotonic()
            r = send("-c", py_addr(peer), "--timeout", "500ms", "Hello There", timeout=15)
            elapsed = time.monotonic() - t0
        self.assert_runtime_failure(r)
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 10)

    def test_send_exits_1_when_the_server_closes_without_answering(self):
        with serve("-l", LOCAL, "-m", "line", "--once") as srv:
            # Two messages on one connection: the one-shot server closes after the first.
            r = send("-c", srv.tcp.addr, "--timeout", "5s", "first", "second")
            self.assertEqual(srv.stop()[0], 0)
        self.assert_runtime_failure(r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
