"""yodel serve over TCP: listening lines, modes, --once, --delay, logging, signals, load."""

import asyncio
import os
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import serve  # noqa: E402

LOCAL = "127.0.0.1:0"


class ListeningLines(unittest.TestCase):
    def test_port_zero_is_reported_as_the_real_port(self):
        with serve("-l", LOCAL) as srv:
            self.assertEqual(len(srv.listeners), 1)
            li = srv.listeners[0]
            self.assertEqual((li.scheme, li.host), ("tcp", "127.0.0.1"))
            self.assertGreater(li.port, 0)
            self.assertRegex(li.line, r"^listening on tcp://127\.0\.0\.1:\d+$")
            with harness.connect(li):
                pass
            status, _ = srv.stop()
            self.assertEqual(status, 0)

    def test_tcp_scheme_prefix_is_accepted(self):
        with serve("-l", "tcp://127.0.0.1:0") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"prefixed"), b"prefixed")
            self.assertEqual(srv.stop()[0], 0)

    def test_busy_port_exits_1_naming_the_address(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            addr = "127.0.0.1:%d" % busy.getsockname()[1]
            r = harness.yodel("serve", "-l", addr, timeout=harness.START_TIMEOUT)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertEqual(r.stdout, b"")
        self.assertIn(addr, err)

    def test_default_listens_on_tcp_and_udp_127_0_0_1_port_8888(self):
        if not harness.free_port(8888):
            self.skipTest("port 8888 is in use on 127.0.0.1")
        with serve(expect=2) as srv:
            lines = sorted(li.line for li in srv.listeners)
            self.assertEqual(
                lines, ["listening on tcp://127.0.0.1:8888", "listening on udp://127.0.0.1:8888"]
            )
            self.assertEqual(harness.exchange(srv.tcp, b"default raw\n"), b"default raw\n")
            self.assertEqual(harness.udp_exchange(srv.udp, b"dgram"), b"dgram")
            status, _ = srv.stop()
            self.assertEqual(status, 0)


class RawMode(unittest.TestCase):
    def test_raw_mode_echoes_until_client_half_closes(self):
        payload = bytes(range(256)) * 4 + b"\x00\x00tail without newline"
        with serve("-l", LOCAL, "-m", "raw") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(payload)
                # The echo comes while the connection is still open both ways.
                self.assertEqual(harness.recv_exactly(s, len(payload)), payload)
                s.sendall(b"more")
                self.assertEqual(harness.recv_exactly(s, 4), b"more")
                s.shutdown(socket.SHUT_WR)
                # After our EOF the server closes its side.
                self.assertEqual(harness.recv_until_eof(s), b"")
            self.assertEqual(srv.stop()[0], 0)

    def test_raw_mode_echoes_one_mebibyte_of_binary_bytes(self):
        payload = os.urandom(1 << 20)
        with serve("-l", LOCAL) as srv:
            got = harness.exchange(srv.tcp, payload, timeout=30 * harness.SLOW)
            self.assertEqual(len(got), len(payload))
            self.assertTrue(got == payload, "1 MiB echo differs")
            self.assertEqual(srv.stop()[0], 0)

    def test_raw_mode_once_replies_to_first_chunk_then_closes(self):
        with serve("-l", LOCAL, "--once") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"first chunk")
                # No half-close from us: the server closes on its own after the first reply.
                self.assertEqual(harness.recv_until_eof(s), b"first chunk")
            self.assertEqual(srv.stop()[0], 0)


class LineModes(unittest.TestCase):
    def test_line_mode_echoes_each_line(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"one\n")
                self.assertEqual(harness.recv_exactly(s, 4), b"one\n")
                s.sendall(b"two\nthree\n")
                self.assertEqual(harness.recv_exactly(s, 10), b"two\nthree\n")
                s.sendall(b"split ")
                s.sendall(b"line\n")
                self.assertEqual(harness.recv_exactly(s, 11), b"split line\n")
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(harness.recv_until_eof(s), b"")
            self.assertEqual(srv.stop()[0], 0)

    def test_line_mode_echoes_final_line_without_newline_at_eof(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"a\nlast"), b"a\nlast")
            self.assertEqual(srv.stop()[0], 0)

    def test_upper_mode_uppercases_ascii_letters_only(self):
        sent = "hello, World 123 äöü ß\n".encode() + b"\x00\xff\xe9abc\n"
        want = "HELLO, WORLD 123 äöü ß\n".encode() + b"\x00\xff\xe9ABC\n"
        with serve("-l", LOCAL, "-m", "upper") as srv:
            self.assertEqual(harness.exchange(srv.tcp, sent), want)
            self.assertEqual(srv.stop()[0], 0)

    def test_line_mode_once_replies_to_first_line_then_closes(self):
        with serve("-l", LOCAL, "-m", "line", "--once") as srv:
            with harness.connect(srv.tcp) as s:
                s.sendall(b"first\nsecond\n")
                self.assertEqual(harness.recv_until_eof(s), b"first\n")
            self.assertEqual(srv.stop()[0], 0)


class Delay(unittest.TestCase):
    def test_delay_holds_the_reply_for_the_delay(self):
        with serve("-l", LOCAL, "-m", "line", "--delay", "300ms") as srv:
            with harness.connect(srv.tcp) as s:
                t0 = time.monotonic()
                s.sendall(b"later\n")
                self.assertEqual(harness.recv_exactly(s, 6), b"later\n")
                elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 0.29)
            self.assertLess(elapsed, 5 * harness.SLOW)
            self.assertEqual(srv.stop()[0], 0)

    def test_delay_does_not_block_other_connections(self):
        delay = 1.0
        n = 4

        async def client(li, i):
            reader, writer = await asyncio.open_connection(li.host, li.port)
            msg = b"client %d\n" % i
            writer.write(msg)
            await writer.drain()
            got = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return got == msg

        async def all_clients(li):
            return await asyncio.gather(*(client(li, i) for i in range(n)))

        with serve("-l", LOCAL, "-m", "line", "--delay", "1s") as srv:
            t0 = time.monotonic()
            ok = harness.run_async(all_clients(srv.tcp))
            elapsed = time.monotonic() - t0
            self.assertEqual(ok, [True] * n)
            # Serialised replies would take n delays; concurrent ones about one.
            self.assertGreaterEqual(elapsed, delay * 0.95)
            self.assertLess(elapsed, delay * 1.8 + (2 if harness.VALGRIND else 0))
            self.assertEqual(srv.stop()[0], 0)


class Logging(unittest.TestCase):
    def test_verbose_logs_each_connection_with_the_peer_address(self):
        with serve("-l", LOCAL, "-m", "line", "-v") as srv:
            with harness.connect(srv.tcp) as s:
                peer = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(b"log me\n")
                harness.recv_exactly(s, 7)
                s.shutdown(socket.SHUT_WR)
                harness.recv_until_eof(s)
            # The close is logged once the server has released the connection, which may be
            # just after we see its EOF.
            err = srv.wait_stderr(
                lambda t: any(peer in l and "close" in l.lower() for l in t.splitlines()),
                what="a close log line naming %s" % peer)
            mine = [l for l in err.splitlines() if peer in l]
            self.assertTrue(any("connect" in l.lower() for l in mine), mine)
            self.assertTrue(any("close" in l.lower() for l in mine), mine)
            status, _ = srv.stop()
            self.assertEqual(status, 0)

    def test_default_output_is_quiet_until_shutdown(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            with harness.connect(srv.tcp) as s:
                port = s.getsockname()[1]
                s.sendall(b"quiet\n")
                harness.recv_exactly(s, 6)
                s.shutdown(socket.SHUT_WR)
                harness.recv_until_eof(s)
            # The connection is over, so any per-connection log would be written by now.
            self.assertEqual(srv.read_stderr(), "")
            status, err = srv.stop()
            self.assertEqual(status, 0)
            self.assertNotIn(":%d" % port, err)
            self.assertLessEqual(len(harness.stderr_lines(err)), 20, err)


class Signals(unittest.TestCase):
    def assert_clean_exit_on(self, sig):
        with serve("-l", LOCAL) as srv:
            self.assertEqual(harness.exchange(srv.tcp, b"before signal"), b"before signal")
            status, err = srv.stop(sig)
            self.assertEqual(status, 0, err)
            # A statistics summary is always printed at shutdown.
            self.assertNotEqual(err.strip(), "")

    def test_sigterm_exits_0_with_a_summary(self):
        self.assert_clean_exit_on(signal.SIGTERM)

    def test_sigint_exits_0_with_a_summary(self):
        self.assert_clean_exit_on(signal.SIGINT)

    def test_sigterm_just_after_the_listening_line_exits_0(self):
        # Scripts wait for the listening lines and may stop the server at once: by then the
        # signals must already be handled. The race is narrow, hence several rounds.
        rounds = 3 if harness.VALGRIND else 20
        for i in range(rounds):
            with serve("-l", LOCAL) as srv:
                status, err = srv.stop()
                self.assertEqual(status, 0, "round %d: status %d, stderr %r" % (i, status, err))

    def test_data_received_before_the_signal_is_still_echoed(self):
        with serve("-l", LOCAL, "-m", "line", "--delay", "500ms", "-v") as srv:
            with harness.connect(srv.tcp) as s:
                peer = "127.0.0.1:%d" % s.getsockname()[1]
                s.sendall(b"in flight\n")
                # Wait until the server has logged more than the connection itself (it has
                # read the line), then signal while the delayed reply is pending.
                srv.wait_stderr(lambda t: len([l for l in t.splitlines() if peer in l]) >= 2,
                                what="a log line showing the line was read")
                srv.send_signal(signal.SIGTERM)
                self.assertEqual(harness.recv_until_eof(s), b"in flight\n")
            status, err = srv.wait_exit()
            self.assertEqual(status, 0, err)

    def test_summary_counts_connections_and_bytes(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            for i in range(3):
                harness.exchange(srv.tcp, b"count me\n")
            status, err = srv.stop()
            self.assertEqual(status, 0)
            # 3 connections of 9 bytes each way: "accepted=3 ... bytes_in=27 bytes_out=27".
            self.assertRegex(err, r"\baccepted\W{0,2}3\b")
            self.assertRegex(err, r"\bclosed\W{0,2}3\b")
            self.assertRegex(err, r"\bmessages\W{0,2}3\b")
            self.assertRegex(err, r"\bbytes_in\W{0,2}27\b")
            self.assertRegex(err, r"\bbytes_out\W{0,2}27\b")


class Load(unittest.TestCase):
    def test_two_hundred_concurrent_clients_each_get_their_own_data_back(self):
        n = 200

        async def client(li, i, start):
            reader, writer = await asyncio.open_connection(li.host, li.port)
            await start.wait()
            msg = (b"client %03d " % i) * (i + 1) + b"\n"
            writer.write(msg)
            await writer.drain()
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return got == msg

        async def all_clients(li):
            start = asyncio.Event()
            tasks = [asyncio.create_task(client(li, i, start)) for i in range(n)]
            await asyncio.sleep(0)
            start.set()
            return await asyncio.gather(*tasks)

        with serve("-l", LOCAL, "-m", "line") as srv:
            ok = harness.run_async(all_clients(srv.tcp), timeout=30 * harness.SLOW)
            self.assertEqual(sum(ok), n)
            self.assertEqual(srv.stop()[0], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
