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
import unittest

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


# ---- thread variants -------------------------------------------------------------------------

def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# What users run is the default: one loop per usable CPU. On a one-CPU machine that would be the
# --threads 1 variant again, so the "default" variant asks for two loops there.
DEFAULT_THREADS = max(2, usable_cpus())
DEFAULT_THREAD_ARGS = [] if usable_cpus() >= 2 else ["--threads", "2"]
VARIANTS = (("Threads1", 1, ["--threads", "1"]),
            ("ThreadsDefault", DEFAULT_THREADS, DEFAULT_THREAD_ARGS))


class ThreadVariant:
    """Mixin for a test class that runs once per thread variant (see both_thread_counts):
    self.threads is the number of event loops, self.serve() starts the server with them."""

    threads = 1
    thread_args = ["--threads", "1"]

    def serve(self, *args, **kw):
        return serve(*self.thread_args, *args, **kw)

    def server_args(self, *args):
        """The thread arguments and args, for servers not started with self.serve()."""
        return list(self.thread_args) + list(args)


def both_thread_counts(cls):
    """Class decorator: cls (a ThreadVariant mixin, not a TestCase) becomes two TestCases in its
    module, cls.__name__ + 'Threads1' and + 'ThreadsDefault', so every test runs with one event
    loop and with the default count (one per CPU, at least two)."""
    module = sys.modules[cls.__module__]
    for suffix, threads, args in VARIANTS:
        name = cls.__name__ + suffix
        variant = type(name, (cls, unittest.TestCase),
                       {"threads": threads, "thread_args": list(args),
                        "__module__": cls.__module__, "__qualname__": name,
                        "__doc__": cls.__doc__})
        setattr(module, name, variant)
    return cls


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


def thread_wakeups(pid):
    """{tid: voluntary context switches} for every thread of pid. An event loop thread blocks in
    epoll_wait between events: its count rises only when it had something to do."""
    found = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        found[int(tid)] = int(line.split()[1])
        except OSError:
            pass  # the thread ended meanwhile
    return found


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


SUMMARY_RE = re.compile(r"^yodel(?: serve)?: summary: .*$", re.M)


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


def connect_on_a_worker(srv, listener=None, attempts=30):
    """A connection that a worker thread (not the main one, whose loop also handles the signals)
    serves: the thread that woke up to echo a round trip is the one serving it. The kernel
    spreads connections over the loops (SO_REUSEPORT) at random, so connections served by the
    main thread are closed (and their close awaited) until one lands on a worker."""
    pid = srv.proc.pid
    listener = listener or srv.tcp
    baseline = fd_count(pid)
    for i in range(attempts):
        s = harness.connect(listener)
        # Accepted first: the accept's own wake-up is out of the way.
        wait_for(lambda: fd_count(pid) > baseline, 5 * SLOW, "connection %d accepted" % i)
        before = thread_wakeups(pid)
        payload = b"which thread %d\n" % i
        if round_trip(s, payload) != payload:
            raise AssertionError("no echo on connection %d" % i)

        def woke():
            now = thread_wakeups(pid)
            return {tid for tid, n in now.items() if n > before.get(tid, 0)}

        threads = wait_for(woke, 5 * SLOW, "the serving thread back in epoll_wait")
        if pid not in threads:
            return s
        s.close()
        wait_for(lambda: fd_count(pid) <= baseline, 5 * SLOW, "the discarded connection closed")
    raise AssertionError("%d connections in a row served by the main thread" % attempts)


def round_trip(sock, payload, timeout=None):
    sock.sendall(payload)
    return harness.recv_exactly(sock, len(payload), timeout or harness.IO_TIMEOUT)
