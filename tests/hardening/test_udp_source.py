"""A UDP server bound to a wildcard address answers each datagram from the address it was sent
to: a client that sent to 127.0.0.2 must get its reply from 127.0.0.2, or a connected socket
(which only takes datagrams from the address it connected to) never sees it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hard  # noqa: E402
from hard import harness  # noqa: E402

CLIENTS = 8  # from distinct source ports: with several loops, the kernel spreads them over all
REPLY_TIMEOUT = 2.0


def client_source(dest):
    """Clients send from another loopback address than the one they send to: the right reply
    source is then never what the kernel would pick by itself."""
    return {"127.0.0.1": "127.0.0.4", "::1": "::1"}.get(dest, "127.0.0.1")


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# Run inside a fresh network namespace (unshare -n) where lo also has fd00::2: IPv6 has only one
# loopback address, so without a second one the v6 wildcard could not be caught answering from
# the wrong address. Starts `yodel serve -l udp://[::]:0 ARGS`, sends datagrams to each address
# from the other one (so that the right source is never the kernel's default), from unconnected
# and from connected sockets, and prints what came back as JSON.
NETNS_PROBE = r"""
import json, select, socket, subprocess, sys, time
srv = subprocess.Popen([sys.argv[1], "serve", "-l", "udp://[::]:0"] + sys.argv[2:],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
try:
    if not select.select([srv.stdout], [], [], 10)[0]:
        raise SystemExit("no listening line")
    port = int(srv.stdout.readline().decode().rsplit(":", 1)[1])
    out = {}
    # Each kind of client stops at its first failure: a missing reply costs a whole timeout.
    for dest, source in (("fd00::2", "::1"), ("::1", "fd00::2")):
        for connected in (False, True):
            got = out.setdefault("%%s %%s" %% (dest, "connected" if connected else "unconnected"),
                                 [])
            for i in range(%(clients)d):
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                    s.bind((source, 0))
                    s.settimeout(%(timeout)f)
                    if connected:
                        s.connect((dest, port))
                    s.sendto(b"probe", (dest, port))
                    try:
                        reply, sender = s.recvfrom(100)
                    except socket.timeout:
                        got.append(None)
                        break
                    got.append(True if connected else sender[0])
                    if got[-1] != (True if connected else dest):
                        break
    print(json.dumps(out), flush=True)
finally:
    srv.terminate()
    srv.wait(10)
"""


def can_unshare_with_v6():
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "-n", "sh", "-c",
                        "ip link set lo up && ip -6 addr add fd00::2/128 dev lo nodad"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


@hard.both_thread_counts
class UdpReplySource(hard.ThreadVariant):
    def wildcard_server(self, wildcard):
        srv = self.serve("-l", "udp://%s:0" % wildcard)
        self.addCleanup(srv.kill)
        return srv

    def assert_replies_come_from(self, srv, family, dest):
        """Unconnected clients: recvfrom says where each reply came from."""
        port = srv.udp.port
        for i in range(CLIENTS):
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((client_source(dest), 0))
                s.settimeout(REPLY_TIMEOUT * hard.SLOW)
                payload = b"to %s from client %d" % (dest.encode(), i)
                s.sendto(payload, (dest, port))
                try:
                    reply, source = s.recvfrom(65536)
                except socket.timeout:
                    self.fail("client %d: no reply to a datagram sent to %s" % (i, dest))
                self.assertEqual(reply, payload)
                self.assertEqual(source[:2], (dest, port),
                                 "client %d sent to %s but the reply came from %r"
                                 % (i, dest, source[:2]))

    def assert_connected_clients_get_replies(self, srv, family, dest):
        port = srv.udp.port
        for i in range(CLIENTS):
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((client_source(dest), 0))
                s.settimeout(REPLY_TIMEOUT * hard.SLOW)
                s.connect((dest, port))
                payload = b"connected to %s, client %d" % (dest.encode(), i)
                s.send(payload)
                try:
                    reply = s.recv(65536)
                except socket.timeout:
                    self.fail("connected client %d: no reply from %s (a reply from another "
                              "address is dropped by the kernel)" % (i, dest))
                self.assertEqual(reply, payload)

    def test_reply_to_127_0_0_2_on_a_wildcard_bind_comes_from_127_0_0_2(self):
        srv = self.wildcard_server("0.0.0.0")
        self.assert_replies_come_from(srv, socket.AF_INET, "127.0.0.2")

    def test_reply_to_127_0_0_3_on_a_wildcard_bind_comes_from_127_0_0_3(self):
        srv = self.wildcard_server("0.0.0.0")
        self.assert_replies_come_from(srv, socket.AF_INET, "127.0.0.3")

    def test_reply_to_127_0_0_1_on_a_wildcard_bind_comes_from_127_0_0_1(self):
        srv = self.wildcard_server("0.0.0.0")
        self.assert_replies_come_from(srv, socket.AF_INET, "127.0.0.1")

    def test_client_connected_to_127_0_0_2_gets_its_reply(self):
        srv = self.wildcard_server("0.0.0.0")
        self.assert_connected_clients_get_replies(srv, socket.AF_INET, "127.0.0.2")

    def test_client_connected_to_127_0_0_3_gets_its_reply(self):
        srv = self.wildcard_server("0.0.0.0")
        self.assert_connected_clients_get_replies(srv, socket.AF_INET, "127.0.0.3")

    def test_reply_to_ipv6_loopback_on_the_ipv6_wildcard_comes_from_it(self):
        if not has_ipv6_loopback():
            self.skipTest("no IPv6 loopback here")
        srv = self.wildcard_server("[::]")
        self.assert_replies_come_from(srv, socket.AF_INET6, "::1")
        self.assert_connected_clients_get_replies(srv, socket.AF_INET6, "::1")

    def test_reply_to_a_second_ipv6_address_on_the_ipv6_wildcard_comes_from_it(self):
        if not can_unshare_with_v6():
            self.skipTest("cannot create a network namespace with fd00::2 on lo here")
        code = NETNS_PROBE % {"clients": CLIENTS, "timeout": REPLY_TIMEOUT * hard.SLOW}
        script = 'ip link set lo up && ip -6 addr add fd00::2/128 dev lo nodad && exec "$@"'
        r = harness.run(["unshare", "-n", "sh", "-c", script, "sh", sys.executable, "-c", code,
                         harness.YODEL_BIN] + self.thread_args, timeout=60 * hard.SLOW)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        got = json.loads(r.stdout.decode().strip().splitlines()[-1])
        # Each address from the other one: ::1 is the kernel's own choice when answering ::1,
        # fd00::2 never is.
        self.maxDiff = None
        self.assertEqual(got, {"fd00::2 unconnected": ["fd00::2"] * CLIENTS,
                               "fd00::2 connected": [True] * CLIENTS,
                               "::1 unconnected": ["::1"] * CLIENTS,
                               "::1 connected": [True] * CLIENTS})

    def test_both_addresses_in_turn_on_one_server(self):
        # The source is per datagram, not remembered from the last one.
        srv = self.wildcard_server("0.0.0.0")
        for dest in ("127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.1"):
            self.assert_replies_come_from(srv, socket.AF_INET, dest)
        status, err = srv.stop()
        self.assertEqual(status, 0, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
