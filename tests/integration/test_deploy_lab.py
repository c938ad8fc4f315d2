# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""deploy.yml / rollback.yml / status.yml against a REAL lab (the lab role), ports 21600-21699 (hosts backend range).

The test writes a small inventory that mimics inventories/lab: the play runs on localhost (lab_lb), which has NO
lab_root of its own; the environment groups carry lab_root, lab_haproxy_socket, lab_restart_command and one host per
instance, so the playbooks must derive targets and paths from the environment's hosts.

  itest    app1..app4 (be_app): rolling deploys gated per batch by meshos.release.health_gate
  itestbg  blue1 / green1 (be_blue / be_green): blue-green. The lab role renders these servers from
           lab_haproxy_blue_servers / lab_haproxy_green_servers but does not start their instances nor point the
           route map at a color: the test does both with labctl and the HAProxy runtime API.
"""

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

BASE = 21600
APP = [("app%d" % i, BASE + i) for i in range(1, 5)]
COLORS = [("blue1", BASE + 21, "blue"), ("green1", BASE + 22, "green")]
STATS, PROMETHEUS, ALERTMANAGER = BASE + 10, BASE + 30, BASE + 31
# Short gate for the test: 3 s per batch, error rate over 2 s windows, fail closed without data.
GATE = {"gate_duration": 3, "gate_window": 2, "gate_interval": 1, "gate_on_inconclusive": "fail"}


class Stack:
    def __init__(self, root):
        self.root = str(root)
        self.lab_root = os.path.join(self.root, "lab")
        self.inventory = os.path.join(self.root, "inventory.yml")
        self.artifacts = os.path.join(self.lab_root, "artifacts")
        self.socket = os.path.join(self.lab_root, "haproxy", "admin.sock")
        self.route_map = os.path.join(self.lab_root, "haproxy", "route.map")
        self.extra = lab_vars(self.lab_root, BASE, BASE, STATS, PROMETHEUS, ALERTMANAGER, len(APP))
        self.extra.update({"lab_stacks": [], "lab_prometheus_enabled": False, "lab_alertmanager_enabled": False,
                           "lab_haproxy_blue_servers": [{"name": "blue1", "port": COLORS[0][1]}],
                           "lab_haproxy_green_servers": [{"name": "green1", "port": COLORS[1][1]}]})

    def write_inventory(self):
        write_env_inventory(self.inventory, {"itest": (self.lab_root, APP), "itestbg": (self.lab_root, COLORS)})

    def playbook(self, name, extra=None, check=True):
        return run_playbook("playbooks/" + name, extra or {}, check=check, inventory=self.inventory, timeout=300)

    def artifact(self, version, error_ratio=0.0):
        out = run_labctl(None, "artifact", version, "--out", self.artifacts, "--error-ratio", error_ratio)
        return out["path"]

    def version(self, port):
        status, body = http_get("http://127.0.0.1:%d/status" % port)
        assert status == 200, body
        return json.loads(body)["version"]

    def versions(self, instances):
        return dict((item[0], self.version(item[1])) for item in instances)

    def state(self, env):
        with open(os.path.join(self.lab_root, "state", "%s.json" % env)) as handle:
            return json.load(handle)

    def route(self, backend):
        haproxy_command(self.socket, "set map %s active %s" % (self.route_map, backend))
        with open(self.route_map, "w") as handle:
            handle.write("active %s\n" % backend)

    def frontend_version(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/" % BASE, timeout=5) as response:
            return response.headers.get("X-Meshapp-Version")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    wanted = [BASE, STATS] + [p for _n, p in APP] + [p for _n, p, _c in COLORS]
    busy = [port for port in wanted if not port_is_free(port)]
    if busy:
        pytest.fail("ports already in use on 127.0.0.1: %s" % busy)
    lab = Stack(tmp_path_factory.mktemp("deploylab"))
    lab.write_inventory()
    try:
        lab.playbook("lab_up.yml", lab.extra)
        initial = os.path.join(lab.artifacts, "meshapp-5.0.0.tar.gz")
        for name, port, _color in COLORS:  # the lab role renders the colored servers but does not run them
            run_labctl(lab.lab_root, "install", name, "5.0.0", "--artifact", initial, "--activate")
            run_labctl(lab.lab_root, "instance-start", name, "--port", port, "--wait-ready", 15)
        yield lab
    finally:
        stop_lab(lab.lab_root, lab.extra)


def test_rolling_deploy_gates_every_batch(stack):
    artifact = stack.artifact("5.1.0")
    with h.Load(BASE, threads=4) as load:
        time.sleep(0.5)
        run = stack.playbook("deploy.yml", dict(GATE, env="itest", version="5.1.0", strategy="rolling",
                                                artifact=artifact))
    assert stack.versions(APP) == dict.fromkeys([n for n, _p in APP], "5.1.0")
    # one gate per batch (batch size 1), each conclusive (on_inconclusive=fail)
    assert run.output.count("TASK [meshos.release.deploy : Check the batch with meshos.release.health_gate]") == 4
    # then the whole live fleet is watched (the inventory's release_deploy_watch_seconds: 3)
    assert "TASK [meshos.release.deploy : Watch the fleet after the deploy]" in run.output
    assert load.stats()["failures"] == 0 and load.stats()["requests"] > 100
    # the state lives in the ENVIRONMENT's lab_root (localhost has none of its own)
    state = stack.state("itest")
    assert state["last_operation"]["status"] == "complete" and state["deployed_version"] == "5.1.0"
    status = stack.playbook("status.yml", {"env": "itest"})
    out = status.output.replace('"', "'")
    assert "'app4': '5.1.0'" in out and "'mixed_versions': false" in out.lower()


def test_faulty_release_stops_after_the_first_batch_and_rollback_restores(stack):
    assert stack.versions(APP) == dict.fromkeys([n for n, _p in APP], "5.1.0")
    artifact = stack.artifact("5.2.0", error_ratio=0.5)
    with h.Load(BASE, threads=4):
        time.sleep(0.5)
        run = stack.playbook("deploy.yml", dict(GATE, env="itest", version="5.2.0", strategy="rolling",
                                                artifact=artifact), check=False)
    assert run.rc != 0
    assert "stopped after batch 1 (app1)" in run.output and "error_rate" in run.output, run.output[-3000:]
    # the audit entry carries the gate's whole check table, not a truncated message
    failure = [e for e in _audit(stack) if (e["action"], e["result"], e["version"]) == ("deploy", "failure", "5.2.0")][-1]
    assert any(c["name"] == "error_rate" and c["status"] == "fail" and c["value"] > c["threshold"]
               for c in failure["details"]["gate"]), failure["details"]
    # the failed batch does not stay in traffic: the deploy is rolled back to what ran before it (one version)
    assert stack.versions(APP) == dict.fromkeys([n for n, _p in APP], "5.1.0")
    state = stack.state("itest")
    assert state["last_operation"]["kind"] == "rollback" and state["last_operation"]["status"] == "complete"
    assert [e["status"] for e in state["history"] if e["kind"] == "deploy" and e["version"] == "5.2.0"] == \
        ["rolled_back"]
    assert "5.2.0" in state["failed_versions"]
    # retention stays steady: the failed release left the hosts
    for name, _port in APP:
        assert not os.path.isdir(os.path.join(stack.lab_root, "hosts", name, "releases", "5.2.0"))
    status = stack.playbook("status.yml", {"env": "itest"})
    assert "'mixed_versions': false" in status.output.replace('"', "'").lower()
    # an operator's rollback.yml to the same version afterwards is neither refused (retention) nor harmful
    with h.Load(BASE, threads=4) as load:
        time.sleep(0.5)
        stack.playbook("rollback.yml", {"env": "itest", "version": "5.1.0"})
    assert stack.versions(APP) == dict.fromkeys([n for n, _p in APP], "5.1.0")
    assert stack.state("itest")["last_operation"]["kind"] == "rollback"
    assert load.stats()["requests"] > 100


def _audit(stack):
    with open(os.path.join(stack.root, "release", "audit.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_unsigned_deploy_is_refused_where_required_unless_opted_out(stack):
    artifact = stack.artifact("5.3.0")
    required = dict(GATE, env="itest", version="5.3.0", strategy="rolling", artifact=artifact,
                    deploy_require_signature=True)
    refused = stack.playbook("deploy.yml", required, check=False)
    assert refused.rc != 0 and "a signed manifest is required" in refused.output, refused.output[-2000:]
    last = _audit(stack)[-1]
    assert (last["action"], last["result"], last["details"]["reason"]) == ("deploy", "aborted", "signed manifest missing")
    assert stack.versions(APP) == dict.fromkeys([n for n, _p in APP], "5.1.0")
    with h.Load(BASE, threads=4):  # the gates and the watch judge real traffic (no data fails closed)
        time.sleep(0.5)
        stack.playbook("deploy.yml", dict(required, unsigned_reason="INC-7 hotfix built by hand"))
    assert stack.versions(APP) == dict.fromkeys([n for n, _p in APP], "5.3.0")
    entries = _audit(stack)
    opt_out = [e for e in entries if e["action"] == "signature_opt_out"][-1]
    assert opt_out["details"]["reason"] == "INC-7 hotfix built by hand" and opt_out["version"] == "5.3.0"
    done = entries[-1]
    assert (done["action"], done["result"]) == ("deploy", "success")
    assert done["details"]["signature"] == "opted out: INC-7 hotfix built by hand"
    assert done["details"]["watch"], done["details"]


def test_blue_green_in_the_lab(stack):
    stack.route("be_blue")
    try:
        assert stack.frontend_version() == "5.0.0"
        artifact = stack.artifact("5.1.0")
        with h.Load(BASE, threads=4) as load:
            time.sleep(0.5)
            stack.playbook("deploy.yml", {"env": "itestbg", "version": "5.1.0", "strategy": "blue-green",
                                          "artifact": artifact})
            time.sleep(0.3)
            assert stack.frontend_version() == "5.1.0"
            stack.playbook("rollback.yml", {"env": "itestbg"})
            time.sleep(0.3)
        assert load.stats()["failures"] == 0 and load.stats()["requests"] > 100
        assert stack.frontend_version() == "5.0.0"
        assert stack.versions(COLORS) == {"blue1": "5.0.0", "green1": "5.1.0"}
        assert stack.state("itestbg")["active_color"] == "blue"
        status = stack.playbook("status.yml", {"env": "itestbg"})
        assert "active_color': 'blue'" in status.output.replace('"', "'")
    finally:
        stack.route("be_app")
