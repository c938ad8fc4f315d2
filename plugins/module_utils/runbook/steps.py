# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One entry for module runbook_diagnose: a step name -> its judge (assess.py, decide.py)."""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.runbook import assess, decide
from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import RunbookError

ASSESS = {
    "state": assess.state, "logs": assess.logs, "processes": assess.processes, "resources": assess.resources,
    "connectivity": assess.connectivity, "health": assess.health, "dependencies": assess.dependencies,
    "haproxy": assess.haproxy, "audit": assess.audit, "backup": assess.backup,
}
DECIDE = {
    "stuck": decide.stuck, "health_plan": decide.health_plan, "restarts": decide.restarts,
    "rollback_history": decide.rollback_history, "escalation": decide.escalation,
}
STEPS = sorted(list(ASSESS) + list(DECIDE))
# steps that read what runbook_collect gathered on the instances' hosts
COLLECTED = ("logs", "processes", "resources", "connectivity")


def merge_collected(results):
    """runbook_collect results (one per host: {label, host, instances}) -> instances by name (with their host) and
    the hosts' own facts by host label."""
    instances, hosts, errors = {}, {}, []
    for res in results or []:
        if not isinstance(res, dict) or res.get("skipped"):
            continue
        if "instances" not in res:
            item = res.get("item") or {}
            errors.append({"target": item.get("name"), "unreachable": bool(res.get("unreachable")),
                           "msg": res.get("msg", "no answer")})
            continue
        label = res.get("label") or (res.get("host") or {}).get("hostname")
        hosts[label] = res.get("host") or {}
        for name, inst in res["instances"].items():
            instances[name] = dict(inst, host=label if res.get("remote") else None)
    return instances, hosts, errors


def run(step, facts, settings):
    """(record, findings, recommendations) of one step."""
    facts = dict(facts or {})
    settings = settings or {}
    if step in COLLECTED and "collected" in facts:
        instances, hosts, errors = merge_collected(facts.pop("collected"))
        if step == "connectivity":
            facts["local"] = instances
        else:
            facts.update(instances=instances, hosts=hosts, errors=errors)
    if step in ASSESS:
        record, findings = ASSESS[step](facts, settings)
        return record, findings, []
    if step in DECIDE:
        return DECIDE[step](facts, settings)
    raise RunbookError("step %r is not one of %s" % (step, ", ".join(STEPS)))
