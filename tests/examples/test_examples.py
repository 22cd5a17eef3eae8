"""Runs every program of examples/ on real sockets, as the tutorials run them.

Servers start on 127.0.0.1 port 0; the test waits for their "listening on" line, talks to
them with the matching C example client, a Python asyncio client written like the tutorial,
or nc, then stops them with SIGTERM (or SIGINT) by PID and checks they exit 0. Every wait has
a deadline. The paths of the example binaries come from CMake as $EXAMPLE_<NAME>.

    python3 test_examples.py [TestClass[.test_name] ...]
"""

import asyncio
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

# Deadlines, in seconds. Generous: the tests also run under ASan on a shared 2-core machine.
START_TIMEOUT = 10.0
RUN_TIMEOUT = 20.0
IO_TIMEOUT = 10.0

ECHO_SERVER_DELAY = 0.2  # DELAY_MS in examples/echo_server.c

LISTEN_RE = re.compile(r"listening on ((tcp|udp)://(\S+):(\d+))")


def binary(name):
    path = os.environ.get("EXAMPLE_" + name.upper())
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("$EXAMPLE_%s is not an executable (got %r)" % (name.upper(), path))
    return path


def run_client(name, *args, timeout=RUN_TIMEOUT):
    """Runs an example client to its end; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [binary(name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def describe(proc):
    return "exit %s\n--- stdout\n%s--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr)


def free_port(kind=socket.SOCK_STREAM):
    """A port nothing listens on right now (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """An example server process; its stdout and stderr are collected by reader threads."""

    def __init__(self, name, *args):
        self.name = name
        self.proc = subprocess.Popen(
            [binary(name), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output = {"stdout": "", "stderr": ""}
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "stderr"), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        try:
            match = self.wait_for("stdout", LISTEN_RE, START_TIMEOUT)
        except AssertionError:
            self.kill()
            raise
        self.address = match.group(1)  # e.g. tcp://127.0.0.1:40123, as the server printed it
        self.host = match.group(3)
        self.port = int(match.group(4))

    def _read(self, stream, key):
        for line in stream:
            with self.changed:
                self.output[key] += line
                self.changed.notify_all()
        with self.changed:
            self.output[key + " closed"] = True
            self.changed.notify_all()

    def wait_for(self, key, pattern, timeout=IO_TIMEOUT):
        """Waits until `pattern` (a regex) appears in the output `key`; returns the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                match = regex.search(self.output[key])
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or self.output.get(key + " closed"):
                    raise AssertionError(
                        "%s: no %r on %s within %.0f s (exit %s)\n%s"
                        % (self.name, regex.pattern, key, timeout, self.proc.poll(), self.text())
                    )
                self.changed.wait(left)

    def wait_until(self, key, predicate, what, timeout=IO_TIMEOUT):
        """Waits until predicate(output of `key`) is true."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self.output[key]):
                left = deadline - time.monotonic()
                if left <= 0 or self.output.get(key + " closed"):
                    raise AssertionError(
                        "%s: no %s within %.0f s\n%s" % (self.name, what, timeout, self.text())
                    )
                self.changed.wait(left)

    def text(self):
        with self.changed:
            return "--- stdout\n%s--- stderr\n%s" % (self.output["stdout"], self.output["stderr"])

    def stop(self, signum=signal.SIGTERM):
        """Signals the server and returns its exit status once it has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            status = self.proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                "%s did not exit within %.0f s of %s" % (self.name, RUN_TIMEOUT, signum)
            )
        for reader in self.readers:
            reader.join(IO_TIMEOUT)
        return status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ExampleTest(unittest.TestCase):
    def start(self, name, *args):
        server = Server(name, *args)
        self.addCleanup(server.kill)
        return server

    def assert_stops_cleanly(self, server, signum=signal.SIGTERM):
        status = server.stop(signum)
        why = "%s exited %s after %s\n%s" % (server.name, status, signum, server.text())
        self.assertEqual(status, 0, why)

    def run_async(self, coroutine):
        return asyncio.run(asyncio.wait_for(coroutine, IO_TIMEOUT))


async def tcp_echo_client(host, port, message):
    """The tutorial's client: open_connection, write a line, readline, close."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(message.encode())
    await writer.drain()
    data = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return data.decode()


class TestEchoServer(ExampleTest):
    def test_echo_client_gets_hello_there_back_and_server_logs_peer(self):
        server = self.start("echo_server", "127.0.0.1:0")
        client = run_client("echo_client", server.address)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("received: Hello There\n", client.stdout)
        server.wait_for("stderr", r"received 'Hello There' from 127\.0\.0\.1:\d+")
        server.wait_for("stderr", r"send 'Hello There' to 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_delay_does_not_block_other_clients(self):
        server = self.start("echo_server", "127.0.0.1:0")

        async def ten_at_once():
            messages = ["client %d says hi\n" % i for i in range(10)]
            began = time.monotonic()
            clients = [tcp_echo_client(server.host, server.port, m) for m in messages]
            replies = await asyncio.gather(*clients)
            return messages, replies, time.monotonic() - began

        messages, replies, elapsed = self.run_async(ten_at_once())
        self.assertEqual(replies, messages)
        # Each reply waits DELAY_MS; one after the other, ten would take 10 x the delay.
        self.assertGreaterEqual(elapsed, ECHO_SERVER_DELAY * 0.9)
        self.assertLess(elapsed, ECHO_SERVER_DELAY * 5, "the delays ran one after the other")
        self.assert_stops_cleanly(server)

    def test_ten_clients_each_get_their_own_message(self):
        server = self.start("echo_server", "127.0.0.1:0")
        client = run_client("ten_clients", server.address)
        self.assertEqual(client.returncode, 0, describe(client))
        for i in range(10):
            line = "client %d received: Hello There from client %d\n" % (i, i)
            self.assertIn(line, client.stdout)
        self.assertIn("10 of 10 clients got their own message back", client.stdout)
        self.assert_stops_cleanly(server)

    def test_client_that_half_closes_after_its_line_still_gets_the_reply(self):
        server = self.start("echo_server", "127.0.0.1:0")

        async def write_eof_then_read():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"early eof\n")
            writer.write_eof()
            data = await reader.read()
            writer.close()
            return data

        self.assertEqual(self.run_async(write_eof_then_read()), b"early eof\n")
        self.assert_stops_cleanly(server)

    def test_sigint_during_a_pending_reply_stops_cleanly(self):
        server = self.start("echo_server", "127.0.0.1:0")
        with socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"never answered\n")
            server.wait_for("stderr", r"received 'never answered' from")
            # The reply's timer is pending and the connection open: both must be freed.
            self.assert_stops_cleanly(server, signal.SIGINT)

    def test_echo_client_fails_when_nothing_listens(self):
        client = run_client("echo_client", "127.0.0.1:%d" % free_port())
        self.assertNotEqual(client.returncode, 0, describe(client))


class TestStreamServer(ExampleTest):
    def test_parts_client_gets_the_whole_message_after_eof(self):
        server = self.start("stream_server", "127.0.0.1:0")
        client = run_client("parts_client", server.address)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("received: 'This is the message. It will be sent in parts.'", client.stdout)
        server.wait_for("stderr", r"connection from 127\.0\.0\.1:\d+")
        server.wait_for("stderr", r"EOF")
        self.assert_stops_cleanly(server)

    def test_tutorial_client_reads_until_eof(self):
        server = self.start("stream_server", "127.0.0.1:0")

        async def in_parts():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            for part in (b"This is the message. ", b"It will be sent ", b"in parts."):
                writer.write(part)
                await writer.drain()
            writer.write_eof()
            data = await reader.read()
            writer.close()
            return data

        whole = b"This is the message. It will be sent in parts."
        self.assertEqual(self.run_async(in_parts()), whole)
        self.assert_stops_cleanly(server)

    def test_megabytes_come_back_whole_through_back_pressure(self):
        server = self.start("stream_server", "127.0.0.1:0")
        payload = bytes(range(256)) * (4 * 4096)  # 4 MiB, far past the 64 KiB watermark

        async def big():
            reader, writer = await asyncio.open_connection(server.host, server.port)

            async def send():
                writer.write(payload)
                await writer.drain()
                writer.write_eof()

            sender = asyncio.ensure_future(send())
            data = await reader.read()
            await sender
            writer.close()
            return data

        data = self.run_async(big())
        self.assertEqual(len(data), len(payload))
        self.assertTrue(data == payload, "the echo differs from what was sent")
        self.assert_stops_cleanly(server)

    def test_threaded_blocking_clients_get_every_reply(self):
        server = self.start("stream_server", "127.0.0.1:0")
        client = run_client("threaded_client", server.address, "4", "5")
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("20 of 20 replies matched", client.stdout)
        self.assert_stops_cleanly(server)


class TestThreadedClient(ExampleTest):
    def test_threads_against_the_delaying_echo_server(self):
        server = self.start("echo_server", "127.0.0.1:0")
        client = run_client("threaded_client", server.address, "4", "5")
        self.assertEqual(client.returncode, 0, describe(client))
        for i in range(4):
            self.assertIn("thread %d: 5 of 5 echoed" % i, client.stdout)
        self.assertIn("20 of 20 replies matched", client.stdout)
        logged = re.compile(r"received 'thread \d, message \d' from 127\.0\.0\.1:\d+")
        server.wait_until("stderr", lambda log: len(logged.findall(log)) == 20, "20 logged lines")
        self.assert_stops_cleanly(server)

    def test_fails_when_nothing_listens(self):
        client = run_client("threaded_client", "127.0.0.1:%d" % free_port(), "2", "1")
        self.assertEqual(client.returncode, 1, describe(client))
        self.assertIn("0 of 2 replies matched", client.stdout)

    def test_bad_address_is_a_usage_error(self):
        client = run_client("threaded_client", "not an address")
        self.assertEqual(client.returncode, 2, describe(client))


class TestProtocolServer(ExampleTest):
    def test_protocol_client_sees_every_event_and_the_server_close(self):
        server = self.start("protocol_server", "127.0.0.1:0")
        client = run_client("protocol_client", server.address)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("data sent: 'Hello World!'", client.stdout)
        self.assertIn("data received: 'Hello World!'", client.stdout)
        self.assertIn("the server closed the connection\n", client.stdout)
        # The four events, in their order (wait_for fails when they do not all appear).
        server.wait_for(
            "stderr",
            r"(?s)connection_made: connection from 127\.0\.0\.1:\d+\n"
            r".*data_received: 'Hello World!'\n.*eof_received.*\n.*connection_lost: closed",
        )
        self.assert_stops_cleanly(server)

    def test_protocol_client_fails_when_nothing_listens(self):
        client = run_client("protocol_client", "127.0.0.1:%d" % free_port())
        self.assertNotEqual(client.returncode, 0, describe(client))


class TestYellServer(ExampleTest):
    def test_nc_lines_come_back_upper_cased(self):
        server = self.start("yell_server", "127.0.0.1:0")
        nc = subprocess.run(
            ["nc", "-N", "-w", "5", server.host, str(server.port)],
            input="hello\nWorld 42, ok?\nlast line without newline",
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        self.assertEqual(nc.returncode, 0, describe(nc))
        self.assertEqual(nc.stdout, "HELLO\nWORLD 42, OK?\nLAST LINE WITHOUT NEWLINE")
        self.assert_stops_cleanly(server)

    def test_each_line_is_answered_before_the_next_is_sent(self):
        server = self.start("yell_server", "127.0.0.1:0")

        async def conversation():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            replies = []
            for line in (b"one\n", b"Two\n", b"three!\n"):
                writer.write(line)
                replies.append(await reader.readline())
            writer.close()
            return replies

        self.assertEqual(self.run_async(conversation()), [b"ONE\n", b"TWO\n", b"THREE!\n"])
        self.assert_stops_cleanly(server)


class TestStatsServer(ExampleTest):
    def test_counts_echoed_messages_and_reports_a_rate_every_second(self):
        server = self.start("stats_server", "127.0.0.1:0")

        async def fifty():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            replies = []
            for i in range(50):
                writer.write(b"message %d\n" % i)
                replies.append(await reader.readline())
            writer.close()
            return replies

        self.assertEqual(self.run_async(fifty()), [b"message %d\n" % i for i in range(50)])
        server.wait_for("stderr", r"\b50 messages in total")
        rates = [int(r) for r in re.findall(r"(\d+) messages/s", server.text())]
        self.assertTrue(any(rate > 0 for rate in rates), server.text())
        self.assert_stops_cleanly(server)


class TestUdp(ExampleTest):
    def test_udp_client_gets_its_datagram_back(self):
        server = self.start("udp_server", "udp://127.0.0.1:0")
        self.assertTrue(server.address.startswith("udp://"), server.address)
        client = run_client("udp_client", server.address)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("received: 'Hello World!'", client.stdout)
        server.wait_for("stderr", r"received 'Hello World!' from 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_each_datagram_returns_to_its_sender_whole(self):
        server = self.start("udp_server", "udp://127.0.0.1:0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM
        ) as b:
            a.settimeout(IO_TIMEOUT)
            b.settimeout(IO_TIMEOUT)
            a.sendto(b"from a", (server.host, server.port))
            b.sendto(b"from b" * 100, (server.host, server.port))
            self.assertEqual(a.recvfrom(65536)[0], b"from a")
            self.assertEqual(b.recvfrom(65536)[0], b"from b" * 100)
        self.assert_stops_cleanly(server)

    def test_udp_client_gives_up_without_a_server(self):
        client = run_client("udp_client", "udp://127.0.0.1:%d" % free_port(socket.SOCK_DGRAM))
        self.assertNotEqual(client.returncode, 0, describe(client))


class TestTwoServers(ExampleTest):
    def test_two_ephemeral_servers_in_one_loop_both_answer(self):
        client = run_client("two_servers", "127.0.0.1")
        self.assertEqual(client.returncode, 0, describe(client))
        listening = r"server \d listening on tcp://127\.0\.0\.1:(\d+) \(port (\d+)\)"
        ports = re.findall(listening, client.stdout)
        self.assertEqual(len(ports), 2, client.stdout)
        for printed, read_back in ports:
            self.assertEqual(printed, read_back)
            self.assertNotEqual(printed, "0")
        self.assertNotEqual(ports[0][0], ports[1][0])
        self.assertIn("received: hello, first server\n", client.stdout)
        self.assertIn("received: HELLO, SECOND SERVER\n", client.stdout)
        self.assertIn("both servers answered", client.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
