"""One soak client process: N concurrent connections doing mixed work against the raw, line and
upper echo servers until the deadline, verifying every echoed byte. Prints one JSON report.

usage: soak_client.py SEED SOURCE_IP CONNS SECONDS RAW_PORT LINE_PORT UPPER_PORT
"""

import asyncio
import json
import os
import random
import resource
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # choose the source port at connect(): 4-tuples, not 2-tuples
OP_TIMEOUT = 60.0
LINE_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?"
PAUSE_MIN = float(os.environ.get("SOAK_PAUSE_MIN", "0.5"))
PAUSE_MAX = float(os.environ.get("SOAK_PAUSE_MAX", "4.0"))


class Stats:
    def __init__(self):
        self.c = {k: 0 for k in (
            "connects", "connect_errors", "round_trips", "slow_reads", "graceful_closes",
            "abrupt_closes", "resets", "bytes_sent", "bytes_verified", "bytes_abandoned",
            "mismatches", "unexpected_eof", "unexpected_reset", "timeouts", "other_errors",
            "final_closes", "final_close_errors")}
        self.samples = []

    def add(self, k, n=1):
        self.c[k] += n


class Client:
    def __init__(self, seed, source_ip, conns, seconds, ports):
        self.rng = random.Random(seed)
        self.source_ip = source_ip
        self.conns = conns
        self.deadline = time.monotonic() + seconds
        self.ports = ports  # mode -> port
        self.stats = Stats()
        self.connect_gate = asyncio.Semaphore(256)  # a burst of SYNs must not overflow backlogs
        self.first_error = None
        self.open = 0
        self.peak_open = 0
        # Payloads are slices of these, so that making them costs next to nothing.
        self.raw_pool = self.rng.randbytes(4 << 20)
        lines = bytearray(self.rng.choices(LINE_CHARS, k=4 << 20))
        # Lines of at most 4000 bytes, most much shorter.
        for i in range(3999, len(lines), 4000):
            lines[i] = 10
        for _ in range(len(lines) // 500):
            lines[self.rng.randrange(len(lines))] = 10
        self.line_pool = bytes(lines)

    def note(self, what):
        if self.first_error is None:
            self.first_error = what

    def payload(self, mode, size):
        pool = self.raw_pool if mode == "raw" else self.line_pool
        start = self.rng.randrange(0, len(pool) - size)
        data = pool[start:start + size]
        # Lines end with '\n' (line mode echoes whole lines) and stay far below --max-line.
        return data if mode == "raw" else data[:-1] + b"\n"

    @staticmethod
    def expect(mode, data):
        return data.upper() if mode == "upper" else data

    async def connect(self, port):
        loop = asyncio.get_running_loop()
        async with self.connect_gate:
            for attempt in range(5):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((self.source_ip, 0))
                s.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 30)
                except (OSError, asyncio.TimeoutError) as e:
                    s.close()
                    self.stats.add("connect_errors")
                    self.note("connect: %r" % e)
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                self.stats.add("connects")
                r, w = await asyncio.open_connection(sock=s, limit=1 << 20)
                self.open += 1
                self.peak_open = max(self.peak_open, self.open)
                return r, w
        raise ConnectionError("cannot connect to port %d" % port)

    async def round_trip(self, mode, r, w, size):
        data = self.payload(mode, size)
        w.write(data)
        self.stats.add("bytes_sent", len(data))
        await w.drain()
        got = await r.readexactly(len(data))
        if got != self.expect(mode, data):
            self.stats.add("mismatches")
            self.note("mismatch in %s mode, %d bytes" % (mode, len(data)))
        else:
            self.stats.add("bytes_verified", len(data))

    async def slow_read(self, mode, r, w):
        """Sends up to 1 MiB at once but reads it back in small sips: the server's queue fills,
        it stops reading us, then resumes."""
        data = self.payload(mode, self.rng.randint(128 << 10, 1 << 20))
        want = self.expect(mode, data)

        async def send():
            w.write(data)
            await w.drain()

        sender = asyncio.create_task(send())
        self.stats.add("bytes_sent", len(data))
        got = 0
        ok = True
        try:
            while got < len(want):
                chunk = await r.read(min(8192, len(want) - got))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", len(want) - got)
                if chunk != want[got:got + len(chunk)]:
                    ok = False
                got += len(chunk)
                await asyncio.sleep(0.005)
        finally:
            await sender
        if ok:
            self.stats.add("bytes_verified", len(data))
        else:
            self.stats.add("mismatches")
            self.note("slow reader mismatch in %s mode" % mode)

    async def graceful_close(self, r, w):
        w.write_eof()
        rest = await r.read()
        if rest:
            self.stats.add("mismatches")
            self.note("bytes after the last echo: %d" % len(rest))
        w.close()
        await w.wait_closed()

    def abrupt_close(self, mode, w):
        data = self.payload(mode, self.rng.randint(1, 32 << 10))
        w.write(data)
        self.stats.add("bytes_sent", len(data))
        self.stats.add("bytes_abandoned", len(data))
        w.close()

    def reset(self, mode, w):
        data = self.payload(mode, self.rng.randint(1, 32 << 10))
        w.write(data)
        self.stats.add("bytes_sent", len(data))
        self.stats.add("bytes_abandoned", len(data))
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()

    async def worker(self, idx):
        mode = ("raw", "line", "upper")[idx % 3]
        port = self.ports[mode]
        # Spread the start so that connections do not all act in the same instant.
        await asyncio.sleep(self.rng.uniform(0, 2))
        while time.monotonic() < self.deadline:
            try:
                r, w = await self.connect(port)
            except ConnectionError:
                return
            try:
                await self.session(mode, r, w)
            finally:
                self.open -= 1
            if time.monotonic() >= self.deadline:
                return

    async def session(self, mode, r, w):
        """Mixed work on one connection until it is closed one way or another."""
        try:
            while True:
                await asyncio.sleep(self.rng.uniform(PAUSE_MIN, PAUSE_MAX))
                if time.monotonic() >= self.deadline:
                    self.stats.add("final_closes")
                    await asyncio.wait_for(self.graceful_close(r, w), OP_TIMEOUT)
                    return
                x = self.rng.random()
                if x < 0.64:
                    size = self.rng.choice((self.rng.randint(1, 512),
                                            self.rng.randint(1, 16384),
                                            self.rng.randint(1, 65536)))
                    await asyncio.wait_for(self.round_trip(mode, r, w, size), OP_TIMEOUT)
                    self.stats.add("round_trips")
                elif x < 0.70:
                    await asyncio.wait_for(self.slow_read(mode, r, w), OP_TIMEOUT)
                    self.stats.add("slow_reads")
                elif x < 0.80:
                    await asyncio.wait_for(self.graceful_close(r, w), OP_TIMEOUT)
                    self.stats.add("graceful_closes")
                    return
                elif x < 0.90:
                    self.abrupt_close(mode, w)
                    self.stats.add("abrupt_closes")
                    return
                else:
                    self.reset(mode, w)
                    self.stats.add("resets")
                    return
        except asyncio.IncompleteReadError as e:
            self.stats.add("unexpected_eof")
            self.note("EOF from the %s server mid-echo (%d bytes short)" % (mode, e.expected))
            w.transport.abort()
        except ConnectionResetError as e:
            self.stats.add("unexpected_reset")
            self.note("reset by the %s server: %r" % (mode, e))
            w.transport.abort()
        except asyncio.TimeoutError:
            self.stats.add("timeouts")
            self.note("an operation took more than %.0fs in %s mode" % (OP_TIMEOUT, mode))
            w.transport.abort()
        except OSError as e:
            self.stats.add("other_errors")
            self.note("%s mode: %r" % (mode, e))
            w.transport.abort()

    async def run(self):
        tasks = [asyncio.create_task(self.worker(i)) for i in range(self.conns)]
        await asyncio.gather(*tasks)


def main():
    seed, source_ip, conns, seconds = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                       float(sys.argv[4]))
    ports = dict(zip(("raw", "line", "upper"), map(int, sys.argv[5:8])))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    c = Client(seed, source_ip, conns, seconds, ports)
    started = time.monotonic()
    asyncio.run(c.run())
    report = dict(c.stats.c)
    report["elapsed"] = round(time.monotonic() - started, 1)
    report["first_error"] = c.first_error
    report["cpu_seconds"] = round(sum(os.times()[:2]), 1)
    report["peak_open"] = c.peak_open
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
