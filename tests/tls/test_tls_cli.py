"""The TLS options of yodel serve: a misuse is one line and exit 2, files that cannot be used
are one line with the library's reason and exit 1, and nothing claims to listen."""

import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tlslib  # noqa: E402
from tlslib import harness  # noqa: E402

TLS = ["-l", "tls://127.0.0.1:0"]


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tlslib.pki()

    def serve_fails(self, status, *args):
        r = harness.yodel("serve", *args)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, status, err)
        self.assertEqual(r.stdout, b"", "nothing may claim to listen")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith("yodel serve: "), err)
        return err.rstrip("\n")


class UsageErrors(Base):
    def test_a_tls_listener_without_a_certificate_exits_2_naming_the_listener(self):
        err = self.serve_fails(2, "-l", "tls://127.0.0.1:0")
        self.assertIn("-l tls://127.0.0.1:0: a TLS listener needs --cert FILE", err)

    def test_a_tls_unix_listener_without_a_certificate_exits_2(self):
        err = self.serve_fails(2, "-l", "127.0.0.1:0", "-l", "tls+unix:/tmp/yodel-no-cert.sock")
        self.assertIn("tls+unix:/tmp/yodel-no-cert.sock: a TLS listener needs --cert", err)

    def test_each_tls_option_without_a_certificate_exits_2_naming_it(self):
        for args in (["--key", "k.pem"], ["--client-ca", "ca.pem"], ["--tls-min", "1.3"],
                     ["--alpn", "h2"], ["--handshake-timeout", "2s"]):
            with self.subTest(args=args):
                err = self.serve_fails(2, "-l", "127.0.0.1:0", *args)
                self.assertIn("%s needs --cert FILE" % args[0], err)

    def test_a_certificate_without_a_tls_listener_exits_2(self):
        err = self.serve_fails(2, "-l", "127.0.0.1:0", *self.pki.server_args())
        self.assertIn("--cert: no TLS listener to use it on (add -l tls://HOST:PORT)", err)

    def test_a_certificate_and_no_listener_at_all_exits_2(self):
        err = self.serve_fails(2, *self.pki.server_args())
        self.assertIn("no TLS listener", err)

    def test_an_unknown_minimum_version_exits_2(self):
        for value in ("1.1", "1.0", "tls1.3", ""):
            with self.subTest(value=value):
                err = self.serve_fails(2, *TLS, *self.pki.server_args(), "--tls-min", value)
                self.assertIn("--tls-min: unknown version '%s' (use 1.2 or 1.3)" % value, err)

    def test_a_malformed_alpn_list_exits_2(self):
        for value in ("", ",h2", "h2,", "h2,,http/1.1", "x" * 256, ",".join(["abcdefgh"] * 40)):
            with self.subTest(value=value[:20]):
                err = self.serve_fails(2, *TLS, *self.pki.server_args(), "--alpn", value)
                self.assertIn("--alpn: ", err)

    def test_a_zero_or_malformed_handshake_timeout_exits_2(self):
        err = self.serve_fails(2, *TLS, *self.pki.server_args(), "--handshake-timeout", "0")
        self.assertIn("--handshake-timeout: the timeout must be above 0", err)
        err = self.serve_fails(2, *TLS, *self.pki.server_args(), "--handshake-timeout", "soon")
        self.assertIn("--handshake-timeout: bad duration 'soon'", err)

    def test_a_certificate_with_inetd_exits_2(self):
        err = self.serve_fails(2, "--inetd", *self.pki.server_args())
        self.assertIn("--cert cannot be used with --inetd", err)

    def test_help_lists_the_tls_options(self):
        r = harness.yodel("serve", "--help")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        for opt in ("tls://HOST:PORT", "tls+unix:PATH", "--cert FILE", "--key FILE",
                    "--client-ca FILE", "--tls-min VERSION", "--alpn LIST",
                    "--handshake-timeout DUR", "SIGHUP"):
            self.assertIn(opt, out)


class FileErrors(Base):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="yodel-tls-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_a_missing_certificate_exits_1_with_the_reason(self):
        missing = os.path.join(self.dir, "nope.pem")
        err = self.serve_fails(1, *TLS, "--cert", missing, "--key", self.pki.path("server.key"))
        self.assertEqual(err, "yodel serve: cannot set up TLS: cannot read %s: No such file or "
                              "directory" % missing)

    def test_a_missing_key_exits_1_with_the_reason(self):
        missing = os.path.join(self.dir, "nope.key")
        err = self.serve_fails(1, *TLS, "--cert", self.pki.path("server.pem"), "--key", missing)
        self.assertIn("cannot read %s: No such file or directory" % missing, err)

    def test_a_certificate_that_is_not_pem_exits_1(self):
        bad = self.file("bad.pem", "hello, I am not a certificate\n")
        err = self.serve_fails(1, *TLS, "--cert", bad, "--key", self.pki.path("server.key"))
        self.assertRegex(err, r"^yodel serve: cannot set up TLS: not a PEM certificate chain: "
                              + re.escape(bad))

    def test_a_key_that_is_not_pem_exits_1(self):
        bad = self.file("bad.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        err = self.serve_fails(1, *TLS, "--cert", self.pki.path("server.pem"), "--key", bad)
        self.assertIn("cannot set up TLS: not a PEM private key: " + bad, err)

    def test_a_key_that_does_not_match_the_certificate_exits_1(self):
        err = self.serve_fails(1, *TLS, "--cert", self.pki.path("server.pem"),
                               "--key", self.pki.path("server2.key"))
        self.assertIn("cannot set up TLS: ", err)
        self.assertIn("does not match", err)

    def test_a_key_that_does_not_match_the_certificate_is_named_a_mismatch_not_a_bad_key(self):
        err = self.serve_fails(1, *TLS, "--cert", self.pki.path("server.pem"),
                               "--key", self.pki.path("server2.key"))
        self.assertNotIn("not a PEM private key", err)
        self.assertIn("the key does not match the certificate", err)

    def test_a_client_ca_that_is_not_pem_exits_1(self):
        bad = self.file("ca.pem", "no CA here\n")
        err = self.serve_fails(1, *TLS, *self.pki.server_args(), "--client-ca", bad)
        self.assertIn("cannot set up TLS: not a PEM CA file: " + bad, err)

    def test_a_missing_client_ca_exits_1(self):
        missing = os.path.join(self.dir, "ca.pem")
        err = self.serve_fails(1, *TLS, *self.pki.server_args(), "--client-ca", missing)
        self.assertIn("cannot read %s: No such file or directory" % missing, err)

    def test_without_key_the_key_is_read_from_the_certificate_file(self):
        both = os.path.join(self.dir, "both.pem")
        with open(both, "wb") as out:
            for name in ("server.pem", "server.key"):
                with open(self.pki.path(name), "rb") as f:
                    out.write(f.read())
        srv = tlslib.serve(*TLS, "--cert", both)
        self.addCleanup(srv.kill)
        with tlslib.tls_connect(srv.find("tls")) as s:
            self.assertEqual(tlslib.round_trip(s, b"one file"), b"one file")
        status, err = srv.stop()
        self.assertEqual(status, 0, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
