# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The seed's Success Metrics table and a release's timeline, computed from audit log entries.

Conventions the numbers rely on (the pipeline records them):

- a deployment is a ``deploy`` entry whose result is ``success``, ``failure``, ``rolled_back`` or ``aborted``;
- a rollback is a ``rollback`` entry (not ``started``) or a ``deploy`` entry with result ``rolled_back``;
  both recorded for the same environment and version count once;
- an incident is an ``incident`` entry (``details.severity``, ``details.impact`` optional);
- downtime is the sum of ``details.downtime_seconds`` over all entries;
- test coverage is the latest ``details.test_coverage`` (percent) of any entry.
"""

from __future__ import annotations

TERMINAL = ("success", "failure", "rolled_back", "aborted")
CREATE_ACTIONS = ("release_create", "create_release", "release")
EVENT_FIELDS = ("seq", "ts", "actor", "action", "environment", "strategy", "result", "duration")
WATCH_ACTIONS = ("watch", "monitor", "post_deploy_watch")


def _num(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _fmt_minutes(seconds):
    if seconds is None:
        return "-"
    minutes = seconds / 60.0
    return "%.1f min" % minutes


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


def _deployments(entries):
    return [e for e in entries if e.get("action") == "deploy" and e.get("result") in TERMINAL]


def _rollback_keys(entries):
    keys = []
    for e in entries:
        if (e.get("action") == "rollback" and e.get("result") not in ("started", "skipped")) or \
                (e.get("action") == "deploy" and e.get("result") == "rolled_back"):
            key = (e.get("environment"), e.get("version"))
            if key not in keys:
                keys.append(key)
    return keys


def _details(entry):
    details = entry.get("details")
    return details if isinstance(details, dict) else {}


def _downtime_seconds(entries):
    values = [_num(_details(e).get("downtime_seconds")) for e in entries]
    values = [v for v in values if v is not None]
    return sum(values), len(values)


def success_metrics(entries, environment=None, version=None):
    """The Success Metrics table: a list of {metric, target, actual, value, unit, met}."""
    entries = _filter(entries, environment, version)
    deployments = _deployments(entries)
    successes = [e for e in deployments if e.get("result") == "success"]
    rollbacks = _rollback_keys(entries)
    incidents = [e for e in entries if e.get("action") == "incident"]
    releases = sorted(set(e.get("version") for e in deployments if e.get("version")))
    durations = [_num(e.get("duration")) for e in successes]
    durations = [d for d in durations if d is not None]
    downtime, downtime_measured = _downtime_seconds(entries)
    coverage = None
    for e in entries:
        value = _num(_details(e).get("test_coverage"))
        if value is not None:
            coverage = value

    def rate(part, whole):
        return round(100.0 * part / whole, 2) if whole else None

    success_rate = rate(len(successes), len(deployments))
    mttd = round(sum(durations) / len(durations), 3) if durations else None
    rollback_rate = rate(len(rollbacks), len(deployments))
    incidents_per_release = round(float(len(incidents)) / len(releases), 2) if releases else None
    rows = [
        {"metric": "Deployment Success Rate", "target": "> 95%", "value": success_rate, "unit": "percent",
         "actual": "-" if success_rate is None else "%s%% (%d of %d)" % (success_rate, len(successes), len(deployments)),
         "met": None if success_rate is None else success_rate > 95},
        {"metric": "Mean Time to Deploy", "target": "< 60 min", "value": mttd, "unit": "seconds",
         "actual": _fmt_minutes(mttd), "met": None if mttd is None else mttd < 3600},
        {"metric": "Rollback Rate", "target": "< 5%", "value": rollback_rate, "unit": "percent",
         "actual": "-" if rollback_rate is None else "%s%% (%d of %d)" % (rollback_rate, len(rollbacks), len(deployments)),
         "met": None if rollback_rate is None else rollback_rate < 5},
        {"metric": "Post-Release Incidents", "target": "< 2 per release", "value": incidents_per_release,
         "unit": "per release",
         "actual": "-" if incidents_per_release is None else "%s per release (%d in %d releases)" % (
             incidents_per_release, len(incidents), len(releases)),
         "met": None if incidents_per_release is None else incidents_per_release < 2},
        {"metric": "Deployment Downtime", "target": "0 minutes", "value": round(downtime, 3), "unit": "seconds",
         "actual": ("%s (%d measurements)" % (_fmt_minutes(downtime), downtime_measured)) if downtime_measured
         else "not measured", "met": (downtime == 0) if downtime_measured else None},
        {"metric": "Test Coverage", "target": "> 80%", "value": coverage, "unit": "percent",
         "actual": "-" if coverage is None else "%s%%" % coverage, "met": None if coverage is None else coverage > 80},
    ]
    return {
        "metrics": rows,
        "deployments": len(deployments),
        "successful_deployments": len(successes),
        "rollbacks": len(rollbacks),
        "incidents": len(incidents),
        "releases": releases,
        "environment": environment,
        "version": version,
    }


def release_timeline(entries, version):
    """A release's timeline and retrospective metrics from its audit entries."""
    mine = _filter(entries, version=version)
    mine = sorted(mine, key=lambda e: (e.get("seq") or 0))
    milestones = []
    created = [e for e in mine if e.get("action") in CREATE_ACTIONS and e.get("result") in ("success", "info")]
    if created:
        milestones.append({"name": "Release Created", "ts": created[0].get("ts"), "seq": created[0].get("seq")})
    seen_envs = []
    for e in mine:
        env = e.get("environment")
        if e.get("action") == "deploy" and e.get("result") == "success" and env and env not in seen_envs:
            seen_envs.append(env)
            milestones.append({"name": "%s Deploy" % env.capitalize(), "ts": e.get("ts"), "seq": e.get("seq"),
                               "environment": env, "duration": e.get("duration")})
    watches = [e for e in mine if e.get("action") in WATCH_ACTIONS and e.get("result") == "success"]
    if watches:
        milestones.append({"name": "Monitoring Complete", "ts": watches[-1].get("ts"), "seq": watches[-1].get("seq")})
    deployments = _deployments(mine)
    deploy_seconds = [d for d in (_num(e.get("duration")) for e in deployments) if d is not None]
    incidents = [e for e in mine if e.get("action") == "incident"]
    severities = [str(_details(e).get("severity")) for e in incidents if _details(e).get("severity")]
    impacts = [str(_details(e).get("impact")) for e in incidents if _details(e).get("impact")]
    downtime, downtime_measured = _downtime_seconds(mine)
    incident_text = str(len(incidents))
    if severities:
        incident_text += " (%s)" % ", ".join(severities)
    went_well, improve = [], []
    total = sum(deploy_seconds) if deploy_seconds else None
    if total is not None:
        (went_well if total < 3600 else improve).append(
            "Deployments took %s in total (target: 60 min)" % _fmt_minutes(total))
    if downtime_measured:
        if downtime == 0:
            went_well.append("Zero downtime measured (%d measurements)" % downtime_measured)
        else:
            improve.append("Downtime of %s measured" % _fmt_minutes(downtime))
    checks = [e for e in mine if e.get("action") == "predeploy_check"]
    if checks and all(e.get("result") == "success" for e in checks):
        went_well.append("All pre-deployment checks passed")
    elif checks:
        improve.append("Pre-deployment checks failed %d time(s)" % len([e for e in checks if e.get("result") != "success"]))
    failed = [e for e in deployments if e.get("result") != "success"]
    for e in failed:
        improve.append("Deployment to %s ended with %s (seq %s)" % (e.get("environment"), e.get("result"), e.get("seq")))
    if incidents:
        improve.append("%d post-release incident(s)" % len(incidents))
    participants = []
    for e in mine:
        actor = e.get("actor")
        if actor and actor not in participants:
            participants.append(actor)
    return {
        "version": version,
        "entries": len(mine),
        "milestones": milestones,
        "events": [dict((k, e.get(k)) for k in EVENT_FIELDS) for e in mine],
        "participants": participants,
        "observations": {"went_well": went_well, "improve": improve},
        "metrics": {
            "deployment_duration_seconds": round(sum(deploy_seconds), 3) if deploy_seconds else None,
            "deployment_duration": _fmt_minutes(sum(deploy_seconds)) if deploy_seconds else "-",
            "deployments": len(deployments),
            "failed_deployments": len([e for e in deployments if e.get("result") != "success"]),
            "rollback_count": len(_rollback_keys(mine)),
            "incidents": len(incidents),
            "incidents_text": incident_text,
            "customer_impact": ", ".join(impacts) if impacts else "None recorded",
            "downtime_seconds": round(downtime, 3) if downtime_measured else None,
        },
    }


def metrics_markdown(report):
    """The Success Metrics table as markdown."""
    lines = ["| Metric | Target | Actual | Met |", "|--------|--------|--------|-----|"]
    for row in report["metrics"]:
        met = "-" if row["met"] is None else ("yes" if row["met"] else "no")
        lines.append("| %s | %s | %s | %s |" % (row["metric"], row["target"], row["actual"], met))
    return "\n".join(lines)
