"""Helpers of the operations tests, on top of tests/integration/harness.py."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import harness  # noqa: E402
from harness import IO_TIMEOUT, START_TIMEOUT, Listener  # noqa: E402,F401

SOURCE_DIR = os.environ.get("YODEL_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
)

METRICS_RE = re.compile(r"^metrics on (http://(127\.0\.0\.1|\[[^\]]+\]|[^:/\s]+):(\d+)/metrics)\s*$")


class OpsServer(harness.Server):
    """A `yodel serve` whose stdout may also carry a 'metrics on URL' line (--metrics)."""

    def __init__(self, args, **kw):
        self.metrics_url = None
        self.metrics_port = None
        self._want_metrics = any(a == "--metrics" or a.startswith("--metrics=") for a in args)
        super().__init__(args, **kw)

    def _read_listeners(self, expect):
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        while len(self.listeners) < expect or (self._want_metrics and self.metrics_url is None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    "yodel serve %s: %d of %d listening lines (metrics %r) within %.0fs; "
                    "stderr: %r" % (" ".join(self.args), len(self.listeners), expect,
                                     self.metrics_url, START_TIMEOUT, self.read_stderr()))
            ready = harness.select.select([fd], [], [], left)[0]
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = self.proc.wait(timeout=harness.STOP_TIMEOUT)
                raise AssertionError("yodel serve %s exited with %d before listening; stderr: %r"
                                     % (" ".join(self.args), rc, self.read_stderr()))
            self._stdout_buf += chunk
            while b"\n" in self._stdout_buf:
                line, self._stdout_buf = self._stdout_buf.split(b"\n", 1)
                text = line.decode()
                m = METRICS_RE.match(text)
                if m is not None:
                    self.metrics_url = m.group(1)
                    self.metrics_port = int(m.group(3))
                else:
                    self.listeners.append(Listener(text))


def ops_serve(*args, **kw):
    return OpsServer([str(a) for a in args], **kw)


def http_request(port, raw, timeout=IO_TIMEOUT):
    """Sends raw bytes to 127.0.0.1:port, reads to EOF, returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = harness.recv_until_eof(s, timeout)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("no HTTP response head in %r" % data[:200])
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise AssertionError("not an HTTP status line: %r" % lines[0])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, body


def scrape(port, path="/metrics"):
    status, headers, body = http_request(
        port, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n" % path).encode())
    return status, headers, body.decode()


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """Parses Prometheus text format strictly enough to catch mistakes: every line is a
    comment (# HELP / # TYPE) or a sample. Returns {(name, frozenset(labels)): value} and
    {name: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE_RE.match(line)
        if m is None:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def metric(samples, name, **labels):
    """Sum of the samples of name whose labels include the given ones."""
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    if not found:
        raise AssertionError("no sample %s%r among %r" % (name, labels, sorted(
            {n for n, _ in samples})))
    return sum(found)


def wait_until(predicate, timeout=IO_TIMEOUT, what="a condition", step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s did not hold within %.0fs" % (what, timeout))
        time.sleep(step)
