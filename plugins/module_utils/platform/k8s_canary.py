# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary on Kubernetes (Python 3.9+): the stable Deployment ``<app>`` and a canary Deployment ``<app>-canary``.

The canary's pods are the stable pod template with the new image and version and ``meshos.release/track: canary``,
so a Service that selects the app's labels reaches both. How traffic is split (``canary_router``):

- ``replicas``: by replica ratio. Of the stable Deployment's N replicas (recorded on the canary as
  ``meshos.release/canary-total``), ceil(N * percent / 100) run the canary and the rest stay stable (at least one of
  each below 100 %); the canary is scaled up and ready before the stable one is scaled down. The share reported is the
  ready canary pods over all ready pods, read back from the Deployments' status.
- ``gateway``: a Gateway API ``HTTPRoute`` (``canary_httproute``) whose first rule gets two backendRefs, the stable
  Service (``service``) and the canary Service (``<service>-canary``, created, selecting the canary pods), weighted
  100 - percent and percent; the stable Deployment keeps its N replicas. Read back after the write.
- ``nginx``: an NGINX canary Ingress ``<ingress>-canary`` (the rules of ``canary_ingress``, backend the canary Service)
  with ``nginx.ingress.kubernetes.io/canary: "true"`` and ``canary-weight: <percent>``. Read back after the write.

For exact weights the stable Service must not select the canary pods: label the stable pods
``meshos.release/track: stable`` and select it (the canary's template replaces that label with ``canary``).
Abort sends every request back at once (weight 0 / canary scaled to 0, stable back to N), then removes the canary.
"""

from __future__ import annotations

import copy
import math
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    NotFoundError,
    PlatformError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import (
    LABEL_VALUE_RE,
    VERSION_KEY,
    _get,
    _replica_counts,
    pod_readiness,
    template_version,
)

TRACK_KEY = "meshos.release/track"
TOTAL_KEY = "meshos.release/canary-total"
PERCENT_KEY = "meshos.release/canary-percent"
ROUTERS = ("replicas", "gateway", "nginx")
NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


def split_replicas(total: int, percent: int) -> t.Tuple[int, int]:
    """(canary, stable) replicas for PERCENT of TOTAL: at least one of each below 100 %."""
    if percent >= 100:
        return total, 0
    canary = max(1, int(math.ceil(total * percent / 100.0)))
    return min(canary, max(total - 1, 1)), max(total - canary, 1)


class CanaryDeployments:
    """``stable`` and ``canary`` are ``DeploymentRollout`` objects for ``<app>`` and ``<app>-canary``."""

    def __init__(self, api: t.Any, namespace: str, stable: t.Any, canary: t.Any, service: str,
                 router: str = "replicas", httproute: t.Optional[str] = None,
                 ingress: t.Optional[str] = None) -> None:
        if router not in ROUTERS:
            raise ConfigError("invalid canary_router %r: expected one of %s" % (router, ", ".join(ROUTERS)))
        if router == "gateway" and not httproute:
            raise ConfigError("canary_router gateway needs canary_httproute (the HTTPRoute to weigh)")
        if router == "nginx" and not ingress:
            raise ConfigError("canary_router nginx needs canary_ingress (the app's Ingress)")
        self.api = api
        self.namespace = namespace
        self.stable = stable
        self.canary = canary
        self.service = service
        self.canary_service = "%s-canary" % service
        self.router = router
        self.httproute = httproute
        self.ingress = ingress

    # -- reading
    def read_canary(self) -> t.Optional[t.Dict[str, t.Any]]:
        try:
            return self.canary.read()
        except NotFoundError:
            return None

    def in_progress(self) -> t.Optional[t.Dict[str, t.Any]]:
        """The canary's recorded state (version, percent, total) when one is running, else None."""
        dep = self.read_canary()
        if dep is None or _get(dep, "metadata", "annotations", TOTAL_KEY) is None:
            return None
        return {"version": template_version(_get(dep, "spec", "template", default={}), self.canary.container_name(dep)),
                "percent": int(_get(dep, "metadata", "annotations", PERCENT_KEY, default=0)),
                "total": int(_get(dep, "metadata", "annotations", TOTAL_KEY)), "deployment": dep}

    def measured_share(self) -> t.Dict[str, t.Any]:
        """Ready pods of each track and the canary's share of them (replica ratio), from the Deployments' status."""
        canary = self.read_canary()
        c = _replica_counts(canary)["ready"] if canary else 0
        s = _replica_counts(self.stable.read())["ready"]
        return {"canary_ready": c, "stable_ready": s,
                "replica_share_percent": round(100.0 * c / (c + s), 1) if c + s else None}

    # -- writing
    def _canary_body(self, stable: t.Dict[str, t.Any], version: str, replicas: int, total: int,
                     pod_labels: t.Dict[str, str]) -> t.Dict[str, t.Any]:
        template = copy.deepcopy(_get(stable, "spec", "template", default={}))
        template.setdefault("metadata", {})
        labels = dict(template["metadata"].get("labels") or {})
        labels.update(pod_labels)
        labels.update({TRACK_KEY: "canary", VERSION_KEY: version})
        template["metadata"]["labels"] = labels
        template["metadata"]["annotations"] = dict(template["metadata"].get("annotations") or {}, **{VERSION_KEY: version})
        container = self.stable.container_name(stable)
        for item in _get(template, "spec", "containers", default=[]):
            if item.get("name") == container:
                item["image"] = self.stable.image_for(version, item.get("image") or "")
        spec = dict((k, copy.deepcopy(v)) for k, v in (stable.get("spec") or {}).items()
                    if k in ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"))
        selector = dict(_get(stable, "spec", "selector", "matchLabels", default={}), **{TRACK_KEY: "canary"})
        spec.update(replicas=replicas, selector={"matchLabels": selector}, template=template)
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": self.canary.name, "labels": {TRACK_KEY: "canary"},
                             "annotations": {TOTAL_KEY: str(total), PERCENT_KEY: "0"}},
                "spec": spec}

    def _ensure_canary_service(self) -> None:
        try:
            self.api.read_service(self.namespace, self.canary_service)
            return
        except NotFoundError:
            pass
        svc = self.api.read_service(self.namespace, self.service)
        selector = dict(_get(svc, "spec", "selector", default={}), **{TRACK_KEY: "canary"})
        ports = [dict((k, p[k]) for k in ("name", "port", "targetPort", "protocol") if p.get(k) is not None)
                 for p in _get(svc, "spec", "ports", default=[])]
        self.api.create_service(self.namespace, {"apiVersion": "v1", "kind": "Service",
                                                 "metadata": {"name": self.canary_service},
                                                 "spec": {"selector": selector, "ports": ports}})

    def _scale(self, rollout: t.Any, replicas: int, version: str) -> None:
        self.api.patch_deployment(self.namespace, rollout.name, {"spec": {"replicas": replicas}})
        if replicas:
            rollout.wait(version)

    def route_weights(self, percent: int) -> t.Dict[str, t.Any]:
        """Write the router's weights and read them back: {stable, canary} as the router holds them."""
        if self.router == "gateway":
            route = self.api.read_httproute(self.namespace, self.httproute)
            rules = _get(route, "spec", "rules", default=[])
            if not rules:
                raise ConfigError("httproute %s/%s has no rules to weigh" % (self.namespace, self.httproute))
            refs = [{"name": self.service, "port": self._port(rules[0]), "weight": 100 - percent},
                    {"name": self.canary_service, "port": self._port(rules[0]), "weight": percent}]
            refs = [dict((k, v) for k, v in ref.items() if v is not None) for ref in refs]
            self.api.patch_httproute(self.namespace, self.httproute,
                                     [{"op": "replace", "path": "/spec/rules/0/backendRefs", "value": refs}])
            back = _get(self.api.read_httproute(self.namespace, self.httproute), "spec", "rules", default=[{}])[0]
            weights = dict((r.get("name"), r.get("weight")) for r in back.get("backendRefs") or [])
            got = {"stable": weights.get(self.service), "canary": weights.get(self.canary_service)}
        elif self.router == "nginx":
            got = self._nginx_weight(percent)
        else:
            return {}
        if got != {"stable": 100 - percent, "canary": percent}:
            raise PlatformError("the %s router holds weights %s after writing stable %d / canary %d"
                                % (self.router, got, 100 - percent, percent))
        return got

    def _port(self, rule: t.Dict[str, t.Any]) -> t.Optional[int]:
        refs = rule.get("backendRefs") or []
        return refs[0].get("port") if refs else None

    def _nginx_weight(self, percent: int) -> t.Dict[str, t.Any]:
        name = "%s-canary" % self.ingress
        annotations = {NGINX_CANARY: "true", NGINX_WEIGHT: str(percent)}
        try:
            self.api.read_ingress(self.namespace, name)
            self.api.patch_ingress(self.namespace, name, {"metadata": {"annotations": annotations}})
        except NotFoundError:
            main = self.api.read_ingress(self.namespace, self.ingress)
            rules = copy.deepcopy(_get(main, "spec", "rules", default=[]))
            for rule in rules:
                for path in _get(rule, "http", "paths", default=[]):
                    if _get(path, "backend", "service"):
                        path["backend"]["service"]["name"] = self.canary_service
            spec = {"rules": rules}
            if _get(main, "spec", "ingressClassName"):
                spec["ingressClassName"] = main["spec"]["ingressClassName"]
            self.api.create_ingress(self.namespace, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                     "metadata": {"name": name, "annotations": annotations},
                                                     "spec": spec})
        back = _get(self.api.read_ingress(self.namespace, name), "metadata", "annotations", default={})
        weight = back.get(NGINX_WEIGHT)
        return {"stable": 100 - int(weight) if weight is not None and back.get(NGINX_CANARY) == "true" else None,
                "canary": int(weight) if weight is not None else None}

    # -- the strategy
    def start(self, version: str, percent: int, pod_labels: t.Optional[t.Dict[str, str]] = None,
              check_mode: bool = False) -> t.Dict[str, t.Any]:
        if not LABEL_VALUE_RE.match(version):
            raise ConfigError("version %r cannot be a label value (at most 63 letters, digits, '-', '_', '.')"
                              % (version,))
        current = self.in_progress()
        if current and current["version"] != version:
            raise ConfigError("a canary for version %s is in progress: promote or abort it first" % current["version"])
        stable = self.stable.read()
        stable_version = template_version(_get(stable, "spec", "template", default={}), self.stable.container_name(stable))
        total = current["total"] if current else int(_get(stable, "spec", "replicas", default=1))
        if total < 2 and self.router == "replicas":
            raise ConfigError("deployment %s/%s has %d replica: a replica-ratio canary needs at least 2 (or set "
                              "canary_router gateway/nginx)" % (self.namespace, self.stable.name, total))
        # created at its first size: a fresh rollout, so the controller's progress deadline covers a faulty canary
        # (a later scale-up of a Deployment whose rollout completed is not tracked against the deadline)
        body = self._canary_body(stable, version, split_replicas(total, percent)[0], total, dict(pod_labels or {}))
        diff = {"before": {self.canary.name: None, "canary_percent": 0},
                "after": {self.canary.name: version, "canary_percent": percent}}
        if check_mode:
            return {"changed": True, "status": "planned", "diff": diff, "steps": [],
                    "plan": [{"target": self.canary.name, "action": "create", "version": version},
                             {"target": self.router, "action": "set_percent", "percent": percent}],
                    "versions": {self.stable.name: stable_version}, "stable_version": stable_version}
        if current is None:
            self.api.create_deployment(self.namespace, body)
        if self.router != "replicas":
            self._ensure_canary_service()
        result = self.set_percent(version, percent, total, check_mode=False)
        result.update(diff=diff, stable_version=stable_version, canary_action="start")
        return result

    def set_percent(self, version: str, percent: int, total: int, check_mode: bool = False) -> t.Dict[str, t.Any]:
        canary_n, stable_n = split_replicas(total, percent)
        if self.router != "replicas":
            stable_n = total
        steps = []
        if check_mode:
            return {"changed": True, "status": "planned", "steps": [], "diff": {},
                    "plan": [{"target": self.canary.name, "action": "scale", "replicas": canary_n},
                             {"target": self.stable.name, "action": "scale", "replicas": stable_n},
                             {"target": self.router, "action": "set_percent", "percent": percent}]}
        # canary up and ready first, then the stable one down: capacity never drops below N
        self._scale(self.canary, canary_n, version)
        steps.append({"target": self.canary.name, "action": "scale", "replicas": canary_n, "changed": True})
        # the step's gate from the pods themselves: Ready is not enough when a container restarted
        agents = pod_readiness(self.api, self.namespace, "Deployment", self.canary.name)
        if agents["unhealthy"]:
            raise PlatformError("canary %s at %d%%: %d of %d pods unhealthy (%s)" % (
                self.canary.name, percent, agents["unhealthy"], agents["desired"],
                ", ".join(agents["unhealthy_pods"]) or "%d missing" % agents["missing"]))
        weights = self.route_weights(percent)
        stable_version = template_version(_get(self.stable.read(), "spec", "template", default={}),
                                          self.stable.container_name(self.stable.read()))
        self._scale(self.stable, stable_n, stable_version or "")
        steps.append({"target": self.stable.name, "action": "scale", "replicas": stable_n, "changed": True})
        self.api.patch_deployment(self.namespace, self.canary.name,
                                  {"metadata": {"annotations": {PERCENT_KEY: str(percent)}}})
        share = self.measured_share()
        return {"changed": True, "status": "in_progress", "canary_percent": percent, "router": self.router,
                "agents": agents,
                "router_weights": weights, "replicas": {"canary": canary_n, "stable": stable_n},
                "measured_share": share, "steps": steps, "plan": [],
                "versions": {self.stable.name: stable_version, self.canary.name: version}}

    def advance(self, steps_plan: t.List[int], check_mode: bool = False) -> t.Dict[str, t.Any]:
        current = self.in_progress()
        if current is None:
            raise ConfigError("no canary in progress for deployment %s/%s: start one with canary_action=start"
                              % (self.namespace, self.stable.name))
        nxt = [s for s in steps_plan if s > current["percent"]]
        if not nxt or nxt[0] >= 100:
            return self.promote(check_mode)
        result = self.set_percent(current["version"], nxt[0], current["total"], check_mode)
        result.update(canary_action="advance", diff={"before": {"canary_percent": current["percent"]},
                                                     "after": {"canary_percent": nxt[0]}})
        return result

    def promote(self, check_mode: bool = False) -> t.Dict[str, t.Any]:
        """The stable Deployment rolled to the canary's version at its full size, then the canary removed."""
        current = self.in_progress()
        if current is None:
            raise ConfigError("no canary in progress for deployment %s/%s" % (self.namespace, self.stable.name))
        version, total = current["version"], current["total"]
        diff = {"before": {"canary_percent": current["percent"]},
                "after": {"canary_percent": 100, self.stable.name: version}}
        if check_mode:
            return {"changed": True, "status": "planned", "diff": diff, "steps": [], "canary_action": "promote",
                    "plan": [{"target": self.stable.name, "action": "patch_template", "version": version,
                              "replicas": total}, {"target": self.canary.name, "action": "delete"}]}
        self.api.patch_deployment(self.namespace, self.stable.name, {"spec": {"replicas": total}})
        labels = dict(_get(current["deployment"], "spec", "template", "metadata", "labels", default={}))
        self.stable.pod_labels = dict((k, v) for k, v in labels.items()
                                      if k not in (TRACK_KEY, VERSION_KEY, "pod-template-hash")
                                      and k not in _get(self.stable.read(), "spec", "template", "metadata", "labels",
                                                        default={}))
        result = self.stable.rolling(version)
        weights = self.route_weights(0) if self.router != "replicas" else {}
        self.api.delete_deployment(self.namespace, self.canary.name)
        result.update(canary_action="promote", canary_percent=100, router=self.router, router_weights=weights,
                      diff=diff, versions={self.stable.name: version})
        return result

    def abort(self, check_mode: bool = False) -> t.Dict[str, t.Any]:
        """Every request back to stable at once (weight 0, canary to 0 replicas), stable back to N, canary removed."""
        current = self.in_progress()
        stable = self.stable.read()
        stable_version = template_version(_get(stable, "spec", "template", default={}), self.stable.container_name(stable))
        if current is None:
            return {"changed": False, "status": "complete", "canary_action": "abort", "plan": [], "steps": [],
                    "diff": {}, "versions": {self.stable.name: stable_version}, "canary_percent": 0}
        diff = {"before": {"canary_percent": current["percent"], self.canary.name: current["version"]},
                "after": {"canary_percent": 0, self.canary.name: None}}
        if check_mode:
            return {"changed": True, "status": "planned", "diff": diff, "steps": [], "canary_action": "abort",
                    "plan": [{"target": self.router, "action": "set_percent", "percent": 0},
                             {"target": self.canary.name, "action": "delete"},
                             {"target": self.stable.name, "action": "scale", "replicas": current["total"]}],
                    "versions": {self.stable.name: stable_version}}
        weights = self.route_weights(0) if self.router != "replicas" else {}
        self.api.patch_deployment(self.namespace, self.canary.name, {"spec": {"replicas": 0}})
        self._scale(self.stable, current["total"], stable_version or "")
        self.api.delete_deployment(self.namespace, self.canary.name)
        return {"changed": True, "status": "aborted", "canary_action": "abort", "canary_percent": 0,
                "router": self.router, "router_weights": weights, "plan": [], "diff": diff,
                "steps": [{"target": self.canary.name, "action": "delete", "changed": True}],
                "versions": {self.stable.name: stable_version}, "from_version": current["version"]}

    def verify_backup(self) -> t.Dict[str, t.Any]:
        """The stable Deployment an abort returns to exists with its image."""
        stable = self.stable.read()
        container = self.stable.container_name(stable)
        image = self.stable._image_of(_get(stable, "spec", "template", default={}), container)
        problems = [] if image else ["deployment %s has no image for container %s" % (self.stable.name, container)]
        return {"changed": False, "ok": not problems,
                "targets": {self.stable.name: {"ok": not problems, "problems": problems, "image": image,
                                               "version": template_version(_get(stable, "spec", "template",
                                                                                default={}), container)}}}
