"""Regressions of the library's echo, limits and drain (attack report #2, #4-#6, #8, #11, #12,
#19-#22; newcomer report F6, F14): each test drives the real `yodel serve`, `yodel send` and
`yodel bench` over real sockets, once with one event loop and once with the default count."""

import json
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import MIB, harness  # noqa: E402

KIB = 1024


def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_udp_port():
    """A UDP port with nothing bound to it (bound, read back and closed at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_all_and_read_to_eof(sock, data, timeout):
    """Sends data and half-closes from a thread while reading: (bytes received, 'eof' or
    'reset'). Large payloads cannot deadlock on back-pressure."""
    err = []

    def writer():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    got = bytearray()
    how = "timeout"
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionResetError:
            how = "reset"
            break
        if not chunk:
            how = "eof"
            break
        got += chunk
    sock.settimeout(None)
    t.join(timeout)
    return bytes(got), how


def push_all_until_stalled(socks, chunk, stall, timeout):
    """Writes chunk to every socket that is writable, without reading, until none of them has
    been writable for `stall` seconds (every peer stopped reading). Returns the bytes sent."""
    for s in socks:
        s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, writable, _ = select.select([], socks, [], stall)
        if not writable:
            return sent
        for s in writable:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                pass
    raise AssertionError("the server still read after %.0fs (%d bytes sent)" % (timeout, sent))


def in_hosts_namespace(hosts_file, argv):
    """argv run in a user and mount namespace where /etc/hosts is hosts_file: a name can
    resolve to 127.0.0.1 and ::1 without touching the machine's files or the network."""
    return ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
            hosts_file] + list(argv)


class Regressions:
    """The tests; a subclass per thread variant sets THREAD_ARGS."""

    THREAD_ARGS = ["--threads", "1"]

    def serve(self, *args, **kw):
        return harness.serve(*self.THREAD_ARGS, *args, **kw)

    def serve_cmd(self, *args, timeout):
        return harness.yodel("serve", *self.THREAD_ARGS, *args, timeout=timeout)

    # ---- #4: lines up to the limit come back whole, longer ones are refused -----------------

    def test_line_of_10_mib_is_echoed_exactly_with_max_line_16m(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "16m") as srv:
            data = b"L" * (10 * MIB) + b"\nafter\n"
            with harness.connect(srv.tcp) as s:
                got, how = send_all_and_read_to_eof(s, data, 30 * hard.SLOW)
            self.assertEqual((len(got), how), (len(data), "eof"))
            self.assertEqual(got, data)
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["bytes_out"], len(data), counts)

    # Known to fail with 97a7917: the echo (16 MiB + '\n') is one byte more than the write queue
    # takes, so the connection is reset and counted as io (see the report).
    def test_line_of_exactly_16_mib_is_echoed_with_max_line_16m(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "16m") as srv:
            data = b"L" * (16 * MIB) + b"\n"
            with harness.connect(srv.tcp) as s:
                got, how = send_all_and_read_to_eof(s, data, 30 * hard.SLOW)
            counts = hard.stop_summary(self, srv)
            self.assertEqual((len(got), how), (len(data), "eof"), counts)
            self.assertEqual(got, data)

    def test_max_line_above_16m_is_a_usage_error(self):
        r = self.serve_cmd("-l", hard.LOCAL, "-m", "line", "--max-line", "17m",
                           timeout=5 * hard.SLOW)
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = harness.stderr_lines(r.stderr.decode())
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("--max-line", lines[0])

    def test_line_over_16m_resets_the_connection_and_is_counted_line_too_long(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "16m") as srv:
            data = b"L" * (16 * MIB + 1) + b"\nafter\n"
            with harness.connect(srv.tcp) as s:
                got, how = send_all_and_read_to_eof(s, data, 30 * hard.SLOW)
            # Never a part of the line, never a clean end: nothing, then a reset.
            self.assertEqual((len(got), how), (0, "reset"), got[:40])
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["line_too_long"], 1, counts)
            self.assertEqual(counts["bytes_out"], 0, counts)

    def test_line_of_10_mib_comes_back_whole_with_a_delay(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "16m",
                        "--delay", "10ms") as srv:
            data = b"D" * (10 * MIB) + b"\nafter\n"
            with harness.connect(srv.tcp) as s:
                got, how = send_all_and_read_to_eof(s, data, 30 * hard.SLOW)
            self.assertEqual((len(got), how), (len(data), "eof"))
            self.assertEqual(got, data)
            hard.stop_summary(self, srv)

    # ---- #5: a held or just-sent reply is progress for --idle-timeout -----------------------

    def test_reply_held_longer_than_the_idle_timeout_is_still_delivered(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--delay", "3s",
                        "--idle-timeout", "1s") as srv:
            r = harness.send("-c", srv.tcp.addr, "--timeout", "5s", "hello",
                             timeout=10 * hard.SLOW)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"hello\n")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 0, counts)

    def test_line_sent_soon_after_a_delayed_reply_is_echoed(self):
        # The request arrives at 0 s, its reply leaves at 0.8 s; the idle clock restarts then,
        # so the connection is still open at 1.3 s (it was closed at 1.0-1.25 s).
        with self.serve("-l", hard.LOCAL, "-m", "line", "--delay", "800ms",
                        "--idle-timeout", "1s") as srv:
            with harness.connect(srv.tcp) as s:
                self.assertEqual(hard.round_trip(s, b"one\n", 5 * hard.SLOW), b"one\n")
                # A time test: 0.5 s after the reply, well inside the 1 s idle timeout.
                self.assertIsNone(hard.closed_by_peer(s, 0.5),
                                  "closed 0.5 s after the server's last reply")
                self.assertEqual(hard.round_trip(s, b"two\n", 5 * hard.SLOW), b"two\n")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["idle_timeout"], 0, counts)

    # ---- #6: the drain echoes a received partial line ---------------------------------------

    def test_partial_line_received_before_sigterm_is_echoed_then_eof(self):
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            with harness.connect(srv.tcp) as s:
                # One segment: once "full line\n" is echoed, "partial line" has been read too.
                s.sendall(b"full line\npartial line")
                self.assertEqual(harness.recv_exactly(s, 10), b"full line\n")
                srv.send_signal(signal.SIGTERM)
                rest = harness.recv_until_eof(s, 5 * hard.SLOW)
            self.assertEqual(rest, b"partial line")
            status, err = srv.wait_exit()
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual((counts["bytes_in"], counts["bytes_out"]), (22, 22), counts)

    # ---- #8: JSON logs stay one object per line under load -----------------------------------

    def test_every_verbose_json_log_line_under_load_is_json(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "-v", "--json") as srv:
            r = harness.yodel("bench", "-c", srv.tcp.addr, "-n", "8", "-t", "1s",
                              "--warmup", "0", timeout=20 * hard.SLOW)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # The log of the load only: what the server prints when it stops is not the point.
            text = srv.read_stderr()
            srv.stop()
        lines = text.splitlines()
        self.assertGreater(len(lines), 1000, "too little load to mix lines")
        bad = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                bad.append(line)
        self.assertEqual(bad[:3], [], "%d of %d lines are not JSON" % (len(bad), len(lines)))

    # ---- #11: held \n lines cost memory in proportion to the watermark ----------------------

    def test_held_newline_lines_keep_server_rss_bounded(self):
        clients = 50
        with self.serve("-l", hard.LOCAL, "-m", "line", "--delay", "20s") as srv:
            pid = srv.proc.pid
            baseline = hard.rss_kib(pid)
            socks = []
            try:
                for _ in range(clients):
                    socks.append(harness.connect(srv.tcp))
                sent = push_all_until_stalled(socks, b"\n" * (64 * KIB),
                                              stall=0.5 * hard.SLOW, timeout=30 * hard.SLOW)
                growth = hard.rss_kib(pid) - baseline
            finally:
                for s in socks:
                    s.close()
            srv.kill()
        if os.environ.get("HARDENING_VERBOSE"):
            print("\n%d clients pushed %d bytes; RSS growth %d KiB (%.1f KiB per connection)"
                  % (clients, sent, growth, growth / clients), file=sys.stderr)
        # Held replies stop reading past 64 KiB of records and bytes; the rest of that read is
        # set aside: about 136 KiB a connection measured, 1.16 MB before the fix. ASan's
        # allocator keeps freed blocks in quarantine: twice as much there.
        per_conn_kib = 192 * (2 if hard.SANITIZE else 1)
        self.assertLess(growth, clients * per_conn_kib, "%d KiB for %d clients after %d bytes"
                        % (growth, clients, sent))

    # ---- #12: a datagram client tries every address of a name --------------------------------

    def addresses_in_namespace(self, hosts, name):
        r = harness.run(in_hosts_namespace(hosts, [
            sys.executable, "-c",
            "import socket, sys\n"
            "for ai in socket.getaddrinfo(sys.argv[1], 7, type=socket.SOCK_DGRAM):\n"
            "    print(ai[4][0])\n", name]), timeout=10 * hard.SLOW)
        if r.returncode != 0:
            self.skipTest("no user/mount namespace for a private /etc/hosts: %r" % r.stderr)
        return r.stdout.decode().split()

    def udp_server_on_the_last_address_of_a_name(self):
        """A UDP server on whichever of 127.0.0.1 and ::1 the resolver lists last for a name
        that resolves to both: (server, name, hosts file)."""
        if shutil.which("unshare") is None:
            self.skipTest("unshare is not installed")
        tmp = harness.TempDir()
        path = tmp.__enter__()
        self.addCleanup(tmp.__exit__)
        hosts = os.path.join(path, "hosts")
        name = "yodel-both.test"
        with open(hosts, "w") as f:
            f.write("127.0.0.1 %s\n::1 %s\n" % (name, name))
        order = self.addresses_in_namespace(hosts, name)
        self.assertEqual(sorted(order), ["127.0.0.1", "::1"], order)
        last = order[-1]
        srv = self.serve("-l", "udp://%s:0" % ("[::1]" if last == "::1" else last))
        self.addCleanup(srv.kill)
        return srv, name, hosts

    def test_udp_send_reaches_a_server_on_the_second_address_of_a_name(self):
        srv, name, hosts = self.udp_server_on_the_last_address_of_a_name()
        r = harness.run(in_hosts_namespace(hosts, [
            harness.YODEL_BIN, "send", "--udp", "-c", "%s:%d" % (name, srv.udp.port),
            "--timeout", "1s", "a", "b"]), timeout=20 * hard.SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a\nb\n")
        counts = hard.stop_summary(self, srv)
        self.assertEqual(counts["messages"], 2, counts)

    def test_udp_bench_reaches_a_server_on_the_second_address_of_a_name(self):
        srv, name, hosts = self.udp_server_on_the_last_address_of_a_name()
        r = harness.run(in_hosts_namespace(hosts, [
            harness.YODEL_BIN, "bench", "--udp", "-c", "%s:%d" % (name, srv.udp.port),
            "-n", "1", "-t", "300ms", "--warmup", "0", "--json"]), timeout=20 * hard.SLOW)
        report = json.loads(r.stdout)
        self.assertEqual(report["errors"], 0, report)
        self.assertGreater(report["round_trips"], 0, report)
        self.assertEqual(r.returncode, 0, r.stderr)
        hard.stop_summary(self, srv)

    # ---- F14: a refused datagram fails at once ------------------------------------------------

    def test_udp_send_to_a_port_with_nothing_listening_fails_at_once_as_refused(self):
        port = free_udp_port()
        started = time.monotonic()
        r = harness.send("--udp", "-c", "udp://127.0.0.1:%d" % port, "hello",
                         timeout=5 * hard.SLOW)
        took = time.monotonic() - started
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"connection refused", r.stderr)
        self.assertLess(took, 1.0 * hard.SLOW)

    # ---- #19: --max-line counts the line without its '\n' ------------------------------------

    def test_line_of_max_line_bytes_and_its_newline_is_echoed(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "8") as srv:
            with harness.connect(srv.tcp) as s:
                got, how = send_all_and_read_to_eof(s, b"12345678\n", 5 * hard.SLOW)
            self.assertEqual((got, how), (b"12345678\n", "eof"))
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["line_too_long"], 0, counts)

    def test_max_line_plus_one_bytes_without_newline_reset_the_connection(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "8") as srv:
            with harness.connect(srv.tcp) as s:
                # No '\n' and no EOF: nine bytes are already too many for any line.
                s.sendall(b"123456789")
                self.assertEqual(hard.closed_by_peer(s, 5 * hard.SLOW), "reset")
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["line_too_long"], 1, counts)

    # ---- #20: a line too long is logged with its peer, without -v ----------------------------

    def test_line_too_long_is_logged_with_its_peer_without_verbose(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--max-line", "64") as srv:
            with harness.connect(srv.tcp) as s:
                peer = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(b"w" * 200)
                self.assertEqual(hard.closed_by_peer(s, 5 * hard.SLOW), "reset")
            srv.wait_stderr(
                lambda t: any(peer in l and "line too long" in l for l in t.splitlines()),
                timeout=5 * hard.SLOW, what="a 'line too long' line naming %s" % peer)
            self.assertEqual(hard.stop_summary(self, srv)["line_too_long"], 1)

    # ---- #21: connections cut at the drain deadline are counted -----------------------------

    def test_reply_held_past_the_drain_deadline_is_counted_as_drain_timeout(self):
        with self.serve("-l", hard.LOCAL, "-m", "line", "--delay", "10s",
                        "--drain-timeout", "300ms", "-v") as srv:
            with harness.connect(srv.tcp) as s:
                peer = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(b"held\n")
                srv.wait_stderr(lambda t: "%s received" % peer in t, timeout=5 * hard.SLOW,
                                what="the held line received")
                srv.send_signal(signal.SIGTERM)
                status, err = srv.wait_exit(timeout=5 * hard.SLOW)
            self.assertEqual(status, 0, err)
            counts = hard.summary(err)
            self.assertEqual(counts.get("drain_timeout"), 1, counts)

    # ---- #22: a resolver failure says so ----------------------------------------------------

    def test_listen_address_that_does_not_resolve_says_so(self):
        # A scope naming no interface fails inside getaddrinfo: no query leaves the machine.
        r = self.serve_cmd("-l", "[::1%nosuchif]:0", timeout=10 * hard.SLOW)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = harness.stderr_lines(r.stderr.decode())
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("name does not resolve", lines[0])

    # ---- F6: a reset after a complete exchange is no error -----------------------------------

    def wait_all_closed(self, srv, baseline_fds):
        hard.wait_for(lambda: hard.fd_count(srv.proc.pid) <= baseline_fds, 5 * hard.SLOW,
                      "every connection closed by the server")

    def test_reset_after_a_complete_exchange_is_not_counted(self):
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            baseline = hard.fd_count(srv.proc.pid)
            for _ in range(20):
                s = harness.connect(srv.tcp)
                self.assertEqual(hard.round_trip(s, b"check\n"), b"check\n")
                hard.linger_reset(s)
            self.wait_all_closed(srv, baseline)
            counts = hard.stop_summary(self, srv)
            self.assertEqual((counts["closed"], counts["reset"]), (20, 0), counts)

    def test_reset_with_replies_still_queued_is_counted(self):
        with self.serve("-l", hard.LOCAL, "-m", "raw") as srv:
            baseline = hard.fd_count(srv.proc.pid)
            s = harness.connect(srv.tcp)
            hard.push_until_stalled(s, 256 * MIB, stall=0.5 * hard.SLOW)
            hard.linger_reset(s)
            self.wait_all_closed(srv, baseline)
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["reset"], 1, counts)

    # ---- #2: a live Unix socket with a full backlog is in use --------------------------------

    def test_listen_on_a_live_unix_socket_with_a_full_backlog_fails_at_once(self):
        with harness.TempDir() as tmp:
            path = os.path.join(tmp, "busy.sock")
            busy = socket.socket(socket.AF_UNIX)
            self.addCleanup(busy.close)
            busy.bind(path)
            busy.listen(0)  # a hung server that never accepts
            for _ in range(8):
                c = socket.socket(socket.AF_UNIX)
                self.addCleanup(c.close)
                c.setblocking(False)
                try:
                    c.connect(path)
                except BlockingIOError:
                    break  # the backlog is full
            else:
                self.fail("the backlog of a listen(0) socket never filled")
            started = time.monotonic()
            r = self.serve_cmd("-l", "unix:" + path, timeout=2 * hard.SLOW)
            took = time.monotonic() - started
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"address already in use", r.stderr)
        self.assertLess(took, 2 * hard.SLOW)


class OneThread(Regressions, unittest.TestCase):
    THREAD_ARGS = ["--threads", "1"]


class DefaultThreads(Regressions, unittest.TestCase):
    # What users run: one loop per usable CPU; on a one-CPU machine two loops instead.
    THREAD_ARGS = [] if usable_cpus() >= 2 else ["--threads", "2"]


if __name__ == "__main__":
    unittest.main(verbosity=2)
