# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An HA balancer pair on the namespace fleet: every traffic step on both HAProxy balancers, a rejected step undone.

``playbooks/lab/fleet_lab_up.yml`` brings up 3 app hosts as network namespaces (prefix ``wha``, 10.81.0.0/24) for
environment ``staging`` with ``fleet_lab_ha_environments: [staging]``: two HAProxy processes (stacks ``lab-staging``
on 127.0.0.1:28000 and ``lab-staging-b`` on 127.0.0.1:28012) in front of the same hosts, both in the inventory's
``release_haproxy_sockets``. With traffic through both balancers, ``deploy.yml`` (rolling) must leave the server
states and weights identical on both, with 0 failed requests. Fault "a balancer that rejects a command": once the first
host switched, balancer b's admin socket is replaced by its read-only one (``level user``): the deploy fails with an
error naming balancer b and the rejected step, and both balancers route the same way afterwards; once the balancer is
repaired, ``rollback.yml`` brings every host and both balancers back. State, lock and audit live with the environment:
two runners with their own ``release_work_dir`` (two controllers) see one lock (the second is refused, naming the
holder) and write one audit history. Ports 28000-28013 (docs/design.md). Needs root.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _hosts_env as h  # noqa: E402
from conftest import REPO_ROOT, ansible_env, port_is_free, run_playbook  # noqa: E402

NETFLEET = REPO_ROOT / "roles" / "lab" / "files" / "netfleet.py"
LABCTL = REPO_ROOT / "roles" / "lab" / "files" / "labctl.py"
PREFIX, SUBNET, PORT_BASE = "wha", "10.81.0", 28000
FRONTENDS = (PORT_BASE, PORT_BASE + 12)  # balancer a, balancer b
HOSTS = ("app1", "app2", "app3")
ENV = "staging"
FAST = {"gate_duration": 2, "gate_window": 2, "gate_interval": 1, "watch_seconds": 2}

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace fleet needs root (ip netns, sshd on port 22)"),
    pytest.mark.skipif(not (shutil.which("ip") and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh")
                            and shutil.which("haproxy")),
                       reason="needs iproute2, openssh-server/openssh-client and haproxy (scripts/bootstrap.sh)"),
]


def netfleet(root, *args):
    proc = subprocess.run([sys.executable, str(NETFLEET), "--root", str(root)] + list(args), capture_output=True,
                          text=True, timeout=180, check=False)
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"msg": proc.stderr}


def in_use():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in netns.splitlines() if line.startswith(PREFIX + "-")]


class Load:
    """Continuous traffic through both balancers (one keep-alive client each); counts failed requests."""

    def __init__(self, pause=0.05):
        self.pause = pause
        self.ok, self.failed, self.errors = 0, 0, []
        self._stop, self._lock, self._workers = threading.Event(), threading.Lock(), []

    def _worker(self, port):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                good, err = resp.status == 200, "%d: HTTP %d" % (port, resp.status)
            except (OSError, http.client.HTTPException) as exc:
                good, err = False, "%d: %r" % (port, exc)
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.ok += good
                self.failed += not good
                if not good:
                    self.errors.append(err)
            self._stop.wait(self.pause)

    def __enter__(self):
        for port in FRONTENDS:
            worker = threading.Thread(target=self._worker, args=(port,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for worker in self._workers:
            worker.join(15)


@pytest.fixture(scope="module", name="fleet")
def fleet_fixture(tmp_path_factory):
    if in_use():
        pytest.skip("a fleet with prefix %s exists already (%s): another run is using it" % (PREFIX, in_use()))
    busy = [p for p in (PORT_BASE, PORT_BASE + 1, PORT_BASE + 12, PORT_BASE + 13) if not port_is_free(p)]
    if busy:
        pytest.skip("ports %s are taken" % busy)
    root = tmp_path_factory.mktemp("wha-fleet")
    inventory = root / "lab-inventory.yml"
    try:
        run_playbook("playbooks/lab/fleet_lab_up.yml", {
            "fleet_root": str(root), "fleet_prefix": PREFIX, "fleet_subnet": SUBNET, "fleet_mode": "netns",
            "fleet_lab_layout": {ENV: len(HOSTS)}, "fleet_lab_port_base": PORT_BASE,
            "fleet_lab_ha_environments": [ENV], "fleet_lab_monitoring_environment": "none"})
        run_playbook("playbooks/lab_up.yml", inventory=inventory)
        inv = yaml.safe_load(inventory.read_text())
        group = inv["all"]["children"][ENV]
        artifacts = root / "artifacts-test"
        for version in ("5.1.0", "5.2.0"):
            subprocess.run([sys.executable, str(LABCTL), "artifact", version, "--out", str(artifacts)],
                           check=True, capture_output=True, timeout=60)
        socks = group["vars"]["release_haproxy_sockets"]
        assert socks == [str(root / "lab-staging" / "haproxy" / "admin.sock"),
                         str(root / "lab-staging-b" / "haproxy" / "admin.sock")], socks
        yield {"root": root, "inventory": inventory, "hosts": group["hosts"], "artifacts": artifacts, "socks": socks,
               "audit": root / "release" / "audit.jsonl"}
    finally:
        if inventory.exists():
            run_playbook("playbooks/lab_down.yml", inventory=inventory, check=False)
        netfleet(root, "down")


def current(fleet, name):
    return os.path.basename(os.readlink(os.path.join(fleet["hosts"][name]["release_root"], "current")))


def versions(fleet):
    return dict((name, current(fleet, name)) for name in HOSTS)


def balancers(fleet):
    """balancer socket -> server -> (status, weight), read from each HAProxy itself."""
    return dict((sock, h.servers(sock, "be_app")) for sock in fleet["socks"])


def admin_states(fleet):
    """Per balancer, what the admin side routes: server -> (MAINT/DRAIN/ready, weight); health aside."""
    def admin(status):
        status = status.upper()
        return "MAINT" if status.startswith("MAINT") else "DRAIN" if status.startswith(("DRAIN", "NOLB")) else "ready"
    return dict((sock, dict((name, (admin(st), w)) for name, (st, w) in servers.items()))
                for sock, servers in balancers(fleet).items())


def deploy(fleet, version, check=True, **more):
    extra = dict(FAST, env=ENV, version=version, strategy="rolling", batch_size="1",
                 artifact=str(fleet["artifacts"] / ("meshapp-%s.tar.gz" % version)))
    extra.update(more)
    return run_playbook("playbooks/deploy.yml", extra, inventory=fleet["inventory"], check=check)


def test_a_rolling_deploy_keeps_both_balancers_in_step(fleet):
    with Load() as load:
        deploy(fleet, "5.1.0")
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.1.0")
    assert load.failed == 0 and load.ok > 20, (load.ok, load.failed, load.errors[:5])
    states = balancers(fleet)
    a, b = fleet["socks"]
    assert states[a] == states[b], states
    assert all(status == "UP" for status, weight in states[a].values()), states


def test_a_balancer_that_rejects_a_command_mid_rollout_leaves_both_alike(fleet):
    a, b = fleet["socks"]
    b_dir = os.path.dirname(b)
    kept = os.path.join(b_dir, "admin.sock.kept")
    fault = {}

    def reject_on_b_once_app1_switched():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if current(fleet, "app1") == "5.2.0":
                os.link(b, kept)  # the admin socket stays reachable here, to repair the balancer afterwards
                os.rename(os.path.join(b_dir, "readonly.sock"), b)
                fault["at"] = time.monotonic()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=reject_on_b_once_app1_switched, daemon=True)
    watcher.start()
    try:
        with Load() as load:
            run = deploy(fleet, "5.2.0", check=False)
        watcher.join(5)
        assert fault, "app1 never switched to 5.2.0"
        assert run.rc != 0
        rejected = [line for line in run.output.splitlines()
                    if "balancer %s failed to" % b in line and "permission denied" in line]
        assert rejected, run.output[-3000:]
        assert "every balancer routes as before the step" in rejected[0], rejected[0]
        assert current(fleet, "app2") == current(fleet, "app3") == "5.1.0"
        assert load.failed == 0, (load.ok, load.failed, load.errors[:5])
    finally:
        if os.path.exists(kept):
            os.replace(kept, b)  # repaired: admin.sock is the admin socket again
    states = admin_states(fleet)
    assert states[a] == states[b], states
    # the operator's fix: with the balancer repaired, rollback.yml restores every host and both balancers
    with Load() as load:
        run_playbook("playbooks/rollback.yml", dict(FAST, env=ENV), inventory=fleet["inventory"])
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.1.0")
    assert load.failed == 0, (load.ok, load.failed, load.errors[:5])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            st == "UP" for servers in balancers(fleet).values() for st, w in servers.values()):
        time.sleep(0.2)
    states = balancers(fleet)
    assert states[a] == states[b] and all(st == "UP" for st, w in states[a].values()), states


def audit(fleet):
    if not os.path.exists(fleet["audit"]):
        return []
    with open(fleet["audit"]) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_two_runners_see_one_lock_and_one_audit_history(fleet, tmp_path):
    runner_a, runner_b = tmp_path / "runner-a", tmp_path / "runner-b"
    before = len(audit(fleet))
    # runner A (its own work dir) deploys and watches the fleet for a while, holding the environment's lock
    extra_a = dict(FAST, env=ENV, version="5.2.0", strategy="rolling", batch_size="1", watch_seconds=20,
                   release_work_dir=str(runner_a), awx_user_name="alice",
                   artifact=str(fleet["artifacts"] / "meshapp-5.2.0.tar.gz"))
    argv = ["ansible-playbook", "-i", str(fleet["inventory"]), str(REPO_ROOT / "playbooks" / "deploy.yml"),
            "-e", json.dumps(extra_a)]
    proc_a = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env(),
                              cwd=str(REPO_ROOT))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc_a.poll() is None and not [
                e for e in audit(fleet)[before:] if e["action"] == "deploy" and e["result"] == "started"]:
            time.sleep(0.2)
        assert proc_a.poll() is None, proc_a.stdout.read()[-3000:]
        # runner B, another work dir, is refused by the same lock, which names runner A
        run_b = run_playbook("playbooks/rollback.yml", dict(FAST, env=ENV, release_work_dir=str(runner_b),
                                                            awx_user_name="bob"),
                             inventory=fleet["inventory"], check=False)
        assert run_b.rc != 0
        assert "environment %s is locked by alice/deploy.yml/deploy" % ENV in run_b.output, run_b.output[-3000:]
        out_a = proc_a.communicate(timeout=600)[0]
        assert proc_a.returncode == 0, out_a[-3000:]
    finally:
        if proc_a.poll() is None:
            proc_a.kill()
    # afterwards runner B's deploy runs, and both runners' changes are in the one audit log of the environment
    run_playbook("playbooks/deploy.yml", dict(FAST, env=ENV, version="5.1.0", strategy="rolling", batch_size="1",
                                              release_work_dir=str(runner_b), awx_user_name="bob",
                                              artifact=str(fleet["artifacts"] / "meshapp-5.1.0.tar.gz")),
                 inventory=fleet["inventory"])
    entries = audit(fleet)[before:]
    done = [(e["actor"], e["action"], e["version"]) for e in entries if e["result"] == "success"]
    assert ("alice", "deploy", "5.2.0") in done and ("bob", "deploy", "5.1.0") in done, done
    assert not (runner_a / "audit.jsonl").exists() and not (runner_b / "audit.jsonl").exists()
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.1.0")
