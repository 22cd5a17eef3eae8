"""man/libyodel.3 against include/yodel.h: the whole API named, every signature in the SYNOPSIS
as the header declares it, and EXAMPLES that compile against the built library and work."""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from opslib import SOURCE_DIR, harness

BUILD_DIR = os.environ.get("YODEL_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
SANITIZE = os.environ.get("YODEL_SANITIZE", "").upper() in ("1", "ON", "TRUE", "YES")
HEADER = os.path.join(SOURCE_DIR, "include", "yodel.h")
PAGE = os.path.join(SOURCE_DIR, "man", "libyodel.3")


def read(path):
    with open(path) as f:
        return f.read()


def run(cmd, env=None, timeout=120):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       env=env, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def header_code():
    """yodel.h without comments, preprocessor lines and the YD_EXTERN export marks."""
    text = re.sub(r"/\*.*?\*/", " ", read(HEADER), flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    return re.sub(r"(?m)^YD_EXTERN\s+", "", text)


def normalize(decl):
    """One spelling of a C declaration: single spaces, none around punctuation."""
    decl = re.sub(r"\s+", " ", decl)
    return re.sub(r"\s*([(),*;\[\]{}])\s*", r"\1", decl).strip()


# A function declaration starts a line (struct members are indented) with its return type.
FUNCTION_RE = re.compile(r"(?m)^([a-z][\w \t*]*?\b(yd_\w+)\s*\([^;]*?\))\s*;")
CALLBACK_TYPEDEF_RE = re.compile(r"(?m)^typedef [^;(]*\(\s*\*\s*(yd_\w+)\s*\)\s*\([^;]*\)\s*;")


def header_functions():
    """{name: normalized declaration} of every function yodel.h declares."""
    found = {m.group(2): normalize(m.group(1) + ";") for m in FUNCTION_RE.finditer(header_code())}
    if len(found) < 50:
        raise AssertionError("only %d functions parsed from %s: %r" % (len(found), HEADER, found))
    return found


def header_callbacks():
    """Normalized callback typedefs and yd_protocol members of yodel.h."""
    code = header_code()
    callbacks = [normalize(m.group(0)) for m in CALLBACK_TYPEDEF_RE.finditer(code)]
    m = re.search(r"typedef struct yd_protocol \{(.*?)\} yd_protocol;", code, re.S)
    if m is None:
        raise AssertionError("no yd_protocol in %s" % HEADER)
    members = [normalize(d + ";") for d in m.group(1).split(";") if d.strip()]
    return callbacks, members


def header_names():
    """Every yd_ type and YD_ constant yodel.h defines."""
    code = header_code()
    types = set(re.findall(r"\b(?:struct|enum)\s+(yd_\w+)", code))
    types |= set(re.findall(r"\}\s*(yd_\w+)\s*;", code))
    types |= set(re.findall(r"(?m)^typedef\s+struct\s+yd_\w+\s+(yd_\w+)\s*;", code))
    constants = set(re.findall(r"\b(YD_[A-Z0-9_]+)\b", code))
    constants |= set(re.findall(r"(?m)^\s*#\s*define\s+(YD_[A-Z0-9_]+)", read(HEADER)))
    return types | constants


def rendered_page():
    """The page as a reader sees it: plain text, no hyphenation, no line breaks in words."""
    status, out, err = run(["groff", "-man", "-Tascii", "-P-cbou", "-rHY=0", "-rLL=250n", PAGE])
    if status != 0:
        raise AssertionError("groff: %s" % err)
    return out


def section(text, name):
    m = re.search(r"(?ms)^%s\n(.*?)(?=^[A-Z][A-Z ]+\n)" % re.escape(name), text)
    if m is None:
        raise AssertionError("no %s section in the rendered page" % name)
    return m.group(1)


def unescape(troff):
    table = {r"\(aq": "'", r"\e": "\\", r"\-": "-", r"\&": ""}
    return re.sub(r"\\\(aq|\\e|\\-|\\&", lambda m: table[m.group(0)], troff)


def example_programs():
    """{file name: C source} of the programs of the EXAMPLES section (each names its file in a
    first-line comment)."""
    src = read(PAGE)
    m = re.search(r"(?ms)^\.SH EXAMPLES\n(.*?)(?=^\.SH )", src)
    if m is None:
        raise AssertionError("no EXAMPLES section in %s" % PAGE)
    programs = {}
    for block in re.findall(r"(?ms)^\.EX\n(.*?)^\.EE$", m.group(1)):
        code = unescape(block)
        if "int main" in code:
            name = re.match(r"/\* (\w+\.c) \*/", code)
            if name is None:
                raise AssertionError("an example program without its /* name.c */ line")
            programs[name.group(1)] = code
    return programs


class ManPageApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("groff") is None:
            raise unittest.SkipTest("groff not installed (apt-get install groff-base)")
        cls.text = rendered_page()
        cls.synopsis = normalize(section(cls.text, "SYNOPSIS"))

    def test_every_function_declared_in_the_header_is_named_in_the_page(self):
        missing = sorted(n for n in header_functions() if not re.search(r"\b%s\b" % n, self.text))
        self.assertEqual(missing, [], "libyodel.3 does not name these functions of yodel.h")

    def test_the_synopsis_gives_every_function_the_signature_the_header_declares(self):
        wrong = sorted("%s\n    header: %s" % (name, decl)
                       for name, decl in header_functions().items() if decl not in self.synopsis)
        self.assertEqual(wrong, [], "SYNOPSIS lacks or misspells:\n" + "\n".join(wrong))

    def test_the_synopsis_gives_every_callback_signature(self):
        callbacks, members = header_callbacks()
        self.assertEqual(sorted(re.search(r"\(\*(\w+)\)", c).group(1) for c in callbacks),
                         ["yd_shutdown_cb", "yd_signal_cb", "yd_timer_cb"])
        self.assertGreaterEqual(len(members), 6)
        wrong = [d for d in callbacks + members if d not in self.synopsis]
        self.assertEqual(wrong, [], "SYNOPSIS lacks these callback signatures of yodel.h")

    def test_every_type_and_constant_of_the_header_is_named_in_the_page(self):
        missing = sorted(n for n in header_names() if not re.search(r"\b%s\b" % n, self.text))
        self.assertEqual(missing, [], "libyodel.3 does not name these types or constants")


class ManPageExamplesTest(unittest.TestCase):
    """The EXAMPLES programs, built against the library of this build tree: upper.c serves,
    hello.c talks to it."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="yodel-manpage-")
        cls.programs = example_programs()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def build(self, name):
        archive = os.path.join(BUILD_DIR, "src", "lib", "libyodel.a")
        if not os.path.exists(archive):
            self.fail("no %s: build the tree first" % archive)
        # The static library's own dependencies: libuv, and OpenSSL for TLS.
        status, uv, err = run(["pkg-config", "--libs", "libuv", "openssl"])
        self.assertEqual(status, 0, err)
        src = os.path.join(self.dir, name)
        with open(src, "w") as f:
            f.write(self.programs[name])
        exe = src[:-2]
        cmd = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I",
               os.path.join(SOURCE_DIR, "include"), "-o", exe, src, archive] + uv.split()
        if SANITIZE:
            cmd += ["-fsanitize=address,undefined"]
        status, out, err = run(cmd)
        self.assertEqual(status, 0, "%s\n%s%s" % (" ".join(cmd), out, err))
        return exe

    def test_the_examples_section_has_a_server_and_a_client(self):
        self.assertEqual(sorted(self.programs), ["hello.c", "upper.c"])

    def test_the_example_programs_compile_and_talk_to_each_other(self):
        upper = self.build("upper.c")
        hello = self.build("hello.c")
        errlog, child_err = harness.child_log()
        self.addCleanup(errlog.close)
        server = subprocess.Popen([upper], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=child_err)
        child_err.close()
        self.addCleanup(lambda: server.poll() is None and (server.kill(), server.wait()))
        # Read through a pipe: the line arrives only because the example flushes it.
        line = b""
        deadline = time.monotonic() + harness.START_TIMEOUT
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([server.stdout], [], [], 0.1)[0]:
                chunk = os.read(server.stdout.fileno(), 256)
                if not chunk:
                    break
                line += chunk
        m = re.match(rb"^listening on port (\d+)\n$", line)
        self.assertIsNotNone(m, "upper printed %r; stderr: %r" % (line, errlog.read()))
        status, out, err = run([hello, "127.0.0.1:%d" % int(m.group(1))],
                               timeout=harness.CMD_TIMEOUT)
        self.assertEqual((status, out, err), (0, "HELLO THERE\n", ""))
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(timeout=harness.STOP_TIMEOUT), 0)
        errlog.seek(0)
        self.assertEqual(errlog.read(), b"")

    def test_the_client_example_reports_a_refused_connection(self):
        hello = self.build("hello.c")
        with socket.socket() as s:  # a port that was just free: nothing listens on it
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        status, out, err = run([hello, "127.0.0.1:%d" % port], timeout=harness.CMD_TIMEOUT)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "hello: connection refused\n")


if __name__ == "__main__":
    unittest.main()
