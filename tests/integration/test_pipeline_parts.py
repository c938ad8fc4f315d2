# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of the pipeline parts: predeploy_check, audit_log, release_state and playbooks/report.yml.

Every module runs through ansible-playbook on real files and real commands (git, a failing command, a command
killed at its timeout, npm-audit-shaped JSON read with ``cat``); the lock is contended by two ansible-playbook
processes at once. No network port is used. Every process started here is stopped in a finalizer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
# modules must work on the managed host's stdlib-only Python: use the system one when there is one
MANAGED_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

NPM7_CRITICAL = {
    "auditReportVersion": 2,
    "vulnerabilities": {"minimist": {"name": "minimist", "severity": "critical", "isDirect": False}},
    "metadata": {"vulnerabilities": {"info": 0, "low": 0, "moderate": 1, "high": 2, "critical": 1, "total": 4},
                 "dependencies": {"prod": 10, "dev": 5, "total": 15}},
}
NPM6_CLEAN = {"actions": [], "advisories": {"1179": {"id": 1179, "module_name": "minimist", "severity": "low"}},
              "muted": [], "metadata": {"vulnerabilities": {"info": 0, "low": 1, "moderate": 0, "high": 0,
                                                            "critical": 0}}}
PIP_AUDIT = {"dependencies": [{"name": "jinja2", "version": "2.11.0",
                               "vulns": [{"id": "PYSEC-2021-66", "fix_versions": ["2.11.3"], "aliases": []}]}],
             "fixes": []}
CHECKLIST = ["code_review_approved", "docs_updated", "changelog_prepared", "stakeholders_notified",
             "performance_benchmarks_met", "compliance_checks_passed"]


def _env():
    env = dict(os.environ)
    env.update(ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="false")
    # scripts/env.sh puts the collection on ANSIBLE_COLLECTIONS_PATH
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO_ROOT / ".build" / "collections"))
    return env


def _play(tmp_path, name, task, after=None):
    """A play running ``task`` (a dict) and writing its result (failed or not) to RESULT as JSON."""
    result_file = tmp_path / ("%s.result.json" % name)
    tasks = [{
        "name": "Task under test",
        "block": [dict(task, register="pp_out")],
        "rescue": [{"name": "Keep the failure", "ansible.builtin.set_fact": {"pp_out": "{{ ansible_failed_result }}"}}],
        "always": [{"name": "Write the result", "check_mode": False, "diff": False, "ansible.builtin.copy": {
            "content": "{{ pp_out | to_json }}", "dest": str(result_file), "mode": "0644"}}],
    }]
    tasks += after or []
    play = [{"name": name, "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": MANAGED_PYTHON}, "tasks": tasks}]
    path = tmp_path / ("%s.yml" % name)
    path.write_text(json.dumps(play, indent=1))
    return path, result_file


def _argv(playbook, extra=()):
    return [PLAYBOOK, "-i", "localhost,", str(playbook)] + list(extra)


@pytest.fixture
def processes():
    """Popen factory; every process still running at teardown is killed with its process group."""
    started = []

    def start(argv, **kwargs):
        proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def run_task(tmp_path, processes, name, task, extra=()):
    playbook, result_file = _play(tmp_path, name, task)
    proc = processes(_argv(playbook, extra))
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output
    return json.loads(result_file.read_text())


# ------------------------------------------------------------------ predeploy_check

@pytest.fixture
def project(tmp_path):
    """A real git checkout plus scanner outputs to read with cat."""
    root = tmp_path / "project"
    root.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(git + ["init", "-q", str(root)], check=True)
    (root / "README").write_text("demo\n")
    (root / "npm-audit-critical.json").write_text(json.dumps(NPM7_CRITICAL))
    (root / "npm6-audit.json").write_text(json.dumps(NPM6_CLEAN))
    (root / "pip-audit.json").write_text(json.dumps(PIP_AUDIT))
    subprocess.run(git + ["-C", str(root), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(root), "commit", "-q", "-m", "init"], check=True)
    return root


def _evidence(skip=()):
    return dict((item, {"by": "alice", "at": "2025-10-24T10:00:00Z", "ref": "T-%d" % i})
                for i, item in enumerate(CHECKLIST) if item not in skip)


def test_predeploy_all_green_on_a_real_checkout(tmp_path, processes, project):
    task = {"meshos.release.predeploy_check": {
        "chdir": str(project),
        "evidence": _evidence(),
        "checks": [
            {"name": "git_status", "command": "git status --porcelain", "expected": "empty", "read_only": True},
            {"name": "tests", "command": [sys.executable, "-c", "print('7 passed in 0.1s')"], "expected": "all_pass"},
            {"name": "build", "command": "true"},
            {"name": "security_scan", "command": ["cat", "npm6-audit.json"], "expected": "no_critical",
             "read_only": True},
            # pip-audit findings carry no severity: accepted here on purpose (the default counts them as high)
            {"name": "pip_audit", "command": "cat pip-audit.json", "expected": "no_critical",
             "unrated_severity": "unknown", "read_only": True},
        ]}}
    for extra in ((), ("--check",)):
        result = run_task(tmp_path, processes, "predeploy_green", task, extra)
        assert result.get("failed") is not True, result["msg"]
        assert result["changed"] is False
        by_name = dict((c["name"], c) for c in result["checks"])
        if extra:
            # check mode runs only the read-only checks; the test run and the build are reported, not run
            assert result["passed"] is False and result["would_run"] == ["tests", "build"]
            assert by_name["tests"]["status"] == "would_run" and by_name["tests"]["rc"] is None
            assert by_name["build"]["reason"] == "would run: true"
            assert [by_name[n]["status"] for n in ("git_status", "security_scan", "pip_audit")] == ["passed"] * 3
        else:
            assert result["passed"] is True and result["would_run"] == []
            assert by_name["tests"]["tests"] == {"passed": 7, "failed": None}
        assert by_name["security_scan"]["scanner"] == "npm6"
        assert by_name["security_scan"]["vulnerabilities"]["low"] == 1
        pip_counts = by_name["pip_audit"]["vulnerabilities"]
        assert (pip_counts["unknown"], pip_counts["critical"], pip_counts["total"]) == (1, 0, 1)
        assert all(item["passed"] for item in result["checklist"])


def test_predeploy_lists_every_failure_in_one_message(tmp_path, processes, project):
    (project / "dirty.txt").write_text("uncommitted\n")
    task = {"meshos.release.predeploy_check": {
        "chdir": str(project),
        "evidence": _evidence(skip=("docs_updated",)),
        "output_lines": 2,
        "checks": [
            {"name": "git_status", "command": ["git", "status", "--porcelain"], "expected": "empty"},
            {"name": "tests", "command": [sys.executable, "-c",
                                          "import sys; print('a'); print('b'); print('c'); sys.exit(2)"],
             "expected": "all_pass"},
            {"name": "build", "command": [sys.executable, "-c", "import time; print('building', flush=True); "
                                                                "time.sleep(60)"], "timeout": 1},
            {"name": "security_scan", "command": ["cat", "npm-audit-critical.json"], "expected": "no_critical"},
            {"name": "pip_audit", "command": ["cat", "pip-audit.json"], "expected": "no_critical",
             "unrated_severity": "critical"},
        ]}}
    result = run_task(tmp_path, processes, "predeploy_red", task)
    assert result["failed"] is True
    assert result["failed_checks"] == ["git_status", "tests", "build", "security_scan", "pip_audit", "docs_updated"]
    msg = result["msg"]
    assert msg.startswith("pre-deployment checks failed: ") and "\n" not in msg
    for part in ("git_status (output not empty (1 lines, first: ?? dirty.txt))", "tests (exit code 2)",
                 "build (timed out after 1.0s)",
                 "security_scan (3 vulnerabilities at or above high (CVSS >= 7.0): 1 critical, 2 high; "
                 "1 below it: 1 moderate)",
                 "pip_audit (1 vulnerability at or above high (CVSS >= 7.0): 1 critical)",
                 "docs_updated (no evidence recorded)"):
        assert part in msg
    checks = dict((c["name"], c) for c in result["checks"])
    assert checks["tests"]["rc"] == 2 and checks["tests"]["stdout_tail"] == ["b", "c"]
    assert checks["build"]["timed_out"] is True and checks["build"]["stdout_tail"] == ["building"]
    assert checks["security_scan"]["vulnerabilities"]["high"] == 2


def test_predeploy_bad_input_is_one_line(tmp_path, processes):
    result = run_task(tmp_path, processes, "predeploy_bad", {"meshos.release.predeploy_check": {
        "checks": [{"name": "x", "command": "true", "expected": "mostly"}]}})
    assert result["failed"] is True and "mostly" in result["msg"] and "\n" not in result["msg"]


# ------------------------------------------------------------------ audit_log

def _append(path, **fields):
    return {"meshos.release.audit_log": dict({"path": str(path), "actor": "alice"}, **fields)}


def _append_all(path, entries):
    """One task appending every entry (a loop), so one ansible-playbook run writes them all."""
    args = {"path": str(path), "actor": "alice"}
    for key in ("action", "version", "environment", "strategy", "result", "duration", "details"):
        args[key] = "{{ item.%s | default(omit) }}" % key
    return {"meshos.release.audit_log": args, "loop": entries}


def test_audit_log_append_verify_query_and_tamper(tmp_path, processes):
    log = tmp_path / "audit.jsonl"
    preview = run_task(tmp_path, processes, "audit_check", _append(log, action="deploy", result="started"),
                       ("--check", "--diff"))
    assert preview["changed"] is True and preview["entry"]["seq"] == 1 and not log.exists()
    events = [("release_create", None, "success"), ("deploy", "development", "success"),
              ("deploy", "staging", "success"), ("deploy", "production", "failure"),
              ("rollback", "production", "success")]
    entries = [dict(action=action, version="5.1.0", result=res, duration=10 + i, strategy="rolling", details={"i": i})
               for i, (action, _env, res) in enumerate(events)]
    for entry, (_action, env, _res) in zip(entries, events):
        if env:
            entry["environment"] = env
    out = run_task(tmp_path, processes, "audit_append", _append_all(log, entries))
    assert [r["entry"]["seq"] for r in out["results"]] == [1, 2, 3, 4, 5]
    assert all(r["changed"] for r in out["results"])
    verify = run_task(tmp_path, processes, "audit_verify", {"meshos.release.audit_log": {
        "path": str(log), "state": "verify"}})
    assert verify["valid"] is True and verify["count"] == 5
    query = run_task(tmp_path, processes, "audit_query", {"meshos.release.audit_log": {
        "path": str(log), "state": "query", "action": "deploy", "environment": "production"}})
    assert [e["seq"] for e in query["entries"]] == [4]

    lines = log.read_text().splitlines(True)
    lines[2] = lines[2].replace('"result":"success"', '"result":"failure"')
    log.write_text("".join(lines))
    broken = run_task(tmp_path, processes, "audit_verify_broken", {"meshos.release.audit_log": {
        "path": str(log), "state": "verify"}})
    assert broken["failed"] is True and broken["first_bad_line"] == 3
    assert "line 3" in broken["msg"] and "edited" in broken["msg"]
    refused = run_task(tmp_path, processes, "audit_bad_value", _append(log, action="deploy", result="meh"))
    assert refused["failed"] is True and "meh" in refused["msg"]


# ------------------------------------------------------------------ release_state

def test_release_state_set_get_check_and_diff(tmp_path, processes):
    root = tmp_path / "state"
    values = {"current_version": "5.1.0", "previous_version": "5.0.1", "strategy": "rolling", "step": "done"}
    task = {"meshos.release.release_state": {"root": str(root), "environment": "staging", "operation": "set",
                                             "values": values}}
    checked = run_task(tmp_path, processes, "state_check", task, ("--check", "--diff"))
    assert checked["changed"] is True and checked["state"]["current_version"] == "5.1.0"
    assert not (root / "staging.json").exists()
    done = run_task(tmp_path, processes, "state_set", task, ("--diff",))
    assert done["changed"] is True and done["diff"]["before"] == {}
    assert json.loads((root / "staging.json").read_text())["current_version"] == "5.1.0"
    again = run_task(tmp_path, processes, "state_again", task)
    assert again["changed"] is False
    got = run_task(tmp_path, processes, "state_get", {"meshos.release.release_state": {
        "root": str(root), "environment": "staging"}})
    assert got["state"]["previous_version"] == "5.0.1" and got["lock"] is None
    bad = run_task(tmp_path, processes, "state_bad", {"meshos.release.release_state": {
        "root": str(root), "environment": "../etc"}})
    assert bad["failed"] is True and "'../etc' is not allowed" in bad["msg"]


def test_two_concurrent_lock_attempts(tmp_path, processes):
    root = tmp_path / "state"

    def lock_play(name, holder, force=False, hold_until=None):
        task = {"meshos.release.release_state": {"root": str(root), "environment": "production",
                                                 "operation": "lock", "holder": holder, "force": force}}
        after = [{"name": "Hold the lock until the other run has its result", "ansible.builtin.wait_for": {
            "path": str(hold_until), "timeout": 90}}] if hold_until else []
        return _play(tmp_path, name, task, after)

    # each run keeps its ansible-playbook (the lock's pid) alive until the other run has its result,
    # so the loser always meets a live lock, however slow the machine is
    results = [tmp_path / ("lock_%s.result.json" % who) for who in ("alice", "bob")]
    runs = [lock_play("lock_alice", "alice", hold_until=results[1]), lock_play("lock_bob", "bob", hold_until=results[0])]
    procs = [processes(_argv(playbook)) for playbook, _result in runs]
    for proc in procs:
        proc.communicate(timeout=120)
    results = [json.loads(result.read_text()) for _playbook, result in runs]
    winners = [(r, p) for r, p in zip(results, procs) if not r.get("failed")]
    losers = [r for r in results if r.get("failed")]
    assert len(winners) == 1 and len(losers) == 1, results
    winner, winner_proc = winners[0]
    holder = winner["lock"]["holder"]
    assert winner["lock"]["pid"] == winner_proc.pid
    assert re.match(r"environment production is locked by %s since \S+ \(pid %d on \S+\)$"
                    % (holder, winner_proc.pid), losers[0]["msg"]), losers[0]["msg"]

    # the winner's ansible-playbook has exited: the lock is stale, recoverable only with force
    playbook, result = lock_play("lock_carol", "carol")
    run = processes(_argv(playbook))
    run.communicate(timeout=120)
    stale = json.loads(result.read_text())
    assert stale["failed"] is True and "stale" in stale["msg"] and "force" in stale["msg"]
    playbook, result = lock_play("lock_carol_force", "carol", force=True)
    run = processes(_argv(playbook))
    run.communicate(timeout=120)
    forced = json.loads(result.read_text())
    assert forced.get("failed") is not True and forced["changed"] is True
    assert forced["lock"]["holder"] == "carol" and forced["lock"]["broke"]["holder"] == holder
    released = run_task(tmp_path, processes, "unlock", {"meshos.release.release_state": {
        "root": str(root), "environment": "production", "operation": "unlock", "holder": "carol"}})
    assert released["changed"] is True and released["lock"] is None


# ------------------------------------------------------------------ report.yml

def test_report_playbook_renders_metrics_and_retrospective(tmp_path, processes):
    log = tmp_path / "audit.jsonl"
    entries = [
        dict(action="release_create", result="success"),
        dict(action="predeploy_check", result="success", details={"test_coverage": 87.5}),
        dict(action="deploy", environment="development", result="success", duration=120,
             details={"downtime_seconds": 0}),
        dict(action="deploy", environment="staging", result="success", duration=240,
             details={"downtime_seconds": 0}),
        dict(action="deploy", environment="production", result="success", duration=600,
             details={"downtime_seconds": 0}),
        dict(action="watch", environment="production", result="success", duration=1800),
        dict(action="incident", environment="production", result="info",
             details={"severity": "minor", "impact": "none"}),
        dict(action="deploy", environment="development", result="rolled_back", duration=90, version="5.2.0"),
        dict(action="rollback", environment="development", result="success", duration=20, version="5.2.0"),
    ]
    seeded = run_task(tmp_path, processes, "report_seed", _append_all(
        log, [dict({"version": "5.1.0", "strategy": "rolling"}, **entry) for entry in entries]))
    assert len(seeded["results"]) == len(entries)
    out_dir = tmp_path / "reports"
    extra = ["-e", json.dumps({"report_audit_log": str(log), "report_version": "5.1.0",
                               "report_output_dir": str(out_dir),
                               "report_participants": [{"name": "alice", "role": "Release Manager"}],
                               "report_action_items": ["Add more integration tests"],
                               # the managed Python has no plotly: the Markdown report only (HTML: test_release_report)
                               "report_html": False,
                               "ansible_python_interpreter": MANAGED_PYTHON})]
    proc = processes(_argv(REPO_ROOT / "playbooks" / "report.yml", extra))
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output
    metrics = (out_dir / "success-metrics.md").read_text()
    assert "| Deployment Success Rate | > 95% | 75.0% (3 of 4) | no |" in metrics
    assert "| Mean Time to Deploy | < 60 min | 5.3 min | yes |" in metrics
    assert "| Rollback Rate | < 5% | 25.0% (1 of 4) | no |" in metrics
    assert "| Post-Release Incidents | < 2 per release | 0.5 per release (1 in 2 releases) | yes |" in metrics
    assert "| Test Coverage | > 80% | 87.5% | yes |" in metrics
    retro = (out_dir / "retrospective-5.1.0.md").read_text()
    assert retro.startswith("# Release v5.1.0 Retrospective")
    assert "- alice, Release Manager" in retro
    for milestone in ("Release Created", "Development Deploy", "Staging Deploy", "Production Deploy",
                      "Monitoring Complete"):
        assert re.search(r"^- %s: \d{4}-\d\d-\d\dT" % milestone, retro, re.M), milestone
    assert "- Deployment Duration: 16.0 min" in retro and "- Rollback Count: 0" in retro
    assert "- Post-Release Incidents: 1 (minor)" in retro and "- [ ] Add more integration tests" in retro
    assert "5.2.0" not in retro
    report = (out_dir / "release-report-5.1.0.md").read_text()
    assert "Outcome: **success**" in report and "| Request rate | not measured: no Prometheus configured |" in report
    assert not (out_dir / "release-report-5.1.0.html").exists()

    # a tampered log is refused
    lines = log.read_text().splitlines(True)
    del lines[3]
    log.write_text("".join(lines))
    proc = processes(_argv(REPO_ROOT / "playbooks" / "report.yml", extra))
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode != 0 and "audit log does not verify" in output and "line 4" in output
