"""Test harness: starts the real `yodel` binary and talks to it with real clients.

Every wait has a deadline; processes are stopped by PID and always cleaned up. The binary
comes from $YODEL_BIN (set by CMake). With YODEL_VALGRIND=1 the server runs under valgrind
and every deadline is stretched, since valgrind slows it down by 10-50x.
"""

import asyncio
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

YODEL_BIN = os.environ.get("YODEL_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "yodel"
)
VALGRIND = os.environ.get("YODEL_VALGRIND") == "1"
VALGRIND_CMD = [
    "valgrind",
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
    "--quiet",
]

# Multiplier for every deadline that depends on the server's speed.
SLOW = 10.0 if VALGRIND else 1.0
START_TIMEOUT = 10.0 * SLOW
STOP_TIMEOUT = 10.0 * SLOW
IO_TIMEOUT = 10.0 * SLOW
CMD_TIMEOUT = 20.0 * SLOW

LISTEN_RE = re.compile(
    r"^listening on (tcp|udp)://(\[[^\]]+\]|[^:\s]+):(\d+)\s*$|^listening on unix:(\S+)\s*$"
)


class Listener:
    """One `listening on ...` line: scheme ('tcp', 'udp' or 'unix'), host, port, path."""

    def __init__(self, line):
        m = LISTEN_RE.match(line)
        if m is None:
            raise ValueError("not a listening line: %r" % line)
        self.line = line
        if m.group(4) is not None:
            self.scheme, self.host, self.port, self.path = "unix", None, None, m.group(4)
            return
        self.scheme = m.group(1)
        self.host = m.group(2).strip("[]")
        self.port = int(m.group(3))
        self.path = None

    @property
    def family(self):
        if self.scheme == "unix":
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def sockaddr(self):
        return self.path if self.scheme == "unix" else (self.host, self.port)

    @property
    def addr(self):
        """The address as yodel's -c option spells it."""
        if self.scheme == "unix":
            return "unix:" + self.path
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (self.scheme, host, self.port)

    def __repr__(self):
        return "Listener(%r)" % self.line


def child_log():
    """A temporary file for a child's output, as (reader, writer). The child writes through its
    own O_APPEND descriptor: sharing one file offset, our seek(0) to read the log would make the
    child's next line overwrite its first ones."""
    reader = tempfile.NamedTemporaryFile(prefix="yodel-log-")
    return reader, open(reader.name, "ab")


class Server:
    """A running `yodel serve`. Use as a context manager, or call stop() yourself."""

    def __init__(self, args, expect=None, valgrind=None):
        self.args = list(args)
        self.listeners = []
        self.stderr_file, child_err = child_log()
        self.returncode = None
        self.stderr = None
        self._stdout_buf = b""
        self.valgrind = VALGRIND if valgrind is None else valgrind
        cmd = (VALGRIND_CMD if self.valgrind else []) + [YODEL_BIN, "serve"] + self.args
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child_err
        )
        child_err.close()
        if expect is None:
            expect = self.args.count("-l") + sum(a.startswith("--listen") for a in self.args)
            expect = expect or 2
        try:
            self._read_listeners(expect)
        except BaseException:
            self.kill()
            raise

    def _read_listeners(self, expect):
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        while len(self.listeners) < expect:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    "yodel serve %s: %d of %d listening lines within %.0fs; stderr: %r"
                    % (" ".join(self.args), len(self.listeners), expect, START_TIMEOUT,
                       self.read_stderr())
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = self.proc.wait(timeout=STOP_TIMEOUT)
                raise AssertionError(
                    "yodel serve %s exited with %d before listening; stderr: %r"
                    % (" ".join(self.args), rc, self.read_stderr())
                )
            self._stdout_buf += chunk
            while b"\n" in self._stdout_buf:
                line, self._stdout_buf = self._stdout_buf.split(b"\n", 1)
                self.listeners.append(Listener(line.decode()))

    def read_stderr(self):
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def wait_stderr(self, predicate, timeout=IO_TIMEOUT, what="a log line"):
        """Polls stderr until predicate(text) holds: the server's log is the only way to see
        that it has read some bytes; the deadline keeps the wait bounded."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.read_stderr()
            if predicate(text):
                return text
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("no %s on stderr within %.0fs: %r" % (what, timeout, text))
            time.sleep(0.02)

    def find(self, scheme, family=None):
        for li in self.listeners:
            if li.scheme == scheme and (family is None or li.family == family):
                return li
        raise AssertionError("no %s listener among %r" % (scheme, self.listeners))

    @property
    def tcp(self):
        return self.find("tcp")

    @property
    def udp(self):
        return self.find("udp")

    @property
    def unix(self):
        return self.find("unix")

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig and waits for the exit; returns (status, stderr)."""
        if self.returncode is None:
            self.send_signal(sig)
            try:
                self.returncode = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()  # keeps what it logged in self.stderr
                raise AssertionError(
                    "yodel serve did not exit within %.0fs of %s; stderr: %r"
                    % (timeout, signal.Signals(sig).name, self.stderr)
                )
            self._close()
        return self.returncode, self.stderr

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("yodel serve still running after %.0fs" % timeout)
        self._close()
        return self.returncode, self.stderr

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.returncode = self.proc.wait()
        self._close()

    def _close(self):
        if self.stderr is None:
            self.stderr = self.read_stderr()
            self.stderr_file.close()
            self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.returncode is None:
            self.kill()
        return False


def terminate(proc):
    """Stops a daemon a test started: SIGTERM, then SIGKILL if it has not gone within
    STOP_TIMEOUT. Waits for it either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(*args, **kw):
    return Server(args, **kw)


def run(cmd, input=None, timeout=CMD_TIMEOUT, env=None):
    """Runs a command to completion; stdout/stderr as bytes. Fails the test on timeout."""
    try:
        return subprocess.run(
            cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=timeout, env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s did not finish within %.0fs" % (" ".join(cmd), timeout)) from e


def yodel(*args, input=None, timeout=CMD_TIMEOUT):
    return run([YODEL_BIN] + [str(a) for a in args], input=input, timeout=timeout)


def send(*args, input=None, timeout=CMD_TIMEOUT):
    return yodel("send", *args, input=input, timeout=timeout)


def nc(*args, input=b"", timeout=CMD_TIMEOUT):
    return run(["nc"] + [str(a) for a in args], input=input, timeout=timeout)


def socat(*args, input=b"", timeout=CMD_TIMEOUT):
    return run(["socat"] + [str(a) for a in args], input=input, timeout=timeout)


def require_tool(testcase, name):
    if shutil.which(name) is None:
        testcase.skipTest("%s is not installed" % name)


# ---- plain socket clients -------------------------------------------------------------------

def connect(listener, timeout=IO_TIMEOUT):
    s = socket.socket(listener.family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(listener.sockaddr)
    return s


def recv_until_eof(sock, timeout=IO_TIMEOUT, limit=64 << 20):
    """Reads until the peer closes; fails if that takes longer than timeout."""
    deadline = time.monotonic() + timeout
    chunks, total = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no EOF within %.0fs; got %d bytes" % (timeout, total))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no EOF within %.0fs; got %d bytes" % (timeout, total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise AssertionError("more than %d bytes before EOF" % limit)


def recv_exactly(sock, n, timeout=IO_TIMEOUT):
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                "got %d of %d bytes within %.0fs: %r" % (len(buf), n, timeout, buf[:80])
            )
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes: %r" % (len(buf), n, buf[:80]))
        buf += chunk
    return buf


def exchange(listener, data, timeout=IO_TIMEOUT):
    """Sends data, half-closes, returns everything received until the server closes. Sending
    and receiving overlap (a thread writes) so large payloads cannot deadlock on back-pressure."""
    import threading

    with connect(listener, timeout) as s:
        err = []

        def writer():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            got = recv_until_eof(s, timeout)
        finally:
            t.join(timeout)
        if err:
            raise err[0]
        return got


def udp_exchange(listener, data, timeout=IO_TIMEOUT, bind=None):
    with socket.socket(listener.family, socket.SOCK_DGRAM) as s:
        if bind is not None:
            s.bind(bind)
        s.settimeout(timeout)
        s.sendto(data, listener.sockaddr)
        reply, _ = s.recvfrom(65536)
        return reply


def free_port(port, host="127.0.0.1"):
    """True if both TCP and UDP port are free on host now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def source_port(kind=socket.SOCK_STREAM, host="127.0.0.1"):
    """A port for a client to bind as its source (send --source-port): free now, and below the
    kernel's ephemeral range, so that no connect of a test running alongside takes it before the
    client binds it (a port picked by binding port 0 is an ephemeral one, and may)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    first = 1024 + (os.getpid() * 97) % max(1, low - 1024)
    for i in range(2000):
        port = 1024 + (first - 1024 + i * 131) % max(1, low - 1024)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range %d" % low)


def run_async(coro, timeout=IO_TIMEOUT):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# ---- helper peers in Python ------------------------------------------------------------------

class PythonPeer:
    """A small Python program (a tutorial-style server) run in a subprocess. Its first stdout
    line is its port; further stdout lines are whatever it logs."""

    def __init__(self, code, timeout=START_TIMEOUT):
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", code],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        fd = self.proc.stdout.fileno()
        self._buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.stop()
                raise AssertionError("python peer printed no port within %.0fs" % timeout)
            chunk = os.read(fd, 4096)
            if not chunk:
                self.stop()
                raise AssertionError("python peer died: %r" % self.proc.stderr.read())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        self.port = int(line)

    def stop(self):
        """Terminates the peer; returns what it printed after its port line."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return (self._buf + (out or b"")).decode(errors="replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# The main() every tutorial server below shares: listen on an ephemeral port, print it, serve.
def _serve_on_port_0(handler):
    return r"""
async def main():
    server = await asyncio.start_server(%s, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
""" % handler


# The tutorial's server: read a line, send it back, close.
PY_ECHO_SERVER = r"""
import asyncio, sys
async def handle_echo(reader, writer):
    data = await reader.readline()
    print("got", data.decode().rstrip("\n"), flush=True)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
""" + _serve_on_port_0("handle_echo")

# The tutorial's line server that keeps the connection: echoes every line until EOF.
PY_LINE_SERVER = r"""
import asyncio
async def handle_echo(reader, writer):
    while True:
        data = await reader.readline()
        if not data:
            break
        print("got", data.decode().rstrip("\n"), flush=True)
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()
""" + _serve_on_port_0("handle_echo")

# Reads everything until the client's EOF, then echoes it and closes: only a client that
# half-closes gets an answer.
PY_READ_TO_EOF_SERVER = r"""
import asyncio
async def handle_echo(reader, writer):
    data = await reader.read()
    print("got %d bytes" % len(data), flush=True)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
""" + _serve_on_port_0("handle_echo")

# Answers every line with something else.
PY_WRONG_SERVER = r"""
import asyncio
async def handle(reader, writer):
    while await reader.readline():
        writer.write(b"something else\n")
        await writer.drain()
    writer.close()
""" + _serve_on_port_0("handle")

# Reads and never answers.
PY_SILENT_SERVER = r"""
import asyncio
async def handle(reader, writer):
    while await reader.read(4096):
        pass
    await asyncio.sleep(3600)
""" + _serve_on_port_0("handle")

# A bound UDP socket that never replies.
PY_SILENT_UDP = r"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
n = 0
while True:
    s.recvfrom(65536)
    n += 1
    print("datagram", n, flush=True)
"""


class TempDir:
    """A short temporary directory (Unix socket paths are limited to 107 bytes)."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="yodel-it-", dir="/tmp")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def stderr_lines(text):
    return [l for l in text.splitlines() if l.strip()]
