"""Signals with several event loops: the second SIGINT/SIGTERM exits at once with 128+signum even
while another thread is still draining (attack #3), and says so as JSON under --json (#21)."""

import json
import os
import re
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402


def thread_variants():
    """--threads 1, and the default thread count (at least 2)."""
    default = [] if len(os.sched_getaffinity(0)) >= 2 else ["--threads", "2"]
    return [("--threads 1", ["--threads", "1"]), ("default threads", default)]


def epoll_fds(pid):
    """The server's epoll descriptors in creation order: one per event loop, loop 0 first (the
    loops are created in order, each taking the lowest free descriptor number)."""
    fds = []
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)) == "anon_inode:[eventpoll]":
                fds.append(int(name))
        except FileNotFoundError:
            pass
    return sorted(fds)


def server_socket_inode(pid, server_port, client_port):
    """The inode of the server's end of the TCP connection server_port <-> client_port."""
    with open("/proc/%d/net/tcp" % pid) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == server_port
                    and int(remote.split(":")[1], 16) == client_port):
                return int(fields[9])
    return None


def loop_of(pid, server_port, client_port):
    """Which event loop (0 = the main thread's) serves the connection, or None if none yet."""
    inode = server_socket_inode(pid, server_port, client_port)
    if not inode:
        return None
    for index, fd in enumerate(epoll_fds(pid)):
        try:
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                if re.search(r"\bino:%x\b" % inode, f.read()):
                    return index
        except FileNotFoundError:
            pass
    return None


def connect_off_the_main_loop(test, srv, threads):
    """A connection served by a worker thread's loop, with the main loop serving none (with one
    thread, a connection on the main loop). Returns (socket, its peer name as the log has it)."""
    pid, port = srv.proc.pid, srv.tcp.port
    others = []
    try:
        for _ in range(64):
            s = harness.connect(srv.tcp)
            client_port = s.getsockname()[1]
            # A one-element list: loop 0 must count as found.
            index = hard.wait_for(
                lambda: (lambda i: None if i is None else [i])(loop_of(pid, port, client_port)),
                5 * hard.SLOW, "the connection in an event loop")[0]
            if index != 0 or threads == 1:
                return s, "127.0.0.1:%d" % client_port
            others.append(s)
        test.fail("64 connections in a row went to the main loop")
    finally:
        for o in others:
            o.close()
        # The main loop's connections, closed by their clients, are closed by the server too.
        srv.wait_stderr(lambda t: len(re.findall(r"\bclosed\b", t)) >= len(others),
                        what="the main loop's connections closed")


def hold_with_pending_reply(test, srv, n_threads):
    """A connection off the main loop whose reply the server holds (--delay)."""
    s, peer = connect_off_the_main_loop(test, srv, n_threads)
    s.sendall(b"held\n")
    srv.wait_stderr(lambda t: any(peer + '"' in l or peer + " " in l for l in t.splitlines()
                                  if "received" in l),
                    what="the held line read by the server")
    return s


def count_threads(args):
    if "--threads" in args:
        return int(args[args.index("--threads") + 1])
    return max(2, len(os.sched_getaffinity(0)))


class SecondSignal(unittest.TestCase):
    def assert_second_signal_exits_at_once(self, first, second, check, *extra):
        """Then check(stderr) for each thread count."""
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                args = ["-l", hard.LOCAL, "-m", "line", "--delay", "20s", "--drain-timeout",
                        "30s", "-v"] + threads + list(extra)
                with harness.serve(*args) as srv:
                    held = hold_with_pending_reply(self, srv, count_threads(args))
                    with held:
                        srv.send_signal(first)
                        srv.wait_stderr(lambda t: "draining" in t, what="the draining line")
                        start = time.monotonic()
                        srv.send_signal(second)
                        status, err = srv.wait_exit(timeout=15)
                        elapsed = time.monotonic() - start
                self.assertEqual(status, 128 + second, err)
                self.assertLess(elapsed, 3.0 * hard.SLOW,
                                "the second signal took %.1fs to act" % elapsed)
                check(err)

    def says_second_signal(self, err):
        self.assertIn("yodel serve: second signal, exiting now", err)

    def test_second_sigint_exits_at_once_while_a_worker_thread_drains(self):
        self.assert_second_signal_exits_at_once(signal.SIGTERM, signal.SIGINT,
                                                self.says_second_signal)

    def test_second_sigterm_exits_at_once_while_a_worker_thread_drains(self):
        self.assert_second_signal_exits_at_once(signal.SIGINT, signal.SIGTERM,
                                                self.says_second_signal)

    def test_second_signal_line_is_json_with_json(self):
        def check(err):
            lines = [l for l in err.splitlines() if l.strip()]
            for line in lines:
                self.assertIsInstance(json.loads(line), dict, line)
            last = json.loads(lines[-1])
            self.assertEqual(last.get("event"), "exiting", last)
            self.assertEqual(last.get("signal"), signal.SIGINT, last)
            self.assertIn("ts", last)

        self.assert_second_signal_exits_at_once(signal.SIGTERM, signal.SIGINT, check, "--json")


class Drain(unittest.TestCase):
    def test_drain_waits_for_a_connection_on_a_worker_thread_then_exits_0(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                args = ["-l", hard.LOCAL, "-m", "line", "--delay", "1s", "-v"] + threads
                with harness.serve(*args) as srv:
                    with hold_with_pending_reply(self, srv, count_threads(args)) as held:
                        srv.send_signal(signal.SIGTERM)
                        self.assertEqual(harness.recv_until_eof(held), b"held\n")
                    status, err = srv.wait_exit()
                self.assertEqual(status, 0, err)
                self.assertIn("messages=1 ", err)

    def test_idle_server_exits_0_promptly_on_the_first_signal(self):
        for name, threads in thread_variants():
            with self.subTest(threads=name):
                with harness.serve("-l", hard.LOCAL, *threads) as srv:
                    start = time.monotonic()
                    status, err = srv.stop(signal.SIGINT)
                    elapsed = time.monotonic() - start
                self.assertEqual(status, 0, err)
                self.assertLess(elapsed, 2.0 * hard.SLOW)


if __name__ == "__main__":
    unittest.main()
