"""Real clients against yodel serve: netcat, socat and the asyncio tutorial clients."""

import asyncio
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import serve  # noqa: E402

LOCAL = "127.0.0.1:0"
TIMEOUT = harness.IO_TIMEOUT


class Netcat(unittest.TestCase):
    def setUp(self):
        harness.require_tool(self, "nc")

    def nc_exchange(self, mode, data):
        with serve("-l", LOCAL, "-m", mode) as srv:
            # -N: shut down the write side at EOF on stdin, as the tutorials' write_eof does.
            r = harness.nc("-N", srv.tcp.host, srv.tcp.port, input=data)
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_nc_gets_each_line_back_in_line_mode(self):
        self.assertEqual(self.nc_exchange("line", b"hello\nworld\n"), b"hello\nworld\n")

    def test_nc_gets_lines_upper_cased_in_upper_mode(self):
        got = self.nc_exchange("upper", b"yell at me\nplease\n")
        self.assertEqual(got, b"YELL AT ME\nPLEASE\n")

    def test_nc_gets_binary_bytes_back_in_raw_mode(self):
        data = bytes(range(256)) * 64
        self.assertEqual(self.nc_exchange("raw", data), data)


class Socat(unittest.TestCase):
    def setUp(self):
        harness.require_tool(self, "socat")

    def socat_exchange(self, mode, data):
        with serve("-l", LOCAL, "-m", mode) as srv:
            # socat half-closes at EOF on stdin and exits once the server closes too.
            target = "TCP:127.0.0.1:%d" % srv.tcp.port
            r = harness.socat("-t", int(TIMEOUT), "-", target, input=data)
            self.assertEqual(srv.stop()[0], 0)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_socat_gets_each_line_back_in_line_mode(self):
        self.assertEqual(self.socat_exchange("line", b"one\ntwo\nthree"), b"one\ntwo\nthree")

    def test_socat_gets_lines_upper_cased_in_upper_mode(self):
        self.assertEqual(self.socat_exchange("upper", b"quiet words\n"), b"QUIET WORDS\n")

    def test_socat_gets_binary_bytes_back_in_raw_mode(self):
        data = os.urandom(200000)
        self.assertEqual(self.socat_exchange("raw", data), data)


# The tutorial clients, written as the tutorials write them.

async def tcp_echo_client(host, port, message):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(message.encode())
    await writer.drain()
    data = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return data.decode()


async def ten_clients(host, port):
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(tcp_echo_client(host, port, "Hello from %d\n" % i)) for i in range(10)
        ]
    return [t.result() for t in tasks]


async def parts_client(host, port, parts):
    reader, writer = await asyncio.open_connection(host, port)
    for part in parts:
        writer.write(part)
        await writer.drain()
    writer.write_eof()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


class EchoClientProtocol(asyncio.Protocol):
    def __init__(self, message, on_con_lost):
        self.message = message
        self.on_con_lost = on_con_lost
        self.received = b""
        self.events = []

    def connection_made(self, transport):
        self.events.append("connection_made")
        transport.write(self.message)

    def data_received(self, data):
        self.received += data

    def eof_received(self):
        self.events.append("eof_received")

    def connection_lost(self, exc):
        self.events.append("connection_lost")
        self.on_con_lost.set_result(exc)


async def protocol_client(host, port, message, write_eof=False):
    loop = asyncio.get_running_loop()
    on_con_lost = loop.create_future()
    transport, protocol = await loop.create_connection(
        lambda: EchoClientProtocol(message, on_con_lost), host, port
    )
    if write_eof:
        transport.write_eof()
    try:
        # The client only finishes when the server closes the connection.
        exc = await on_con_lost
    finally:
        transport.close()
    return protocol, exc


class AsyncioClients(unittest.TestCase):
    def test_tutorial_client_gets_hello_there_back(self):
        for mode in ("raw", "line"):
            with self.subTest(mode=mode), serve("-l", LOCAL, "-m", mode) as srv:
                li = srv.tcp
                got = harness.run_async(tcp_echo_client(li.host, li.port, "Hello There\n"))
                self.assertEqual(got, "Hello There\n")
                self.assertEqual(srv.stop()[0], 0)

    def test_ten_clients_in_a_task_group_each_get_their_own_line(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            got = harness.run_async(ten_clients(srv.tcp.host, srv.tcp.port))
            self.assertEqual(got, ["Hello from %d\n" % i for i in range(10)])
            self.assertEqual(srv.stop()[0], 0)

    def test_parts_client_with_write_eof_reads_whole_message_until_eof(self):
        parts = [b"Hello ", b"There, ", b"in three parts"]
        with serve("-l", LOCAL, "-m", "raw") as srv:
            got = harness.run_async(parts_client(srv.tcp.host, srv.tcp.port, parts))
            self.assertEqual(got, b"".join(parts))
            self.assertEqual(srv.stop()[0], 0)

    def test_protocol_client_sees_connection_lost_after_once_reply(self):
        with serve("-l", LOCAL, "-m", "line", "--once") as srv:
            li = srv.tcp
            proto, exc = harness.run_async(protocol_client(li.host, li.port, b"Hello World!\n"))
            self.assertIsNone(exc)
            self.assertEqual(proto.received, b"Hello World!\n")
            self.assertEqual(proto.events, ["connection_made", "eof_received", "connection_lost"])
            self.assertEqual(srv.stop()[0], 0)

    def test_protocol_client_sees_connection_lost_after_its_eof_in_line_mode(self):
        with serve("-l", LOCAL, "-m", "line") as srv:
            proto, exc = harness.run_async(
                protocol_client(srv.tcp.host, srv.tcp.port, b"one\ntwo\n", write_eof=True)
            )
            self.assertIsNone(exc)
            self.assertEqual(proto.received, b"one\ntwo\n")
            self.assertEqual(srv.stop()[0], 0)

    def test_upper_case_client_gets_its_line_yelled_back(self):
        with serve("-l", LOCAL, "-m", "upper") as srv:
            got = harness.run_async(tcp_echo_client(srv.tcp.host, srv.tcp.port, "hello yodel\n"))
            self.assertEqual(got, "HELLO YODEL\n")
            self.assertEqual(srv.stop()[0], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
