# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delivery metrics (the four DORA keys plus the seed's mean time to deploy and rollback rate) per environment and per
period, from audit log entries only.

Definitions (each number comes from recorded entries; a metric with nothing to compute it from is None, never 0):

- a deployment is a ``deploy`` entry with result ``success``, ``failure`` or ``rolled_back`` (an ``aborted`` deploy was
  refused before any host changed: it is counted apart as ``refused``, not as a change);
- deployment frequency: deployments per day of the period (a period still running counts its days so far);
- mean time to deploy: mean ``duration`` of the successful deployments;
- rollback rate: rollbacks (``_report_events.rollback_events``) per deployment;
- change failure rate: deployments that failed, were rolled back, or were followed by a rollback of the same release
  or an ``incident`` entry for it in the same environment, per deployment;
- time to restore: for each failed change, the time from its failure (the deploy entry, the incident or the rollback
  entry for a success rolled back later) to the next entry that restored service in that environment (a rollback that
  succeeded or a successful deployment); a failure with no restore yet is counted in ``unrestored``.
"""

from __future__ import annotations

import calendar
import datetime

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils._report_events import (
    _num,
    _ordered,
    rollback_events,
)


PERIODS = ("day", "week", "month", "all")

CHANGES = ("success", "failure", "rolled_back")


class DoraError(MeshosError, ValueError):
    """A bad period or time bound; one line naming the value and what is allowed."""


def parse_ts(value, name="ts"):
    """A timezone-aware UTC datetime from an ISO 8601 string (``Z`` allowed) or a datetime; DoraError otherwise."""
    if isinstance(value, datetime.datetime):
        stamp = value
    else:
        text = str(value or "").strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            stamp = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise DoraError("%s %r is not allowed: use an ISO 8601 time such as 2026-12-01T00:00:00Z" % (name, value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.astimezone(datetime.timezone.utc)


def _entry_time(entry):
    try:
        return parse_ts(entry.get("ts"))
    except DoraError:
        return None


def period_bounds(stamp, period):
    """(key, start, end) of the period holding ``stamp``; end is exclusive."""
    day = datetime.datetime(stamp.year, stamp.month, stamp.day, tzinfo=datetime.timezone.utc)
    if period == "day":
        return day.strftime("%Y-%m-%d"), day, day + datetime.timedelta(days=1)
    if period == "week":
        start = day - datetime.timedelta(days=day.weekday())
        year, week, _weekday = start.isocalendar()[:3]
        return "%04d-W%02d" % (year, week), start, start + datetime.timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        return start.strftime("%Y-%m"), start, start + datetime.timedelta(days=days)
    raise DoraError("period %r is not allowed: use one of %s" % (period, ", ".join(PERIODS)))


def _mean(values):
    return round(sum(values) / len(values), 3) if values else None


def _pct(part, whole):
    return round(100.0 * part / whole, 2) if whole else None


def _restore_after(ordered, index, environment):
    """Seconds from entry ``index`` to the first later entry that restored ``environment``, None when none did.

    Audit times have whole seconds: a rollback's own ``duration`` is the lower bound when it is longer."""
    start = _entry_time(ordered[index])
    for later in ordered[index + 1:]:
        if later.get("environment") != environment:
            continue
        action = str(later.get("action") or "")
        restored = (later.get("result") == "success"
                    and (action == "deploy" or action == "rollback" or action.endswith("_rollback")))
        if restored:
            end = _entry_time(later)
            if start is None or end is None:
                return None
            seconds = (end - start).total_seconds()
            if action != "deploy":
                seconds = max(seconds, float(_num(later.get("duration")) or 0.0))
            return seconds
    return None


def _group_metrics(ordered, chosen, rollbacks, days):
    """Metrics of the deployments ``chosen`` (indexes into ``ordered``) and the rollbacks of the same group."""
    deploys = [ordered[i] for i in chosen]
    successes = [e for e in deploys if e.get("result") == "success"]
    durations = [d for d in (_num(e.get("duration")) for e in successes) if d is not None]
    failures, restore_seconds, unrestored = 0, [], 0
    for index in chosen:
        entry = ordered[index]
        env, version = entry.get("environment"), entry.get("version")
        failed_at = None
        if entry.get("result") != "success":
            failed_at = index
        else:
            # a success that a later rollback of the same release, or an incident for it, shows was a failed change
            for offset, later in enumerate(ordered[index + 1:], start=index + 1):
                if later.get("environment") != env:
                    continue
                if later.get("action") == "deploy" and later.get("result") in CHANGES:
                    break
                if later.get("version") == version and later.get("action") == "incident":
                    failed_at = offset
                    break
                if any(r["seq"] == later.get("seq") and r["version"] == version for r in rollbacks):
                    failed_at = offset
                    break
        if failed_at is None:
            continue
        failures += 1
        if ordered[failed_at] is not entry and ordered[failed_at].get("action") != "incident":
            # the rollback itself restored service: its duration is the time to restore (unknown without one)
            seconds = _num(ordered[failed_at].get("duration"))
            if seconds is not None:
                restore_seconds.append(float(seconds))
            continue
        restored = _restore_after(ordered, failed_at, env)
        if restored is None:
            unrestored += 1
        else:
            restore_seconds.append(restored)
    return {
        "deployments": len(deploys),
        "successful": len(successes),
        "failed_changes": failures,
        "rollbacks": len(rollbacks),
        "deployment_frequency_per_day": round(len(deploys) / days, 3) if deploys and days > 0 else None,
        "mean_time_to_deploy_seconds": _mean(durations),
        "rollback_rate": _pct(len(rollbacks), len(deploys)),
        "change_failure_rate": _pct(failures, len(deploys)),
        "time_to_restore_seconds": _mean(restore_seconds),
        "restores_measured": len(restore_seconds),
        "unrestored": unrestored,
    }


def dora_metrics(entries, period="week", environment=None, since=None, until=None, now=None):
    """Delivery metrics per environment and period: {period, since, until, groups: [...], environments: {...}}.

    ``now`` (a datetime) bounds a period still running; it defaults to the current time."""
    if period not in PERIODS:
        raise DoraError("period %r is not allowed: use one of %s" % (period, ", ".join(PERIODS)))
    since_ts = parse_ts(since, "since") if since else None
    until_ts = parse_ts(until, "until") if until else None
    if since_ts and until_ts and until_ts <= since_ts:
        raise DoraError("until %r is not after since %r" % (until, since))
    now = parse_ts(now) if now else datetime.datetime.now(datetime.timezone.utc)
    ordered = _ordered(entries)
    events = rollback_events(ordered)

    def inside(stamp):
        return stamp is not None and (since_ts is None or stamp >= since_ts) and (until_ts is None or stamp < until_ts)

    groups = {}

    def group(env, key):
        return groups.setdefault((env, key), {"deploys": [], "rollbacks": [], "stamps": [], "refused": 0})
    for index, entry in enumerate(ordered):
        if entry.get("action") != "deploy" or (environment and entry.get("environment") != environment):
            continue
        stamp = _entry_time(entry)
        if not inside(stamp):
            continue
        env = entry.get("environment") or "-"
        key = period_bounds(stamp, period)[0] if period != "all" else "all"
        if entry.get("result") == "aborted":
            group(env, key)["refused"] += 1
            group(env, key)["stamps"].append(stamp)
        elif entry.get("result") in CHANGES:
            group(env, key)["deploys"].append(index)
            group(env, key)["stamps"].append(stamp)
    for event in events:
        env = event["environment"] or "-"
        if environment and env != environment:
            continue
        stamp = parse_ts(event["ts"]) if event.get("ts") else None
        if not inside(stamp):
            continue
        key = period_bounds(stamp, period)[0] if period != "all" else "all"
        # a rollback whose deploy is in an earlier period still belongs to this period's rollbacks
        group(env, key)["rollbacks"].append(event)
        group(env, key)["stamps"].append(stamp)
    rows = []
    for (env, key) in sorted(groups):
        found = groups[(env, key)]
        if period == "all":
            start = since_ts or min(found["stamps"])
            end = until_ts or now
        else:
            _key, start, end = period_bounds(found["stamps"][0], period)
            end = min(end, max([now] + found["stamps"]))
        # at least an hour, so that a period holding one deploy a minute old does not claim thousands per day
        days = max((end - start).total_seconds() / 86400.0, 1.0 / 24)
        metrics = _group_metrics(ordered, found["deploys"], found["rollbacks"], days)
        metrics.update({"environment": env, "period": key, "start": start.isoformat().replace("+00:00", "Z"),
                        "end": end.isoformat().replace("+00:00", "Z"), "days": round(days, 3),
                        "refused": found["refused"]})
        rows.append(metrics)
    return {"period": period, "since": since, "until": until, "groups": rows}


def dora_markdown(report):
    """The per-environment, per-period table as markdown."""
    def num(value, fmt="%s"):
        return "-" if value is None else fmt % value

    lines = ["| Environment | Period | Deployments | Frequency / day | Mean time to deploy | Rollback rate "
             "| Change failure rate | Time to restore |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["groups"]:
        restore = num(row["time_to_restore_seconds"], "%.1f s")
        if row["unrestored"]:
            restore += " (%d not restored)" % row["unrestored"]
        lines.append("| %s | %s | %d%s | %s | %s | %s | %s | %s |" % (
            row["environment"], row["period"], row["deployments"],
            (" (+%d refused)" % row["refused"]) if row["refused"] else "",
            num(row["deployment_frequency_per_day"]), num(row["mean_time_to_deploy_seconds"], "%.1f s"),
            num(row["rollback_rate"], "%s%%"), num(row["change_failure_rate"], "%s%%"), restore))
    if not report["groups"]:
        lines.append("| (no deployments recorded) | | | | | | | |")
    return "\n".join(lines)
