# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault matrix: each seed rollback trigger injected into each strategy at each stage, at steady-state retention.

A real lab stack (the lab role: HAProxy, meshapp instances, Alertmanager) on ports 26000-26099. The fleet first holds
its 5 retained releases (keep_releases 5: 5.0.0 from the lab, 5.0.4 .. 5.0.6 unpacked by the rollout's install code,
5.0.7 deployed through deploy.yml), so every faulty deploy below adds the release that used to make the backup check
refuse the rollback. Each case deploys a
faulty release through playbooks/deploy.yml (the guarded path: approvals, signature, lock, gates, fleet watch, audit
log, state) under live traffic and asserts that:
  - the deploy fails on the trigger the fault stands for, and the fleet is back on the stable release, every server
    ready at its normal weight;
  - the audit log reads true (deploy started -> failure naming the trigger -> automatic rollback success), every
    entry recorded for the stage's environment, and the chain verifies;
  - the time from the start of the faulty deploy (when the fault enters the fleet) to traffic restored, from the
    audit timestamps, is recorded.

  fault      how it is injected                                  trigger (release playbook)
  errors     release answers 50 % of requests with 500           error rate > 5 % (batch gate: > 1 %)
  latency    release adds 1.5 s to every request                 latency P95 > 1 s / 2x baseline
  health     release fails /health                               health checks failing
  crash      release exits at start                              instance never ready (deploy step fails)
  agents     release's /ready (HAProxy's check) turns 503 some   > 10 % of agents unhealthy (HAProxy server states,
             s after start (AGENTS_FACTOR), /health stays 200     in the fleet watch after the deploy)
  alert      a critical alert for the service fires              any critical alert (Alertmanager API v2)

Stages: the cases form a Latin square (_cases): every fault into every strategy once, and every fault at every stage
once (each strategy twice per stage), 18 deploys where the full product would be 54 and far over the suite's time
budget. The stages differ in the rules deploy.yml applies, which is what they test:
production needs the recorded approvals (business_approval, change_ticket), the artifact's checksum and a signed
manifest or the audited opt-out (-e unsigned_reason, used here: the lab's artifacts are not signed). The three
environments share one lab fleet (one inventory per fleet names the same instances in each stage's group): separate
fleets would repeat the same processes and the steady-state setup three times over the time budget. The colored
fleet keeps its rollout state apart (-e state_dir) from the plain one.

The matrix with its times is printed (pytest -s, or the `-rA` report's captured output) for the closing note.
"""

import datetime
import json
import os
import re
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
STABLE = "5.0.7"
GATE = {"gate_duration": 3, "gate_window": 2, "gate_interval": 1, "gate_on_inconclusive": "fail",
        "gate_alertmanager_url": AM_URL, "initial_traffic": 25, "steps": [50, 100]}
# The agents fault: seconds after its start an instance of the release drops out of HAProxy. It must come after the
# instance's own batch, canary or idle-color gate and the blue-green switch (out of traffic there, the gate would fail
# as inconclusive, not as an agent down), so the release passes every per-instance check and only the fleet-wide
# agents ratio of the watch sees it. These steps take longer on a busy machine, so the delay is a multiple of the
# measured duration of the steady-state deploys (a rolling deploy of one batch, a blue-green deploy): an instance's
# own rolling batch gate is shorter than a whole one-batch deploy, a canary runs two gates alone before the others
# join, and a blue-green deploy's switch and live gate may run slower than the steady-state one (CI saw it drop out
# before the switch at 1x).
AGENTS_FACTOR = {"rolling": 1.0, "canary": 2.0, "blue-green": 2.0}
FAULTS = {
    "errors": ["--error-ratio", "0.5"],
    "latency": ["--latency-ms", "1500"],
    "health": ["--health-fail"],
    "crash": ["--crash-on-start"],
    "agents": None,  # --unready-after Stack.agents_after[strategy]
    "alert": [],
}
# What the failure recorded in the audit log must name: the health_gate check, or the deploy step that failed.
TRIGGERS = {
    "errors": ("error_rate", "success_rate"),
    "latency": ("latency_p95",),
    "health": ("health_checks", "not ready", "not UP", "health"),
    "crash": ("exited", "not ready", "not UP", "does not listen", "restart"),
    "agents": ("agents_unhealthy",),
    "alert": ("critical_alerts",),
}
CHECK_NAMES = ("agents_unhealthy", "critical_alerts", "error_rate", "success_rate", "latency_p95", "health_checks",
               "cpu_usage", "memory_usage")
STRATEGIES = ["rolling", "canary", "blue-green"]
STAGES = ["development", "staging", "production"]


def _cases():
    """A Latin square over (fault, strategy, stage): every fault into every strategy once, every fault at every stage
    once, every strategy at every stage twice; 18 cases instead of the 54 of the full product (the time budget).
    The stages with the most rules first."""
    cases = []
    for shift, stage in enumerate(["staging", "production", "development"]):
        cases += [(stage, STRATEGIES[(i + shift) % 3], fault) for i, fault in enumerate(FAULTS)]
    return cases


CASES = _cases()
APPROVALS = {"approvals": {
    "business_approval": {"by": "carol", "role": "product owner", "at": "2026-12-01T10:00:00Z", "ref": "BIZ-FM"},
    "change_ticket": {"by": "dave", "role": "change manager", "at": "2026-12-01T10:05:00Z", "ref": "CHG-FM"}}}
UNSIGNED = "fault matrix: lab artifacts are not signed"
RESULTS = []


class Stack:
    def __init__(self, root):
        self.root = str(root)
        self.lab_root = os.path.join(self.root, "lab")
        # one inventory per fleet, each naming its instances in every stage's group; both beside each other, so they
        # share release_work_dir (the audit log and release state)
        self.inventories = {"app": os.path.join(self.root, "inventory.yml"),
                            "colors": os.path.join(self.root, "inventory-colors.yml")}
        self.state_dirs = {"app": os.path.join(self.lab_root, "state"),
                           "colors": os.path.join(self.lab_root, "state-colors")}
        self.artifacts = os.path.join(self.lab_root, "artifacts")
        self.socket = os.path.join(self.lab_root, "haproxy", "admin.sock")
        self.route_map = os.path.join(self.lab_root, "haproxy", "route.map")
        self.audit = os.path.join(self.root, "release", "audit.jsonl")
        self.extra = lab_vars(self.lab_root, BASE, BASE, STATS, PROMETHEUS, ALERTMANAGER, len(APP))
        self.extra.update({"lab_stacks": [], "lab_prometheus_enabled": False, "lab_alertmanager_enabled": True,
                           "lab_haproxy_blue_servers": [{"name": "blue1", "port": COLORS[0][1]}],
                           "lab_haproxy_green_servers": [{"name": "green1", "port": COLORS[1][1]}]})
        self.counter = 0
        self.live_color = None
        self.agents_after = {}  # strategy -> seconds (the agents fault), from the steady-state deploys
        # the fleet watch after every guarded deploy stops at its first failing check: only a release that passes
        # the batch and canary gates (the agents fault) spends time in it
        self.watch_seconds = 60

    def playbook(self, name, extra=None, check=True, fleet="app"):
        return run_playbook("playbooks/" + name, extra or {}, check=check, inventory=self.inventories[fleet],
                            timeout=400)

    def deploy(self, stage, strategy, version, artifact, check=True, watch=None, **extra):
        fleet = "colors" if strategy == "blue-green" else "app"
        args = dict(GATE, env=stage, version=version, strategy=strategy, artifact=artifact["path"],
                    state_dir=self.state_dirs[fleet], watch_seconds=self.watch_seconds if watch is None else watch)
        if stage == "production":
            # the approvals as an operator gives them: a file
            approvals_file = os.path.join(self.root, "approvals.json")
            if not os.path.exists(approvals_file):
                with open(approvals_file, "w") as handle:
                    json.dump(APPROVALS, handle)
            args.update(approvals_file=approvals_file, checksum="sha256:" + artifact["sha256"],
                        unsigned_reason=UNSIGNED)
        args.update(extra)
        return self.playbook("deploy.yml", args, check=check, fleet=fleet)

    def artifact(self, version, flags=()):
        return run_labctl(None, "artifact", version, "--out", self.artifacts, *flags)

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
                out[(cells["pxname"], cells["svname"])] = (cells["status"], cells["weight"])
        return out

    def audit_entries(self):
        with open(self.audit) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def routed(self):
        """The backend HAProxy's route map sends traffic to now."""
        for line in haproxy_command(self.socket, "show map %s" % self.route_map).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "active":
                return parts[2]
        return None

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


def _print_matrix(lab):
    print("\nagents fault: instances drop out %s s after start; fleet watch %d s (stops at the first failure)"
          % (lab.agents_after, lab.watch_seconds))
    print("\nfault matrix (steady-state retention 5; times from the audit log, from the start of the faulty deploy):")
    print("%-7s %-10s %-11s %-12s %8s %9s  %-16s %s" % ("fault", "strategy", "stage", "rolled back", "detected",
                                                        "restored", "trigger", "load failed/requests"))
    order = dict((name, i) for i, name in enumerate(list(FAULTS) + STRATEGIES + STAGES))
    for row in sorted(RESULTS, key=lambda r: (order[r[0]], order[r[1]], order[r[2]])):
        print("%-7s %-10s %-11s %-12s %7.0fs %8.0fs  %-16s %s" % row)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    wanted = [BASE, STATS, ALERTMANAGER] + [p for _n, p in APP] + [p for _n, p, _c in COLORS]
    busy = [port for port in wanted if not port_is_free(port)]
    if busy:
        pytest.fail("ports already in use on 127.0.0.1: %s" % busy)
    lab = Stack(tmp_path_factory.mktemp("faultmatrix"))
    write_env_inventory(lab.inventories["app"], dict((stage, (lab.lab_root, APP)) for stage in STAGES))
    write_env_inventory(lab.inventories["colors"], dict((stage, (lab.lab_root, COLORS)) for stage in STAGES))
    os.makedirs(lab.state_dirs["colors"], exist_ok=True)
    try:
        lab.playbook("lab_up.yml", lab.extra)
        initial = os.path.join(lab.artifacts, "meshapp-5.0.0.tar.gz")
        for name, port, _color in COLORS:  # the lab role renders the colored servers but does not run them
            run_labctl(lab.lab_root, "install", name, "5.0.0", "--artifact", initial, "--activate")
            run_labctl(lab.lab_root, "instance-start", name, "--port", port, "--wait-ready", 15)
        # steady state: every host holds its 5 retained releases (keep_releases 5): the lab's 5.0.0, 5.0.4 .. 5.0.6
        # unpacked by the rollout's own install code (as a deploy leaves them), and 5.0.7 deployed through deploy.yml
        # (green1 also 5.0.3: it stays idle on 5.0.6 and never gets 5.0.7)
        for version in ("5.0.3", "5.0.4", "5.0.5", "5.0.6"):
            path = lab.artifact(version)["path"]
            for name in ([n for n, _p in APP] + ["blue1"] if version != "5.0.3" else []) + ["green1"]:
                h.install_release(os.path.join(lab.lab_root, "hosts", name), version, path)
        # the colored fleet: 5.0.6 live on green, then 5.0.7 deployed blue-green (live on blue, 5.0.6 idle on green)
        h.switch_current(os.path.join(lab.lab_root, "hosts", "green1"), "5.0.6")
        run_labctl(lab.lab_root, "instance-restart", "green1", "--wait-ready", 15)
        # (under traffic: the gates fail closed without requests to judge; no watch: nothing is wrong with these)
        lab.route("be_green")
        with h.Load(BASE, threads=2):
            lab.deploy("development", "blue-green", STABLE, lab.artifact(STABLE), watch=0, gate_alertmanager_url="")
        lab.route("be_app")
        with h.Load(BASE, threads=2):
            lab.deploy("development", "rolling", STABLE, lab.artifact(STABLE), watch=0, batch_size="100%",
                       gate_alertmanager_url="")
        lab.live_color = "blue"
        took = dict((e["strategy"], float(e["duration"])) for e in lab.audit_entries() if e["result"] == "success")
        for strategy, factor in AGENTS_FACTOR.items():
            measured = took["blue-green" if strategy == "blue-green" else "rolling"]
            lab.agents_after[strategy] = round(max(10.0, factor * measured))
        lab.watch_seconds = int(max(60, 2 * max(lab.agents_after.values())))
        for name in [n for n, _p in APP] + [n for n, _p, _c in COLORS]:
            releases = sorted(n for n in os.listdir(os.path.join(lab.lab_root, "hosts", name, "releases"))
                              if not n.startswith("."))
            assert len(releases) == 5 and "5.0.6" in releases, (name, releases)
        yield lab
    finally:
        stop_lab(lab.lab_root, lab.extra)
        if RESULTS:
            _print_matrix(lab)


def _ts(entry):
    return datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%SZ").timestamp()


def _trigger(failure):
    """The check (or the deploy step) the recorded failure names."""
    reason = failure["details"].get("reason") or ""
    for name in CHECK_NAMES:
        if re.search(r"\b%s\b" % name, reason):
            return name
    return "step: " + (failure["details"].get("failed_task") or "?")[:40]


@pytest.mark.parametrize("stage, strategy, fault", [pytest.param(*case, id="-".join(case)) for case in CASES])
def test_fault_is_rolled_back(stack, stage, strategy, fault):
    fleet = COLORS if strategy == "blue-green" else APP
    stack.counter += 1
    version = "5.1.%d" % stack.counter
    flags = FAULTS[fault] if fault != "agents" else ["--unready-after", str(stack.agents_after[strategy])]
    artifact = stack.artifact(version, flags)
    before = len(stack.audit_entries())
    alert = "FaultMatrix%d" % stack.counter
    stack.route("be_" + stack.live_color if strategy == "blue-green" else "be_app")
    if fault == "alert":
        post_alert(alert)
    try:
        # (a short pause per request: the gates need traffic, not a load generator taking a core from the rollout)
        with h.Load(BASE, threads=4, pause=0.005) as load:
            time.sleep(0.5)
            run = stack.deploy(stage, strategy, version, artifact, check=False)
            time.sleep(0.5)
    finally:
        if fault == "alert":
            resolve_alert(alert)
        if strategy == "blue-green" and stack.routed() in ("be_blue", "be_green"):
            stack.live_color = stack.routed()[len("be_"):]
    assert run.rc != 0, "the faulty deploy passed:\n" + run.output[-3000:]
    assert "rolled back to %s" % STABLE in run.output, run.output[-3000:]
    # the fleet is on one version and every server takes traffic at its normal weight
    servers = stack.servers()
    if strategy == "blue-green":
        status, body = http_get("http://127.0.0.1:%d/status" % BASE)
        assert status == 200 and json.loads(body)["version"] == STABLE
        live = [name for name, _p, color in COLORS if color == stack.live_color]
        assert all(servers[("be_" + stack.live_color, name)][0] == "UP" for name in live), servers
    else:
        assert stack.versions(fleet) == dict.fromkeys([item[0] for item in fleet], STABLE)
        assert all(servers[("be_app", name)][0] == "UP" for name, _p in APP), servers
        assert len(set(servers[("be_app", name)][1] for name, _p in APP)) == 1, servers
    # the audit trail reads true: every entry is the stage's; started, failure on the fault's trigger, automatic
    # rollback success (production: after the recorded signature opt-out); the chain verifies at the end
    entries = stack.audit_entries()[before:]
    assert [e["environment"] for e in entries] == [stage] * len(entries), entries
    if stage == "production":
        opt_out = [e for e in entries if e["action"] == "signature_opt_out"]
        assert len(opt_out) == 1 and opt_out[0]["details"]["reason"] == UNSIGNED, entries
        assert not [e for e in entries if e["action"] == "break_glass"], entries
    trail = [(e["action"], e["result"]) for e in entries if e["result"] != "info"]
    assert trail == [("deploy", "started"), ("deploy", "failure"), ("rollback", "success")], trail
    started, failure, rollback = [e for e in entries if e["result"] != "info"]
    assert (started["version"], failure["version"], rollback["version"]) == (version,) * 3
    assert started["strategy"] == failure["strategy"] == strategy
    trigger = _trigger(failure)
    reason = failure["details"].get("reason") or ""
    assert any(word in (trigger + " " + reason) for word in TRIGGERS[fault]), (fault, trigger, reason)
    if fault == "agents":  # only the fleet watch sees it: every per-instance gate passed
        assert trigger == "agents_unhealthy" and "watch" in (failure["details"].get("failed_task") or "").lower(), \
            (failure["details"], run.output[-3000:])
    assert rollback["details"]["automatic"] is True
    # blue-green: the live color is back on (or never left) the stable release, the idle one on what it ran before
    back_to = rollback["details"]["to_version"].split(", ")
    assert STABLE in back_to if strategy == "blue-green" else back_to == [STABLE], back_to
    detected = _ts(failure) - _ts(started)
    restored = _ts(rollback) - _ts(started)  # the rollback entry is written when traffic is restored
    assert restored >= 0
    stats = load.stats()
    RESULTS.append((fault, strategy, stage, "yes", detected, restored, trigger,
                    "%d/%d" % (stats["failures"], stats["requests"])))


def test_audit_trail_of_the_matrix_verifies_and_reports_every_rollback(stack):
    """After the whole matrix: the hash chain verifies and the report counts every rollback it recorded."""
    rollbacks = [e for e in stack.audit_entries() if e["action"] == "rollback" and e["result"] == "success"]
    assert len(rollbacks) >= len(RESULTS)
    for stage in set(row[2] for row in RESULTS):
        assert [e for e in rollbacks if e["environment"] == stage and e["details"]["automatic"]], stage
    report = stack.playbook("report.yml", {"report_audit_log": stack.audit}, check=False)
    assert report.rc == 0, report.output[-2000:]
