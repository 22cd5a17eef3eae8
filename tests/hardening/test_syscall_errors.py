"""Every syscall error path a peer can cause: ECONNRESET, EPIPE (never a SIGPIPE death),
EAGAIN and short writes, EINTR; and no descriptor leaks behind any of them."""

import hashlib
import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import MIB, harness  # noqa: E402


def stream_and_verify(testcase, listener, total, rcvbuf=None, read_size=65536, results=None):
    """Sends `total` patterned bytes while reading the echo; asserts every byte came back."""
    block = hashlib.sha256(b"stream").digest() * 256  # 8 KiB
    s = socket.socket(listener.family, socket.SOCK_STREAM)
    if rcvbuf:
        # Set before connecting: the window is fixed at the handshake.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(harness.IO_TIMEOUT)
    s.connect(listener.sockaddr)
    errors = []

    def writer():
        try:
            for off in range(0, total, len(block)):
                s.sendall(block[: min(len(block), total - off)])
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    h = hashlib.sha256()
    got = 0
    deadline = time.monotonic() + 60 * hard.SLOW
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(read_size)
            if not chunk:
                break
            got += len(chunk)
            h.update(chunk)
    finally:
        t.join(10)
        s.close()
    want = hashlib.sha256()
    for off in range(0, total, len(block)):
        want.update(block[: min(len(block), total - off)])
    ok = (got, h.hexdigest()) == (total, want.hexdigest()) and not errors
    if results is not None:
        results.append((ok, got, errors))
        return ok
    testcase.assertEqual(errors, [])
    testcase.assertEqual(got, total)
    testcase.assertEqual(h.hexdigest(), want.hexdigest())
    return ok


@hard.both_thread_counts
class Resets(hard.ThreadVariant):
    def test_clients_that_reset_mid_stream_do_not_disturb_others(self):
        n = 50
        with self.serve("-l", hard.LOCAL) as srv:
            results = []
            good = threading.Thread(
                target=stream_and_verify, args=(self, srv.tcp, 16 * MIB),
                kwargs={"results": results}, daemon=True)
            good.start()
            for i in range(n):
                s = harness.connect(srv.tcp)
                s.sendall(os.urandom(100000))  # part of it echoed, part still in flight
                hard.linger_reset(s)
            good.join(60 * hard.SLOW)
            self.assertEqual(len(results), 1, "the good client did not finish")
            self.assertTrue(results[0][0], "the good client's stream was damaged: %r"
                            % (results[0],))
            self.assertTrue(hard.echo_ok(srv.tcp, b"after the resets"))
            counts = hard.stop_summary(self, srv)
            # A reset that finds the server with nothing left to send (it had echoed all
            # 100000 bytes already) ends a complete exchange and is not an error; the others
            # are counted. Which is which depends on timing.
            self.assertGreaterEqual(counts["reset"], 1, counts)
            self.assertLessEqual(counts["reset"], n, counts)
            self.assertEqual(counts["accepted"], n + 2, counts)
            self.assertEqual(counts["closed"], counts["accepted"], counts)

    def test_resets_leave_no_descriptor_behind(self):
        with self.serve("-l", hard.LOCAL) as srv:
            pid = srv.proc.pid
            baseline = hard.fd_count(pid)
            for i in range(200):
                s = harness.connect(srv.tcp)
                s.sendall(b"x" * 5000)
                if i % 2:
                    hard.linger_reset(s)
                else:
                    s.close()
            hard.wait_for(lambda: hard.fd_count(pid) == baseline, 5 * hard.SLOW,
                          "server descriptors back to the baseline of %d" % baseline)
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["closed"], 200, counts)

    def test_reset_before_the_server_reads_anything_is_harmless(self):
        with self.serve("-l", hard.LOCAL, "-m", "line") as srv:
            for _ in range(50):
                hard.linger_reset(harness.connect(srv.tcp))
            self.assertTrue(hard.echo_ok(srv.tcp, b"fine\n"))
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["closed"], counts["accepted"], counts)


@hard.both_thread_counts
class BrokenPipes(hard.ThreadVariant):
    def test_sigpipe_is_ignored_by_the_server(self):
        with self.serve("-l", hard.LOCAL) as srv:
            self.assertTrue(hard.sig_ignored(srv.proc.pid, signal.SIGPIPE))

    def test_client_closing_while_server_writes_a_large_echo_does_not_kill_it(self):
        with self.serve("-l", hard.LOCAL) as srv:
            for i in range(20):
                s = harness.connect(srv.tcp)
                # The server is mid-write (queue full, socket buffers full) when we vanish.
                hard.push_until_stalled(s, 256 * MIB, stall=0.2 * hard.SLOW)
                if i % 2:
                    # Half-closed first: the server is in CLOSE_WAIT, and the RST gives EPIPE.
                    s.shutdown(socket.SHUT_WR)
                s.close()  # unread data: the kernel sends an RST
                self.assertIsNone(srv.proc.poll(), "server died (status %r) at client %d"
                                  % (srv.proc.poll(), i))
            self.assertTrue(hard.echo_ok(srv.tcp, b"still alive"))
            counts = hard.stop_summary(self, srv)
            self.assertEqual(counts["reset"], 20, counts)
            self.assertEqual(counts["closed"], counts["accepted"], counts)


@hard.both_thread_counts
class ShortWrites(hard.ThreadVariant):
    def test_reader_with_a_tiny_window_gets_every_byte_of_a_large_echo(self):
        # A 4 KiB receive buffer: the server's writes come back short or EAGAIN all the time.
        with self.serve("-l", hard.LOCAL) as srv:
            stream_and_verify(self, srv.tcp, 8 * MIB, rcvbuf=4096, read_size=1000)
            self.assertEqual(hard.stop_summary(self, srv)["bytes_out"], 8 * MIB)

    def test_line_mode_reassembles_lines_split_across_reads(self):
        # Lines sent one byte per segment and big lines in one go, interleaved.
        with self.serve("-l", hard.LOCAL, "-m", "upper") as srv:
            with harness.connect(srv.tcp) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for b in b"split across many reads\n":
                    s.send(bytes([b]))
                s.sendall(b"k" * 50000 + b"\n")
                want = b"SPLIT ACROSS MANY READS\n" + b"K" * 50000 + b"\n"
                self.assertEqual(harness.recv_exactly(s, len(want)), want)

    def test_many_concurrent_streams_with_small_windows_are_all_exact(self):
        with self.serve("-l", hard.LOCAL) as srv:
            results = []
            threads = [threading.Thread(
                target=stream_and_verify, args=(self, srv.tcp, 2 * MIB),
                kwargs={"rcvbuf": 8192, "read_size": 3000, "results": results}, daemon=True)
                for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60 * hard.SLOW)
            self.assertEqual([r[0] for r in results], [True] * 8, results)


@hard.both_thread_counts
class Interrupts(hard.ThreadVariant):
    def test_stopping_and_continuing_the_server_mid_transfer_loses_no_bytes(self):
        # SIGSTOP/SIGCONT interrupt whatever the server is blocked in (epoll_wait, write).
        with self.serve("-l", hard.LOCAL) as srv:
            results = []
            t = threading.Thread(target=stream_and_verify, args=(self, srv.tcp, 16 * MIB),
                                 kwargs={"results": results}, daemon=True)
            t.start()
            for _ in range(20):
                if not t.is_alive():
                    break
                os.kill(srv.proc.pid, signal.SIGSTOP)
                os.kill(srv.proc.pid, signal.SIGCONT)
                t.join(0.02)
            t.join(60 * hard.SLOW)
            self.assertEqual(len(results), 1)
            self.assertTrue(results[0][0], results[0])
            self.assertEqual(hard.stop_summary(self, srv)["bytes_out"], 16 * MIB)

    def test_signal_arriving_mid_transfer_loses_no_bytes(self):
        # The first SIGTERM lands while the server is busy writing: EINTR anywhere must be
        # retried, and the drain finishes the stream.
        with self.serve("-l", hard.LOCAL) as srv:
            results = []
            t = threading.Thread(target=stream_and_verify, args=(self, srv.tcp, 16 * MIB),
                                 kwargs={"results": results}, daemon=True)
            # The transfer is under way once the server spends CPU on it: counted from now,
            # not from its start (under ASan starting alone takes more than 10 ms of CPU).
            idle_cpu = hard.cpu_seconds(srv.proc.pid)
            t.start()
            hard.wait_for(lambda: hard.cpu_seconds(srv.proc.pid) > idle_cpu + 0.02
                          or not t.is_alive(), 10 * hard.SLOW, "the transfer under way")
            srv.send_signal(signal.SIGTERM)
            t.join(60 * hard.SLOW)
            self.assertEqual(len(results), 1)
            self.assertTrue(results[0][0], results[0])
            status, err = srv.wait_exit()
            self.assertEqual(status, 0, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
