# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Blue-green on Kubernetes (Python 3.9+): two Deployments ``<app>-blue`` / ``<app>-green`` behind one Service.

The Service's selector carries ``meshos.release/color``: that label is the switch. A deploy writes the new version
into the idle color's Deployment (its pod template is the live color's, with the new image, version and color),
waits for the controller's rollout, then checks the idle pods through the preview Service (``<service>-preview``, same
selector with the idle color): every replica must be a ready endpoint there. The switch is one JSON patch of the
Service's selector (guarded by a ``test`` of the current color), so traffic moves at once. The old color keeps its pods
for an instant switch back; it is scaled to 0 once ``scale_down_delay`` seconds have passed (by the next deploy or
rollback on the environment; 0 scales it down right after the switch, a negative delay keeps it).
"""

from __future__ import annotations

import copy
import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLORS,
    ConfigError,
    NotFoundError,
    PlatformError,
    PlatformTimeoutError,
    StuckError,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import (
    LABEL_VALUE_RE,
    VERSION_KEY,
    _get,
    pod_readiness,
    rollout_complete,
    template_version,
)

COLOR_KEY = "meshos.release/color"
SCALE_DOWN_KEY = "meshos.release/scale-down-at"


def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


def ready_endpoints(endpoints: t.Dict[str, t.Any]) -> int:
    """Ready addresses of an Endpoints object (what the Service really sends traffic to)."""
    return sum(len(subset.get("addresses") or []) for subset in endpoints.get("subsets") or [])


class BlueGreenDeployments:
    """The two colors of one app; ``rollout_for(color)`` is the ``DeploymentRollout`` of that color's Deployment."""

    def __init__(self, api: t.Any, namespace: str, app: str, service: str, preview_service: str,
                 rollout_for: t.Callable[[str], t.Any], scale_down_delay: float = 30.0, ready_timeout: float = 60.0,
                 interval: float = 1.0, sleep: t.Callable[[float], None] = time.sleep,
                 clock: t.Callable[[], float] = time.time) -> None:
        self.api = api
        self.namespace = namespace
        self.app = app
        self.service = service
        self.preview_service = preview_service
        self.rollout_for = rollout_for
        self.scale_down_delay = scale_down_delay
        self.ready_timeout = ready_timeout
        self.interval = interval
        self.sleep = sleep
        self.clock = clock

    # -- reading
    def read_service(self) -> t.Dict[str, t.Any]:
        return self.api.read_service(self.namespace, self.service)

    def active_color(self, svc: t.Optional[t.Dict[str, t.Any]] = None) -> str:
        svc = svc or self.read_service()
        color = _get(svc, "spec", "selector", COLOR_KEY)
        if color not in COLORS:
            raise ConfigError("service %s/%s selects %s=%r: blue-green needs its selector to name blue or green "
                              "(create %s-blue and select it once before the first blue-green deploy)"
                              % (self.namespace, self.service, COLOR_KEY, color, self.app))
        return color

    def read_color(self, color: str) -> t.Optional[t.Dict[str, t.Any]]:
        try:
            return self.rollout_for(color).read()
        except NotFoundError:
            return None

    def version_of(self, color: str, dep: t.Optional[t.Dict[str, t.Any]]) -> t.Optional[str]:
        if dep is None:
            return None
        return template_version(_get(dep, "spec", "template", default={}), self.rollout_for(color).container_name(dep))

    # -- writing
    def _idle_template(self, live: t.Dict[str, t.Any], live_color: str, idle: str, version: str,
                       pod_labels: t.Dict[str, str]) -> t.Dict[str, t.Any]:
        rollout = self.rollout_for(idle)
        template = copy.deepcopy(_get(live, "spec", "template", default={}))
        template.setdefault("metadata", {})
        labels = dict(template["metadata"].get("labels") or {})
        labels.update(pod_labels)
        labels.update({COLOR_KEY: idle, VERSION_KEY: version})
        template["metadata"]["labels"] = labels
        template["metadata"]["annotations"] = dict(template["metadata"].get("annotations") or {}, **{VERSION_KEY: version})
        container = self.rollout_for(live_color).container_name(live)
        for item in _get(template, "spec", "containers", default=[]):
            if item.get("name") == container:
                item["image"] = rollout.image_for(version, item.get("image") or "")
        return template

    def _new_deployment(self, live: t.Dict[str, t.Any], idle: str, template: t.Dict[str, t.Any],
                        replicas: int) -> t.Dict[str, t.Any]:
        spec = dict((k, copy.deepcopy(v)) for k, v in (live.get("spec") or {}).items()
                    if k in ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"))
        selector = dict(_get(live, "spec", "selector", "matchLabels", default={}), **{COLOR_KEY: idle})
        spec.update(replicas=replicas, selector={"matchLabels": selector}, template=template)
        labels = dict(_get(live, "metadata", "labels", default={}), **{COLOR_KEY: idle})
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "%s-%s" % (self.app, idle), "namespace": self.namespace, "labels": labels},
                "spec": spec}

    def scale(self, color: str, replicas: int, scale_down_at: t.Optional[float] = None) -> None:
        annotations = {SCALE_DOWN_KEY: None if scale_down_at is None else str(int(scale_down_at))}
        self.api.patch_deployment(self.namespace, "%s-%s" % (self.app, color),
                                  {"metadata": {"annotations": annotations}, "spec": {"replicas": replicas}})

    def reap(self, active: str, check_mode: bool = False) -> t.List[str]:
        """Scale the idle color to 0 once its scale-down time has passed; the colors scaled down."""
        idle = other(active)
        dep = self.read_color(idle)
        due = _get(dep or {}, "metadata", "annotations", SCALE_DOWN_KEY)
        if dep is None or not due or int(_get(dep, "spec", "replicas", default=0)) == 0:
            return []
        if float(due) > self.clock():
            return []
        if not check_mode:
            self.scale(idle, 0)
        return [idle]

    def _ensure_preview(self, svc: t.Dict[str, t.Any], idle: str) -> bool:
        selector = dict(_get(svc, "spec", "selector", default={}), **{COLOR_KEY: idle})
        try:
            preview = self.api.read_service(self.namespace, self.preview_service)
        except NotFoundError:
            ports = [dict((k, p[k]) for k in ("name", "port", "targetPort", "protocol") if p.get(k) is not None)
                     for p in _get(svc, "spec", "ports", default=[])]
            self.api.create_service(self.namespace, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": self.preview_service, "labels": {COLOR_KEY: idle}},
                "spec": {"selector": selector, "ports": ports}})
            return True
        if _get(preview, "spec", "selector", default={}) == selector:
            return False
        self.api.patch_service(self.namespace, self.preview_service,
                               [{"op": "replace", "path": "/spec/selector", "value": selector}])
        return True

    def validate_preview(self, replicas: int) -> int:
        """Wait until every idle replica is a ready endpoint of the preview Service; the count seen."""
        deadline = self.clock() + self.ready_timeout
        seen = 0
        while True:
            try:
                seen = ready_endpoints(self.api.read_endpoints(self.namespace, self.preview_service))
            except NotFoundError:
                seen = 0
            if seen >= replicas:
                return seen
            if self.clock() >= deadline:
                raise PlatformTimeoutError("preview service %s/%s has %d of %d ready endpoints after %ss: the idle "
                                           "color is not validated, traffic stays where it is"
                                           % (self.namespace, self.preview_service, seen, replicas, self.ready_timeout))
            self.sleep(self.interval)

    def switch(self, svc: t.Dict[str, t.Any], from_color: str, to_color: str) -> None:
        selector = dict(_get(svc, "spec", "selector", default={}), **{COLOR_KEY: to_color})
        # test + replace in one request: refused if someone switched meanwhile
        self.api.patch_service(self.namespace, self.service, [
            {"op": "test", "path": "/spec/selector/%s" % COLOR_KEY.replace("~", "~0").replace("/", "~1"),
             "value": from_color},
            {"op": "replace", "path": "/spec/selector", "value": selector}])

    def _retire(self, color: str) -> str:
        """The old color after a switch: scaled down now (delay 0), later (delay > 0) or kept (delay < 0)."""
        if self.scale_down_delay == 0:
            self.scale(color, 0)
            return "scaled down"
        if self.scale_down_delay > 0:
            due = self.clock() + self.scale_down_delay
            self.api.patch_deployment(self.namespace, "%s-%s" % (self.app, color),
                                      {"metadata": {"annotations": {SCALE_DOWN_KEY: str(int(due))}}})
            return "scale down after %ss" % self.scale_down_delay
        return "kept"

    # -- the strategy
    def deploy(self, version: str, phase: str = "full", pod_labels: t.Optional[t.Dict[str, str]] = None,
               check_mode: bool = False) -> t.Dict[str, t.Any]:
        if not LABEL_VALUE_RE.match(version):
            raise ConfigError("version %r cannot be a label value (at most 63 letters, digits, '-', '_', '.')"
                              % (version,))
        svc = self.read_service()
        active = self.active_color(svc)
        idle = other(active)
        live = self.rollout_for(active).read()
        live_version = self.version_of(active, live)
        idle_dep = self.read_color(idle)
        idle_version = self.version_of(idle, idle_dep)
        replicas = int(_get(live, "spec", "replicas", default=1))
        reaped = self.reap(active, check_mode)
        base = {"strategy": "blue-green", "phase": phase, "service": "%s/%s" % (self.namespace, self.service),
                "preview_service": "%s/%s" % (self.namespace, self.preview_service), "scaled_down": reaped,
                "from_version": live_version}
        diff = {"before": {"service_selector_color": active, "%s-%s" % (self.app, idle): idle_version,
                           "%s-%s" % (self.app, active): live_version},
                "after": {"service_selector_color": idle if phase != "prepare" else active,
                          "%s-%s" % (self.app, idle): version, "%s-%s" % (self.app, active): live_version}}
        if live_version == version and phase != "switch":
            diff["after"] = dict(diff["before"])
            return dict(base, changed=bool(reaped), status="complete", active_color=active, diff=diff, plan=[],
                        steps=[], versions={self.app: version})
        template = self._idle_template(live, active, idle, version, dict(pod_labels or {}))
        plan = []
        if phase != "switch":
            plan.append({"target": "%s-%s" % (self.app, idle), "action": "create" if idle_dep is None else
                         "replace_template", "version": version, "image": self._image(template, idle, live, active),
                         "replicas": replicas})
            plan.append({"target": self.preview_service, "action": "validate_preview", "color": idle})
        if phase != "prepare":
            plan.append({"target": self.service, "action": "switch_selector", "from_color": active, "color": idle})
        if check_mode:
            return dict(base, changed=True, status="planned", active_color=active, idle_color=idle, diff=diff,
                        plan=plan, steps=[], versions={self.app: live_version})
        steps = []  # type: t.List[t.Dict[str, t.Any]]
        if phase != "switch":
            started = self.clock()
            if idle_dep is None:
                self.api.create_deployment(self.namespace, self._new_deployment(live, idle, template, replicas))
            else:
                self.api.patch_deployment(self.namespace, "%s-%s" % (self.app, idle), [
                    {"op": "replace", "path": "/spec/template", "value": template},
                    {"op": "replace", "path": "/spec/replicas", "value": replicas}], json_patch=True)
                # no pending scale-down for the color that is about to take traffic
                self.api.patch_deployment(self.namespace, "%s-%s" % (self.app, idle),
                                          {"metadata": {"annotations": {SCALE_DOWN_KEY: None}}})
            try:
                self.rollout_for(idle).wait(version)
                steps.append({"target": "%s-%s" % (self.app, idle), "action": "rollout", "version": version,
                              "changed": True, "seconds": round(self.clock() - started, 3)})
                agents = pod_readiness(self.api, self.namespace, "Deployment", "%s-%s" % (self.app, idle))
                if agents["unhealthy"]:
                    raise PlatformError("%d of %d pods of %s-%s unhealthy (%s)" % (
                        agents["unhealthy"], agents["desired"], self.app, idle, ", ".join(agents["unhealthy_pods"])))
                self._ensure_preview(svc, idle)
                seen = self.validate_preview(replicas)
            except PlatformError as exc:
                # users never reached the idle color: take its pods away and say the live color kept serving
                self.scale(idle, 0)
                failed = type(exc)("%s; %s-%s scaled to 0, traffic stayed on %s (%s)"
                                   % (exc, self.app, idle, active, live_version))
                failed.details = getattr(exc, "details", None)
                raise failed
            steps.append({"target": self.preview_service, "action": "validate_preview", "changed": False,
                          "ready_endpoints": seen})
        if phase == "prepare":
            return dict(base, changed=True, status="prepared", active_color=active, idle_color=idle, diff=diff,
                        plan=[], steps=steps, versions={self.app: live_version})
        idle_now = self.rollout_for(idle).read()
        if self.version_of(idle, idle_now) != version or not rollout_complete(idle_now):
            raise ConfigError("phase=switch needs %s-%s prepared with %s and complete (run phase=prepare first); it "
                              "runs %s" % (self.app, idle, version, self.version_of(idle, idle_now)))
        self.switch(svc, active, idle)
        steps.append({"target": self.service, "action": "switch_selector", "from_color": active, "color": idle,
                      "changed": True})
        retired = self._retire(active)
        return dict(base, changed=True, status="complete", active_color=idle, previous_color=active,
                    previous_color_state=retired, diff=diff, plan=[], steps=steps, versions={self.app: version})

    def _image(self, template: t.Dict[str, t.Any], idle: str, live: t.Dict[str, t.Any], active: str) -> str:
        container = self.rollout_for(active).container_name(live)
        for item in _get(template, "spec", "containers", default=[]):
            if item.get("name") == container:
                return item.get("image") or ""
        return ""

    def switch_back(self, version: t.Optional[str], check_mode: bool = False) -> t.Dict[str, t.Any]:
        """Rollback: traffic to the other color (scaled up first if it was scaled down); a failed idle color that
        never got traffic is scaled to 0 when the live color already runs VERSION."""
        svc = self.read_service()
        active = self.active_color(svc)
        back = other(active)
        live = self.rollout_for(active).read()
        live_version = self.version_of(active, live)
        back_dep = self.read_color(back)
        back_version = self.version_of(back, back_dep)
        replicas = int(_get(live, "spec", "replicas", default=1))
        result = {"strategy": "blue-green", "service": "%s/%s" % (self.namespace, self.service),
                  "from_version": live_version}
        if version and live_version == version or back_dep is None:
            if back_dep is None and version and live_version != version:
                raise VersionNotInstalledError("no color runs %s to switch back to: %s-%s runs %s, %s-%s does not "
                                               "exist" % (version, self.app, active, live_version, self.app, back))
            # nothing to switch: the live color already runs it; a prepared or failed idle color goes to 0
            idle_up = back_dep is not None and int(_get(back_dep, "spec", "replicas", default=0)) > 0 \
                and back_version != live_version
            diff = {"before": {"service_selector_color": active, "%s-%s" % (self.app, back): back_version},
                    "after": {"service_selector_color": active, "%s-%s" % (self.app, back): back_version}}
            if idle_up and not check_mode:
                self.scale(back, 0)
            return dict(result, changed=idle_up, status="planned" if check_mode and idle_up else "complete",
                        active_color=active, diff=diff, plan=[{"target": "%s-%s" % (self.app, back),
                                                               "action": "scale", "replicas": 0}] if idle_up else [],
                        steps=[], versions={self.app: live_version})
        if version and back_version != version:
            raise VersionNotInstalledError("no color runs %s to switch back to: %s-%s runs %s, %s-%s runs %s"
                                           % (version, self.app, active, live_version, self.app, back, back_version))
        diff = {"before": {"service_selector_color": active}, "after": {"service_selector_color": back}}
        plan = [{"target": "%s-%s" % (self.app, back), "action": "scale", "replicas": replicas},
                {"target": self.service, "action": "switch_selector", "from_color": active, "color": back}]
        if check_mode:
            return dict(result, changed=True, status="planned", active_color=active, diff=diff, plan=plan, steps=[],
                        versions={self.app: live_version})
        steps = []
        if int(_get(back_dep, "spec", "replicas", default=0)) != replicas or not rollout_complete(back_dep):
            started = self.clock()
            self.scale(back, replicas)
            try:
                self.rollout_for(back).wait(back_version or "")
            except StuckError as exc:
                raise StuckError("cannot switch back to %s-%s (%s): %s; traffic stays on %s"
                                 % (self.app, back, back_version, exc, active))
            steps.append({"target": "%s-%s" % (self.app, back), "action": "scale", "replicas": replicas,
                          "changed": True, "seconds": round(self.clock() - started, 3)})
        self.switch(svc, active, back)
        steps.append({"target": self.service, "action": "switch_selector", "from_color": active, "color": back,
                      "changed": True})
        retired = self._retire(active)
        return dict(result, changed=True, status="complete", active_color=back, previous_color=active,
                    previous_color_state=retired, diff=diff, plan=[], steps=steps, versions={self.app: back_version})

    def verify_backup(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        """The color a switch back would go to exists and carries VERSION (any version when none is named)."""
        active = self.active_color()
        back = other(active)
        dep = self.read_color(back)
        problems = []
        back_version = self.version_of(back, dep)
        if dep is None:
            problems.append("%s-%s does not exist: there is no color to switch back to" % (self.app, back))
        elif version and back_version != version and self.version_of(active, self.rollout_for(active).read()) != version:
            problems.append("%s-%s runs %s, not %s" % (self.app, back, back_version, version))
        return {"changed": False, "ok": not problems,
                "targets": {self.app: {"ok": not problems, "problems": problems, "color": back,
                                       "version": back_version,
                                       "replicas": int(_get(dep or {}, "spec", "replicas", default=0))}}}
