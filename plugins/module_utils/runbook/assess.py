# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per runbook step: the facts the role gathered -> (record for the report, findings). Pure functions."""

from __future__ import annotations

import json
import re

from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import (
    finding, number, parse_stamp, truncate, utcnow)

LOG_TROUBLE = re.compile(r"(?i)(traceback|error|exception|fault|crash)")
AUDIT_FINE = ("success", "info", "started", "skipped")


def _to_json(value):
    return json.dumps(value, sort_keys=True)


def state(facts, settings, now=None):
    """The rollout state file + the release status (meshos.release.rollback mode status) -> runbook_state."""
    data = facts.get("data") or {}
    status = facts.get("status") or {}
    op = data.get("operation") or {}
    steps = op.get("steps") or []
    if steps and not steps[-1].get("done"):
        since = steps[-1].get("at")
    else:
        since = data.get("updated") or op.get("started") or ""
    now = now or utcnow()
    record = {
        "file": facts.get("file"), "exists": bool(facts.get("exists")),
        "deployed_version": data.get("deployed_version"), "previous_version": data.get("previous_version"),
        "strategy": data.get("strategy"),
        "operation": dict((k, v) for k, v in op.items() if k != "steps"),
        "in_progress": op.get("status", "") == "in_progress",
        "last_step": steps[-1] if steps else None,
        "since": since or None,
        "age_seconds": int((now - parse_stamp(since)).total_seconds()) if since else None,
        "last_operation": data.get("last_operation"),
        "versions": status.get("versions", {}) if "versions" in status else {},
        "status_error": None if "versions" in status else status.get("msg"),
    }
    return record, []


def logs(facts, settings):
    """Log tails per instance, from runbook_collect (facts.instances: name -> {log: {path, exists, lines}})."""
    record, out = {}, []
    for name, inst in facts.get("instances", {}).items():
        log = inst.get("log")
        if log is None:
            continue
        if not log["exists"]:
            out.append(finding("warning", "logs", "no log file " + log["path"], name))
            continue
        record[name] = log["lines"]
        bad = [line for line in log["lines"] if LOG_TROUBLE.search(line)]
        if bad:
            out.append(finding("warning", "logs", "%s log shows: %s" % (name, bad[-1].strip()[:200]), name))
    return record, out


def processes(facts, settings):
    """Process per instance from its pid file (runbook_collect), or 'not checked' without pid files."""
    record, out = {}, []
    checked = False
    for name, inst in facts.get("instances", {}).items():
        proc = inst.get("process")
        if proc is None:
            record[name] = {"managed": False, "pid": None, "alive": None}
            continue
        checked = True
        record[name] = {"managed": proc["managed"], "pid": proc["pid"], "alive": proc["alive"]}
        if not proc["managed"]:
            out.append(finding("warning", "processes", "%s is not managed by the process manager (no pid file %s)"
                               % (name, proc["pid_file"]), name))
        elif not proc["alive"]:
            out.append(finding("critical", "processes", "%s process is not running (pid file says %s)"
                               % (name, proc["pid"]), name))
    for err in facts.get("errors") or []:
        checked = True
        record[err["target"]] = {"managed": None, "pid": None, "alive": None, "error": err["msg"]}
        out.append(finding("critical", "processes", "diagnostics of %s unavailable: %s%s" % (
            err["target"], "host unreachable: " if err["unreachable"] else "", truncate(err["msg"], 200)), err["target"]))
    if not checked:
        out.insert(0, finding("info", "processes", "no pid files known (runbook_pid_dir, runbook_instance_hosts): "
                                                   "process status not checked"))
    return record, out


def resources(facts, settings):
    """CPU / memory of the processes, disk of the release roots, memory of each host, against the thresholds."""
    cpu_warn = number(settings.get("cpu_warn_percent", 90), "runbook_cpu_warn_percent", 0)
    mem_warn = number(settings.get("memory_warn_percent", 95), "runbook_memory_warn_percent", 0)
    disk_min = number(settings.get("disk_min_free_percent", 10), "runbook_disk_min_free_percent", 0)
    avail_min = number(settings.get("memory_min_available_percent", 5), "runbook_memory_min_available_percent", 0)
    procs, disks, hosts, out = {}, {}, {}, []
    for host, seen in sorted((facts.get("hosts") or {}).items()):
        hosts[host] = {"memory": seen.get("memory"), "interfaces": seen.get("interfaces")}
    for name, inst in facts.get("instances", {}).items():
        res = inst.get("resources")
        procs[name] = res
        if res:
            if res["cpu_percent"] > cpu_warn:
                out.append(finding("warning", "resources", "%s uses %s %% CPU (threshold %s %%)"
                                   % (name, res["cpu_percent"], settings.get("cpu_warn_percent", 90)), name))
            if res["memory_percent"] is not None and res["memory_percent"] > mem_warn:
                out.append(finding("warning", "resources", "%s uses %s %% of memory (threshold %s %%)"
                                   % (name, res["memory_percent"], settings.get("memory_warn_percent", 95)), name))
        d = inst.get("disk")
        if d is None:
            continue
        where = inst.get("host")
        key = "%s:%s" % (where, inst.get("release_root")) if where else inst.get("release_root")
        disks[key] = d
        if "error" in d:
            out.append(finding("warning", "resources", "disk usage of %s unknown: %s" % (key, d["error"]), name))
        elif d["free_percent"] < disk_min:
            out.append(finding("critical", "resources", "only %s %% disk free on %s%s (%s, release root %s of %s, "
                               "minimum %s %%)" % (d["free_percent"], d["mount"], (" of host " + where) if where else "",
                                                   d["filesystem"] or "?", inst.get("release_root"), name,
                                                   settings.get("disk_min_free_percent", 10)), name))
    seen_mem = set()
    for host, seen in sorted(hosts.items()):
        mem = seen["memory"]
        if not mem or mem.get("available_percent") is None:
            continue
        if mem["available_percent"] < avail_min and host not in seen_mem:
            seen_mem.add(host)
            out.append(finding("critical", "resources", "only %s %% memory available on %s (minimum %s %%)"
                               % (mem["available_percent"], host, settings.get("memory_min_available_percent", 5))))
    first = next(iter(hosts.values()))["memory"] if hosts else None
    record = {"processes": procs, "disks": disks, "memory": first, "hosts": hosts}
    return record, out


def connectivity(facts, settings):
    """Ready URL per instance (ansible.builtin.uri results from the runbook's host)."""
    record, out = {}, []
    for res in facts.get("results", []):
        item = res["item"]
        status = res.get("status", -1)
        record[item["name"]] = {"url": item["ready_url"], "status": status, "ok": status == 200,
                                "error": None if status == 200 else truncate(res.get("msg", ""), 160)}
        if status != 200:
            out.append(finding("critical", "connectivity", "GET %s gave %s, not 200"
                               % (item["ready_url"], status if status > 0 else "no answer"), item["name"]))
    for name, inst in sorted(facts.get("local", {}).items()):
        ready = inst.get("ready")
        if ready and not ready["ok"]:
            out.append(finding("critical", "connectivity", "on host %s: GET %s gave %s, not 200%s"
                               % (inst.get("host") or "?", ready["url"], ready["status"] if ready["status"] > 0
                                  else "no answer", (" (" + ready["error"] + ")") if ready.get("error") else ""), name))
    return record, out


def health(facts, settings):
    """Health check per instance (uri results): 2xx is healthy. Findings only when settings.findings is true."""
    record, out = {}, []
    for res in facts.get("results", []):
        status = res.get("status", -1)
        ok = 200 <= status < 300
        url = res.get("url") or (res.get("invocation") or {}).get("module_args", {}).get("url", "")
        record[res["item"]["name"]] = {"url": url, "status": status, "ok": ok,
                                       "error": None if ok else truncate(res.get("msg", ""), 160)}
    if settings.get("findings", True):
        for name, h in record.items():
            if not h["ok"]:
                out.append(finding("critical", "health", "GET %s gave %s" % (
                    h["url"], h["status"] if h["status"] > 0 else "no answer (%s)" % (h["error"] or "")), name))
    return record, out


def dependencies(facts, settings):
    """Dependency URLs (uri results; 2xx/3xx is up); an empty list is reported as not checked."""
    record, out = {}, []
    if not settings.get("urls"):
        out.append(finding("info", "dependencies",
                           "no dependencies given (runbook_dependency_urls): database connectivity not checked"))
    for res in facts.get("results", []):
        item = res["item"]
        name = item["name"] if isinstance(item, dict) else item
        url = item["url"] if isinstance(item, dict) else item
        status = res.get("status", -1)
        record[name] = {"url": url, "status": status, "ok": 200 <= status < 400}
        if not 200 <= status < 400:
            out.append(finding("critical", "dependencies", "dependency %s is down: %s"
                               % (name, status if status > 0 else truncate(res.get("msg", "no answer"), 160))))
    return record, out


def haproxy(facts, settings):
    """The HAProxy server of every target (haproxy_info servers): not found / down is critical, drain/maint a warning."""
    backend = settings.get("backend", "be_app")
    info = facts.get("info") or {}
    servers = info.get("servers")
    record, out = {}, []
    if servers is None:
        out.append(finding("critical", "haproxy", "HAProxy runtime API unavailable: %s" % info.get("msg")))
    for t in facts.get("targets", []):
        be = t.get("backend") or backend
        server = t.get("server") or t["name"]
        match = [s for s in servers or [] if s["backend"] == be and s["server"] == server]
        record[t["name"]] = match[0] if match else None
        if servers is None:
            continue
        if not match:
            out.append(finding("critical", "haproxy", "server %s/%s not found in HAProxy" % (be, server), t["name"]))
        elif match[0]["state"] != "ready":
            s = match[0]
            out.append(finding("critical" if s["state"] == "down" else "warning", "haproxy",
                               "%s/%s is %s (check %s%s, for %ss)" % (
                                   be, s["server"], s["status"], s["check_status"],
                                   (" " + s["check_code"]) if s["check_code"] else "", s["last_change_seconds"]),
                               t["name"]))
    return record, out


def audit(facts, settings):
    """The last audit entries per action (audit_log query results); a failed last entry is a warning."""
    keep = int(number(settings.get("entries", 5), "runbook_audit_entries", 1))
    path = settings.get("audit_log", "")
    env = settings.get("environment", "")
    record, out = {}, []
    if not path:
        out.append(finding("info", "audit", "no audit log given (runbook_audit_log): %s entries not reviewed"
                           % ", ".join(settings.get("actions", []))))
        return record, out
    for res in facts.get("results", []):
        entries = res.get("entries")
        if entries is not None:
            record[res["item"]] = entries[-keep:]
        last = (entries or [])[-1:]
        if not last:
            out.append(finding("info", "audit", "no %s entry for %s in %s" % (res["item"], env, path)))
        elif last[0].get("result") not in AUDIT_FINE:
            e = last[0]
            details = (": " + _to_json(e["details"])[:200]) if e.get("details") else ""
            out.append(finding("warning", "audit", "last %s entry (#%s, %s, version %s) result %s%s"
                               % (res["item"], e.get("seq"), e.get("ts"), e.get("version"), e.get("result"), details)))
    return record, out


def backup(facts, settings):
    """meshos.release.rollback mode verify_backup per target -> ok, the versions to roll back to, findings."""
    result = facts.get("result") or {}
    out = []
    if facts.get("skipped"):
        out.append(finding("info", "backup", "every target has a color: a blue-green rollback switches back to the "
                                             "standby color, no backup to verify"))
        return {"ok": False, "versions": [], "targets": None}, out
    if "ok" not in result:
        out.append(finding("critical", "backup", "backup integrity unknown: %s" % result.get("msg")))
        return {"ok": False, "versions": [], "targets": result.get("msg")}, out
    reports = result.get("targets") or {}
    versions = []
    for name, r in reports.items():
        if r.get("version") and r["version"] not in versions:
            versions.append(r["version"])
        if r.get("ok"):
            out.append(finding("info", "backup", "rollback target %s is intact (releases kept: %s)"
                               % (r["version"], ", ".join(r.get("releases") or [])), name))
        else:
            out.append(finding("critical", "backup", "rollback target %s is NOT intact: %s"
                               % (r.get("version") or "none", "; ".join(r.get("problems") or [])), name))
    return {"ok": bool(result["ok"]), "versions": versions, "targets": reports}, out
