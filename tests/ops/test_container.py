"""The container image (contrib/container, scripts/image) and the Kubernetes manifests
(contrib/k8s), for real: podman builds the image from this tree's static build and runs it.

Podman gets a storage, state and network configuration of its own in a temporary directory
(CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), so the machine's images and containers are neither
used nor touched; the image is built into it as localhost/yodel:latest, the name the manifests
use. Containers use host networking and port 0 (the real port is read from `podman logs`), or
a network namespace this test makes, where the image's fixed ports (8888, 9100) take nothing of
the machine's. Every address is a loopback one. When no OCI runtime can start a container here,
the container tests skip with the reason (scripts/image-runtime); the manifest checks still run.

Runs in the release build only (tests/ops/CMakeLists.txt): the image is the same either way.
"""

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from opslib import SOURCE_DIR, harness, wait_until

BUILD_DIR = os.environ.get("YODEL_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
IMAGE = "localhost/yodel:latest"
UID = 65532
DEBIAN_PYTHON = "/usr/bin/python3"  # where Debian's python3-yaml and python3-kubernetes are
K8S_DIR = os.path.join(SOURCE_DIR, "contrib", "k8s")
# The target is 5 MB; the static binary alone is 5.26 MB, 3.4 MB of it libcrypto (README
# "Containers and Kubernetes"). The bound catches a build that is no longer static and stripped.
MAX_IMAGE_BYTES = 5_500_000
PODMAN_TIMEOUT = 120
START_TIMEOUT = 30  # a container start is a process start plus podman's own setup


class Podman:
    """podman with its own storage (vfs: plain directories, nothing mounted), state and CNI
    network configuration under one temporary directory, removed by close()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="yodel-podman-")
        conf = os.path.join(self.dir, "containers.conf")
        storage = os.path.join(self.dir, "storage.conf")
        with open(os.path.join(SOURCE_DIR, "contrib", "container", "containers.conf")) as f:
            base = f.read()
        with open(conf, "w") as f:
            f.write(base + '\n[engine]\ntmp_dir = "%s/tmp"\n\n[network]\n'
                    'network_config_dir = "%s/cni"\n' % (self.dir, self.dir))
        with open(storage, "w") as f:
            f.write('[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n'
                    % (self.dir, self.dir))
        os.mkdir(os.path.join(self.dir, "cni"))
        self.env = dict(os.environ, CONTAINERS_CONF=conf, CONTAINERS_STORAGE_CONF=storage)
        self.runtime = None

    def __call__(self, *args, timeout=PODMAN_TIMEOUT, check=True, input=None, netns=None):
        """Runs `podman ARGS` (inside network namespace netns if given); returns stdout."""
        cmd = ["podman"] + (["--runtime", self.runtime] if self.runtime else []) + list(args)
        if netns:
            cmd = ["nsenter", "--net=" + netns] + cmd
        proc = subprocess.run(cmd, env=self.env, input=input, capture_output=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("%s: exit %d: %s" % (" ".join(cmd), proc.returncode,
                                                      proc.stderr.decode(errors="replace")))
        return proc.stdout.decode(errors="replace")

    def close(self):
        subprocess.run(["podman", "pod", "rm", "--all", "--force"], env=self.env,
                       capture_output=True, timeout=PODMAN_TIMEOUT)
        subprocess.run(["podman", "rm", "--all", "--force", "--time", "0"], env=self.env,
                       capture_output=True, timeout=PODMAN_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


PODMAN = None
SKIP_REASON = None


def setUpModule():
    """Builds the image once (scripts/image, into this test's storage), then finds a runtime."""
    global PODMAN, SKIP_REASON
    if shutil.which("podman") is None:
        SKIP_REASON = "no container runtime: podman is not installed"
        return
    PODMAN = Podman()
    build = subprocess.run(
        [os.path.join(SOURCE_DIR, "scripts", "image"), "--build-dir",
         os.path.join(BUILD_DIR, "image-static"), "--tag", IMAGE],
        env=PODMAN.env, capture_output=True, timeout=600)
    if build.returncode != 0:
        raise AssertionError("scripts/image failed: %s%s" % (
            build.stdout.decode(errors="replace"), build.stderr.decode(errors="replace")))
    print("\n" + build.stdout.decode().strip(), flush=True)
    found = subprocess.run([os.path.join(SOURCE_DIR, "scripts", "image-runtime"), IMAGE],
                           env=PODMAN.env, capture_output=True, timeout=300)
    if found.returncode != 0:
        SKIP_REASON = found.stdout.decode().strip() or "no container runtime works here"
        return
    PODMAN.runtime = found.stdout.decode().strip()


def tearDownModule():
    if PODMAN is not None:
        PODMAN.close()


def need_runtime():
    if SKIP_REASON is not None:
        raise unittest.SkipTest(SKIP_REASON)


def need_image():
    """The image is built wherever podman is, runtime or not (the Containerfile runs nothing)."""
    if PODMAN is None:
        raise unittest.SkipTest(SKIP_REASON)


class Container:
    """A detached `podman run IMAGE ARGS` whose 'listening on' lines are read from its log."""

    def __init__(self, args, expect, options=(), netns=None):
        self.args = list(args)
        out = PODMAN("run", "-d", *(["--network", "host"] if netns is None else
                                    ["--network", "ns:" + netns]), *options, IMAGE, *self.args)
        self.id = out.strip().splitlines()[-1]
        self.listeners = []
        wait_until(lambda: self._listening(expect), timeout=START_TIMEOUT,
                   what="%d listening lines from the container (%s)" % (expect, self.args))

    def _listening(self, expect):
        if self.state()["Status"] == "exited":
            raise AssertionError("the container exited: %s" % (self.logs(),))
        lines = self.logs()[0].splitlines()
        self.listeners = [harness.Listener(l) for l in lines if l.startswith("listening on ")]
        return len(self.listeners) >= expect

    def logs(self):
        """(stdout, stderr) so far: podman keeps the two streams apart."""
        proc = subprocess.run(["podman", "logs", self.id], env=PODMAN.env, capture_output=True,
                              timeout=PODMAN_TIMEOUT)
        return proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")

    def state(self):
        return json.loads(PODMAN("inspect", "--format", "{{json .State}}", self.id))

    def find(self, scheme, host=None):
        for li in self.listeners:
            if li.scheme == scheme and (host is None or li.host == host):
                return li
        raise AssertionError("no %s listener on %s among %r" % (scheme, host, self.listeners))

    def wait_exit(self, timeout=START_TIMEOUT):
        return int(PODMAN("wait", self.id, timeout=timeout).strip())

    def close(self):
        PODMAN("rm", "--force", "--time", "0", self.id, check=False)


def run(cmd, input=None):
    """(status, stdout, stderr) of cmd run to its end (bounded by harness.CMD_TIMEOUT)."""
    proc = harness.run(cmd, input=input)
    return proc.returncode, proc.stdout, proc.stderr


def run_ok(cmd):
    status, out, err = run(cmd)
    if status != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(cmd), status, err.decode()))


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class NetNamespace:
    """A network namespace of this test's own, with only its loopback up."""

    def __init__(self):
        self.name = "yodel-ctr-%d-%d" % (os.getpid(), id(self) % 100000)
        run_ok(["ip", "netns", "add", self.name])
        self.path = "/run/netns/" + self.name
        run_ok(["ip", "-n", self.name, "link", "set", "lo", "up"])

    def run(self, cmd, input=None):
        """Runs cmd inside the namespace (only its network: files and mounts stay ours)."""
        return run(["nsenter", "--net=" + self.path] + cmd, input=input)

    def close(self):
        run(["ip", "netns", "del", self.name])


class ImageTest(unittest.TestCase):
    def setUp(self):
        need_image()

    def test_the_image_stays_under_5_5_mb(self):
        size = int(PODMAN("image", "inspect", "--format", "{{.Size}}", IMAGE))
        print("\nimage %s: %d bytes (podman image inspect)" % (IMAGE, size), flush=True)
        self.assertLess(size, MAX_IMAGE_BYTES)

    def test_the_image_holds_only_yodel_and_its_user_and_no_shell(self):
        root = PODMAN("image", "mount", IMAGE).strip()
        self.addCleanup(PODMAN, "image", "unmount", IMAGE, check=False)
        files = set()
        for where, _, names in os.walk(root):
            files.update(os.path.relpath(os.path.join(where, n), root) for n in names)
        self.assertEqual(files, {"etc/passwd", "etc/group", "usr/bin/yodel"})
        with open(os.path.join(root, "etc", "passwd")) as f:
            self.assertEqual(f.read().split(":")[2], str(UID))


class ContainerTest(unittest.TestCase):
    def setUp(self):
        need_runtime()

    def start(self, *args, expect=1, options=(), netns=None):
        c = Container(args, expect, options, netns)
        self.addCleanup(c.close)
        return c

    def test_with_no_arguments_it_serves_tcp_and_udp_8888_and_metrics_9100_on_every_address(self):
        ns = NetNamespace()
        self.addCleanup(ns.close)
        c = self.start(expect=4, netns=ns.path)
        self.assertEqual(sorted(li.line for li in c.listeners), [
            "listening on tcp://0.0.0.0:8888", "listening on tcp://[::]:8888",
            "listening on udp://0.0.0.0:8888", "listening on udp://[::]:8888"])
        wait_until(lambda: "metrics on http://0.0.0.0:9100/metrics" in c.logs()[0],
                   what="the metrics line")
        for addr in ("127.0.0.1:8888", "[::1]:8888", "udp://127.0.0.1:8888"):
            status, out, err = ns.run([harness.YODEL_BIN, "send", "-c", addr, "hello"])
            self.assertEqual((status, out), (0, b"hello\n"), err)
        status, out, err = ns.run(["curl", "-sS", "http://127.0.0.1:9100/readyz"])
        self.assertEqual((status, out), (0, b"ready\n"), err)

    def test_it_runs_as_uid_65532_not_root(self):
        c = self.start("-l", "127.0.0.1:0")
        status = proc_status(c.state()["Pid"])
        self.assertEqual(status["Uid"].split(), [str(UID)] * 4)
        self.assertEqual(status["Gid"].split(), [str(UID)] * 4)

    def test_it_echoes_tcp_and_udp_over_host_networking(self):
        c = self.start("-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0", expect=2)
        self.assertEqual(harness.exchange(c.find("tcp"), b"over tcp\n"), b"over tcp\n")
        self.assertEqual(harness.udp_exchange(c.find("udp"), b"over udp"), b"over udp")

    def test_localhost_is_both_loopback_addresses_for_the_server_and_a_name_for_the_client(self):
        c = self.start("-l", "localhost:0", expect=2)
        self.assertEqual({li.host for li in c.listeners}, {"127.0.0.1", "::1"})
        out = PODMAN("run", "--rm", "--network", "host", "--entrypoint", "/usr/bin/yodel", IMAGE,
                     "send", "-c", "localhost:%d" % c.listeners[0].port, "by name")
        self.assertEqual(out, "by name\n")

    def test_a_name_from_etc_hosts_resolves(self):
        c = self.start("-l", "yodel-hosts.test:0",
                       options=["--add-host", "yodel-hosts.test:127.0.0.7"])
        self.assertEqual([li.host for li in c.listeners], ["127.0.0.7"])
        self.assertEqual(harness.exchange(c.listeners[0], b"hosts\n"), b"hosts\n")

    def test_a_dns_name_resolves_through_the_nameserver_of_resolv_conf(self):
        dns = DnsServer({"echo.yodel.test": "127.0.0.9"})
        self.addCleanup(dns.close)
        conf = os.path.join(PODMAN.dir, "resolv.conf")
        with open(conf, "w") as f:
            f.write("nameserver %s\noptions attempts:1 timeout:2\n" % dns.host)
        c = self.start("-l", "echo.yodel.test:0",
                       options=["-v", conf + ":/etc/resolv.conf:ro"])
        self.assertEqual([li.host for li in c.listeners], ["127.0.0.9"])
        self.assertIn("echo.yodel.test", dns.asked)

    def test_sigterm_to_pid_1_drains_a_pending_reply_then_exits_0(self):
        c = self.start("-l", "127.0.0.1:0", "-m", "line", "--delay", "5s", "-v")
        with harness.connect(c.listeners[0]) as s:
            s.sendall(b"in flight\n")
            wait_until(lambda: 'received 10 bytes "in flight' in c.logs()[1],
                       what="the server reading the line")
            PODMAN("kill", "--signal", "TERM", c.id)
            wait_until(lambda: "draining" in c.logs()[1], what="the drain to start")
            s.setblocking(False)
            with self.assertRaises(BlockingIOError, msg="the reply came before the drain"):
                s.recv(100)
            s.setblocking(True)
            self.assertEqual(harness.recv_until_eof(s), b"in flight\n")
        self.assertEqual(c.wait_exit(), 0)

    def test_podman_stop_ends_a_connection_left_open_within_the_drain_timeout_and_exits_0(self):
        c = self.start("-l", "127.0.0.1:0", "--drain-timeout", "2s")
        with harness.connect(c.listeners[0]) as s:
            s.sendall(b"x")
            self.assertEqual(harness.recv_exactly(s, 1), b"x")
            started = time.monotonic()
            PODMAN("stop", "--time", "30", c.id, timeout=60)  # SIGKILL only after 30 s
            stopped = time.monotonic() - started
        self.assertEqual(c.state()["ExitCode"], 0)
        self.assertLess(stopped, 2 + 10, "podman stop took %.1fs for a 2s drain" % stopped)

    def test_json_logs_reach_podman_logs_as_one_object_per_line(self):
        c = self.start("-l", "127.0.0.1:0", "--json")
        self.assertEqual(harness.exchange(c.listeners[0], b"json\n"), b"json\n")
        PODMAN("stop", "--time", "30", c.id, timeout=60)
        lines = [l for l in c.logs()[1].splitlines() if l]
        events = [json.loads(l).get("event") for l in lines]
        self.assertIn("draining", events)
        self.assertIn("summary", events)
        self.assertEqual(json.loads(lines[-1])["bytes_in"], 5)


class DnsServer:
    """A DNS server on 127.53.x.y:53 answering A queries from a table (AAAA: no address, any
    other name: NXDOMAIN), in a thread; .asked lists the names it was asked for."""

    def __init__(self, table):
        self.table, self.asked = table, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for attempt in range(20):  # a free address of 127.53.0.0/16: port 53 is everyone's
            self.host = "127.53.%d.%d" % (os.getpid() % 250 + 1, attempt + 1)
            try:
                self.sock.bind((self.host, 53))
                break
            except OSError as e:
                error = e
        else:
            raise AssertionError("no free port 53 on 127.53.*: %s" % error)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            answer = self.answer(query)
            if answer:
                self.sock.sendto(answer, peer)

    def answer(self, query):
        """The reply to one query (RFC 1035 4.1), or None for a malformed one."""
        if len(query) < 17:
            return None
        labels, i = [], 12
        while i < len(query) and query[i] != 0:
            labels.append(query[i + 1:i + 1 + query[i]].decode("ascii", "replace"))
            i += 1 + query[i]
        qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
        name = ".".join(labels).lower()
        self.asked.append(name)
        question = query[12:i + 5]
        address = self.table.get(name)
        rcode = 0 if address is not None else 3
        answers = b""
        if address is not None and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(address)
        flags = 0x8180 | rcode  # a response, recursion desired and available
        header = query[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        return header + question + answers

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


def load_yaml(path):
    """The documents of a YAML file, parsed by Debian's python3-yaml (through /usr/bin/python3:
    these tests use the standard library only)."""
    code = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"
    status, out, err = run([DEBIAN_PYTHON, "-c", code, path])
    if status != 0:
        raise unittest.SkipTest("no python3-yaml for %s: %s" % (DEBIAN_PYTHON, err.decode()[-200:]))
    return [d for d in json.loads(out) if d]


def args_value(args, option):
    return args[args.index(option) + 1]


def seconds(duration):
    m = re.match(r"^(\d+)(ms|s|m)?$", duration)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60}[m.group(2)]


class ManifestTest(unittest.TestCase):
    """contrib/k8s, checked without a cluster."""

    @classmethod
    def setUpClass(cls):
        cls.deployment = load_yaml(os.path.join(K8S_DIR, "deployment.yaml"))[0]
        cls.service = load_yaml(os.path.join(K8S_DIR, "service.yaml"))[0]
        cls.job = load_yaml(os.path.join(K8S_DIR, "job-bench.yaml"))[0]
        cls.pod = cls.deployment["spec"]["template"]["spec"]

    def test_the_manifests_match_the_kubernetes_api_schema(self):
        status, out, err = run([os.path.join(SOURCE_DIR, "scripts", "image-k8s-validate")])
        if b"No module named" in out:
            self.skipTest(out.decode().strip())
        self.assertEqual(status, 0, out.decode() + err.decode())
        self.assertEqual(out.decode().count(": valid "), 3, out.decode())

    def test_the_grace_period_outlasts_every_containers_drain_timeout(self):
        grace = self.pod["terminationGracePeriodSeconds"]
        for c in self.pod["containers"]:
            self.assertLess(seconds(args_value(c["args"], "--drain-timeout")), grace, c["name"])

    def test_probes_ask_the_metrics_port_for_readyz_and_healthz(self):
        for c in self.pod["containers"]:
            metrics_port = args_value(c["args"], "--metrics").rsplit(":", 1)[1]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = c[probe]["httpGet"]
                self.assertEqual(get["path"], path)
                self.assertEqual(str(ports[get["port"]]), metrics_port, c["name"])

    def test_every_container_is_non_root_read_only_and_without_capabilities(self):
        self.assertTrue(self.pod["securityContext"]["runAsNonRoot"])
        for spec in (self.pod, self.job["spec"]["template"]["spec"]):
            for c in spec["containers"]:
                sc = c["securityContext"]
                self.assertEqual((sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"],
                                  sc["capabilities"]["drop"]), (True, False, ["ALL"]), c["name"])
                self.assertIn("limits", c["resources"])
                self.assertIn("requests", c["resources"])

    def test_the_whoami_container_names_the_pod_from_the_downward_api(self):
        whoami = [c for c in self.pod["containers"] if c["name"] == "whoami"][0]
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in whoami["env"]}
        self.assertEqual(env, {"POD_NAME": "metadata.name", "POD_IP": "status.podIP"})
        self.assertIn("{env:POD_NAME}", args_value(whoami["args"], "--banner"))
        self.assertIn("{env:POD_IP}", args_value(whoami["args"], "--banner"))
        self.assertIn("{env:POD_NAME}", args_value(whoami["args"], "--prefix"))

    def test_every_service_port_targets_a_port_the_pod_declares_with_its_protocol(self):
        declared = {(p["name"], p["protocol"]) for c in self.pod["containers"] for p in c["ports"]}
        self.assertEqual(self.service["spec"]["selector"],
                         self.deployment["spec"]["selector"]["matchLabels"])
        for port in self.service["spec"]["ports"]:
            self.assertIn((port["targetPort"], port["protocol"]), declared)

    def test_the_bench_job_loads_the_services_echo_port_and_prints_json(self):
        c = self.job["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["command"], ["/usr/bin/yodel", "bench"])
        echo = [p for p in self.service["spec"]["ports"] if p["name"] == "echo"][0]
        self.assertEqual(args_value(c["args"], "-c"),
                         "%s:%d" % (self.service["metadata"]["name"], echo["port"]))
        self.assertIn("--json", c["args"])
        self.assertGreater(self.job["spec"]["parallelism"], 1)


def podman_variant(deployment_yaml):
    """The Deployment as podman 4.3 can play it, with exactly two changes: replicas 1 (podman
    publishes every containerPort on its host, so a second replica finds the ports taken) and
    POD_IP as a value (podman knows no status.podIP fieldRef)."""
    replicas = "  replicas: 3\n"
    pod_ip = "                fieldRef: {fieldPath: status.podIP}\n"
    assert deployment_yaml.count(replicas) == 1 and deployment_yaml.count(pod_ip) == 1
    text = deployment_yaml.replace(replicas, "  replicas: 1\n")
    return text.replace("              valueFrom:\n" + pod_ip, "              value: podman\n")


class KubePlayTest(unittest.TestCase):
    """contrib/k8s/deployment.yaml run by `podman kube play` in a network namespace of its own
    (its published ports and CNI bridge stay there); the test talks to the pod inside the pod's
    own network namespace, on its loopback."""

    @classmethod
    def setUpClass(cls):
        need_runtime()
        if shutil.which("catatonit") is None and not os.path.exists(
                "/usr/libexec/podman/catatonit"):
            raise unittest.SkipTest("podman kube play needs catatonit (its pause image)")
        cls.ns = NetNamespace()
        cls.yaml = os.path.join(PODMAN.dir, "deployment.yaml")
        try:
            with open(os.path.join(K8S_DIR, "deployment.yaml")) as f:
                text = podman_variant(f.read())
            with open(cls.yaml, "w") as f:
                f.write(text)
            PODMAN("kube", "play", cls.yaml, netns=cls.ns.path)
            infra = PODMAN("pod", "inspect", "--format", "{{.InfraContainerID}}", "yodel-pod-0")
            cls.pod_netns = PODMAN("inspect", "--format", "{{.NetworkSettings.SandboxKey}}",
                                   infra.strip()).strip()
            for name, n in (("yodel-pod-0-echo", 4), ("yodel-pod-0-whoami", 4)):
                wait_until(lambda: PODMAN("logs", name).count("listening on") >= n,
                           timeout=START_TIMEOUT, what="%s listening" % name)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        PODMAN("kube", "down", cls.yaml, netns=cls.ns.path, check=False)
        cls.ns.close()

    def in_pod(self, cmd, input=None):
        return run(["nsenter", "--net=" + self.pod_netns] + cmd, input=input)

    def test_the_echo_container_echoes_tcp_and_udp_on_8888(self):
        for addr in ("127.0.0.1:8888", "udp://127.0.0.1:8888"):
            status, out, err = self.in_pod([harness.YODEL_BIN, "send", "-c", addr, "pod echo"])
            self.assertEqual((status, out), (0, b"pod echo\n"), err)

    def test_readyz_is_200_on_the_metrics_port(self):
        status, out, err = self.in_pod(["curl", "-sS", "-w", " %{http_code}",
                                        "http://127.0.0.1:9100/readyz"])
        self.assertEqual((status, out), (0, b"ready\n 200"), err)

    def test_the_whoami_container_names_the_pod_in_its_banner_and_prefix(self):
        status, out, err = self.in_pod(["nc", "-q", "1", "127.0.0.1", "8889"], input=b"who\n")
        self.assertEqual(out, b"yodel yodel-pod-0 podman\nyodel-pod-0: who\n", err)

    def test_the_pod_runs_as_65532_without_capabilities_on_a_read_only_root(self):
        pid = json.loads(PODMAN("inspect", "--format", "{{json .State.Pid}}", "yodel-pod-0-echo"))
        status = proc_status(pid)
        self.assertEqual(status["Uid"].split(), [str(UID)] * 4)
        self.assertEqual((status["CapEff"], status["NoNewPrivs"]), ("0000000000000000", "1"))
        with open("/proc/%d/mountinfo" % pid) as f:
            root = [l.split() for l in f if l.split()[4] == "/"][0]
        self.assertIn("ro", root[5].split(","))


if __name__ == "__main__":
    unittest.main()
