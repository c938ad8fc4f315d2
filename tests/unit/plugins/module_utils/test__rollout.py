# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.meshos.release.plugins.module_utils._rollout import (
    Rollout,
    StateStore,
    canary_weights,
    parse_batch_size,
    validate_canary,
)
from ansible_collections.meshos.release.plugins.module_utils.platform import (
    ConfigError,
    Platform,
    Target,
    VersionNotInstalledError,
)


class FakePlatform(Platform):
    """In-memory platform: records every call."""

    def __init__(self, names, version="5.0.0", installed=("5.0.0", "5.1.0"), colors=None):
        self._t = [Target(n, backend="be_app", color=(colors or {}).get(n, ""), state="ready", weight=100)
                   for n in names]
        self.current = dict((n, version) for n in names)
        self.installed = dict((n, list(installed)) for n in names)
        self.weights = dict((n, 100) for n in names)
        self.color = "blue"
        self.calls = []
        self.fail_on = None

    def targets(self):
        return self._t

    def current_version(self, target):
        return self.current[target.name]

    def installed_versions(self, target):
        return self.installed[target.name]

    def install(self, target, version, artifact=None, checksum=None):
        self.calls.append(("install", target.name, version))
        if version not in self.installed[target.name]:
            self.installed[target.name].append(version)
            return True
        return False

    def activate(self, target, version):
        self.calls.append(("activate", target.name, version))
        if self.fail_on == target.name:
            raise VersionNotInstalledError("boom on %s" % target.name)
        changed = self.current[target.name] != version
        self.current[target.name] = version
        return changed

    def drain(self, target, timeout):
        self.calls.append(("drain", target.name))
        target.state = "drain"
        return True

    def enable(self, target):
        self.calls.append(("enable", target.name))
        target.state = "ready"
        return True

    def set_weight(self, target, weight):
        self.calls.append(("weight", target.name, weight))
        self.weights[target.name] = weight
        return True

    def active_color(self):
        return self.color

    def switch_traffic(self, color):
        self.calls.append(("switch", color))
        changed = self.color != color
        self.color = color
        return changed


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
    platform = FakePlatform(["a", "b", "c"])
    platform.fail_on = "b"
    with pytest.raises(VersionNotInstalledError):
        _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["operation"]["status"] == "in_progress" and state["operation"]["done"] == ["a"]
    assert state["operation"]["pending"] == ["b"]
    platform.fail_on = None
    platform.calls = []
    result = _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)
    assert result["status"] == "complete"
    assert not [c for c in platform.calls if c[1] == "a"]  # done before: untouched
    state = json.loads((tmp_path / "prod.json").read_text())
    assert state["operation"]["resumed"] == 1


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
    with pytest.raises(ConfigError, match="invalid environment"):
        StateStore(str(tmp_path), "../etc")


def test_rollback_after_a_stopped_deploy_returns_to_what_it_replaced(tmp_path):
    platform = FakePlatform(["a", "b", "c"], version="5.0.0", installed=("5.0.0", "5.1.0", "5.2.0"))
    _runner(tmp_path, platform).rolling("5.1.0", keep_releases=0)  # complete: previous_version 5.0.0
    result = _runner(tmp_path, platform).rolling("5.2.0", max_batches=1, keep_releases=0)  # stopped after a batch
    assert result["status"] == "in_progress" and platform.current["a"] == "5.2.0"
    result = _runner(tmp_path, platform).rollback(None, None)
    assert result["versions"] == {"a": "5.1.0", "b": "5.1.0", "c": "5.1.0"}
