# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, strategies as st

from ansible_collections.meshos.release.plugins.module_utils.predeploy.checks import (
    normalize_checks,
    run_checks,
    run_command,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.common import (
    CVSS_BANDS,
    DEFAULT_CHECKLIST,
    PredeployError,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.evaluate import (
    parse_coverage,
    parse_percent,
    parse_test_summary,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.scan import parse_audit, parse_threshold

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
    # pip-audit's JSON has no severity: unrated findings count as high by default (fail closed)
    kind, counts = parse_audit(json.dumps(PIP))
    assert kind == "pip-audit" and counts["high"] == 2 and counts["unknown"] == 0 and counts["critical"] == 0
    assert parse_audit(json.dumps(PIP), unrated_severity="unknown")[1]["unknown"] == 2
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
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 5)
    assert timed_out and out.strip() == "started"
    rc, _out, err, _d, _t = run_command(["/nonexistent/cmd"], 1)
    assert rc is None and "cannot run" in err


def test_run_checks_all_pass_with_fake_runner():
    clean = dict(NPM7, metadata={"vulnerabilities": {"info": 4, "low": 1, "moderate": 2, "high": 0, "critical": 0}})
    runner = fake_runner({
        "git": (0, "", "", 0.1, False),
        "npm": (1, json.dumps(clean), "", 2.0, False),
    })
    checks = [{"name": "git_status", "command": ["git", "status"], "expected": "empty"},
              {"name": "security_scan", "command": ["npm", "audit", "--json"], "expected": "no_critical"}]
    result = run_checks(checks, evidence=EVIDENCE, runner=runner)
    assert result["passed"] is True and result["failed_checks"] == []
    scan = result["checks"][1]
    assert scan["vulnerabilities"]["moderate"] == 2 and scan["failing_vulnerabilities"]["total"] == 0
    assert scan["reason"] == "no vulnerabilities at or above high (CVSS >= 7.0) (7 in total: 2 moderate, 1 low, 4 info)"
    assert scan["threshold"] == {"severity": "high", "cvss": 7.0, "fail_on": None}
    assert result["coverage_percent"] is None and scan["coverage_percent"] is None


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
    assert ("security_scan (4 vulnerabilities at or above high (CVSS >= 7.0): 1 critical, 3 high; "
            "3 below it: 2 moderate, 1 low)") in msg
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


# ------------------------------------------------------------------ security threshold

def _scan(stdout, **check):
    check = dict({"name": "scan", "command": ["scan"], "expected": "below_threshold"}, **check)
    runner = fake_runner({"scan": (1, stdout, "", 0.1, False)})
    return run_checks([check], checklist=[], runner=runner)


def _pip(*vulns):
    return json.dumps({"dependencies": [{"name": "pkg", "version": "1", "vulns": list(vulns)}], "fixes": []})


def test_default_threshold_fails_high_not_only_critical():
    only_high = json.dumps(dict(NPM7, metadata={"vulnerabilities": {"high": 1, "low": 2, "critical": 0}}))
    result = _scan(only_high, expected="no_critical")
    assert result["passed"] is False
    assert result["msg"] == ("pre-deployment checks failed: scan (1 vulnerability at or above high (CVSS >= 7.0): "
                             "1 high; 2 below it: 2 low)")
    assert _scan(only_high, severity_threshold="critical")["passed"] is True
    legacy = _scan(only_high, expected="no_critical", fail_on=["critical"])
    assert legacy["passed"] is True
    assert legacy["checks"][0]["reason"] == "no vulnerabilities of a fail_on severity (critical) (3 in total: 1 high, 2 low)"
    legacy = _scan(only_high, fail_on=["high", "low"])
    assert legacy["msg"] == "pre-deployment checks failed: scan (3 vulnerabilities of a fail_on severity (high/low): 1 high, 2 low)"
    assert _scan(only_high, severity_threshold="moderate")["passed"] is False


def test_unrated_pip_audit_finding_fails_closed():
    result = _scan(_pip({"id": "PYSEC-1", "fix_versions": ["2.0"], "aliases": []}), expected="no_critical",
                   scanner="pip-audit")
    assert result["passed"] is False and "1 vulnerability at or above high (CVSS >= 7.0): 1 high" in result["msg"]
    # explicitly lowered on purpose: counted, reported, passes
    lowered = _scan(_pip({"id": "PYSEC-1"}), unrated_severity="moderate")
    assert lowered["passed"] is True and lowered["checks"][0]["vulnerabilities"]["moderate"] == 1
    opted_out = _scan(_pip({"id": "PYSEC-1"}), unrated_severity="unknown")
    assert opted_out["passed"] is True and "1 unknown" in opted_out["checks"][0]["reason"]


def test_scores_names_and_osv_ratings():
    vulns = [{"id": "A", "severity": "medium", "cvss_score": 6.5},
             {"id": "B", "severity": [{"type": "CVSS_V3", "score": "7.4"}]},
             {"id": "C", "cvss": {"score": 9.8}},
             {"id": "D", "severity": 3.1}]
    check = _scan(_pip(*vulns))["checks"][0]
    assert {k: v for k, v in check["vulnerabilities"].items() if v} == \
        {"moderate": 1, "high": 1, "critical": 1, "low": 1, "total": 4}
    assert check["failing_vulnerabilities"]["total"] == 2
    # a numeric threshold compares the scores: 7.4 < 7.5 passes, 9.8 fails
    check = _scan(_pip(*vulns), severity_threshold=7.5)["checks"][0]
    assert check["failing_vulnerabilities"]["critical"] == 1 and check["failing_vulnerabilities"]["high"] == 0
    assert "at or above CVSS 7.5" in check["reason"]
    # a finding known only by name counts as the top of its band (high = 8.9): fails at 7.5
    named = _scan(_pip({"id": "E", "severity": "high"}), severity_threshold="7.5")["checks"][0]
    assert named["passed"] is False
    # a name and a lower score: the band's lowest score keeps it at high
    mixed = _scan(_pip({"id": "F", "severity": "high", "cvss_score": 5.0}))["checks"][0]
    assert mixed["passed"] is False and mixed["failing_vulnerabilities"]["high"] == 1


def test_npm6_advisory_scores():
    npm6 = {"advisories": {"1": {"severity": "low", "cvss": {"score": 0}}, "2": {"severity": "moderate"}}}
    assert _scan(json.dumps(npm6))["passed"] is True
    assert _scan(json.dumps(npm6), severity_threshold="moderate")["passed"] is False


@pytest.mark.parametrize("check, match", [
    ({"severity_threshold": "severe"}, "severity_threshold 'severe' is not allowed: use critical, high"),
    ({"severity_threshold": 11}, "severity_threshold 11 is not allowed"),
    ({"severity_threshold": True}, "severity_threshold True is not allowed"),
    ({"severity_threshold": "high", "fail_on": ["critical"]}, "sets both fail_on"),
    ({"unrated_severity": "bad"}, "unrated_severity 'bad'"),
    ({"min_coverage": 101}, "min_coverage 101 is not allowed: use a percentage from 0 to 100"),
    ({"min_coverage": "lots"}, "min_coverage 'lots' is not allowed"),
])
def test_scan_and_coverage_options_bad_input(check, match):
    with pytest.raises(PredeployError, match=match):
        normalize_checks([dict({"name": "a", "command": "x"}, **check)])


def test_module_level_bad_defaults():
    with pytest.raises(PredeployError, match="severity_threshold 'urgent' is not allowed"):
        run_checks([{"name": "a", "command": ["true"]}], checklist=[], severity_threshold="urgent")
    with pytest.raises(PredeployError, match="min_coverage -1 is not allowed"):
        run_checks([{"name": "a", "command": ["true"]}], checklist=[], min_coverage=-1)


@given(st.floats(min_value=0, max_value=10, allow_nan=False))
def test_threshold_scores_property(score):
    threshold = parse_threshold(score)
    assert threshold["cvss"] == score
    low, high = CVSS_BANDS[threshold["severity"]]
    assert low <= score or threshold["severity"] == "info"
    assert parse_threshold(str(score))["cvss"] == score


@given(st.one_of(st.floats(allow_nan=True), st.text(max_size=20), st.integers()))
def test_threshold_rejects_or_accepts_property(value):
    try:
        threshold = parse_threshold(value)
    except PredeployError as exc:
        assert "is not allowed" in str(exc) and "\n" not in str(exc)
    else:
        assert 0 <= threshold["cvss"] <= 10


# ------------------------------------------------------------------ coverage

PYTEST_COV = """============================= test session starts ==============================
tests/test_a.py ....                                                      [100%]

---------- coverage: platform linux, python 3.11.2-final-0 -----------
Name                 Stmts   Miss  Cover
----------------------------------------
tool/__init__.py         2      0   100%
tool/core.py           120     14    88%
----------------------------------------
TOTAL                  122     14    89%

============================== 4 passed in 0.31s ==============================="""
COVERAGE_BRANCH = """Name        Stmts   Miss Branch BrPart   Cover
---------------------------------------------
a.py           10      2      4      1  78.57%
---------------------------------------------
TOTAL          10      2      4      1  78.57%"""
JEST = """----------|---------|----------|---------|---------|-------------------
File      | % Stmts | % Branch | % Funcs | % Lines | Uncovered Line #s
----------|---------|----------|---------|---------|-------------------
All files |    87.5 |       80 |     100 |    87.5 |
 sum.js   |    87.5 |       80 |     100 |    87.5 | 7
----------|---------|----------|---------|---------|-------------------
Tests:       3 passed, 3 total"""


@pytest.mark.parametrize("text, expected", [
    (PYTEST_COV, 89.0),
    (COVERAGE_BRANCH, 78.57),
    (JEST, 87.5),
    ("Statements   : 91.3% ( 21/23 )\nBranches     : 50% ( 1/2 )", 91.3),
    ("FAIL Required test coverage of 90% not reached. Total coverage: 87.50%", 87.5),
    ("12 passed in 0.05s", None),
    ("TOTAL 3 tests", None),
    ("", None),
])
def test_parse_coverage(text, expected):
    assert parse_coverage(text) == expected


_NOISE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="%|"), max_size=40)


@given(st.decimals(min_value=0, max_value=100, places=2), st.integers(0, 3), _NOISE, _NOISE)
def test_parse_coverage_property(percent, style, before, after):
    text = "%s" % percent
    rendered = [
        "TOTAL    1234    150    %s%%" % text,
        "TOTAL  10  2  4  1  %s%%" % text,
        "All files |  %s |  80 |  90 |  85 |" % text,
        "Required test coverage of 80%% reached. Total coverage: %s%%" % text,
    ][style]
    out = "%s\n%s\n%s" % (before.replace("\n", " "), rendered, after.replace("\n", " "))
    assert parse_coverage(out) == float(percent)


@given(st.text(max_size=200))
def test_parse_coverage_never_raises_and_stays_in_range(text):
    value = parse_coverage(text)
    assert value is None or 0 <= value <= 100


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10), st.integers(-5, 200)))
def test_parse_percent_property(value):
    try:
        number = parse_percent(value)
    except PredeployError as exc:
        assert "is not allowed: use a percentage from 0 to 100" in str(exc)
    else:
        assert 0 <= number <= 100


def test_coverage_recorded_and_min_coverage():
    runner = fake_runner({"pytest": (0, PYTEST_COV, "", 1.0, False), "jest": (0, JEST, "", 1.0, False),
                          "plain": (0, "12 passed in 0.05s", "", 1.0, False)})
    checks = [{"name": "py", "command": ["pytest"], "expected": "all_pass"},
              {"name": "js", "command": ["jest"], "expected": "success"}]
    result = run_checks(checks, checklist=[], runner=runner)
    assert result["passed"] is True and result["coverage_percent"] == 87.5
    assert [c["coverage_percent"] for c in result["checks"]] == [89.0, 87.5]
    assert result["checks"][0]["reason"] == "all tests passed (4), coverage 89%"
    # the module-level minimum applies to all_pass checks, a check's own value wins
    low = run_checks(checks, checklist=[], runner=runner, min_coverage=90)
    assert low["failed_checks"] == ["py"] and "py (coverage 89% is below min_coverage 90%)" in low["msg"]
    own = run_checks([dict(checks[1], min_coverage=88)], checklist=[], runner=runner, min_coverage=10)
    assert own["msg"] == "pre-deployment checks failed: js (coverage 87.5% is below min_coverage 88%)"
    # a required coverage that is not reported fails closed
    missing = run_checks([{"name": "plain", "command": ["plain"], "expected": "all_pass"}], checklist=[],
                         runner=runner, min_coverage=80)
    assert missing["passed"] is False and "no coverage summary in the output; min_coverage 80% needs one" in missing["msg"]
    assert missing["coverage_percent"] is None
    # failed tests are named before the coverage
    failing = fake_runner({"pytest": (0, PYTEST_COV.replace("4 passed", "1 failed, 3 passed"), "", 1.0, False)})
    result = run_checks([checks[0]], checklist=[], runner=failing, min_coverage=95)
    assert "py (1 tests failed)" in result["msg"] and result["checks"][0]["coverage_percent"] == 89.0
