# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbooks' decisions: stuck or not, which resolution, recommended commands, escalation. Pure functions."""

from __future__ import annotations

import json

from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import (
    RunbookError, finding, number, truncate)

STUCK_ACTIONS = ("retry", "abort")


def _step_text(step):
    if not step:
        return ""
    return ", last step %s on %s%s" % (step.get("action"), step.get("target") or "-",
                                       " done" if step.get("done") else " NOT done")


def _mixed(state, out):
    versions = state.get("versions") or {}
    if versions and len(set(versions.values())) > 1:
        out.append(finding("warning", "state", "mixed versions: " + json.dumps(versions, sort_keys=True)))


def _first(*values):
    for value in values:
        if value:
            return value
    return ""


def stuck(facts, settings):
    """Deployment stuck: is the operation in progress older than the threshold; commands to retry or abort it."""
    if settings.get("action", "retry") not in STUCK_ACTIONS:
        raise RunbookError("runbook_stuck_action must be retry or abort (got %r)" % settings.get("action"))
    minutes = number(settings.get("after_minutes", 10), "runbook_stuck_after_minutes", 0)
    state = facts["state"]
    lock = facts.get("lock") or {}
    env = settings["environment"]
    op = state.get("operation") or {}
    recorded = (lock.get("state") or {}).get("in_progress") or {}
    is_stuck = bool(state.get("in_progress")) and (state.get("age_seconds") or 0) > minutes * 60
    from_versions = []
    for value in (op.get("from_versions") or {}).values():
        if value and value not in from_versions:
            from_versions.append(value)
    strategy = op.get("strategy") or "rolling"
    artifact = _first(op.get("artifact"), recorded.get("artifact"), settings.get("artifact"))
    checksum = _first(op.get("checksum"), recorded.get("checksum"), settings.get("checksum"))
    retry = "ansible-playbook %s -e env=%s -e version=%s -e strategy=%s%s%s" % (
        settings.get("deploy_playbook", "playbooks/deploy.yml"), env, op.get("version", "VERSION"), strategy,
        (" -e artifact=" + artifact) if artifact else "", (" -e checksum=" + checksum) if checksum else "")
    abort_version = from_versions[0] if len(from_versions) == 1 else ""
    abort = "ansible-playbook %s -e env=%s -e strategy=%s%s" % (
        settings.get("rollback_playbook", "playbooks/rollback.yml"), env, strategy,
        (" -e version=" + abort_version) if abort_version and op.get("strategy") != "canary" else "")

    out = []
    if state.get("status_error"):
        out.append(finding("critical", "state", "release status unavailable: %s" % state["status_error"]))
    if not state.get("exists"):
        out.append(finding("info", "state", "no state file %s: no deployment recorded for %s" % (state.get("file"), env)))
    elif not state.get("in_progress"):
        out.append(finding("info", "state", "no operation in progress (last: %s %s %s)"
                           % (op.get("kind", "none"), op.get("version", ""), op.get("status", ""))))
    else:
        out.append(finding("critical" if is_stuck else "info", "state",
                           "%s of %s (%s) in progress since %s, no progress for %ss%s%s, done %s, pending %s" % (
                               op.get("kind"), op.get("version"), op.get("strategy"), op.get("started"),
                               state.get("age_seconds"),
                               (" (stuck: more than %s minutes)" % settings.get("after_minutes", 10)) if is_stuck
                               else " (not stuck yet)",
                               _step_text(state.get("last_step")), ",".join(op.get("done") or []) or "none",
                               ",".join(op.get("pending") or []) or "none")))
    _mixed(state, out)
    held = lock.get("lock")
    if held:
        out.append(finding("warning", "lock", "environment %s is locked by %s since %s%s" % (
            env, held.get("holder"), held.get("since"),
            (" (stale: %s)" % lock["stale"]) if lock.get("stale") else " (live)")))
    recommendations = [retry, abort, "ansible-playbook playbooks/runbooks/deployment_stuck.yml -e env=%s "
                       "-e runbook_resolve=true -e runbook_stuck_action=retry|abort" % env] if is_stuck else []
    resolution = _resolution(settings.get("action", "retry"), op, facts.get("status") or {})
    return {"stuck": is_stuck, "retry_command": retry, "abort_command": abort, "abort_version": abort_version,
            "resolution": resolution, "lock_live": bool(held) and not lock.get("stale"),
            "lock_stale": bool(held) and lock.get("stale") is not None and bool(lock.get("stale")),
            "artifact": artifact, "checksum": checksum,
            "manifest": _first(op.get("manifest"), recorded.get("manifest"), settings.get("manifest")),
            "public_key": _first(op.get("public_key"), recorded.get("public_key"), settings.get("public_key")),
            "rollback_version": (op.get("version") if resolution == "rerun_rollback" else
                                 (abort_version if abort_version and op.get("strategy") != "canary" else "")),
            }, out, recommendations


def _resolution(action, op, status):
    """resume (a rolling / blue-green deploy), rerun_rollback, nothing_switched (blue-green never switched) or abort."""
    kind, strategy = op.get("kind", ""), op.get("strategy", "")
    if action == "retry" and kind == "deploy" and strategy in ("rolling", "blue-green"):
        return "resume"
    if action == "retry" and kind == "rollback":
        return "rerun_rollback"
    if strategy == "blue-green" and status.get("active_color") != op.get("to_color"):
        return "nothing_switched"
    return "abort"


def health_plan(facts, settings):
    """Health checks failing: who is unhealthy, which still is after a restart, the recommended next steps."""
    env = settings["environment"]
    resolve = bool(settings.get("resolve"))
    health = facts.get("health") or {}
    after = facts.get("health_after")
    findings_so_far = facts.get("findings") or []
    unhealthy = [name for name, h in health.items() if not h["ok"]]
    persistent = [name for name, h in (after or {}).items() if not h["ok"]]
    still = persistent if resolve else unhealthy
    constrained = any(f["step"] == "resources" and f["severity"] in ("warning", "critical") for f in findings_so_far)
    recommendations = []
    if unhealthy and not resolve:
        recommendations.append("ansible-playbook playbooks/runbooks/health_checks_failing.yml -e env=%s "
                               "-e runbook_resolve=true   # restart %s" % (env, ", ".join(unhealthy)))
    if resolve and still:
        recommendations.append("ansible-playbook %s -e env=%s   # persistent failures on %s"
                               % (settings.get("rollback_playbook", "playbooks/rollback.yml"), env, ", ".join(still)))
    if constrained:
        recommendations.append("scale up: add instances or capacity, the resources are constrained (see Findings)")
    return {"unhealthy": unhealthy, "persistent": persistent, "constrained": constrained}, [], recommendations


def restarts(facts, settings):
    """The restart actions (command results) and the persistent failures after them."""
    after = facts.get("health_after") or {}
    actions, out = [], []
    failed = False
    for res in facts.get("results", []):
        name = res["item"]["name"]
        if res.get("rc") == 0:
            h = after.get(name) or {}
            text = "restarted, " + ("healthy again" if h.get("ok") else "STILL UNHEALTHY: %s" % h.get("status"))
        else:
            failed = True
            text = "FAILED rc %s: %s" % (res.get("rc"), truncate((res.get("stderr") or res.get("msg") or "").strip(), 200))
        actions.append({"action": "restart", "target": name, "result": text})
    persistent = [name for name, h in after.items() if not h["ok"]]
    for name in persistent:
        out.append(finding("critical", "resolution", "%s is still unhealthy after the restart (%s): persistent failure, "
                                                     "roll back" % (name, after[name]["status"]), name))
    return {"actions": actions, "persistent": persistent, "failed": failed,
            "resolved": not persistent and not failed}, out, []


def rollback_history(facts, settings):
    """Rollback failed, step 3: the operation left in progress, the last operation, mixed versions."""
    state = facts["state"]
    op = state.get("operation") or {}
    last = state.get("last_operation") or {}
    out = []
    if state.get("status_error"):
        out.append(finding("critical", "state", "release status unavailable: %s" % state["status_error"]))
    if state.get("in_progress"):
        out.append(finding("warning", "state", "%s of %s (%s) left in progress since %s%s" % (
            op.get("kind"), op.get("version"), op.get("strategy"), op.get("started"), _step_text(state.get("last_step")))))
    if last:
        out.append(finding("info", "state", "last operation: %s of %s %s (%s)" % (
            last.get("kind"), last.get("version"), last.get("status"), last.get("finished", "?"))))
    _mixed(state, out)
    return {}, out, []


def escalation(facts, settings):
    """Rollback failed: escalate when not resolved and (a resolution was asked for or the backup is not intact)."""
    env = settings["environment"]
    resolve = bool(settings.get("resolve"))
    backup_ok = bool(facts.get("backup_ok"))
    contacts = settings.get("contacts") or []
    if not contacts:
        raise RunbookError("runbook_emergency_contacts must not be empty")
    escalate = not facts.get("resolved") and (resolve or not backup_ok)
    out, recommendations = [], []
    if escalate:
        now = [c for c in contacts if c.get("escalation") == "Immediate"]
        out.append(finding("critical", "escalation", "escalate now to %s (see Emergency contacts)"
                           % ", ".join("%s %s" % (c.get("role"), c.get("contact")) for c in now)))
    if backup_ok and not resolve:
        recommendations.append("ansible-playbook playbooks/runbooks/rollback_failed.yml -e env=%s -e runbook_resolve=true"
                               "   # manual rollback to %s" % (env, ", ".join(facts.get("versions") or [])))
    if not backup_ok:
        recommendations += ["restore the release directories from the disaster recovery backup, then run this runbook again",
                            "roll the database back manually if the release changed its schema"]
    return {"escalate": escalate}, out, recommendations
