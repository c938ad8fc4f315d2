# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The seed's Success Metrics table and a release's timeline, computed from audit log entries.

Every number comes from a recorded entry; what was not recorded is reported as "not measured" / "not recorded",
never as a constant. Conventions the numbers rely on (the pipeline and the playbooks record them):

- a deployment is a ``deploy`` entry whose result is ``success``, ``failure``, ``rolled_back`` or ``aborted``;
- a rollback is an entry of action ``rollback`` or ``<kind>_rollback`` (``auto_rollback``, ``runbook_rollback``...)
  with result ``success`` or ``failure`` (it ran), or any entry with result ``rolled_back``. It belongs to the
  release it took away: ``details.from_version`` (or ``details.rolled_back_version``), else the entry's
  ``version`` unless that is ``details.to_version``, else the release last deployed to that environment before
  it. A ``deploy`` rolled back and its ``rollback`` entry (same environment, release and deploy attempt) count once;
- an incident is an ``incident`` entry (``details.severity``, ``details.impact`` optional);
- downtime and failed requests come only from ``details.measured`` of deploy and rollback entries:
  ``{"source": "haproxy:/path/admin.sock", "requests": N, "failed_requests": N, "downtime_seconds": X,
  "window_seconds": Y}``, or ``{"source": null, "reason": "..."}`` when nothing could measure. An entry without
  a measurement with a source is "not measured". The old ``details.downtime_seconds`` is ignored: the pipeline
  wrote it as a constant 0, not as a measurement;
- test coverage is the latest ``details.coverage_percent`` (or the older ``details.test_coverage``) of a
  ``predeploy_check`` entry.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils._report_events import (
    COVERAGE_KEYS,
    CREATE_ACTIONS,
    EVENT_FIELDS,
    WATCH_ACTIONS,
    _deployments,
    _details,
    _filter,
    _fmt_minutes,
    _fmt_pct,
    _num,
    _ordered,
    fmt_downtime,
    is_rollback,
    measurement,
    parse_percent,
    rollback_events,
    source_kind,
)


def measured_impact(entries):
    """Downtime and failed requests of the deploys and rollbacks in ``entries``, from their measurements only."""
    deploys = _deployments(entries)
    rollbacks = [e for e in entries if is_rollback(e) and e.get("action") != "deploy"]
    measured, reasons = [], []
    for entry in deploys + rollbacks:
        found = measurement(entry)
        if found and found["source"]:
            measured.append((entry, found))
        else:
            reason = found["reason"] if found else "no measurement recorded"
            if reason not in reasons:
                reasons.append(reason)
    deploys_measured = len([e for e, _m in measured if e.get("action") == "deploy"])
    rollbacks_measured = len(measured) - deploys_measured
    sources = []
    for _e, found in measured:
        kind = source_kind(found["source"])
        if kind not in sources:
            sources.append(kind)
    with_requests = [m for _e, m in measured if m["requests"] is not None]
    downtime = round(sum(m["downtime_seconds"] for _e, m in measured), 3) if measured else None
    requests = sum(m["requests"] for m in with_requests) if with_requests else None
    failed = sum(m["failed_requests"] for m in with_requests) if with_requests else None
    scope = "%d of %d deploys" % (deploys_measured, len(deploys))
    if rollbacks:
        scope += ", %d of %d rollbacks" % (rollbacks_measured, len(rollbacks))
    note = "%s measured, source: %s" % (scope, ", ".join(sources))
    complete = bool(measured) and len(measured) == len(deploys) + len(rollbacks)
    if downtime is None:
        downtime_text, downtime_met = "not measured", None
    else:
        downtime_text = "%s (%s)" % (fmt_downtime(downtime), note)
        # a partial measurement cannot show the target met, but one measured outage shows it missed
        downtime_met = False if downtime > 0 else (True if complete else None)
    if failed is None:
        failed_text, failed_met = "not measured", None
    else:
        rate = (" (%s%%)" % round(100.0 * failed / requests, 3)) if requests else ""
        failed_text = "%d of %d requests%s (%s)" % (failed, requests, rate, note)
        failed_met = False if failed > 0 else (True if complete and len(with_requests) == len(measured) else None)
    return {
        "deploys": len(deploys), "deploys_measured": deploys_measured,
        "rollbacks": len(rollbacks), "rollbacks_measured": rollbacks_measured,
        "complete": complete, "sources": sources,
        "downtime_seconds": downtime, "downtime_text": downtime_text, "downtime_met": downtime_met,
        "requests": requests, "failed_requests": failed, "failed_requests_text": failed_text,
        "failed_requests_met": failed_met,
        "not_measured": len(deploys) + len(rollbacks) - len(measured),
        "not_measured_reasons": reasons,
    }


def recorded_coverage(entries):
    """(percent, seq) from the latest predeploy_check entry that recorded coverage, (None, None) otherwise."""
    found = (None, None)
    for entry in _ordered(entries):
        if entry.get("action") != "predeploy_check":
            continue
        details = _details(entry)
        for key in COVERAGE_KEYS:
            value = parse_percent(details.get(key)) if details.get(key) not in (None, "") else None
            if value is not None:
                found = (value, entry.get("seq"))
                break
    return found


def success_metrics(entries, environment=None, version=None):
    """The Success Metrics table: a list of {metric, target, actual, value, unit, met}."""
    ordered = _ordered(entries)
    rollbacks = [r for r in rollback_events(ordered)
                 if (environment is None or r["environment"] == environment)
                 and (version is None or r["version"] == version)]
    entries = _filter(ordered, environment, version)
    deployments = _deployments(entries)
    successes = [e for e in deployments if e.get("result") == "success"]
    incidents = [e for e in entries if e.get("action") == "incident"]
    releases = sorted(set(e.get("version") for e in deployments if e.get("version")))
    durations = [_num(e.get("duration")) for e in successes]
    durations = [d for d in durations if d is not None]
    impact = measured_impact(entries)
    # coverage belongs to a release, not to an environment: predeploy_check entries carry none
    coverage, _coverage_seq = recorded_coverage(_filter(ordered, version=version))

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
        {"metric": "Deployment Downtime", "target": "0 minutes", "value": impact["downtime_seconds"],
         "unit": "seconds", "actual": impact["downtime_text"], "met": impact["downtime_met"]},
        {"metric": "Failed Requests During Deploys", "target": "0", "value": impact["failed_requests"],
         "unit": "requests", "actual": impact["failed_requests_text"], "met": impact["failed_requests_met"]},
        {"metric": "Test Coverage", "target": "> 80%", "value": coverage, "unit": "percent",
         "actual": "not recorded" if coverage is None else _fmt_pct(coverage),
         "met": None if coverage is None else coverage > 80},
    ]
    return {
        "metrics": rows,
        "deployments": len(deployments),
        "successful_deployments": len(successes),
        "rollbacks": len(rollbacks),
        "rollback_events": rollbacks,
        "incidents": len(incidents),
        "releases": releases,
        "measurement": impact,
        "coverage_percent": coverage,
        "environment": environment,
        "version": version,
    }


def _rollback_text(rollbacks):
    if not rollbacks:
        return "0"
    parts = []
    for r in rollbacks:
        how = "automatic" if r["automatic"] else "manual"
        part = "%s: %s%s" % (r["environment"] or "-", how, (", to " + str(r["to_version"])) if r["to_version"] else "")
        if r["result"] == "failure":
            part += ", FAILED"
        parts.append(part)
    return "%d (%s)" % (len(rollbacks), "; ".join(parts))


def release_timeline(entries, version):
    """A release's timeline and retrospective metrics from its audit entries."""
    ordered = _ordered(entries)
    rollbacks = [r for r in rollback_events(ordered) if r["version"] == version]
    mine = _filter(ordered, version=version)
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
    # a rollback recorded under the version it returned to still measures this release's rollback
    rollback_seqs = [r["seq"] for r in rollbacks]
    impact = measured_impact(mine + [e for e in ordered if e.get("version") != version
                                     and e.get("seq") in rollback_seqs and e.get("seq") is not None])
    coverage, coverage_seq = recorded_coverage(mine)
    incident_text = str(len(incidents))
    if severities:
        incident_text += " (%s)" % ", ".join(severities)
    went_well, improve = [], []
    total = sum(deploy_seconds) if deploy_seconds else None
    if total is not None:
        (went_well if total < 3600 else improve).append(
            "Deployments took %s in total (target: 60 min)" % _fmt_minutes(total))
    if impact["downtime_seconds"] is not None:
        if impact["downtime_seconds"] > 0:
            improve.append("Downtime of %s measured" % impact["downtime_text"])
        elif impact["complete"]:
            went_well.append("Zero downtime measured (%s)" % impact["downtime_text"].split(" (", 1)[1].rstrip(")"))
        if impact["failed_requests"]:
            improve.append("Failed requests during deploys: %s" % impact["failed_requests_text"])
    if impact["not_measured"]:
        improve.append("Downtime not measured for %d of %d deploys and rollbacks (%s)" % (
            impact["not_measured"], impact["deploys"] + impact["rollbacks"], "; ".join(impact["not_measured_reasons"][:3])))
    checks = [e for e in mine if e.get("action") == "predeploy_check"]
    if checks and all(e.get("result") == "success" for e in checks):
        went_well.append("All pre-deployment checks passed")
    elif checks:
        improve.append("Pre-deployment checks failed %d time(s)" % len([e for e in checks if e.get("result") != "success"]))
    failed = [e for e in deployments if e.get("result") != "success"]
    for e in failed:
        improve.append("Deployment to %s ended with %s (seq %s)" % (e.get("environment"), e.get("result"), e.get("seq")))
    for r in rollbacks:
        improve.append("Rolled back in %s (%s%s, seq %s)%s" % (
            r["environment"], "automatic" if r["automatic"] else "manual",
            (", to " + str(r["to_version"])) if r["to_version"] else "", r["seq"],
            ": the rollback FAILED" if r["result"] == "failure" else ""))
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
            "rollback_count": len(rollbacks),
            "rollback_text": _rollback_text(rollbacks),
            "rollbacks": rollbacks,
            "incidents": len(incidents),
            "incidents_text": incident_text,
            "customer_impact": ", ".join(impacts) if impacts else "None recorded",
            "downtime_seconds": impact["downtime_seconds"],
            "downtime": impact["downtime_text"],
            "failed_requests": impact["failed_requests"],
            "failed_requests_text": impact["failed_requests_text"],
            "measurement": impact,
            "coverage_percent": coverage,
            "test_coverage": "not recorded" if coverage is None else "%s (pre-deployment check, seq %s)" % (
                _fmt_pct(coverage), coverage_seq),
        },
    }


def metrics_markdown(report):
    """The Success Metrics table as markdown."""
    lines = ["| Metric | Target | Actual | Met |", "|--------|--------|--------|-----|"]
    for row in report["metrics"]:
        met = "-" if row["met"] is None else ("yes" if row["met"] else "no")
        lines.append("| %s | %s | %s | %s |" % (row["metric"], row["target"], row["actual"], met))
    return "\n".join(lines)
