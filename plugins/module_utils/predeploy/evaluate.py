# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One finished command judged against its expectation: test summaries, coverage summaries, scans."""

from __future__ import annotations

import re

from ansible_collections.meshos.release.plugins.module_utils.predeploy.common import SCAN_EXPECTED, PredeployError
from ansible_collections.meshos.release.plugins.module_utils.predeploy.scan import judge_scan

# (regex, group meaning) for common test runner summaries: pytest, mocha, jest, go, tap
_FAILED_RES = [
    re.compile(r"\b(\d+) failed\b"),            # pytest "2 failed", jest "Tests: 1 failed"
    re.compile(r"\b(\d+) failing\b"),           # mocha
    re.compile(r"^# fail\s+(\d+)", re.M),       # tap
]
_PASSED_RES = [
    re.compile(r"\b(\d+) passed\b"),
    re.compile(r"\b(\d+) passing\b"),
    re.compile(r"^# pass\s+(\d+)", re.M),
]


def parse_percent(value):
    """A percentage 0..100 from a number or a string such as ``80``, ``80.5`` or ``80 %``."""
    number = value
    if isinstance(value, str):
        text = value.strip()
        text = text[:-1].strip() if text.endswith("%") else text
        try:
            number = float(text)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 100:  # NaN fails too
        raise PredeployError("%r is not allowed: use a percentage from 0 to 100" % (value,))
    return float(number)


# Coverage summaries (the last one in the output wins: a report printed after the tests):
#   pytest-cov / coverage.py ``coverage report``: "TOTAL   1234   150   88%" (branch columns and decimals optional)
#   pytest-cov's fail-under line: "Total coverage: 87.50%"
#   istanbul/jest text reporter: "All files |   87.5 |  80 |  90 |  87.5 |" (first column: statements)
#   istanbul text-summary: "Statements   : 87.5% ( 35/40 )"
_COVERAGE_RES = [
    re.compile(r"^\s*TOTAL(?:\s+\d+)+\s+(\d{1,3}(?:\.\d+)?)%\s*$", re.M),
    re.compile(r"\bTotal coverage:\s*(\d{1,3}(?:\.\d+)?)%", re.M),
    re.compile(r"^\s*All files\s*\|\s*(\d{1,3}(?:\.\d+)?)\s*\|", re.M),
    re.compile(r"^\s*Statements\s*:\s*(\d{1,3}(?:\.\d+)?)%", re.M),
]


def parse_coverage(text):
    """Overall coverage percent from a recognised coverage summary in ``text``, None when there is none."""
    best = None  # (position, value): the summary printed last wins
    for rx in _COVERAGE_RES:
        for found in rx.finditer(text or ""):
            value = float(found.group(1))
            if value <= 100 and (best is None or found.start() > best[0]):
                best = (found.start(), value)
    return None if best is None else best[1]


def parse_test_summary(text):
    """(passed, failed) from a recognised test summary, None for unknown counts."""
    failed = passed = None
    for rx in _FAILED_RES:
        found = rx.findall(text)
        if found:
            failed = (failed or 0) + int(found[-1])
    for rx in _PASSED_RES:
        found = rx.findall(text)
        if found:
            passed = (passed or 0) + int(found[-1])
    return passed, failed


def _pct(value):
    return ("%.2f" % value).rstrip("0").rstrip(".")


def evaluate(check, rc, stdout, stderr, timed_out):
    """(passed, reason, extra) for one finished command."""
    extra = {}
    if timed_out:
        return False, "timed out after %ss" % check["timeout"], extra
    if rc is None:
        return False, stderr.strip().splitlines()[0] if stderr.strip() else "could not be started", extra
    expected = check["expected"]
    if expected in SCAN_EXPECTED:
        try:
            return judge_scan(check, stdout)
        except PredeployError as exc:
            return False, "%s (rc %s)" % (exc, rc), extra
    if expected != "empty":
        extra["coverage_percent"] = parse_coverage(stdout + "\n" + stderr)
    if rc != 0:
        return False, "exit code %s" % rc, extra
    if expected == "empty":
        if stdout.strip():
            lines = stdout.strip().splitlines()
            return False, "output not empty (%d lines, first: %s)" % (len(lines), lines[0].strip()), extra
        return True, "output empty", extra
    if expected == "all_pass":
        passed, failed = parse_test_summary(stdout + "\n" + stderr)
        extra["tests"] = {"passed": passed, "failed": failed}
        if failed:
            return False, "%d tests failed" % failed, extra
    coverage_failure = _judge_coverage(check, extra.get("coverage_percent"))
    if coverage_failure:
        return False, coverage_failure, extra
    if expected == "all_pass":
        passed = extra["tests"]["passed"]
        return True, "all tests passed" + (" (%d)" % passed if passed is not None else "") + _cov_note(extra), extra
    return True, "exit code 0" + _cov_note(extra), extra


def _judge_coverage(check, coverage):
    """A failure reason when the check has a min_coverage the output does not meet (or does not report)."""
    minimum = check.get("min_coverage")
    if minimum is None:
        return None
    if coverage is None:
        # fail closed: a required coverage that is not reported is not met
        return ("no coverage summary in the output; min_coverage %s%% needs one (pytest-cov/coverage.py TOTAL line, "
                "istanbul 'All files' row)" % _pct(minimum))
    if coverage < minimum:
        return "coverage %s%% is below min_coverage %s%%" % (_pct(coverage), _pct(minimum))
    return None


def _cov_note(extra):
    coverage = extra.get("coverage_percent")
    return "" if coverage is None else ", coverage %s%%" % _pct(coverage)
