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
from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient, TrafficMeter  # noqa: E402
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import sort_versions  # noqa: E402

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


# ---------------------------------------------------------------------------- fleet safety (issues 9 and 16)
# A second, small stack (2 app hosts, one per color) on ports 21100..: faults at steady-state retention, failing
# restart commands, a full disk, a crashed canary, blue-green prepare/switch. Restarts wait 3 s for readiness so a
# faulty release fails fast.

SMALL_BASE = 21100
SMALL_APP = ["app1", "app2"]
HISTORY = ["5.%d.0" % i for i in range(0, 8)]  # 5.0.0 .. 5.7.0


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    lab = h.Env(str(tmp_path_factory.mktemp("fleet")), SMALL_BASE, app=2, blue=1, green=1, versions=HISTORY,
                restart_wait=3)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


def _releases(env, name):
    path = os.path.join(env.lab, "hosts", name, "releases")
    return sort_versions(n for n in os.listdir(path) if not n.startswith("."))


def _faulty(env, kind, version="5.8.0"):
    flags = {"health": ["--health-fail"], "crash": ["--crash-on-start"], "errors": ["--error-ratio", "0.5"]}[kind]
    out = env.labctl("artifact", version, "--out", os.path.join(env.root, "faulty-" + kind), *flags)
    return out["path"], out["sha256"]


def _all_up(env, names, backend="be_app"):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        servers = h.servers(env.sock, backend)
        if all(servers[n][0].startswith("UP") and servers[n][1] == 100 for n in names):
            return servers
        time.sleep(0.1)
    return h.servers(env.sock, backend)


def test_faults_at_steady_state_retention_roll_back(small):
    """Issue 9: 7 releases deployed and 5 kept; the 8th fails with each fault kind; the rollback always completes."""
    h.set_route(small.sock, small.map, "be_app")
    # the history: 5.1.0 .. 5.6.0 installed as earlier deploys left them (5 kept), then a real deploy of 5.7.0
    for name in SMALL_APP:
        root = os.path.join(small.lab, "hosts", name)
        for version in HISTORY[1:7]:
            h.install_release(root, version, small.artifact(version))
        h.switch_current(root, "5.6.0")
        small.labctl("instance-restart", name, "--wait-ready", "10")
    deploy = h.module_args(small, version="5.7.0", artifact=small.artifact("5.7.0"),
                           checksum=small.checksums["5.7.0"], require_checksum=True, keep_releases=5)
    rc, result = h.call_module("rollout_strategy", deploy)
    assert rc == 0 and result["status"] == "complete", result.get("msg")
    kept = ["5.3.0", "5.4.0", "5.5.0", "5.6.0", "5.7.0"]
    assert _releases(small, "app1") == kept
    matrix = []
    with h.Load(small.fe_port, threads=2, pause=0.005) as load:
        time.sleep(0.5)
        for kind in ("health", "crash", "errors"):
            artifact, sha = _faulty(small, kind)
            args = h.module_args(small, version="5.8.0", artifact=artifact, checksum=sha, max_batches=1,
                                 ready_timeout=5, keep_releases=5)
            t_fault = time.monotonic()
            rc, result = h.call_module("rollout_strategy", args)
            if kind == "errors":
                # the module cannot see application errors: the batch gate does, and the role rolls back
                assert rc == 0 and result["status"] == "in_progress", result.get("msg")
                assert len(_releases(small, "app1")) == 6
                # what the gate's window sees, measured from HAProxy's counters (retries hide most from clients)
                meter = TrafficMeter(HAProxyClient(small.sock), lambda: ["be_app"], interval=0.1).start()
                time.sleep(1.0)
                errors_seen = meter.stop()
            else:
                msg = _one_line_failure(rc, result)
                assert "restored app1 to 5.7.0" in msg and "fleet now on 5.7.0" in msg, msg
            measured = result["traffic"]["measured"]
            assert measured["source"] == "haproxy:%s" % small.sock and measured["requests"] > 0, measured
            rc, check = h.call_module("rollback", h.module_args(small, mode="verify_backup", retention=5))
            assert rc == 0 and check["ok"] is True, check.get("msg")  # 6 releases kept is never a refusal
            runner = h.run_module if kind == "errors" else h.call_module  # one real `ansible -m` round trip
            rc, back = runner("rollback", h.module_args(small))
            t_restored = time.monotonic()
            assert rc == 0 and back["status"] == "complete", back.get("msg")
            assert back["versions"] == dict.fromkeys(SMALL_APP, "5.7.0")
            assert back["traffic"]["measured"]["source"] is not None
            matrix.append((kind, round(t_restored - t_fault, 1), measured["failed_requests"],
                           measured["backend_5xx"], measured["downtime_seconds"]))
            for name in SMALL_APP:
                assert _releases(small, name) == kept, (kind, name)
            assert set(_all_up(small, SMALL_APP).values()) == {("UP", 100)}
        time.sleep(0.3)
    print("fault matrix (kind, fault->restored s, failed requests, backend 5xx, downtime s): %s" % matrix)
    print("load: %s" % load.stats())
    # health/crash never reached clients: the host was drained before the bad release started
    assert [m[2] for m in matrix[:2]] == [0, 0] and [m[4] for m in matrix] == [0.0, 0.0, 0.0]
    print("errors release, 1 s window: %s" % errors_seen)
    # the erroring release's 500s are measured by HAProxy: `retry-on` resends them to the healthy host, so clients see
    # none and HAProxy counts them as retries/redispatches, not as 5xx answers
    assert errors_seen["retries"] > 0 and errors_seen["failed_requests"] == 0
    assert all(m[1] < 60 for m in matrix)


def test_a_failing_restart_command_restores_current_and_traffic(small):
    h.set_route(small.sock, small.map, "be_app")
    _new_release(small)
    before = _versions(small, SMALL_APP)
    targets = small.targets()
    for target in targets:
        target["restart_command"] = "false"
    pid_before = small.labctl("status")
    with h.Load(small.fe_port, threads=2, pause=0.005) as load:
        time.sleep(0.3)
        args = dict(h.module_args(small, version="5.9.0", artifact=small.artifact("5.9.0")), targets=targets)
        rc, result = h.call_module("rollout_strategy", args)
        time.sleep(0.3)
    msg = _one_line_failure(rc, result)
    assert "restart of app1 failed" in msg and "restored app1 to %s" % before["app1"] in msg, msg
    assert _versions(small, SMALL_APP) == before
    assert set(_all_up(small, SMALL_APP).values()) == {("UP", 100)}
    assert "5.9.0" not in _releases(small, "app1") and "5.9.0" not in _releases(small, "app2")
    assert pid_before == small.labctl("status")  # the old processes never stopped
    assert load.errors == [] and load.stats()["failures"] == 0


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/bin/mount"), reason="needs root to mount a tmpfs")
def test_a_full_disk_fails_before_any_host_leaves_traffic(small):
    import shutil
    import subprocess
    _new_release(small)
    before = _versions(small, SMALL_APP)
    releases = os.path.join(small.lab, "hosts", "app2", "releases")
    saved = os.path.join(small.root, "app2-releases")
    shutil.copytree(releases, saved, symlinks=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", releases], check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        for name in os.listdir(saved):
            shutil.copytree(os.path.join(saved, name), os.path.join(releases, name), symlinks=True)
        # fill the small filesystem
        with open(os.path.join(releases, ".filler"), "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        with h.Load(small.fe_port, threads=2, pause=0.005) as load:
            time.sleep(0.3)
            args = h.module_args(small, version="5.9.0", artifact=small.artifact("5.9.0"))
            rc, result = h.call_module("rollout_strategy", args)
            time.sleep(0.3)
        msg = _one_line_failure(rc, result)
        assert "No space left on device" in msg and "app2" in msg and "Errno" not in msg, msg
        assert not [s for s in result["steps"] if s["action"] in ("drain", "activate")]
        assert _versions(small, SMALL_APP) == before
        assert "5.9.0" not in _releases(small, "app1")
        assert load.errors == [] and load.stats()["failures"] == 0
    finally:
        subprocess.run(["umount", "-l", releases], check=False)


def _new_release(env, version="5.9.0"):
    return env.labctl("artifact", version, "--out", env.artifacts)["path"]


def test_rollback_after_a_crashed_canary_restores_weights(small):
    h.set_route(small.sock, small.map, "be_app")
    _new_release(small)
    before = _versions(small, SMALL_APP)
    args = h.module_args(small, version="5.9.0", strategy="canary", initial_traffic=20, steps=[50, 100],
                         artifact=small.artifact("5.9.0"))
    rc, result = h.call_module("rollout_strategy", args)
    assert rc == 0 and result["canary_percent"] == 20, result.get("msg")
    assert h.weights(small.sock, "be_app")["app1"] < 100
    small.labctl("instance-stop", "app1")  # the canary crashes
    rc, report = h.call_module("rollback", h.module_args(small, mode="status"))
    assert rc == 0 and report["healthy"] is False and any("normal weight" in p for p in report["problems"])
    # rollback.yml's default: the last completed deploy's strategy (rolling); the canary is aborted anyway
    rc, result = h.call_module("rollback", h.module_args(small, strategy="rolling"))
    assert rc == 0 and result["status"] == "aborted", result.get("msg")
    assert h.weights(small.sock, "be_app") == dict.fromkeys(SMALL_APP, 100)
    assert _versions(small, SMALL_APP) == before
    _all_up(small, SMALL_APP)
    rc, report = h.call_module("rollback", h.module_args(small, mode="status"))
    assert rc == 0 and report["healthy"] is True, report["problems"]


def test_blue_green_prepare_gate_then_switch(small):
    colors = ("be_blue", "be_green")
    h.set_route(small.sock, small.map, "be_blue")
    _new_release(small)
    args = h.module_args(small, colors, version="5.9.0", strategy="blue-green", artifact=small.artifact("5.9.0"),
                         phase="prepare")
    rc, result = h.call_module("rollout_strategy", args)
    assert rc == 0 and result["status"] == "prepared" and result["idle_color"] == "green", result.get("msg")
    ready_url = result["idle_targets"][0]["ready_url"]
    assert _versions(small, ["green1"]) == {"green1": "5.9.0"}
    assert h.weights(small.sock, "be_green")  # still routed to blue
    with open(small.map) as handle:
        assert "be_blue" in handle.read()
    # the gate on the idle color says no: rollback keeps traffic on blue and returns green to what it ran
    rc, result = h.call_module("rollback", h.module_args(small, colors))
    assert rc == 0 and result["active_color"] == "blue", result.get("msg")
    assert _versions(small, ["green1"]) == {"green1": "5.0.0"}
    rc, result = h.call_module("rollout_strategy", dict(args, phase="switch"))
    assert rc != 0 and "prepared" in result["msg"]
    rc, result = h.call_module("rollout_strategy", args)
    assert rc == 0 and result["status"] == "prepared"
    assert ready_url.startswith("http://127.0.0.1:")
    rc, result = h.call_module("rollout_strategy", dict(args, phase="switch"))
    assert rc == 0 and result["status"] == "complete" and result["active_color"] == "green", result.get("msg")
