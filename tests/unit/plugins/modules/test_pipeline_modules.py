# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The thin modules predeploy_check, audit_log and release_state, run in-process with patch_module_args."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshos.release.plugins.modules import audit_log, predeploy_check, release_state


def run(module, args, capsys, check_mode=False, diff=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = exc.value.code
    return out


def test_predeploy_check_module(capsys, tmp_path):
    ok = run(predeploy_check, {"checks": [{"name": "t", "command": ["true"]}], "checklist": []}, capsys)
    assert ok["_rc"] == 0 and ok["passed"] is True and ok["changed"] is False
    bad = run(predeploy_check, {"checks": [{"name": "f", "command": ["false"]}], "checklist": ["docs_updated"]}, capsys)
    assert bad["_rc"] == 1 and bad["failed"] is True
    assert bad["msg"] == "pre-deployment checks failed: f (exit code 1); docs_updated (no evidence recorded)"
    report = run(predeploy_check, {"checks": [{"name": "f", "command": ["false"]}], "checklist": [],
                                   "fail_on_error": False}, capsys)
    assert report["_rc"] == 0 and report["passed"] is False
    dup = run(predeploy_check, {"checks": [{"name": "a", "command": "true"}, {"name": "a", "command": "true"}]}, capsys)
    assert dup["failed"] is True and "used twice" in dup["msg"]


def test_predeploy_check_module_scan_threshold_and_coverage(capsys, tmp_path):
    """The argument spec's defaults: high fails by default, unrated pip-audit findings count as high."""
    (tmp_path / "pip.json").write_text(json.dumps({"dependencies": [{"name": "p", "version": "1", "vulns": [
        {"id": "PYSEC-1"}]}]}))
    (tmp_path / "cov.txt").write_text("TOTAL   100   21   79%\n3 passed in 0.1s\n")
    scan = {"name": "security_scan", "command": ["cat", "pip.json"], "expected": "no_critical"}
    tests = {"name": "tests", "command": ["cat", "cov.txt"], "expected": "all_pass"}
    base = {"chdir": str(tmp_path), "checklist": []}
    red = run(predeploy_check, dict(base, checks=[scan, tests]), capsys)
    assert red["_rc"] == 1 and red["failed_checks"] == ["security_scan"]
    assert "security_scan (1 vulnerability at or above high (CVSS >= 7.0): 1 high)" in red["msg"]
    assert red["coverage_percent"] == 79.0 and red["checks"][1]["coverage_percent"] == 79.0
    assert red["checks"][0]["coverage_percent"] is None
    # module-level threshold, per-check unrated severity and the module-level min_coverage
    green = run(predeploy_check, dict(base, checks=[scan], severity_threshold="critical"), capsys)
    assert green["_rc"] == 0 and green["passed"] is True
    low = run(predeploy_check, dict(base, checks=[dict(scan, unrated_severity="low"), tests], min_coverage=80), capsys)
    assert low["failed_checks"] == ["tests"] and "coverage 79% is below min_coverage 80%" in low["msg"]
    both = run(predeploy_check, dict(base, checks=[dict(scan, fail_on=["critical"], severity_threshold="high")]), capsys)
    assert both["failed"] is True and "mutually exclusive" in both["msg"]
    legacy = run(predeploy_check, dict(base, checks=[dict(scan, fail_on=["critical"])]), capsys)
    assert legacy["passed"] is True and legacy["checks"][0]["threshold"]["fail_on"] == ["critical"]
    bad = run(predeploy_check, dict(base, checks=[scan], severity_threshold="urgent"), capsys)
    assert bad["failed"] is True and "severity_threshold 'urgent' is not allowed" in bad["msg"]


def test_audit_log_module(capsys, tmp_path):
    path = str(tmp_path / "audit.jsonl")
    preview = run(audit_log, {"path": path, "action": "deploy", "result": "started", "actor": "a"}, capsys,
                  check_mode=True, diff=True)
    assert preview["changed"] is True and preview["diff"]["before"] == "" and not os.path.exists(path)
    added = run(audit_log, {"path": path, "action": "deploy", "result": "success", "actor": "a", "duration": 3},
                capsys)
    assert added["entry"]["seq"] == 1 and added["entry"]["duration"] == 3.0
    verified = run(audit_log, {"path": path, "state": "verify"}, capsys)
    assert verified["valid"] is True and verified["count"] == 1
    with open(path, "a") as f:
        f.write("{}\n")
    broken = run(audit_log, {"path": path, "state": "verify", "fail_on_invalid": False}, capsys)
    assert broken["_rc"] == 0 and broken["valid"] is False and broken["first_bad_line"] == 2
    refused = run(audit_log, {"path": path, "action": "deploy", "result": "success"}, capsys)
    assert refused["failed"] is True and "refusing to extend" in refused["msg"]
    missing_dir = run(audit_log, {"path": str(tmp_path / "no" / "a.jsonl"), "action": "x", "result": "info"}, capsys)
    assert missing_dir["failed"] is True and "does not exist" in missing_dir["msg"]


def test_release_state_module(capsys, tmp_path):
    root = str(tmp_path / "state")
    base = {"root": root, "environment": "dev"}
    s = run(release_state, dict(base, operation="set", values={"current_version": "1.0.0"}), capsys, diff=True)
    assert s["changed"] is True and s["diff"]["after"]["current_version"] == "1.0.0"
    lock = run(release_state, dict(base, operation="lock", holder="alice", pid=os.getpid()), capsys)
    assert lock["changed"] is True and lock["lock"]["holder"] == "alice" and lock["stale"] is None
    held = run(release_state, dict(base, operation="lock", holder="bob", pid=os.getpid()), capsys)
    assert held["failed"] is True and held["locked"] is True
    assert held["msg"].startswith("environment dev is locked by alice since ")
    unlock = run(release_state, dict(base, operation="unlock", holder="alice"), capsys, check_mode=True)
    assert unlock["changed"] is True and unlock["lock"] is None
    assert run(release_state, base, capsys)["lock"]["holder"] == "alice"
    missing = run(release_state, dict(base, operation="lock"), capsys)
    assert missing["failed"] is True and "holder" in missing["msg"]


def test_predeploy_check_mode_runs_only_read_only_checks(capsys, tmp_path):
    """Check mode starts no build/test command and writes nothing; a read-only git status still runs, without even
    refreshing git's index."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for argv in (["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty",
                                  "-m", "init"]):
        subprocess.run(["git", "-C", str(repo)] + argv, check=True)
    (repo / "tracked").write_text("x")
    subprocess.run(["git", "-C", str(repo), "add", "tracked"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "t"],
                   check=True)
    os.utime(repo / "tracked")  # stale stat info: a plain git status would rewrite .git/index
    index_before = (repo / ".git" / "index").stat().st_mtime_ns, (repo / ".git" / "index").read_bytes()
    before = sorted(p.name for p in repo.iterdir())
    checks = [{"name": "git_status", "command": "git status --porcelain", "expected": "empty", "read_only": True},
              {"name": "build", "command": "touch built.tar.gz", "shell": True},
              {"name": "tests", "command": ["sh", "-c", "echo 1 passed > tests.log"], "expected": "all_pass"}]
    out = run(predeploy_check, {"checks": checks, "checklist": [], "chdir": str(repo)}, capsys, check_mode=True)
    assert out["_rc"] == 0 and out["changed"] is False and "failed" not in out
    assert sorted(p.name for p in repo.iterdir()) == before
    assert ((repo / ".git" / "index").stat().st_mtime_ns, (repo / ".git" / "index").read_bytes()) == index_before
    assert [c["status"] for c in out["checks"]] == ["passed", "would_run", "would_run"]
    assert out["checks"][0]["rc"] == 0 and out["checks"][1]["rc"] is None
    assert out["checks"][1]["reason"] == "would run: /bin/sh -c 'touch built.tar.gz'"
    assert out["checks"][2]["reason"] == "would run: sh -c 'echo 1 passed > tests.log'"
    assert out["would_run"] == ["build", "tests"] and out["failed_checks"] == [] and out["passed"] is False
    assert out["msg"] == ("all 1 read-only pre-deployment checks and 0 checklist items passed; check mode, 2 not run: "
                          "build (would run: /bin/sh -c 'touch built.tar.gz'); "
                          "tests (would run: sh -c 'echo 1 passed > tests.log')")
    # a real failure of what check mode can check still fails the task: dirty tree, missing evidence
    (repo / "untracked").write_text("y")
    dirty = run(predeploy_check, {"checks": checks, "checklist": ["docs_updated"], "chdir": str(repo)}, capsys,
                check_mode=True)
    assert dirty["_rc"] == 1 and dirty["failed_checks"] == ["git_status", "docs_updated"]
    assert "check mode, 2 not run" in dirty["msg"] and not (repo / "built.tar.gz").exists()
    # outside check mode the same checks run for real
    real = run(predeploy_check, {"checks": checks, "checklist": [], "chdir": str(repo), "fail_on_error": False}, capsys)
    assert [c["status"] for c in real["checks"]] == ["failed", "passed", "passed"] and real["would_run"] == []
    assert (repo / "built.tar.gz").exists() and (repo / "tests.log").exists()


def test_predeploy_check_mode_default_checks_skip_npm(capsys, tmp_path):
    """The seed's defaults: only git_status is read-only; npm test/build/audit would run."""
    out = run(predeploy_check, {"checklist": [], "chdir": str(tmp_path), "fail_on_error": False}, capsys,
              check_mode=True)
    assert out["would_run"] == ["tests", "build", "security_scan"]
    assert [c["reason"] for c in out["checks"][1:]] == ["would run: npm test", "would run: npm run build",
                                                        "would run: npm audit --json"]
