"""Socket activation (systemd's LISTEN_FDS) and --inetd: yodel serves sockets it is given."""

import os
import re
import select
import socket
import subprocess
import sys
import time
import unittest

from opslib import IO_TIMEOUT, START_TIMEOUT, harness, metric, ops_serve, parse_exposition, scrape

YODEL = harness.YODEL_BIN


def free_tcp_udp_port():
    """A port free for TCP and UDP right now (systemd-socket-activate wants a real port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if harness.free_port(port):
            return port
    raise AssertionError("no free port found")


class Activated:
    """`systemd-socket-activate [--datagram] -l 127.0.0.1:PORT yodel serve ...`: it binds,
    waits for the first client, then execs yodel in its own process with the socket as fd 3."""

    def __init__(self, test, datagram, *args):
        self.stderr = b""
        for attempt in range(5):
            self.port = free_tcp_udp_port()
            cmd = ["systemd-socket-activate"] + (["--datagram"] if datagram else []) + [
                "-l", "127.0.0.1:%d" % self.port, YODEL, "serve"] + list(args)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
            test.addCleanup(self.kill)
            if self._wait_stderr(b"Listening on"):
                return
            self.kill()
            if b"Address already in use" not in self.stderr:
                break
        raise AssertionError("systemd-socket-activate did not listen: %r" % self.stderr)

    def _wait_stderr(self, what, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while what not in self.stderr:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            self.stderr += chunk
        return True

    def stop(self):
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=harness.STOP_TIMEOUT)
        self.stderr += err
        return self.proc.returncode, out.decode(), self.stderr.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def epoll_watchers(pid, fd):
    """How many of the process's epoll instances (one per event loop) watch the socket that is
    its descriptor fd (each loop may hold its own duplicate of it)."""
    inode = int(os.readlink("/proc/%d/fd/%d" % (pid, fd))[len("socket:["):-1])
    n = 0
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)) != "anon_inode:[eventpoll]":
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, name)) as f:
                if re.search(r"\bino:%x\b" % inode, f.read()):
                    n += 1
        except FileNotFoundError:
            pass
    return n


class SocketActivationTest(unittest.TestCase):
    def setUp(self):
        harness.require_tool(self, "systemd-socket-activate")

    def test_systemd_socket_activate_tcp_is_served_without_binding(self):
        act = Activated(self, False, "-m", "line")
        addr = ("127.0.0.1", act.port)
        with socket.create_connection(addr, timeout=IO_TIMEOUT) as s:
            s.sendall(b"first client\n")
            self.assertEqual(harness.recv_exactly(s, 13), b"first client\n")
        with socket.create_connection(addr, timeout=IO_TIMEOUT) as s:
            s.sendall(b"second\n")
            self.assertEqual(harness.recv_exactly(s, 7), b"second\n")
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        # It served the socket it was given: that address, and no default 8888.
        self.assertEqual(out.splitlines(), ["listening on tcp://127.0.0.1:%d" % act.port])
        self.assertIn("Execing", err)
        self.assertIn("accepted=2 ", err)

    def test_systemd_socket_activate_udp_is_served(self):
        act = Activated(self, True, "-m", "upper")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(IO_TIMEOUT)
            s.sendto(b"hello udp", ("127.0.0.1", act.port))
            reply, peer = s.recvfrom(65536)
        self.assertEqual(reply, b"HELLO UDP")
        self.assertEqual(peer, ("127.0.0.1", act.port))
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(out.splitlines(), ["listening on udp://127.0.0.1:%d" % act.port])
        self.assertIn("messages=1 ", err)


    def assert_every_thread_serves(self, act):
        pid = act.proc.pid
        # A thread's loop registers the socket with its epoll when it first runs: a moment.
        deadline = time.monotonic() + IO_TIMEOUT
        while epoll_watchers(pid, 3) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(os.listdir("/proc/%d/task" % pid)), 2, "threads of yodel serve")
        self.assertEqual(epoll_watchers(pid, 3), 2, "event loops watching the activated socket")

    def test_activated_tcp_socket_is_served_by_every_thread(self):
        act = Activated(self, False, "--threads", "2", "-m", "line")
        for i in range(10):
            with socket.create_connection(("127.0.0.1", act.port), timeout=IO_TIMEOUT) as s:
                s.sendall(b"client %d\n" % i)
                self.assertEqual(harness.recv_exactly(s, 9), b"client %d\n" % i)
        self.assert_every_thread_serves(act)
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(out.splitlines(), ["listening on tcp://127.0.0.1:%d" % act.port])
        self.assertIn("accepted=10 ", err)

    def test_activated_udp_socket_is_served_by_every_thread(self):
        act = Activated(self, True, "--threads", "2")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(IO_TIMEOUT)
            for i in range(5):
                s.sendto(b"datagram %d" % i, ("127.0.0.1", act.port))
                self.assertEqual(s.recvfrom(65536)[0], b"datagram %d" % i)
        self.assert_every_thread_serves(act)
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertIn("messages=5 ", err)


class ListenFdsTest(unittest.TestCase):
    """LISTEN_FDS as systemd sets it for a yodel.socket with ListenStream and ListenDatagram."""

    def start(self, listen_pid_matches=True, extra=()):
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        self.tcp_port, self.udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        # The wrapper puts them at fds 3 and 4 and execs yodel, which keeps its PID: LISTEN_PID
        # names yodel itself, as systemd does it.
        wrapper = ("import os, sys\n"
                   "os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4)\n"
                   "os.environ['LISTEN_FDS'] = '2'\n"
                   "os.environ['LISTEN_PID'] = str(os.getpid()) if sys.argv[3] == 'me' else '1'\n"
                   "os.execv(sys.argv[4], sys.argv[4:])\n")
        cmd = [sys.executable, "-c", wrapper, str(tcp.fileno()), str(udp.fileno()),
               "me" if listen_pid_matches else "other", YODEL, "serve"] + list(extra)
        try:
            srv = ShellServer(cmd, expect=2 if listen_pid_matches else 1,
                              pass_fds=(tcp.fileno(), udp.fileno()))
        finally:
            tcp.close()
            udp.close()
        self.addCleanup(srv.kill)
        return srv

    def test_listen_fds_serves_tcp_and_udp_sockets_given(self):
        srv = self.start(extra=["--metrics", "127.0.0.1:0"])
        self.assertEqual(sorted(l.line for l in srv.listeners),
                         ["listening on tcp://127.0.0.1:%d" % self.tcp_port,
                          "listening on udp://127.0.0.1:%d" % self.udp_port])
        self.assertEqual(harness.exchange(srv.tcp, b"over tcp"), b"over tcp")
        self.assertEqual(harness.udp_exchange(srv.udp, b"over udp"), b"over udp")
        samples = parse_exposition(scrape(srv.metrics_port)[2])[0]
        self.assertEqual(metric(samples, "yodel_messages_total", listener=srv.udp.addr), 1)
        self.assertEqual(metric(samples, "yodel_bytes_received_total", listener=srv.tcp.addr), 8)
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)

    def test_listen_fds_that_is_not_a_count_is_one_line_and_exit_1(self):
        for value in ["-1", "two", "99999"]:
            r = harness.run(["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS="$1" exec "$0" serve',
                             YODEL, value])
            self.assertEqual(r.returncode, 1, (value, r.stderr))
            self.assertEqual(r.stdout, b"")
            lines = r.stderr.decode().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("yodel serve: socket activation: LISTEN_FDS=%s "
                                                % value), lines)

    def test_listen_fds_for_another_pid_is_ignored(self):
        srv = self.start(listen_pid_matches=False, extra=["-l", "127.0.0.1:0"])
        self.assertNotIn(srv.tcp.port, (self.tcp_port,))
        self.assertEqual(harness.exchange(srv.tcp, b"bound itself"), b"bound itself")
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)


class ShellServer(harness.Server):
    """harness.Server for a command line that is not "yodel serve ..." (with --metrics)."""

    def __init__(self, cmd, expect, pass_fds=()):
        import opslib
        self.args = cmd
        self.listeners = []
        self.metrics_url = self.metrics_port = None
        self._want_metrics = "--metrics" in cmd
        self.stderr_file, child_err = harness.child_log()
        self.returncode = None
        self.stderr = None
        self._stdout_buf = b""
        self.valgrind = False
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=child_err, pass_fds=pass_fds)
        child_err.close()
        try:
            opslib.OpsServer._read_listeners(self, expect)
        except BaseException:
            self.kill()
            raise


class InetdTest(unittest.TestCase):
    def test_inetd_serves_the_connection_on_stdin_and_stdout(self):
        ours, theirs = socket.socketpair()
        with ours:
            proc = subprocess.Popen([YODEL, "serve", "--inetd", "-m", "upper"], stdin=theirs,
                                    stdout=theirs, stderr=subprocess.PIPE)
            theirs.close()
            try:
                ours.settimeout(IO_TIMEOUT)
                ours.sendall(b"hello inetd\nsecond line\n")
                self.assertEqual(harness.recv_exactly(ours, 24), b"HELLO INETD\nSECOND LINE\n")
                ours.shutdown(socket.SHUT_WR)
                self.assertEqual(harness.recv_until_eof(ours), b"")
                _, err = proc.communicate(timeout=harness.STOP_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn(b"listening on", err)

    def test_inetd_under_socat_serves_each_connection_in_its_own_process(self):
        harness.require_tool(self, "socat")
        for attempt in range(5):
            port = free_tcp_udp_port()
            proc = subprocess.Popen(
                ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % port,
                 "EXEC:%s serve --inetd" % YODEL],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.addCleanup(lambda p=proc: (p.poll() is None and p.kill(), p.wait()))
            listener = harness.Listener("listening on tcp://127.0.0.1:%d" % port)
            deadline = time.monotonic() + START_TIMEOUT
            up = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    up = True
                    break
                except ConnectionRefusedError:
                    time.sleep(0.02)
            if up:
                break
        self.assertTrue(up, "socat did not listen (status %r)" % proc.poll())
        for i in range(3):
            data = b"connection %d\n" % i * 100
            self.assertEqual(harness.exchange(listener, data), data)
        proc.terminate()
        proc.wait(timeout=harness.STOP_TIMEOUT)
        proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
