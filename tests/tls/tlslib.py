"""Helpers of the TLS tests: certificates made at test time with the openssl command (no key
is ever committed), `listening on tls://...` lines, and TLS clients: Python's ssl module as the
tutorials use it, and the real programs (openssl s_client, socat, ncat).

On top of tests/integration/harness.py (servers, deadlines) and tests/hardening/hard.py
(/proc, thread variants, the summary line). Every wait has a deadline; nothing sleeps to
synchronise.
"""

import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hardening"))
sys.path.insert(0, os.path.join(HERE, "..", "ops"))
import hard  # noqa: E402
from hard import harness  # noqa: E402
import opslib  # noqa: E402

SLOW = hard.SLOW
IO_TIMEOUT = harness.IO_TIMEOUT * (2.0 if hard.SANITIZE else 1.0)
YODEL_BIN = harness.YODEL_BIN

# ---- listening lines ----------------------------------------------------------------------------

TLS_LISTEN_RE = re.compile(
    r"^listening on tls://(\[[^\]]+\]|[^:\s]+):(\d+)\s*$|^listening on tls\+unix:(\S+)\s*$")


class Listener(harness.Listener):
    """harness.Listener, which also reads `listening on tls://HOST:PORT` (scheme 'tls') and
    `listening on tls+unix:PATH` (scheme 'tls+unix')."""

    def __init__(self, line):
        m = TLS_LISTEN_RE.match(line)
        if m is None:
            super().__init__(line)
            return
        self.line = line
        if m.group(3) is not None:
            self.scheme, self.host, self.port, self.path = "tls+unix", None, None, m.group(3)
        else:
            self.scheme, self.host, self.port, self.path = (
                "tls", m.group(1).strip("[]"), int(m.group(2)), None)

    @property
    def tls(self):
        return self.scheme.startswith("tls")

    @property
    def family(self):
        if self.scheme.endswith("unix"):
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def sockaddr(self):
        return self.path if self.scheme.endswith("unix") else (self.host, self.port)

    @property
    def hostport(self):
        """HOST:PORT as openssl s_client and socat want it ([::1]:PORT for IPv6)."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)


# The servers harness and opslib start read their lines through these names.
harness.Listener = Listener
opslib.Listener = Listener


def serve(*args, **kw):
    return harness.Server(args, **kw)


def tls_listener(srv, family=None):
    return srv.find("tls", family)


# ---- certificates ---------------------------------------------------------------------------------

def openssl(*args, cwd=None):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout.decode()


class Pki:
    """A throw-away PKI in a temporary directory, made with the openssl command:

      root.pem            the CA clients trust (CN=yodel test root)
      inter.pem           an intermediate CA the root signed
      server.pem/.key     CN=localhost (SAN localhost, 127.0.0.1, ::1), serial 0x1001, signed
                          by the intermediate; server.pem is the full chain (leaf, intermediate)
      server2.pem/.key    the same names, CN=localhost, O=rotated, serial 0x2002: the renewal
      client.pem/.key     CN=client, O=yodel, signed by client-ca.pem (mutual TLS)
      stranger.pem/.key   CN=stranger, signed by a CA the server does not know
    EC P-256 keys: quick to make, even many times over.
    """

    SERVER_SERIAL = 0x1001
    SERVER2_SERIAL = 0x2002

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="yodel-tls-")
        self._ca("root", "/CN=yodel test root")
        self._leaf("inter", "/CN=yodel test intermediate", "root", 0x10, ca_ext=True)
        self._leaf("server", "/CN=localhost", "inter", self.SERVER_SERIAL, server=True)
        self._leaf("server2", "/O=rotated/CN=localhost", "inter", self.SERVER2_SERIAL, server=True)
        self._ca("client-ca", "/CN=yodel client CA")
        self._leaf("client", "/O=yodel/CN=client", "client-ca", 0x3003)
        self._ca("other-ca", "/CN=somebody else's CA")
        self._leaf("stranger", "/CN=stranger", "other-ca", 0x4004)
        # The chains a server presents: its leaf, then the intermediate.
        for name in ("server", "server2"):
            with open(self.path(name + ".pem"), "ab") as out, \
                    open(self.path("inter.pem"), "rb") as inter:
                out.write(inter.read())

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", self.path(name + ".key"))

    def _ca(self, name, subject):
        self._key(name)
        openssl("req", "-x509", "-new", "-key", self.path(name + ".key"), "-subj", subject,
                "-days", "2", "-out", self.path(name + ".pem"),
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _leaf(self, name, subject, ca, serial, server=False, ca_ext=False):
        self._key(name)
        openssl("req", "-new", "-key", self.path(name + ".key"), "-subj", subject,
                "-out", self.path(name + ".csr"))
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            if ca_ext:
                f.write("basicConstraints=critical,CA:TRUE\n"
                        "keyUsage=critical,keyCertSign,cRLSign\n")
            elif server:
                f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
            else:
                f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", self.path(name + ".csr"), "-CA", self.path(ca + ".pem"),
                "-CAkey", self.path(ca + ".key"), "-set_serial", str(serial), "-days", "2",
                "-extfile", ext, "-out", self.path(name + ".pem"))

    def server_args(self, name="server"):
        return ["--cert", self.path(name + ".pem"), "--key", self.path(name + ".key")]

    def install(self, src, dst):
        """Copies src's chain and key over dst's files, each by an atomic rename (as a
        certificate manager renews them)."""
        for ext in (".pem", ".key"):
            tmp = self.path(dst + ext + ".new")
            shutil.copyfile(self.path(src + ext), tmp)
            os.rename(tmp, self.path(dst + ext))

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_PKI = None


def pki():
    """The PKI of this test process, made once (removed at exit)."""
    global _PKI
    if _PKI is None:
        _PKI = Pki()
        import atexit
        atexit.register(_PKI.cleanup)
    return _PKI


# ---- Python's ssl module ---------------------------------------------------------------------

def client_context(cert=None, max_version=None, min_version=None, alpn=None):
    """What a careful client uses: verifies the server against the test root, by name."""
    ctx = ssl.create_default_context(cafile=pki().path("root.pem"))
    if cert is not None:
        ctx.load_cert_chain(pki().path(cert + ".pem"), pki().path(cert + ".key"))
    if max_version is not None:
        ctx.maximum_version = max_version
    if min_version is not None:
        ctx.minimum_version = min_version
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(listener, ctx=None, timeout=None, ragged_ok=False):
    """A TLS connection to listener, handshake done. ragged_ok=False: a close without
    close_notify raises SSLEOFError instead of reading as b'' (so b'' proves close_notify)."""
    ctx = ctx or client_context()
    timeout = timeout or IO_TIMEOUT
    raw = socket.socket(listener.family, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.connect(listener.sockaddr)
        return ctx.wrap_socket(raw, server_hostname="localhost",
                               suppress_ragged_eofs=ragged_ok)
    except BaseException:
        raw.close()
        raise


def recv_exactly(sock, n, timeout=None):
    """harness.recv_exactly for an SSL socket too."""
    return harness.recv_exactly(sock, n, timeout or IO_TIMEOUT)


def round_trip(sock, data, timeout=None):
    sock.sendall(data)
    return recv_exactly(sock, len(data), timeout)


def recv_until_close_notify(sock, timeout=None, limit=64 << 20):
    """Everything until the server's close_notify (b'' from a socket made with
    ragged_ok=False; a bare EOF raises ssl.SSLEOFError)."""
    timeout = timeout or IO_TIMEOUT
    deadline = time.monotonic() + timeout
    chunks, total = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no close_notify within %.0fs; got %d bytes" % (timeout, total))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise AssertionError("more than %d bytes" % limit)


def peer_serial(sock):
    return int(sock.getpeercert()["serialNumber"], 16)


def handshake_refused(listener, ctx, data=b"hello\n", timeout=None):
    """Connects with ctx and sends data. Returns the reason the server refused (the handshake
    failed, or, for TLS 1.3 mutual TLS where the client finishes first, the first read), or
    None if data came back."""
    try:
        with tls_connect(listener, ctx, timeout) as s:
            s.sendall(data)
            got = s.recv(len(data))
            if got:
                return None
            return "closed"
    except (ssl.SSLError, ConnectionError) as e:
        return str(e)


def client_hello(max_version=None):
    """The bytes of a real ClientHello (from an ssl.SSLObject on memory BIOs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def closed_by_peer(sock, timeout):
    """hard.closed_by_peer: 'eof', 'reset' or None (still open after timeout)."""
    return hard.closed_by_peer(sock, timeout)


# ---- the real clients ------------------------------------------------------------------------------

class Interactive:
    """A client program run with pipes: write to its stdin, read what it prints, with deadlines
    (s_client, socat, ncat: each is a terminal client a person would type into)."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.errlog, child_err = harness.child_log()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=child_err)
        child_err.close()
        self.buf = b""

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_exactly(self, n, timeout=None):
        timeout = timeout or IO_TIMEOUT
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError("%s printed %r of %d bytes within %.0fs; stderr: %r"
                                     % (self.cmd[0], self.buf, n, timeout, self.stderr()))
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("%s ended after printing %r; stderr: %r"
                                     % (self.cmd[0], self.buf, self.stderr()))
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close_input(self):
        self.proc.stdin.close()

    def wait(self, timeout=None):
        """Waits for the exit; returns (status, the rest of stdout, stderr)."""
        timeout = timeout or IO_TIMEOUT
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("%s did not exit within %.0fs; stderr: %r"
                                     % (self.cmd[0], timeout, self.stderr()))
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.buf += chunk
        status = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        self.proc.stdout.close()
        return status, self.buf, self.stderr()

    def stderr(self):
        self.errlog.seek(0)
        return self.errlog.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if not f.closed:
                f.close()
        self.errlog.close()
        return False


def s_client(listener, *extra):
    """openssl s_client verifying the server against the test root; -quiet prints only what
    the server sends."""
    return Interactive(["openssl", "s_client", "-quiet", "-no_ign_eof", "-connect",
                        listener.hostport, "-servername", "localhost", "-verify_hostname",
                        "localhost", "-CAfile", pki().path("root.pem"),
                        "-verify_return_error"] + list(extra))


def socat_client(listener, *options):
    """socat - OPENSSL:HOST:PORT verifying the server (cafile=, commonname=)."""
    addr = "OPENSSL:%s,cafile=%s,commonname=localhost" % (listener.hostport,
                                                          pki().path("root.pem"))
    if listener.family == socket.AF_INET6:
        addr += ",pf=ip6"
    for o in options:
        addr += "," + o
    return Interactive(["socat", "-t", str(IO_TIMEOUT), "-", addr])


def ncat_client(listener, *extra):
    """ncat --ssl verifying the server against the test root."""
    return Interactive(["ncat", "--ssl", "--ssl-verify", "--ssl-trustfile",
                        pki().path("root.pem")] + list(extra) + [
                            "localhost" if listener.host == "127.0.0.1" else listener.host,
                            str(listener.port)])


# The Python docs' "TCP echo client using streams", with an ssl= context as the ssl module's
# docs and the tutorials add it: argv is PORT, MODE (raw: read(100); line: readline()), CAFILE.
ASYNCIO_CLIENT = r"""
import asyncio
import ssl
import sys

port, mode, cafile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
certfile = sys.argv[4] if len(sys.argv) > 4 else None


async def tcp_echo_client(message):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, certfile[:-4] + ".key")
    reader, writer = await asyncio.open_connection(
        '127.0.0.1', port, ssl=context)

    print(f'Send: {message!r}')
    writer.write(message.encode())
    await writer.drain()

    if mode == 'line':
        data = await reader.readline()
    else:
        data = await reader.read(100)
    print(f'Received: {data.decode()!r}')

    print('Close the connection')
    writer.close()
    await writer.wait_closed()

asyncio.run(tcp_echo_client('Hello World!\n'))
"""


def asyncio_client(port, mode="raw", cert=None, timeout=None):
    """Runs ASYNCIO_CLIENT; returns (status, stdout, stderr) as text."""
    args = [sys.executable, "-c", ASYNCIO_CLIENT, str(port), mode, pki().path("root.pem")]
    if cert is not None:
        args.append(pki().path(cert + ".pem"))
    r = harness.run(args, timeout=timeout or harness.CMD_TIMEOUT)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def require_tools(testcase, *names):
    for name in names:
        harness.require_tool(testcase, name)
