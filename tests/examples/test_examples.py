"""Runs every program of examples/ on real sockets, as the tutorials run them.

Servers start on 127.0.0.1 port 0; the test waits for their "listening on" line, talks to
them with the matching C example client, a Python asyncio client written like the tutorial,
or nc, then stops them with SIGTERM (or SIGINT) by PID and checks they exit 0. Every wait has
a deadline. The paths of the example binaries come from CMake as $EXAMPLE_<NAME>.

    python3 test_examples.py [TestClass[.test_name] ...]
"""

import ast
import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# Deadlines, in seconds. Generous: the tests also run under ASan on a shared 2-core machine.
START_TIMEOUT = 10.0
RUN_TIMEOUT = 20.0
IO_TIMEOUT = 10.0

ECHO_SERVER_DELAY = 0.2  # DELAY_MS in examples/echo_server.c

LISTEN_RE = re.compile(r"listening on ((tcp|udp|tls)://(\S+):(\d+))")


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


class Process:
    """A child process whose stdout and stderr reader threads collect as text."""

    def __init__(self, name, argv):
        self.name = name
        self.proc = subprocess.Popen(
            argv,
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
        """Signals the process and returns its exit status once it has exited."""
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
        for reader in self.readers:
            reader.join(IO_TIMEOUT)  # the pipes end with the process
        self.proc.stdout.close()
        self.proc.stderr.close()


class Server(Process):
    """An example server: started, then its "listening on" line read for its address."""

    def __init__(self, name, *args):
        super().__init__(name, [binary(name), *args])
        try:
            match = self.wait_for("stdout", LISTEN_RE, START_TIMEOUT)
        except AssertionError:
            self.kill()
            raise
        self.address = match.group(1)  # e.g. tcp://127.0.0.1:40123, as the server printed it
        self.host = match.group(3)
        self.port = int(match.group(4))


def bound_port(pid, kind, timeout=START_TIMEOUT):
    """The IPv4 port a process listens on (TCP) or has bound (UDP), read from /proc: so a
    tutorial server binds port 0 as written and prints nothing it did not print."""
    table, state = ("tcp", "0A") if kind == socket.SOCK_STREAM else ("udp", None)
    deadline = time.monotonic() + timeout
    while True:
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:  # closed since listdir
                continue
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
        with open("/proc/%d/net/%s" % (pid, table)) as sockets:
            for row in list(sockets)[1:]:
                fields = row.split()  # sl local_address rem_address st ... inode
                if fields[9] in inodes and (state is None or fields[3] == state):
                    return int(fields[1].split(":")[1], 16)
        if time.monotonic() > deadline:
            raise AssertionError("pid %d bound no %s port within %.0f s" % (pid, table, timeout))
        time.sleep(0.02)  # polled: the program binds when its loop gets there


def at_port(program, tutorial_port, port):
    """The tutorial's program with only its port changed."""
    assert program.count(str(tutorial_port)) == 1, "the port must appear once"
    return program.replace(str(tutorial_port), str(port))


class TutorialServer(Process):
    """A tutorial's Python server, run as written but on port 0; the port is read from /proc."""

    def __init__(self, name, program, tutorial_port, kind=socket.SOCK_STREAM):
        code = at_port(program, tutorial_port, 0)
        super().__init__(name, [sys.executable, "-u", "-c", code])
        try:
            self.port = bound_port(self.proc.pid, kind)
        except AssertionError:
            self.kill()
            raise AssertionError("%s did not start\n%s" % (name, self.text()))


def run_tutorial_client(program, tutorial_port, port, timeout=IO_TIMEOUT):
    """Runs a tutorial's Python client against `port` to its end; a hang is a failure."""
    code = at_port(program, tutorial_port, port)
    try:
        return subprocess.run(
            [sys.executable, "-u", "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as hung:  # run() has killed it
        raise AssertionError(
            "the tutorial's client did not finish within %.0f s\n--- stdout\n%s--- stderr\n%s"
            % (timeout, hung.stdout, hung.stderr)
        )


# ---- The tutorials' Python programs --------------------------------------------------------
# Each as its tutorial shows it: the same calls in the same order, the same output; only the
# address is the example's (the test replaces the tutorial's port). PyMOTW's programs predate
# asyncio.run and pass loop= arguments that Python 3.10 removed: they are written here with
# asyncio.run and gather, their coroutines and protocols unchanged.

# Python docs, asyncio "Streams": TCP echo client using streams.
DOCS_TCP_ECHO_CLIENT = r"""
import asyncio

async def tcp_echo_client(message):
    reader, writer = await asyncio.open_connection(
        '127.0.0.1', 8888)

    print(f'Send: {message!r}')
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f'Received: {data.decode()!r}')

    print('Close the connection')
    writer.close()
    await writer.wait_closed()

asyncio.run(tcp_echo_client('Hello World!'))
"""

# Python docs, asyncio "Streams": TCP echo server using streams.
DOCS_TCP_ECHO_SERVER = r"""
import asyncio

async def handle_echo(reader, writer):
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info('peername')

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()
    await writer.wait_closed()

async def main():
    server = await asyncio.start_server(
        handle_echo, '127.0.0.1', 8888)

    addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
    print(f'Serving on {addrs}')

    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

# Python docs, asyncio "Transports and Protocols": TCP Echo Server.
DOCS_PROTOCOL_SERVER = r"""
import asyncio


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        peername = transport.get_extra_info('peername')
        print('Connection from {}'.format(peername))
        self.transport = transport

    def data_received(self, data):
        message = data.decode()
        print('Data received: {!r}'.format(message))

        print('Send: {!r}'.format(message))
        self.transport.write(data)

        print('Close the client socket')
        self.transport.close()


async def main():
    loop = asyncio.get_running_loop()

    server = await loop.create_server(
        lambda: EchoServerProtocol(),
        '127.0.0.1', 8888)

    async with server:
        await server.serve_forever()


asyncio.run(main())
"""

# Python docs, asyncio "Transports and Protocols": TCP Echo Client.
DOCS_PROTOCOL_CLIENT = r"""
import asyncio


class EchoClientProtocol(asyncio.Protocol):
    def __init__(self, message, on_con_lost):
        self.message = message
        self.on_con_lost = on_con_lost

    def connection_made(self, transport):
        transport.write(self.message.encode())
        print('Data sent: {!r}'.format(self.message))

    def data_received(self, data):
        print('Data received: {!r}'.format(data.decode()))

    def connection_lost(self, exc):
        print('The server closed the connection')
        self.on_con_lost.set_result(True)


async def main():
    loop = asyncio.get_running_loop()

    on_con_lost = loop.create_future()
    message = 'Hello World!'

    transport, protocol = await loop.create_connection(
        lambda: EchoClientProtocol(message, on_con_lost),
        '127.0.0.1', 8888)

    try:
        await on_con_lost
    finally:
        transport.close()


asyncio.run(main())
"""

# Python docs, asyncio "Transports and Protocols": UDP Echo Server.
DOCS_UDP_SERVER = r"""
import asyncio


class EchoServerProtocol:
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        message = data.decode()
        print('Received %r from %s' % (message, addr))
        print('Send %r to %s' % (message, addr))
        self.transport.sendto(data, addr)


async def main():
    print("Starting UDP server")

    loop = asyncio.get_running_loop()

    transport, protocol = await loop.create_datagram_endpoint(
        lambda: EchoServerProtocol(),
        local_addr=('127.0.0.1', 9999))

    try:
        await asyncio.sleep(3600)
    finally:
        transport.close()


asyncio.run(main())
"""

# Python docs, asyncio "Transports and Protocols": UDP Echo Client.
DOCS_UDP_CLIENT = r"""
import asyncio


class EchoClientProtocol:
    def __init__(self, message, on_con_lost):
        self.message = message
        self.transport = None
        self.on_con_lost = on_con_lost

    def connection_made(self, transport):
        self.transport = transport
        print('Send:', self.message)
        self.transport.sendto(self.message.encode())

    def datagram_received(self, data, addr):
        print("Received:", data.decode())

        print("Close the socket")
        self.transport.close()

    def error_received(self, exc):
        print('Error received:', exc)

    def connection_lost(self, exc):
        print("Connection closed")
        self.on_con_lost.set_result(True)


async def main():
    loop = asyncio.get_running_loop()

    on_con_lost = loop.create_future()
    message = "Hello World!"

    transport, protocol = await loop.create_datagram_endpoint(
        lambda: EchoClientProtocol(message, on_con_lost),
        remote_addr=('127.0.0.1', 9999))

    try:
        await on_con_lost
    finally:
        transport.close()


asyncio.run(main())
"""

# PyMOTW-3 asyncio: echo server with coroutines (reader.read(128) until EOF).
PYMOTW_COROUTINE_SERVER = r"""
import asyncio
import logging
import sys


async def echo(reader, writer):
    address = writer.get_extra_info('peername')
    log = logging.getLogger('echo_{}_{}'.format(*address))
    log.debug('connection accepted')
    while True:
        data = await reader.read(128)
        if data:
            log.debug('received {!r}'.format(data))
            writer.write(data)
            await writer.drain()
            log.debug('sent {!r}'.format(data))
        else:
            log.debug('closing')
            writer.close()
            return


logging.basicConfig(level=logging.DEBUG, format='%(name)s: %(message)s', stream=sys.stderr)


async def main():
    server = await asyncio.start_server(echo, '127.0.0.1', 10000)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

# PyMOTW-3 asyncio: echo client with coroutines (three parts, write_eof, read until EOF),
# two clients at once.
PYMOTW_COROUTINE_CLIENT = r"""
import asyncio
import sys


async def echo_client(server_address, messages, num):

    def report(text):
        print('{}: {}'.format(num, text), file=sys.stderr)

    report('connecting to {} port {}'.format(*server_address))
    reader, writer = await asyncio.open_connection(*server_address)

    for msg in messages:
        writer.write(msg)
        report('sending {!r}'.format(msg))
    writer.write_eof()
    await writer.drain()

    report('waiting for response')
    while True:
        data = await reader.read(128)
        if data:
            report('received {!r}'.format(data))
        else:
            report('closing')
            writer.close()
            return


messages = [
    b'This is the message. ',
    b'It will be sent ',
    b'in parts.',
]
server_address = ('127.0.0.1', 10000)


async def main():
    await asyncio.gather(*(echo_client(server_address, messages, i) for i in range(1, 3)))

asyncio.run(main())
"""

# PyMOTW-3 asyncio: echo server with a Protocol class (echo; at EOF write_eof, then close).
PYMOTW_PROTOCOL_SERVER = r"""
import asyncio
import logging
import sys


class EchoServer(asyncio.Protocol):

    def connection_made(self, transport):
        self.transport = transport
        self.address = transport.get_extra_info('peername')
        self.log = logging.getLogger('EchoServer_{}_{}'.format(*self.address))
        self.log.debug('connection accepted')

    def data_received(self, data):
        self.log.debug('received {!r}'.format(data))
        self.transport.write(data)
        self.log.debug('sent {!r}'.format(data))

    def eof_received(self):
        self.log.debug('received EOF')
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def connection_lost(self, error):
        if error:
            self.log.error('ERROR: {}'.format(error))
        else:
            self.log.debug('closing')
        super().connection_lost(error)


logging.basicConfig(level=logging.DEBUG, format='%(name)s: %(message)s', stream=sys.stderr)


async def main():
    server = await asyncio.get_running_loop().create_server(EchoServer, '127.0.0.1', 10000)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

# PyMOTW-3 asyncio: echo client with a Protocol class, two clients at once.
PYMOTW_PROTOCOL_CLIENT = r"""
import asyncio
import functools
import sys


class EchoClient(asyncio.Protocol):

    def __init__(self, messages, future, num):
        self.messages = messages
        self.f = future
        self.num = num

    def report(self, text):
        print('{}: {}'.format(self.num, text), file=sys.stderr)

    def connection_made(self, transport):
        self.transport = transport
        self.address = transport.get_extra_info('peername')
        self.report('connecting to {} port {}'.format(*self.address))
        for msg in self.messages:
            transport.write(msg)
            self.report('sending {!r}'.format(msg))
        if transport.can_write_eof():
            transport.write_eof()

    def data_received(self, data):
        self.report('received {!r}'.format(data))

    def eof_received(self):
        self.report('received EOF')
        self.transport.close()

    def connection_lost(self, exc):
        self.report('server closed connection')
        self.transport.close()
        if not self.f.done():
            self.f.set_result(True)


messages = [
    b'This is the message. ',
    b'It will be sent ',
    b'in parts.',
]
server_address = ('127.0.0.1', 10000)


async def main():
    loop = asyncio.get_running_loop()
    done = []
    for i in range(1, 3):
        f = loop.create_future()
        await loop.create_connection(
            functools.partial(EchoClient, messages, f, i), *server_address)
        done.append(f)
    await asyncio.gather(*done)

asyncio.run(main())
"""

# The tutorials' blocking client, in threads: connect, send a line, read the reply, close.
BLOCKING_CLIENTS_IN_THREADS = r"""
import socket
import threading


def client(n):
    with socket.create_connection(('127.0.0.1', 8888)) as sock:
        sock.sendall('Hello from thread {}\n'.format(n).encode())
        print(sock.recv(100).decode(), end='', flush=True)


threads = [threading.Thread(target=client, args=(n,)) for n in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""

PYMOTW_MESSAGE = b"This is the message. It will be sent in parts."


def pymotw_replies(stderr):
    """What each of PyMOTW's two clients logged as received, joined, by client number."""
    replies = {}
    for num, data in re.findall(r"^(\d): received (b'.*')$", stderr, re.M):
        replies[num] = replies.get(num, b"") + ast.literal_eval(data)
    return replies


class ExampleTest(unittest.TestCase):
    def start(self, name, *args):
        server = Server(name, *args)
        self.addCleanup(server.kill)
        return server

    def assert_stops_cleanly(self, server, signum=signal.SIGTERM):
        status = server.stop(signum)
        why = "%s exited %s after %s\n%s" % (server.name, status, signum, server.text())
        self.assertEqual(status, 0, why)

    def start_tutorial(self, name, program, tutorial_port, kind=socket.SOCK_STREAM):
        server = TutorialServer(name, program, tutorial_port, kind)
        self.addCleanup(server.kill)
        return server

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
        self.assertIn("Send: 'Hello There'\nReceived: 'Hello There'\n", client.stdout)
        server.wait_for("stderr", r"Received 'Hello There' from 127\.0\.0\.1:\d+")
        server.wait_for("stderr", r"Send: 'Hello There'\nClose the connection")
        self.assert_stops_cleanly(server)

    def test_echo_server_answers_the_docs_tcp_echo_client_without_a_newline(self):
        server = self.start("echo_server", "127.0.0.1:0")
        client = run_tutorial_client(DOCS_TCP_ECHO_CLIENT, 8888, server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertEqual(
            client.stdout,
            "Send: 'Hello World!'\nReceived: 'Hello World!'\nClose the connection\n",
        )
        server.wait_for("stderr", r"Received 'Hello World!' from 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_echo_client_gets_its_line_back_from_the_docs_handle_echo(self):
        server = self.start_tutorial("handle_echo", DOCS_TCP_ECHO_SERVER, 8888)
        client = run_client("echo_client", "127.0.0.1:%d" % server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("Received: 'Hello There'\n", client.stdout)
        server.wait_for("stdout", r"Received 'Hello There\\n' from \('127\.0\.0\.1', \d+\)")

    def test_ten_clients_get_their_own_lines_back_from_the_docs_handle_echo(self):
        server = self.start_tutorial("handle_echo", DOCS_TCP_ECHO_SERVER, 8888)
        client = run_client("ten_clients", "127.0.0.1:%d" % server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("10 of 10 clients got their own message back", client.stdout)

    def test_echo_server_answers_the_tutorials_blocking_clients_in_threads(self):
        server = self.start("echo_server", "127.0.0.1:0")
        client = run_tutorial_client(BLOCKING_CLIENTS_IN_THREADS, 8888, server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        replies = sorted(client.stdout.splitlines())
        self.assertEqual(replies, ["Hello from thread %d" % n for n in range(5)])
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
            server.wait_for("stderr", r"Received 'never answered' from")
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
        whole = "This is the message. It will be sent in parts."
        self.assertIn("the whole reply: '%s'" % whole, client.stdout)
        server.wait_for("stderr", r"connection accepted from 127\.0\.0\.1:\d+")
        server.wait_for("stderr", r"EOF")
        self.assert_stops_cleanly(server)

    def test_stream_server_echoes_pymotws_coroutine_clients_until_their_eof(self):
        server = self.start("stream_server", "127.0.0.1:0")
        client = run_tutorial_client(PYMOTW_COROUTINE_CLIENT, 10000, server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        replies = pymotw_replies(client.stderr)
        self.assertEqual(replies, {"1": PYMOTW_MESSAGE, "2": PYMOTW_MESSAGE}, client.stderr)
        self.assertEqual(client.stderr.count(": closing\n"), 2, client.stderr)
        self.assert_stops_cleanly(server)

    def test_stream_server_echoes_pymotws_protocol_clients_until_their_eof(self):
        server = self.start("stream_server", "127.0.0.1:0")
        client = run_tutorial_client(PYMOTW_PROTOCOL_CLIENT, 10000, server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        replies = pymotw_replies(client.stderr)
        self.assertEqual(replies, {"1": PYMOTW_MESSAGE, "2": PYMOTW_MESSAGE}, client.stderr)
        self.assertEqual(client.stderr.count(": received EOF\n"), 2, client.stderr)
        self.assert_stops_cleanly(server)

    def test_parts_client_gets_the_whole_message_from_pymotws_coroutine_server(self):
        server = self.start_tutorial("pymotw echo", PYMOTW_COROUTINE_SERVER, 10000)
        client = run_client("parts_client", "127.0.0.1:%d" % server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        server.wait_for("stderr", r"echo_127\.0\.0\.1_\d+: closing")

    def test_parts_client_gets_the_whole_message_from_pymotws_protocol_server(self):
        server = self.start_tutorial("pymotw EchoServer", PYMOTW_PROTOCOL_SERVER, 10000)
        client = run_client("parts_client", "127.0.0.1:%d" % server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        server.wait_for("stderr", r"EchoServer_127\.0\.0\.1_\d+: received EOF")

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

        self.assertEqual(self.run_async(in_parts()), PYMOTW_MESSAGE)
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
        logged = re.compile(r"Received 'thread \d, message \d' from 127\.0\.0\.1:\d+")
        server.wait_until("stderr", lambda log: len(logged.findall(log)) == 20, "20 logged lines")
        self.assert_stops_cleanly(server)

    def test_threaded_client_gets_every_reply_from_the_docs_handle_echo(self):
        server = self.start_tutorial("handle_echo", DOCS_TCP_ECHO_SERVER, 8888)
        client = run_client("threaded_client", "127.0.0.1:%d" % server.port, "4", "5")
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("20 of 20 replies matched", client.stdout)

    def test_fails_when_nothing_listens(self):
        client = run_client("threaded_client", "127.0.0.1:%d" % free_port(), "2", "1")
        self.assertEqual(client.returncode, 1, describe(client))
        self.assertIn("0 of 2 replies matched", client.stdout)

    def test_bad_address_is_a_usage_error(self):
        client = run_client("threaded_client", "not an address")
        self.assertEqual(client.returncode, 2, describe(client))


class TestProtocolServer(ExampleTest):
    def test_protocol_client_sees_the_echo_and_the_server_close(self):
        server = self.start("protocol_server", "127.0.0.1:0")
        client = run_client("protocol_client", server.address)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertEqual(
            client.stdout,
            "Data sent: 'Hello World!'\nData received: 'Hello World!'\n"
            "The server closed the connection\n",
        )
        # The events, in their order (wait_for fails when they do not all appear).
        server.wait_for(
            "stderr",
            r"Connection from 127\.0\.0\.1:\d+\nData received: 'Hello World!'\n"
            r"Send: 'Hello World!'\nClose the client socket\nconnection_lost: closed\n",
        )
        self.assert_stops_cleanly(server)

    def test_protocol_server_closes_after_first_data_like_the_docs_server(self):
        server = self.start("protocol_server", "127.0.0.1:0")
        client = run_tutorial_client(DOCS_PROTOCOL_CLIENT, 8888, server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertEqual(
            client.stdout,
            "Data sent: 'Hello World!'\nData received: 'Hello World!'\n"
            "The server closed the connection\n",
        )
        self.assert_stops_cleanly(server)

    def test_protocol_client_reads_until_the_docs_server_closes(self):
        server = self.start_tutorial("EchoServerProtocol", DOCS_PROTOCOL_SERVER, 8888)
        client = run_client("protocol_client", "127.0.0.1:%d" % server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("The server closed the connection\n", client.stdout)
        server.wait_for("stdout", r"Data received: 'Hello World!'\nSend: 'Hello World!'\n")

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
        self.assertIn("Send: Hello World!\nReceived: Hello World!\n", client.stdout)
        server.wait_for("stderr", r"Received 'Hello World!' from 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_udp_server_answers_the_docs_udp_client(self):
        server = self.start("udp_server", "udp://127.0.0.1:0")
        client = run_tutorial_client(DOCS_UDP_CLIENT, 9999, server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertEqual(
            client.stdout,
            "Send: Hello World!\nReceived: Hello World!\nClose the socket\nConnection closed\n",
        )
        server.wait_for("stderr", r"Send 'Hello World!' to 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_udp_client_gets_its_datagram_back_from_the_docs_udp_server(self):
        server = self.start_tutorial("UDP EchoServerProtocol", DOCS_UDP_SERVER, 9999,
                                     socket.SOCK_DGRAM)
        client = run_client("udp_client", "udp://127.0.0.1:%d" % server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertIn("Received: Hello World!\n", client.stdout)
        server.wait_for("stdout", r"Received 'Hello World!' from \('127\.0\.0\.1', \d+\)")

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


# Python docs, asyncio "Streams": the TCP echo client, with the ssl= context the ssl module's
# docs make for a client (verifying the server against CAFILE).
DOCS_TLS_ECHO_CLIENT = r"""
import asyncio
import ssl

async def tcp_echo_client(message):
    context = ssl.create_default_context(cafile='CAFILE')
    reader, writer = await asyncio.open_connection(
        '127.0.0.1', 8888, ssl=context)

    print(f'Send: {message!r}')
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f'Received: {data.decode()!r}')

    print('Close the connection')
    writer.close()
    await writer.wait_closed()

asyncio.run(tcp_echo_client('Hello World!'))
"""


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr))


class TestTlsEchoServer(ExampleTest):
    """tls_echo_server with a certificate made here by the openssl command (never a committed
    key): a self-signed one for 127.0.0.1, and for mutual TLS a client CA and its client."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl command")
        cls.dir = tempfile.mkdtemp(prefix="yodel-example-tls-")
        cls.cert, cls.key = cls.file("cert.pem"), cls.file("key.pem")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"]
        openssl("req", "-x509", *ec, "-subj", "/CN=localhost", "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", cls.key, "-out", cls.cert)
        cls.ca, cls.ca_key = cls.file("ca.pem"), cls.file("ca.key")
        openssl("req", "-x509", *ec, "-subj", "/CN=example client CA", "-keyout", cls.ca_key,
                "-out", cls.ca)
        cls.client, cls.client_key = cls.file("client.pem"), cls.file("client.key")
        openssl("req", "-new", *ec[:5], "-subj", "/CN=alice", "-keyout", cls.client_key,
                "-out", cls.file("client.csr"))
        openssl("x509", "-req", "-in", cls.file("client.csr"), "-CA", cls.ca, "-CAkey",
                cls.ca_key, "-set_serial", "7", "-days", "2", "-out", cls.client)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def file(cls, name):
        return os.path.join(cls.dir, name)

    def start_tls(self, *extra):
        return self.start("tls_echo_server", self.cert, self.key, "tls://127.0.0.1:0", *extra)

    def docs_client(self, port):
        return run_tutorial_client(DOCS_TLS_ECHO_CLIENT.replace("CAFILE", self.cert), 8888, port)

    def test_the_docs_tcp_echo_client_with_an_ssl_context_gets_hello_world_back(self):
        server = self.start_tls()
        client = self.docs_client(server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assertEqual(client.stdout, "Send: 'Hello World!'\nReceived: 'Hello World!'\n"
                                        "Close the connection\n")
        server.wait_for("stderr", r"Received 'Hello World!' from 127\.0\.0\.1:\d+\n"
                                  r"Send: 'Hello World!'\nClose the connection\n")
        self.assert_stops_cleanly(server)

    def test_a_client_that_does_not_trust_the_certificate_gets_nothing(self):
        server = self.start_tls()
        context = ssl.create_default_context()  # the system's CAs: not our self-signed one

        async def untrusting():
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                           ssl=context)
            writer.close()

        with self.assertRaises(ssl.SSLCertVerificationError):
            self.run_async(untrusting())
        server.wait_for("stderr", r"handshake failed from 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_plaintext_is_a_failed_handshake_and_the_server_goes_on(self):
        server = self.start_tls()
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"Hello World!")
            s.settimeout(IO_TIMEOUT)
            try:
                while s.recv(4096):  # an alert, perhaps; then the end
                    pass
            except ConnectionResetError:
                pass
        server.wait_for("stderr", r"handshake failed from 127\.0\.0\.1:\d+: protocol error")
        client = self.docs_client(server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assert_stops_cleanly(server)

    def test_with_a_client_ca_the_verified_client_is_named_and_others_are_refused(self):
        server = self.start_tls(self.ca)
        context = ssl.create_default_context(cafile=self.cert)
        context.load_cert_chain(self.client, self.client_key)

        async def with_certificate():
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                           ssl=context)
            writer.write(b"it is me")
            data = await reader.read(100)
            writer.close()
            await writer.wait_closed()
            return data

        self.assertEqual(self.run_async(with_certificate()), b"it is me")
        server.wait_for("stderr", r"TLSv1\.3 from 127\.0\.0\.1:\d+ is CN=alice\n")
        client = self.docs_client(server.port)  # no certificate
        self.assertNotEqual(client.returncode, 0, describe(client))
        server.wait_for("stderr", r"handshake failed from 127\.0\.0\.1:\d+")
        self.assert_stops_cleanly(server)

    def test_sighup_reloads_the_certificate(self):
        server = self.start_tls()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for("stderr", r"reloaded the certificate\n")
        client = self.docs_client(server.port)
        self.assertEqual(client.returncode, 0, describe(client))
        self.assert_stops_cleanly(server)

    def test_a_missing_certificate_is_one_line_and_exit_1(self):
        client = run_client("tls_echo_server", self.file("none.pem"), self.key,
                            "tls://127.0.0.1:0")
        self.assertEqual(client.returncode, 1, describe(client))
        self.assertEqual(client.stderr, "tls_echo_server: cannot read %s: No such file or "
                                        "directory\n" % self.file("none.pem"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
