# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes runbooks (module runbook_kube): what they read from the API and how they classify it.

``KubeRunbookReader`` adds the reads the runbooks need (events, pod logs, nodes, all pods' requests) and the two
fleet actions (delete pods, scale) on the backend's one client (platform/kube_api.KubeClient). The functions below it
work on plain API dicts, so the classification is unit-tested without a cluster.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import (
    HASH_LABEL, REVISION_KEY, ApiError, ApiException, _api_error, _condition_text, _conditions, _get, _pod_state, _pod_text, _replica_counts,
    rollout_complete, template_version)
from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import RunbookError, finding, truncate

# waiting reasons -> cause; the first cause found in this order wins
WAITING_CAUSES = (("image_pull", ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")),
                  ("crash_loop", ("CrashLoopBackOff",)),
                  ("config_error", ("CreateContainerConfigError", "CreateContainerError")))
CAUSE_TEXT = {
    "insufficient_resources": "the new pods cannot be scheduled: their requests do not fit the nodes' allocatable",
    "unschedulable": "the new pods cannot be scheduled (see the FailedScheduling events)",
    "image_pull": "the new image cannot be pulled",
    "crash_loop": "the new pods crash (CrashLoopBackOff / restarts)",
    "config_error": "the new pods' containers cannot be created (configuration error)",
    "readiness_failing": "the new pods run but never become Ready (readiness probe failing)",
    "pending": "the new pods stay Pending",
    "unknown": "no pod-level cause found (see the conditions and events)",
}


# ---------------------------------------------------------------------------- quantities

_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
           "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(value: t.Any) -> float:
    """A Kubernetes quantity ('250m', '128Mi', '2', '1e3') as a number (CPU in cores, memory in bytes)."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix) and text[:-len(suffix)]:
            try:
                return float(text[:-len(suffix)]) * _SUFFIX[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise RunbookError("invalid Kubernetes quantity %r: expected a number with an optional suffix such as 250m "
                           "or 128Mi" % (value,))


def pod_requests(spec: t.Dict[str, t.Any]) -> t.Dict[str, float]:
    """cpu (cores) and memory (bytes) a pod spec requests (its containers; init containers as max)."""
    total = {"cpu": 0.0, "memory": 0.0}
    for c in spec.get("containers") or []:
        for key in total:
            value = _get(c, "resources", "requests", key)
            if value is not None:
                total[key] += quantity(value)
    for c in spec.get("initContainers") or []:
        for key in total:
            value = _get(c, "resources", "requests", key)
            if value is not None:
                total[key] = max(total[key], quantity(value))
    return total


def capacity(nodes: t.List[t.Dict[str, t.Any]], pods: t.List[t.Dict[str, t.Any]],
             template: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
    """Allocatable of the schedulable nodes, what the scheduled live pods request, what is free, and how many more
    pods of `template` fit, node by node as the scheduler places them (a template without requests: null)."""
    per_node = {}
    for n in nodes:
        if _get(n, "spec", "unschedulable"):
            continue
        per_node[_get(n, "metadata", "name")] = {
            "allocatable": dict((k, quantity(_get(n, "status", "allocatable", k, default=0))) for k in ("cpu", "memory", "pods")),
            "requested": {"cpu": 0.0, "memory": 0.0, "pods": 0.0}}
    for p in pods:
        node = per_node.get(_get(p, "spec", "nodeName"))
        if node is None or _get(p, "status", "phase") in ("Succeeded", "Failed"):
            continue
        req = pod_requests(p.get("spec") or {})
        node["requested"]["cpu"] += req["cpu"]
        node["requested"]["memory"] += req["memory"]
        node["requested"]["pods"] += 1
    want = pod_requests(_get(template, "spec", default={}))
    totals = dict((part, {"cpu": 0.0, "memory": 0.0, "pods": 0.0}) for part in ("allocatable", "requested", "free"))
    fits = 0
    for node in per_node.values():
        free = dict((k, node["allocatable"][k] - node["requested"][k]) for k in ("cpu", "memory", "pods"))
        for k in free:
            totals["allocatable"][k] += node["allocatable"][k]
            totals["requested"][k] += node["requested"][k]
            totals["free"][k] += free[k]
        counts = [int(free[k] // want[k]) for k in ("cpu", "memory") if want[k] > 0] + [int(free["pods"])]
        fits += max(min(counts), 0)
    return {"nodes": len(per_node), "allocatable": totals["allocatable"], "requested": totals["requested"],
            "free": totals["free"], "pod_requests": want,
            "more_pods_fit": fits if want["cpu"] or want["memory"] else None}


# ---------------------------------------------------------------------------- classification

def _events_text(events: t.List[t.Dict[str, t.Any]], limit: int = 3) -> str:
    return "; ".join("%s %s: %s" % (e.get("reason"), e.get("object"), truncate(e.get("message"), 160))
                     for e in events[-limit:])


def classify(deployment: t.Dict[str, t.Any], new_pods: t.List[t.Dict[str, t.Any]],
             events: t.List[t.Dict[str, t.Any]], room: t.Dict[str, t.Any]) -> t.Tuple[str, str]:
    """(cause, evidence) of a rollout that does not progress, from the new ReplicaSet's pods, events and capacity."""
    states = [_pod_state(p) for p in new_pods]
    waiting = [w for s in states for w in s["waiting"]]
    for cause, reasons in WAITING_CAUSES:
        hit = [w for w in waiting if w in reasons]
        if hit:
            return cause, "pods waiting with %s" % ", ".join(sorted(set(hit)))
    if any(s["restarts"] for s in states):
        return "crash_loop", "%d restarts in the new pods" % sum(s["restarts"] for s in states)
    pending = [s for s in states if s["phase"] == "Pending"]
    sched = [e for e in events if e.get("reason") == "FailedScheduling"]
    if pending or (not states and sched):
        text = " ".join(e.get("message") or "" for e in sched)
        if "Insufficient" in text or (room.get("more_pods_fit") == 0):
            return "insufficient_resources", (_events_text(sched) if sched else
                                              "requests %s per pod, free %s" % (room.get("pod_requests"), room.get("free")))
        if sched:
            return "unschedulable", _events_text(sched)
        return "pending", "%d pods Pending" % len(pending)
    running_unready = [s for s in states if s["phase"] == "Running" and not s["ready"]]
    if running_unready:
        return "readiness_failing", "%d of %d new pods Running but not Ready: %s" % (
            len(running_unready), len(states), ", ".join(_pod_text(s) for s in running_unready[:5]))
    return "unknown", _condition_text(_conditions(deployment))


def unhealthy(pod: t.Dict[str, t.Any]) -> t.Optional[str]:
    """Why a live pod is unhealthy (not Ready, CrashLoopBackOff, restarts), or None."""
    s = _pod_state(pod)
    if s["terminating"]:
        return None
    if s["waiting"]:
        return ", ".join(s["waiting"])
    if not s["ready"]:
        return "%s, not ready" % s["phase"]
    if s["restarts"]:
        return "%d restarts" % s["restarts"]
    return None


def diagnose(snapshot: t.Dict[str, t.Any], stuck_after_seconds: float = 0) -> t.Dict[str, t.Any]:
    """Findings and the classification of one Deployment from a snapshot (KubeRunbookReader.snapshot)."""
    dep = snapshot["deployment"]
    ref = "deployment %s/%s" % (snapshot["namespace"], snapshot["name"])
    conds = _conditions(dep)
    n = _replica_counts(dep)
    complete = rollout_complete(dep)
    deadline = [c for c in conds if c["type"] == "Progressing" and c["status"] == "False"
                and c["reason"] == "ProgressDeadlineExceeded"]
    out = []
    cause, evidence = (None, None)
    if complete:
        out.append(finding("info", "rollout", "%s rollout complete: %d/%d ready and available, revision %s (%s)"
                           % (ref, n["ready"], n["desired"], snapshot["revision"], snapshot["version"])))
    else:
        cause, evidence = classify(dep, snapshot["new_pods"], snapshot["events"], snapshot["capacity"])
        out.append(finding("critical" if deadline else "warning", "rollout", "%s rollout to %s %s: %d desired, %d updated, "
                           "%d ready, %d available; conditions: %s" % (
                               ref, snapshot["version"], "is STUCK (ProgressDeadlineExceeded)" if deadline
                               else "not complete", n["desired"], n["updated"], n["ready"], n["available"],
                               _condition_text(conds))))
        out.append(finding("critical" if deadline else "warning", "cause", "cause: %s (%s): %s"
                           % (cause, CAUSE_TEXT[cause], evidence)))
    for p in snapshot["pods"]:
        why = unhealthy(p)
        if why:
            out.append(finding("critical", "pods", "pod %s is unhealthy: %s" % (_get(p, "metadata", "name"), why),
                               _get(p, "metadata", "name")))
    for e in snapshot["events"]:
        if e.get("type") == "Warning":
            text = "%s %s (x%s): %s" % (e.get("reason"), e.get("object"), e.get("count") or 1,
                                        truncate(e.get("message"), 200))
            out.append(finding("warning", "events", text))
    room = snapshot["capacity"]
    if room["more_pods_fit"] == 0:
        out.append(finding("warning", "resources", "no room for another pod: per pod %s, free %s"
                           % (_fmt_res(room["pod_requests"]), _fmt_res(room["free"]))))
    for name, log in snapshot["logs"].items():
        if log.get("error"):
            out.append(finding("info", "logs", "log of %s not available: %s" % (name, log["error"]), name))
    return {"complete": complete, "stuck": bool(deadline), "cause": cause, "evidence": evidence,
            "unhealthy_pods": [_get(p, "metadata", "name") for p in snapshot["pods"] if unhealthy(p)],
            "findings": out}


def _fmt_res(res: t.Dict[str, float]) -> str:
    pods = (", pods %d" % res["pods"]) if "pods" in res else ""
    return "cpu %.3g, memory %.0fMi%s" % (res.get("cpu", 0), res.get("memory", 0) / 2 ** 20, pods)


# ---------------------------------------------------------------------------- the API

class KubeRunbookReader:
    """The runbooks' reads and actions on one Deployment, over the backend's KubeClient (plain API dicts back)."""

    def __init__(self, api: t.Any, namespace: str, name: str, container: t.Optional[str] = None,
                 log_lines: int = 20, event_limit: int = 20) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.container, self.log_lines, self.event_limit = container, log_lines, event_limit

    def _call(self, what, func, *args, **kwargs):
        """One API call on the shared client: a plain dict back, a one-line PlatformError on failure."""
        try:
            obj = func(*args, **kwargs)
        except ApiException as exc:
            raise _api_error(what, exc)
        except (OSError, ValueError) as exc:
            raise ApiError("Kubernetes API unreachable on %s: %s" % (what, str(exc).splitlines()[0] if str(exc) else exc))
        return self.api.api_client.sanitize_for_serialization(obj)

    def snapshot(self) -> t.Dict[str, t.Any]:
        dep = self.api.read_deployment(self.namespace, self.name)
        labels = _get(dep, "spec", "selector", "matchLabels", default={})
        selector = ",".join("%s=%s" % kv for kv in sorted(labels.items()))
        revision = _get(dep, "metadata", "annotations", REVISION_KEY)
        template = _get(dep, "spec", "template", default={})
        container = self.container or (_get(template, "spec", "containers", default=[{}])[0].get("name"))
        uid = _get(dep, "metadata", "uid")
        sets = [rs for rs in self.api.list_replica_sets(self.namespace, selector)
                if not uid or [o for o in _get(rs, "metadata", "ownerReferences", default=[]) if o.get("uid") == uid]]
        new_rs = [rs for rs in sets if _get(rs, "metadata", "annotations", REVISION_KEY) == revision]
        new_hash = _get(new_rs[0], "metadata", "labels", HASH_LABEL) if new_rs else None
        pods = [p for p in self.api.list_pods(self.namespace, selector) if not _get(p, "metadata", "deletionTimestamp")]
        new_pods = [p for p in pods if new_hash and _get(p, "metadata", "labels", HASH_LABEL) == new_hash]
        involved = set([self.name] + [_get(rs, "metadata", "name") for rs in sets] + [_get(p, "metadata", "name") for p in pods])
        events = self.events(involved)
        nodes = self._call("list nodes", self.api.core.list_node).get("items") or []
        all_pods = self._call("list pods", self.api.core.list_pod_for_all_namespaces).get("items") or []
        logs = dict((_get(p, "metadata", "name"), self.log_tail(_get(p, "metadata", "name"), container))
                    for p in (new_pods or pods)[:5])
        return {"namespace": self.namespace, "name": self.name, "deployment": dep, "revision": revision,
                "version": template_version(template, container), "container": container,
                "replica_sets": [{"name": _get(rs, "metadata", "name"),
                                  "revision": _get(rs, "metadata", "annotations", REVISION_KEY),
                                  "version": template_version(_get(rs, "spec", "template", default={}), container),
                                  "replicas": int(_get(rs, "spec", "replicas", default=0)),
                                  "ready": int(_get(rs, "status", "readyReplicas", default=0))} for rs in sets],
                "pods": pods, "new_pods": new_pods, "events": events, "logs": logs,
                "capacity": capacity(nodes, all_pods, template)}

    def events(self, involved: t.Set[str]) -> t.List[t.Dict[str, t.Any]]:
        items = self._call("list events in %s" % self.namespace, self.api.core.list_namespaced_event,
                           self.namespace).get("items") or []
        out = []
        for e in items:
            name = _get(e, "involvedObject", "name")
            if name not in involved:
                continue
            out.append({"type": e.get("type"), "reason": e.get("reason"), "message": (e.get("message") or "").strip(),
                        "object": "%s/%s" % (_get(e, "involvedObject", "kind"), name), "count": e.get("count"),
                        "last": e.get("lastTimestamp") or e.get("eventTime") or _get(e, "metadata", "creationTimestamp")})
        out.sort(key=lambda e: e["last"] or "")
        return out[-self.event_limit:]

    def log_tail(self, pod: str, container: t.Optional[str]) -> t.Dict[str, t.Any]:
        """The container's last lines, or why they are not available (a kwok pod has no kubelet to serve them)."""
        try:
            text = self.api.core.read_namespaced_pod_log(pod, self.namespace, container=container,
                                                         tail_lines=self.log_lines, _request_timeout=5)
        except Exception as exc:  # ApiException, connection errors: the log is optional evidence
            return {"lines": [], "error": truncate(" ".join(str(getattr(exc, "reason", None) or exc).split()), 160)}
        return {"lines": (text or "").splitlines()[-self.log_lines:], "error": None}

    def delete_pods(self, names: t.List[str], check_mode: bool = False) -> t.List[str]:
        if not check_mode:
            for name in names:
                self._call("delete pod %s/%s" % (self.namespace, name), self.api.core.delete_namespaced_pod,
                           name, self.namespace)
        return names

    def scale(self, replicas: int, check_mode: bool = False) -> t.Dict[str, int]:
        if replicas < 1:
            raise RunbookError("replicas must be >= 1 (got %r)" % replicas)
        dep = self.api.read_deployment(self.namespace, self.name)
        before = int(_get(dep, "spec", "replicas", default=1))
        if before != replicas and not check_mode:
            self.api.patch_deployment(self.namespace, self.name, {"spec": {"replicas": replicas}})
        return {"before": before, "after": replicas}


def public(snapshot: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
    """The snapshot as the report shows it: summaries instead of whole API objects."""
    dep = snapshot["deployment"]
    return {"deployment": "%s/%s" % (snapshot["namespace"], snapshot["name"]), "revision": snapshot["revision"],
            "version": snapshot["version"], "replicas": _replica_counts(dep), "conditions": _conditions(dep),
            "progress_deadline_seconds": _get(dep, "spec", "progressDeadlineSeconds"),
            "replica_sets": snapshot["replica_sets"],
            "pods": [_pod_state(p) for p in snapshot["pods"]],
            "new_pods": [_get(p, "metadata", "name") for p in snapshot["new_pods"]],
            "events": snapshot["events"], "logs": snapshot["logs"], "capacity": snapshot["capacity"]}
