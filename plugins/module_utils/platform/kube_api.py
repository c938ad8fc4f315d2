# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes API for the kubernetes backend (Python 3.9+): the client and the readers of API dicts.

``KubeClient`` is the only code that talks to the API (the official ``kubernetes`` client, built once per run from a
kubeconfig/context or the in-cluster service account); it returns plain API dicts (camelCase, as ``kubectl get -o
json``) and turns every ``ApiException`` into a one-line ``PlatformError``. The functions below it read those dicts
(versions, conditions, replica counts, pod states), so ``kubernetes.py`` and the unit tests work on plain dicts.
"""

from __future__ import annotations

import re
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    NotFoundError,
    PlatformError,
)

try:
    from kubernetes import client as _k8s_client
    from kubernetes import config as _k8s_config
    from kubernetes.client.rest import ApiException
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None  # type: t.Optional[str]
except ImportError as _exc:  # pragma: no cover - depends on the environment
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = str(_exc)

    class ApiException(Exception):  # type: ignore[no-redef]
        """Placeholder so ``except ApiException`` stays valid without the library."""

VERSION_KEY = "meshos.release/version"
REVISION_KEY = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class ApiError(PlatformError):
    """The Kubernetes API refused or failed a call (status and reason in the message)."""


def _api_error(what: str, exc: Exception) -> PlatformError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or exc.__class__.__name__
    body = getattr(exc, "body", None)
    detail = ""
    if body:
        try:
            import json
            detail = json.loads(body).get("message") or ""
        except (ValueError, AttributeError, TypeError):
            detail = str(body)[:200]
    msg = "Kubernetes API error on %s: %s %s%s" % (what, status or "", reason, (": " + detail) if detail else "")
    return NotFoundError(msg) if status == 404 else ApiError(msg)


class KubeClient:
    """The official client, configured once: apps/v1 and core/v1 calls returning plain API dicts."""

    def __init__(self, kubeconfig: t.Optional[str] = None, context: t.Optional[str] = None, in_cluster: bool = False,
                 api_client: t.Any = None) -> None:
        if api_client is None:
            if not HAS_KUBERNETES:
                raise ConfigError("the kubernetes Python library is required (%s)" % KUBERNETES_IMPORT_ERROR)
            try:
                if in_cluster:
                    configuration = _k8s_client.Configuration()
                    _k8s_config.load_incluster_config(client_configuration=configuration)
                    api_client = _k8s_client.ApiClient(configuration)
                else:
                    api_client = _k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
            except Exception as exc:  # the loaders raise ConfigException, TypeError, OSError...
                where = "in-cluster service account" if in_cluster else "kubeconfig %s%s" % (
                    kubeconfig or "(default)", (" context %s" % context) if context else "")
                raise ConfigError("cannot load the Kubernetes configuration from the %s: %s" % (where, exc))
        self.api_client = api_client
        self.apps = _k8s_client.AppsV1Api(api_client)
        self.core = _k8s_client.CoreV1Api(api_client)
        self.networking = _k8s_client.NetworkingV1Api(api_client)
        self.custom = _k8s_client.CustomObjectsApi(api_client)

    def _call(self, what: str, func: t.Callable[..., t.Any], *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            obj = func(*args, **kwargs)
        except ApiException as exc:
            raise _api_error(what, exc)
        except (OSError, ValueError) as exc:  # connection refused, TLS, urllib3 errors derive from these
            raise ApiError("Kubernetes API unreachable on %s: %s" % (what, str(exc).splitlines()[0] if str(exc) else exc))
        return self.api_client.sanitize_for_serialization(obj)

    def read_deployment(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("read deployment %s/%s" % (namespace, name), self.apps.read_namespaced_deployment,
                          name, namespace)

    def patch_deployment(self, namespace: str, name: str, body: t.Any, json_patch: bool = False) -> t.Dict[str, t.Any]:
        kind = "application/json-patch+json" if json_patch else "application/strategic-merge-patch+json"
        return self._call("patch deployment %s/%s" % (namespace, name), self.apps.patch_namespaced_deployment,
                          name, namespace, body, _content_type=kind)

    def list_replica_sets(self, namespace: str, selector: str) -> t.List[t.Dict[str, t.Any]]:
        return self._call("list replicasets in %s" % namespace, self.apps.list_namespaced_replica_set, namespace,
                          label_selector=selector).get("items") or []

    def create_deployment(self, namespace: str, body: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
        name = _get(body, "metadata", "name")
        return self._call("create deployment %s/%s" % (namespace, name), self.apps.create_namespaced_deployment,
                          namespace, body)

    def read_daemon_set(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("read daemonset %s/%s" % (namespace, name), self.apps.read_namespaced_daemon_set,
                          name, namespace)

    def delete_deployment(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("delete deployment %s/%s" % (namespace, name), self.apps.delete_namespaced_deployment,
                          name, namespace)

    def read_service(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("read service %s/%s" % (namespace, name), self.core.read_namespaced_service, name, namespace)

    def create_service(self, namespace: str, body: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
        name = _get(body, "metadata", "name")
        return self._call("create service %s/%s" % (namespace, name), self.core.create_namespaced_service,
                          namespace, body)

    def patch_service(self, namespace: str, name: str, body: t.Any) -> t.Dict[str, t.Any]:
        # a JSON patch replaces the whole selector in one write: the switch between colors is atomic
        return self._call("patch service %s/%s" % (namespace, name), self.core.patch_namespaced_service,
                          name, namespace, body, _content_type="application/json-patch+json")

    def read_endpoints(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("read endpoints %s/%s" % (namespace, name), self.core.read_namespaced_endpoints,
                          name, namespace)

    def read_ingress(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("read ingress %s/%s" % (namespace, name), self.networking.read_namespaced_ingress,
                          name, namespace)

    def create_ingress(self, namespace: str, body: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
        name = _get(body, "metadata", "name")
        return self._call("create ingress %s/%s" % (namespace, name), self.networking.create_namespaced_ingress,
                          namespace, body)

    def patch_ingress(self, namespace: str, name: str, body: t.Any) -> t.Dict[str, t.Any]:
        return self._call("patch ingress %s/%s" % (namespace, name), self.networking.patch_namespaced_ingress,
                          name, namespace, body)

    def read_httproute(self, namespace: str, name: str) -> t.Dict[str, t.Any]:
        return self._call("read httproute %s/%s" % (namespace, name), self.custom.get_namespaced_custom_object,
                          "gateway.networking.k8s.io", "v1", namespace, "httproutes", name)

    def patch_httproute(self, namespace: str, name: str, body: t.Any) -> t.Dict[str, t.Any]:
        return self._call("patch httproute %s/%s" % (namespace, name), self.custom.patch_namespaced_custom_object,
                          "gateway.networking.k8s.io", "v1", namespace, "httproutes", name, body,
                          _content_type="application/json-patch+json")

    def list_pods(self, namespace: str, selector: str) -> t.List[t.Dict[str, t.Any]]:
        return self._call("list pods in %s" % namespace, self.core.list_namespaced_pod, namespace,
                          label_selector=selector).get("items") or []


# ---------------------------------------------------------------------------- reading API dicts

def _get(obj: t.Any, *path: str, default: t.Any = None) -> t.Any:
    for key in path:
        if not isinstance(obj, dict) or obj.get(key) is None:
            return default
        obj = obj[key]
    return obj


def template_version(template: t.Dict[str, t.Any], container: str) -> t.Optional[str]:
    """The release version a pod template carries: our annotation, else our label, else the container image."""
    version = _get(template, "metadata", "annotations", VERSION_KEY) or _get(template, "metadata", "labels", VERSION_KEY)
    if version:
        return str(version)
    for item in _get(template, "spec", "containers", default=[]):
        if item.get("name") == container:
            return item.get("image")
    return None


def _conditions(dep: t.Dict[str, t.Any]) -> t.List[t.Dict[str, t.Any]]:
    return [dict((k, c.get(k)) for k in ("type", "status", "reason", "message"))
            for c in _get(dep, "status", "conditions", default=[])]


def _condition_text(conditions: t.List[t.Dict[str, t.Any]]) -> str:
    return "; ".join("%s=%s %s (%s)" % (c["type"], c["status"], c.get("reason") or "", (c.get("message") or "").strip())
                     for c in conditions) or "no conditions"


def _replica_counts(dep: t.Dict[str, t.Any]) -> t.Dict[str, int]:
    st = dep.get("status") or {}
    return {"desired": int(_get(dep, "spec", "replicas", default=1)), "current": int(st.get("replicas") or 0),
            "updated": int(st.get("updatedReplicas") or 0), "ready": int(st.get("readyReplicas") or 0),
            "available": int(st.get("availableReplicas") or 0), "unavailable": int(st.get("unavailableReplicas") or 0)}


def rollout_complete(dep: t.Dict[str, t.Any]) -> bool:
    """The controller's own verdict: latest generation observed, every replica updated, ready and available."""
    if int(_get(dep, "status", "observedGeneration", default=0)) < int(_get(dep, "metadata", "generation", default=0)):
        return False
    n = _replica_counts(dep)
    if not n["desired"] == n["current"] == n["updated"] == n["ready"] == n["available"]:
        return False
    return not [c for c in _conditions(dep) if c["type"] == "Progressing" and c["status"] == "False"]


def _pod_state(pod: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
    conds = dict((c.get("type"), c.get("status")) for c in _get(pod, "status", "conditions", default=[]))
    waiting = []
    restarts = 0
    for cs in _get(pod, "status", "containerStatuses", default=[]):
        restarts += int(cs.get("restartCount") or 0)
        reason = _get(cs, "state", "waiting", "reason")
        if reason:
            waiting.append(reason)
    return {"name": _get(pod, "metadata", "name"), "phase": _get(pod, "status", "phase") or "Unknown",
            "ready": conds.get("Ready") == "True", "containers_ready": conds.get("ContainersReady"),
            "waiting": waiting, "restarts": restarts,
            "terminating": _get(pod, "metadata", "deletionTimestamp") is not None}


def _pod_text(state: t.Dict[str, t.Any]) -> str:
    words = [state["phase"], "ready" if state["ready"] else "not ready"]
    words += state["waiting"]
    if state["restarts"]:
        words.append("%d restarts" % state["restarts"])
    if state["terminating"]:
        words.append("terminating")
    return "%s %s" % (state["name"], " ".join(words))


def pod_readiness(api: t.Any, namespace: str, kind: str, name: str, max_restarts: int = 0) -> t.Dict[str, t.Any]:
    """The agents of a Deployment or DaemonSet from its pods: a pod is unhealthy when it is not Ready, waits in
    CrashLoopBackOff, or restarted more than MAX_RESTARTS times; a desired pod that does not exist counts as unhealthy.
    A Deployment's pods are those of the ReplicaSets it owns (a canary beside it, matching its selector, is not)."""
    if kind not in ("Deployment", "DaemonSet"):
        raise ConfigError("invalid kind %r: expected Deployment or DaemonSet" % (kind,))
    obj = api.read_deployment(namespace, name) if kind == "Deployment" else api.read_daemon_set(namespace, name)
    labels = _get(obj, "spec", "selector", "matchLabels", default={})
    selector = ",".join("%s=%s" % kv for kv in sorted(labels.items()))
    pods = api.list_pods(namespace, selector)
    if kind == "Deployment":
        desired = int(_get(obj, "spec", "replicas", default=1))
        uid = _get(obj, "metadata", "uid")
        hashes = set(_get(rs, "metadata", "labels", HASH_LABEL) for rs in api.list_replica_sets(namespace, selector)
                     if [o for o in _get(rs, "metadata", "ownerReferences", default=[]) if o.get("uid") == uid])
        pods = [p for p in pods if _get(p, "metadata", "labels", HASH_LABEL) in hashes]
    else:
        desired = int(_get(obj, "status", "desiredNumberScheduled", default=0))
    states = [_pod_state(p) for p in pods]
    states = [s for s in states if not s["terminating"]]
    unhealthy = [s for s in states if not s["ready"] or "CrashLoopBackOff" in s["waiting"]
                 or s["restarts"] > max_restarts]
    missing = max(desired - len(states), 0)
    total = max(desired, len(states))
    return {"kind": kind, "name": "%s/%s" % (namespace, name), "desired": desired, "pods": len(states),
            "ready": len([s for s in states if s["ready"]]), "unhealthy": len(unhealthy) + missing,
            "unhealthy_ratio": round((len(unhealthy) + missing) / float(total), 4) if total else 0.0,
            "unhealthy_pods": [_pod_text(s) for s in unhealthy], "missing": missing}
