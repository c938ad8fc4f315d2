# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault matrix: each seed rollback trigger injected into each strategy, at steady-state retention.

A real lab stack (the lab role: HAProxy, meshapp instances, Alertmanager) on ports 26000-26099. The fleet first holds
its 5 retained releases (5.0.0 from the lab, deploys of 5.0.4 .. 5.0.7 through deploy.yml, keep_releases 5), so every faulty
deploy below adds the release that used to make the backup check refuse the rollback. Each case deploys a faulty
release through playbooks/deploy.yml (the guarded path: lock, gates, audit log, state) under live traffic and
asserts that:
  - the deploy fails and the fleet is back on the stable release, every server ready at its normal weight;
  - the audit log reads true (deploy started -> failure -> automatic rollback success) and verifies;
  - the time from the start of the faulty deploy to traffic restored (audit timestamps) is recorded.

  fault      how it is injected                                  trigger (release playbook)
  errors     release answers 50 % of requests with 500           error rate > 5 % (batch gate: > 1 %)
  latency    release adds 1.5 s to every request                 latency P95 > 1 s / 2x baseline
  health     release fails /health                               health checks failing
  crash      release exits at start                              instance never ready (deploy step fails)
  alert      a critical alert for the service fires              any critical alert (Alertmanager API v2)

The matrix with its times is printed (pytest -s, or the `-rA` report's captured output) for the closing note.
"""

import datetime
import json
import os
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _hosts_env as h  # noqa: E402
from conftest import (  # noqa: E402
    haproxy_command, http_get, lab_vars, port_is_free, run_labctl, run_playbook, stop_lab, write_env_inventory)

BASE = 26000
APP = [("app%d" % i, BASE + i) for i in range(1, 5)]
COLORS = [("blue1", BASE + 21, "blue"), ("green1", BASE + 22, "green")]
STATS, PROMETHEUS, ALERTMANAGER = BASE + 10, BASE + 30, BASE + 31
AM_URL = "http://127.0.0.1:%d" % ALERTMANAGER
GATE = {"gate_duration": 3, "gate_window": 2, "gate_interval": 1, "gate_on_inconclusive": "fail",
        "gate_alertmanager_url": AM_URL, "initial_traffic": 25, "steps": [50, 100]}
FAULTS = {
    "errors": ["--error-ratio", "0.5"],
    "latency": ["--latency-ms", "1500"],
    "health": ["--health-fail"],
    "crash": ["--crash-on-start"],
    "alert": [],
}
STRATEGIES = ["rolling", "canary", "blue-green"]
RESULTS = []


class Stack:
    def __init__(self, root):
        self.root = str(root)
        self.lab_root = os.path.join(self.root, "lab")
        self.inventory = os.path.join(self.root, "inventory.yml")
        self.artifacts = os.path.join(self.lab_root, "artifacts")
        self.socket = os.path.join(self.lab_root, "haproxy", "admin.sock")
        self.route_map = os.path.join(self.lab_root, "haproxy", "route.map")
        self.audit = os.path.join(self.root, "release", "audit.jsonl")
        self.extra = lab_vars(self.lab_root, BASE, BASE, STATS, PROMETHEUS, ALERTMANAGER, len(APP))
        self.extra.update({"lab_stacks": [], "lab_prometheus_enabled": False, "lab_alertmanager_enabled": True,
                           "lab_haproxy_blue_servers": [{"name": "blue1", "port": COLORS[0][1]}],
                           "lab_haproxy_green_servers": [{"name": "green1", "port": COLORS[1][1]}]})
        self.counter = 0

    def playbook(self, name, extra=None, check=True):
        return run_playbook("playbooks/" + name, extra or {}, check=check, inventory=self.inventory, timeout=400)

    def artifact(self, version, flags=()):
        return run_labctl(None, "artifact", version, "--out", self.artifacts, *flags)["path"]

    def versions(self, instances):
        out = {}
        for item in instances:
            status, body = http_get("http://127.0.0.1:%d/status" % item[1])
            out[item[0]] = json.loads(body)["version"] if status == 200 else "DOWN(%d)" % status
        return out

    def servers(self):
        rows = haproxy_command(self.socket, "show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(",")))
            if cells.get("svname") not in ("FRONTEND", "BACKEND", None, ""):
                out[cells["svname"]] = (cells["status"], cells["weight"])
        return out

    def audit_entries(self):
        with open(self.audit) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def route(self, backend):
        haproxy_command(self.socket, "set map %s active %s" % (self.route_map, backend))
        with open(self.route_map, "w") as handle:
            handle.write("active %s\n" % backend)


def post_alert(name, minutes=15):
    """Fire a critical alert for the released service through Alertmanager's API v2 (ends by itself)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    body = json.dumps([{"labels": {"alertname": name, "severity": "critical", "service": "meshapp"},
                        "annotations": {"summary": "fault matrix"},
                        "startsAt": now.isoformat(),
                        "endsAt": (now + datetime.timedelta(minutes=minutes)).isoformat()}]).encode()
    req = urllib.request.Request(AM_URL + "/api/v2/alerts", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as response:
        assert response.status == 200


def resolve_alert(name):
    post_alert(name, minutes=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    wanted = [BASE, STATS, ALERTMANAGER] + [p for _n, p in APP] + [p for _n, p, _c in COLORS]
    busy = [port for port in wanted if not port_is_free(port)]
    if busy:
        pytest.fail("ports already in use on 127.0.0.1: %s" % busy)
    lab = Stack(tmp_path_factory.mktemp("faultmatrix"))
    write_env_inventory(lab.inventory, {"fm": (lab.lab_root, APP), "fmbg": (lab.lab_root, COLORS)})
    try:
        lab.playbook("lab_up.yml", lab.extra)
        initial = os.path.join(lab.artifacts, "meshapp-5.0.0.tar.gz")
        for name, port, _color in COLORS:  # the lab role renders the colored servers but does not run them
            run_labctl(lab.lab_root, "install", name, "5.0.0", "--artifact", initial, "--activate")
            run_labctl(lab.lab_root, "instance-start", name, "--port", port, "--wait-ready", 15)
        # steady state: every host holds its 5 retained releases (the lab's 5.0.0 and 4 deploys, keep_releases 5)
        # (under traffic: the gates fail closed without requests to judge)
        lab.route("be_app")
        with h.Load(BASE, threads=2):
            for patch in range(4, 8):
                version = "5.0.%d" % patch
                lab.playbook("deploy.yml", dict(GATE, env="fm", version=version, artifact=lab.artifact(version),
                                                batch_size="100%", gate_alertmanager_url=""))
        # the colored fleet: 5.0.6 on one color, 5.0.7 live on the other
        lab.route("be_blue")
        with h.Load(BASE, threads=2):
            for version in ("5.0.6", "5.0.7"):
                lab.playbook("deploy.yml", dict(GATE, env="fmbg", version=version, strategy="blue-green",
                                                artifact=os.path.join(lab.artifacts, "meshapp-%s.tar.gz" % version),
                                                gate_alertmanager_url=""))
        yield lab
    finally:
        stop_lab(lab.lab_root, lab.extra)
        if RESULTS:
            print("\nfault matrix (steady-state retention 5):")
            print("%-10s %-8s %-9s %9s %s" % ("strategy", "fault", "result", "restored", "load failed/requests"))
            for row in RESULTS:
                print("%-10s %-8s %-9s %8.1fs %s" % row)


def _ts(entry):
    return datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%SZ").timestamp()


# strategy is the outer loop (the lower decorator): the colored cases run last, with the route on their color
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fault_is_rolled_back(stack, strategy, fault):
    env, fleet = ("fmbg", COLORS) if strategy == "blue-green" else ("fm", APP)
    stable = "5.0.7"
    stack.counter += 1
    version = "5.1.%d" % stack.counter
    artifact = stack.artifact(version, FAULTS[fault])
    before = len(stack.audit_entries())
    alert = "FaultMatrix%d" % stack.counter
    if strategy == "blue-green":
        with open(os.path.join(stack.lab_root, "state", "fmbg.json")) as handle:
            stack.route("be_" + json.load(handle)["active_color"])
    else:
        stack.route("be_app")
    if fault == "alert":
        post_alert(alert)
    try:
        with h.Load(BASE, threads=4) as load:
            time.sleep(0.5)
            run = stack.playbook("deploy.yml", dict(GATE, env=env, version=version, strategy=strategy,
                                                    artifact=artifact), check=False)
            time.sleep(0.5)
    finally:
        if fault == "alert":
            resolve_alert(alert)
    assert run.rc != 0, "the faulty deploy passed:\n" + run.output[-3000:]
    assert "rolled back to %s" % stable in run.output, run.output[-3000:]
    # the fleet is on one version and every server takes traffic at its normal weight
    if strategy == "blue-green":
        status, body = http_get("http://127.0.0.1:%d/status" % BASE)
        assert status == 200 and json.loads(body)["version"] == stable
    else:
        assert stack.versions(fleet) == dict.fromkeys([item[0] for item in fleet], stable)
        servers = stack.servers()
        assert all(servers[name][0] == "UP" for name, _p in APP), servers
        assert len(set(servers[name][1] for name, _p in APP)) == 1, servers
    # the audit trail reads true: started, failure, automatic rollback success; the chain verifies
    entries = stack.audit_entries()[before:]
    trail = [(e["action"], e["result"]) for e in entries if e["environment"] == env]
    assert trail[:3] == [("deploy", "started"), ("deploy", "failure"), ("rollback", "success")], trail
    rollback = [e for e in entries if e["action"] == "rollback"][0]
    assert rollback["details"]["automatic"] is True
    # blue-green: the live color is back on (or never left) the stable release, the idle one on what it ran before
    back_to = rollback["details"]["to_version"].split(", ")
    assert stable in back_to if strategy == "blue-green" else back_to == [stable], back_to
    restored = _ts(rollback) + float(rollback.get("duration") or 0) - _ts(entries[0])
    stats = load.stats()
    RESULTS.append((strategy, fault, "restored", restored, "%d/%d" % (stats["failures"], stats["requests"])))


def test_audit_trail_of_the_matrix_verifies_and_reports_every_rollback(stack):
    """After the whole matrix: the hash chain verifies and the report counts every rollback it recorded."""
    rollbacks = [e for e in stack.audit_entries() if e["action"] == "rollback" and e["result"] == "success"]
    assert len(rollbacks) >= len(RESULTS)
    report = stack.playbook("report.yml", {"report_audit_log": stack.audit}, check=False)
    assert report.rc == 0, report.output[-2000:]
