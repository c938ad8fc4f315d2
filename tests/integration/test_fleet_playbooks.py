# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks on the lab as a fleet of SSH hosts (what `make release` runs, smaller).

``playbooks/lab/fleet_lab_up.yml`` brings up 3 app hosts as network namespaces (prefix ``wfp``, 10.78.0.0/24; sshd
and meshapp 5.0.0 on each host's own address) and writes the fleet's release inventory (environment ``development``
= the 3 hosts, ``release_platform: ssh``); ``playbooks/lab_up.yml`` with that inventory starts HAProxy on this
machine (the balancer, 127.0.0.1:27260, stats 27261) pointing at the hosts' addresses. Then, with continuous traffic
through HAProxy, ``deploy.yml`` (rolling), ``release.yml`` (development stage) and ``rollback.yml`` run over SSH:
0 failed requests, the version of every host (its ``current``), the audit log. Faults through the playbooks: a host
whose sshd is stopped fails the deploy before anything changes, naming it; a host cut off (link down) mid-rollout
fails the deploy and the changed hosts are rolled back. Ports 27260-27271 (docs/design.md). Needs root.
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
from conftest import REPO_ROOT, haproxy_command, port_is_free, run_playbook  # noqa: E402

NETFLEET = REPO_ROOT / "roles" / "lab" / "files" / "netfleet.py"
LABCTL = REPO_ROOT / "roles" / "lab" / "files" / "labctl.py"
PREFIX, SUBNET, PORT_BASE = "wfp", "10.78.0", 27260
HOSTS = ("app1", "app2", "app3")
# short gates and watches: the test checks the flow over SSH, not the gates' timing
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
    """Continuous traffic through the fleet's HAProxy (keep-alive, 2 threads); counts failed requests."""

    def __init__(self, threads=2, pause=0.05):
        self.threads, self.pause = threads, pause
        self.ok, self.failed, self.errors = 0, 0, []
        self._stop, self._lock, self._workers = threading.Event(), threading.Lock(), []

    def _worker(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", PORT_BASE, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                good, err = resp.status == 200, "HTTP %d" % resp.status
            except (OSError, http.client.HTTPException) as exc:
                good, err = False, repr(exc)
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
        for dummy in range(self.threads):
            worker = threading.Thread(target=self._worker, daemon=True)
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
    busy = [p for p in (PORT_BASE, PORT_BASE + 1) if not port_is_free(p)]
    if busy:
        pytest.skip("ports %s are taken" % busy)
    root = tmp_path_factory.mktemp("wfp-fleet")
    inventory = root / "lab-inventory.yml"
    try:
        start = time.monotonic()
        run_playbook("playbooks/lab/fleet_lab_up.yml", {
            "fleet_root": str(root), "fleet_prefix": PREFIX, "fleet_subnet": SUBNET, "fleet_mode": "netns",
            "fleet_lab_layout": {"development": len(HOSTS)}, "fleet_lab_port_base": PORT_BASE})
        run_playbook("playbooks/lab_up.yml", inventory=inventory)
        print("fleet lab up (3 namespace hosts + HAProxy): %.1fs" % (time.monotonic() - start))
        inv = yaml.safe_load(inventory.read_text())
        hosts = inv["all"]["children"]["development"]["hosts"]
        artifacts = root / "artifacts-test"
        for version in ("5.1.0", "5.2.0"):
            subprocess.run([sys.executable, str(LABCTL), "artifact", version, "--out", str(artifacts)],
                           check=True, capture_output=True, timeout=60)
        yield {"root": root, "inventory": inventory, "hosts": hosts, "artifacts": artifacts,
               "sock": str(root / "lab-development" / "haproxy" / "admin.sock"),
               "audit": root / "release" / "audit.jsonl"}
    finally:
        if inventory.exists():
            run_playbook("playbooks/lab_down.yml", inventory=inventory, check=False)
        netfleet(root, "down")


def current(fleet, name):
    """The host's `current` (the namespaces share the filesystem; the playbooks only reach it over ssh)."""
    return os.path.basename(os.readlink(os.path.join(fleet["hosts"][name]["release_root"], "current")))


def versions(fleet):
    return dict((name, current(fleet, name)) for name in HOSTS)


def audit(fleet):
    with open(fleet["audit"]) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def deploy(fleet, version, check=True, **more):
    extra = dict(FAST, env="development", version=version, strategy="rolling", batch_size="1",
                 artifact=str(fleet["artifacts"] / ("meshapp-%s.tar.gz" % version)))
    extra.update(more)
    return run_playbook("playbooks/deploy.yml", extra, inventory=fleet["inventory"], check=check)


def test_deploy_yml_rolling_over_ssh_with_zero_failed_requests(fleet):
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.0.0")
    with Load() as load:
        start = time.monotonic()
        deploy(fleet, "5.1.0")
        seconds = time.monotonic() - start
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.1.0")
    assert load.failed == 0 and load.ok > 20, (load.ok, load.failed, load.errors[:5])
    assert all(v[0] == "UP" for v in h.servers(fleet["sock"], "be_app").values()), h.servers(fleet["sock"], "be_app")
    entry = [e for e in audit(fleet) if e["action"] == "deploy" and e["result"] == "success"][-1]
    assert entry["environment"] == "development" and entry["version"] == "5.1.0"
    assert entry["details"]["versions"] == dict.fromkeys(HOSTS, "5.1.0")
    assert entry["details"]["measured"]["failed_requests"] == 0
    print("deploy.yml rolling over ssh, 3 hosts: %.1fs, 0 failed of %d requests" % (seconds, load.ok))


def test_release_yml_development_stage_over_ssh(fleet):
    with Load() as load:
        start = time.monotonic()
        run_playbook("playbooks/release.yml", {
            "version": "5.2.0", "release_stages": ["development"], "watch_seconds": 2, "guard_seconds": 2,
            "approvals_file": str(REPO_ROOT / "playbooks" / "vars" / "lab_approvals.yml"),
            "release_batch_gate_duration": 2, "release_batch_gate_window": 2},
            inventory=fleet["inventory"])
        seconds = time.monotonic() - start
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.2.0")
    assert load.failed == 0 and load.ok > 20, (load.ok, load.failed, load.errors[:5])
    entries = [e for e in audit(fleet) if e.get("version") == "5.2.0" and e["environment"] == "development"]
    assert [e for e in entries if e["action"] == "deploy" and e["result"] == "success"], entries[-3:]
    print("release.yml development stage over ssh: %.1fs, 0 failed of %d requests" % (seconds, load.ok))


def test_rollback_yml_over_ssh(fleet):
    with Load() as load:
        start = time.monotonic()
        run_playbook("playbooks/rollback.yml", dict(FAST, env="development"), inventory=fleet["inventory"])
        seconds = time.monotonic() - start
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.1.0")
    assert load.failed == 0 and load.ok > 10, (load.ok, load.failed, load.errors[:5])
    assert all(v[0] == "UP" for v in h.servers(fleet["sock"], "be_app").values()), h.servers(fleet["sock"], "be_app")
    entry = audit(fleet)[-1]
    assert entry["action"] == "rollback" and entry["result"] == "success", entry
    print("rollback.yml over ssh: %.1fs, 0 failed of %d requests" % (seconds, load.ok))


def test_an_unreachable_host_fails_the_deploy_before_anything_changes(fleet):
    netfleet(fleet["root"], "fault", "app2", "sshd-stop")
    try:
        run = deploy(fleet, "5.2.0", check=False, platform_options={"ssh_control_persist": 0.0})
    finally:
        netfleet(fleet["root"], "fault", "app2", "clear")
    assert run.rc != 0
    failed = [line for line in run.output.splitlines() if "host app2" in line and "unreachable" in line]
    assert failed, run.output[-3000:]
    assert versions(fleet) == dict.fromkeys(HOSTS, "5.1.0")
    assert all(v[0] == "UP" for v in h.servers(fleet["sock"], "be_app").values()), h.servers(fleet["sock"], "be_app")


def test_a_host_cut_off_mid_rollout_fails_and_the_changed_hosts_roll_back(fleet):
    cut = {}

    def cut_app3_once_app2_switched():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not cut:
            if current(fleet, "app2") == "5.2.0":
                cut["at"] = time.monotonic()
                cut["result"] = netfleet(fleet["root"], "fault", "app3", "link-down")
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_app3_once_app2_switched, daemon=True)
    watcher.start()
    try:
        run = deploy(fleet, "5.2.0", check=False)
        watcher.join(5)
        assert cut.get("result", {}).get("faults") == ["link-down"], cut
        assert run.rc != 0
        assert "host app3" in run.output and "unreachable" in run.output, run.output[-3000:]
        assert current(fleet, "app1") == current(fleet, "app2") == "5.1.0", (
            [line for line in run.output.splitlines() if "fatal" in line or "msg" in line][-6:], audit(fleet)[-2:])
        servers = h.servers(fleet["sock"], "be_app")
        assert servers["app1"][0] == servers["app2"][0] == "UP", servers
        assert servers["app3"][0] != "UP", servers
        entry = [e for e in audit(fleet) if e["action"] == "deploy" and e.get("version") == "5.2.0"][-1]
        assert entry["result"] == "failure", entry
        back = [e for e in audit(fleet) if e["action"] == "rollback" and e.get("version") == "5.2.0"][-1]
        assert back["result"] == "success" and back["details"]["unreachable_not_rolled_back"] == ["app3"], back
    finally:
        netfleet(fleet["root"], "fault", "app3", "clear")
        haproxy_command(fleet["sock"], "set server be_app/app3 state ready")
