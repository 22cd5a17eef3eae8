"""Out of descriptors (EMFILE) on accept, with the server under `ulimit -n 64`: no busy loop,
existing clients served, accepting resumes once descriptors free up, SIGTERM still drains.

With several event loops the loops race for the descriptors that free up (reliability issue
"out of descriptors with several loops": in 4 of 6 runs the server spun in accept4 returning
EMFILE, left the closed connections in CLOSE-WAIT and ignored SIGTERM), so the crowd scenario
runs several rounds, each with a fresh server."""

import os
import resource
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

NOFILE = 64
ROUNDS = 6
CROWD = 150  # far more than the 64 descriptors the server may hold
KEEPERS = 4  # clients connected before the crowd, still there after it


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class LimitedServer(harness.Server):
    """harness.Server, started with RLIMIT_NOFILE 64 (as `ulimit -n 64; exec yodel serve`)."""

    def __init__(self, args):
        real_popen = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = low_nofile
            return real_popen(*a, **kw)

        subprocess.Popen = popen
        try:
            super().__init__(args)
        finally:
            subprocess.Popen = real_popen


def cpu_in_window(pid, seconds=1.0):
    """(CPU seconds the process used, wall seconds) over a window of about `seconds`. The
    window is a measurement, not a synchronisation: it ends when its time is up."""
    before = hard.cpu_seconds(pid)
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        time.sleep(end - time.monotonic())
    return hard.cpu_seconds(pid) - before, time.monotonic() - started


def poll(predicate, timeout, interval=0.01):
    """Like hard.wait_for, but says False instead of failing when time is up."""
    try:
        return hard.wait_for(predicate, timeout, "", interval)
    except AssertionError:
        return False


@hard.both_thread_counts
class OutOfDescriptors(hard.ThreadVariant):
    """The server holds as many clients as its descriptor table allows; newcomers keep coming.
    A newcomer it cannot take may be closed at once or left in the backlog until descriptors
    free up (yodel pauses accepting for 100 ms at a time, as nginx does): either way it is
    never left hanging once there is room, and the server does not spin meanwhile."""

    def setUp(self):
        self.srv = LimitedServer(self.server_args("-l", hard.LOCAL, "-m", "line"))
        self.addCleanup(self.srv.kill)
        self.pid = self.srv.proc.pid
        self.held = []
        self.addCleanup(self.close_held)
        # Fill the server's descriptor table: connect until a newcomer is no longer served.
        refused = None
        for i in range(2 * NOFILE):
            s = harness.connect(self.srv.tcp)
            try:
                s.sendall(b"fill %d\n" % i)
                harness.recv_exactly(s, len(b"fill %d\n" % i), timeout=1 * hard.SLOW)
            except (OSError, AssertionError):
                refused = s
                break
            self.held.append(s)
        self.assertIsNotNone(refused, "served %d connections under ulimit -n %d"
                             % (len(self.held), NOFILE))
        refused.close()
        # Nearly the whole table is ours: only the server's own few descriptors are not.
        self.assertGreaterEqual(len(self.held), NOFILE // 2)

    def close_held(self):
        for s in self.held:
            s.close()

    def knock(self, n):
        knockers = []
        for i in range(n):
            s = harness.connect(self.srv.tcp)
            self.addCleanup(s.close)
            s.sendall(b"knock %d\n" % i)
            knockers.append(s)
        return knockers

    def assert_closed_or_served(self, knockers):
        """Each knocker was closed by the server, or is served now that there is room."""
        for i, s in enumerate(knockers):
            want = b"knock %d\n" % i
            try:
                got = harness.recv_exactly(s, len(want), timeout=5 * hard.SLOW)
            except (OSError, AssertionError) as e:
                if isinstance(e, OSError) or "EOF" in str(e):
                    continue  # closed (EOF or reset): told at once, not left waiting
                self.fail("knocker %d neither closed nor served once descriptors were free" % i)
            self.assertEqual(got, want)

    def test_server_out_of_descriptors_does_not_busy_loop(self):
        # Newcomers keep knocking: each one hits EMFILE again.
        knockers = self.knock(10)
        used, wall = cpu_in_window(self.pid, 1.5)
        self.assertLess(used, 0.25 * wall, "%.2fs of CPU in %.2fs at EMFILE" % (used, wall))
        self.close_held()
        self.assert_closed_or_served(knockers)

    def test_existing_clients_are_served_while_out_of_descriptors(self):
        self.knock(3)
        for i, s in enumerate(self.held):
            self.assertEqual(hard.round_trip(s, b"still %d\n" % i), b"still %d\n" % i)

    def test_accepting_resumes_when_descriptors_free_up(self):
        for s in self.held[:5]:
            s.close()
        del self.held[:5]
        hard.wait_for(lambda: hard.echo_ok(self.srv.tcp, b"back\n", timeout=1 * hard.SLOW),
                      5 * hard.SLOW, "a new client served after 5 descriptors were freed")

    def test_server_exits_0_after_running_out_of_descriptors_and_closes_everything(self):
        knockers = self.knock(3)
        self.close_held()
        self.assert_closed_or_served(knockers)
        counts = hard.stop_summary(self, self.srv, timeout=5 * hard.SLOW)
        self.assertGreaterEqual(counts["accepted"], len(self.held), counts)
        self.assertEqual(counts["closed"], counts["accepted"], counts)


@hard.both_thread_counts
class CrowdBeyondTheLimit(hard.ThreadVariant):
    """A crowd of 150 connects to a server allowed 64 descriptors, then leaves."""

    def crowd_round(self, n):
        """One round with a fresh server; returns what went wrong (empty: nothing)."""
        problems = []
        with LimitedServer(self.server_args("-l", hard.LOCAL, "-m", "line")) as srv:
            pid = srv.proc.pid
            keepers = []
            try:
                for i in range(KEEPERS):
                    keepers.append(harness.connect(srv.tcp))
                    payload = b"keeper %d\n" % i
                    self.assertEqual(hard.round_trip(keepers[-1], payload), payload)
                baseline = hard.fd_count(pid)
                crowd = []
                try:
                    # The kernel completes the handshakes (backlog); the server accepts what
                    # its descriptor table allows and hits EMFILE on the rest.
                    for _ in range(CROWD):
                        crowd.append(harness.connect(srv.tcp))
                    poll(lambda: hard.fd_count(pid) >= NOFILE - 8, 2 * hard.SLOW)
                finally:
                    for s in crowd:
                        s.close()
                # The crowd has left: every connection the server accepted sees its EOF.
                settled = poll(lambda: hard.fd_count(pid) <= baseline, 3 * hard.SLOW)
                used, wall = cpu_in_window(pid)
                if used > 0.25 * wall:
                    problems.append("%.2f s of CPU in %.2f s after the crowd left (busy loop)"
                                    % (used, wall))
                if not settled:
                    problems.append("%d descriptors still open after the crowd left "
                                    "(baseline %d: connections left in CLOSE-WAIT)"
                                    % (hard.fd_count(pid), baseline))
                for i, s in enumerate(keepers):
                    payload = b"still %d\n" % i
                    try:
                        ok = hard.round_trip(s, payload, timeout=2 * hard.SLOW) == payload
                    except (OSError, AssertionError):
                        ok = False
                    if not ok:
                        problems.append("client %d, connected before the crowd, not served" % i)
                        break
                if not poll(lambda: hard.echo_ok(srv.tcp, b"newcomer\n", timeout=1 * hard.SLOW),
                            3 * hard.SLOW, interval=0.05):
                    problems.append("no new client served after the crowd left (not accepting)")
            finally:
                for s in keepers:
                    s.close()
            try:
                status, err = srv.stop(timeout=5 * hard.SLOW)
            except AssertionError:
                problems.append("SIGTERM did not stop it within %.0f s" % (5 * hard.SLOW))
                return problems
            if status != 0:
                problems.append("exit status %r after SIGTERM: %s" % (status, err[-500:]))
            else:
                counts = hard.summary(err)
                if counts["closed"] != counts["accepted"]:
                    problems.append("summary: accepted=%d closed=%d"
                                    % (counts["accepted"], counts["closed"]))
        return problems

    def test_server_is_idle_and_serving_after_a_crowd_beyond_its_descriptors_leaves(self):
        # Loops race for the descriptors that free up: one round shows it about half the time.
        # One loop has nobody to race with, and two rounds are enough for it.
        rounds = ROUNDS if self.threads > 1 else 2
        for n in range(rounds):
            problems = self.crowd_round(n)
            if problems:
                self.fail("round %d of %d (%d loops, ulimit -n %d, %d clients): %s"
                          % (n + 1, rounds, self.threads, NOFILE, CROWD, "; ".join(problems)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
