# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The troubleshooting runbooks (playbooks/runbooks/*.yml, role meshos.release.runbook) against a REAL lab, ports 24000-24099.

Like test_deploy_lab.py the test writes its own inventory: the play runs on localhost (lab_lb), the environment group
`rbtest` carries lab_root, the HAProxy socket, the restart command and one host per instance (app1..app4, be_app).
The tests run in order on one lab:

  health_checks_failing  app2 is killed; the runbook reports it, with runbook_resolve=true restarts it
  deployment_stuck       a rolling deploy stopped after one batch, 20 minutes old: reported, then resumed (retry)
                         and, for a second one, rolled back (abort)
  rollback_failed        the rollback target of app3 is corrupted: reported, resolution refused and escalated; once
                         repaired, resolve rolls back to the verified version
"""

import datetime
import json
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _hosts_env as h  # noqa: E402
from conftest import (  # noqa: E402
    REPO_ROOT, http_get, lab_vars, port_is_free, run_labctl, run_playbook, stop_lab, write_env_inventory)

BASE = 24000
ENV = "rbtest"
APP = [("app%d" % i, BASE + i) for i in range(1, 5)]
STATS, PROMETHEUS, ALERTMANAGER = BASE + 10, BASE + 30, BASE + 31
# the resume re-runs the gated deploy: short gates, under traffic (they fail closed without requests to judge)
GATE = {"deploy_gate_duration": 3, "deploy_gate_window": 2, "deploy_gate_interval": 1}

# A deploy that stops after max_batches batches (the same targets the runbook playbooks derive).
PARTIAL_DEPLOY = """---
- name: Deploy a part of a release
  hosts: lab_lb
  gather_facts: false
  vars_files:
    - {vars_file}
  tasks:
    - name: Deploy
      meshos.release.rollout_strategy:
        environment: "{{{{ __deploy_common.deploy_environment }}}}"
        state_dir: "{{{{ __deploy_common.deploy_state_dir }}}}"
        haproxy_socket: "{{{{ __deploy_common.deploy_haproxy_socket }}}}"
        route_map: "{{{{ __deploy_common.deploy_route_map }}}}"
        targets: "{{{{ __deploy_common.deploy_targets }}}}"
        strategy: rolling
        version: "{{{{ version }}}}"
        artifact: "{{{{ artifact }}}}"
        max_batches: "{{{{ max_batches | default(0) | int }}}}"
"""


class Lab:
    def __init__(self, root):
        self.root = str(root)
        self.lab_root = os.path.join(self.root, "lab")
        self.inventory = os.path.join(self.root, "inventory.yml")
        self.deploy_playbook = os.path.join(self.root, "partial_deploy.yml")
        self.artifacts = os.path.join(self.lab_root, "artifacts")
        self.extra = lab_vars(self.lab_root, BASE, BASE, STATS, PROMETHEUS, ALERTMANAGER, len(APP))
        self.extra.update({"lab_stacks": [], "lab_prometheus_enabled": False, "lab_alertmanager_enabled": False})

    def write_files(self):
        write_env_inventory(self.inventory, {ENV: (self.lab_root, APP)})
        with open(self.deploy_playbook, "w") as handle:
            handle.write(PARTIAL_DEPLOY.format(vars_file=REPO_ROOT / "playbooks" / "vars" / "deploy_targets.yml"))

    def playbook(self, path, extra=None, check=True):
        return run_playbook(path, extra or {}, check=check, inventory=self.inventory, timeout=900)

    def runbook(self, name, check=True, **extra):
        started = time.time()
        extra.setdefault("runbook_cpu_sample_seconds", 0)  # one CPU sample: the test does not judge CPU
        run = self.playbook("playbooks/runbooks/%s.yml" % name, dict(extra, env=ENV), check=check)
        reports = os.path.join(self.lab_root, "reports")
        found = sorted((os.path.join(reports, f) for f in os.listdir(reports) if f.startswith(name + "-" + ENV + "-")),
                       key=os.path.getmtime) if os.path.isdir(reports) else []
        assert found and os.path.getmtime(found[-1]) >= started - 1, "no report written:\n" + run.output[-3000:]
        with open(found[-1]) as handle:
            return run, handle.read()

    def deploy(self, version, max_batches=0):
        artifact = run_labctl(None, "artifact", version, "--out", self.artifacts)["path"]
        self.playbook(self.deploy_playbook, {"env": ENV, "version": version, "artifact": artifact,
                                             "max_batches": max_batches})
        return artifact

    def health(self, port):
        try:
            return http_get("http://127.0.0.1:%d/health" % port, timeout=2)[0]
        except OSError:
            return -1

    def versions(self):
        out = {}
        for name, port in APP:
            status, body = http_get("http://127.0.0.1:%d/status" % port)
            assert status == 200, body
            out[name] = json.loads(body)["version"]
        return out

    def state_path(self):
        return os.path.join(self.lab_root, "state", "%s.json" % ENV)

    def state(self):
        with open(self.state_path()) as handle:
            return json.load(handle)

    def age_state(self, minutes):
        """Pretend the operation in progress made its last step `minutes` ago."""
        data = self.state()
        stamp = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)
                 ).strftime("%Y-%m-%dT%H:%M:%SZ")
        data["updated"] = stamp
        for step in data["operation"].get("steps") or []:
            step["at"] = stamp
        with open(self.state_path(), "w") as handle:
            json.dump(data, handle)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    wanted = [BASE, STATS] + [port for _name, port in APP]
    busy = [port for port in wanted if not port_is_free(port)]
    if busy:
        pytest.fail("ports already in use on 127.0.0.1: %s" % busy)
    lab = Lab(tmp_path_factory.mktemp("runbooks"))
    lab.write_files()
    pipelining = os.environ.get("ANSIBLE_PIPELINING")
    os.environ["ANSIBLE_PIPELINING"] = "1"  # every task runs locally: no module file copies, a faster run
    try:
        lab.playbook("playbooks/lab_up.yml", lab.extra)
        yield lab
    finally:
        stop_lab(lab.lab_root, lab.extra)
        if pipelining is None:
            os.environ.pop("ANSIBLE_PIPELINING", None)
        else:
            os.environ["ANSIBLE_PIPELINING"] = pipelining


def test_health_checks_failing_restarts_the_unhealthy_instance(lab):
    port = dict(APP)["app2"]
    with open(os.path.join(lab.lab_root, "run", "app2.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab.health(port) != -1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.health(port) == -1

    run, report = lab.runbook("health_checks_failing")
    assert "| critical | health | app2 |" in report
    assert "app2 process is not running" in report
    assert "Result: **problems_found**" in report and "No action taken." in report
    assert "runbook_resolve=true   # restart app2" in report
    assert lab.health(port) == -1, "the runbook restarted an instance without runbook_resolve"

    run, report = lab.runbook("health_checks_failing", runbook_resolve=True)
    assert lab.health(port) == 200
    assert "| restart | app2 | restarted, healthy again |" in report
    assert "Result: **resolved**" in report
    assert all(lab.health(p) == 200 for _name, p in APP)


def test_deployment_stuck_reports_then_resumes(lab):
    artifact = lab.deploy("5.1.0", max_batches=1)
    assert lab.versions() == {"app1": "5.1.0", "app2": "5.0.0", "app3": "5.0.0", "app4": "5.0.0"}
    assert lab.state()["operation"]["status"] == "in_progress"

    lab.age_state(20)
    _run, report = lab.runbook("deployment_stuck")
    assert "| critical | state |" in report and "stuck: more than 10 minutes" in report
    assert "mixed versions" in report and "Recommended:" in report
    assert "-e version=5.1.0" in report and "No action taken." in report
    assert lab.state()["operation"]["status"] == "in_progress"

    with h.Load(BASE, threads=2):
        _run, report = lab.runbook("deployment_stuck", runbook_resolve=True, artifact=artifact, **GATE)
    assert lab.versions() == dict.fromkeys([name for name, _port in APP], "5.1.0")
    state = lab.state()
    assert state["operation"]["status"] == "complete" and state["deployed_version"] == "5.1.0"
    assert "| resume | %s | complete" % ENV in report and "Result: **resolved**" in report


def test_deployment_stuck_abort_rolls_back(lab):
    lab.deploy("5.2.0", max_batches=1)
    assert lab.versions()["app1"] == "5.2.0"
    lab.age_state(15)
    with h.Load(BASE, threads=2):
        _run, report = lab.runbook("deployment_stuck", runbook_resolve=True, runbook_stuck_action="abort", **GATE)
    assert lab.versions() == dict.fromkeys([name for name, _port in APP], "5.1.0")
    assert lab.state()["last_operation"]["kind"] == "rollback"
    assert "| abort | %s | complete" % ENV in report


def test_rollback_failed_verifies_the_backup_escalates_and_rolls_back(lab):
    lab.deploy("5.3.0")
    assert lab.versions() == dict.fromkeys([name for name, _port in APP], "5.3.0")
    assert lab.state()["previous_version"] == "5.1.0"
    backup = os.path.join(lab.lab_root, "hosts", "app3", "releases", "5.1.0", "release.json")
    with open(backup) as handle:
        original = handle.read()
    with open(backup, "a") as handle:
        handle.write("\n")
    try:
        run, report = lab.runbook("rollback_failed", check=False, runbook_resolve=True)
        assert run.rc != 0 and "the resolution failed" in run.output
        assert "FAILED: not attempted, the rollback target is not intact" in report
        assert lab.versions() == dict.fromkeys([name for name, _port in APP], "5.3.0")
        assert "| critical | backup | app3 | rollback target 5.1.0 is NOT intact: release.json sha256" in report
        assert "| info | backup | app1 | rollback target 5.1.0 is intact" in report
        assert "escalate now to Release Manager ops@example.com, On-Call Engineer PagerDuty" in report
        assert "## Emergency contacts" in report and "| Engineering Lead | cto@example.com | 15 minutes |" in report
    finally:
        with open(backup, "w") as handle:
            handle.write(original)

    _run, report = lab.runbook("rollback_failed", runbook_resolve=True)
    assert lab.versions() == dict.fromkeys([name for name, _port in APP], "5.1.0")
    assert "| manual rollback | %s | complete in " % ENV in report
    assert "Result: **resolved**" in report and "escalate now" not in report
