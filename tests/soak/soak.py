"""`make soak`: many concurrent connections against yodel serve for SOAK_SECONDS, then checks.

A server per mode (raw, line and upper: the mode is per process) and per thread setting in
SOAK_THREADS (default "default,1": the default thread count, one loop per CPU as users run it,
and --threads 1), on 127.0.0.1 ephemeral ports. SOAK_PROCS client processes, each from its own 127.0.0.x
source address, share SOAK_CONNS connections and do mixed work (see soak_client.py). Afterwards:
every echoed byte was verified, no unexpected error, each server's descriptors back to the
baseline (/proc/PID/fd), RSS near the baseline, and a clean exit with a summary.

Environment: YODEL_BIN (default build/yodel), SOAK_SECONDS (60), SOAK_CONNS (10000),
SOAK_PROCS (4), SOAK_RSS_SLACK_MIB (32: RSS after the soak may exceed the baseline by this),
SOAK_THREADS ("default,1"), SOAK_OP_TIMEOUT (60: an operation on which nothing moved for this
long fails as a timeout; see soak_client.py).
"""

import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
YODEL = os.environ.get("YODEL_BIN") or os.path.join(ROOT, "build", "yodel")
SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
CONNS = int(os.environ.get("SOAK_CONNS", "10000"))
PROCS = int(os.environ.get("SOAK_PROCS", "4"))
RSS_SLACK_KIB = int(os.environ.get("SOAK_RSS_SLACK_MIB", "32")) * 1024
MODES = ("raw", "line", "upper")
THREADS = [t.strip() for t in os.environ.get("SOAK_THREADS", "default,1").split(",") if t.strip()]


def raise_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Server:
    def __init__(self, mode, threads):
        self.mode = mode
        self.threads = threads
        self.name = "%s/%s" % (mode, "t" + threads if threads != "default" else "default")
        extra = [] if threads == "default" else ["--threads", threads]
        # The server writes through its own O_APPEND descriptor, so reading the log (seek(0))
        # can never move its write position.
        self.err = tempfile.NamedTemporaryFile(prefix="yodel-soak-")
        child_err = open(self.err.name, "ab")
        self.proc = subprocess.Popen(
            [YODEL, "serve", "-l", "127.0.0.1:0", "-m", mode] + extra, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=child_err, preexec_fn=raise_nofile)
        child_err.close()
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise SystemExit("soak: yodel serve -m %s printed no listening line" % mode)
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise SystemExit("soak: yodel serve -m %s exited: %s" % (mode, self.stderr()))
            buf += chunk
        m = re.match(rb"listening on tcp://127\.0\.0\.1:(\d+)", buf)
        self.port = int(m.group(1))
        self.base_fds = fd_count(self.pid)
        self.base_rss = rss_kib(self.pid)
        self.peak_fds = self.base_fds
        self.peak_rss = self.base_rss
        self.status = None

    def sample(self):
        if self.proc.poll() is None:
            self.peak_fds = max(self.peak_fds, fd_count(self.pid))
            self.peak_rss = max(self.peak_rss, rss_kib(self.pid))

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.status = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.status = "killed after 20 s"
            self.proc.wait()
        return self.status

    def summary(self):
        m = re.findall(r"^yodel(?: serve)?: summary: .*$", self.stderr(), re.M)
        return {k: int(v) for k, v in re.findall(r"\b(\w+)=(\d+)", m[-1])} if m else {}


def main():
    raise_nofile()
    need = CONNS // PROCS + 100
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < need:
        raise SystemExit("soak: RLIMIT_NOFILE hard limit below %d" % need)
    print("soak: %d connections from %d processes for %.0f s against %s"
          % (CONNS, PROCS, SECONDS, YODEL), flush=True)
    servers = [Server(m, t) for t in THREADS for m in MODES]
    print("soak: servers %s" % " ".join(s.name for s in servers), flush=True)
    failures = []
    clients = []
    peak_total = 0
    elapsed = 0.0
    total = {}
    after = []
    stalls = []
    lag_max = longest_op = 0.0
    try:
        for i in range(PROCS):
            n = CONNS // PROCS + (1 if i < CONNS % PROCS else 0)
            source = "127.0.0.%d" % (10 + i)
            cmd = [sys.executable, os.path.join(HERE, "soak_client.py"), str(1000 + i), source,
                   str(n), str(SECONDS)] + ["%s:%d" % (s.mode, s.port) for s in servers]
            clients.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            stdin=subprocess.DEVNULL))
        started = time.monotonic()
        hard_deadline = started + SECONDS + 180
        next_report = started + 10
        peak_total = 0
        while any(c.poll() is None for c in clients) and time.monotonic() < hard_deadline:
            for s in servers:
                s.sample()
            try:
                peak_total = max(peak_total, sum(fd_count(s.pid) - s.base_fds for s in servers))
            except OSError:
                pass
            if time.monotonic() >= next_report:
                next_report += 10
                print("soak: %3.0fs  fds %s  rss_mib %s" % (
                    time.monotonic() - started,
                    "/".join(str(fd_count(s.pid) - s.base_fds) for s in servers),
                    "/".join("%.1f" % (rss_kib(s.pid) / 1024) for s in servers)), flush=True)
            time.sleep(0.25)  # sampling cadence, not synchronisation
        reports = []
        for i, c in enumerate(clients):
            try:
                out, err = c.communicate(timeout=max(1, hard_deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.kill()
                out, err = c.communicate()
                failures.append("client %d did not finish by the hard deadline" % i)
            try:
                reports.append(json.loads(out.decode().strip().splitlines()[-1]))
            except (ValueError, IndexError):
                failures.append("client %d: no report (status %s): %s"
                                % (i, c.returncode, err.decode()[-2000:]))
        elapsed = time.monotonic() - started
        total = {}
        stalls = []
        lag_max = longest_op = 0.0
        for r in reports:
            stalls += r.pop("stalls", [])
            lag_max = max(lag_max, r.pop("loop_lag_max", 0.0))
            longest_op = max(longest_op, r.pop("longest_op", 0.0))
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[k] = total.get(k, 0) + v
        for k in ("mismatches", "unexpected_eof", "unexpected_reset", "timeouts",
                  "other_errors", "connect_errors"):
            if total.get(k, 0):
                firsts = [r["first_error"] for r in reports if r.get("first_error")]
                failures.append("%s=%d (first: %s)" % (k, total[k], firsts[:1]))

        # Every client is gone: each server's descriptors must come back to the baseline.
        settle = time.monotonic() + 30
        while time.monotonic() < settle and any(fd_count(s.pid) > s.base_fds for s in servers):
            time.sleep(0.1)
        after = [(fd_count(s.pid), rss_kib(s.pid)) for s in servers]
        for s, (fds, rss) in zip(servers, after):
            if fds != s.base_fds:
                failures.append("%s server: %d descriptors after the soak, baseline %d"
                                % (s.name, fds, s.base_fds))
            if rss > s.base_rss + RSS_SLACK_KIB:
                failures.append("%s server: RSS %d KiB after the soak, baseline %d KiB"
                                % (s.name, rss, s.base_rss))
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        statuses = [s.stop() for s in servers]
    for s, st in zip(servers, statuses):
        if st != 0:
            failures.append("%s server exited with %r: %s" % (s.name, st, s.stderr()[-2000:]))

    sums = [s.summary() for s in servers]
    print()
    print("== soak summary")
    print("duration            %.1f s (SOAK_SECONDS=%.0f), %d client processes, %d connections"
          % (elapsed, SECONDS, PROCS, CONNS))
    print("client operations   connects=%d round_trips=%d slow_reads=%d graceful_closes=%d "
          "abrupt_closes=%d resets=%d"
          % tuple(total.get(k, 0) for k in ("connects", "round_trips", "slow_reads",
                                             "graceful_closes", "abrupt_closes", "resets")))
    print("client bytes        sent=%d verified=%d abandoned_by_disconnects=%d"
          % tuple(total.get(k, 0) for k in ("bytes_sent", "bytes_verified", "bytes_abandoned")))
    print("client errors       mismatches=%d unexpected_eof=%d unexpected_reset=%d timeouts=%d "
          "other=%d connect_errors=%d"
          % tuple(total.get(k, 0) for k in ("mismatches", "unexpected_eof", "unexpected_reset",
                                             "timeouts", "other_errors", "connect_errors")))
    print("concurrency         peak %d connections open at once on the servers (sampled every "
          "0.25 s)" % peak_total)
    print("client load         cpu=%.1f s waited_for_cpu=%.1f s; event loops at most %.2f s late; "
          "longest operation %.1f s; slow_ops=%d (moving, but over %.0f s)"
          % (total.get("cpu_seconds", 0), total.get("cpu_wait_seconds", 0) or 0, lag_max,
             longest_op, total.get("slow_ops", 0), float(os.environ.get("SOAK_OP_TIMEOUT", 60))))
    for s, (fds, rss), sm in zip(servers, after, sums):
        print("server %-13s fds baseline=%d peak=%d after=%d  rss_kib baseline=%d peak=%d "
              "after=%d  exit=%s" % (s.name, s.base_fds, s.peak_fds, fds, s.base_rss,
                                     s.peak_rss, rss, s.status))
        print("  summary           %s" % " ".join("%s=%d" % kv for kv in sm.items()))
    for st in stalls:
        # A timed-out operation: both ends of the connection as ss saw them, a second apart.
        print("stalled connection  %s" % json.dumps(st))
    print("result              %s" % ("PASS" if not failures else "FAIL"))
    for f in failures:
        print("  failure: %s" % f)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
