# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Pre-deployment checks (the seed's "Pre-Deployment Checks" and "Pre-Release Checklist").

Command checks run with a timeout and report rc, duration, the tail of their output and a
pass/fail reason. ``expected`` decides what passing means:

``empty``       rc 0 and nothing on stdout (``git status --porcelain``)
``success``     rc 0
``all_pass``    rc 0 and no failed tests in a recognised test summary
``no_critical`` stdout is ``npm audit --json`` or ``pip-audit -f json``; no finding of a failing severity

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

EXPECTED = ("empty", "success", "all_pass", "no_critical")
SEVERITIES = ("critical", "high", "moderate", "low", "info", "unknown")
SCANNERS = ("auto", "npm", "pip-audit")

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


class PredeployError(Exception):
    """Bad input; one-line message naming the bad value and what is allowed."""


def _tail(text, lines):
    parts = text.splitlines()
    return parts[-lines:] if lines > 0 else []


def normalize_checks(checks, default_chdir=None, default_timeout=600):
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
        fail_on = check.get("fail_on", ["critical"])
        if not isinstance(fail_on, list) or not fail_on or any(s not in SEVERITIES for s in fail_on):
            raise PredeployError("check %r fail_on %r is not allowed: use a list of %s" % (name, fail_on, ", ".join(SEVERITIES)))
        unrated = check.get("unrated_severity", "unknown")
        if unrated not in SEVERITIES:
            raise PredeployError("check %r unrated_severity %r is not allowed: use one of %s"
                                 % (name, unrated, ", ".join(SEVERITIES)))
        out.append({"name": name, "argv": argv, "expected": expected, "timeout": timeout,
                    "chdir": check.get("chdir") or default_chdir, "env": dict((str(k), str(v)) for k, v in env.items()),
                    "scanner": scanner, "fail_on": fail_on, "unrated_severity": unrated})
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


def parse_audit(text, scanner="auto", unrated_severity="unknown"):
    """Counts by severity from ``npm audit --json`` (npm 7+ or npm 6) or ``pip-audit -f json``."""
    try:
        data = json.loads(text)
    except ValueError:
        raise PredeployError("output is not JSON from npm audit --json or pip-audit -f json")
    counts = dict((s, 0) for s in SEVERITIES)
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
            counts[unrated_severity] += len(vulns or [])
        kind = "pip-audit"
    elif isinstance(data, dict) and isinstance(data.get("advisories"), dict):
        for advisory in data["advisories"].values():
            severity = str((advisory or {}).get("severity", "")).lower()
            counts[severity if severity in counts else unrated_severity] += 1
        kind = "npm6"
    elif isinstance(data, dict) and isinstance(data.get("metadata"), dict) \
            and isinstance(data["metadata"].get("vulnerabilities"), dict):
        for severity, number in data["metadata"]["vulnerabilities"].items():
            if severity == "total":
                continue
            severity = str(severity).lower()
            counts[severity if severity in counts else unrated_severity] += int(number or 0)
        kind = "npm"
    else:
        raise PredeployError("output is not JSON from npm audit --json or pip-audit -f json")
    counts["total"] = sum(counts[s] for s in SEVERITIES)
    return kind, counts


def evaluate(check, rc, stdout, stderr, timed_out):
    """(passed, reason, extra) for one finished command."""
    extra = {}
    if timed_out:
        return False, "timed out after %ss" % check["timeout"], extra
    if rc is None:
        return False, stderr.strip().splitlines()[0] if stderr.strip() else "could not be started", extra
    expected = check["expected"]
    if expected == "no_critical":
        try:
            kind, counts = parse_audit(stdout, check["scanner"], check["unrated_severity"])
        except PredeployError as exc:
            return False, "%s (rc %s)" % (exc, rc), extra
        extra["scanner"] = kind
        extra["vulnerabilities"] = counts
        bad = dict((s, counts[s]) for s in check["fail_on"] if counts[s])
        if bad:
            return False, ", ".join("%d %s" % (n, s) for s, n in bad.items()) + " vulnerabilities", extra
        return True, "no %s vulnerabilities (%d in total)" % ("/".join(check["fail_on"]), counts["total"]), extra
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
        return True, "all tests passed" + (" (%d)" % passed if passed is not None else ""), extra
    return True, "exit code 0", extra


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
               runner=run_command):
    """Run every check and evaluate the checklist. Returns the module's result dictionary."""
    if isinstance(output_lines, bool) or not isinstance(output_lines, int) or output_lines < 0:
        raise PredeployError("output_lines %r is not allowed: use an integer >= 0" % (output_lines,))
    normalized = normalize_checks(checks, chdir, default_timeout)
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
        result.update(extra)
        results.append(result)
    failing = ["%s (%s)" % (r["name"], r["reason"]) for r in results if not r["passed"]]
    failing += ["%s (%s)" % (i["name"], i["reason"]) for i in items if i["required"] and not i["passed"]]
    failed_names = [r["name"] for r in results if not r["passed"]] + \
        [i["name"] for i in items if i["required"] and not i["passed"]]
    return {
        "checks": results,
        "checklist": items,
        "failed_checks": failed_names,
        "passed": not failing,
        "msg": ("pre-deployment checks failed: " + "; ".join(failing)) if failing
        else "all %d pre-deployment checks and %d checklist items passed" % (len(results), len(items)),
    }
