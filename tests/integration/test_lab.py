# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab against real processes: meshapp instances, HAProxy, Prometheus, Alertmanager, all on 127.0.0.1."""

from __future__ import annotations

import collections
import io
import json
import os
import tarfile
import threading

import pytest

from conftest import http_get, pid_alive, start_lab, stop_lab, wait_for

TRAFFIC = 200
LABCTL_PORTS = (18700, 18799)  # labctl's direct tests, inside the lab range, away from the defaults
TEARDOWN_PORTS = {"app_port_base": 18580, "haproxy": 18580, "stats": 18604, "prometheus": 19590, "alertmanager": 19593}


# ------------------------------------------------------------------ the session lab (default ports)

def _traffic_total(lab):
    result = lab.prometheus_query('sum(meshapp_requests_total{job="meshapp",path="/"})')
    return float(result[0]["value"][1]) if result else 0.0


def _served_total(lab):
    """Ground truth: the instances' own counters of requests to /."""
    total = 0
    for _name, port in lab.instances:
        for line in http_get("http://127.0.0.1:%d/metrics" % port)[1].splitlines():
            if line.startswith('meshapp_requests_total{path="/",'):
                total += int(line.rsplit(" ", 1)[1])
    return total


def test_traffic_through_haproxy_reaches_every_instance_and_prometheus(lab):
    before = _served_total(lab)
    seen = collections.Counter()
    for _request in range(TRAFFIC):
        status, body = http_get(lab.haproxy_url + "/")
        assert status == 200, body
        seen[json.loads(body)["instance"]] += 1
    assert sorted(seen) == [name for name, _port in lab.instances]
    assert sum(seen.values()) == TRAFFIC
    # Prometheus scrapes every second: the summed counter must grow by exactly the traffic we sent
    assert _served_total(lab) - before == TRAFFIC
    wait_for(lambda: _traffic_total(lab) == before + TRAFFIC, timeout=30,
             what="Prometheus to count the %d requests" % TRAFFIC)
    per_instance = lab.prometheus_query('sum by (app_instance) (meshapp_requests_total{job="meshapp",path="/"})')
    assert {item["metric"]["app_instance"] for item in per_instance} == {name for name, _port in lab.instances}


def test_instance_status_and_metrics(lab):
    name, port = lab.instances[0]
    status, body = http_get("http://127.0.0.1:%d/status" % port)
    assert status == 200
    info = json.loads(body)
    assert (info["version"], info["instance"], info["ready"]) == ("5.0.0", name, True)
    assert info["release_dir"] == str(lab.root / "hosts" / name / "releases" / "5.0.0")
    assert os.readlink(lab.root / "hosts" / name / "current") == "releases/5.0.0"
    status, metrics = http_get("http://127.0.0.1:%d/metrics" % port)
    assert status == 200
    assert 'meshapp_build_info{version="5.0.0",instance="%s"} 1' % name in metrics
    for metric in ("meshapp_requests_total{", "meshapp_request_duration_seconds_bucket{", "meshapp_up_seconds ",
                   "process_cpu_seconds_total ", "process_resident_memory_bytes "):
        assert metric in metrics
    for path in ("/health", "/ready"):
        assert http_get("http://127.0.0.1:%d%s" % (port, path))[0] == 200


def test_haproxy_runtime_api_and_backends(lab):
    assert oct(os.stat(lab.socket).st_mode & 0o777) == "0o600"
    assert "active be_app" in lab.haproxy_command("show map %s" % (lab.root / "haproxy" / "route.map"))
    stat = lab.haproxy_command("show stat").splitlines()
    status = {tuple(line.split(",")[:2]): line.split(",")[17] for line in stat if line and not line.startswith("#")}
    for name, _port in lab.instances:
        assert status[("be_app", name)] == "UP"
    assert ("be_blue", "BACKEND") in status and ("be_green", "BACKEND") in status
    status_code, _body = http_get(lab.stats_url)
    assert status_code == 200


def test_prometheus_rules_and_alertmanager(lab):
    status, body = http_get(lab.prometheus_url + "/api/v1/rules")
    assert status == 200
    rules = {rule["name"]: rule for group in json.loads(body)["data"]["groups"] for rule in group["rules"]}
    assert rules["MeshappHighErrorRate"]["labels"]["severity"] == "critical"
    assert any(rule["labels"].get("severity") == "warning" for rule in rules.values())

    def alertmanagers():
        return json.loads(http_get(lab.prometheus_url + "/api/v1/alertmanagers")[1])["data"]["activeAlertmanagers"]
    managers = wait_for(alertmanagers, timeout=30, what="Prometheus to discover Alertmanager")
    assert [m["url"] for m in managers] == [lab.alertmanager_url + "/api/v2/alerts"]
    assert http_get(lab.alertmanager_url + "/api/v2/status")[0] == 200
    expected = [(name, "1") for name, _port in lab.instances]

    def targets_up():
        return sorted((t["metric"]["app_instance"], t["value"][1]) for t in lab.prometheus_query('up{job="meshapp"}'))
    wait_for(lambda: targets_up() == expected, timeout=30, what="every meshapp target up in Prometheus")


def test_lab_up_is_idempotent(lab, run_playbook):
    assert lab.up_run.changed > 0
    pids = lab.pids()
    again = run_playbook("playbooks/lab_up.yml", lab.extra_vars)
    assert again.changed == 0, again.output[-3000:]
    assert lab.pids() == pids


def test_haproxy_config_change_reloads_without_failed_requests(lab, run_playbook):
    old = lab.pids()["haproxy"]
    codes = []
    done = threading.Event()

    def traffic():
        while not done.is_set():
            try:
                codes.append(http_get(lab.haproxy_url + "/", timeout=5)[0])
            except OSError as exc:
                codes.append(repr(exc))

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        lab.extra_vars = dict(lab.extra_vars, lab_haproxy_hard_stop_after="7s")
        run = run_playbook("playbooks/lab_up.yml", lab.extra_vars)
    finally:
        done.set()
        sender.join(10)
    assert run.changed == 2, run.output[-3000:]  # the rendered config and the graceful reload
    new = lab.pids()["haproxy"]
    assert new != old and not pid_alive(old)
    assert codes and set(codes) == {200}, collections.Counter(codes)
    assert "hard-stop-after 7s" in (lab.root / "haproxy" / "haproxy.cfg").read_text()


# ------------------------------------------------------------------ teardown (its own small lab, other ports)

def test_teardown_stops_every_process_it_started(tmp_path):
    root = tmp_path / "lab"
    small = None
    try:
        small = start_lab(root, TEARDOWN_PORTS, instances=2)
        pids = small.pids()
        assert set(pids) == {"app1", "app2", "haproxy", "prometheus", "alertmanager"}
        assert all(pid_alive(pid) for pid in pids.values())
        down = stop_lab(root, small.extra_vars)
        assert down.rc == 0 and down.changed > 0, down.output[-3000:]
        assert not [name for name, pid in pids.items() if pid_alive(pid)]
        assert small.pids() == {}
        assert stop_lab(root, small.extra_vars).changed == 0  # nothing left to stop
    finally:
        if small is None or small.pids():
            stop_lab(root, {"lab_root": str(root)})


# ------------------------------------------------------------------ labctl directly

def test_labctl_artifact_carries_the_fault_profile(lab_processes):
    first = lab_processes.artifact("5.1.0", error_ratio=0.25, latency_ms=40, health_fail=True, crash_on_start=True)
    assert first["changed"] is True
    with tarfile.open(first["path"]) as tar:
        assert sorted(tar.getnames()) == ["meshapp.py", "release.json"]
        release = json.load(io.TextIOWrapper(tar.extractfile("release.json")))
    assert release == {"version": "5.1.0", "fault": {"error_ratio": 0.25, "latency_ms": 40, "health_fail": True,
                                                     "crash_on_start": True}}
    again = lab_processes.artifact("5.1.0", error_ratio=0.25, latency_ms=40, health_fail=True, crash_on_start=True)
    assert (again["changed"], again["sha256"]) == (False, first["sha256"])


def test_labctl_install_restart_keeps_port_and_switches_release(lab_processes, free_port, labctl):
    port = free_port(*LABCTL_PORTS)
    lab_processes.artifact("5.0.0")
    lab_processes.artifact("5.1.0", error_ratio=1.0)
    assert lab_processes.install("app1", "5.0.0")["changed"] is True
    assert lab_processes.install("app1", "5.0.0")["changed"] is False
    started = lab_processes.instance_start("app1", port)
    assert started["changed"] is True
    assert lab_processes.instance_start("app1", port)["changed"] is False  # idempotent: same pid, same argv
    assert json.loads(http_get("http://127.0.0.1:%d/status" % port)[1])["version"] == "5.0.0"

    assert lab_processes.install("app1", "5.1.0")["current"] == "5.1.0"
    restarted = lab_processes.instance_restart("app1")
    assert (restarted["port"], restarted["old_pid"]) == (port, started["pid"])
    assert restarted["pid"] != started["pid"] and not pid_alive(started["pid"])
    info = json.loads(http_get("http://127.0.0.1:%d/status" % port)[1])
    assert (info["version"], info["pid"], info["fault"]["error_ratio"]) == ("5.1.0", restarted["pid"], 1.0)
    assert http_get("http://127.0.0.1:%d/" % port)[0] == 500  # the fault profile is live

    stopped = lab_processes.instance_stop("app1")
    assert (stopped["changed"], stopped["pid"]) == (True, restarted["pid"])
    assert not pid_alive(restarted["pid"])
    assert lab_processes.instance_stop("app1")["changed"] is False


def test_labctl_crash_on_start_is_a_one_line_error(lab_processes, free_port):
    port = free_port(*LABCTL_PORTS)
    lab_processes.artifact("5.2.0", crash_on_start=True)
    lab_processes.install("app1", "5.2.0")
    result = lab_processes.instance_start("app1", port, check=False)
    assert result["_rc"] == 1 and result["failed"] is True
    assert "exited with code 3" in result["msg"]
    assert len(result["_stderr"].strip().splitlines()) == 1
    assert "app1" not in lab_processes.pids()


def test_labctl_stale_pid_file_is_never_signalled(lab_processes, free_port):
    port = free_port(*LABCTL_PORTS)
    lab_processes.artifact("5.0.0")
    lab_processes.install("app1", "5.0.0")
    run = lab_processes.root / "run"
    run.mkdir(parents=True, exist_ok=True)
    # a pid file naming a live process that labctl did not start (this test runner) must not be killed
    (run / "app1.pid").write_text("%d\n" % os.getpid())
    assert lab_processes.instance_stop("app1")["changed"] is False
    assert pid_alive(os.getpid())
    (run / "app1.pid").write_text("%d\n" % os.getpid())
    started = lab_processes.instance_start("app1", port)
    assert started["changed"] is True and started["pid"] != os.getpid()


def test_labctl_proc_start_is_idempotent_and_stop_all_is_exact(lab_processes):
    first = lab_processes.proc_start("sleeper", ["sleep", "300"])
    assert first["changed"] is True
    assert lab_processes.proc_start("sleeper", ["sleep", "300"])["pid"] == first["pid"]
    changed = lab_processes.proc_start("sleeper", ["sleep", "301"])  # new argv: replaced
    assert changed["changed"] is True and not pid_alive(first["pid"])
    status = {p["name"]: p for p in lab_processes.status()["processes"]}
    assert status["sleeper"]["alive"] is True and status["sleeper"]["pid"] == changed["pid"]
    stopped = lab_processes.stop_all()
    assert [s["pid"] for s in stopped["stopped"]] == [changed["pid"]]
    assert not pid_alive(changed["pid"])


@pytest.mark.parametrize("args, expected", [
    (["artifact", "5.x", "--out", "/tmp"], "invalid version '5.x'"),
    (["artifact", "5.1.0", "--out", "/tmp", "--error-ratio", "2"], "invalid --error-ratio 2.0"),
    (["instance-start", "app1", "--port", "0"], "invalid port 0"),
    (["instance-start", "../x", "--port", "18790"], "invalid name '../x'"),
    (["instance-restart", "nothing"], "no recorded port"),
    (["proc-start", "x", "--", "no-such-binary-here"], "command not found"),
])
def test_labctl_bad_input_is_one_line(labctl, tmp_path, args, expected):
    result = labctl(tmp_path, *args, check=False)
    assert result["_rc"] == 1 and expected in result["msg"]
    assert len(result["_stderr"].strip().splitlines()) == 1
    assert not (tmp_path / "run" / "x.pid").exists()
