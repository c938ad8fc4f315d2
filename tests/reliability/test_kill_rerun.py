# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kill ansible-playbook at a random point of each strategy under traffic, then rerun it.

For rolling, canary and blue-green, twice each: playbooks/deploy.yml (the guarded path: environment lock, gates,
audit log, state) starts under live traffic through HAProxy and is SIGKILLed -- the playbook, its workers, the module
running and the command that module runs, as a cancelled CI job or a lost controller would be -- after a seeded random
delay (RELIABILITY_SEED, default 16; the first kill of a strategy falls in its early window, the second in its late one).
Then the same deploy.yml runs again with -e force_unlock=true (the dead run's lock is stale) and the test asserts:

  - the killed run's lock is stale and is not taken over without force_unlock (when the kill left one);
  - the rerun exits 0;
  - every instance runs the target version (blue-green: the live color, and the frontend answers with it);
  - every HAProxy server of the live backend is UP, all at one weight (canary weights restored);
  - the traffic saw 0 failed requests from before the kill until after the rerun;
  - the lock is released, the audit log verifies and its last entry for the environment is the rerun's success.

A kill that produces client errors or a rerun that does not converge is a finding: the assertion names it, the table
printed at the end (the stack fixture's teardown; run pytest with -s) lists every kill.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# `stack` is the module-scoped fixture (the lab); it prints the table of kills at its teardown. No conftest.py here: a
# second `conftest` module would shadow tests/integration/conftest.py when both suites run in one pytest session.
from _reliability_stack import (  # noqa: E402,F401  # pylint: disable=unused-import
    APP, BASE, COLORS, ENV_APP, ENV_BG, RESULTS, hosts_env, seed, stack)

# Short gates so one deploy takes ~15-25 s and a kill lands mid-rollout; conclusive or fail (closed).
GATE = {"gate_duration": 2, "gate_window": 2, "gate_interval": 1, "gate_on_inconclusive": "fail",
        "initial_traffic": 25, "steps": [50, 100], "batch_size": "1"}
STRATEGIES = ["rolling", "canary", "blue-green"]
KILLS = 2
# The kill point is anchored at a task of the rollout (ansible start-up takes from 3 s on an idle machine to over a
# minute on a loaded one, and a kill before the first fleet change changes nothing): a seeded random number of seconds
# after that task starts. Kill 1 lands early in the rollout, kill 2 late; blue-green's late kill is anchored at the
# switch, so that one kill lands at the switch or in the live gate rather than in the long preview gate.
FIRST_CHANGE = {"rolling": "TASK [meshos.release.deploy : Roll out the first batch]",
                "canary": "TASK [meshos.release.deploy : Start the canary at the initial traffic share]",
                "blue-green": "TASK [meshos.release.deploy : Prepare the idle color]"}
SWITCH = "TASK [meshos.release.deploy : Switch the traffic to the gated color]"
# (anchor task, lowest, highest second after it) per strategy and kill; about 5-45 % and 45-90 % of the rolling and
# canary rollouts on an idle 2-core machine (~20 s and ~18 s with the short gates below)
KILL_POINTS = {
    ("rolling", 0): (FIRST_CHANGE["rolling"], 1.0, 9.0), ("rolling", 1): (FIRST_CHANGE["rolling"], 9.0, 18.0),
    ("canary", 0): (FIRST_CHANGE["canary"], 1.0, 8.0), ("canary", 1): (FIRST_CHANGE["canary"], 8.0, 16.0),
    ("blue-green", 0): (FIRST_CHANGE["blue-green"], 1.0, 8.0), ("blue-green", 1): (SWITCH, 0.0, 5.0),
}
COUNTER = {"n": 0}


def kill_point(strategy, index):
    """(anchor task, seconds after it): seeded by RELIABILITY_SEED, one stream per strategy and kill."""
    anchor, low, high = KILL_POINTS[(strategy, index)]
    rng = random.Random("%d/%s/%d" % (seed(), strategy, index))
    return anchor, round(rng.uniform(low, high), 1)


def last_task(log_path):
    tasks = re.findall(r"^TASK \[(.*?)\]", log_path.read_text(errors="replace"), re.M)
    return tasks[-1] if tasks else "(before the first task)"


@pytest.mark.parametrize("index", range(KILLS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_killed_deploy_reruns_to_convergence(stack, strategy, index):
    COUNTER["n"] += 1
    version = "6.0.%d" % COUNTER["n"]
    case = "%s-kill%d" % (strategy, index + 1)
    env = ENV_BG if strategy == "blue-green" else ENV_APP
    artifact = stack.artifact(version)
    if strategy == "blue-green":
        active = stack.fleet_state(ENV_BG).get("active_color") or "blue"
        stack.route("be_" + active)
    else:
        stack.route("be_app")
    extra = dict(GATE, env=env, version=version, strategy=strategy, artifact=artifact)
    anchor_task, at = kill_point(strategy, index)
    row = [case, strategy, "-/%.1f" % at, "", "not run", "0/0", "n/a", ""]
    audit_before = len(stack.audit_entries())
    proc = None
    try:
        with hosts_env.Load(BASE, threads=4, pause=0.01) as load:
            time.sleep(0.5)
            started = time.monotonic()
            proc, log = stack.start("deploy.yml", extra, "%s.log" % case)
            stack.wait_for_line(proc, log, anchor_task)
            anchor = time.monotonic()
            time.sleep(at)
            running = stack.kill(proc)
            row[2] = "%.1f/%.1f" % (anchor + at - started, at)
            row[3] = last_task(log) if running else "(finished before the kill, rc %s)" % proc.returncode
            left = stack.describe(COLORS if strategy == "blue-green" else APP)
            row[7] = left
            print("\n%s: SIGKILL %.1f s after start, %.1f s after %r began, during %r (seed %d, log %s); left: %s"
                  % (case, anchor + at - started, at, anchor_task[6:-1], row[3], seed(), log, left))
            lock = stack.lock_path(env)
            lock_was_held = lock.exists()
            if lock_was_held:
                # fail closed: the dead run's lock is only broken on request
                refused = stack.playbook("deploy.yml", extra, check=False)
                assert refused.rc != 0 and "locked by" in refused.output, refused.output[-2000:]
            rerun_started = time.monotonic()
            rerun = stack.playbook("deploy.yml", dict(extra, force_unlock=True), check=False)
            stack.keep_log("%s-rerun.log" % case, rerun.output)
            rerun_seconds = time.monotonic() - rerun_started
            time.sleep(0.5)
        stats = load.stats()
        row[5] = "%d/%d" % (stats["failures"], stats["requests"])
        row[4] = "rc %d (%.0f s)" % (rerun.rc, rerun_seconds)
        assert rerun.rc == 0, "%s: the rerun failed (rc %d):\n%s" % (case, rerun.rc, rerun.output[-4000:])

        if strategy == "blue-green":
            live = stack.fleet_state(ENV_BG).get("active_color")
            live_fleet = [item for item in COLORS if item[2] == live]
            assert stack.frontend_version() == version
            assert stack.versions(live_fleet) == dict.fromkeys([item[0] for item in live_fleet], version)
            backends = ["be_" + live]
        else:
            assert stack.versions(APP) == dict.fromkeys([name for name, _p in APP], version)
            backends = ["be_app"]
        for backend in backends:
            servers = stack.servers(backend)
            assert all(status == "UP" for status, _w in servers.values()), "%s: %s" % (backend, servers)
            assert len(set(weight for _s, weight in servers.values())) == 1, "%s weights: %s" % (backend, servers)
        state = stack.fleet_state(env)
        assert state.get("operation", {}).get("status") != "in_progress", state
        row[4] = "rc 0 converged (%.0f s)" % rerun_seconds

        assert stats["failures"] == 0, "%s: %d of %d requests failed during the kill and the rerun: %s" % (
            case, stats["failures"], stats["requests"], sorted(set(load.errors))[:5])
        assert stats["requests"] > 50, stats
        assert not stack.lock_path(env).exists(), "the rerun left the environment locked"

        verify = stack.audit_verify()
        row[6] = "ok" if verify["valid"] else "FAILED"
        assert verify["valid"], verify
        trail = [(e["action"], e["result"], e["version"]) for e in stack.audit_entries()[audit_before:]
                 if e["environment"] == env]
        assert trail and trail[-1] == ("deploy", "success", version), trail
        # the killed run is accounted for: no "started" without an outcome, a forced takeover is on record
        open_run = None
        for action, result, _version in trail:
            if action in ("deploy", "rollback") and result == "started":
                assert open_run is None, "%s: a started %s without an outcome: %s" % (case, open_run, trail)
                open_run = action
            elif action in ("deploy", "rollback") and result in ("success", "failure", "aborted", "rolled_back"):
                open_run = None
        if lock_was_held:
            assert ("lock_takeover", "info", None) in trail, trail
    finally:
        if proc is not None and proc.poll() is None:  # a failure before the kill: stop what this test started
            stack.kill(proc)
        RESULTS.append(tuple(row))
