# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.meshos.release.plugins.module_utils.rollout.common import (
    RolloutFailed,
    parse_batch_size,
    validate_canary,
)
from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import Rollout, status
from ansible_collections.meshos.release.plugins.module_utils.state.store import StateError, StateStore
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COUNTERS,
    ChecksumError,
    ConfigError,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy_router import canary_weights
from ansible_collections.meshos.release.tests.unit.platform.fake_backend import FakePlatform


def _runner(tmp_path, platform, check_mode=False):
    return Rollout(platform, StateStore(str(tmp_path), "prod", check_mode=check_mode), check_mode=check_mode)


@pytest.mark.parametrize("value,total,expected", [("1", 4, 1), ("2", 4, 2), ("25%", 4, 1), ("50%", 4, 2),
                                                  ("100%", 4, 4), ("9", 4, 4), ("10%", 4, 1)])
def test_parse_batch_size(value, total, expected):
    assert parse_batch_size(value, total) == expected


@pytest.mark.parametrize("value", ["0", "-1", "abc", "0%", "150%", ""])
def test_parse_batch_size_rejects(value):
    with pytest.raises(ConfigError, match="invalid batch_size"):
        parse_batch_size(value, 4)


@pytest.mark.parametrize("initial,steps,msg", [
    (0, [10, 100], "initial_traffic"), (100, [100], "initial_traffic"), (5, [10, 5, 100], "not increasing"),
    (5, [5, 100], "not increasing"), (5, [10, 50], "end at 100"), (5, [], "non-empty"), (True, [100], "initial_traffic"),
])
def test_validate_canary_rejects(initial, steps, msg):
    with pytest.raises(ConfigError, match=msg):
        validate_canary(initial, steps)


@pytest.mark.parametrize("percent,n_canary,n_stable", [(5, 1, 3), (10, 1, 3), (25, 1, 3), (50, 1, 3), (1, 1, 9),
                                                       (90, 2, 2)])
def test_canary_weights_match_the_share(percent, n_canary, n_stable):
    wc, ws = canary_weights(percent, n_canary, n_stable)
    assert 0 < wc <= 256 and 0 < ws <= 256
    share = n_canary * wc / float(n_canary * wc + n_stable * ws)
    assert abs(share - percent / 100.0) < 0.01


def test_rolling_drains_before_activating_and_records_state(tmp_path):
    platform = FakePlatform(["a", "b", "c"])
    result = _runner(tmp_path, platform).rolling("5.1.0", batch_size="1", keep_releases=0)
    assert result["status"] == "complete" and result["changed"]
    assert result["versions"] == {"a": "5.1.0", "b": "5.1.0", "c": "5.1.0"}
    order = [c for c in platform.calls if c[1] == "a"]
    assert order[0] == ("drain", "a") and order[1][0] == "activate" and order[2] == ("enable", "a")
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["last_operation"]["status"] == "complete"
    assert state["deployed_version"] == "5.1.0" and state["previous_version"] == "5.0.0"
    assert all(step["done"] for step in state["operation"]["steps"])


def test_rolling_is_idempotent(tmp_path):
    platform = FakePlatform(["a", "b"], version="5.1.0")
    result = _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    assert result["changed"] is False and platform.calls == []


def test_rolling_resumes_after_an_interruption(tmp_path):
    """A killed run (not a failed step) leaves the operation in progress; the re-run resumes it."""
    platform = FakePlatform(["a", "b", "c"])

    def killed(target, version, force_restart=False):
        raise KeyboardInterrupt()

    original = platform.activate
    platform.activate = lambda target, version, force_restart=False: (
        killed(target, version) if target.name == "b" else original(target, version, force_restart))
    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["operation"]["status"] == "in_progress" and state["operation"]["done"] == ["a"]
    assert state["operation"]["pending"] == ["b"]
    platform.activate = original
    platform.calls = []
    result = _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    assert result["status"] == "complete"
    assert not [c for c in platform.calls if c[1] == "a"]  # done before: untouched
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["operation"]["resumed"] == 1


def test_failed_restart_restores_every_changed_host_before_failing(tmp_path):
    platform = FakePlatform(["a", "b", "c"])
    platform.fail_on, platform.fail_version = "c", "5.1.0"
    with pytest.raises(RolloutFailed) as exc:
        _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    msg = str(exc.value)
    assert "\n" not in msg and "restart of c failed" in msg and "restored a, b, c to 5.0.0" in msg
    assert "fleet now on 5.0.0" in msg
    assert platform.current == dict.fromkeys("abc", "5.0.0")
    assert all(tg.state == "ready" for tg in platform.targets())
    result = exc.value.result
    assert result["status"] == "failed" and result["versions"] == dict.fromkeys("abc", "5.0.0")
    assert [r["restored"] for r in result["restored"]] == [True, True, True]
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["last_operation"]["status"] == "failed" and state["failed_versions"] == ["5.1.0"]
    # the restore switched `current` back and restarted the old release on the failing host
    assert ("activate", "c", "5.0.0") in platform.calls
    # a rollback afterwards has nothing to do and never picks the failed release
    assert _runner(tmp_path, platform).rollback(None, None)["versions"] == dict.fromkeys("abc", "5.0.0")


def test_install_failure_fails_before_any_host_leaves_traffic(tmp_path):
    platform = FakePlatform(["a", "b"], installed=("5.0.0",))
    platform.fail_install = "b"
    with pytest.raises(RolloutFailed, match="No space left on device") as exc:
        _runner(tmp_path, platform).rolling("5.1.0", artifact=__file__, keep_releases=0)
    assert not [c for c in platform.calls if c[0] in ("drain", "activate")]
    assert platform.current == dict.fromkeys("ab", "5.0.0")
    # what the failed deploy installed on a is removed again: retention does not grow
    assert ("remove", "a", "5.1.0") in platform.calls and platform.installed["a"] == ["5.0.0"]
    assert exc.value.result["removed_failed_release"] == {"a": ["5.1.0"]}


def test_a_host_that_cannot_be_restored_leaves_traffic(tmp_path):
    platform = FakePlatform(["a", "b"])
    platform.fail_on = "b"  # every restart of b fails, the old release too
    with pytest.raises(RolloutFailed) as exc:
        _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    msg = str(exc.value)
    assert "restored a to 5.0.0" in msg and "could not restore b" in msg and "taken out of traffic" in msg
    assert ("disable", "b") in platform.calls and platform.targets()[1].state == "maint"
    assert "fleet now on 5.0.0" in msg


def test_max_batches_leaves_mixed_versions(tmp_path):
    platform = FakePlatform(["a", "b", "c", "d"])
    result = _runner(tmp_path, platform).rolling("5.1.0", batch_size="50%", max_batches=1, keep_releases=0)
    assert result["status"] == "in_progress" and result["mixed_versions"] and result["batches_remaining"] == 1


def test_check_mode_plans_without_changes(tmp_path):
    platform = FakePlatform(["a", "b"])
    result = _runner(tmp_path, platform, check_mode=True).rolling("5.1.0", keep_releases=0)
    assert result["changed"] is True
    assert [p["action"] for p in result["plan"] if p["target"] == "a"][:2] == ["drain", "activate"]
    assert platform.calls == [] and not (tmp_path / "prod.json").exists()


def test_version_not_installed_touches_nothing(tmp_path):
    platform = FakePlatform(["a", "b"], installed=("5.0.0",))
    with pytest.raises(VersionNotInstalledError, match=r"5\.2\.0 is not installed on a \(available: 5\.0\.0\)"):
        _runner(tmp_path, platform).rolling("5.2.0")
    assert platform.calls == []


def test_blue_green_switches_to_the_idle_color(tmp_path):
    platform = FakePlatform(["b1", "g1"], colors={"b1": "blue", "g1": "green"})
    result = _runner(tmp_path, platform).blue_green("5.1.0", keep_releases=0)
    assert result["active_color"] == "green" and platform.color == "green"
    assert ("activate", "g1", "5.1.0") in platform.calls and not [c for c in platform.calls if c[1] == "b1"]
    rb = _runner(tmp_path, platform).rollback("blue-green", None)
    assert rb["active_color"] == "blue" and platform.color == "blue"


def test_canary_start_advance_abort(tmp_path):
    platform = FakePlatform(["a", "b", "c", "d"])
    result = _runner(tmp_path, platform).canary("start", "5.1.0", initial_traffic=5)
    assert result["canary_percent"] == 5 and platform.current["a"] == "5.1.0" and platform.current["b"] == "5.0.0"
    result = _runner(tmp_path, platform).canary("advance", None)
    assert result["canary_percent"] == 10
    result = _runner(tmp_path, platform).rollback("canary", None)
    assert result["status"] == "aborted" and platform.current["a"] == "5.0.0"
    assert set(platform.weights.values()) == {100}


def test_canary_advance_to_100_promotes(tmp_path):
    platform = FakePlatform(["a", "b"])
    runner = _runner(tmp_path, platform)
    runner.canary("start", "5.1.0", initial_traffic=50, steps=[100])
    result = _runner(tmp_path, platform).canary("advance", None, steps=[100])
    assert result["status"] == "complete" and set(platform.current.values()) == {"5.1.0"}


def test_rollback_picks_the_previous_version(tmp_path):
    platform = FakePlatform(["a"], version="5.1.0", installed=("4.9.0", "5.0.0", "5.1.0"))
    result = _runner(tmp_path, platform).rollback(None, None)
    assert result["versions"] == {"a": "5.0.0"}
    assert os.path.exists(str(tmp_path / "prod.json"))


def test_bad_environment_name(tmp_path):
    with pytest.raises(StateError, match="'../etc' is not allowed"):
        StateStore(str(tmp_path), "../etc")


def test_rollback_after_a_stopped_deploy_returns_to_what_it_replaced(tmp_path):
    platform = FakePlatform(["a", "b", "c"], version="5.0.0", installed=("5.0.0", "5.1.0", "5.2.0"))
    _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)  # complete: previous_version 5.0.0
    result = _runner(tmp_path, platform).rolling("5.2.0", max_batches=1, keep_releases=0)  # stopped after a batch
    assert result["status"] == "in_progress" and platform.current["a"] == "5.2.0"
    result = _runner(tmp_path, platform).rollback(None, None)
    assert result["versions"] == {"a": "5.1.0", "b": "5.1.0", "c": "5.1.0"}


# ---------------------------------------------------------------------------- canary weights (issue 16)

def test_rollback_after_a_crashed_canary_restores_the_recorded_weights(tmp_path):
    platform = FakePlatform(["a", "b", "c", "d"])
    platform.weights["d"] = 50
    platform.targets()[3].weight = 50  # a server whose normal weight is not the default
    _runner(tmp_path, platform).canary("start", "5.1.0", initial_traffic=20, steps=[50, 100])
    assert platform.weights["a"] != 100
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["operation"]["original_weights"] == {"a": 100, "b": 100, "c": 100, "d": 50}
    for tg in platform.targets():
        tg.weight = platform.weights[tg.name]
    report = status(platform, StateStore(str(tmp_path), "prod"))
    assert report["healthy"] is False and any("normal weight" in p for p in report["problems"])
    # the caller guesses "rolling" (the last completed deploy's strategy): the canary is aborted anyway
    result = _runner(tmp_path, platform).rollback("rolling", None)
    assert result["status"] == "aborted" and platform.current["a"] == "5.0.0"
    assert platform.weights == {"a": 100, "b": 100, "c": 100, "d": 50}
    for tg in platform.targets():
        tg.weight, tg.version = platform.weights[tg.name], platform.current[tg.name]
    report = status(platform, StateStore(str(tmp_path), "prod"))
    assert report["healthy"] is True, report["problems"]


def test_a_failed_canary_promote_returns_fleet_and_weights(tmp_path):
    platform = FakePlatform(["a", "b", "c"])
    _runner(tmp_path, platform).canary("start", "5.1.0", initial_traffic=5)
    platform.fail_on, platform.fail_version = "c", "5.1.0"
    with pytest.raises(RolloutFailed, match="restart of c failed"):
        _runner(tmp_path, platform).canary("promote", None)
    assert platform.current == dict.fromkeys("abc", "5.0.0")
    assert platform.weights == dict.fromkeys("abc", 100)


# ---------------------------------------------------------------------------- artifact verification (issue 16)

def _manifest(tmp_path, version, artifact, sha=None):
    from ansible_collections.meshos.release.plugins.module_utils._fsutil import sha256_file
    path = tmp_path / ("release-%s.json" % version)
    path.write_text(json.dumps({"version": version, "artifacts": [
        {"name": os.path.basename(artifact), "sha256": sha or sha256_file(artifact)}]}))
    return str(path)


def test_manifest_mismatch_fails_before_any_host_changes(tmp_path):
    artifact = tmp_path / "meshapp-5.1.0.tar.gz"
    artifact.write_bytes(b"replaced artifact")
    platform = FakePlatform(["a", "b"], installed=("5.0.0",))
    manifest = _manifest(tmp_path, "5.1.0", str(artifact), sha="ab" * 32)
    runner = Rollout(platform, StateStore(str(tmp_path), "prod"), manifest=manifest)
    with pytest.raises(ChecksumError) as exc:
        runner.rolling("5.1.0", artifact=str(artifact))
    msg = str(exc.value)
    assert "meshapp-5.1.0.tar.gz" in msg and "ab" * 32 in msg and manifest in msg
    assert platform.calls == [] and not (tmp_path / "prod.json").exists()
    # a manifest of another version is refused too
    other = _manifest(tmp_path, "5.0.9", str(artifact))
    with pytest.raises(ChecksumError, match="for version 5.0.9, not 5.1.0"):
        Rollout(platform, StateStore(str(tmp_path), "prod"), manifest=other).rolling("5.1.0", artifact=str(artifact))
    # the right manifest installs
    good = _manifest(tmp_path, "5.1.0", str(artifact))
    result = Rollout(platform, StateStore(str(tmp_path), "prod"), manifest=good).rolling(
        "5.1.0", artifact=str(artifact), keep_releases=0)
    assert result["status"] == "complete" and result["artifact_check"]["manifest_verified"] is True


def test_require_checksum_refuses_an_unchecked_artifact(tmp_path):
    artifact = tmp_path / "meshapp-5.1.0.tar.gz"
    artifact.write_bytes(b"x")
    platform = FakePlatform(["a"], installed=("5.0.0",))
    runner = Rollout(platform, StateStore(str(tmp_path), "prod"), require_checksum=True)
    with pytest.raises(ConfigError, match="require_checksum is set: artifact .*meshapp-5.1.0.tar.gz"):
        runner.rolling("5.1.0", artifact=str(artifact))
    assert platform.calls == []


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen not installed")
def test_manifest_signature_is_verified(tmp_path):
    import subprocess
    from ansible_collections.meshos.release.plugins.module_utils.release import manifest as mf

    def run(argv, data=None):
        proc = subprocess.run(argv, input=data if isinstance(data, bytes) else (data or "").encode(),
                              capture_output=True, check=False)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    artifact = tmp_path / "meshapp-5.1.0.tar.gz"
    artifact.write_bytes(b"release")
    manifest = _manifest(tmp_path, "5.1.0", str(artifact))
    with open(manifest, "rb") as handle:
        (tmp_path / "release-5.1.0.json.sig").write_text(mf.sign(run, str(key), handle.read()))
    platform = FakePlatform(["a"], installed=("5.0.0",))
    ok = Rollout(platform, StateStore(str(tmp_path), "prod"), manifest=manifest, public_key=str(key) + ".pub",
                 require_signature=True, run_command=run)
    assert ok._verify_artifact("5.1.0", str(artifact), None)["signature_verified"] is True
    bad = Rollout(platform, StateStore(str(tmp_path), "prod"), manifest=manifest, public_key=str(other) + ".pub",
                  run_command=run)
    with pytest.raises(ChecksumError, match="does not verify"):
        bad.rolling("5.1.0", artifact=str(artifact))
    assert platform.calls == []


# ---------------------------------------------------------------------------- blue-green phases

def test_blue_green_prepare_then_switch(tmp_path):
    platform = FakePlatform(["b1", "g1"], colors={"b1": "blue", "g1": "green"})
    result = _runner(tmp_path, platform).blue_green("5.1.0", keep_releases=0, phase="prepare")
    assert result["status"] == "prepared" and platform.color == "blue" and platform.current["g1"] == "5.1.0"
    assert result["idle_color"] == "green" and result["idle_targets"][0]["name"] == "g1"
    result = _runner(tmp_path, platform).blue_green("5.1.0", keep_releases=0, phase="switch")
    assert result["status"] == "complete" and platform.color == "green"


def test_blue_green_switch_needs_a_prepared_color_and_rollback_before_switch_keeps_traffic(tmp_path):
    platform = FakePlatform(["b1", "g1"], colors={"b1": "blue", "g1": "green"})
    with pytest.raises(ConfigError, match="phase=switch needs the green color prepared"):
        _runner(tmp_path, platform).blue_green("5.1.0", phase="switch")
    _runner(tmp_path, platform).blue_green("5.1.0", keep_releases=0, phase="prepare")
    # the gate on the idle color failed: rollback must not switch to it
    result = _runner(tmp_path, platform).rollback(None, None)
    assert platform.color == "blue" and result["active_color"] == "blue"
    assert platform.current == {"b1": "5.0.0", "g1": "5.0.0"}


# ---------------------------------------------------------------------------- version rule

@pytest.mark.parametrize("bad", ["5.1", "5.2.0\n", "5" * 300, "v5.1.0", "../5.1.0", "5.1.0 ", "", None, 5])
def test_bad_versions_give_one_line_errors(tmp_path, bad):
    platform = FakePlatform(["a"])
    with pytest.raises(ConfigError) as exc:
        _runner(tmp_path, platform).rolling(bad)
    msg = str(exc.value)
    assert ("invalid version" in msg or "version" in msg and "semantic version" in msg) and "\n" not in msg
    assert len(msg) < 300
    assert platform.calls == []


def test_a_failed_blue_green_prepare_never_switches_on_rollback(tmp_path):
    platform = FakePlatform(["b1", "g1"], colors={"b1": "blue", "g1": "green"})
    platform.fail_on, platform.fail_version = "g1", "5.1.0"
    with pytest.raises(RolloutFailed, match="restored g1 to 5.0.0"):
        _runner(tmp_path, platform).blue_green("5.1.0", keep_releases=0)
    assert platform.color == "blue" and platform.current == {"b1": "5.0.0", "g1": "5.0.0"}
    result = _runner(tmp_path, platform).rollback(None, None)
    assert platform.color == "blue" and result["active_color"] == "blue"
    assert ("switch", "green") not in platform.calls


class _Meter:
    def __init__(self, haproxy, live, frontends=None, interval=0.25):
        self.live = live

    def start(self):
        return self

    def stop(self):
        return {"source": "haproxy:/fake", "requests": 10, "failed_requests": 0, "downtime_seconds": 0.0,
                "live": self.live()}


class _CountingPlatform(FakePlatform):
    """The fake with the COUNTERS capability: a meter over its live routes."""

    capabilities = FakePlatform.capabilities | {COUNTERS}

    def traffic_meter(self, targets, frontends=None, interval=0.25, factory=None):
        return factory(None, lambda: self.live_routes(targets), frontends=frontends, interval=interval).start()


def test_measured_run_attaches_traffic_to_success_and_failure(tmp_path):
    from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import measured_run
    platform = _CountingPlatform(["a", "b"])
    runner = _runner(tmp_path, platform)
    result = measured_run(runner, {}, lambda: runner.rolling("5.1.0", keep_releases=0), meter_factory=_Meter)
    assert result["traffic"]["measured"]["source"] == "haproxy:/fake"
    assert result["traffic"]["measured"]["live"] == ["be_app"]
    platform.fail_on, platform.fail_version = "a", "5.2.0"
    platform.installed["a"].append("5.2.0")
    platform.installed["b"].append("5.2.0")
    with pytest.raises(RolloutFailed) as exc:
        measured_run(runner, {}, lambda: runner.rolling("5.2.0", keep_releases=0), meter_factory=_Meter)
    assert exc.value.result["traffic"]["measured"]["requests"] == 10
    # without HAProxy nothing is measured, and the result says so instead of a 0
    plain = FakePlatform(["a"])
    runner = _runner(tmp_path / "other", plain)
    result = measured_run(runner, {}, lambda: runner.rolling("5.1.0", keep_releases=0))
    assert result["traffic"]["measured"]["source"] is None and result["traffic"]["measured"]["reason"]


def test_rolling_back_one_batch_leaves_the_failed_release_for_the_next_operation_to_remove(tmp_path):
    fleet = FakePlatform(["a", "b", "c"], installed=("5.0.0",))
    _runner(tmp_path, fleet).rolling("5.1.0", artifact=__file__, max_batches=1, keep_releases=0)
    assert all("5.1.0" in fleet.installed[n] for n in "abc")  # installed everywhere before the first drain
    batch = FakePlatform(["a"])  # the role rolls back the failed batch only: a view of the same hosts
    batch.current, batch.installed, batch.weights = fleet.current, fleet.installed, fleet.weights
    result = _runner(tmp_path, batch).rollback("rolling", "5.0.0")
    assert result["removed_failed_release"] == {"a": ["5.1.0"]}
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["pending_cleanup"] == {"b": ["5.1.0"], "c": ["5.1.0"]}
    _runner(tmp_path, fleet).rollback("rolling", "5.0.0")  # the next operation on the whole fleet
    assert fleet.installed == dict.fromkeys("abc", ["5.0.0"])
    assert "pending_cleanup" not in json.loads((tmp_path / "prod.json").read_text())


class _ConcurrencyProbe(FakePlatform):
    """Counts how many activations run at the same time (a barrier-free count, no timing assertions)."""

    def __init__(self, names, **kw):
        super(_ConcurrencyProbe, self).__init__(names, **kw)
        import threading
        self._probe_lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.release = threading.Event()

    def activate(self, target, version, force_restart=False):
        with self._probe_lock:
            self.running += 1
            self.most = max(self.most, self.running)
        # hold until the whole batch is in, or give up after a while (a sequential runner never gets there)
        self.release.wait(2.0)
        try:
            return super(_ConcurrencyProbe, self).activate(target, version, force_restart)
        finally:
            with self._probe_lock:
                self.running -= 1
                if self.running == 0:
                    self.release.clear()

    def drain(self, target, timeout):
        return super(_ConcurrencyProbe, self).drain(target, timeout)


def _probe_release(platform, expected):
    import threading

    def watch():
        while not platform.release.is_set():
            with platform._probe_lock:
                if platform.running >= expected:
                    platform.release.set()
                    return
            threading.Event().wait(0.01)
    threading.Thread(target=watch, daemon=True).start()


def test_a_batch_changes_its_hosts_in_parallel_up_to_forks(tmp_path):
    platform = _ConcurrencyProbe(["a", "b", "c", "d", "e", "f"])
    runner = Rollout(platform, StateStore(str(tmp_path), "prod"), forks=3)
    _probe_release(platform, 3)
    result = runner.rolling("5.1.0", batch_size="3", keep_releases=0)
    assert result["status"] == "complete" and platform.current == dict.fromkeys("abcdef", "5.1.0")
    assert platform.most == 3  # three at once, never the next batch's hosts with them
    state = json.loads((tmp_path / "prod.json").read_text())
    assert sorted(state["last_operation"]["versions"]) == list("abcdef")


def test_forks_1_changes_one_host_after_another(tmp_path):
    platform = _ConcurrencyProbe(["a", "b", "c"])
    platform.release.set()
    runner = Rollout(platform, StateStore(str(tmp_path), "prod"), forks=1)
    result = runner.rolling("5.1.0", batch_size="3", keep_releases=0)
    assert result["status"] == "complete" and platform.most == 1


def test_a_failed_host_in_a_parallel_batch_restores_the_whole_batch(tmp_path):
    platform = FakePlatform(["a", "b", "c", "d"])
    platform.fail_on, platform.fail_version = "b", "5.1.0"
    runner = Rollout(platform, StateStore(str(tmp_path), "prod"), forks=4)
    with pytest.raises(RolloutFailed) as exc:
        runner.rolling("5.1.0", batch_size="2", keep_releases=0)
    assert "restart of b failed" in str(exc.value)
    # a (the other host of the failed batch) finished and was restored; the second batch never started
    assert platform.current == dict.fromkeys("abcd", "5.0.0")
    assert not [c for c in platform.calls if c[0] == "activate" and c[1] in ("c", "d")]
    assert all(tg.state == "ready" for tg in platform.targets())


@pytest.mark.parametrize("forks", [0, 257, "5", True])
def test_bad_forks_is_refused_before_anything_changes(tmp_path, forks):
    from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import build_runner
    from ansible_collections.meshos.release.plugins.module_utils.platform.options import rollout_argument_spec
    params = dict((k, v.get("default")) for k, v in rollout_argument_spec().items())
    params.update(environment="prod", state_dir=str(tmp_path), haproxy_socket="/nonexistent.sock", forks=forks,
                  targets=[{"name": "a", "release_root": str(tmp_path), "restart_command": "true",
                            "ready_url": "http://127.0.0.1:1/ready"}])
    with pytest.raises(ConfigError, match="invalid forks"):
        build_runner(params, check_mode=False)
    assert not (tmp_path / "prod.json").exists()


def test_a_batch_of_the_whole_fleet_keeps_one_server_in_traffic(tmp_path):
    platform = _ConcurrencyProbe(["a", "b", "c"])
    _probe_release(platform, 2)
    runner = Rollout(platform, StateStore(str(tmp_path), "prod"), forks=5)
    result = runner.rolling("5.1.0", batch_size="100%", keep_releases=0)
    assert result["status"] == "complete" and platform.most == 2
