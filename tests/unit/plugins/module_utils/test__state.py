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

from ansible_collections.meshos.release.plugins.module_utils._state import (
    LockedError,
    StateError,
    StateStore,
)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_set_get_merge_and_idempotence(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    assert store.get("production") == {}
    changed, before, after = store.set("production", {"current_version": "5.1.0", "strategy": "rolling"})
    assert changed and before == {} and after["current_version"] == "5.1.0" and "updated_at" in after
    changed, before, after = store.set("production", {"current_version": "5.1.0"})
    assert not changed
    changed, before, after = store.set("production", {"current_version": "5.2.0", "previous_version": "5.1.0"})
    assert changed and after["strategy"] == "rolling"
    on_disk = json.loads((tmp_path / "state" / "production.json").read_text())
    assert on_disk == after
    assert not [n for n in os.listdir(str(tmp_path / "state")) if n.startswith(".production.json")]


def test_set_replace_and_check_mode(tmp_path):
    store = StateStore(str(tmp_path))
    store.set("dev", {"a": 1, "b": 2})
    changed, _before, after = store.set("dev", {"a": 1}, replace=True, check_mode=True)
    assert changed and "b" not in after
    assert store.get("dev")["b"] == 2


@pytest.mark.parametrize("env", ["", "../etc", "a/b", "-x", "x" * 80])
def test_bad_environment(tmp_path, env):
    with pytest.raises(StateError, match="is not allowed"):
        StateStore(str(tmp_path)).get(env)


def test_lock_held_by_live_process(tmp_path):
    store = StateStore(str(tmp_path))
    changed, _before, lock = store.lock("production", "alice", pid=os.getpid())
    assert changed and lock["holder"] == "alice" and lock["pid"] == os.getpid()
    # same holder and pid: idempotent
    assert store.lock("production", "alice", pid=os.getpid())[0] is False
    with pytest.raises(LockedError, match=r"environment production is locked by alice since .* \(pid %d on " % os.getpid()):
        store.lock("production", "bob", pid=os.getpid() + 0)
    # a live lock is not taken over even with force
    with pytest.raises(LockedError, match="locked by alice"):
        store.lock("production", "bob", pid=None, force=True)
    with pytest.raises(LockedError, match="cannot be released by another holder"):
        store.unlock("production", "bob", force=True)
    assert store.unlock("production", "alice")[0] is True
    assert store.read_lock("production") is None
    assert store.unlock("production", "alice")[0] is False


def test_stale_lock_dead_pid_needs_force(tmp_path):
    store = StateStore(str(tmp_path))
    store.lock("staging", "alice", pid=_dead_pid())
    with pytest.raises(LockedError, match="stale .*is not running.*force"):
        store.lock("staging", "bob", pid=os.getpid())
    changed, before, after = store.lock("staging", "bob", pid=os.getpid(), force=True)
    assert changed and before["holder"] == "alice" and after["broke"]["holder"] == "alice"


def test_stale_lock_ttl(tmp_path):
    store = StateStore(str(tmp_path))
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    store.lock("dev", "alice", pid=os.getpid(), ttl=60, now=past)
    with pytest.raises(LockedError, match="older than its ttl"):
        store.lock("dev", "bob")
    with pytest.raises(LockedError, match="release it with force"):
        store.unlock("dev", "bob")
    assert store.unlock("dev", "bob", force=True)[0] is True


def test_lock_check_mode_writes_nothing(tmp_path):
    root = tmp_path / "new"
    store = StateStore(str(root))
    changed, _before, after = store.lock("dev", "alice", check_mode=True)
    assert changed and after["holder"] == "alice" and not root.exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(holder=""), "holder"),
    (dict(holder="a", ttl=0), "ttl 0 is not allowed"),
])
def test_lock_bad_input(tmp_path, kwargs, match):
    with pytest.raises(StateError, match=match):
        StateStore(str(tmp_path)).lock("dev", **kwargs)


def test_corrupt_state_file(tmp_path):
    (tmp_path / "dev.json").write_text("{nope")
    with pytest.raises(StateError, match="not valid JSON"):
        StateStore(str(tmp_path)).get("dev")
