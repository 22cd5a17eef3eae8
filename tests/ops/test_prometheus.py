"""A real Prometheus (Debian's prometheus) scraping `yodel serve --metrics` every second with
contrib/prometheus/prometheus.yml and rules.yml, asked through its HTTP API what it saw; and the
shipped rules checked and unit-tested with promtool.

One Prometheus serves the class (it takes 5 s to turn its configuration into scrapes), on
127.0.0.1:0 (it logs the port it got) with a throw-away TSDB, scraping one yodel serve per test;
the blackbox exporter (Debian's prometheus-blackbox-exporter) probes one server's /readyz. Every
wait polls with a deadline. Registered for the release build only (tests/ops/CMakeLists.txt):
what it checks is Prometheus reading yodel, not yodel's memory.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from opslib import SOURCE_DIR, harness, ops_serve, wait_until

CONTRIB = os.path.join(SOURCE_DIR, "contrib", "prometheus")
DEPS = os.path.join(SOURCE_DIR, "scripts", "deps.sh")
# Scrapes and rule evaluations every second: a few of them, and Prometheus's start, fit here.
PROM_TIMEOUT = 20.0
LISTENING_RE = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


def ensure_package(package, *programs):
    """The paths of programs, installing Debian's package when root; else SkipTest."""
    def found():
        return [shutil.which(p) for p in programs]

    if all(found()):
        return found()
    if os.geteuid() != 0:
        raise unittest.SkipTest("%s not installable: not root (apt-get install %s)"
                                % (package, package))
    try:
        r = subprocess.run([DEPS, package], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=240)
    except subprocess.TimeoutExpired:
        raise unittest.SkipTest("%s not installable: scripts/deps.sh timed out" % package)
    if r.returncode != 0 or not all(found()):
        tail = r.stdout.decode(errors="replace").strip().splitlines()[-3:]
        raise unittest.SkipTest("%s not installable: %s" % (package, " / ".join(tail)))
    return found()


def replace_once(text, old, new):
    """text with old replaced by new, failing unless old occurs exactly once: the test must run
    the shipped file, and notice when it no longer says what the test expects."""
    if text.count(old) != 1:
        raise AssertionError("%r occurs %d times in contrib/prometheus" % (old, text.count(old)))
    return text.replace(old, new)


def shipped_config(metrics_ports, readyz=None):
    """contrib/prometheus/prometheus.yml scraping 127.0.0.1 at each of metrics_ports every
    second, rules evaluated every second; with readyz (blackbox exporter port, /readyz URL), its
    yodel-readyz job uncommented to probe that URL."""
    with open(os.path.join(CONTRIB, "prometheus.yml")) as f:
        text = f.read()
    text = replace_once(text, "scrape_interval: 15s", "scrape_interval: 1s")
    text = replace_once(text, "evaluation_interval: 15s", "evaluation_interval: 1s")
    targets = ", ".join('"127.0.0.1:%d"' % port for port in metrics_ports)
    text = replace_once(text, '["127.0.0.1:9100"]', "[%s]" % targets)
    if readyz is None:
        return text
    text = uncomment_readyz_job(text)
    text = replace_once(text, '"http://127.0.0.1:9100/readyz"', '"%s"' % readyz[1])
    return replace_once(text, "replacement: 127.0.0.1:9115",
                        "replacement: 127.0.0.1:%d" % readyz[0])


def kubernetes_job(metrics_port):
    """prometheus-kubernetes.yml's yodel-pods job with pod discovery replaced by three static
    targets carrying the labels discovery would give them (Debian's Prometheus has no Kubernetes
    discovery): the echo container's metrics port, its echo port, and another app's metrics
    port, all at metrics_port. Its relabelling should keep the first only."""
    with open(os.path.join(CONTRIB, "prometheus-kubernetes.yml")) as f:
        text = f.read()
    start = text.index("  - job_name: yodel-pods")
    job = text[start:]

    def pod(app, port_name, pod_name):
        return ('      - targets: ["127.0.0.1:%d"]\n'
                "        labels:\n"
                "          __meta_kubernetes_pod_label_app_kubernetes_io_name: %s\n"
                "          __meta_kubernetes_pod_container_port_name: %s\n"
                "          __meta_kubernetes_namespace: default\n"
                "          __meta_kubernetes_pod_name: %s\n"
                "          __meta_kubernetes_pod_container_name: echo\n"
                % (metrics_port, app, port_name, pod_name))

    static = ("    static_configs:\n" + pod("yodel", "metrics", "yodel-7d9f-a")
              + pod("yodel", "echo", "yodel-7d9f-b") + pod("other", "metrics", "other-1"))
    return replace_once(job, "    kubernetes_sd_configs:\n      - role: pod\n", static)


def uncomment_readyz_job(text):
    """The yodel-readyz job, commented out after "Uncomment to use:", made live."""
    lines = text.splitlines()
    marker = [i for i, line in enumerate(lines) if "Uncomment to use:" in line]
    if len(marker) != 1:
        raise AssertionError("contrib/prometheus/prometheus.yml: no 'Uncomment to use:' line")
    i = marker[0] + 1
    while i < len(lines) and re.match(r"^  # ", lines[i]):
        lines[i] = "  " + lines[i][4:]
        i += 1
    if i == marker[0] + 1:
        raise AssertionError("contrib/prometheus/prometheus.yml: nothing to uncomment")
    return "\n".join(lines) + "\n"


class Daemon:
    """A Prometheus-project daemon listening on 127.0.0.1:0: its log says which port it got."""

    def __init__(self, name, argv, ready_path="/-/ready"):
        self.name = name
        self.ready_path = ready_path
        self.dir = tempfile.mkdtemp(prefix="yodel-%s-" % name)
        self.log, child_log = harness.child_log()
        self.proc = subprocess.Popen(argv(self.dir) + ["--web.listen-address=127.0.0.1:0"],
                                     stdin=subprocess.DEVNULL, stdout=child_log,
                                     stderr=subprocess.STDOUT)
        child_log.close()
        try:
            m = wait_until(lambda: self._exited() or LISTENING_RE.search(self.output()),
                           timeout=PROM_TIMEOUT, what="%s's 'Listening on' line" % name)
            if m is True:
                raise AssertionError("%s exited: %s" % (name, self.output()))
            self.port = int(m.group(1))
            wait_until(self._ready, timeout=PROM_TIMEOUT, what="%s answering" % name)
        except BaseException:
            self.stop()
            raise

    def _exited(self):
        return self.proc.poll() is not None

    def _ready(self):
        try:
            return self.get(self.ready_path)[0] == 200
        except OSError:
            return False

    def output(self):
        if self.log.closed:
            return "(stopped)"
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def get(self, path):
        """(status, body) of GET path, bypassing any proxy of the environment."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self):
        harness.terminate(self.proc)
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Prometheus(Daemon):
    """prometheus configured with config_text, rules.yml next to the configuration as in
    contrib/prometheus, a throw-away TSDB."""

    def __init__(self, binary, config_text):
        def argv(directory):
            config = os.path.join(directory, "prometheus.yml")
            with open(config, "w") as f:
                f.write(config_text)
            shutil.copy(os.path.join(CONTRIB, "rules.yml"), directory)
            return [binary, "--config.file=" + config,
                    "--storage.tsdb.path=" + os.path.join(directory, "data"),
                    "--storage.tsdb.retention.time=1h", "--log.level=info"]

        super().__init__("prometheus", argv)

    def query(self, expr):
        """{frozenset(labels): value} of an instant query (the API's vector result)."""
        status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError("query %r: %d %s" % (expr, status, body[:300]))
        return {frozenset(s["metric"].items()): float(s["value"][1])
                for s in answer["data"]["result"]}

    def wait_for(self, expected, what):
        """Polls until every query of expected {expr: value} gives exactly that one value;
        the last answers are in the failure."""
        seen = {}

        def all_equal():
            for expr, value in expected.items():
                got = self.query(expr)
                seen[expr] = sorted(got.values())
                if seen[expr] != [value]:
                    return False
            return True

        try:
            wait_until(all_equal, timeout=PROM_TIMEOUT, what=what, step=0.2)
        except AssertionError as e:
            raise AssertionError("%s; expected %r, Prometheus answered %r" % (e, expected, seen))


class BlackboxExporter(Daemon):
    """prometheus-blackbox-exporter with the http_2xx module prometheus.yml's yodel-readyz job
    names (Debian's /etc/prometheus/blackbox.yml has the same): a probe succeeds on a 2xx."""

    CONFIG = "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n"

    def __init__(self, binary):
        def argv(directory):
            config = os.path.join(directory, "blackbox.yml")
            with open(config, "w") as f:
                f.write(self.CONFIG)
            return [binary, "--config.file=" + config]

        super().__init__("blackbox-exporter", argv, ready_path="/-/healthy")


def lines_round_trip(listener, count):
    """One connection: count lines out, the same count back, then a close."""
    payload = b"".join(b"line %d\n" % i for i in range(count))
    got = harness.exchange(listener, payload)
    if got != payload:
        raise AssertionError("echo of %d lines came back as %r" % (count, got[:200]))


def too_long_line(listener, max_line):
    """A line beyond --max-line: the server counts a line_too_long error and closes."""
    with harness.connect(listener) as s:
        try:
            s.sendall(b"x" * (4 * max_line) + b"\n")
            harness.recv_until_eof(s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed with our bytes unread: the kernel resets, as it should


class PrometheusTest(unittest.TestCase):
    """One Prometheus for the class, scraping one yodel serve per test (Prometheus takes 5 s to
    turn a configuration into scrapes): each test reads its own server's series, by instance."""

    MAX_LINE = 64
    # The yodel serve each test owns, and its options beyond those of serve().
    SERVERS = {
        "exact": [],
        "rates": [],
        "stopped": [],
        "drain": ["--delay", "30s", "--drain-timeout", "30s"],
        "notready": ["--delay", "30s", "--drain-timeout", "30s"],
        "pod": [],
    }

    @classmethod
    def setUpClass(cls):
        cls.prometheus_bin, cls.promtool = ensure_package("prometheus", "prometheus", "promtool")
        cls.servers = {}
        cls.prom = cls.blackbox = None
        try:
            for name, extra in cls.SERVERS.items():
                cls.servers[name] = cls.serve(*extra)
            ports = [srv.metrics_port for srv in cls.servers.values()]
            config = shipped_config(ports, cls.probe_readyz())
            config += kubernetes_job(cls.servers["pod"].metrics_port)
            cls.prom = Prometheus(cls.prometheus_bin, config)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def probe_readyz(cls):
        """(exporter port, URL) of a blackbox exporter probing the "notready" server's /readyz,
        or None (and the reason in cls.no_blackbox) where the exporter cannot be had."""
        try:
            binary, = ensure_package("prometheus-blackbox-exporter",
                                     "prometheus-blackbox-exporter")
        except unittest.SkipTest as e:
            cls.no_blackbox = str(e)
            return None
        cls.blackbox = BlackboxExporter(binary)
        url = "http://127.0.0.1:%d/readyz" % cls.servers["notready"].metrics_port
        return cls.blackbox.port, url

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "prom", None) is not None:
            cls.prom.stop()
        if getattr(cls, "blackbox", None) is not None:
            cls.blackbox.stop()
        for srv in cls.servers.values():
            srv.kill()

    @classmethod
    def serve(cls, *extra):
        return ops_serve("-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0", "-m", "line",
                         "--max-line", str(cls.MAX_LINE), "--metrics", "127.0.0.1:0", *extra)

    def target(self, name):
        """(server, its PromQL label matchers: job and instance)."""
        srv = self.servers[name]
        return srv, 'job="yodel",instance="127.0.0.1:%d"' % srv.metrics_port

    def drive_known_traffic(self, srv, labels, conns=5, lines=20, datagrams=7, errors=3):
        """What a scrape must then show, as {PromQL selector: value}."""
        for _ in range(conns):
            lines_round_trip(srv.tcp, lines)
        for i in range(datagrams):
            self.assertEqual(harness.udp_exchange(srv.udp, b"datagram %d" % i),
                             b"datagram %d" % i)
        for _ in range(errors):
            too_long_line(srv.tcp, self.MAX_LINE)
        tcp = '%s,listener="%s"' % (labels, srv.tcp.addr)
        udp = '%s,listener="%s"' % (labels, srv.udp.addr)
        return {
            "yodel_messages_total{%s}" % tcp: conns * lines,
            "yodel_messages_total{%s}" % udp: datagrams,
            "yodel_connections_accepted_total{%s}" % tcp: conns + errors,
            "yodel_connections_closed_total{%s}" % tcp: conns + errors,
            "yodel_connections_active{%s}" % tcp: 0,
            "yodel_connections_refused_total{%s}" % tcp: 0,
            'yodel_errors_total{%s,kind="line_too_long"}' % tcp: errors,
            "sum(yodel_errors_total{%s})" % labels: errors,
        }

    def test_prometheus_sees_exactly_the_messages_connections_and_errors_sent(self):
        srv, labels = self.target("exact")
        expected = self.drive_known_traffic(srv, labels)
        self.prom.wait_for(expected, "Prometheus's view of the traffic sent")
        self.prom.wait_for({"up{%s}" % labels: 1}, "the yodel target up")

    def test_recording_rules_turn_real_scrapes_into_rates(self):
        srv, labels = self.target("rates")
        # A rate needs the counter to rise between two scrapes: one scrape before the traffic.
        self.prom.wait_for({"up{%s}" % labels: 1}, "a first scrape")
        self.drive_known_traffic(srv, labels)

        def rates():
            messages = self.prom.query("instance:yodel_messages:rate1m{%s}" % labels)
            errors = self.prom.query(
                'instance_kind:yodel_errors:rate5m{%s,kind="line_too_long"}' % labels)
            values = list(messages.values()) + list(errors.values())
            return len(values) == 2 and all(v > 0 for v in values)

        wait_until(rates, timeout=PROM_TIMEOUT, what="messages/s and line_too_long errors/s > 0",
                   step=0.2)

    def test_a_stopped_server_turns_up_to_0_and_yodeldown_pending(self):
        srv, labels = self.target("stopped")
        self.prom.wait_for({"up{%s}" % labels: 1}, "the yodel target up")
        status, stderr = srv.stop()
        self.assertEqual(status, 0, stderr)
        self.prom.wait_for({"up{%s}" % labels: 0,
                            'ALERTS{alertname="YodelDown",alertstate="pending",%s}' % labels: 1},
                           "up 0 and YodelDown pending (it fires after 1m)")

    def test_the_endpoint_stays_up_to_prometheus_during_a_drain(self):
        srv, labels = self.target("drain")
        with harness.connect(srv.tcp) as held:
            held.sendall(b"held across the drain\n")
            self.prom.wait_for({"yodel_connections_active{%s}" % labels: 1},
                               "the held connection scraped")
            srv.send_signal(signal.SIGTERM)
            srv.wait_stderr(lambda t: "draining" in t, what="the drain")
            # Two scrapes after the drain began: both answered, the held connection counted.
            after = time.time()
            wait_until(lambda: self.prom.query(
                "timestamp(yodel_connections_active{%s}) > %f" % (labels, after + 1)),
                timeout=PROM_TIMEOUT, what="two scrapes during the drain", step=0.2)
            self.prom.wait_for({"up{%s}" % labels: 1,
                                "yodel_connections_active{%s}" % labels: 1},
                               "up 1 and the held connection while draining")

    def test_readyz_503_during_a_drain_fails_the_probe_and_yodelnotready_pends(self):
        if self.blackbox is None:
            self.skipTest(self.no_blackbox)
        srv, _ = self.target("notready")
        probe = 'job="yodel-readyz",instance="http://127.0.0.1:%d/readyz"' % srv.metrics_port
        with harness.connect(srv.tcp) as held:
            held.sendall(b"held across the drain\n")
            self.prom.wait_for({"probe_success{%s}" % probe: 1,
                                "probe_http_status_code{%s}" % probe: 200}, "/readyz 200")
            srv.send_signal(signal.SIGTERM)
            srv.wait_stderr(lambda t: "draining" in t, what="the drain")
            self.prom.wait_for(
                {"probe_success{%s}" % probe: 0, "probe_http_status_code{%s}" % probe: 503,
                 'ALERTS{alertname="YodelNotReady",alertstate="pending",%s}' % probe: 1},
                "/readyz 503 seen by the probe, YodelNotReady pending (it fires after 2m)")

    def test_kubernetes_job_keeps_only_the_yodel_pods_metrics_ports_and_names_the_pod(self):
        srv = self.servers["pod"]
        self.prom.wait_for({'up{job="yodel-pods"}': 1}, "one yodel-pods target up")
        up = self.prom.query('up{job="yodel-pods"}')
        self.assertEqual([dict(labels) for labels in up],
                         [{"__name__": "up", "job": "yodel-pods", "namespace": "default",
                           "pod": "yodel-7d9f-a", "container": "echo",
                           "instance": "127.0.0.1:%d" % srv.metrics_port}])
        # Its TCP and UDP listeners, scraped once: not also through the echo port's target.
        self.prom.wait_for({'count(yodel_messages_total{job="yodel-pods",pod="yodel-7d9f-a"})': 2,
                            'count(yodel_messages_total{job="yodel-pods"})': 2},
                           "the pod's series")

    def test_kubernetes_job_selects_the_label_and_metrics_ports_of_contrib_k8s(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml is not installed")
        with open(os.path.join(CONTRIB, "prometheus-kubernetes.yml")) as f:
            job = yaml.safe_load(f)["scrape_configs"][0]
        keep = {r["source_labels"][0]: re.compile("^(?:%s)$" % r["regex"])
                for r in job["relabel_configs"] if r.get("action") == "keep"}
        with open(os.path.join(SOURCE_DIR, "contrib", "k8s", "deployment.yaml")) as f:
            pod = yaml.safe_load(f)["spec"]["template"]
        app = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        self.assertTrue(keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"].match(app))
        ports = [p for c in pod["spec"]["containers"] for p in c["ports"]]
        metrics = {p["name"] for p in ports if p["name"].endswith("metrics")}
        self.assertEqual(len(metrics), len(pod["spec"]["containers"]))  # one per container
        for p in ports:
            self.assertEqual(bool(keep["__meta_kubernetes_pod_container_port_name"].match(
                p["name"])), p["name"] in metrics, p["name"])

    def test_shipped_config_and_rules_pass_promtool_check(self):
        r = subprocess.run([self.promtool, "check", "config",
                            os.path.join(CONTRIB, "prometheus.yml")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn(b"SUCCESS", r.stdout)
        r = subprocess.run([self.promtool, "check", "rules", os.path.join(CONTRIB, "rules.yml")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_shipped_rules_pass_their_promtool_unit_tests(self):
        r = subprocess.run([self.promtool, "test", "rules", "rules_test.yml"], cwd=CONTRIB,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn(b"SUCCESS", r.stdout)


if __name__ == "__main__":
    unittest.main()
