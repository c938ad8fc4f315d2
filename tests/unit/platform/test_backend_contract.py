# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend contract: every backend (fleet + traffic router) must pass this suite.

A new backend (Kubernetes, SSH hosts...) adds one fixture builder to BACKENDS below: it returns a ``Harness`` with a
``Platform`` over two targets ``a`` (blue) and ``b`` (green), both on 5.0.0 and in traffic, and a way to get an
artifact for a version. The strategies rely only on what is checked here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils.platform import hosts
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLOR_ROUTE,
    ROUTER_CAPABILITIES,
    WEIGHTS,
    ConfigError,
    Fleet,
    NotFoundError,
    NotSupported,
    Platform,
    Target,
    TrafficRouter,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy_router import HAProxyRouter
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import install_release, switch_current
from ansible_collections.meshos.release.tests.unit.platform.fake_backend import FakePlatform


class Harness:
    def __init__(self, platform, artifact):
        self.platform = platform
        self.fleet = platform.fleet
        self.router = platform.router
        self.artifact = artifact  # version -> local artifact path

    def target(self, name):
        return [tg for tg in self.platform.targets() if tg.name == name][0]


def _fake(tmp_path, monkeypatch, request=None):
    return Harness(FakePlatform(["a", "b"], installed=("5.0.0",), colors={"a": "blue", "b": "green"}),
                   lambda version: str(tmp_path / ("app-%s.tar.gz" % version)))


class _StubHAProxy:
    """The HAProxyClient calls the router makes, in memory (the socket protocol is tested in test__haproxy.py)."""

    def __init__(self, servers, map_path):
        self.servers_ = dict((key, {"state": "ready", "status": "UP", "weight": 100, "sessions": 0, "address": ""})
                             for key in servers)
        self.maps = {map_path: {"active": "be_blue"}}

    def check(self):
        return None

    def servers(self, backend):
        found = dict((srv, dict(info)) for (be, srv), info in self.servers_.items() if be == backend)
        if not found:
            raise NotFoundError("HAProxy backend %r not found" % backend)
        return found

    def server(self, backend, server):
        return dict(self.servers_[(backend, server)])

    def set_server_state(self, backend, server, state):
        self.servers_[(backend, server)]["state"] = state

    def set_weight(self, backend, server, weight):
        self.servers_[(backend, server)]["weight"] = weight

    def show_map(self, path):
        return dict(self.maps[path])

    def set_map(self, path, key, value):
        self.maps[path][key] = value


def _tarball(path, version):
    with tarfile.open(str(path), "w:gz") as tar:
        data = json.dumps({"version": version}).encode()
        info = tarfile.TarInfo("release.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return str(path)


def _hosts(tmp_path, monkeypatch, request=None):
    def artifact(version):
        # built once per version: a rebuilt tarball has another gzip mtime, hence another sha256 (a new artifact)
        path = tmp_path / ("meshapp-%s.tar.gz" % version)
        return str(path) if path.exists() else _tarball(path, version)

    specs = [{"name": n, "color": c, "release_root": str(tmp_path / n), "restart_command": "restart {name} {version}",
              "ready_url": "http://fake/%s/ready" % n} for n, c in (("a", "blue"), ("b", "green"))]
    targets = hosts.parse_targets(specs)
    for spec in specs:
        install_release(spec["release_root"], "5.0.0", artifact("5.0.0"))
        switch_current(spec["release_root"], "5.0.0")
    monkeypatch.setattr(hosts, "_http_status", lambda url, timeout=2.0: (200, b"{}"))
    fleet = hosts.HostsFleet(targets, interval=0.01, command_timeout=1, run_command=lambda argv: (0, "", ""),
                             sleep=lambda s: None)
    route_map = str(tmp_path / "route.map")
    stub = _StubHAProxy([("be_blue", "a"), ("be_green", "b")], route_map)
    return Harness(Platform(fleet, HAProxyRouter(stub, route_map=route_map, sleep=lambda s: None)), artifact)


# the ssh backend runs against real hosts: a 2-host network-namespace fleet of the lab (roles/lab/files/netfleet.py).
# ansible-test runs every unit test in its own fork, so a fixture's teardown never runs in the process that lives on:
# the fleet is brought up once per pytest process (xdist worker) by the first test that needs it, recorded in
# FLEET_DIR/<owner>/contract-up.json, reused by the following forks and brought down by conftest.py's pytest_sessionfinish
# in the owner. Each worker has its own prefix and subnet (wu<n>, 10.79.1<n>); tests/integration/test_ssh_fleet.py
# uses wsh / 10.79.0.
NETFLEET = Path(__file__).resolve().parents[3] / "roles" / "lab" / "files" / "netfleet.py"
FLEET_DIR = Path("/tmp/meshos-unit-fleets")


def _worker():
    digits = "".join(c for c in os.environ.get("PYTEST_XDIST_WORKER", "gw0") if c.isdigit()) or "0"
    return int(digits) % 10


SSH_PREFIX, SSH_SUBNET = "wu%d" % _worker(), "10.79.1%d" % _worker()


def _netfleet(root, *args):
    proc = subprocess.run([sys.executable, str(NETFLEET), "--root", str(root)] + list(args), capture_output=True,
                          text=True, timeout=180, check=False)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else {"msg": proc.stderr.strip()})


def _wsh_in_use():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in netns.splitlines() if line.startswith(SSH_PREFIX + "-")]


def fleet_owner_dir():
    """Where this pytest process's fleet is recorded (conftest.py sets MESHOS_UNIT_FLEET_OWNER in the owner)."""
    return FLEET_DIR / os.environ.get("MESHOS_UNIT_FLEET_OWNER", str(os.getpid()))


@pytest.fixture(scope="module")
def ssh_lab():
    if os.geteuid() != 0:
        pytest.skip("the ssh backend's contract runs against a network-namespace fleet: needs root")
    if not (shutil.which("ip") and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh")):
        pytest.skip("the ssh backend's contract needs iproute2 and openssh-server/openssh-client")
    root = fleet_owner_dir()
    record = root / "contract-up.json"
    if record.exists():  # an earlier fork of this process brought it up
        return json.loads(record.read_text())
    if _wsh_in_use():
        pytest.skip("a fleet with prefix %s exists already (%s): another run is using it" % (SSH_PREFIX, _wsh_in_use()))
    root.mkdir(parents=True, exist_ok=True)
    rc, up = _netfleet(root, "up", "--hosts", "2", "--prefix", SSH_PREFIX, "--subnet", SSH_SUBNET, "--mode", "netns")
    if rc != 0 or up.get("mode") != "netns":
        _netfleet(root, "down")
        pytest.skip("no network-namespace fleet here: %s" % (up.get("msg") or up.get("fallback_reason")))
    record.write_text(json.dumps(up))
    return up


def _ssh(tmp_path, monkeypatch, request=None):
    from ansible_collections.meshos.release.plugins.module_utils.platform.ssh_fleet import SshFleet, parse_ssh_targets

    lab = request.getfixturevalue("ssh_lab")

    def artifact(version):
        path = tmp_path / ("meshapp-%s.tar.gz" % version)
        return str(path) if path.exists() else _tarball(path, version)

    # the release roots live in this test's directory (the hosts share the filesystem, not the network); every
    # operation on them still goes through the host's sshd and python
    specs = []
    for name, host in (("a", lab["hosts"][0]), ("b", lab["hosts"][1])):
        root = str(tmp_path / name)
        install_release(root, "5.0.0", artifact("5.0.0"))
        switch_current(root, "5.0.0")
        specs.append({"name": name, "color": "blue" if name == "a" else "green", "release_root": root,
                      "restart_command": "true {name} {version}", "ready_url": "http://127.0.0.1:8080/ready",
                      "ssh_host": host["address"], "ssh_user": "root", "ssh_private_key_file": lab["client_key"],
                      "ssh_known_hosts_file": lab["known_hosts"]})
    fleet = SshFleet(parse_ssh_targets(specs), interval=0.05, ready_timeout=10, control_persist=5)
    route_map = str(tmp_path / "route.map")
    stub = _StubHAProxy([("be_blue", "a"), ("be_green", "b")], route_map)
    return Harness(Platform(fleet, HAProxyRouter(stub, route_map=route_map, sleep=lambda s: None)), artifact)


BACKENDS = {"fake": _fake, "hosts": _hosts, "ssh": _ssh}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path, monkeypatch):
    return BACKENDS[request.param](tmp_path, monkeypatch, request)


# ---------------------------------------------------------------------------- shape

def test_the_backend_implements_both_interfaces(backend):
    assert isinstance(backend.fleet, Fleet) and isinstance(backend.router, TrafficRouter)
    assert set(backend.router.capabilities) <= set(ROUTER_CAPABILITIES)


def test_targets_carry_names_versions_and_traffic_state(backend):
    targets = backend.platform.targets()
    assert [tg.name for tg in targets] == ["a", "b"]
    for target in targets:
        assert isinstance(target, Target)
        assert target.version == "5.0.0" == backend.fleet.current_version(target)
        assert target.state == "ready"
        assert backend.fleet.installed_versions(target) == ["5.0.0"]


def test_an_unknown_target_is_not_found(backend):
    with pytest.raises(NotFoundError):
        backend.router.refresh([Target("ghost", backend="be_blue")])


# ---------------------------------------------------------------------------- fleet

def test_install_is_idempotent_and_activate_switches(backend):
    target = backend.target("a")
    assert backend.fleet.install(target, "5.1.0", backend.artifact("5.1.0")) is True
    assert backend.fleet.install(target, "5.1.0", backend.artifact("5.1.0")) is False
    assert backend.fleet.installed_versions(target) == ["5.0.0", "5.1.0"]
    assert backend.fleet.verify(target, "5.1.0")["ok"] is True
    assert backend.fleet.current_version(target) == "5.0.0"  # installing never switches
    assert backend.fleet.activate(target, "5.1.0") is True
    assert backend.fleet.current_version(target) == "5.1.0"
    assert backend.fleet.activate(target, "5.1.0") is False
    backend.fleet.wait_ready(target, 1.0)


def test_activating_a_version_that_is_not_installed_changes_nothing(backend):
    target = backend.target("a")
    with pytest.raises(VersionNotInstalledError, match="5.9.0"):
        backend.fleet.activate(target, "5.9.0")
    assert backend.fleet.current_version(target) == "5.0.0"


def test_verify_reports_a_missing_release(backend):
    report = backend.fleet.verify(backend.target("a"), "5.9.0")
    assert report["present"] is False and report["ok"] is False and report["problems"]


def test_remove_never_removes_the_current_release(backend):
    target = backend.target("a")
    backend.fleet.install(target, "5.1.0", backend.artifact("5.1.0"))
    assert backend.fleet.remove(target, "5.0.0") is False
    assert backend.fleet.remove(target, "5.1.0") is True
    assert backend.fleet.installed_versions(target) == ["5.0.0"]


def test_prune_keeps_current_and_previous(backend):
    target = backend.target("a")
    for version in ("5.1.0", "5.2.0", "5.3.0"):
        backend.fleet.install(target, version, backend.artifact(version))
    backend.fleet.activate(target, "5.2.0")
    assert backend.fleet.prune(target, 2, check_mode=True) == ["5.0.0"]
    assert backend.fleet.installed_versions(target) == ["5.0.0", "5.1.0", "5.2.0", "5.3.0"]
    assert backend.fleet.prune(target, 2) == ["5.0.0"]
    assert backend.fleet.installed_versions(target) == ["5.1.0", "5.2.0", "5.3.0"]
    with pytest.raises(ConfigError, match="keep_releases"):
        backend.fleet.prune(target, 1)


# ---------------------------------------------------------------------------- router

def test_drain_disable_enable(backend):
    target = backend.target("a")
    backend.router.drain(target, 1.0)
    assert backend.target("a").state == "drain"
    assert backend.router.disable(target) is True
    assert backend.target("a").state == "maint"
    assert backend.router.enable(target) is True
    assert backend.target("a").state == "ready"
    assert backend.router.enable(target) is False
    backend.router.wait_up(target, 1.0)


@pytest.mark.parametrize("percent,n_canary,n_stable", [(5, 1, 3), (10, 1, 1), (25, 1, 3), (50, 1, 1), (90, 2, 2)])
def test_a_share_in_percent_becomes_router_weights(backend, percent, n_canary, n_stable):
    if not backend.router.supports(WEIGHTS):
        pytest.skip("no weights capability")
    canary, stable = backend.router.share_weights(percent, n_canary, n_stable)
    top = backend.router.max_weight()
    assert 0 < canary <= top and 0 < stable <= top
    assert abs(n_canary * canary / float(n_canary * canary + n_stable * stable) - percent / 100.0) < 0.02
    assert backend.router.share_weights(100, n_canary, n_stable)[1] == 0
    assert backend.router.share_weights(0, n_canary, n_stable)[0] == 0


def test_set_weight_is_read_back(backend):
    if not backend.router.supports(WEIGHTS):
        pytest.skip("no weights capability")
    target = backend.target("a")
    backend.router.set_weight(target, 7)
    assert backend.target("a").weight == 7


def test_the_color_route_switches_and_is_idempotent(backend):
    if not backend.router.supports(COLOR_ROUTE):
        pytest.skip("no colors capability")
    router = backend.router
    assert router.active_color() == "blue" and router.active_route() == router.color_route("blue")
    assert router.color_route("blue") != router.color_route("green")
    assert router.switch_traffic("green") is True and router.active_color() == "green"
    assert router.switch_traffic("green") is False
    with pytest.raises(ConfigError, match="purple"):
        router.switch_traffic("purple")


def test_errors_are_one_line_and_share_the_root(backend):
    with pytest.raises(MeshosError) as exc:
        backend.fleet.activate(backend.target("a"), "5.9.0")
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------- capabilities are explicit

def test_a_router_without_a_capability_says_so():
    class Minimal(TrafficRouter):
        capabilities = frozenset()

    router = Minimal()
    assert not router.supports(WEIGHTS) and router.traffic_meter([]) is None
    with pytest.raises(NotSupported, match="weights"):
        router.set_weight(Target("a"), 1)
    with pytest.raises(NotSupported, match="colors"):
        router.switch_traffic("blue")
    with pytest.raises(NotSupported, match="does not implement drain"):
        router.drain(Target("a"), 1.0)
