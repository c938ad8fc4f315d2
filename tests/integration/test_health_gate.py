# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of meshos.release.health_gate against real components.

meshapp instances with fault profiles, a real Prometheus and Alertmanager, all on 127.0.0.1 in the
health_gate port range 20000-20999 (docs/design.md). The module runs through ansible-playbook.
Every process started here is stopped in a finalizer.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESHAPP = os.path.join(ROOT, "roles", "lab", "files", "meshapp.py")
BIN = os.path.dirname(sys.executable)


class Procs:
    """Processes started by a test; stop() ends exactly these."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        log.close()
        self.procs[name] = proc
        return proc

    def stop(self, name):
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


class Traffic:
    """Background GET / traffic to some ports, like users hitting the service."""

    def __init__(self):
        self.ports = set()
        self.running = True
        self.threads = []

    def add(self, port, per_port=2):
        self.ports.add(port)
        for _index in range(per_port):
            thread = threading.Thread(target=self._loop, args=(port,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _loop(self, port):
        while self.running:
            if port not in self.ports:
                time.sleep(0.05)
                continue
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
            except OSError:
                time.sleep(0.05)
            time.sleep(0.01)

    def stop(self):
        self.running = False
        for thread in self.threads:
            thread.join(timeout=5)


def wait_http(url, timeout=10.0, expect=200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == expect:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("%s not answering %d within %ss" % (url, expect, timeout))


@pytest.fixture
def procs(tmp_path):
    manager = Procs(str(tmp_path))
    yield manager
    manager.stop_all()


@pytest.fixture
def traffic():
    generator = Traffic()
    yield generator
    generator.stop()


def release(tmp_path, version, **fault):
    path = tmp_path / ("release-" + version)
    path.mkdir(exist_ok=True)
    (path / "release.json").write_text(json.dumps({"version": version, "fault": fault}))
    return str(path)


def start_app(procs, port, release_dir):
    procs.start("app%d" % port, [sys.executable, MESHAPP, "--port", str(port), "--instance", "app%d" % port,
                                 "--release-dir", release_dir, "--ready-delay", "0"])


def start_apps(procs, ports, release_dir):
    for port in ports:
        start_app(procs, port, release_dir)
    for port in ports:
        wait_http("http://127.0.0.1:%d/ready" % port)
    return ["http://127.0.0.1:%d" % p for p in ports]


def gate(tmp_path, env_extra=None, **args):
    """Run the module through ansible-playbook; return (failed, result)."""
    out = tmp_path / "gate-result.json"
    if out.exists():
        out.unlink()
    playbook = tmp_path / "gate.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Run the gate\n      meshos.release.health_gate: %s\n      register: gate_result\n"
        "      ignore_errors: true\n"
        "    - name: Save the result\n      ansible.builtin.copy:\n        content: '{{ gate_result | to_json }}'\n"
        "        dest: %s\n        mode: '0644'\n" % (json.dumps(args), out))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".build", "collections"))
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(env_extra or {})
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.exists(), run.stdout + run.stderr
    result = json.loads(out.read_text())
    return bool(result.get("failed")), result


def by_name(result):
    return dict((c["name"], c) for c in result["checks"])


# ---------------------------------------------------------------- scrape source (the lab default)

def test_healthy_release_passes(tmp_path, procs, traffic):
    targets = start_apps(procs, range(20011, 20015), release(tmp_path, "5.1.0"))
    for port in range(20011, 20015):
        traffic.add(port)
    failed, result = gate(tmp_path, targets=targets, window="3s", interval="1s")
    assert not failed, result["msg"]
    assert result["verdict"] == "pass"
    checks = by_name(result)
    assert checks["error_rate"]["status"] == "pass" and checks["error_rate"]["value"] == 0
    assert checks["success_rate"]["value"] == 1
    assert checks["latency_p95"]["status"] == "pass"
    assert checks["agents_unhealthy"]["value"] == 0
    assert checks["critical_alerts"]["status"] == "skipped"


def test_ten_percent_errors_fail_on_error_rate(tmp_path, procs, traffic):
    targets = start_apps(procs, range(20021, 20025), release(tmp_path, "5.1.1", error_ratio=0.1))
    for port in range(20021, 20025):
        traffic.add(port, per_port=3)
    failed, result = gate(tmp_path, targets=targets, window="4s", interval="1s")
    assert failed
    assert result["verdict"] == "fail"
    checks = by_name(result)
    assert checks["error_rate"]["status"] == "fail"
    assert 0.05 < checks["error_rate"]["value"] < 0.2
    assert "error_rate" in result["msg"] and "> 0.05" in result["msg"]
    assert "\n" not in result["msg"]
    assert checks["agents_unhealthy"]["status"] == "pass"  # full per-check results still returned


def test_latency_fails_on_p95_against_measured_baseline(tmp_path, procs, traffic):
    ports = range(20031, 20033)
    targets = start_apps(procs, ports, release(tmp_path, "5.1.0"))
    for port in ports:
        traffic.add(port)
    failed, measured = gate(tmp_path, mode="baseline", targets=targets, window="3s", interval="1s")
    assert not failed, measured["msg"]
    baseline = measured["baseline"]
    assert 0 < baseline["latency_p95"] < 0.05
    # deploy a slower release on the same ports
    for port in ports:
        procs.stop("app%d" % port)
    start_apps(procs, ports, release(tmp_path, "5.2.0", latency_ms=150))
    failed, result = gate(tmp_path, targets=targets, baseline=baseline, checks=["latency_p95"], window="3s",
                          interval="1s")
    assert failed
    check = by_name(result)["latency_p95"]
    assert check["status"] == "fail"
    assert check["value"] > 0.1
    assert check["effective_threshold"] < check["threshold"]  # judged on the baseline, not the 1 s bound
    assert "latency_p95" in result["msg"]


def test_canary_compare_mode_flags_slow_canary(tmp_path, procs, traffic):
    base = start_apps(procs, range(20041, 20043), release(tmp_path, "5.1.0"))
    canary = start_apps(procs, range(20043, 20045), release(tmp_path, "5.2.0", latency_ms=120))
    for port in range(20041, 20045):
        traffic.add(port)
    failed, result = gate(tmp_path, mode="compare", targets=canary, baseline_targets=base,
                          checks=["latency_p95", "error_rate"], window="2s", interval="1s", duration="7s",
                          fail_fast=False, judge_min_samples=5)
    assert failed
    checks = by_name(result)
    assert checks["latency_p95"]["status"] == "fail"
    assert checks["error_rate"]["status"] == "pass"
    latency = [m for m in result["judge"]["metrics"] if m["metric"] == "latency"][0]
    assert latency["result"] == "fail" and latency["p_value"] < 0.05
    assert result["baseline"]["latency_p95"] < 0.05


def test_batch_profile_fails_a_three_percent_error_release(tmp_path, procs, traffic):
    # issue 9: a 1-4 % error release must stop at the first batch (the rollback trigger of 5 % lets it through)
    ports = range(20051, 20055)
    targets = start_apps(procs, ports, release(tmp_path, "5.1.2", error_ratio=0.03))
    for port in ports:
        traffic.add(port, per_port=3)
    failed, result = gate(tmp_path, targets=targets, profile="batch", checks=["error_rate", "latency_p95"],
                          window="4s", interval="1s")
    assert failed and result["verdict"] == "fail", result["msg"]
    check = by_name(result)["error_rate"]
    assert check["status"] == "fail" and check["threshold"] == 0.01 and 0.01 < check["value"] < 0.05
    assert by_name(result)["latency_p95"]["status"] == "pass"


# ---------------------------------------------------------------- agents rule

@pytest.mark.parametrize("count,expect_fail", [(4, True), (20, False)])
def test_one_agent_down(tmp_path, procs, count, expect_fail):
    ports = list(range(20101, 20101 + count))
    targets = start_apps(procs, ports, release(tmp_path, "5.1.0"))
    procs.stop("app%d" % ports[-1])
    failed, result = gate(tmp_path, targets=targets, checks=["agents_unhealthy"])
    check = by_name(result)["agents_unhealthy"]
    assert check["value"] == pytest.approx(1.0 / count)
    assert failed is expect_fail
    assert result["verdict"] == ("fail" if expect_fail else "pass")


# ---------------------------------------------------------------- prometheus + alertmanager

PROM_PORT, AM_PORT = 20291, 20290
AM = "http://127.0.0.1:%d" % AM_PORT
PROM = "http://127.0.0.1:%d" % PROM_PORT


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory):
    if not shutil.which("prometheus") or not shutil.which("prometheus-alertmanager"):
        pytest.skip("prometheus / prometheus-alertmanager not installed")
    tmp = tmp_path_factory.mktemp("monitoring")
    manager = Procs(str(tmp))
    load = Traffic()
    try:
        rel = release(tmp, "5.1.0")
        ports = list(range(20201, 20205))
        targets = start_apps(manager, ports, rel)
        for port in ports:
            load.add(port)
        (tmp / "am.yml").write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
        manager.start("alertmanager", ["prometheus-alertmanager", "--config.file", str(tmp / "am.yml"),
                                       "--storage.path", str(tmp / "am-data"),
                                       "--web.listen-address", "127.0.0.1:%d" % AM_PORT, "--cluster.listen-address="])
        wait_http(AM + "/-/ready", timeout=20)
        (tmp / "prom.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:%d']\n"
            "scrape_configs:\n  - job_name: meshapp\n    static_configs:\n      - targets: [%s]\n"
            % (AM_PORT, ", ".join("'127.0.0.1:%d'" % p for p in ports)))
        manager.start("prometheus", ["prometheus", "--config.file", str(tmp / "prom.yml"),
                                     "--storage.tsdb.path", str(tmp / "prom-data"),
                                     "--web.listen-address", "127.0.0.1:%d" % PROM_PORT])
        wait_http(PROM + "/-/ready", timeout=30)
        query = "sum(rate(meshapp_requests_total[5s]))"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(PROM + "/api/v1/query?" + urllib.parse.urlencode({"query": query})) as resp:
                data = json.loads(resp.read())["data"]["result"]
            with urllib.request.urlopen(PROM + "/api/v1/query?query=count(up%3D%3D1)") as resp:
                up = json.loads(resp.read())["data"]["result"]
            if data and up and float(up[0]["value"][1]) == len(ports) and float(data[0]["value"][1]) > 0:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("prometheus has no meshapp data after 30s")
        yield {"manager": manager, "targets": targets, "tmp": tmp}
    finally:
        load.stop()
        manager.stop_all()


def prom_args(monitoring, **extra):
    args = dict(source="prometheus", prometheus_url=PROM, alertmanager_url=AM, agents_source="prometheus",
                targets=monitoring["targets"], window="5s")
    args.update(extra)
    return args


def post_json(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


def test_prometheus_healthy_release_passes(tmp_path, monitoring):
    failed, result = gate(tmp_path, **prom_args(monitoring))
    assert not failed, result["msg"]
    checks = by_name(result)
    for name in ("error_rate", "success_rate", "latency_p95", "critical_alerts", "agents_unhealthy", "cpu_usage",
                 "memory_usage", "health_checks"):
        assert checks[name]["status"] == "pass", (name, checks[name])
    assert checks["success_rate"]["value"] == 1


def test_critical_alert_fails_and_silenced_alert_passes(tmp_path, monitoring):
    labels = {"alertname": "MeshHighErrors", "severity": "critical", "service": "meshapp-hg"}
    post_json(AM + "/api/v2/alerts", [{"labels": labels, "annotations": {"summary": "test"}}])
    failed, result = gate(tmp_path, **prom_args(monitoring, checks=["critical_alerts"]))
    assert failed
    assert "MeshHighErrors" in result["msg"]
    assert by_name(result)["critical_alerts"]["value"] == 1
    # a warning with the same matchers is not critical: ignored
    now = time.time()
    post_json(AM + "/api/v2/silences", {
        "matchers": [{"name": "service", "value": "meshapp-hg", "isRegex": False}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        "createdBy": "health_gate tests", "comment": "silence the test alert"})
    failed, result = gate(tmp_path, **prom_args(monitoring, checks=["critical_alerts"]))
    assert not failed, result["msg"]
    assert by_name(result)["critical_alerts"]["value"] == 0


def prom_query_count():
    """Instant queries Prometheus has answered so far (its own counter)."""
    with urllib.request.urlopen(PROM + "/metrics", timeout=2) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_prometheus_stopped_mid_gate_is_inconclusive_not_pass(tmp_path, monitoring):
    # issue 16: samples taken before Prometheus stopped must not make a pass; credentials stay out of the output
    before = prom_query_count()
    outcome = {}
    secret_url = PROM.replace("http://", "http://gate:s3cr3t-pw@")
    runner = threading.Thread(target=lambda: outcome.update(result=gate(
        tmp_path, env_extra={"ANSIBLE_INJECT_INVOCATION": "true"},
        **prom_args(monitoring, prometheus_url=secret_url, checks=["error_rate", "latency_p95"], duration="12s",
                    interval="1s"))))
    runner.start()
    deadline = time.monotonic() + 60
    while prom_query_count() < before + 4 and time.monotonic() < deadline:  # the gate's first round answered
        time.sleep(0.2)
    time.sleep(2)
    monitoring["manager"].stop("prometheus")
    runner.join(timeout=120)
    failed, result = outcome["result"]
    assert failed and result["verdict"] == "inconclusive", result["msg"]
    checks = by_name(result)
    for name in ("error_rate", "latency_p95"):
        assert checks[name]["status"] == "inconclusive"
        assert checks[name]["samples"] >= 1  # it had measured before the stop: exactly the old fail-open case
        assert "failed at the last poll" in checks[name]["reason"]
    assert "unreachable" in result["msg"] and "\n" not in result["msg"]
    dump = json.dumps(result)
    assert "prometheus_url" in dump  # the injected invocation is there, its credentials masked
    assert "s3cr3t-pw" not in dump and "********" in result["msg"]


def test_prometheus_stopped_is_inconclusive_and_fails_closed(tmp_path, monitoring):
    monitoring["manager"].stop("prometheus")
    failed, result = gate(tmp_path, **prom_args(monitoring, checks=["error_rate", "latency_p95"]))
    assert failed
    assert result["verdict"] == "inconclusive"
    assert "fails closed" in result["msg"] and "unreachable" in result["msg"]
    assert "\n" not in result["msg"]
    failed, result = gate(tmp_path, **prom_args(monitoring, checks=["error_rate"], on_inconclusive="warn"))
    assert not failed
    assert result["verdict"] == "inconclusive"


def test_alertmanager_down_at_start_with_alerts_required_fails(tmp_path, monitoring):
    monitoring["manager"].stop("alertmanager")
    args = dict(targets=monitoring["targets"], alertmanager_url=AM, on_inconclusive="warn")
    # without alerts_required, warn lets an unread Alertmanager through as a warning (the existing semantics)...
    failed, result = gate(tmp_path, checks=["critical_alerts"], **args)
    assert not failed and result["verdict"] == "inconclusive"
    assert by_name(result)["critical_alerts"]["status"] == "inconclusive"
    # ...with it the alerts check runs although the caller left it out, and its outage fails the gate
    failed, result = gate(tmp_path, alerts_required=True, checks=["agents_unhealthy"], **args)
    assert failed and result["verdict"] == "fail"
    assert "critical_alerts inconclusive and alerts_required" in result["msg"]
