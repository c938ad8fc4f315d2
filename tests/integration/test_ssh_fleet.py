# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH fleet backend (platform: ssh) on real SSH hosts: the lab's network-namespace fleet.

Three hosts (netfleet.py, prefix ``wsh``, 10.79.0.0/24), each with its own sshd and meshapp on 0.0.0.0:8080 in its
namespace; a real HAProxy on the bridge (balancer) address 10.79.0.1:27280 with one server per host address and an
admin socket; ``meshos.release.rollout_strategy`` / ``rollback`` run on the balancer with ``platform: ssh`` and the
targets built from the fleet's generated inventory (its ``ansible_*`` facts). Every release operation reaches the
hosts only through ssh/scp. Continuous traffic through HAProxy during the deploy and the rollback must see 0 failed
requests; a host cut off mid-rollout (link down) fails the task naming it, and the hosts already changed are rolled
back. Ports 27280-27299 (docs/design.md). Needs root (namespaces, sshd on port 22).
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _hosts_env as h  # noqa: E402
from conftest import REPO_ROOT, haproxy_command, port_is_free  # noqa: E402

NETFLEET = REPO_ROOT / "roles" / "lab" / "files" / "netfleet.py"
LABCTL = REPO_ROOT / "roles" / "lab" / "files" / "labctl.py"
PREFIX, SUBNET = "wsh", "10.79.0"
BALANCER = SUBNET + ".1"
FE_PORT = 27280
HOSTS = ("app1", "app2", "app3")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace fleet needs root (ip netns, sshd on port 22)"),
    pytest.mark.skipif(not (shutil.which("ip") and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh")
                            and shutil.which("haproxy")),
                       reason="needs iproute2, openssh-server/openssh-client and haproxy (scripts/bootstrap.sh)"),
]

HAPROXY_CFG = """global
    stats socket {sock} mode 600 level admin
    hard-stop-after 10s
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-server-close
    option redispatch 1
    retries 3
    retry-on all-retryable-errors
frontend fe_main
    bind {balancer}:{port}
    default_backend be_app
backend be_app
    balance roundrobin
    option httpchk GET /ready
    default-server inter 500ms fall 2 rise 1 weight 100
{servers}
"""


def netfleet(root, *args, check=True):
    proc = subprocess.run([sys.executable, str(NETFLEET), "--root", str(root)] + list(args), capture_output=True,
                          text=True, timeout=180, check=False)
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"msg": proc.stderr}
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return result


def in_use():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in netns.splitlines() if line.startswith(PREFIX + "-")]


class Load:
    """Light continuous traffic through the HAProxy frontend on the balancer address (keep-alive, 4 threads)."""

    def __init__(self, threads=4, pause=0.02):
        self.threads, self.pause = threads, pause
        self.ok, self.failed, self.versions, self.errors = 0, 0, set(), []
        self._stop, self._lock, self._workers = threading.Event(), threading.Lock(), []

    def _worker(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(BALANCER, FE_PORT, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                good, version = resp.status == 200, resp.getheader("X-Meshapp-Version")
                err = None if good else "HTTP %d" % resp.status
            except (OSError, http.client.HTTPException) as exc:
                good, version, err = False, None, repr(exc)
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.ok += good
                self.failed += not good
                if version:
                    self.versions.add(version)
                if err:
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
    if not port_is_free(FE_PORT):
        pytest.skip("port %d is taken" % FE_PORT)
    root = tmp_path_factory.mktemp("wsh-fleet")
    haproxy = None
    try:
        up = netfleet(root, "up", "--hosts", str(len(HOSTS)), "--prefix", PREFIX, "--subnet", SUBNET,
                      "--mode", "netns")
        inventory = up["inventory"]["all"]["children"]["fleet_app"]
        (root / "inventory.yml").write_text(yaml.safe_dump(up["inventory"]))
        common = inventory["vars"]
        # the targets, from the fleet contract's per-host variables and connection facts (no lab_* names)
        targets = [{"name": name, "server": hv["haproxy_server_name"], "release_root": hv["release_root"],
                    "restart_command": hv["restart_command"], "ready_url": hv["ready_url"],
                    "ssh_host": hv["ansible_host"], "ssh_port": hv["ansible_port"], "ssh_user": common["ansible_user"],
                    "ssh_private_key_file": common["ansible_ssh_private_key_file"],
                    "ssh_common_args": common["ansible_ssh_common_args"]} for name, hv in sorted(inventory["hosts"].items())]
        artifacts = root / "artifacts"
        for version in ("5.1.0", "5.2.0"):
            subprocess.run([sys.executable, str(LABCTL), "artifact", version, "--out", str(artifacts)],
                           check=True, capture_output=True, timeout=60)
        sock = str(root / "haproxy.sock")
        servers = "".join("    server %s %s:8080 check\n" % (t["server"], t["ssh_host"]) for t in targets)
        cfg = root / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(sock=sock, balancer=BALANCER, port=FE_PORT, servers=servers))
        haproxy = subprocess.Popen([shutil.which("haproxy"), "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(sock) and all(v[0] == "UP" for v in h.servers(sock, "be_app").values()):
                break
            time.sleep(0.3)
        else:
            pytest.fail("HAProxy on %s:%d never saw the 3 hosts UP" % (BALANCER, FE_PORT))
        yield {"root": root, "up": up, "targets": targets, "sock": sock, "artifacts": artifacts,
               "state_dir": str(root / "state")}
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(15)
        netfleet(root, "down", check=False)


def args(fleet, **more):
    base = {"platform": "ssh", "environment": "wsh", "state_dir": fleet["state_dir"], "haproxy_socket": fleet["sock"],
            "targets": fleet["targets"], "ready_timeout": 30.0, "drain_timeout": 10.0, "ssh_connect_timeout": 3.0,
            "ssh_control_persist": 10.0}
    base.update(more)
    return base


def current(fleet, name):
    """The host's `current`, read from the shared filesystem (the backend only reads it over ssh)."""
    target = [t for t in fleet["targets"] if t["name"] == name][0]
    return os.path.basename(os.readlink(os.path.join(target["release_root"], "current")))


def artifact(fleet, version):
    return str(fleet["artifacts"] / ("meshapp-%s.tar.gz" % version))


def test_bad_ssh_input_fails_closed_before_anything(fleet):
    cases = [({"ssh_host": "-oProxyCommand=x"}, "ssh_host '-oProxyCommand=x' is invalid"),
             ({"ssh_port": 70000}, "ssh_port 70000 is invalid"),
             ({"ssh_private_key_file": "/nonexistent/key"}, "ssh_private_key_file '/nonexistent/key'")]
    for bad, needle in cases:
        targets = [dict(fleet["targets"][0], **bad)] + fleet["targets"][1:]
        rc, result = h.call_module("rollout_strategy", args(fleet, version="5.1.0", targets=targets,
                                                            artifact=artifact(fleet, "5.1.0")))
        assert rc != 0 and needle in result["msg"] and "\n" not in result["msg"], result
    # ssh fields are the ssh platform's: the hosts backend refuses them
    rc, result = h.call_module("rollout_strategy", args(fleet, platform="hosts", version="5.1.0"))
    assert rc != 0 and "unknown key(s) ssh_" in result["msg"], result
    assert [current(fleet, n) for n in HOSTS] == ["5.0.0"] * 3


def test_rolling_deploy_then_rollback_over_ssh_with_zero_failed_requests(fleet):
    with Load() as load:
        time.sleep(1.0)
        start = time.monotonic()
        rc, result = h.call_module("rollout_strategy", args(fleet, version="5.1.0", strategy="rolling",
                                                            artifact=artifact(fleet, "5.1.0"), batch_size="1"))
        deploy_s = time.monotonic() - start
        time.sleep(1.0)
    assert rc == 0, result.get("msg")
    assert result["versions"] == dict((n, "5.1.0") for n in HOSTS), result["versions"]
    assert [current(fleet, n) for n in HOSTS] == ["5.1.0"] * 3
    assert load.failed == 0 and load.ok > 50, (load.ok, load.failed, load.errors[:5])
    assert "5.1.0" in load.versions
    assert all(v == ("UP", 100) for v in h.servers(fleet["sock"], "be_app").values())
    # the copy was checked: the manifest records the artifact's sha256 on every host
    for target in fleet["targets"]:
        manifest = json.loads((Path(target["release_root"]) / "releases" / "5.1.0" / ".meshos-manifest.json").read_text())
        assert manifest["artifact_sha256"] == h.run_command(["sha256sum", artifact(fleet, "5.1.0")])[1].split()[0]
    # a second run changes nothing (install is idempotent: no copy)
    rc, again = h.call_module("rollout_strategy", args(fleet, version="5.1.0", artifact=artifact(fleet, "5.1.0")))
    assert rc == 0 and again["changed"] is False, again

    with Load() as load:
        time.sleep(1.0)
        start = time.monotonic()
        rc, result = h.call_module("rollback", args(fleet))
        rollback_s = time.monotonic() - start
        time.sleep(1.0)
    assert rc == 0, result.get("msg")
    assert [current(fleet, n) for n in HOSTS] == ["5.0.0"] * 3
    assert load.failed == 0 and load.ok > 50, (load.ok, load.failed, load.errors[:5])
    assert all(v == ("UP", 100) for v in h.servers(fleet["sock"], "be_app").values())
    print("ssh fleet: rolling deploy of 3 hosts %.1fs, rollback %.1fs, 0 failed of %d requests"
          % (deploy_s, rollback_s, load.ok))


def test_a_host_cut_off_mid_rollout_fails_naming_it_and_the_changed_hosts_roll_back(fleet):
    assert [current(fleet, n) for n in HOSTS] == ["5.0.0"] * 3
    cut = {}

    def cut_app3_once_app2_switched():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not cut:
            if current(fleet, "app2") == "5.2.0":
                cut["at"] = time.monotonic()
                cut["result"] = netfleet(fleet["root"], "fault", "app3", "link-down")
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_app3_once_app2_switched, daemon=True)
    try:
        watcher.start()
        rc, result = h.call_module("rollout_strategy", args(fleet, version="5.2.0", artifact=artifact(fleet, "5.2.0"),
                                                            batch_size="1"))
        failed_at = time.monotonic()
        watcher.join(5)
        assert cut.get("result", {}).get("faults") == ["link-down"], cut
        assert rc != 0
        msg = result["msg"]
        assert "\n" not in msg and "host app3" in msg and "unreachable" in msg, msg
        assert "restored app1, app2 to 5.0.0" in msg, msg
        print("host cut off %.1fs before the task failed: %s" % (failed_at - cut["at"], msg))
        assert current(fleet, "app1") == current(fleet, "app2") == "5.0.0"
        restored = dict((r["target"], r) for r in result["restored"])
        assert restored["app1"]["restored"] and restored["app2"]["restored"]
        servers = h.servers(fleet["sock"], "be_app")
        assert servers["app1"] == ("UP", 100) and servers["app2"] == ("UP", 100), servers
        assert servers["app3"][0] != "UP"  # cut off: out of traffic (HAProxy's check and the restore agree)
    finally:
        netfleet(fleet["root"], "fault", "app3", "clear")
        haproxy_command(fleet["sock"], "set server be_app/app3 state ready")  # the restore took it out of traffic


def test_an_unreachable_host_fails_before_anything_changes(fleet):
    netfleet(fleet["root"], "fault", "app2", "sshd-stop")
    try:
        rc, result = h.call_module("rollout_strategy", args(fleet, version="5.2.0", artifact=artifact(fleet, "5.2.0"),
                                                            ssh_control_persist=0.0))
        assert rc != 0
        msg = result["msg"]
        assert "\n" not in msg and "host app2 (root@%s.12)" % SUBNET in msg and "unreachable" in msg, msg
        assert [current(fleet, n) for n in HOSTS] == ["5.0.0"] * 3
        assert not (Path(fleet["targets"][0]["release_root"]) / "releases" / "5.2.0").exists()
        assert all(v == ("UP", 100) for v in h.servers(fleet["sock"], "be_app").values())
        print("unreachable before the deploy: %s" % msg)
    finally:
        netfleet(fleet["root"], "fault", "app2", "clear")
