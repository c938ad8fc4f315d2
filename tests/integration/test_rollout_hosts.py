# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollout strategies and rollback against real HAProxy + meshapp processes (ports 21000-21099).

Continuous traffic runs through the HAProxy frontend during every deploy and rollback; each must see 0 failed
requests (non-200 or socket error) out of thousands.
"""

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _hosts_env as h  # noqa: E402

PORT_BASE = 21000


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    lab = h.Env(str(tmp_path_factory.mktemp("rollout")), PORT_BASE)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def _versions(env, names):
    return dict((n, os.path.basename(os.readlink(os.path.join(env.lab, "hosts", n, "current")))) for n in names)


def _state(env):
    with open(os.path.join(env.state_dir, "itest.json")) as handle:
        return json.load(handle)


def _one_line_failure(rc, result):
    assert rc != 0
    msg = result.get("msg", "")
    assert msg and "\n" not in msg.strip(), msg
    return msg


APP = ["app1", "app2", "app3", "app4"]


def test_bad_input_is_rejected_before_anything_changes(env):
    before = _versions(env, APP)
    cases = [
        (dict(version="5.1.0", strategy="sideways"), "strategy"),
        (dict(version="5.1.0", strategy="canary", initial_traffic=0), "initial_traffic"),
        (dict(version="5.1.0", strategy="canary", initial_traffic=120), "initial_traffic"),
        (dict(version="5.1.0", strategy="canary", steps=[10, 50, 25, 100]), "not increasing"),
        (dict(version="9.9.9"), "9.9.9 is not installed"),
        (dict(version="5.1.0", haproxy_socket=os.path.join(env.root, "nope.sock")), "does not exist"),
        (dict(version="5.1.0", backend="be_missing"), "be_missing"),
        (dict(version="5.1.0", artifact=env.artifact("5.1.0"), checksum="0" * 64), "checksum mismatch"),
    ]
    for extra, needle in cases:
        rc, result = h.run_module("rollout_strategy", h.module_args(env, **extra))
        msg = _one_line_failure(rc, result)
        assert needle in msg, (extra, msg)
    # a server name HAProxy does not know
    targets = env.targets()
    targets[0]["server"] = "ghost"
    rc, result = h.run_module("rollout_strategy", dict(h.module_args(env, version="5.1.0"), targets=targets))
    assert "ghost" in _one_line_failure(rc, result)
    # permission denied on the socket (root ignores modes, so only checked when not root)
    if os.geteuid() != 0:
        os.chmod(env.sock, 0)
        try:
            rc, result = h.run_module("rollout_strategy", h.module_args(env, version="5.1.0"))
            assert "permission denied" in _one_line_failure(rc, result)
        finally:
            os.chmod(env.sock, 0o600)
    # rollback to a version that is not installed lists what is available
    rc, result = h.run_module("rollback", h.module_args(env, version="4.0.0"))
    msg = _one_line_failure(rc, result)
    assert "4.0.0" in msg and "5.0.0" in msg
    assert _versions(env, APP) == before
    assert not os.path.exists(os.path.join(env.state_dir, "itest.json"))
    assert set(h.weights(env.sock, "be_app").values()) == {100}


def test_check_mode_reports_the_plan_only(env):
    rc, result = h.run_module("rollout_strategy", h.module_args(env, version="5.1.0", artifact=env.artifact("5.1.0")),
                              check=True)
    assert rc == 0, result
    assert result["changed"] is True
    assert {s["target"] for s in result["plan"] if s["action"] == "activate"} == set(APP)
    canary = h.module_args(env, version="5.1.0", strategy="canary", artifact=env.artifact("5.1.0"))
    rc, result = h.run_module("rollout_strategy", canary, check=True)
    assert rc == 0 and result["weights"]["canary"] > 0
    assert _versions(env, APP) == dict.fromkeys(APP, "5.0.0")
    assert not os.path.isdir(os.path.join(env.lab, "hosts", "app1", "releases", "5.1.0"))


def test_rolling_deploy_resume_and_rollback_at_zero_downtime(env):
    h.set_route(env.sock, env.map, "be_app")
    with h.Load(env.fe_port, threads=4) as load:
        time.sleep(1.0)
        t_deploy = time.monotonic()
        # one batch only: an interrupted deploy, mixed versions reported
        first = h.module_args(env, version="5.1.0", artifact=env.artifact("5.1.0"), checksum=env.checksums["5.1.0"],
                              max_batches=1)
        rc, result = h.run_module("rollout_strategy", first)
        assert rc == 0, result
        assert result["status"] == "in_progress" and result["mixed_versions"] is True
        # the playbook resumes from the state file and finishes
        proc = h.run_playbook("deploy.yml", env.extra_vars(version="5.1.0", strategy="rolling",
                                                           artifact=env.artifact("5.1.0")))
        assert proc.returncode == 0, proc.stdout[-3000:]
        t_rollback = time.monotonic()
        proc = h.run_playbook("rollback.yml", env.extra_vars(version="5.0.0"))
        assert proc.returncode == 0, proc.stdout[-3000:]
        t_end = time.monotonic()
        time.sleep(0.5)
    before, deploy, rollback = load.stats(None, t_deploy), load.stats(t_deploy, t_rollback), load.stats(t_rollback, t_end)
    print("rolling before=%s deploy=%s rollback=%s" % (before, deploy, rollback))
    assert load.errors == []
    assert deploy["requests"] > 1000 and deploy["failures"] == 0
    assert rollback["requests"] > 1000 and rollback["failures"] == 0
    state = _state(env)
    assert state["last_operation"]["kind"] == "rollback" and state["last_operation"]["status"] == "complete"
    deploys = [e for e in state["history"] if e["kind"] == "deploy"]
    assert deploys and deploys[-1]["versions"] == dict.fromkeys(APP, "5.1.0")
    assert _versions(env, APP) == dict.fromkeys(APP, "5.0.0")
    # a re-run of the finished rollback changes nothing
    rc, result = h.run_module("rollback", h.module_args(env, version="5.0.0"))
    assert rc == 0 and result["changed"] is False


def test_verify_backup(env):
    rc, result = h.run_module("rollback", h.module_args(env, mode="verify_backup", version="5.1.0"))
    assert rc == 0 and result["ok"] is True, result
    victim = os.path.join(env.lab, "hosts", "app2", "releases", "5.1.0", "release.json")
    with open(victim, "a") as handle:
        handle.write(" ")
    rc, result = h.run_module("rollback", h.module_args(env, mode="verify_backup", version="5.1.0"))
    msg = _one_line_failure(rc, result)
    assert "app2" in msg and "release.json" in msg
    # reinstalling from the artifact repairs it
    assert h.install_release(os.path.join(env.lab, "hosts", "app2"), "5.1.0", env.artifact("5.1.0")) is True
    rc, result = h.run_module("rollback", h.module_args(env, mode="verify_backup", version="5.1.0"))
    assert rc == 0 and result["ok"] is True, result


def test_canary_start_advance_abort_and_promote(env):
    h.set_route(env.sock, env.map, "be_app")
    with h.Load(env.fe_port, threads=4) as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        args = h.module_args(env, version="5.1.0", strategy="canary", initial_traffic=5, artifact=env.artifact("5.1.0"))
        rc, result = h.run_module("rollout_strategy", args)
        assert rc == 0, result
        w = h.weights(env.sock, "be_app")
        share = w["app1"] / float(sum(w.values()))
        assert 0.04 <= share <= 0.06, w
        rc, result = h.run_module("rollout_strategy", dict(args, canary_action="advance"))
        assert rc == 0 and result["canary_percent"] == 10, result
        t_abort = time.monotonic()
        rc, result = h.run_module("rollback", h.module_args(env, strategy="canary"))
        assert rc == 0 and result["status"] == "aborted", result
        assert _versions(env, APP) == dict.fromkeys(APP, "5.0.0")
        assert set(h.weights(env.sock, "be_app").values()) == {100}
        # the playbook runs the whole canary: start, steps, promote
        proc = h.run_playbook("deploy.yml", env.extra_vars(version="5.1.0", strategy="canary", initial_traffic=5,
                                                           steps=[50, 100]))
        assert proc.returncode == 0, proc.stdout[-3000:]
        t_end = time.monotonic()
        time.sleep(0.5)
    print("canary start+abort=%s promote=%s" % (load.stats(t0, t_abort), load.stats(t_abort, t_end)))
    assert load.errors == [] and load.stats(t0, t_end)["failures"] == 0
    assert load.stats(t0, t_end)["requests"] > 1000
    assert _versions(env, APP) == dict.fromkeys(APP, "5.1.0")
    assert set(h.weights(env.sock, "be_app").values()) == {100}
    proc = h.run_playbook("status.yml", env.extra_vars())
    assert proc.returncode == 0 and "canary" in proc.stdout


def test_blue_green_deploy_and_instant_rollback(env):
    h.set_route(env.sock, env.map, "be_blue")
    colors = ("be_blue", "be_green")
    with h.Load(env.fe_port, threads=4) as load:
        time.sleep(0.5)
        t_deploy = time.monotonic()
        proc = h.run_playbook("deploy.yml", env.extra_vars(colors, version="5.1.0", strategy="blue-green",
                                                           artifact=env.artifact("5.1.0")))
        assert proc.returncode == 0, proc.stdout[-3000:]
        time.sleep(0.5)
        t_rollback = time.monotonic()
        rc, result = h.run_module("rollback", h.module_args(env, colors))
        assert rc == 0 and result["active_color"] == "blue", result
        t_end = time.monotonic()
        time.sleep(0.5)
    deploy, rollback = load.stats(t_deploy, t_rollback), load.stats(t_rollback, t_end)
    print("blue-green deploy=%s rollback=%s rollback_seconds=%s" % (deploy, rollback, result["rollback_seconds"]))
    assert load.errors == [] and deploy["failures"] == 0 and rollback["failures"] == 0
    assert deploy["requests"] > 1000
    assert result["rollback_seconds"] < 1.0
    # traffic is on the old version for every request after the rollback
    assert all(s[3] == "5.0.0" for s in load.samples if s[0] > t_end)
    assert _versions(env, ["green1", "green2"]) == dict.fromkeys(["green1", "green2"], "5.1.0")
