# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security scan output (npm audit --json, pip-audit -f json) judged against a CVSS severity threshold."""

from __future__ import annotations

import json

from ansible_collections.meshos.release.plugins.module_utils.predeploy.common import CVSS_BANDS, DEFAULT_UNRATED, SEVERITIES, SEVERITY_ALIASES, PredeployError


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
