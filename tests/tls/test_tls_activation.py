"""Socket activation of a TLS port (systemd's LISTEN_FDS, here from systemd-socket-activate):
with --cert every activated stream socket is TLS; when sockets are named (FileDescriptorName=,
--fdname), only those named "tls" are, so one unit can pass a plain and a TLS port."""

import os
import select
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import hard, harness  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Activated:
    """`systemd-socket-activate -l 127.0.0.1:P1 [-l ...] [--fdname=...] yodel serve ARGS`: it
    binds, waits for the first client, then execs yodel with the sockets as fds 3...."""

    def __init__(self, test, nports, fdnames, *args):
        self.stderr = b""
        for attempt in range(5):
            self.ports = [free_port() for _ in range(nports)]
            cmd = ["systemd-socket-activate"]
            for p in self.ports:
                cmd += ["-l", "127.0.0.1:%d" % p]
            if fdnames:
                cmd.append("--fdname=" + fdnames)
            cmd += [harness.YODEL_BIN, "serve"] + list(args)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
            test.addCleanup(self.kill)
            if self.wait_stderr(b"Listening on", nports):
                return
            self.kill()
            if b"Address already in use" not in self.stderr:
                break
        raise AssertionError("systemd-socket-activate did not listen: %r" % self.stderr)

    def wait_stderr(self, what, count=1, timeout=harness.START_TIMEOUT):
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while self.stderr.count(what) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            self.stderr += chunk
        return True

    def listener(self, i, scheme):
        return tlslib.Listener("listening on %s://127.0.0.1:%d" % (scheme, self.ports[i]))

    def stop(self):
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=harness.STOP_TIMEOUT)
        self.stderr += err
        return self.proc.returncode, out.decode(), self.stderr.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def first_tls_client(listener):
    """The first client starts yodel: the handshake waits in the socket's backlog meanwhile."""
    return tlslib.tls_connect(listener, timeout=tlslib.IO_TIMEOUT)


@hard.both_thread_counts
class TlsActivation(hard.ThreadVariant):
    def setUp(self):
        harness.require_tool(self, "systemd-socket-activate")
        self.pki = tlslib.pki()

    def test_with_cert_an_activated_stream_socket_is_served_with_tls(self):
        act = Activated(self, 1, None, *self.thread_args, "-m", "line",
                        *self.pki.server_args())
        li = act.listener(0, "tls")
        with first_tls_client(li) as s:
            self.assertEqual(tlslib.round_trip(s, b"activated\n"), b"activated\n")
        with tlslib.tls_connect(li) as s:
            self.assertEqual(tlslib.round_trip(s, b"again\n"), b"again\n")
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(out.splitlines(), ["listening on tls://127.0.0.1:%d" % act.ports[0]])
        self.assertIn("accepted=2 ", err)
        self.assertIn("tls_handshake=0", err)

    def test_named_sockets_make_only_the_one_named_tls_a_tls_port(self):
        act = Activated(self, 2, "plain:tls", *self.thread_args, "-m", "upper",
                        *self.pki.server_args())
        with first_tls_client(act.listener(1, "tls")) as s:
            self.assertEqual(tlslib.round_trip(s, b"secret\n"), b"SECRET\n")
        self.assertEqual(harness.exchange(act.listener(0, "tcp"), b"plain\n"), b"PLAIN\n")
        status, out, err = act.stop()
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(out.splitlines()),
                         sorted(["listening on tcp://127.0.0.1:%d" % act.ports[0],
                                 "listening on tls://127.0.0.1:%d" % act.ports[1]]))
        self.assertIn("tls_handshake=0", err)

    def test_a_socket_named_tls_without_a_certificate_is_refused_at_start(self):
        act = Activated(self, 1, "tls", *self.thread_args, "-m", "line")
        with socket.create_connection(("127.0.0.1", act.ports[0]), timeout=5) as s:
            # yodel starts, says why it cannot serve, and exits: the connection ends.
            self.assertIn(hard.closed_by_peer(s, harness.STOP_TIMEOUT), ("eof", "reset"))
        self.assertEqual(act.proc.wait(timeout=harness.STOP_TIMEOUT), 1)
        status, out, err = act.stop()
        self.assertEqual(out, "")
        self.assertIn("yodel serve: socket activation: descriptor 3 is named tls, and TLS needs "
                      "--cert FILE", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
