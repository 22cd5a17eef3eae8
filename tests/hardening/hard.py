"""Helpers for the hardening tests: the integration harness plus what a test needs to watch a
server from outside (/proc for RSS, descriptors and CPU time; the shutdown summary for counters).

Every wait polls with a deadline; nothing sleeps to synchronise.
"""

import errno
import os
import re
import select
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402,F401
from harness import serve  # noqa: E402,F401

# Set by CMake for the ASan+UBSan build: shadow memory and the quarantine inflate RSS.
SANITIZE = os.environ.get("YODEL_SANITIZE") == "1"
SLOW = harness.SLOW * (2.0 if SANITIZE else 1.0)
LOCAL = "127.0.0.1:0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


def serve1(*args, **kw):
    """One event loop: keeps counts and timings exact."""
    return serve("--threads", "1", *args, **kw)


# ---- /proc -----------------------------------------------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    """User plus system CPU time of the whole process, all threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" field 3 is the state; utime and stime are fields 14 and 15 of stat(5).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sig_ignored(pid, signum):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    raise AssertionError("no SigIgn for pid %d" % pid)


# ---- waiting ---------------------------------------------------------------------------------

def wait_for(predicate, timeout, what, interval=0.01):
    """Polls predicate() until it returns something true; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.1fs (last: %r)" % (what, timeout, last))
        time.sleep(interval)


SUMMARY_RE = re.compile(r"^yodel: summary: .*$", re.M)


def summary(stderr):
    """The shutdown summary's counters as a dict: accepted, refused, ..., reset, io, ..."""
    m = SUMMARY_RE.findall(stderr or "")
    if not m:
        raise AssertionError("no summary line in stderr: %r" % stderr)
    return {k: int(v) for k, v in re.findall(r"\b(\w+)=(\d+)", m[-1])}


def stop_summary(testcase, srv, timeout=None):
    """Stops srv with SIGTERM, asserts exit status 0 and returns the summary counters."""
    status, err = srv.stop(timeout=timeout or harness.STOP_TIMEOUT)
    testcase.assertEqual(status, 0, err)
    return summary(err)


# ---- sockets ---------------------------------------------------------------------------------

def push_until_stalled(sock, limit, stall=0.5, timeout=30.0, chunk=None):
    """Writes up to limit bytes without reading; stops when the socket has not been writable
    for `stall` seconds (the peer stopped reading). Returns the bytes the kernel took."""
    chunk = chunk or b"x" * 65536
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + timeout
    try:
        while sent < limit and time.monotonic() < deadline:
            _, w, _ = select.select([], [sock], [], stall)
            if not w:
                return sent
            # The stream stays periodic in chunk whatever the short writes: byte i is
            # chunk[i % len(chunk)].
            off = sent % len(chunk)
            try:
                sent += sock.send(chunk[off : off + min(len(chunk) - off, limit - sent)])
            except BlockingIOError:
                continue
        return sent
    finally:
        sock.setblocking(True)


def linger_reset(sock):
    """Closes sock with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def closed_by_peer(sock, timeout):
    """'eof', 'reset' or None (still open after timeout), discarding any data read."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return "reset"
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return "reset"
            raise
        if not data:
            return "eof"


def echo_ok(listener, payload=b"ping\n", timeout=None):
    """One fresh connection: is payload echoed back within timeout?"""
    timeout = timeout or harness.IO_TIMEOUT
    with socket.socket(listener.family, socket.SOCK_STREAM) as s:
        try:
            s.settimeout(timeout)
            s.connect(listener.sockaddr)
            s.sendall(payload)
            return harness.recv_exactly(s, len(payload), timeout) == payload
        except (OSError, AssertionError):
            return False


def round_trip(sock, payload, timeout=None):
    sock.sendall(payload)
    return harness.recv_exactly(sock, len(payload), timeout or harness.IO_TIMEOUT)
