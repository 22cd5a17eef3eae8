"""The files yodel send and yodel bench are given for TLS (--ca, --cert, --key) as a careless
or hostile user gives them: a directory where a PEM file belongs is a usage error (exit 2) of
one line that says so, not OpenSSL's "no certificate or crl found" or "PEM lib"."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import harness  # noqa: E402


def yodel(*args):
    return subprocess.run([tlslib.YODEL_BIN, *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=harness.CMD_TIMEOUT)


class DirectoryAsFile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="yodel-tls-dir-")
        self.addCleanup(os.rmdir, self.dir)
        self.pem = tlslib.pki().path("server.pem")

    def assert_usage_error(self, result, command, option):
        err = result.stderr.decode()
        self.assertEqual(result.returncode, 2, err)
        self.assertEqual(result.stdout, b"")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("yodel %s: %s: %s is a directory" % (command, option, self.dir), err)

    # Port 1 of 127.0.0.1: nothing is connected to, the options are refused before.
    def test_send_with_a_directory_as_ca_exits_2_saying_it_is_a_directory(self):
        r = yodel("send", "--tls", "-c", "127.0.0.1:1", "--ca", self.dir, "hi")
        self.assert_usage_error(r, "send", "--ca")

    def test_send_with_a_directory_as_cert_exits_2_saying_it_is_a_directory(self):
        r = yodel("send", "--tls", "-c", "127.0.0.1:1", "--cert", self.dir, "hi")
        self.assert_usage_error(r, "send", "--cert")

    def test_send_with_a_directory_as_key_exits_2_saying_it_is_a_directory(self):
        r = yodel("send", "--tls", "-c", "127.0.0.1:1", "--cert", self.pem, "--key", self.dir,
                  "hi")
        self.assert_usage_error(r, "send", "--key")

    def test_bench_with_a_directory_as_ca_exits_2_saying_it_is_a_directory(self):
        r = yodel("bench", "--tls", "-c", "127.0.0.1:1", "--ca", self.dir)
        self.assert_usage_error(r, "bench", "--ca")

    def test_bench_with_a_directory_as_cert_exits_2_saying_it_is_a_directory(self):
        r = yodel("bench", "--tls", "-c", "127.0.0.1:1", "--cert", self.dir)
        self.assert_usage_error(r, "bench", "--cert")


if __name__ == "__main__":
    unittest.main()
