"""SIGHUP: the certificate, key and client CA are read again, without dropping a connection.
New connections get the new certificate; a reload that fails keeps the old one and says why."""

import json
import os
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import hard, harness  # noqa: E402

RELOADED = "yodel serve: reloaded the certificate from "


class LiveFiles:
    """The files a server is started with, in a directory of their own, replaced as a
    certificate manager does (write aside, rename over)."""

    def __init__(self, testcase, cert="server", ca=None):
        self.pki = tlslib.pki()
        self.dir = harness.tempfile.mkdtemp(prefix="yodel-live-")
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        self.cert = os.path.join(self.dir, "live.pem")
        self.key = os.path.join(self.dir, "live.key")
        self.ca = os.path.join(self.dir, "ca.pem")
        self.install(cert)
        if ca is not None:
            self.install_file(self.pki.path(ca + ".pem"), self.ca)

    def args(self):
        return ["--cert", self.cert, "--key", self.key]

    def install_file(self, src, dst):
        tmp = dst + ".new"
        shutil.copyfile(src, tmp)
        os.rename(tmp, dst)

    def install(self, name, key=None):
        self.install_file(self.pki.path(name + ".pem"), self.cert)
        self.install_file(self.pki.path((key or name) + ".key"), self.key)

    def write_cert(self, text):
        with open(self.cert + ".new", "w") as f:
            f.write(text)
        os.rename(self.cert + ".new", self.cert)


class Base(hard.ThreadVariant):
    def serve_live(self, live, *args):
        srv = self.serve("-l", "tls://127.0.0.1:0", "-m", "line", *live.args(), *args)
        self.addCleanup(srv.kill)
        return srv

    def hup(self, srv, lines_before, text=RELOADED):
        """SIGHUP, then waits for the one more log line that says how it went."""
        srv.send_signal(signal.SIGHUP)
        return srv.wait_stderr(lambda t: t.count(text) >= lines_before + 1,
                               what="%r #%d" % (text, lines_before + 1))

    def serial(self, srv):
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertEqual(tlslib.round_trip(s, b"serial?\n"), b"serial?\n")
            return tlslib.peer_serial(s)


@hard.both_thread_counts
class Reload(Base):
    def test_sighup_serves_the_new_certificate_to_new_connections(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER_SERIAL)
        live.install("server2")
        self.hup(srv, 0)
        with tlslib.tls_connect(tlslib.tls_listener(srv)) as s:
            self.assertEqual(tlslib.peer_serial(s), tlslib.Pki.SERVER2_SERIAL)
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            self.assertEqual(subject["organizationName"], "rotated")
        self.assertIn(RELOADED + live.cert + "\n", srv.read_stderr())

    def test_a_connection_open_across_a_reload_keeps_going(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        with tlslib.tls_connect(tlslib.tls_listener(srv), ragged_ok=False) as s:
            self.assertEqual(tlslib.round_trip(s, b"before\n"), b"before\n")
            live.install("server2")
            self.hup(srv, 0)
            self.assertEqual(tlslib.round_trip(s, b"after\n"), b"after\n")
            self.assertEqual(tlslib.peer_serial(s), tlslib.Pki.SERVER_SERIAL)
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER2_SERIAL)

    def test_reloads_under_load_drop_no_connection(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        li = tlslib.tls_listener(srv)
        stop = threading.Event()
        results = []

        def client(n):
            done, error = 0, None
            try:
                with tlslib.tls_connect(li) as s:
                    while not stop.is_set():
                        line = b"client %d message %d\n" % (n, done)
                        if tlslib.round_trip(s, line) != line:
                            raise AssertionError("wrong echo")
                        done += 1
            except Exception as e:  # noqa: BLE001 - reported below
                error = repr(e)
            results.append((n, done, error))

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
        for t in threads:
            t.start()
        serials = []
        for i in range(6):
            live.install("server2" if i % 2 == 0 else "server")
            self.hup(srv, i)
            serials.append(self.serial(srv))
        stop.set()
        for t in threads:
            t.join(tlslib.IO_TIMEOUT)
        self.assertEqual(serials, [tlslib.Pki.SERVER2_SERIAL, tlslib.Pki.SERVER_SERIAL] * 3)
        self.assertEqual([r[2] for r in results], [None] * 8, results)
        self.assertTrue(all(r[1] > 0 for r in results), results)
        counts = hard.stop_summary(self, srv)
        self.assertEqual(counts["accepted"], 8 + 6)
        self.assertEqual(counts["closed"], 8 + 6)
        self.assertEqual(sum(v for k, v in counts.items()
                             if k in ("reset", "io", "tls_handshake", "drain_timeout")), 0)

    def test_one_sighup_reloads_once_whatever_the_thread_count(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        for i in range(3):
            self.hup(srv, i)
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER_SERIAL)
        status, err = srv.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(err.count(RELOADED), 3)

    def test_sighup_rereads_the_client_ca(self):
        live = LiveFiles(self, ca="client-ca")
        srv = self.serve_live(live, "--client-ca", live.ca)
        li = tlslib.tls_listener(srv)
        self.assertIsNone(tlslib.handshake_refused(li, tlslib.client_context(cert="client")))
        self.assertIsNotNone(tlslib.handshake_refused(li, tlslib.client_context(cert="stranger")))
        live.install_file(live.pki.path("other-ca.pem"), live.ca)
        self.hup(srv, 0)
        self.assertIsNone(tlslib.handshake_refused(li, tlslib.client_context(cert="stranger")))
        self.assertIsNotNone(tlslib.handshake_refused(li, tlslib.client_context(cert="client")))


@hard.both_thread_counts
class FailedReload(Base):
    FAILED = "yodel serve: reload failed: "

    def test_a_reload_of_a_broken_certificate_keeps_the_old_one_and_says_why(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        live.write_cert("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
        err = self.hup(srv, 0, self.FAILED)
        line = [l for l in err.splitlines() if l.startswith(self.FAILED)][0]
        self.assertIn(live.cert, line)
        self.assertIn("still serving the old certificate", line)
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER_SERIAL)
        # Fixed files: the next SIGHUP takes them.
        live.install("server2")
        self.hup(srv, 0)
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER2_SERIAL)

    def test_a_reload_of_a_key_that_does_not_match_keeps_the_old_certificate(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        live.install("server2", key="server")
        err = self.hup(srv, 0, self.FAILED)
        self.assertRegex(err, r"reload failed: .*does not match")
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER_SERIAL)

    def test_a_reload_of_a_missing_file_keeps_the_old_certificate(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        os.unlink(live.key)
        err = self.hup(srv, 0, self.FAILED)
        self.assertIn("reload failed: cannot read %s: No such file or directory" % live.key, err)
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER_SERIAL)
        status, err = srv.stop()
        self.assertEqual(status, 0, err)

    def test_a_reload_while_out_of_descriptors_says_so_and_keeps_the_old_certificate(self):
        live = LiveFiles(self)
        srv = self.serve_live(live)
        fds = "/proc/%d/fd" % srv.proc.pid
        limit = len(os.listdir(fds)) + 8
        harness.run(["prlimit", "--pid", str(srv.proc.pid), "--nofile=%d:%d" % (limit, limit)])
        li = tlslib.tls_listener(srv)
        crowd = []
        self.addCleanup(lambda: [s.close() for s in crowd])
        for _ in range(limit):  # silent clients: each holds a descriptor until it is full
            crowd.append(harness.connect(li))
        hard.wait_for(lambda: len(os.listdir(fds)) >= limit, 10 * tlslib.SLOW,
                      "the server out of descriptors")
        err = self.hup(srv, 0, self.FAILED)
        self.assertIn("reload failed: cannot read %s: Too many open files" % live.cert, err)
        for s in crowd:
            s.close()
        crowd.clear()
        self.assertEqual(self.serial(srv), tlslib.Pki.SERVER_SERIAL)

    def test_a_failed_reload_is_a_json_error_with_json(self):
        live = LiveFiles(self)
        srv = self.serve_live(live, "--json")
        os.unlink(live.cert)
        err = self.hup(srv, 0, '"reload failed: ')
        event = [json.loads(l) for l in err.splitlines() if "reload failed" in l][0]
        self.assertEqual(event["event"], "error")
        self.assertTrue(event["message"].startswith("reload failed: cannot read " + live.cert))

    def test_a_reload_is_a_json_event_with_json(self):
        live = LiveFiles(self)
        srv = self.serve_live(live, "--json")
        err = self.hup(srv, 0, '"event":"reloaded"')
        event = [json.loads(l) for l in err.splitlines() if '"reloaded"' in l][0]
        self.assertEqual(event["cert"], live.cert)
        self.assertIn("ts", event)

    def test_quiet_logs_a_failed_reload_but_not_a_good_one(self):
        live = LiveFiles(self)
        srv = self.serve_live(live, "-q")
        os.unlink(live.cert)
        self.hup(srv, 0, self.FAILED)
        live.install("server2")
        srv.send_signal(signal.SIGHUP)
        hard.wait_for(lambda: self.serial(srv) == tlslib.Pki.SERVER2_SERIAL,
                      tlslib.IO_TIMEOUT, "the new certificate served")
        status, err = srv.stop()
        self.assertEqual(status, 0, err)
        self.assertNotIn("reloaded", err)


@hard.both_thread_counts
class PlainSighup(hard.ThreadVariant):
    def test_sighup_to_a_server_without_cert_changes_nothing_and_kills_nothing(self):
        srv = self.serve("-l", "127.0.0.1:0", "-m", "line")
        self.addCleanup(srv.kill)
        with harness.connect(srv.tcp) as s:
            self.assertEqual(hard.round_trip(s, b"before\n"), b"before\n")
            srv.send_signal(signal.SIGHUP)
            srv.wait_stderr(lambda t: "yodel serve: SIGHUP: nothing to reload (no --cert)\n" in t,
                            what="the SIGHUP line")
            self.assertEqual(hard.round_trip(s, b"after\n"), b"after\n")
        status, err = srv.stop()
        self.assertEqual(status, 0, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
