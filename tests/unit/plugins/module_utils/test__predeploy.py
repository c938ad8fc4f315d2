# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import sys

import pytest

from ansible_collections.meshos.release.plugins.module_utils._predeploy import (
    DEFAULT_CHECKLIST,
    PredeployError,
    normalize_checks,
    parse_audit,
    parse_test_summary,
    run_checks,
    run_command,
)

NPM7 = {"auditReportVersion": 2, "vulnerabilities": {},
        "metadata": {"vulnerabilities": {"info": 0, "low": 1, "moderate": 2, "high": 3, "critical": 1, "total": 7}}}
NPM6 = {"actions": [], "advisories": {"118": {"severity": "critical"}, "577": {"severity": "low"},
                                      "1000": {"severity": "high"}},
        "metadata": {"vulnerabilities": {"critical": 9}}}
PIP = {"dependencies": [{"name": "jinja2", "version": "2.0", "vulns": [{"id": "PYSEC-1"}, {"id": "PYSEC-2"}]},
                        {"name": "ok", "version": "1", "vulns": []}], "fixes": []}
EVIDENCE = dict((item, {"by": "alice", "at": "2025-10-24T10:00:00Z", "ref": "T-1"}) for item in DEFAULT_CHECKLIST)


def fake_runner(results):
    def runner(argv, timeout, chdir, env):
        return results[argv[0]]
    return runner


def test_parse_npm7():
    kind, counts = parse_audit(json.dumps(NPM7))
    assert kind == "npm" and counts["critical"] == 1 and counts["high"] == 3 and counts["total"] == 7


def test_parse_npm6_counts_advisories():
    kind, counts = parse_audit(json.dumps(NPM6))
    assert kind == "npm6" and counts["critical"] == 1 and counts["low"] == 1 and counts["total"] == 3


def test_parse_pip_audit_unrated():
    kind, counts = parse_audit(json.dumps(PIP))
    assert kind == "pip-audit" and counts["unknown"] == 2 and counts["critical"] == 0
    assert parse_audit(json.dumps(PIP["dependencies"]), unrated_severity="critical")[1]["critical"] == 2


@pytest.mark.parametrize("text, match", [
    ("not json", "not JSON"),
    (json.dumps({"error": {"code": "ENOLOCK", "summary": "no lockfile\nmore"}}), "npm audit reported an error: no lockfile$"),
    (json.dumps({"something": 1}), "not JSON from npm audit"),
])
def test_parse_audit_errors(text, match):
    with pytest.raises(PredeployError, match=match):
        parse_audit(text)


def test_test_summary():
    assert parse_test_summary("==== 3 failed, 10 passed in 1s ====") == (10, 3)
    assert parse_test_summary("  5 passing (20ms)\n  1 failing") == (5, 1)
    assert parse_test_summary("ok") == (None, None)


def test_normalize_defaults_and_strings():
    checks = normalize_checks(None)
    assert [c["name"] for c in checks] == ["git_status", "tests", "build", "security_scan"]
    assert checks[0]["argv"] == ["git", "status", "--porcelain"] and checks[0]["expected"] == "empty"
    custom = normalize_checks([{"name": "x", "command": "echo 'a b'", "shell": False}], default_timeout=5)
    assert custom[0]["argv"] == ["echo", "a b"] and custom[0]["timeout"] == 5
    assert normalize_checks([{"name": "x", "command": "echo a | cat", "shell": True}])[0]["argv"][:2] == ["/bin/sh", "-c"]


@pytest.mark.parametrize("checks, match", [
    ([{"name": "a", "command": []}], "command \\[\\] is not allowed"),
    ([{"name": "a", "command": "x", "expected": "great"}], "expected 'great' is not allowed: use one of empty"),
    ([{"name": "a", "command": "x"}, {"name": "a", "command": "y"}], "used twice"),
    ([{"name": "a", "command": "x", "timeout": 0}], "timeout 0"),
    ([{"command": "x"}], "no name"),
    ([{"name": "a", "command": "x", "fail_on": ["fatal"]}], "fail_on"),
    ([], "non-empty list"),
])
def test_normalize_bad_input(checks, match):
    with pytest.raises(PredeployError, match=match):
        normalize_checks(checks)


def test_run_command_real_success_failure_timeout():
    rc, out, _err, duration, timed_out = run_command([sys.executable, "-c", "print('hi')"], 10)
    assert (rc, out.strip(), timed_out) == (0, "hi", False) and duration >= 0
    rc, _out, err, _d, timed_out = run_command([sys.executable, "-c", "import sys; sys.stderr.write('bad'); sys.exit(3)"], 10)
    assert (rc, err, timed_out) == (3, "bad", False)
    rc, out, _err, _d, timed_out = run_command(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], 0.5)
    assert timed_out and out.strip() == "started"
    rc, _out, err, _d, _t = run_command(["/nonexistent/cmd"], 1)
    assert rc is None and "cannot run" in err


def test_run_checks_all_pass_with_fake_runner():
    runner = fake_runner({
        "git": (0, "", "", 0.1, False),
        "npm": (1, json.dumps(NPM7).replace('"critical": 1', '"critical": 0'), "", 2.0, False),
    })
    checks = [{"name": "git_status", "command": ["git", "status"], "expected": "empty"},
              {"name": "security_scan", "command": ["npm", "audit", "--json"], "expected": "no_critical"}]
    result = run_checks(checks, evidence=EVIDENCE, runner=runner)
    assert result["passed"] is True and result["failed_checks"] == []
    assert result["checks"][1]["vulnerabilities"]["high"] == 3


def test_run_checks_lists_every_failure_in_one_message():
    runner = fake_runner({
        "git": (0, " M file.py\n?? new\n", "", 0.1, False),
        "test": (0, "3 failed, 1 passed", "", 0.1, False),
        "build": (None, "", "", 5.0, True),
        "npm": (1, json.dumps(NPM7), "", 1.0, False),
    })
    checks = [{"name": "git_status", "command": ["git"], "expected": "empty"},
              {"name": "tests", "command": ["test"], "expected": "all_pass"},
              {"name": "build", "command": ["build"], "timeout": 5},
              {"name": "security_scan", "command": ["npm"], "expected": "no_critical"}]
    evidence = dict(EVIDENCE)
    del evidence["docs_updated"]
    evidence["changelog_prepared"] = {"by": "bob", "at": "yesterday"}
    result = run_checks(checks, evidence=evidence, runner=runner)
    assert result["passed"] is False
    assert result["failed_checks"] == ["git_status", "tests", "build", "security_scan", "docs_updated",
                                       "changelog_prepared"]
    msg = result["msg"]
    assert "\n" not in msg
    assert "git_status (output not empty (2 lines, first: M file.py))" in msg
    assert "tests (3 tests failed)" in msg and "build (timed out after 5s)" in msg
    assert "security_scan (1 critical vulnerabilities)" in msg
    assert "docs_updated (no evidence recorded)" in msg and "'yesterday' is not an ISO 8601" in msg


def test_output_tail_and_chdir(tmp_path):
    checks = [{"name": "many", "command": [sys.executable, "-c", "for i in range(50): print(i)"]},
              {"name": "pwd", "command": [sys.executable, "-c", "import os; print(os.getcwd())"], "chdir": str(tmp_path)},
              {"name": "missing", "command": ["true"], "chdir": str(tmp_path / "nope")}]
    result = run_checks(checks, checklist=[], output_lines=3)
    assert result["checks"][0]["stdout_tail"] == ["47", "48", "49"]
    assert result["checks"][1]["stdout_tail"] == [str(tmp_path)]
    assert result["checks"][2]["passed"] is False and "not a directory" in result["checks"][2]["reason"]
    assert result["failed_checks"] == ["missing"]


def test_evidence_must_be_dict():
    with pytest.raises(PredeployError, match="evidence"):
        run_checks([{"name": "a", "command": ["true"]}], evidence=["x"])
