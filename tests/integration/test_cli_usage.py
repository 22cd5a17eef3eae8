"""The command line: help and version exit 0; bad usage exits 2 with one line naming the fault."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

USAGE_TIMEOUT = 5 * harness.SLOW


class HelpAndVersion(unittest.TestCase):
    def assert_help(self, *args, words=()):
        r = harness.yodel(*args, timeout=USAGE_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertIn("usage", out.lower())
        for w in words:
            self.assertIn(w, out)

    def test_help_exits_0_and_lists_the_commands(self):
        self.assert_help("--help", words=("serve", "send", "bench"))

    def test_version_exits_0_and_prints_one_line_with_the_version(self):
        r = harness.yodel("--version", timeout=USAGE_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"^yodel \d+\.\d+")

    def test_serve_help_exits_0_and_lists_its_options(self):
        self.assert_help("serve", "--help", words=("--once", "--delay", "-m"))

    def test_send_help_exits_0_and_lists_its_options(self):
        self.assert_help("send", "--help", words=("--parts", "--udp", "--timeout"))

    def test_bench_help_exits_0_and_lists_its_options(self):
        self.assert_help("bench", "--help", words=("--rate", "--warmup"))


class BadUsage(unittest.TestCase):
    def assert_usage_error(self, *args, names):
        """Exit 2, nothing on stdout, exactly one line on stderr naming `names`."""
        r = harness.yodel(*args, timeout=USAGE_TIMEOUT)
        err = r.stderr.decode()
        why = "yodel %s: status %d, stderr %r" % (" ".join(args), r.returncode, err)
        self.assertEqual(r.returncode, 2, why)
        self.assertEqual(r.stdout, b"")
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, "want one line on stderr, got %r" % err)
        for name in names if isinstance(names, tuple) else (names,):
            self.assertIn(name, lines[0])

    def test_unknown_command_exits_2_naming_it(self):
        self.assert_usage_error("frobnicate", names="frobnicate")

    def test_serve_unknown_long_option_exits_2_naming_it(self):
        self.assert_usage_error("serve", "--frobnicate", names="--frobnicate")

    def test_serve_unknown_short_option_exits_2_naming_it(self):
        self.assert_usage_error("serve", "-Z", names="Z")

    def test_send_unknown_option_exits_2_naming_it(self):
        self.assert_usage_error("send", "--frobnicate", "hi", names="--frobnicate")

    def test_bench_unknown_option_exits_2_naming_it(self):
        self.assert_usage_error("bench", "--frobnicate", names="--frobnicate")

    def test_serve_bad_delay_exits_2_naming_option_and_value(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:0", "--delay", "soon",
                                names=("--delay", "soon"))

    def test_serve_bad_mode_exits_2_naming_the_value(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:0", "-m", "shout", names="shout")

    def test_serve_bad_address_exits_2_naming_it(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:notaport", names="127.0.0.1:notaport")

    def test_serve_port_out_of_range_exits_2_naming_it(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:70000", names="127.0.0.1:70000")

    def test_serve_zero_threads_exits_2_naming_the_option(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:0", "--threads", "0", names="--threads")

    def test_serve_listen_without_value_exits_2_naming_the_option(self):
        self.assert_usage_error("serve", "-l", names="-l")

    def test_serve_delay_without_value_exits_2_naming_the_option(self):
        self.assert_usage_error("serve", "--delay", names="--delay")

    def test_serve_bad_max_line_exits_2_naming_the_option(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:0", "--max-line", "lots",
                                names="--max-line")

    def test_serve_stray_argument_exits_2_naming_it(self):
        self.assert_usage_error("serve", "-l", "127.0.0.1:0", "extra", names="extra")

    def test_send_bad_address_exits_2_naming_it(self):
        self.assert_usage_error("send", "-c", "nowhere:port", "hi", names="nowhere:port")

    def test_send_bad_timeout_exits_2_naming_option_and_value(self):
        self.assert_usage_error("send", "-c", "127.0.0.1:1", "--timeout", "xyz", "hi",
                                names=("--timeout", "xyz"))

    def test_send_zero_clients_exits_2_naming_the_option(self):
        self.assert_usage_error("send", "-c", "127.0.0.1:1", "-n", "0", "hi", names="-n")

    def test_send_connect_without_value_exits_2_naming_the_option(self):
        self.assert_usage_error("send", "-c", names="-c")

    def test_bench_bad_size_exits_2_naming_option_and_value(self):
        self.assert_usage_error("bench", "-c", "127.0.0.1:1", "-s", "huge", names=("-s", "huge"))

    def test_bench_bad_duration_exits_2_naming_option_and_value(self):
        self.assert_usage_error("bench", "-c", "127.0.0.1:1", "-t", "forever",
                                names=("-t", "forever"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
