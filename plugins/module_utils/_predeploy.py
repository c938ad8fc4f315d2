# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pre-deployment checks (the seed's "Pre-Deployment Checks" and "Pre-Release Checklist").

Command checks run with a timeout and report rc, duration, the tail of their output and a
pass/fail reason. ``expected`` decides what passing means:

``empty``       rc 0 and nothing on stdout (``git status --porcelain``)
``success``     rc 0
``all_pass``    rc 0 and no failed tests in a recognised test summary
``below_threshold`` stdout is ``npm audit --json`` or ``pip-audit -f json``; no finding at or above the
                severity threshold (a CVSS severity name or score, default ``high``)
``no_critical`` the seed's name, kept as an alias of ``below_threshold``: with the default threshold it now also
                fails on high findings (CVSS >= 7.0), not only on critical ones

Every check also reports ``coverage_percent`` when its output carries a coverage summary (pytest-cov / coverage.py
``TOTAL`` line, istanbul/jest ``All files`` row); ``min_coverage`` fails a check below it.

Checklist items that are not commands are satisfied by recorded evidence (``by``, ``at``,
``ref``); missing evidence fails closed. Nothing is changed. Standard library only.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import time

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

EXPECTED = ("empty", "success", "all_pass", "below_threshold", "no_critical")
SCAN_EXPECTED = ("below_threshold", "no_critical")
SEVERITIES = ("critical", "high", "moderate", "low", "info", "unknown")
SCANNERS = ("auto", "npm", "pip-audit")
DEFAULT_THRESHOLD = "high"
# Findings without a rating (pip-audit's JSON has none) count as high by default: a scan that cannot say how bad a
# finding is must not pass it, so an unrated finding blocks until someone rates or fixes it (fail closed).
DEFAULT_UNRATED = "high"

# CVSS v3 qualitative bands (FIRST CVSS v3.1 specification, section 5): name -> (lowest, highest) base score.
# npm calls "medium" "moderate"; "none" is npm's "info".
CVSS_BANDS = {"critical": (9.0, 10.0), "high": (7.0, 8.9), "moderate": (4.0, 6.9), "low": (0.1, 3.9),
              "info": (0.0, 0.0)}
SEVERITY_ALIASES = {"medium": "moderate", "none": "info", "informational": "info"}

DEFAULT_CHECKS = [
    {"name": "git_status", "command": ["git", "status", "--porcelain"], "expected": "empty"},
    {"name": "tests", "command": ["npm", "test"], "expected": "all_pass"},
    {"name": "build", "command": ["npm", "run", "build"], "expected": "success"},
    {"name": "security_scan", "command": ["npm", "audit", "--json"], "expected": "no_critical"},
]
DEFAULT_CHECKLIST = ["code_review_approved", "docs_updated", "changelog_prepared", "stakeholders_notified",
                     "performance_benchmarks_met", "compliance_checks_passed"]

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


class PredeployError(MeshosError):
    """Bad input; one-line message naming the bad value and what is allowed."""


def _tail(text, lines):
    parts = text.splitlines()
    return parts[-lines:] if lines > 0 else []


def normalize_severity(value):
    """Canonical severity name (critical, high, moderate, low, info) or None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    name = SEVERITY_ALIASES.get(name, name)
    return name if name in CVSS_BANDS else None


def _score(value):
    """A CVSS base score 0..10 from a number or numeric string, else None (bool is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    # NaN fails the range test too
    if not isinstance(value, (int, float)) or not 0 <= value <= 10:
        return None
    return float(value)


def severity_of_score(score):
    """The CVSS v3 band of a base score (0.0 is info/none)."""
    for name in ("critical", "high", "moderate", "low"):
        if score >= CVSS_BANDS[name][0]:
            return name
    return "info"


def parse_threshold(value):
    """{"severity", "cvss", "text"} from a severity name (critical, high, moderate/medium, low, info) or a CVSS
    base score 0..10. A name stands for the lowest score of its band (high = 7.0)."""
    name = normalize_severity(value)
    if name is not None:
        return {"severity": name, "cvss": CVSS_BANDS[name][0],
                "text": "%s (CVSS >= %.1f)" % (name, CVSS_BANDS[name][0])}
    score = _score(value)
    if score is None:
        raise PredeployError("severity_threshold %r is not allowed: use critical, high, moderate (medium), low, info "
                             "or a CVSS score from 0 to 10" % (value,))
    return {"severity": severity_of_score(score), "cvss": score, "text": "CVSS %.1f" % score}


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


def normalize_checks(checks, default_chdir=None, default_timeout=600, default_threshold=DEFAULT_THRESHOLD,
                     default_min_coverage=None):
    """Validate the check list and fill defaults. Returns new dictionaries."""
    if checks is None:
        checks = DEFAULT_CHECKS
    if not isinstance(checks, list) or not checks:
        raise PredeployError("checks must be a non-empty list, got %r" % (checks,))
    out, seen = [], set()
    for index, check in enumerate(checks):
        if not isinstance(check, dict):
            raise PredeployError("checks[%d] %r is not allowed: use a dictionary with name and command" % (index, check))
        name = check.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PredeployError("checks[%d] has no name: every check needs a unique name" % index)
        if name in seen:
            raise PredeployError("check name %r is used twice: names must be unique" % name)
        seen.add(name)
        command = check.get("command")
        shell = bool(check.get("shell", False))
        if isinstance(command, str):
            argv = ["/bin/sh", "-c", command] if shell else shlex.split(command)
        elif isinstance(command, list) and all(isinstance(a, (str, int, float)) for a in command):
            argv = [str(a) for a in command]
            if shell:
                argv = ["/bin/sh", "-c", " ".join(shlex.quote(a) for a in argv)]
        else:
            argv = []
        if not argv:
            raise PredeployError("check %r command %r is not allowed: use a non-empty argv list or string" % (name, command))
        expected = check.get("expected", "success")
        if expected not in EXPECTED:
            raise PredeployError("check %r expected %r is not allowed: use one of %s" % (name, expected, ", ".join(EXPECTED)))
        timeout = check.get("timeout")
        timeout = default_timeout if timeout is None else timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise PredeployError("check %r timeout %r is not allowed: use a number of seconds > 0" % (name, timeout))
        env = check.get("env") or {}
        if not isinstance(env, dict):
            raise PredeployError("check %r env %r is not allowed: use a dictionary of strings" % (name, env))
        scanner = check.get("scanner", "auto")
        if scanner not in SCANNERS:
            raise PredeployError("check %r scanner %r is not allowed: use one of %s" % (name, scanner, ", ".join(SCANNERS)))
        fail_on = check.get("fail_on")
        if fail_on is not None and (not isinstance(fail_on, list) or not fail_on
                                    or any(s not in SEVERITIES for s in fail_on)):
            raise PredeployError("check %r fail_on %r is not allowed: use a list of %s" % (name, fail_on, ", ".join(SEVERITIES)))
        if fail_on is not None and check.get("severity_threshold") is not None:
            raise PredeployError("check %r sets both fail_on %r and severity_threshold %r: use only severity_threshold"
                                 % (name, fail_on, check["severity_threshold"]))
        try:
            given = check.get("severity_threshold")
            threshold = parse_threshold(default_threshold if given is None else given)
        except PredeployError as exc:
            raise PredeployError("check %r %s" % (name, exc))
        unrated = check.get("unrated_severity")
        unrated = DEFAULT_UNRATED if unrated is None else unrated
        if unrated not in SEVERITIES:
            raise PredeployError("check %r unrated_severity %r is not allowed: use one of %s"
                                 % (name, unrated, ", ".join(SEVERITIES)))
        min_coverage = check.get("min_coverage")
        min_coverage = default_min_coverage if min_coverage is None and expected == "all_pass" else min_coverage
        if min_coverage is not None:
            try:
                min_coverage = parse_percent(min_coverage)
            except PredeployError as exc:
                raise PredeployError("check %r min_coverage %s" % (name, exc))
        out.append({"name": name, "argv": argv, "expected": expected, "timeout": timeout,
                    "chdir": check.get("chdir") or default_chdir, "env": dict((str(k), str(v)) for k, v in env.items()),
                    "scanner": scanner, "fail_on": fail_on, "threshold": threshold, "unrated_severity": unrated,
                    "min_coverage": min_coverage})
    return out


def run_command(argv, timeout, chdir=None, env=None, clock=time.monotonic):
    """Run ``argv``; kill its whole process group on timeout. Returns (rc, stdout, stderr, duration, timed_out)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    start = clock()
    try:
        # AnsibleModule.run_command has no timeout and cannot kill a process group, which this check needs
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            argv, cwd=chdir or None, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return None, "", "cannot run %s: %s" % (argv[0], exc.strerror or exc), clock() - start, False
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
    return (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            clock() - start, timed_out)


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


def _finding_rating(record):
    """(severity name or None, CVSS score or None) of one advisory / vulnerability record.

    Understands ``severity`` as a name, a number or an OSV list of ``{"type", "score"}``, ``cvss_score``, ``cvss``
    as a number or ``{"score": n}`` (npm). A score of 0 without a name is npm's "not scored", not a rating."""
    if not isinstance(record, dict):
        return None, None
    name, score = None, None
    severity = record.get("severity")
    if isinstance(severity, list):
        for item in severity:
            if isinstance(item, dict):
                value = _score(item.get("score"))
                if value is not None and (score is None or value > score):
                    score = value
    elif isinstance(severity, str) and normalize_severity(severity):
        name = normalize_severity(severity)
    elif _score(severity) is not None:
        score = _score(severity)
    for key in ("cvss_score", "cvss"):
        value = record.get(key)
        value = _score(value.get("score")) if isinstance(value, dict) else _score(value)
        if value is not None and (score is None or value > score):
            score = value
    if score == 0 and name is None:
        score = None
    return name, score


def scan_findings(text, scanner="auto"):
    """(kind, findings) from ``npm audit --json`` (npm 7+ or npm 6) or ``pip-audit -f json``.

    Each finding is ``(severity name or None, CVSS score or None, count)``; None/None is an unrated finding."""
    try:
        data = json.loads(text)
    except ValueError:
        raise PredeployError("output is not JSON from npm audit --json or pip-audit -f json")
    findings = []
    if isinstance(data, dict) and "error" in data and scanner in ("auto", "npm"):
        error = data["error"]
        summary = error.get("summary") if isinstance(error, dict) else error
        summary = str(summary).strip().splitlines()[0] if summary and str(summary).strip() else "unknown error"
        raise PredeployError("npm audit reported an error: %s" % summary)
    is_pip = isinstance(data, list) or (isinstance(data, dict) and "dependencies" in data)
    if scanner == "pip-audit" or (scanner == "auto" and is_pip):
        deps = data if isinstance(data, list) else data.get("dependencies")
        if not isinstance(deps, list):
            raise PredeployError("output is not pip-audit JSON (no dependencies list)")
        for dep in deps:
            vulns = dep.get("vulns") if isinstance(dep, dict) else None
            for vuln in vulns or []:
                name, score = _finding_rating(vuln)
                findings.append((name, score, 1))
        kind = "pip-audit"
    elif isinstance(data, dict) and isinstance(data.get("advisories"), dict):
        for advisory in data["advisories"].values():
            name, score = _finding_rating(advisory)
            findings.append((name, score, 1))
        kind = "npm6"
    elif isinstance(data, dict) and isinstance(data.get("metadata"), dict) \
            and isinstance(data["metadata"].get("vulnerabilities"), dict):
        # npm 7+: the metadata counts per severity are the report's own totals (one per vulnerable package)
        for severity, number in data["metadata"]["vulnerabilities"].items():
            if severity == "total":
                continue
            try:
                number = int(number or 0)
            except (TypeError, ValueError):
                raise PredeployError("npm audit metadata count %r for %r is not a number" % (number, severity))
            if number:
                findings.append((normalize_severity(str(severity)), None, number))
        kind = "npm"
    else:
        raise PredeployError("output is not JSON from npm audit --json or pip-audit -f json")
    return kind, findings


def rate_findings(findings, unrated_severity=DEFAULT_UNRATED):
    """[(severity bucket, effective CVSS score or None, count)]: names and scores reconciled, unrated findings given
    ``unrated_severity``. A finding known only by name counts as the highest score of its band (fail closed); one
    with both counts as the higher of its score and its band's lowest score, so a named threshold always agrees
    with the counts by name. ``unknown`` has no score and never reaches a threshold."""
    rated = []
    for name, score, count in findings:
        if name is None and score is not None:
            name = severity_of_score(score)
        if name is None:
            name = unrated_severity
        if name in CVSS_BANDS:
            low, high = CVSS_BANDS[name]
            effective = high if score is None else max(score, low)
        else:
            effective = score
        rated.append((name, effective, count))
    return rated


def parse_audit(text, scanner="auto", unrated_severity=DEFAULT_UNRATED):
    """(kind, counts by severity plus total) of a scanner's JSON output."""
    kind, findings = scan_findings(text, scanner)
    counts = dict((s, 0) for s in SEVERITIES)
    for name, _score_value, count in rate_findings(findings, unrated_severity):
        counts[name] += count
    counts["total"] = sum(counts[s] for s in SEVERITIES)
    return kind, counts


def _count_text(counts):
    parts = ["%d %s" % (counts[s], s) for s in SEVERITIES if counts.get(s)]
    return ", ".join(parts) if parts else "none"


def judge_scan(check, stdout):
    """(passed, reason, extra) of a security scan against the check's threshold (or legacy ``fail_on`` list)."""
    kind, findings = scan_findings(stdout, check["scanner"])
    rated = rate_findings(findings, check["unrated_severity"])
    counts = dict((s, 0) for s in SEVERITIES)
    failing = dict((s, 0) for s in SEVERITIES)
    threshold = check["threshold"]
    for name, effective, count in rated:
        counts[name] += count
        if check["fail_on"] is not None:
            bad = name in check["fail_on"]
        else:
            bad = effective is not None and effective >= threshold["cvss"]
        if bad:
            failing[name] += count
    counts["total"] = sum(counts[s] for s in SEVERITIES)
    failing["total"] = sum(failing[s] for s in SEVERITIES)
    if check["fail_on"] is not None:
        limit = "of a fail_on severity (%s)" % "/".join(check["fail_on"])
        extra_threshold = {"severity": None, "cvss": None, "fail_on": list(check["fail_on"])}
    else:
        limit = "at or above %s" % threshold["text"]
        extra_threshold = {"severity": threshold["severity"], "cvss": threshold["cvss"], "fail_on": None}
    extra = {"scanner": kind, "vulnerabilities": counts, "failing_vulnerabilities": failing,
             "threshold": extra_threshold}
    below = dict((s, counts[s] - failing[s]) for s in SEVERITIES)
    below_total = sum(below.values())
    if failing["total"]:
        reason = "%d %s %s: %s" % (failing["total"], "vulnerability" if failing["total"] == 1 else "vulnerabilities",
                                   limit, _count_text(failing))
        if below_total:
            reason += "; %d below it: %s" % (below_total, _count_text(below))
        if counts["unknown"] and check["fail_on"] is None:
            reason += " (unknown = unrated, never fails: unrated_severity is unknown)"
        return False, reason, extra
    reason = "no vulnerabilities %s (%d in total%s)" % (
        limit, counts["total"], (": " + _count_text(counts)) if counts["total"] else "")
    return True, reason, extra


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


def _valid_time(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return True
    text = str(value).strip().replace("Z", "+00:00")
    for parse in (datetime.datetime.fromisoformat, datetime.date.fromisoformat):
        try:
            parse(text)
            return True
        except ValueError:
            pass
    return False


def check_evidence(checklist, evidence):
    """One result per checklist item (and per extra evidence item)."""
    if checklist is None:
        checklist = DEFAULT_CHECKLIST
    evidence = evidence or {}
    if not isinstance(evidence, dict):
        raise PredeployError("evidence %r is not allowed: use a dictionary item -> {by, at, ref}" % (evidence,))
    results = []
    for item in list(checklist) + [k for k in evidence if k not in checklist]:
        record = evidence.get(item)
        required = item in checklist
        result = {"name": item, "required": required, "evidence": record, "passed": False}
        if record is None:
            result["reason"] = "no evidence recorded"
        elif not isinstance(record, dict):
            result["reason"] = "evidence %r is not a dictionary with by, at, ref" % (record,)
        elif not str(record.get("by") or "").strip():
            result["reason"] = "evidence has no 'by'"
        elif not record.get("at"):
            result["reason"] = "evidence has no 'at'"
        elif not _valid_time(record["at"]):
            result["reason"] = "evidence 'at' %r is not an ISO 8601 date or time" % (record["at"],)
        else:
            result["passed"] = True
            ref = " (%s)" % record["ref"] if record.get("ref") else ""
            result["reason"] = "recorded by %s at %s%s" % (record["by"], record["at"], ref)
        results.append(result)
    return results


def run_checks(checks, checklist=None, evidence=None, chdir=None, default_timeout=600, output_lines=20,
               runner=run_command, severity_threshold=DEFAULT_THRESHOLD, min_coverage=None):
    """Run every check and evaluate the checklist. Returns the module's result dictionary.

    ``severity_threshold`` is the default of the scan checks, ``min_coverage`` the default of the ``all_pass``
    checks; a check's own value wins."""
    if isinstance(output_lines, bool) or not isinstance(output_lines, int) or output_lines < 0:
        raise PredeployError("output_lines %r is not allowed: use an integer >= 0" % (output_lines,))
    parse_threshold(severity_threshold)  # a bad module-level value fails even when no scan check uses it
    if min_coverage is not None:
        try:
            parse_percent(min_coverage)
        except PredeployError as exc:
            raise PredeployError("min_coverage %s" % exc)
    normalized = normalize_checks(checks, chdir, default_timeout, severity_threshold, min_coverage)
    items = check_evidence(checklist, evidence)
    results = []
    for check in normalized:
        if check["chdir"] and not os.path.isdir(check["chdir"]):
            rc, out, err, duration, timed_out = None, "", "chdir %s is not a directory" % check["chdir"], 0.0, False
        else:
            rc, out, err, duration, timed_out = runner(check["argv"], check["timeout"], check["chdir"], check["env"])
        passed, reason, extra = evaluate(check, rc, out, err, timed_out)
        result = {"name": check["name"], "command": check["argv"], "expected": check["expected"], "rc": rc,
                  "passed": passed, "reason": reason, "duration": round(duration, 3), "timed_out": timed_out,
                  "stdout_tail": _tail(out, output_lines), "stderr_tail": _tail(err, output_lines)}
        result["coverage_percent"] = None
        result.update(extra)
        results.append(result)
    reported = [r["coverage_percent"] for r in results if r["coverage_percent"] is not None]
    failing = ["%s (%s)" % (r["name"], r["reason"]) for r in results if not r["passed"]]
    failing += ["%s (%s)" % (i["name"], i["reason"]) for i in items if i["required"] and not i["passed"]]
    failed_names = [r["name"] for r in results if not r["passed"]] + \
        [i["name"] for i in items if i["required"] and not i["passed"]]
    return {
        "checks": results,
        "checklist": items,
        "failed_checks": failed_names,
        "passed": not failing,
        # the lowest reported coverage: with several test commands the weakest one is the release's coverage
        "coverage_percent": min(reported) if reported else None,
        "msg": ("pre-deployment checks failed: " + "; ".join(failing)) if failing
        else "all %d pre-deployment checks and %d checklist items passed" % (len(results), len(items)),
    }
