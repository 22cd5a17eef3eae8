"""One soak client process: N concurrent connections doing mixed work against the echo servers
(raw, line and upper mode) until the deadline, verifying every echoed byte. Prints one JSON report.

usage: soak_client.py SEED SOURCE_IP CONNS SECONDS MODE:PORT...

Connection i talks to server i % len(servers). An operation fails as a timeout only when nothing
moved on its connection for SOAK_OP_TIMEOUT (60 s): on two shared cores thousands of asyncio
connections make the client itself slow (its event loop runs seconds late), and a slow read of
1 MiB in 8 KiB sips can then take minutes without the server being at fault. Operations that
took longer than that in total but kept moving are counted as `slow_ops`, with the client's
event-loop lag and the time it waited for a CPU, so that a starved client is visible as such.
"""

import asyncio
import json
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # choose the source port at connect(): 4-tuples, not 2-tuples
OP_TIMEOUT = float(os.environ.get("SOAK_OP_TIMEOUT", "60"))
MAX_STALL_REPORTS = 5  # each one runs ss: only the first few
# The reader's buffer: asyncio stops reading the socket past twice this, so a slow reader leaves
# the echo in the kernel and the server's queue fills (the back-pressure the slow read is for).
READ_LIMIT = 64 << 10
LINE_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?"
PAUSE_MIN = float(os.environ.get("SOAK_PAUSE_MIN", "0.5"))
PAUSE_MAX = float(os.environ.get("SOAK_PAUSE_MAX", "4.0"))


class Stats:
    def __init__(self):
        self.c = {k: 0 for k in (
            "connects", "connect_errors", "round_trips", "slow_reads", "graceful_closes",
            "abrupt_closes", "resets", "bytes_sent", "bytes_verified", "bytes_abandoned",
            "mismatches", "unexpected_eof", "unexpected_reset", "timeouts", "other_errors",
            "final_closes", "final_close_errors", "slow_ops")}
        self.samples = []

    def add(self, k, n=1):
        self.c[k] += n


class Client:
    def __init__(self, seed, source_ip, conns, seconds, targets):
        self.rng = random.Random(seed)
        self.source_ip = source_ip
        self.conns = conns
        self.deadline = time.monotonic() + seconds
        self.targets = targets  # [(mode, port)]
        self.longest_op = 0.0
        self.stats = Stats()
        self.connect_gate = asyncio.Semaphore(256)  # a burst of SYNs must not overflow backlogs
        self.first_error = None
        self.stalls = []  # what a timed-out connection looked like from both ends
        self.stall_reports = 0
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
                r, w = await asyncio.open_connection(sock=s, limit=READ_LIMIT)
                self.open += 1
                self.peak_open = max(self.peak_open, self.open)
                return r, w
        raise ConnectionError("cannot connect to port %d" % port)

    async def round_trip(self, mode, r, w, size, progress):
        data = self.payload(mode, size)
        progress.update(op="round_trip", size=len(data), phase="writing", got=0)
        w.write(data)
        self.stats.add("bytes_sent", len(data))
        await w.drain()
        progress.update(phase="reading", moved=time.monotonic())
        got = await r.readexactly(len(data))
        if got != self.expect(mode, data):
            self.stats.add("mismatches")
            self.note("mismatch in %s mode, %d bytes" % (mode, len(data)))
        else:
            self.stats.add("bytes_verified", len(data))

    async def slow_read(self, mode, r, w, progress):
        """Sends up to 1 MiB at once but reads it back in small sips: the server's queue fills,
        it stops reading us, then resumes."""
        data = self.payload(mode, self.rng.randint(128 << 10, 1 << 20))
        want = self.expect(mode, data)
        progress.update(op="slow_read", size=len(data), phase="reading", got=0, drained=False)

        async def send():
            w.write(data)
            await w.drain()
            progress.update(drained=True, moved=time.monotonic())

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
                progress.update(got=got, moved=time.monotonic())
                await asyncio.sleep(0.005)
        finally:
            await sender
        if ok:
            self.stats.add("bytes_verified", len(data))
        else:
            self.stats.add("mismatches")
            self.note("slow reader mismatch in %s mode" % mode)

    async def graceful_close(self, r, w, progress=None):
        if progress is not None:
            progress.update(op="graceful_close", phase="waiting for EOF")
        w.write_eof()
        rest = await r.read()
        if rest:
            self.stats.add("mismatches")
            self.note("bytes after the last echo: %d" % len(rest))
        w.close()
        await w.wait_closed()

    async def bounded(self, mode, r, w, op, progress):
        """Runs one operation; fails it with a timeout only once nothing has moved for
        OP_TIMEOUT (progress["moved"] is when bytes last moved)."""
        started = progress["moved"] = time.monotonic()
        task = asyncio.ensure_future(op)
        try:
            while not task.done():
                left = progress["moved"] + OP_TIMEOUT - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError()
                await asyncio.wait({task}, timeout=left)
        except asyncio.TimeoutError:
            # The connection as it is now, before the cancel changes anything.
            if self.stall_reports < MAX_STALL_REPORTS:
                self.stall_reports += 1
                await self.stall_report(mode, r, w, progress)
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
            raise
        took = time.monotonic() - started
        self.longest_op = max(self.longest_op, took)
        if took > OP_TIMEOUT:
            self.stats.add("slow_ops")
        return task.result()

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
        mode, port = self.targets[idx % len(self.targets)]
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

    async def stall_report(self, mode, r, w, progress):
        """What a timed-out connection looks like from both ends: the client's own buffers and
        ss -tni for the client and the server socket, twice, a second apart (Recv-Q/Send-Q say
        which side is waiting for which)."""
        local, peer = w.get_extra_info("sockname"), w.get_extra_info("peername")
        t = w.transport
        report = {
            "at": round(time.monotonic() - self.started, 1), "mode": mode,
            "client": "%s:%d" % local[:2], "server": "%s:%d" % peer[:2],
            "progress": dict(progress),
            "client_transport_reading": t.is_reading(),
            "client_write_buffer": t.get_write_buffer_size(),
            "client_reader_buffered": len(getattr(r, "_buffer", b"")),
            "client_loop_lag_max": round(self.lag_max, 3),
            "client_loop_lag_recent": round(self.lag_recent, 3),
            "ss": [],
        }
        filt = "( src %s:%d or dst %s:%d )" % (local[0], local[1], local[0], local[1])
        for i in range(2):
            if i:
                await asyncio.sleep(1.0)
            try:
                proc = await asyncio.create_subprocess_exec(
                    "ss", "-tniH", "state", "all", filt, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
                out, _ = await asyncio.wait_for(proc.communicate(), 10)
                report["ss"].append(" ".join(out.decode(errors="replace").split()))
            except (OSError, asyncio.TimeoutError) as e:
                report["ss"].append("ss failed: %r" % e)
        self.stalls.append(report)

    async def watch_lag(self):
        """How late the client's own loop runs: a starved client is late for everything."""
        while time.monotonic() < self.deadline + OP_TIMEOUT:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            self.lag_recent = time.monotonic() - t - 0.1
            self.lag_max = max(self.lag_max, self.lag_recent)

    async def session(self, mode, r, w):
        """Mixed work on one connection until it is closed one way or another."""
        progress = {}
        try:
            while True:
                await asyncio.sleep(self.rng.uniform(PAUSE_MIN, PAUSE_MAX))
                if time.monotonic() >= self.deadline:
                    self.stats.add("final_closes")
                    await self.bounded(mode, r, w, self.graceful_close(r, w, progress),
                                       progress)
                    return
                x = self.rng.random()
                if x < 0.64:
                    size = self.rng.choice((self.rng.randint(1, 512),
                                            self.rng.randint(1, 16384),
                                            self.rng.randint(1, 65536)))
                    await self.bounded(mode, r, w, self.round_trip(mode, r, w, size, progress),
                                       progress)
                    self.stats.add("round_trips")
                elif x < 0.70:
                    await self.bounded(mode, r, w, self.slow_read(mode, r, w, progress),
                                       progress)
                    self.stats.add("slow_reads")
                elif x < 0.80:
                    await self.bounded(mode, r, w, self.graceful_close(r, w, progress),
                                       progress)
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
            self.note("nothing moved for %.0fs in a %s in %s mode"
                      % (OP_TIMEOUT, progress.get("op"), mode))
            w.transport.abort()
        except OSError as e:
            self.stats.add("other_errors")
            self.note("%s mode: %r" % (mode, e))
            w.transport.abort()

    async def run(self):
        self.started = time.monotonic()
        self.lag_max = self.lag_recent = 0.0
        lag = asyncio.create_task(self.watch_lag())
        tasks = [asyncio.create_task(self.worker(i)) for i in range(self.conns)]
        await asyncio.gather(*tasks)
        lag.cancel()


def run_delay_seconds():
    """How long this process's threads waited, runnable, for a CPU (schedstat field 2)."""
    try:
        with open("/proc/self/schedstat") as f:
            return round(int(f.read().split()[1]) / 1e9, 1)
    except (OSError, ValueError, IndexError):
        return None


def main():
    seed, source_ip, conns, seconds = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                       float(sys.argv[4]))
    targets = [(t.split(":")[0], int(t.split(":")[1])) for t in sys.argv[5:]]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    c = Client(seed, source_ip, conns, seconds, targets)
    started = time.monotonic()
    asyncio.run(c.run())
    report = dict(c.stats.c)
    report["elapsed"] = round(time.monotonic() - started, 1)
    report["first_error"] = c.first_error
    report["cpu_seconds"] = round(sum(os.times()[:2]), 1)
    report["peak_open"] = c.peak_open
    report["loop_lag_max"] = round(c.lag_max, 3)
    report["longest_op"] = round(c.longest_op, 1)
    report["cpu_wait_seconds"] = run_delay_seconds()
    report["stalls"] = c.stalls
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
