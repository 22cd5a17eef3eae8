"""Load from many machines, on one: N `yodel bench --json` processes at once against one
`yodel serve --metrics`, their summaries added up by `yodel bench merge`, and the merged report
checked against the server's own counters.

What is exactly verifiable, and why (closed loop, --warmup 0, a line-mode server):
- connections: each bench opens -n connections once and closes them at the end, so the merged
  `connected` equals the server's accepted and closed connections.
- messages: without a warmup every message a bench sends is sent while measuring. In a closed
  loop each connection keeps -p (depth) messages in flight: a reply sends the next message. When
  -t ends, a bench sends nothing more and waits for the echoes still in flight; the server
  counted those messages but the bench does not count their round trips (they end after the
  measured window). So the server's messages (lines: each 64 B message is one line) are the
  merged round trips plus connected x depth, and its bytes received are messages x 64.
A merge that lost or doubled a run, or a bench that counted what it did not measure, breaks
these equalities by thousands.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from opslib import harness, metric, ops_serve, parse_exposition, scrape, wait_until

RUNS = 3
CONNS = 4
DEPTH = 2
SIZE = 64
BENCH_TIMEOUT = 60.0 * harness.SLOW


def merge_available():
    """Whether this yodel has `bench merge` (a yodel without it answers --help with bench's
    own usage)."""
    r = subprocess.run([harness.YODEL_BIN, "bench", "merge", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=harness.CMD_TIMEOUT)
    return r.returncode == 0 and b"usage: yodel bench merge" in r.stdout


class ManyMachinesTest(unittest.TestCase):
    """One server, RUNS benches started together, their merge: made once for the class."""

    @classmethod
    def setUpClass(cls):
        if not merge_available():
            raise unittest.SkipTest("yodel bench merge not yet available")
        cls.dir = tempfile.mkdtemp(prefix="yodel-many-")
        cls.srv = ops_serve("-l", "127.0.0.1:0", "-m", "line", "--metrics", "127.0.0.1:0")
        try:
            cls.outputs = cls.run_benches()
            cls.merged, cls.report = cls.merge()
            cls.counters = cls.settled_counters()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.kill()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def run_benches(cls):
        """Starts RUNS benches at once (as N machines or the N pods of a Job would), waits for
        all; returns their summary files."""
        procs, paths = [], []
        for i in range(RUNS):
            path = os.path.join(cls.dir, "bench-%d.json" % i)
            with open(path, "wb") as out:
                procs.append(subprocess.Popen(
                    [harness.YODEL_BIN, "bench", "-c", cls.srv.tcp.addr, "-n", str(CONNS),
                     "-p", str(DEPTH), "-s", str(SIZE), "-t", "1s", "--warmup", "0", "--json"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE))
            paths.append(path)
        for proc, path in zip(procs, paths):
            _, stderr = proc.communicate(timeout=BENCH_TIMEOUT)
            if proc.returncode != 0:
                raise AssertionError("yodel bench exited %d: %s" % (proc.returncode, stderr))
        return paths

    @classmethod
    def merge(cls):
        """(the merged summary as a dict, the merged report as text)."""
        as_json = harness.yodel("bench", "merge", "--json", *cls.outputs)
        if as_json.returncode != 0:
            raise AssertionError("bench merge --json: %s" % as_json.stderr)
        text = harness.yodel("bench", "merge", *cls.outputs)
        if text.returncode != 0:
            raise AssertionError("bench merge: %s" % text.stderr)
        return json.loads(as_json.stdout), text.stdout.decode()

    @classmethod
    def settled_counters(cls):
        """The server's counters once every bench connection has closed on its side too."""
        def settled():
            s = parse_exposition(scrape(cls.srv.metrics_port)[2])[0]
            closed = metric(s, "yodel_connections_closed_total")
            return s if closed == RUNS * CONNS and metric(
                s, "yodel_connections_active") == 0 else None

        return wait_until(settled, what="the server seeing every bench connection closed")

    def server(self, name):
        return metric(self.counters, name, listener=self.srv.tcp.addr)

    def test_merge_adds_up_every_run_without_errors(self):
        self.assertEqual(self.merged["merged_runs"], RUNS)
        self.assertEqual(self.merged["connections"], RUNS * CONNS)
        self.assertEqual(self.merged["errors"], 0)
        runs = [json.load(open(path)) for path in self.outputs]
        self.assertEqual(self.merged["round_trips"], sum(r["round_trips"] for r in runs))
        self.assertIn("%d runs made at the same time" % RUNS, self.report)

    def test_merged_connections_equal_the_servers_accepted_and_closed(self):
        self.assertEqual(self.merged["connected"], RUNS * CONNS)
        self.assertEqual(self.server("yodel_connections_accepted_total"),
                         self.merged["connected"])
        self.assertEqual(self.server("yodel_connections_closed_total"), self.merged["connected"])
        self.assertEqual(self.server("yodel_connections_refused_total"), 0)

    def test_servers_messages_are_the_merged_round_trips_plus_those_in_flight_at_the_end(self):
        self.assertGreater(self.merged["round_trips"], 0)
        in_flight = self.merged["connected"] * self.merged["depth"]
        self.assertEqual(self.server("yodel_messages_total"),
                         self.merged["round_trips"] + in_flight)

    def test_servers_bytes_are_its_messages_times_the_message_size(self):
        self.assertEqual(self.server("yodel_bytes_received_total"),
                         SIZE * self.server("yodel_messages_total"))
        self.assertEqual(self.server("yodel_bytes_sent_total"),
                         self.server("yodel_bytes_received_total"))


if __name__ == "__main__":
    unittest.main()
