# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading audit entries for the report: deployments, rollbacks and their releases, measurements, amounts and
durations. ``_report.py`` builds the Success Metrics table and the timeline from them.
"""

from __future__ import annotations

import math

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError


TERMINAL = ("success", "failure", "rolled_back", "aborted")


CREATE_ACTIONS = ("release_create", "create_release", "release")


EVENT_FIELDS = ("seq", "ts", "actor", "action", "environment", "strategy", "result", "duration")


WATCH_ACTIONS = ("watch", "monitor", "post_deploy_watch")


ROLLBACK_RAN = ("success", "failure")


COVERAGE_KEYS = ("coverage_percent", "test_coverage")


class MeasurementError(MeshosError, ValueError):
    """A ``details.measured`` value that is not a measurement; one line naming the bad value."""


def _num(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def parse_amount(value, name, integer=False):
    """A finite number >= 0 from a number or a numeric string (audit details may be templated to strings).

    Raises MeasurementError naming ``name`` and the bad value."""
    number = None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise MeasurementError("%s %r is not allowed: use a number >= 0" % (name, value))
    if integer:
        if number != int(number):
            raise MeasurementError("%s %r is not allowed: use a whole number >= 0" % (name, value))
        return int(number)
    return float(number)


def parse_percent(value):
    """A percentage 0..100 from a number or numeric string, None when it is not one."""
    try:
        number = parse_amount(value, "percent")
    except MeasurementError:
        return None
    return number if number <= 100 else None


def _fmt_minutes(seconds):
    if seconds is None:
        return "-"
    minutes = seconds / 60.0
    return "%.1f min" % minutes


def fmt_downtime(seconds):
    """Minutes like the seed's table, seconds under a minute so that a short measured outage never reads as 0."""
    if seconds == 0 or seconds >= 60:
        return _fmt_minutes(seconds)
    return "%.1f s" % seconds if seconds >= 0.1 else "< 0.1 s"


def _fmt_pct(value):
    return "%s%%" % value


def _filter(entries, environment=None, version=None):
    out = []
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        if environment is not None and entry.get("environment") != environment:
            continue
        if version is not None and entry.get("version") != version:
            continue
        out.append(entry)
    return out


def _ordered(entries):
    """Dictionary entries in log order (by seq; entries without one keep their place)."""
    items = [e for e in entries or [] if isinstance(e, dict)]
    return [e for _i, e in sorted(enumerate(items), key=lambda pair: (
        pair[1].get("seq") if isinstance(pair[1].get("seq"), int) else pair[0], pair[0]))]


def _deployments(entries):
    return [e for e in entries if e.get("action") == "deploy" and e.get("result") in TERMINAL]


def _details(entry):
    details = entry.get("details")
    return details if isinstance(details, dict) else {}


def is_rollback(entry):
    """Whether an audit entry records a rollback that ran (automatic, manual or a runbook's)."""
    if entry.get("result") == "rolled_back":
        return True
    action = str(entry.get("action") or "")
    return (action == "rollback" or action.endswith("_rollback")) and entry.get("result") in ROLLBACK_RAN


def _rolled_back_version(entry, earlier):
    """The release a rollback entry took away (see the module docstring); ``earlier`` are the entries before it."""
    details = _details(entry)
    for key in ("from_version", "rolled_back_version"):
        if details.get(key):
            return str(details[key])
    to_version = details.get("to_version")
    version = entry.get("version")
    if version and version != to_version:
        return version
    for previous in reversed(earlier):
        if previous.get("action") == "deploy" and previous.get("environment") == entry.get("environment") \
                and previous.get("version") and previous.get("version") != to_version:
            return previous.get("version")
    return version


def rollback_events(entries):
    """One record per rollback: {seq, ts, environment, version, to_version, automatic, result, action}."""
    ordered = _ordered(entries)
    attempts, events, seen = {}, [], {}
    for index, entry in enumerate(ordered):
        key = (entry.get("environment"), entry.get("version"))
        if entry.get("action") == "deploy" and entry.get("result") == "started":
            attempts[key] = attempts.get(key, 0) + 1
        if not is_rollback(entry):
            continue
        version = _rolled_back_version(entry, ordered[:index])
        environment = entry.get("environment")
        attempt_key = (environment, version, attempts.get((environment, version), 0))
        details = _details(entry)
        record = {"seq": entry.get("seq"), "ts": entry.get("ts"), "environment": environment, "version": version,
                  "to_version": details.get("to_version") or None, "automatic": bool(details.get("automatic")),
                  "result": entry.get("result"), "action": entry.get("action")}
        if attempt_key in seen:
            # the deploy rolled_back and its rollback entry are one rollback; keep the richer (rollback) record
            merged = seen[attempt_key]
            if entry.get("action") != "deploy":
                merged.update(dict((k, v) for k, v in record.items() if v not in (None, False)))
            continue
        seen[attempt_key] = record
        events.append(record)
    return events


def measurement(entry):
    """The entry's measurement: None when it has none, else a dictionary with ``source`` (None when not measured,
    with ``reason``) and, when measured, ``downtime_seconds``, ``requests``, ``failed_requests``,
    ``window_seconds`` (the last three None when not given)."""
    measured = _details(entry).get("measured")
    if measured is None:
        return None
    if not isinstance(measured, dict):
        return {"source": None, "reason": "details.measured %r is not a dictionary" % (measured,)}
    source = measured.get("source")
    # "None"/"null": a null templated to a string by an older ansible-core is still no source
    if source is None or str(source).strip() in ("", "None", "null"):
        return {"source": None, "reason": str(measured.get("reason") or "no measurement source")}
    try:
        out = {"source": str(source).strip(),
               "downtime_seconds": parse_amount(measured.get("downtime_seconds"), "downtime_seconds"),
               "requests": None, "failed_requests": None, "window_seconds": None}
        if measured.get("requests") is not None or measured.get("failed_requests") is not None:
            out["requests"] = parse_amount(measured.get("requests"), "requests", integer=True)
            out["failed_requests"] = parse_amount(measured.get("failed_requests"), "failed_requests", integer=True)
            if out["failed_requests"] > out["requests"]:
                raise MeasurementError("failed_requests %r is more than requests %r"
                                       % (out["failed_requests"], out["requests"]))
        if measured.get("window_seconds") is not None:
            out["window_seconds"] = parse_amount(measured.get("window_seconds"), "window_seconds")
    except MeasurementError as exc:
        return {"source": None, "reason": "invalid measurement from %s: %s" % (source, exc)}
    return out


def source_kind(source):
    """``haproxy`` from ``haproxy:/path/admin.sock``."""
    return str(source).split(":", 1)[0].strip() or str(source)
