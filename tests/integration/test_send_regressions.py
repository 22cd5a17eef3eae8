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
        self.assertIn(b"message too long for a datagram", r.stderr)
        self.assertNotIn(b"lost", r.stderr)
        self.assertLess(elapsed, 1.5)


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
