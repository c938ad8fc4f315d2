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
``ref``); missing evidence fails closed. Standard library only.

In check mode only the checks marked ``read_only`` run; every other command is reported as ``would_run`` with
``would run: <command>`` and is not started (a build or a test run writes files). The scan parsing lives in
``scan.py``, the judging of one finished command in ``evaluate.py``.
"""

from __future__ import annotations

import datetime
import os
import shlex
import signal
import subprocess
import time

from ansible_collections.meshos.release.plugins.module_utils.predeploy.common import (
    DEFAULT_CHECKLIST, DEFAULT_CHECKS, DEFAULT_THRESHOLD, DEFAULT_UNRATED, EXPECTED, SCANNERS, SEVERITIES, PredeployError,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.evaluate import evaluate, parse_percent
from ansible_collections.meshos.release.plugins.module_utils.predeploy.scan import parse_threshold


def _tail(text, lines):
    parts = text.splitlines()
    return parts[-lines:] if lines > 0 else []


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
        read_only = False if check.get("read_only") is None else check["read_only"]
        if not isinstance(read_only, bool):
            raise PredeployError("check %r read_only %r is not allowed: use true or false" % (name, read_only))
        out.append({"name": name, "argv": argv, "read_only": read_only, "expected": expected, "timeout": timeout,
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


def _would_run(check):
    """The result of a check that check mode does not start: it may write files (a build, a test run)."""
    return {"name": check["name"], "command": check["argv"], "expected": check["expected"], "rc": None,
            "passed": False, "status": "would_run", "reason": "would run: %s" % shlex.join(check["argv"]),
            "duration": 0.0, "timed_out": False, "stdout_tail": [], "stderr_tail": [], "coverage_percent": None}


def run_checks(checks, checklist=None, evidence=None, chdir=None, default_timeout=600, output_lines=20,
               runner=run_command, severity_threshold=DEFAULT_THRESHOLD, min_coverage=None, check_mode=False):
    """Run every check and evaluate the checklist. Returns the module's result dictionary.

    ``severity_threshold`` is the default of the scan checks, ``min_coverage`` the default of the ``all_pass``
    checks; a check's own value wins. With ``check_mode`` only ``read_only`` checks run; the others are reported
    with status ``would_run``, are not failures, and keep ``passed`` false (nothing proved they pass)."""
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
        elif check_mode and not check["read_only"]:
            results.append(_would_run(check))
            continue
        else:
            env = check["env"]
            if check["read_only"]:
                # git status refreshes .git/index when it can; a read-only check must not write even that
                env = dict({"GIT_OPTIONAL_LOCKS": "0"}, **env)
            rc, out, err, duration, timed_out = runner(check["argv"], check["timeout"], check["chdir"], env)
        passed, reason, extra = evaluate(check, rc, out, err, timed_out)
        result = {"name": check["name"], "command": check["argv"], "expected": check["expected"], "rc": rc,
                  "passed": passed, "status": "passed" if passed else "failed", "reason": reason,
                  "duration": round(duration, 3), "timed_out": timed_out,
                  "stdout_tail": _tail(out, output_lines), "stderr_tail": _tail(err, output_lines)}
        result["coverage_percent"] = None
        result.update(extra)
        results.append(result)
    reported = [r["coverage_percent"] for r in results if r["coverage_percent"] is not None]
    skipped = [r for r in results if r["status"] == "would_run"]
    failing = ["%s (%s)" % (r["name"], r["reason"]) for r in results if r["status"] == "failed"]
    failing += ["%s (%s)" % (i["name"], i["reason"]) for i in items if i["required"] and not i["passed"]]
    failed_names = [r["name"] for r in results if r["status"] == "failed"] + \
        [i["name"] for i in items if i["required"] and not i["passed"]]
    if failing:
        msg = "pre-deployment checks failed: " + "; ".join(failing)
    else:
        msg = "all %d %spre-deployment checks and %d checklist items passed" % (
            len(results) - len(skipped), "read-only " if skipped else "", len(items))
    if skipped:
        msg += "; check mode, %d not run: %s" % (len(skipped), "; ".join(
            "%s (%s)" % (r["name"], r["reason"]) for r in skipped))
    return {
        "checks": results,
        "checklist": items,
        "failed_checks": failed_names,
        "would_run": [r["name"] for r in skipped],
        # a check that did not run proved nothing: the release is not cleared by a check-mode run
        "passed": not failing and not skipped,
        # the lowest reported coverage: with several test commands the weakest one is the release's coverage
        "coverage_percent": min(reported) if reported else None,
        "msg": msg,
    }
