"""yodel send: regression tests for the defects of 2026-12-01 (attack #9, #10, #15, #22;
newcomer F2, F12, F14, F15), each against a real `yodel serve` or a small misbehaving server."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PythonPeer, send, serve  # noqa: E402

LOCAL = "127.0.0.1:0"
BIG = 20 * 1000 * 1000  # the newcomer's 20 MB file (F2)


def py_addr(peer, scheme=""):
    return "%s127.0.0.1:%d" % (scheme, peer.port)


def send_file(args, path, timeout=harness.CMD_TIMEOUT):
    """Runs `yodel send ARGS` with standard input a regular file (not a pipe); the echo goes to
    a temporary file. Returns (returncode, stdout bytes, stderr text)."""
    with open(path, "rb") as stdin, tempfile.TemporaryFile() as out:
        try:
            p = subprocess.run(
                [harness.YODEL_BIN, "send"] + [str(a) for a in args], stdin=stdin, stdout=out,
                stderr=subprocess.PIPE, timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError("yodel send %s < FILE did not finish within %.0fs"
                                 % (" ".join(args), timeout)) from e
        out.seek(0)
        return p.returncode, out.read(), p.stderr.decode(errors="replace")


def write_temp(data):
    f = tempfile.NamedTemporaryFile(prefix="yodel-send-", delete=False)
    f.write(data)
    f.close()
    return f.name


def run_with_open_stdin(p, data, timeout=harness.CMD_TIMEOUT):
    """Writes data to p's standard input and waits for p to exit with its input still open.
    Returns (stdout, stderr); kills p if it does not exit within timeout."""
    try:
        p.stdin.write(data)
        p.stdin.flush()
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("yodel send did not exit within %.0fs" % timeout) from e
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdin.close()
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    return out, err


def unused_udp_port():
    """A UDP port with nothing bound to it (bound once to get a number, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A UDP echo server that sends each reply DELAY seconds late: later than send's --timeout, so
# send retries and the echo of the retry arrives while the next message is outstanding.
PY_SLOW_UDP = r"""
import socket, threading
DELAY = %f
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(65536)
    threading.Timer(DELAY, s.sendto, (d, a)).start()
"""

# A UDP server that echoes every datagram twice.
PY_TWICE_UDP = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(65536)
    s.sendto(d, a)
    s.sendto(d, a)
"""

# Accepts and never reads: the client's queue can never drain.
PY_NEVER_READS = r"""
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
"""

# Answers each line with that line followed by a long tail: a reply longer than the message.
PY_LONG_REPLY = r"""
import asyncio
async def handle(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line.rstrip(b"\n") + b" and then " + b"x" * 5000 + b"\n")
        await writer.drain()
    writer.close()
""" + harness._serve_on_port_0("handle")

# Answers 'MESSAGE from i' later the smaller i is, so replies arrive in reverse client order.
PY_REVERSE_ORDER = r"""
import asyncio
async def handle(reader, writer):
    line = await reader.readline()
    i = int(line.split()[-1])
    await asyncio.sleep((5 - i) * 0.1)
    writer.write(line)
    await writer.drain()
    writer.close()
""" + harness._serve_on_port_0("handle")


class StreamEnds(unittest.TestCase):
    """attack #9: '-' must fail when the server does not echo everything."""

    def test_stdin_mode_exits_1_when_the_server_echoes_part_of_a_file_and_closes(self):
        path = write_temp(b"one\ntwo\nthree\n")
        try:
            with serve("-l", LOCAL, "-m", "line", "--once") as srv:
                rc, out, err = send_file(["-c", srv.tcp.addr, "-"], path)
                srv.stop()
        finally:
            os.unlink(path)
        self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
        self.assertEqual(out, b"one\n")
        self.assertIn("closed the connection after echoing 4 of 14 bytes", err)

    def test_stdin_mode_exits_1_when_the_server_closes_before_the_input_ends(self):
        with serve("-l", LOCAL, "-m", "line", "--once") as srv:
            p = subprocess.Popen([harness.YODEL_BIN, "send", "-c", srv.tcp.addr, "-"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            # The one-shot server answers the first line and closes; send must say so without
            # waiting for the rest of the input (standard input stays open).
            out, err = run_with_open_stdin(p, b"one\ntwo\nthree\n")
            srv.stop()
        err = err.decode()
        self.assertEqual(p.returncode, 1, "stdout %r stderr %r" % (out, err))
        self.assertIn("closed the connection before the end of the input", err)

    def test_stdin_mode_does_not_blame_standard_input_for_its_own_abort(self):
        with serve("-l", LOCAL, "-m", "line", "--once") as srv:
            p = subprocess.Popen([harness.YODEL_BIN, "send", "-c", srv.tcp.addr, "-"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            out, err = run_with_open_stdin(p, b"one\ntwo\n")
            srv.stop()
        self.assertNotIn(b"standard input", err)
        self.assertNotIn(b"software caused connection abort", err)
        self.assertEqual(len(harness.stderr_lines(err.decode())), 1, err)


class UdpReplies(unittest.TestCase):
    """attack #10: an echo of an earlier datagram is not the reply to the current one."""

    def test_udp_ignores_the_late_echo_of_a_retried_datagram(self):
        with PythonPeer(PY_SLOW_UDP % 0.6) as peer:
            r = send("--udp", "-c", py_addr(peer), "--timeout", "400ms", "alpha", "beta")
        self.assertEqual(r.returncode, 0, "stdout %r stderr %r" % (r.stdout, r.stderr))
        self.assertEqual(r.stdout, b"alpha\nbeta\n")
        self.assertIn(b"late or duplicate", r.stderr)

    def test_udp_ignores_a_second_echo_of_the_same_datagram(self):
        with PythonPeer(PY_TWICE_UDP) as peer:
            r = send("--udp", "-c", py_addr(peer), "--timeout", "2s", "alpha", "beta", "gamma")
        self.assertEqual(r.returncode, 0, "stdout %r stderr %r" % (r.stdout, r.stderr))
        self.assertEqual(r.stdout, b"alpha\nbeta\ngamma\n")

    def test_udp_to_a_name_that_never_answers_reports_each_loss(self):
        # A name keeps unanswered datagrams in the library (to resend to its next address):
        # send must still close at once when it gives up, never leave the socket to the end.
        with PythonPeer(harness.PY_SILENT_UDP) as peer:
            r = send("-c", "udp://localhost:%d" % peer.port, "--timeout", "200ms",
                     "--retries", "2", "hello", "again")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(harness.stderr_lines(r.stderr.decode()), [
            "yodel send: no reply to a datagram after every retry",
            "yodel send: no reply to a datagram after every retry",
            "yodel send: 2 datagram(s) lost",
        ])


class StandardOutput(unittest.TestCase):
    """attack #15: a reply that cannot be written is a failure."""

    def run_to_dev_full(self, args, stdin):
        with open("/dev/full", "wb") as full:
            return subprocess.run([harness.YODEL_BIN, "send"] + args, stdin=stdin, stdout=full,
                                  stderr=subprocess.PIPE, timeout=harness.CMD_TIMEOUT)

    def test_send_exits_1_when_standard_output_is_full(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            r = self.run_to_dev_full(["-c", srv.tcp.addr, "hello"], subprocess.DEVNULL)
            srv.stop()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"yodel send: writing standard output: No space left on device", r.stderr)

    def test_stdin_mode_exits_1_when_standard_output_is_full(self):
        path = write_temp(b"abc\n")
        try:
            with serve("-l", LOCAL, "-m", "line") as srv, open(path, "rb") as stdin:
                r = self.run_to_dev_full(["-c", srv.tcp.addr, "-"], stdin)
                srv.stop()
        finally:
            os.unlink(path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"yodel send: writing standard output: No space left on device", r.stderr)


class OversizedDatagrams(unittest.TestCase):
    """attack #22: a message that cannot be one datagram is said so, never retried."""

    def test_udp_message_longer_than_a_datagram_is_a_usage_error(self):
        r = send("--udp", "-c", "127.0.0.1:9", "a" * 70000)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"65507", r.stderr)
        self.assertEqual(len(harness.stderr_lines(r.stderr.decode())), 1, r.stderr)

    def test_udp_message_too_long_at_send_time_fails_at_once(self):
        # 'localhost' could be IPv6 (65527 bytes fit), so the size is only known at send time.
        infos = socket.getaddrinfo("localhost", 0, 0, socket.SOCK_DGRAM)
        if not infos or infos[0][0] != socket.AF_INET:
            self.skipTest("localhost does not resolve to IPv4 first")
        with serve("-l", "udp://127.0.0.1:0", "-q") as srv:
            t0 = time.monotonic()
            r = send("-c", "udp://localhost:%d" % srv.udp.port, "--timeout", "2s", "a" * 65515)
            elapsed = time.monotonic() - t0
            srv.stop()
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = harness.stderr_lines(r.stderr.decode())
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("message too long for a datagram", lines[0])
        self.assertLess(elapsed, 1.5)


class LargeStreams(unittest.TestCase):
    """newcomer F2: 20 MB from a regular file, and a stalled stream bounded by --timeout."""

    @classmethod
    def setUpClass(cls):
        cls.raw = write_temp(os.urandom(BIG))
        line = b"The quick brown fox jumps over the lazy dog, %d times.\n"
        text = b"".join(line % i for i in range(BIG // 50))
        cls.text = write_temp(text)

    @classmethod
    def tearDownClass(cls):
        os.unlink(cls.raw)
        os.unlink(cls.text)

    def stream(self, mode, path):
        with serve("-l", LOCAL, "-m", mode) as srv:
            rc, out, err = send_file(["-c", srv.tcp.addr, "-"], path, timeout=60 * harness.SLOW)
            srv.stop()
        with open(path, "rb") as f:
            want = f.read()
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out), len(want))
        self.assertTrue(out == want, "the echo differs from the file")

    def test_stdin_mode_echoes_20_mb_from_a_regular_file_in_raw_mode(self):
        self.stream("raw", self.raw)

    def test_stdin_mode_echoes_20_mb_from_a_regular_file_in_line_mode(self):
        self.stream("line", self.text)

    def test_stdin_mode_times_out_when_the_server_never_reads(self):
        with PythonPeer(PY_NEVER_READS) as peer:
            t0 = time.monotonic()
            rc, out, err = send_file(["-c", py_addr(peer), "--timeout", "1s", "-"], self.raw,
                                     timeout=15)
            elapsed = time.monotonic() - t0
        self.assertEqual(rc, 1, err)
        self.assertIn("timed out", err)
        self.assertEqual(len(harness.stderr_lines(err)), 1, err)
        self.assertLess(elapsed, 10)


class ExpectAndNoCheck(unittest.TestCase):
    """newcomer F12: servers that do not echo."""

    def test_expect_accepts_the_upper_cased_reply(self):
        with serve("-l", LOCAL, "-m", "upper") as srv:
            r = send("-c", srv.tcp.addr, "--expect", "HELLO THERE", "hello there")
            srv.stop()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"HELLO THERE\n")

    def test_expect_fails_when_the_reply_is_not_the_expected_text(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            r = send("-c", srv.tcp.addr, "--expect", "HELLO THERE", "hello there")
            srv.stop()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"expected 12 bytes 'HELLO THERE\\n', got 12 bytes 'hello there\\n'",
                      r.stderr)

    def test_no_check_prints_the_reply_and_exits_0(self):
        with serve("-l", LOCAL, "-m", "upper") as srv:
            r = send("-c", srv.tcp.addr, "--no-check", "hello there", "again")
            srv.stop()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"HELLO THERE\nAGAIN\n")

    def test_a_mismatch_shows_what_came_back(self):
        with serve("-l", LOCAL, "-m", "upper") as srv:
            r = send("-c", srv.tcp.addr, "hello there")
            srv.stop()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"reply differs: sent 12 bytes 'hello there\\n', "
                      b"got 12 bytes 'HELLO THERE\\n'", r.stderr)

    def test_a_reply_longer_than_the_message_is_shown_cut_short(self):
        with PythonPeer(PY_LONG_REPLY) as peer:
            r = send("-c", py_addr(peer), "hello")
        self.assertEqual(r.returncode, 1, r.stderr)
        err = r.stderr.decode()
        self.assertIn("the reply is longer than the message sent", err)
        self.assertIn("'hello and then xxx", err)
        self.assertLess(max(len(l) for l in err.splitlines()), 300, err)

    def test_expect_with_standard_input_is_a_usage_error(self):
        r = send("--expect", "X", "-")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"--expect", r.stderr)

    def test_help_describes_expect_and_no_check(self):
        r = send("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--expect TEXT", r.stdout)
        self.assertIn(b"--no-check", r.stdout)


class Errors(unittest.TestCase):
    """newcomer F14: errors name the address; no noise after our own abort."""

    def test_a_refused_connection_names_the_address(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            r = send("-c", "127.0.0.1:%d" % port, "hello")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.decode().strip(),
                         "yodel send: cannot connect to 127.0.0.1:%d: connection refused" % port)

    def test_stdin_mode_timeout_prints_one_line_without_abort_noise(self):
        with serve("-l", LOCAL, "-m", "line", "--delay", "3s") as srv:
            r = send("-c", srv.tcp.addr, "--timeout", "500ms", "-", input=b"hi\n")
            srv.stop()
        self.assertEqual(r.returncode, 1)
        lines = harness.stderr_lines(r.stderr.decode())
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("timed out", lines[0])

    def test_udp_to_a_port_with_nothing_listening_is_refused_at_once(self):
        # Needs libyodel to close a connected UDP client on ICMP port unreachable.
        port = unused_udp_port()
        t0 = time.monotonic()
        r = send("--udp", "-c", "127.0.0.1:%d" % port, "--timeout", "3s", "hello")
        elapsed = time.monotonic() - t0
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cannot connect to udp://127.0.0.1:%d: connection refused" % port,
                      r.stderr)
        self.assertLess(elapsed, 2.5)

    def test_a_tls_server_that_never_answers_the_handshake_is_a_handshake_timeout(self):
        # The kernel completes the TCP connect on a listening socket; nothing answers the hello.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(4)
            port = s.getsockname()[1]
            r = send("--tls", "--insecure", "-c", "127.0.0.1:%d" % port, "--timeout", "300ms",
                     "hi")
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        self.assertIn("tls://127.0.0.1:%d: TLS handshake timed out" % port, err)
        self.assertNotIn("connection timed out", err)


class ClientOrder(unittest.TestCase):
    """newcomer F15 / README: `send -n 3` prints 'Hello from 0/1/2' in that order."""

    def test_several_clients_print_their_replies_in_client_order(self):
        with PythonPeer(PY_REVERSE_ORDER) as peer:
            r = send("-c", py_addr(peer), "-n", "5", "Hello")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["Hello from %d" % i for i in range(5)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
