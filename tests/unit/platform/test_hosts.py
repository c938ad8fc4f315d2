# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from ansible_collections.meshos.release.plugins.module_utils._fsutil import sha256_file
from ansible_collections.meshos.release.plugins.module_utils.platform.hosts import parse_targets
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import (
    install_release,
    prune_releases,
    sort_versions,
    switch_current,
    verify_release,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ChecksumError,
    ConfigError,
    VersionNotInstalledError,
)


def _artifact(path, version, extra=None):
    files = {"meshapp.py": b"print('hi')\n", "release.json": json.dumps({"version": version}).encode()}
    files.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_install_verify_and_idempotence(tmp_path):
    art = _artifact(tmp_path / "a.tar.gz", "5.1.0")
    root = str(tmp_path / "host")
    assert install_release(root, "5.1.0", art, "sha256:" + sha256_file(art)) is True
    assert install_release(root, "5.1.0", art) is False
    assert verify_release(root, "5.1.0")["ok"] is True
    with open(os.path.join(root, "releases", "5.1.0", "meshapp.py"), "a") as handle:
        handle.write("#")
    report = verify_release(root, "5.1.0")
    assert report["ok"] is False and "meshapp.py" in report["problems"][0]
    assert install_release(root, "5.1.0", art) is True  # repaired
    assert verify_release(root, "5.1.0")["ok"] is True


def test_install_rejects_bad_checksum_and_unsafe_members(tmp_path):
    art = _artifact(tmp_path / "a.tar.gz", "5.1.0")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        install_release(str(tmp_path / "h"), "5.1.0", art, "0" * 64)
    with pytest.raises(ConfigError, match="invalid checksum"):
        install_release(str(tmp_path / "h"), "5.1.0", art, "xyz")
    bad = _artifact(tmp_path / "b.tar.gz", "5.1.0", {"../evil": b"x"})
    with pytest.raises(ChecksumError, match="unsafe member"):
        install_release(str(tmp_path / "h"), "5.1.0", bad)
    assert not os.path.exists(str(tmp_path / "evil"))
    assert not os.path.isdir(str(tmp_path / "h" / "releases" / "5.1.0"))


def test_missing_version_without_artifact(tmp_path):
    with pytest.raises(VersionNotInstalledError, match="not installed"):
        install_release(str(tmp_path), "5.1.0")


def test_switch_current_is_atomic_and_idempotent(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "releases", "1.0.0"))
    os.makedirs(os.path.join(root, "releases", "2.0.0"))
    assert switch_current(root, "1.0.0") is True
    assert switch_current(root, "1.0.0") is False
    assert switch_current(root, "2.0.0") is True
    assert os.readlink(os.path.join(root, "current")) == os.path.join("releases", "2.0.0")
    assert not [n for n in os.listdir(root) if n.startswith(".current")]


def test_prune_keeps_current_and_previous(tmp_path):
    root = str(tmp_path)
    for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "10.0.0"):
        os.makedirs(os.path.join(root, "releases", version))
    switch_current(root, "1.1.0")
    removed = prune_releases(root, 2)
    assert removed == ["1.2.0"]  # 2.0.0/10.0.0 newest, 1.1.0 current, 1.0.0 previous
    assert sort_versions(os.listdir(os.path.join(root, "releases"))) == ["1.0.0", "1.1.0", "2.0.0", "10.0.0"]
    with pytest.raises(ConfigError, match="keep_releases"):
        prune_releases(root, 1)


def test_parse_targets_errors():
    good = {"name": "app1", "release_root": "/srv/app1", "restart_command": "restart {name}", "ready_url": "http://x/ready"}
    assert parse_targets([good])[0].backend == "be_app"
    assert parse_targets([dict(good, color="green")], need_color=True)[0].backend == "be_green"
    for bad, msg in [([], "non-empty"), ([dict(good, name="a b")], "name"), ([good, good], "duplicated"),
                     ([dict(good, release_root="rel")], "absolute"), ([dict(good, color="red")], "color"),
                     ([good], "no color"), ([dict(good, restart_command="x {nope}")], "restart_command"),
                     ([dict(good, weight=0)], "weight")]:
        with pytest.raises(ConfigError, match=msg):
            parse_targets(bad, need_color=(msg == "no color"))


# ---------------------------------------------------------------------------- disk full, steady-state retention

def test_install_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from ansible_collections.meshos.release.plugins.module_utils.platform import releases
    from ansible_collections.meshos.release.plugins.module_utils.platform.base import InstallError
    art = _artifact(tmp_path / "a.tar.gz", "5.1.0")
    root = str(tmp_path / "host")

    def full(src, dst, *args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(releases.shutil, "copyfileobj", full)
    with pytest.raises(InstallError, match=r"cannot install 5\.1\.0 into .*: No space left on device$"):
        install_release(root, "5.1.0", art)
    assert os.listdir(os.path.join(root, "releases")) == []  # no staging directory left behind


def test_install_into_a_read_only_release_dir(tmp_path):
    from ansible_collections.meshos.release.plugins.module_utils.platform.base import InstallError
    if os.geteuid() == 0:
        pytest.skip("root ignores directory modes")
    art = _artifact(tmp_path / "a.tar.gz", "5.1.0")
    root = tmp_path / "host"
    (root / "releases").mkdir(parents=True)
    os.chmod(str(root / "releases"), 0o555)
    try:
        with pytest.raises(InstallError, match="Permission denied"):
            install_release(str(root), "5.1.0", art)
    finally:
        os.chmod(str(root / "releases"), 0o755)


class _FakeHAProxy:
    """The part of HAProxyClient the hosts platform uses, in memory."""

    socket_path = "/fake.sock"
    timeout = 1.0

    def __init__(self, names):
        self.state = dict((n, "ready") for n in names)
        self.weight = dict((n, 100) for n in names)

    def check(self):
        return None

    def servers(self, backend):
        return dict((n, {"state": s, "status": s.upper(), "weight": self.weight[n], "sessions": 0, "address": ""})
                    for n, s in self.state.items())

    def server(self, backend, server):
        return self.servers(backend)[server]

    def set_server_state(self, backend, server, state):
        self.state[server] = state

    def set_weight(self, backend, server, weight):
        self.weight[server] = weight


class _Fleet:
    """Hosts with real release directories; 'processes' are the release.json of `current` at the last restart."""

    def __init__(self, tmp_path, monkeypatch, names=("app1", "app2")):
        from ansible_collections.meshos.release.plugins.module_utils.platform import hosts
        from ansible_collections.meshos.release.plugins.module_utils.platform.base import Platform
        from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy_router import HAProxyRouter
        self.tmp = tmp_path
        self.running = {}
        self.haproxy = _FakeHAProxy(names)
        self.targets = parse_targets([{"name": n, "release_root": str(tmp_path / n), "restart_command": "restart {name}",
                                       "ready_url": "http://fake/%s/ready" % n} for n in names])
        ticks = iter(range(10 ** 6))

        def clock():
            return float(next(ticks))
        self.fleet = hosts.HostsFleet(self.targets, interval=0.01, command_timeout=3, run_command=self.restart,
                                      sleep=lambda s: None, clock=clock)
        self.platform = Platform(self.fleet, HAProxyRouter(self.haproxy, interval=0.01, sleep=lambda s: None,
                                                           clock=clock))
        monkeypatch.setattr(hosts, "_http_status", self.http)

    def restart(self, argv):
        name = argv[-1]
        with open(os.path.join(str(self.tmp / name), "current", "release.json")) as handle:
            release = json.load(handle)
        if release.get("fault", {}).get("crash_on_start"):
            self.running[name] = None
            return 1, "", "instance %s exited at start" % name
        self.running[name] = release
        return 0, "{}", ""

    def http(self, url, timeout=2.0):
        name = url.split("/")[3]
        release = self.running.get(name)
        if release is None:
            return 0, b""
        if release.get("fault", {}).get("health_fail"):
            return 503, b""
        return 200, json.dumps({"version": release["version"]}).encode()

    def artifact(self, version, **fault):
        path = self.tmp / ("meshapp-%s.tar.gz" % version)
        _artifact(path, version, {"release.json": json.dumps({"version": version, "fault": fault}).encode()})
        return str(path)

    def runner(self, ready_timeout=3):
        from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import Rollout, StateStore
        return Rollout(self.platform, StateStore(str(self.tmp / "state"), "prod"), drain_timeout=3,
                       ready_timeout=ready_timeout, clock=lambda: 0.0)

    def releases(self, name):
        return sort_versions(n for n in os.listdir(str(self.tmp / name / "releases")) if not n.startswith("."))


@pytest.mark.parametrize("fault", ["health_fail", "crash_on_start", "error_ratio"])
def test_a_failed_eighth_release_rolls_back_at_steady_state_retention(tmp_path, monkeypatch, fault):
    """Issue 9: 7 releases deployed (5 kept), the 8th fails; the rollback completes and retention stays 5."""
    from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import RolloutFailed
    fleet = _Fleet(tmp_path, monkeypatch)
    for minor in range(1, 8):
        version = "5.%d.0" % minor
        result = fleet.runner().rolling(version, fleet.artifact(version), keep_releases=5)
        assert result["status"] == "complete"
    assert fleet.releases("app1") == ["5.3.0", "5.4.0", "5.5.0", "5.6.0", "5.7.0"]
    bad = fleet.artifact("5.8.0", **{fault: 0.5 if fault == "error_ratio" else True})
    if fault == "error_ratio":
        # the module cannot see errors: the first batch goes out, the batch gate fails, the role rolls back
        result = fleet.runner().rolling("5.8.0", bad, max_batches=1, keep_releases=5)
        assert result["status"] == "in_progress"
        assert len(fleet.releases("app1")) == 6
        report = fleet.runner().verify_backup(None, retention=5)
        assert report["ok"] is True, report  # 6 releases kept is a warning, never a refusal
        assert report["retention_warnings"] and report["targets"]["app1"]["version"] == "5.7.0"
        result = fleet.runner().rollback(None, None)
        assert result["status"] == "complete" and result["removed_failed_release"] == {"app1": ["5.8.0"],
                                                                                       "app2": ["5.8.0"]}
    else:
        with pytest.raises(RolloutFailed) as exc:
            fleet.runner().rolling("5.8.0", bad, max_batches=1, keep_releases=5)
        assert "restored app1 to 5.7.0" in str(exc.value) and "fleet now on 5.7.0" in str(exc.value)
        assert fleet.runner().verify_backup(None, retention=5)["ok"] is True
        assert fleet.runner().rollback(None, None)["status"] == "complete"
    for target in fleet.targets:
        name = target.name
        assert fleet.fleet.current_version(target) == "5.7.0"
        assert fleet.running[name]["version"] == "5.7.0" and fleet.haproxy.state[name] == "ready"
        assert fleet.releases(name) == ["5.3.0", "5.4.0", "5.5.0", "5.6.0", "5.7.0"]
    # and the next good release deploys normally
    assert fleet.runner().rolling("5.9.0", fleet.artifact("5.9.0"), keep_releases=5)["status"] == "complete"


def test_failing_restart_never_leaves_current_switched_while_the_old_process_runs(tmp_path, monkeypatch):
    from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import RolloutFailed
    fleet = _Fleet(tmp_path, monkeypatch)
    fleet.runner().rolling("5.1.0", fleet.artifact("5.1.0"), keep_releases=5)
    with pytest.raises(RolloutFailed) as exc:
        fleet.runner().rolling("5.2.0", fleet.artifact("5.2.0", crash_on_start=True), keep_releases=5)
    assert "restart of app1 failed (exit 1)" in str(exc.value)
    for target in fleet.targets:
        assert fleet.fleet.current_version(target) == "5.1.0"
        assert fleet.running[target.name]["version"] == "5.1.0"
        assert fleet.haproxy.state[target.name] == "ready"


def test_a_broken_restart_command_puts_current_back_and_re_enables_the_old_process(tmp_path, monkeypatch):
    from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import RolloutFailed
    fleet = _Fleet(tmp_path, monkeypatch)
    fleet.runner().rolling("5.1.0", fleet.artifact("5.1.0"), keep_releases=5)
    fleet.fleet.run_command = lambda argv: (127, "", "restart: command not found")
    fleet.targets[0].extra["status_url"] = "http://fake/app1/status"
    with pytest.raises(RolloutFailed, match="restart: command not found.*restored app1 to 5.1.0") as exc:
        fleet.runner().rolling("5.2.0", fleet.artifact("5.2.0"), keep_releases=5)
    assert "old process still serves 5.1.0" in exc.value.result["restored"][0]["note"]
    assert fleet.fleet.current_version(fleet.targets[0]) == "5.1.0"
    assert fleet.running["app1"]["version"] == "5.1.0" and fleet.haproxy.state["app1"] == "ready"
