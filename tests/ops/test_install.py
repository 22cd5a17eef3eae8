"""`make install` (cmake --install): the layout a packager gets, and a program built on it."""

import fcntl
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from opslib import SOURCE_DIR, harness, wait_until

BUILD_DIR = os.environ.get("YODEL_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
SANITIZE = os.environ.get("YODEL_SANITIZE", "").upper() in ("1", "ON", "TRUE", "YES")
HERE = os.path.dirname(os.path.abspath(__file__))


def read(path):
    with open(path) as f:
        return f.read()


def run(cmd, env=None, timeout=120):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       env=env, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class Installed:
    """One `cmake --install` into a temporary prefix, shared by the tests of a class."""

    def __init__(self, prefix=None, destdir=None):
        self.root = tempfile.mkdtemp(prefix="yodel-install-")
        self.prefix = prefix or os.path.join(self.root, "prefix")
        env = dict(os.environ)
        env.pop("DESTDIR", None)
        if destdir is not None:
            env["DESTDIR"] = os.path.join(self.root, destdir)
        status, out, err = run(["cmake", "--install", BUILD_DIR, "--prefix", self.prefix],
                               env=env)
        if status != 0:
            raise AssertionError("cmake --install failed: %s%s" % (out, err))
        self.tree = (os.path.join(self.root, destdir) + self.prefix) if destdir else self.prefix

    def path(self, *parts):
        return os.path.join(self.tree, *parts)

    def find(self, pattern):
        found = sorted(glob.glob(os.path.join(self.tree, pattern)))
        if not found:
            raise AssertionError("nothing installed as %s; tree: %s" % (pattern, self.listing()))
        return found[0]

    def listing(self):
        return sorted(os.path.relpath(os.path.join(d, f), self.tree)
                      for d, _, fs in os.walk(self.tree) for f in fs)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


class InstallLayoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.inst = Installed()

    @classmethod
    def tearDownClass(cls):
        cls.inst.remove()

    def test_install_puts_each_file_in_its_place(self):
        inst = self.inst
        for rel in ["bin/yodel", "include/yodel.h", "share/man/man1/yodel.1",
                    "share/man/man3/libyodel.3", "lib/systemd/system/yodel.service",
                    "lib/systemd/system/yodel.socket", "share/bash-completion/completions/yodel"]:
            self.assertTrue(os.path.isfile(inst.path(rel)), "%s missing: %s" % (rel, inst.listing()))
        self.assertTrue(os.access(inst.path("bin/yodel"), os.X_OK))
        inst.find("lib*/libyodel.a")
        inst.find("lib*/pkgconfig/yodel.pc")

    def test_shared_library_has_a_soname(self):
        lib = self.inst.find("lib*/libyodel.so")
        self.assertEqual(os.readlink(lib), "libyodel.so.0")
        status, out, err = run(["objdump", "-p", lib])
        self.assertEqual(status, 0, err)
        self.assertRegex(out, r"SONAME\s+libyodel\.so\.0\b")

    def test_installed_man_pages_are_found_by_man(self):
        harness.require_tool(self, "man")
        for name, section in (("yodel", "1"), ("libyodel", "3")):
            env = dict(os.environ, MANWIDTH="80")
            status, out, err = run(["man", "-M", self.inst.path("share/man"), section, name],
                                   env=env)
            self.assertEqual(status, 0, err)
            self.assertIn(name.upper(), out.splitlines()[0])

    def test_installed_binary_runs(self):
        status, out, _ = run([self.inst.path("bin/yodel"), "--version"])
        self.assertEqual(status, 0)
        self.assertTrue(out.startswith("yodel 0.1.0"), out)

    def test_paths_written_into_files_are_the_install_prefix(self):
        pc = read(self.inst.find("lib*/pkgconfig/yodel.pc"))
        self.assertIn("prefix=%s\n" % self.inst.prefix, pc)
        self.assertIn("Libs: -L${libdir} -lyodel", pc)
        self.assertIn("Requires.private: libuv", pc)
        unit = read(self.inst.path("lib/systemd/system/yodel.service"))
        self.assertIn("ExecStart=%s/bin/yodel serve" % self.inst.prefix, unit)

    def test_program_builds_against_installed_header_and_pkg_config(self):
        harness.require_tool(self, "pkg-config")
        inst = self.inst
        pcdir = os.path.dirname(inst.find("lib*/pkgconfig/yodel.pc"))
        env = dict(os.environ, PKG_CONFIG_PATH=pcdir)
        status, flags, err = run(["pkg-config", "--cflags", "--libs", "yodel"], env=env)
        self.assertEqual(status, 0, err)
        self.assertIn("-I%s/include" % inst.prefix, flags)
        self.assertIn("-lyodel", flags)
        exe = os.path.join(inst.root, "installed_client")
        cmd = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", exe,
               os.path.join(HERE, "installed_client.c")] + flags.split()
        if SANITIZE:
            # The libraries of a sanitized build need the sanitizer runtime in the program.
            cmd += ["-fsanitize=address,undefined"]
        status, out, err = run(cmd, env=env)
        self.assertEqual(status, 0, "%s\n%s%s" % (" ".join(cmd), out, err))
        libdir = os.path.dirname(inst.find("lib*/libyodel.so"))
        env = dict(os.environ, LD_LIBRARY_PATH=libdir)
        status, out, err = run(["ldd", exe], env=env)
        self.assertIn(os.path.join(libdir, "libyodel.so.0"), out, "ldd: " + out)
        status, out, err = run([exe], env=env, timeout=harness.CMD_TIMEOUT)
        self.assertEqual(status, 0, err)
        self.assertEqual(out, "libyodel 0.1.0 echo: hello\n")

    def test_systemd_units_verify(self):
        harness.require_tool(self, "systemd-analyze")
        units = [self.inst.path("lib/systemd/system", u) for u in ("yodel.socket",
                                                                   "yodel.service")]
        # Documentation=man:yodel(1) is checked with man(1): the installed page must be found.
        env = dict(os.environ, MANPATH=self.inst.path("share/man"))
        status, out, err = run(["systemd-analyze", "verify"] + units, env=env)
        # Offline, systemd-analyze may complain about the host (no running systemd, no
        # dependencies such as sockets.target); only complaints about our units count.
        ours = [l for l in (out + err).splitlines() if "yodel." in l]
        self.assertEqual(ours, [], out + err)


class DestdirTest(unittest.TestCase):
    def test_destdir_stages_files_without_writing_it_into_them(self):
        inst = Installed(prefix="/usr/local/yodel-test-prefix", destdir="stage")
        try:
            self.assertTrue(os.path.isfile(inst.path("bin/yodel")), inst.listing())
            self.assertFalse(os.path.exists("/usr/local/yodel-test-prefix"))
            pc = read(inst.find("lib*/pkgconfig/yodel.pc"))
            self.assertIn("prefix=/usr/local/yodel-test-prefix\n", pc)
            self.assertNotIn("stage", pc)
            unit = read(inst.path("lib/systemd/system/yodel.service"))
            self.assertIn("ExecStart=/usr/local/yodel-test-prefix/bin/yodel serve", unit)
        finally:
            inst.remove()



def make_env():
    """The environment for a `make` of our own: no DESTDIR or jobserver of a make above us."""
    env = dict(os.environ)
    for name in ("DESTDIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PKG_CONFIG_PATH",
                 "PKG_CONFIG_SYSROOT_DIR", "LD_LIBRARY_PATH"):
        env.pop(name, None)
    return env


class MakeInstallTest(unittest.TestCase):
    """`make install PREFIX=... DESTDIR=...` as the README gives it, from a build tree of its own
    (so the build tree of the tests is never reconfigured), staged: nothing goes into /usr."""

    PREFIXES = ("/usr", "/usr/local")

    @classmethod
    def setUpClass(cls):
        harness.require_tool(cls, "make")
        cls.root = tempfile.mkdtemp(prefix="yodel-make-install-")
        cls.build = os.path.join(cls.root, "build")
        cls.stages = {}
        cls.logs = {}
        try:
            for prefix in cls.PREFIXES:
                stage = os.path.join(cls.root, "stage" + prefix.replace("/", "-"))
                # -o deps: the packages are the business of DepsScriptTest, not of this one.
                cmd = ["make", "-C", SOURCE_DIR, "-o", "deps", "install", "BUILD=" + cls.build,
                       "PREFIX=" + prefix, "DESTDIR=" + stage, "JOBS=2"]
                status, out, err = run(cmd, env=make_env(), timeout=240)
                if status != 0:
                    raise AssertionError("%s: exit %d\n%s%s" % (" ".join(cmd), status, out, err))
                cls.stages[prefix] = stage
                cls.logs[prefix] = out + err
        except BaseException:
            shutil.rmtree(cls.root, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    @staticmethod
    def expected_libdir(prefix):
        """GNUInstallDirs' choice on Debian: lib/<multiarch> for /usr, lib for /usr/local."""
        if prefix != "/usr":
            return "lib"
        status, out, _ = run(["cc", "-print-multiarch"])
        if not os.path.exists("/etc/debian_version") or status != 0 or not out.strip():
            raise unittest.SkipTest("the libdir of /usr checked here is Debian's lib/<multiarch>")
        return "lib/" + out.strip()

    def staged(self, prefix, *parts):
        return os.path.join(self.stages[prefix] + prefix, *parts)

    def pkg_config_env(self, prefix):
        stage = self.stages[prefix]
        libdir = self.staged(prefix, self.expected_libdir(prefix))
        return dict(make_env(), PKG_CONFIG_SYSROOT_DIR=stage,
                    PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))

    def check_libdir(self, prefix):
        libdir = self.expected_libdir(prefix)
        for name in ("libyodel.a", "libyodel.so.0.1.0", "pkgconfig/yodel.pc"):
            self.assertTrue(os.path.isfile(self.staged(prefix, libdir, name)),
                            "%s/%s not installed for PREFIX=%s:\n%s"
                            % (libdir, name, prefix, self.logs[prefix]))
        self.assertEqual(os.readlink(self.staged(prefix, libdir, "libyodel.so")), "libyodel.so.0")
        pc = read(self.staged(prefix, libdir, "pkgconfig/yodel.pc"))
        self.assertIn("prefix=%s\n" % prefix, pc)
        self.assertIn("libdir=${prefix}/%s\n" % libdir, pc)
        self.assertNotIn(self.stages[prefix], pc)
        # Every file went into the stage.
        installed = re.findall(r"^-- (?:Installing|Up-to-date): (\S+)$", self.logs[prefix], re.M)
        self.assertGreaterEqual(len(installed), 10, self.logs[prefix])
        outside = [f for f in installed if not f.startswith(self.stages[prefix] + prefix + "/")]
        self.assertEqual(outside, [])
        return libdir

    def test_prefix_usr_installs_the_libraries_into_the_multiarch_libdir(self):
        libdir = self.check_libdir("/usr")
        self.assertNotEqual(libdir, "lib")
        self.assertEqual(glob.glob(self.staged("/usr", "lib", "libyodel*")), [])
        self.assertFalse(os.path.exists(self.staged("/usr", "lib", "pkgconfig")))
        self.assertTrue(os.path.isfile(self.staged("/usr", "lib/systemd/system/yodel.service")))

    def test_prefix_usr_local_installs_the_libraries_into_lib(self):
        self.check_libdir("/usr/local")

    def build_client(self, prefix, static=False):
        harness.require_tool(self, "pkg-config")
        env = self.pkg_config_env(prefix)
        query = ["pkg-config", "--cflags", "--libs", "yodel"] + (["--static"] if static else [])
        status, flags, err = run(query, env=env)
        self.assertEqual(status, 0, err)
        self.assertIn("-I%s/include" % self.staged(prefix), flags.split())
        self.assertIn("-L%s" % self.staged(prefix, self.expected_libdir(prefix)), flags.split())
        exe = os.path.join(self.root, "client%s%s" % (prefix.replace("/", "-"),
                                                       "-static" if static else ""))
        cmd = (["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"] + (["-static"] if static else [])
               + ["-o", exe, os.path.join(HERE, "installed_client.c")] + flags.split())
        status, out, err = run(cmd, env=env)
        self.assertEqual(status, 0, "%s\n%s%s" % (" ".join(cmd), out, err))
        return exe

    def check_staged_program_runs(self, prefix):
        exe = self.build_client(prefix)
        libdir = self.staged(prefix, self.expected_libdir(prefix))
        env = dict(make_env(), LD_LIBRARY_PATH=libdir)
        status, out, err = run(["ldd", exe], env=env)
        self.assertIn("libyodel.so.0 => %s/libyodel.so.0 " % libdir, out)
        status, out, err = run([exe], env=env, timeout=harness.CMD_TIMEOUT)
        self.assertEqual((status, out), (0, "libyodel 0.1.0 echo: hello\n"), err)

    def test_program_builds_with_the_staged_pkg_config_and_runs_from_the_stage_usr(self):
        self.check_staged_program_runs("/usr")

    def test_program_builds_with_the_staged_pkg_config_and_runs_from_the_stage_usr_local(self):
        self.check_staged_program_runs("/usr/local")

    def test_pkg_config_static_links_a_static_program_that_runs(self):
        exe = self.build_client("/usr", static=True)
        status, out, err = run(["readelf", "--dynamic", exe])
        self.assertEqual(status, 0, err)
        self.assertNotIn("NEEDED", out, "not a static program")
        status, out, err = run([exe], env=make_env(), timeout=harness.CMD_TIMEOUT)
        self.assertEqual((status, out), (0, "libyodel 0.1.0 echo: hello\n"), err)

class ManPageTest(unittest.TestCase):
    PAGES = [os.path.join(SOURCE_DIR, "man", p) for p in ("yodel.1", "libyodel.3")]

    def test_man_pages_render_without_warnings(self):
        harness.require_tool(self, "groff")
        for page in self.PAGES:
            status, out, err = run(["groff", "-man", "-ww", "-z", page])
            self.assertEqual((status, err), (0, ""), page)
            if shutil.which("man"):
                env = dict(os.environ, MANWIDTH="80")
                status, out, err = run(["man", "--warnings", "-l", page], env=env)
                self.assertEqual((status, err.strip()), (0, ""), page)
                self.assertGreater(len(out.splitlines()), 50, page)

    def test_yodel_1_documents_every_option_of_every_subcommand(self):
        page = read(self.PAGES[0]).replace("\\-", "-")
        for cmd in ("serve", "send", "bench"):
            status, out, err = run([harness.YODEL_BIN, cmd, "--help"])
            self.assertEqual(status, 0, err)
            options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[a-zA-Z])\b", out))
            options -= {"-h", "--help"}
            missing = sorted(o for o in options if o not in page)
            self.assertEqual(missing, [], "yodel.1 lacks options of yodel %s" % cmd)



class DepsScriptTest(unittest.TestCase):
    """scripts/deps.sh, which `make` runs first: with a fake apt-get, so nothing is installed."""

    SCRIPT = os.path.join(SOURCE_DIR, "scripts", "deps.sh")
    PACKAGE = "yodel-test-no-such-package"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="yodel-deps-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.apt_log = os.path.join(self.dir, "apt-get.log")
        bindir = os.path.join(self.dir, "bin")
        os.mkdir(bindir)
        fake = os.path.join(bindir, "apt-get")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\necho "$*" >> %s\n' % self.apt_log)
        os.chmod(fake, 0o755)
        self.env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))

    def apt_calls(self):
        if not os.path.exists(self.apt_log):
            return []
        return read(self.apt_log).splitlines()

    def test_not_root_names_the_missing_packages_and_the_command_and_exits_1(self):
        cmd = [self.SCRIPT, "bash", self.PACKAGE]
        if os.geteuid() == 0:
            harness.require_tool(self, "setpriv")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        status, out, err = run(cmd, env=self.env)
        self.assertEqual(status, 1, err)
        self.assertEqual(err.splitlines(), [
            "yodel: missing packages: %s" % self.PACKAGE,
            "yodel: install them with: sudo apt-get install -y %s" % self.PACKAGE])
        self.assertEqual(self.apt_calls(), [])

    def test_installed_packages_need_nothing(self):
        status, out, err = run([self.SCRIPT, "bash", "coreutils"], env=self.env)
        self.assertEqual((status, out, err), (0, "", ""))
        self.assertEqual(self.apt_calls(), [])

    def test_root_waits_for_a_held_apt_lock_and_says_so(self):
        if os.geteuid() != 0:
            self.skipTest("deps.sh runs apt-get only as root")
        harness.require_tool(self, "lslocks")
        lock = os.path.join(self.dir, "lock-frontend")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, fd)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as apt and dpkg lock it
        env = dict(self.env, YODEL_APT_LOCKS=lock)
        errpath = os.path.join(self.dir, "stderr")
        with open(errpath, "wb") as errfile:
            proc = subprocess.Popen([self.SCRIPT, "bash", self.PACKAGE], env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=errfile)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        waiting = "yodel: waiting for %s (pid %d) to release the apt lock (up to 300s)" % (
            read("/proc/self/comm").strip(), os.getpid())
        wait_until(lambda: waiting in read(errpath) or proc.poll() is not None,
                   what="deps.sh saying it waits for the lock")
        self.assertIn(waiting, read(errpath).splitlines())
        self.assertIsNone(proc.poll(), "deps.sh did not wait: " + read(errpath))
        self.assertEqual(self.apt_calls(), [], "apt-get ran while the lock was held")
        fcntl.lockf(fd, fcntl.LOCK_UN)
        self.assertEqual(proc.wait(timeout=harness.CMD_TIMEOUT), 0, read(errpath))
        self.assertEqual(self.apt_calls(), [
            "-o DPkg::Lock::Timeout=300 update -qq",
            "-o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends " + self.PACKAGE])
        self.assertEqual(read(errpath).splitlines(),
                         ["yodel: installing " + self.PACKAGE, waiting])

class CompletionTest(unittest.TestCase):
    SCRIPT = os.path.join(SOURCE_DIR, "contrib", "yodel.bash-completion")

    def complete(self, *words):
        harness.require_tool(self, "bash")
        script = ('source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _yodel; '
                  'printf "%%s\\n" "${COMPREPLY[@]}"'
                  % (self.SCRIPT, " ".join("'%s'" % w for w in words), len(words) - 1))
        status, out, err = run(["bash", "-c", script])
        self.assertEqual(status, 0, err)
        return sorted(l for l in out.splitlines() if l)

    def test_completes_subcommands(self):
        self.assertEqual(self.complete("yodel", "s"), ["send", "serve"])
        self.assertEqual(self.complete("yodel", "b"), ["bench"])

    def test_completes_options_of_the_subcommand(self):
        self.assertEqual(self.complete("yodel", "serve", "--me"), ["--metrics"])
        self.assertIn("--parts", self.complete("yodel", "send", "--"))
        self.assertNotIn("--parts", self.complete("yodel", "bench", "--"))

    def test_completes_mode_values(self):
        self.assertEqual(self.complete("yodel", "serve", "-m", ""), ["info", "line", "raw", "upper"])

    # The option lines of a --help: '  -c, --connect ADDR    text' (the names before the text,
    # set off by two spaces; '--proxy-source ADDR:PORT, --proxy-dest ADDR:PORT' names two).
    OPTION_LINE = re.compile(r"^\s+(-.*?)(?:\s{2,}|$)")

    def help_options(self, *command):
        status, out, err = run([harness.YODEL_BIN, *command, "--help"])
        self.assertEqual(status, 0, err)
        names = set()
        for line in out.splitlines():
            m = self.OPTION_LINE.match(line)
            if m is not None:
                names.update(re.findall(r"(?:^|[\s,|\[])(--?[A-Za-z][\w-]*)", m.group(1)))
        self.assertGreater(len(names), 2, out)
        return names

    def test_the_options_completed_for_each_subcommand_are_those_its_help_lists(self):
        for command in (["serve"], ["send"], ["bench"], ["bench", "merge"], ["bench", "compare"]):
            with self.subTest(command=" ".join(command)):
                words = ["yodel", *command] + (["x.json"] if len(command) > 1 else []) + ["-"]
                # '-' (standard input) and '--stats=' are completions, not options of --help.
                offered = {w for w in self.complete(*words)
                           if w != "-" and not w.endswith("=")}
                self.assertEqual(offered, self.help_options(*command))

    def test_bench_merge_completes_file_names_after_its_options(self):
        here = os.path.basename(__file__)  # the tests run in this file's directory
        self.assertIn(here, self.complete("yodel", "bench", "merge", "--json", here[:9]))

    def test_registers_for_the_yodel_command(self):
        status, out, err = run(["bash", "-c", "source %s; complete -p yodel" % self.SCRIPT])
        self.assertEqual(status, 0, err)
        self.assertIn("-F _yodel", out)


if __name__ == "__main__":
    unittest.main()
