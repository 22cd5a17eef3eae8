"""The arm64 build: the same sources, static, with Debian's cross compiler (scripts/image --arch
arm64 --binary-only, in build/image-static-arm64), run under qemu-user on loopback.

Skips with the reason when the cross compiler or qemu-aarch64-static is missing (`make deps`
installs both). Runs in the release build only (tests/ops/CMakeLists.txt).
"""

import os
import shutil
import signal
import struct
import subprocess
import unittest

from opslib import SOURCE_DIR, harness

BUILD_DIR = os.environ.get("YODEL_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
ARM64_DIR = os.path.join(BUILD_DIR, "image-static-arm64")
ARM64_BIN = os.path.join(ARM64_DIR, "yodel")
QEMU = "qemu-aarch64-static"
EM_AARCH64 = 183
PT_INTERP = 3
# qemu translates every instruction: starting is slower than natively, serving is not the point.
QEMU_START_TIMEOUT = 30


def setUpModule():
    for tool in ("aarch64-linux-gnu-gcc", QEMU):
        if shutil.which(tool) is None:
            raise unittest.SkipTest("%s is not installed ('make deps' installs it)" % tool)
    build = subprocess.run([os.path.join(SOURCE_DIR, "scripts", "image"), "--arch", "arm64",
                            "--binary-only", "--build-dir", ARM64_DIR],
                           capture_output=True, timeout=600)
    if build.returncode != 0:
        raise AssertionError("the arm64 build failed: %s%s" % (
            build.stdout.decode(errors="replace"), build.stderr.decode(errors="replace")))
    print("\n" + build.stdout.decode().strip(), flush=True)


def elf_header(path):
    """(e_machine, [p_type of every program header]) of a 64-bit little-endian ELF file."""
    with open(path, "rb") as f:
        head = f.read(64)
        assert head[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
        machine = struct.unpack_from("<H", head, 18)[0]
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        types = []
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            types.append(struct.unpack("<I", f.read(4))[0])
    return machine, types


class Arm64Test(unittest.TestCase):
    def test_the_arm64_binary_is_aarch64_and_static(self):
        machine, segments = elf_header(ARM64_BIN)
        self.assertEqual(machine, EM_AARCH64)
        self.assertNotIn(PT_INTERP, segments, "it asks for a dynamic loader")

    def test_the_arm64_binary_reports_the_same_version_under_qemu(self):
        arm = harness.run([QEMU, ARM64_BIN, "--version"])
        native = harness.run([harness.YODEL_BIN, "--version"])
        self.assertEqual((arm.returncode, arm.stdout), (0, native.stdout), arm.stderr)

    def test_the_arm64_server_echoes_tcp_and_udp_under_qemu_and_exits_0_on_sigterm(self):
        proc = subprocess.Popen([QEMU, ARM64_BIN, "serve", "-l", "127.0.0.1:0",
                                 "-l", "udp://127.0.0.1:0", "--threads", "2"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.stderr.close)
        listeners = [harness.Listener(self.read_line(proc)) for _ in range(2)]
        tcp = [li for li in listeners if li.scheme == "tcp"][0]
        udp = [li for li in listeners if li.scheme == "udp"][0]
        self.assertEqual(harness.exchange(tcp, b"arm64 tcp\n"), b"arm64 tcp\n")
        self.assertEqual(harness.udp_exchange(udp, b"arm64 udp"), b"arm64 udp")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=QEMU_START_TIMEOUT), 0, proc.stderr.read())

    def read_line(self, proc):
        """One stdout line, within QEMU_START_TIMEOUT."""
        fd, line = proc.stdout.fileno(), b""
        while not line.endswith(b"\n"):
            ready = harness.select.select([fd], [], [], QEMU_START_TIMEOUT)[0]
            chunk = os.read(fd, 1) if ready else b""
            if not chunk:
                raise AssertionError("no listening line from the arm64 server: %r" % line)
            line += chunk
        return line.decode().rstrip("\n")


if __name__ == "__main__":
    unittest.main()
