"""Several yodel instances behind HAProxy in TCP mode, with contrib/haproxy.cfg."""

import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from opslib import SOURCE_DIR, START_TIMEOUT, harness, ops_serve, wait_until

CONFIG = os.path.join(SOURCE_DIR, "contrib", "haproxy.cfg")
DEPS = os.path.join(SOURCE_DIR, "scripts", "deps.sh")
BACKENDS = 2


def ensure_haproxy():
    """Returns the haproxy path; installs Debian's package when root; else SkipTest."""
    path = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if path:
        return path
    if os.geteuid() != 0:
        raise unittest.SkipTest("haproxy not installable: not root (apt-get install haproxy)")
    try:
        r = subprocess.run([DEPS, "haproxy"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=240)
    except subprocess.TimeoutExpired:
        raise unittest.SkipTest("haproxy not installable: scripts/deps.sh haproxy timed out")
    path = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if r.returncode != 0 or not path:
        tail = r.stdout.decode(errors="replace").strip().splitlines()[-3:]
        raise unittest.SkipTest("haproxy not installable: %s" % " / ".join(tail))
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_for(frontend_port, backend_ports):
    """contrib/haproxy.cfg with its ports replaced: 8888 for the frontend, 8889.. for the
    instances; server lines beyond the instances started are dropped."""
    with open(CONFIG) as f:
        text = f.read()
    text = text.replace("bind 127.0.0.1:8888", "bind 127.0.0.1:%d" % frontend_port)
    # The test needs a few connections, not the descriptors a production maxconn asks for.
    text = re.sub(r"(?m)^(\s*maxconn) \d+", r"\1 200", text)
    servers = re.findall(r"^\s*server \S+ 127\.0\.0\.1:(\d+).*$", text, re.M)
    if len(servers) < len(backend_ports):
        raise AssertionError("contrib/haproxy.cfg has %d server lines" % len(servers))
    out = []
    n = 0
    for line in text.splitlines():
        if re.match(r"^\s*server ", line):
            if n < len(backend_ports):
                out.append(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:%d" % backend_ports[n], line))
            n += 1
            continue
        out.append(line)
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, binary, config_text):
        self.dir = tempfile.mkdtemp(prefix="yodel-haproxy-")
        self.config = os.path.join(self.dir, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.log, child_log = harness.child_log()
        # -db: foreground, no daemon; -Ws would need systemd.
        self.proc = subprocess.Popen([binary, "-db", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stdout=child_log, stderr=subprocess.STDOUT)
        child_log.close()

    def output(self):
        if self.log.closed:
            return "(stopped)"
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        harness.terminate(self.proc)
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def summary_errors(stderr):
    """{"reset": 0, ...} from the summary line's "errors: accept=0 reset=0 ..." part."""
    m = re.search(r"summary: .* errors:((?: [a-z_]+=\d+)+)\s*$", stderr, re.M)
    if m is None:
        raise AssertionError("no summary with errors in %r" % stderr)
    return {k: int(v) for k, v in re.findall(r"([a-z_]+)=(\d+)", m.group(1))}


def summary_counts(stderr):
    m = re.search(r"summary: \S+ accepted=(\d+) .* bytes_in=(\d+) ", stderr)
    if m is None:
        raise AssertionError("no summary in %r" % stderr)
    return int(m.group(1)), int(m.group(2))


class HAProxyTest(unittest.TestCase):
    def test_contrib_config_is_valid(self):
        binary = ensure_haproxy()
        r = subprocess.run([binary, "-c", "-f", CONFIG], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_connections_through_haproxy_reach_every_instance(self):
        binary = ensure_haproxy()
        servers = [ops_serve("-l", "127.0.0.1:0") for _ in range(BACKENDS)]
        for s in servers:
            self.addCleanup(s.kill)
        proxy, front = self.start_proxy(binary, servers)
        payloads = []
        for i in range(12):
            data = (b"through haproxy %02d " % i) * 60 + b"\n"  # 1201 bytes, unlike a check
            payloads.append(len(data))
            self.assertEqual(harness.exchange(front, data), data, "connection %d" % i)
        proxy.stop()
        counts = []
        for s in servers:
            status, stderr = s.stop()
            self.assertEqual(status, 0, stderr)
            counts.append(summary_counts(stderr))
        # Health checks add a connection and 14 bytes every 2 s: the bytes show real traffic.
        print("instances (accepted, bytes_in): %r" % counts)
        for accepted, bytes_in in counts:
            self.assertGreaterEqual(bytes_in, min(payloads), "an instance got no client: %r"
                                    % counts)
        self.assertGreaterEqual(sum(b for _, b in counts), sum(payloads))
        self.assertLess(sum(b for _, b in counts), sum(payloads) + 14 * 50)

    def start_proxy(self, binary, servers, edit=lambda text: text):
        """haproxy in front of servers, with edit applied to the config; retried when the
        frontend's port was taken between free_port() and haproxy's bind."""
        for attempt in range(5):
            port = free_port()
            proxy = HAProxy(binary, edit(config_for(port, [s.tcp.port for s in servers])))
            self.addCleanup(proxy.stop)
            front = harness.Listener("listening on tcp://127.0.0.1:%d" % port)
            if self.wait_until_serving(proxy, front):
                return proxy, front
            proxy.stop()
        self.fail("haproxy did not serve: %s" % proxy.output())

    def test_health_checks_of_the_contrib_config_count_no_error(self):
        # Each tcp-check of contrib/haproxy.cfg connects, sends "haproxy-check\n", reads the
        # echo and resets the connection: haproxy's normal end of a check, not an error (F6).
        binary = ensure_haproxy()
        threads = "2" if (os.cpu_count() or 1) < 2 else str(os.cpu_count())
        servers = [ops_serve("-l", "127.0.0.1:0", "-v", "--threads", n) for n in ("1", threads)]
        for s in servers:
            self.addCleanup(s.kill)
        checks = 8

        def fast_checks(text):
            # The shipped inter 2s, at 200 ms: eight check intervals in about two seconds.
            edited = re.sub(r"(?m)^(\s*default-server .*)\binter \S+", r"\1inter 200ms", text)
            self.assertNotEqual(edited, text, "no 'default-server ... inter' in haproxy.cfg")
            return edited

        proxy, front = self.start_proxy(binary, servers, fast_checks)
        for s in servers:
            s.wait_stderr(lambda text: text.count('received 14 bytes "haproxy-check') >= checks,
                          timeout=harness.IO_TIMEOUT, what="%d health checks" % checks)
        # The servers stop first, so no check is cut short by haproxy's own stop.
        for s in servers:
            status, stderr = s.stop()
            self.assertEqual(status, 0, stderr)
            accepted, _ = summary_counts(stderr)
            self.assertGreaterEqual(accepted, checks, stderr)
            errors = summary_errors(stderr)
            self.assertIn("reset", errors, stderr)
            self.assertEqual({k: v for k, v in errors.items() if v}, {},
                             "health checks counted as errors: %s" % stderr[-2000:])
        proxy.stop()

    def test_send_proxy_v2_gives_each_instance_the_real_client_and_tally_counts_backends(self):
        self.check_send_proxy("send-proxy-v2")

    def test_send_proxy_v1_gives_each_instance_the_real_client_and_tally_counts_backends(self):
        self.check_send_proxy("send-proxy")

    def check_send_proxy(self, keyword):
        # The network-testing setup: three instances that say who they are (--prefix) and read
        # HAProxy's PROXY header (--proxy-protocol), behind contrib/haproxy.cfg with the edits
        # its comment describes (send-proxy-v2 or send-proxy on the server lines, round robin).
        binary = ensure_haproxy()
        names = ["yodel%d" % i for i in range(1, 4)]
        servers = [ops_serve("-l", "127.0.0.1:0", "-m", "line", "--proxy-protocol",
                             "--prefix", "%s: " % n) for n in names]
        for s in servers:
            self.addCleanup(s.kill)

        def proxied(text):
            text = re.sub(r"(?m)^(\s*)balance leastconn", r"\1balance roundrobin", text)
            text = re.sub(r"(?m)^(\s*tcp-check connect)$", r"\1 send-proxy", text)
            edited = re.sub(r"(?m)^(\s*server \S+ \S+ check)$", r"\1 " + keyword, text)
            self.assertNotEqual(edited, text, "no 'server ... check' lines in haproxy.cfg")
            return edited

        proxy, front = self.start_proxy(binary, servers, proxied)
        r = subprocess.run([harness.YODEL_BIN, "send", "-c", "127.0.0.1:%d" % front.port,
                            "--count", "9", "--interval", "50ms", "--reconnect", "--tally"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Round robin over three: each instance answered three of the nine probes.
        rows = dict(re.findall(r"(?m)^\s*(yodel\d)\s+(\d+)\s", r.stdout))
        self.assertEqual(rows, {n: "3" for n in names}, r.stdout)
        proxy.stop()
        for s in servers:
            status, stderr = s.stop()
            self.assertEqual(status, 0, stderr)
            errors = summary_errors(stderr)
            self.assertEqual(errors.get("proxy_header", 0), 0, stderr[-2000:])

    def test_contrib_config_logs_which_instance_each_connection_reached(self):
        binary = ensure_haproxy()
        servers = [ops_serve("-l", "127.0.0.1:0") for _ in range(BACKENDS)]
        for s in servers:
            self.addCleanup(s.kill)
        proxy, front = self.start_proxy(binary, servers)
        for i in range(2 * BACKENDS):
            data = b"which instance %d\n" % i
            self.assertEqual(harness.exchange(front, data), data)
        # One tcplog line per connection: "<6>127.0.0.1:PORT [date] echo yodel/yodel1 ...".
        line = re.compile(r"^<6>127\.0\.0\.1:\d+ \[[^]]+\] echo yodel/(yodel\d) ", re.M)
        reached = wait_until(lambda: len(line.findall(proxy.output())) >= 2 * BACKENDS
                             and line.findall(proxy.output()),
                             what="a tcplog line per connection")
        self.assertEqual(sorted(set(reached)), ["yodel%d" % (i + 1) for i in range(BACKENDS)],
                         proxy.output())
        proxy.stop()

    def wait_until_serving(self, proxy, front):
        """Until an echo goes through (haproxy is up and has seen the instances healthy)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proxy.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(front.sockaddr, timeout=2) as s:
                    s.sendall(b"ready?\n")
                    s.shutdown(socket.SHUT_WR)
                    # An instance with --prefix answers "NAME: ready?\n".
                    if harness.recv_until_eof(s, timeout=2).endswith(b"ready?\n"):
                        return True
            except (OSError, AssertionError):
                pass
            time.sleep(0.05)
        return False


if __name__ == "__main__":
    unittest.main()
