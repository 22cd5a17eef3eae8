"""Out of descriptors (EMFILE) on accept, with the server under `ulimit -n 64`: no busy loop,
existing clients served, accepting resumes once descriptors free up."""

import os
import resource
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

NOFILE = 64


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class LimitedServer(harness.Server):
    """harness.Server, started with RLIMIT_NOFILE 64 (as `ulimit -n 64; exec yodel serve`)."""

    def __init__(self, args):
        import subprocess
        real_popen = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = low_nofile
            return real_popen(*a, **kw)

        subprocess.Popen = popen
        try:
            super().__init__(args)
        finally:
            subprocess.Popen = real_popen


class OutOfDescriptors(unittest.TestCase):
    def setUp(self):
        self.srv = LimitedServer(["--threads", "1", "-l", hard.LOCAL, "-m", "line"])
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
                harness.recv_exactly(s, len(b"fill %d\n" % i), timeout=2 * hard.SLOW)
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

    def test_server_out_of_descriptors_does_not_busy_loop(self):
        # Newcomers keep knocking: each one hits EMFILE again.
        knockers = [harness.connect(self.srv.tcp) for _ in range(10)]
        try:
            before = hard.cpu_seconds(self.pid)
            started = time.monotonic()
            outcomes = [hard.closed_by_peer(s, 1.0) for s in knockers]
            # A bounded window, whatever the outcomes took.
            end = started + 1.5
            while time.monotonic() < end:
                time.sleep(end - time.monotonic())
            used = hard.cpu_seconds(self.pid) - before
            wall = time.monotonic() - started
        finally:
            for s in knockers:
                s.close()
        self.assertLess(used, 0.25 * wall, "%.2fs of CPU in %.2fs at EMFILE" % (used, wall))
        self.assertEqual(outcomes.count(None), 0,
                         "connections left waiting at EMFILE: %r" % outcomes)

    def test_existing_clients_are_served_while_out_of_descriptors(self):
        with harness.connect(self.srv.tcp) as knocker:
            self.assertIsNotNone(hard.closed_by_peer(knocker, 2 * hard.SLOW))
        for i, s in enumerate(self.held):
            self.assertEqual(hard.round_trip(s, b"still %d\n" % i), b"still %d\n" % i)

    def test_accepting_resumes_when_descriptors_free_up(self):
        for s in self.held[:5]:
            s.close()
        del self.held[:5]
        hard.wait_for(lambda: hard.echo_ok(self.srv.tcp, b"back\n", timeout=1 * hard.SLOW),
                      5 * hard.SLOW, "a new client served after 5 descriptors were freed")

    def test_server_exits_0_after_running_out_of_descriptors_and_closes_everything(self):
        # libuv closes the newcomers it cannot accept itself (its reserve descriptor), without
        # telling the server: they are not in the summary, which is why nothing counts them.
        with harness.connect(self.srv.tcp) as knocker:
            self.assertIsNotNone(hard.closed_by_peer(knocker, 2 * hard.SLOW))
        self.close_held()
        counts = hard.stop_summary(self, self.srv)
        self.assertEqual(counts["accepted"], len(self.held), counts)
        self.assertEqual(counts["closed"], counts["accepted"], counts)


if __name__ == "__main__":
    unittest.main(verbosity=2)
