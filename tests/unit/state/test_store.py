# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.meshos.release.plugins.module_utils.state.store import (
    LockedError,
    StateError,
    StateStore,
)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_set_get_merge_and_idempotence(tmp_path):
    store = StateStore(str(tmp_path / "state"), "production")
    assert store.get() == {}
    changed, before, after = store.set({"current_version": "5.1.0", "strategy": "rolling"})
    assert changed and before == {} and after["current_version"] == "5.1.0" and "updated_at" in after
    changed, before, after = store.set({"current_version": "5.1.0"})
    assert not changed
    changed, before, after = store.set({"current_version": "5.2.0", "previous_version": "5.1.0"})
    assert changed and after["strategy"] == "rolling"
    on_disk = json.loads((tmp_path / "state" / "production.json").read_text())
    assert on_disk == after
    assert not [n for n in os.listdir(str(tmp_path / "state")) if n.startswith(".production.json")]


def test_set_replace_and_check_mode(tmp_path):
    store = StateStore(str(tmp_path), "dev")
    store.set({"a": 1, "b": 2})
    changed, _before, after = StateStore(str(tmp_path), "dev", check_mode=True).set({"a": 1}, replace=True)
    assert changed and "b" not in after
    assert store.get()["b"] == 2


@pytest.mark.parametrize("env", ["", "../etc", "a/b", "-x", "x" * 80])
def test_bad_environment(tmp_path, env):
    with pytest.raises(StateError, match="is not allowed"):
        StateStore(str(tmp_path), env).get()


def test_lock_held_by_live_process(tmp_path):
    store = StateStore(str(tmp_path), "production")
    changed, _before, lock = store.lock("alice", pid=os.getpid())
    assert changed and lock["holder"] == "alice" and lock["pid"] == os.getpid()
    # same holder and pid: idempotent
    assert store.lock("alice", pid=os.getpid())[0] is False
    with pytest.raises(LockedError, match=r"environment production is locked by alice since .* \(pid %d on " % os.getpid()):
        store.lock("bob", pid=os.getpid() + 0)
    # a live lock is not taken over even with force
    with pytest.raises(LockedError, match="locked by alice"):
        store.lock("bob", pid=None, force=True)
    with pytest.raises(LockedError, match="cannot be released by another holder"):
        store.unlock("bob", force=True)
    assert store.unlock("alice")[0] is True
    assert store.read_lock() is None
    assert store.unlock("alice")[0] is False


def test_stale_lock_dead_pid_needs_force(tmp_path):
    store = StateStore(str(tmp_path), "staging")
    store.lock("alice", pid=_dead_pid())
    with pytest.raises(LockedError, match="stale .*is not running.*force"):
        store.lock("bob", pid=os.getpid())
    changed, before, after = store.lock("bob", pid=os.getpid(), force=True)
    assert changed and before["holder"] == "alice" and after["broke"]["holder"] == "alice"


def test_stale_lock_ttl(tmp_path):
    store = StateStore(str(tmp_path), "dev")
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    store.lock("alice", pid=os.getpid(), ttl=60, now=past)
    with pytest.raises(LockedError, match="older than its ttl"):
        store.lock("bob")
    with pytest.raises(LockedError, match="release it with force"):
        store.unlock("bob")
    assert store.unlock("bob", force=True)[0] is True


def test_lock_check_mode_writes_nothing(tmp_path):
    root = tmp_path / "new"
    store = StateStore(str(root), "dev", check_mode=True)
    changed, _before, after = store.lock("alice")
    assert changed and after["holder"] == "alice" and not root.exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(holder=""), "holder"),
    (dict(holder="a", ttl=0), "ttl 0 is not allowed"),
])
def test_lock_bad_input(tmp_path, kwargs, match):
    with pytest.raises(StateError, match=match):
        StateStore(str(tmp_path), "dev").lock(**kwargs)


def test_corrupt_state_file(tmp_path):
    (tmp_path / "dev.json").write_text("{nope")
    with pytest.raises(StateError, match="not valid JSON"):
        StateStore(str(tmp_path), "dev").get()


# -- the operation section (what the rollout modules keep) and the one-store rules -------------------------------

class _Target:
    def __init__(self, name, version):
        self.name, self.version = name, version


def test_operation_begin_resume_finish_and_history(tmp_path):
    store = StateStore(str(tmp_path), "prod")
    assert store.path == str(tmp_path / "prod.json") and store.operation is None
    op = store.begin("deploy", "rolling", "5.1.0", [_Target("a", "5.0.0")], {"batch": 1})
    assert op["status"] == "in_progress" and op["from_versions"] == {"a": "5.0.0"} and op["batch"] == 1
    # a new store (a re-run) resumes the same operation instead of starting over
    again = StateStore(str(tmp_path), "prod")
    assert again.begin("deploy", "rolling", "5.1.0", [], {})["resumed"] == 1
    for number in range(25):
        again.finish("complete", {"versions": {"a": "5.1.0"}, "n": number})
    on_disk = json.loads((tmp_path / "prod.json").read_text())
    assert len(on_disk["history"]) == 20 and on_disk["history"][-1]["n"] == 24
    assert on_disk["last_operation"]["status"] == "complete" and "updated" in on_disk


def test_operation_check_mode_writes_nothing(tmp_path):
    store = StateStore(str(tmp_path / "new"), "prod", check_mode=True)
    store.begin("deploy", "rolling", "5.1.0", [], {})
    store.finish("complete", {})
    assert not (tmp_path / "new").exists()


def test_release_and_operation_files_in_one_directory_are_refused(tmp_path):
    # release_state's root and the rollout modules' state_dir given the same directory: refused by name, never mixed
    StateStore(str(tmp_path), "prod").begin("deploy", "rolling", "5.1.0", [], {})
    with pytest.raises(StateError, match="holds the operation section"):
        StateStore(str(tmp_path), "prod").get()
    other = tmp_path / "release"
    StateStore(str(other), "prod").set({"current_version": "5.1.0"})
    with pytest.raises(StateError, match="holds the release section"):
        StateStore(str(other), "prod").data


def test_files_keep_their_old_layout(tmp_path):
    # files written before the stores were merged are read as they are (nothing migrates)
    (tmp_path / "prod.json").write_text(json.dumps({"environment": "prod", "current_version": "5.0.0",
                                                    "updated_at": "2025-01-01T00:00:00Z"}))
    (tmp_path / "prod.lock").write_text(json.dumps({"environment": "prod", "holder": "old", "pid": None,
                                                    "host": "elsewhere", "since": "2025-01-01T00:00:00Z",
                                                    "ttl": 60}))
    store = StateStore(str(tmp_path), "prod")
    assert store.get()["current_version"] == "5.0.0"
    assert store.read_lock()["holder"] == "old" and "older than its ttl" in store.stale_reason(store.read_lock())


def test_cluster_object_names_stay_apart():
    from ansible_collections.meshos.release.plugins.module_utils.state.kube import slug
    assert slug("production") == "production"
    assert slug("Prod") != slug("prod") and slug("Prod").startswith("prod-")
    assert slug("eu_west.1").startswith("eu-west-1-")
    assert all(len(slug(name)) <= 49 for name in ("x" * 64, "A" * 64))
