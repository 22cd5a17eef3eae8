"""The server never binds beyond loopback unless asked, and --help says so. The default
address is port 8888, which may be taken on a shared machine: these tests run the server in a
network namespace of its own (unshare -n) and read its sockets from /proc/PID/net. And a port
that is taken is an error (exit 1, one line), whatever the thread count: SO_REUSEPORT between
a process's own loops must not let a second server share it."""

import os
import select
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

LISTEN, UNCONNECTED = "0A", "07"


def can_unshare():
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def decode_addr(hexaddr):
    host, port = hexaddr.split(":")
    if len(host) == 8:
        b = bytes.fromhex(host)[::-1]
        return ".".join(str(x) for x in b), int(port, 16)
    words = [bytes.fromhex(host[i:i + 8])[::-1].hex() for i in range(0, 32, 8)]
    full = "".join(words)
    return ":".join(full[i:i + 4] for i in range(0, 32, 4)), int(port, 16)


def own_sockets(pid):
    """(proto, host, port) of every bound TCP/UDP socket the process holds."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        with open("/proc/%d/net/%s" % (pid, proto)) as f:
            next(f)
            for line in f:
                fields = line.split()
                state, inode = fields[3], fields[9]
                if inode in inodes and state in (LISTEN, UNCONNECTED):
                    host, port = decode_addr(fields[1])
                    found.append((proto.rstrip("6"), host, port))
    return sorted(found)


class NamespacedServer:
    """`yodel serve ARGS` alone in a fresh network namespace with only lo up."""

    def __init__(self, args, expect):
        script = 'ip link set lo up && exec "$0" serve "$@"'
        self.proc = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", script, harness.YODEL_BIN] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        buf = b""
        deadline = time.monotonic() + harness.START_TIMEOUT
        fd = self.proc.stdout.fileno()
        while len(self.lines) < expect:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise AssertionError("no listening lines within %.0fs" % harness.START_TIMEOUT)
            chunk = os.read(fd, 4096)
            if not chunk:
                self.stop()
                raise AssertionError("server exited: %r" % self.proc.stderr.read())
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.lines.append(line.decode())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=harness.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


@hard.both_thread_counts
class Loopback(hard.ThreadVariant):
    def setUp(self):
        if not can_unshare():
            self.skipTest("cannot create a network namespace here (unshare -n)")

    def test_default_binds_127_0_0_1_only(self):
        with NamespacedServer(self.server_args(), expect=2) as srv:
            self.assertEqual(sorted(srv.lines), ["listening on tcp://127.0.0.1:8888",
                                                 "listening on udp://127.0.0.1:8888"])
            # What the kernel says, not what the server prints: /proc/PID/net is its namespace.
            # One TCP and one UDP socket per event loop.
            self.assertEqual(own_sockets(srv.proc.pid),
                             [("tcp", "127.0.0.1", 8888)] * self.threads
                             + [("udp", "127.0.0.1", 8888)] * self.threads)
            self.assertEqual(srv.stop(), 0)

    def test_wildcard_is_bound_only_when_asked(self):
        with NamespacedServer(self.server_args("-l", "0.0.0.0:0"), expect=1) as srv:
            socks = own_sockets(srv.proc.pid)
            self.assertEqual([(p, h) for p, h, _ in socks], [("tcp", "0.0.0.0")] * self.threads,
                             socks)
            self.assertEqual(srv.stop(), 0)


@hard.both_thread_counts
class PortTaken(hard.ThreadVariant):
    def assert_cannot_listen(self, args, what, printed_nothing=True):
        try:
            r = harness.run([harness.YODEL_BIN, "serve"] + self.server_args(*args),
                            timeout=3 * hard.SLOW)
        except AssertionError:
            self.fail("%s: still serving after 3 s instead of failing" % what)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, "%s: exit %d, stderr %r" % (what, r.returncode, err))
        self.assertEqual(len(harness.stderr_lines(err)), 1, err)
        self.assertRegex(err, r"(?i)address already in use", err)
        if printed_nothing:
            # Nothing was bound: a script waiting for "listening on" must not be told otherwise.
            self.assertNotIn(b"listening on", r.stdout, what)

    def test_second_server_on_a_taken_tcp_port_exits_1(self):
        with self.serve("-l", hard.LOCAL) as first:
            self.assert_cannot_listen(["-l", "127.0.0.1:%d" % first.tcp.port],
                                      "a second server on tcp %d" % first.tcp.port)
            self.assertTrue(hard.echo_ok(first.tcp), "the first server stopped serving")

    def test_second_server_on_a_taken_udp_port_exits_1(self):
        with self.serve("-l", "udp://127.0.0.1:0") as first:
            self.assert_cannot_listen(["-l", "udp://127.0.0.1:%d" % first.udp.port],
                                      "a second server on udp %d" % first.udp.port)

    def test_same_address_twice_in_one_server_exits_1(self):
        port = None
        with self.serve("-l", hard.LOCAL) as probe:
            port = probe.tcp.port
        # The port was free a moment ago; another test may take it meanwhile, rarely.
        if not harness.free_port(port):
            self.skipTest("port %d was taken meanwhile" % port)
        addr = "127.0.0.1:%d" % port
        # (Whether the first address's line is printed before the second fails is not promised.)
        self.assert_cannot_listen(["-l", addr, "-l", addr], "-l %s twice" % addr,
                                  printed_nothing=False)


class LoopbackManyThreads(unittest.TestCase):
    def setUp(self):
        if not can_unshare():
            self.skipTest("cannot create a network namespace here (unshare -n)")

    def test_default_binds_loopback_only_with_three_threads(self):
        with NamespacedServer(["--threads", "3"], expect=2) as srv:
            socks = own_sockets(srv.proc.pid)
            self.assertEqual(len(socks), 6, socks)
            self.assertEqual({h for _, h, _ in socks}, {"127.0.0.1"}, socks)
            self.assertEqual(srv.stop(), 0)


class Help(unittest.TestCase):
    def test_help_says_the_default_is_loopback_only(self):
        r = harness.yodel("serve", "--help")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        self.assertIn("127.0.0.1", out)
        self.assertRegex(out, r"(?i)loopback")


if __name__ == "__main__":
    unittest.main(verbosity=2)
