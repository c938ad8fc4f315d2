# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab as a fleet of SSH hosts (roles/lab/files/netfleet.py, playbooks/lab/fleet_up.yml / fleet_down.yml).

Three network namespaces on a bridge (prefix ``mst``, subnet 10.77.27.0/24 so a default fleet, msh / 10.77.0, can run
beside it), a real sshd with key auth in each, Ansible over SSH against the generated inventory, meshapp reached from
the root namespace and through a HAProxy on the balancer address (10.77.27.1:27200), each fault, and a teardown that
leaves no namespace, link or process behind. Ports: 27200-27299 (docs/design.md); namespace addresses need none.
Needs root (network namespaces, sshd on port 22, tmpfs mounts).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, ansible_env, run_playbook

NETFLEET = REPO_ROOT / "roles" / "lab" / "files" / "netfleet.py"
PREFIX = "mst"
SUBNET = "10.77.27"
BALANCER = SUBNET + ".1"
HAPROXY_PORT = 27200
HOSTS = ("app1", "app2", "app3")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace fleet needs root (ip netns, sshd on port 22, mount)"),
    pytest.mark.skipif(not (shutil.which("ip") and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh")),
                       reason="needs iproute2 and openssh-server/openssh-client (scripts/bootstrap.sh installs them)"),
]


def netfleet(root, *args, check=True):
    proc = subprocess.run([sys.executable, str(NETFLEET), "--root", str(root), *args], capture_output=True,
                          text=True, timeout=180, check=False)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    result["_rc"], result["_stderr"] = proc.returncode, proc.stderr
    return result


def adhoc(inventory, pattern, module, args=None, timeout=4):
    """ansible PATTERN -m MODULE [-a ARGS] over SSH; returns host -> result (tree callback: one JSON per host)."""
    env = ansible_env()
    tree = Path(inventory).parent / ("tree-%d" % time.monotonic_ns())
    env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
               ANSIBLE_CALLBACK_TREE_DIR=str(tree), ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_TIMEOUT=str(timeout))
    exe = shutil.which("ansible", path=env["PATH"]) or "ansible"
    argv = [exe, "-i", str(inventory), pattern, "-m", module] + (["-a", args] if args else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    results = {}
    for path in tree.glob("*") if tree.is_dir() else ():
        results[path.name] = json.loads(path.read_text())
    if not results:
        pytest.fail("ansible wrote no results (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return results


def http(url, timeout=2.0):
    """(status, body) or (None, error text) when there is no answer within timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec - lab addresses
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, socket.timeout) as exc:
        return None, str(getattr(exc, "reason", exc))


def ssh(fleet, host, command, timeout=10):
    address = fleet["addresses"][host]
    return subprocess.run(
        ["ssh", "-i", fleet["key"], "-o", "UserKnownHostsFile=%s" % fleet["known_hosts"],
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=4",
         "-o", "ControlMaster=no", "-o", "ControlPath=none", "root@%s" % address, command],
        capture_output=True, text=True, timeout=timeout, check=False)


def fleet_names():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in netns.splitlines() if line.startswith(PREFIX + "-")] + \
        [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()
         if line.split(":")[1].strip().startswith(PREFIX + "-")]


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            data = handle.read()
        return data[data.rindex(")") + 2] not in ("Z", "X")
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module", name="fleet")
def fleet_fixture(tmp_path_factory):
    if fleet_names():
        pytest.skip("a fleet with prefix %s exists already (%s): another run is using it" % (PREFIX, fleet_names()))
    root = tmp_path_factory.mktemp("fleet")
    inventory = root / "inventory.yml"
    extra = {"fleet_root": str(root), "fleet_hosts": len(HOSTS), "fleet_prefix": PREFIX, "fleet_subnet": SUBNET,
             "fleet_mode": "netns", "fleet_inventory": str(inventory)}
    try:
        up = run_playbook("playbooks/lab/fleet_up.yml", extra, inventory=REPO_ROOT / "inventories" / "lab")
        data = yaml.safe_load(inventory.read_text())
        hosts = data["all"]["children"]["fleet_app"]["hosts"]
        common = data["all"]["children"]["fleet_app"]["vars"]
        yield {"root": root, "inventory": inventory, "extra": extra, "up": up, "hosts": hosts,
               "addresses": {name: hv["ansible_host"] for name, hv in hosts.items()},
               "key": common["ansible_ssh_private_key_file"], "known_hosts": str(root / "ssh" / "known_hosts"),
               "state": json.loads((root / "fleet.json").read_text())}
    finally:
        netfleet(root, "down", check=False)


def test_bad_input_fails_closed(tmp_path):
    for args, needle in ((["up", "--hosts", "0"], "invalid --hosts 0"),
                         (["up", "--prefix", "Bad!"], "invalid --prefix 'Bad!'"),
                         (["up", "--subnet", "8.8.8"], "invalid --subnet '8.8.8'"),
                         (["fault", "app1", "link-down"], "no fleet at"),
                         (["fault", "app1", "melt"], "invalid fault 'melt'")):
        result = netfleet(tmp_path, *args, check=False)
        assert result["_rc"] == 1 and result["failed"] and needle in result["msg"], (args, result)
        assert len(result["_stderr"].strip().splitlines()) == 1
    assert not (tmp_path / "fleet.json").exists() and not fleet_names()
    assert netfleet(tmp_path, "down")["changed"] is False  # nothing up: down is a no-op


def test_inventory_is_the_fleet_contract(fleet):
    assert "3 hosts in mode netns" in fleet["up"].output
    assert sorted(fleet["hosts"]) == list(HOSTS)
    data = yaml.safe_load(fleet["inventory"].read_text())
    common = data["all"]["children"]["fleet_app"]["vars"]
    assert common["ansible_user"] == "root" and common["ansible_connection"] == "ssh"
    assert "UserKnownHostsFile=%s" % fleet["known_hosts"] in common["ansible_ssh_common_args"]
    for index, name in enumerate(HOSTS, start=1):
        hv = fleet["hosts"][name]
        assert hv["ansible_host"] == "%s.%d" % (SUBNET, 10 + index) and hv["meshapp_port"] == 8080
        assert hv["release_root"] == str(fleet["root"] / "hosts" / name / "hosts" / name)
    assert data["all"]["children"]["fleet_lb"]["hosts"]["localhost"]["balancer_address"] == BALANCER
    # a second up changes nothing
    again = netfleet(fleet["root"], "up", "--hosts", "3", "--prefix", PREFIX, "--subnet", SUBNET)
    assert again["changed"] is False and again["mode"] == "netns"


def test_ansible_over_ssh_with_key_auth(fleet):
    pings = adhoc(fleet["inventory"], "fleet_app", "ansible.builtin.ping")
    assert {name: r.get("ping") for name, r in pings.items()} == {name: "pong" for name in HOSTS}, pings
    ips = adhoc(fleet["inventory"], "fleet_app", "ansible.builtin.command", "hostname -I")
    for name in HOSTS:
        assert ips[name]["stdout"].split() == [fleet["addresses"][name]], ips[name]
    # key auth only: no password prompt, an unknown key is refused
    stranger = fleet["root"] / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    refused = ssh(dict(fleet, key=str(stranger)), "app1", "true")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    # the host's control command, over SSH: restart the instance in the host's namespace
    meshctl = fleet["hosts"]["app1"]["meshctl"]
    before = json.loads(ssh(fleet, "app1", meshctl + " status").stdout)
    restarted = ssh(fleet, "app1", meshctl + " restart --wait-ready 30", timeout=60)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    result = json.loads(restarted.stdout)
    assert result["ready"] is True and result["old_pid"] == before["pid"] != result["pid"]
    after = json.loads(ssh(fleet, "app1", meshctl + " status").stdout)
    assert after["running"] and after["ready"] and after["current"] == "5.0.0" and after["pid"] == result["pid"]


def test_meshapp_from_root_namespace_and_through_haproxy(fleet, tmp_path):
    for name in HOSTS:
        status, body = http("http://%s:8080/health" % fleet["addresses"][name])
        assert status == 200 and json.loads(body)["status"] == "ok", (name, status, body)
    # HAProxy on the balancer address, one server per namespace address
    config = tmp_path / "haproxy.cfg"
    servers = "".join("    server %s %s:8080\n" % (name, fleet["addresses"][name]) for name in HOSTS)
    config.write_text("global\n    maxconn 100\ndefaults\n    mode http\n    timeout connect 2s\n"
                      "    timeout client 5s\n    timeout server 5s\nfrontend fe\n    bind %s:%d\n"
                      "    default_backend be\nbackend be\n    balance roundrobin\n%s" % (BALANCER, HAPROXY_PORT, servers))
    proc = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen, deadline = set(), time.monotonic() + 15
        while len(seen) < len(HOSTS) and time.monotonic() < deadline:
            status, body = http("http://%s:%d/" % (BALANCER, HAPROXY_PORT))
            if status == 200:
                seen.add(json.loads(body)["instance"])
            else:
                time.sleep(0.1)
        assert seen == set(HOSTS), "HAProxy on %s reached only %s" % (BALANCER, seen)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_faults(fleet):
    root, inventory = fleet["root"], fleet["inventory"]
    releases = Path(fleet["hosts"]["app3"]["release_root"]) / "releases"
    assert netfleet(root, "fault", "app1", "link-down")["faults"] == ["link-down"]
    assert netfleet(root, "fault", "app2", "sshd-stop")["faults"] == ["sshd-stop"]
    assert netfleet(root, "fault", "app3", "disk-full")["faults"] == ["disk-full"]
    assert netfleet(root, "fault", "app3", "disk-full")["changed"] is False  # already there
    try:
        # link down: no HTTP answer within the timeout
        status, error = http("http://%s:8080/health" % fleet["addresses"]["app1"], timeout=2.0)
        assert status is None and ("timed out" in error or "No route to host" in error), error
        # sshd stopped: the app keeps serving; disk full: a 5 MB write under releases/ fails with ENOSPC
        assert http("http://%s:8080/health" % fleet["addresses"]["app2"])[0] == 200
        with pytest.raises(OSError) as exc_info, open(releases / "fill-local", "wb") as handle:
            for _megabyte in range(5):
                handle.write(b"\0" * 1024 * 1024)
                handle.flush()
        assert exc_info.value.errno == errno.ENOSPC
        assert (releases / "5.0.0" / "meshapp.py").exists()  # the active release survives the fault
        # and over SSH, as a deploy would meet them
        results = adhoc(inventory, "fleet_app", "ansible.builtin.command",
                        "dd if=/dev/zero of={{ release_root }}/releases/fill bs=1M count=5")
        assert results["app1"].get("unreachable") and ("timed out" in results["app1"]["msg"]
                                                       or "No route to host" in results["app1"]["msg"]), results["app1"]
        assert results["app2"].get("unreachable") and "Connection refused" in results["app2"]["msg"], results["app2"]
        assert results["app3"]["rc"] != 0 and "No space left on device" in results["app3"]["stderr"], results["app3"]
    finally:
        for name in HOSTS:
            netfleet(root, "fault", name, "clear")
    assert netfleet(root, "status")["hosts"][0]["faults"] == []
    for name in HOSTS:
        done = ssh(fleet, name, "hostname -I")
        assert done.returncode == 0 and done.stdout.split() == [fleet["addresses"][name]], (name, done.stderr)
        assert http("http://%s:8080/health" % fleet["addresses"][name])[0] == 200
    assert not os.path.ismount(releases) and (releases / "5.0.0" / "meshapp.py").exists()


def test_down_leaves_nothing(fleet):
    root = fleet["root"]
    pids = []
    for name in HOSTS:
        for pidfile in ("sshd.pid", name + ".pid"):
            pids.append(int((root / "hosts" / name / "run" / pidfile).read_text()))
    assert all(pid_alive(pid) for pid in pids)
    run = run_playbook("playbooks/lab/fleet_down.yml",
                       {"fleet_root": str(root), "fleet_inventory": str(fleet["inventory"])})
    assert run.changed >= 1
    assert fleet_names() == []
    assert not any(pid_alive(pid) for pid in pids), [pid for pid in pids if pid_alive(pid)]
    assert not fleet["inventory"].exists() and not (root / "fleet.json").exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(root) not in mounts
    again = netfleet(root, "down")  # idempotent
    assert again["changed"] is False and again["removed"] == []


def test_loopback_fallback(tmp_path):
    """Without namespaces (forced here): one sshd per 127.0.0.x address, meshapp on 27240+N, said so in the output."""
    for address, port in (("127.0.0.11", 22), ("127.0.0.12", 22), ("127.0.0.1", 27241), ("127.0.0.1", 27242)):
        with socket.socket() as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((address, port)) == 0:
                pytest.skip("%s:%d is in use (another loopback fleet?)" % (address, port))
    try:
        up = netfleet(tmp_path, "up", "--hosts", "2", "--mode", "loopback")
        assert up["mode"] == "loopback" and up["fallback_reason"] == "--mode loopback requested" and up["bridge"] is None
        fleet = {"key": up["client_key"], "known_hosts": up["known_hosts"],
                 "addresses": {h["name"]: h["address"] for h in up["hosts"]}}
        assert fleet["addresses"] == {"app1": "127.0.0.11", "app2": "127.0.0.12"}
        done = ssh(fleet, "app2", "echo $SSH_CONNECTION")
        assert done.returncode == 0 and done.stdout.split()[2:] == ["127.0.0.12", "22"], done.stderr
        assert http("http://127.0.0.12:27242/health")[0] == 200
        # no link to cut: the host's processes are frozen instead, so connections hang like a pulled cable
        netfleet(tmp_path, "fault", "app2", "link-down")
        assert http("http://127.0.0.12:27242/health", timeout=1.0)[0] is None
        assert ssh(fleet, "app2", "true").returncode == 255
        netfleet(tmp_path, "fault", "app2", "clear")
        assert http("http://127.0.0.12:27242/health")[0] == 200
        pids = [int((tmp_path / "hosts" / name / "run" / pidfile).read_text())
                for name in ("app1", "app2") for pidfile in ("sshd.pid", name + ".pid")]
    finally:
        down = netfleet(tmp_path, "down", check=False)
    assert down["_rc"] == 0 and len(down["removed"]) == 4
    assert not any(pid_alive(pid) for pid in pids)
