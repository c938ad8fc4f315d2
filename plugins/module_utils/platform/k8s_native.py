# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes ``NativeRollout`` (Python 3.9+): rolling, blue-green and canary, and the rollback each one needs.

- rolling: ``kubernetes.DeploymentRollout`` on the Deployment ``deployment``.
- blue-green: ``k8s_bluegreen.BlueGreenDeployments`` on ``<deployment>-blue`` / ``<deployment>-green`` behind
  ``service``.
- canary: ``k8s_canary.CanaryDeployments`` on ``deployment`` (stable) and ``<deployment>-canary``.

A rollback reads which one is running from the cluster: a canary Deployment in progress is aborted; a Service whose
selector names a color is switched back; otherwise the Deployment goes back to a revision.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    NativeRollout,
    NotFoundError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.k8s_bluegreen import (
    COLOR_KEY,
    BlueGreenDeployments,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.k8s_canary import CanaryDeployments
from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import _get, pod_readiness


class KubernetesNative(NativeRollout):
    """One app on one namespace; ``make(name)`` builds the ``DeploymentRollout`` of a Deployment of it."""

    strategies = frozenset(["rolling", "blue-green", "canary"])

    def __init__(self, api: t.Any, make: t.Callable[[str], t.Any], app: str, service: str,
                 preview_service: t.Optional[str] = None, scale_down_delay: float = 30.0,
                 ready_timeout: float = 60.0, canary_router: str = "replicas",
                 canary_httproute: t.Optional[str] = None, canary_ingress: t.Optional[str] = None) -> None:
        self.api = api
        self.make = make
        self.app = app
        self.rolling_rollout = make(app)
        self.namespace = self.rolling_rollout.namespace
        self.pod_labels = dict(self.rolling_rollout.pod_labels)
        self.blue_green = BlueGreenDeployments(
            api, self.namespace, app, service, preview_service or "%s-preview" % service,
            rollout_for=lambda color: make("%s-%s" % (app, color)), scale_down_delay=scale_down_delay,
            ready_timeout=ready_timeout, interval=self.rolling_rollout.interval)
        self.canary = CanaryDeployments(api, self.namespace, self.rolling_rollout, make("%s-canary" % app), service,
                                        router=canary_router, httproute=canary_httproute, ingress=canary_ingress)

    def mode(self) -> str:
        """What runs now: canary (a canary in progress), blue-green (the Service selects a color) or rolling."""
        if self.canary.in_progress() is not None:
            return "canary"
        try:
            svc = self.blue_green.read_service()
        except NotFoundError:
            return "rolling"
        return "blue-green" if _get(svc, "spec", "selector", COLOR_KEY) else "rolling"

    def live(self) -> t.Any:
        """The DeploymentRollout serving users: the active color's under blue-green, else the app's Deployment."""
        if self.mode() == "blue-green":
            return self.make("%s-%s" % (self.app, self.blue_green.active_color()))
        return self.rolling_rollout

    # -- NativeRollout
    def rolling(self, version: str, check_mode: bool = False) -> t.Dict[str, t.Any]:
        if self.mode() == "blue-green":
            raise ConfigError("service %s selects a color: %s runs blue-green, deploy it with strategy blue-green"
                              % (self.blue_green.service, self.app))
        result = self.rolling_rollout.rolling(version, check_mode=check_mode)
        result["strategy"] = "rolling"
        return result

    def deploy_blue_green(self, version: str, phase: str, check_mode: bool = False) -> t.Dict[str, t.Any]:
        return self.blue_green.deploy(version, phase=phase, pod_labels=self.pod_labels, check_mode=check_mode)

    def deploy_canary(self, action: str, version: t.Optional[str], initial_traffic: int, steps: t.List[int],
                      check_mode: bool = False) -> t.Dict[str, t.Any]:
        if action == "start":
            if not version:
                raise ConfigError("version is required to start a canary")
            return self.canary.start(version, initial_traffic, pod_labels=self.pod_labels, check_mode=check_mode)
        current = self.canary.in_progress()
        if action != "abort" and current and version and version != current["version"]:
            raise ConfigError("canary in progress is for version %s, not %s" % (current["version"], version))
        if action == "advance":
            return self.canary.advance(steps, check_mode)
        if action == "promote":
            return self.canary.promote(check_mode)
        return self.canary.abort(check_mode)

    def rollback(self, version: t.Optional[str], check_mode: bool = False) -> t.Dict[str, t.Any]:
        mode = self.mode()
        if mode == "canary":
            result = self.canary.abort(check_mode)
        elif mode == "blue-green":
            result = self.blue_green.switch_back(version, check_mode)
        else:
            result = self.rolling_rollout.rollback(version, check_mode=check_mode)
        result["strategy"] = mode
        return result

    def status(self) -> t.Dict[str, t.Any]:
        mode = self.mode()
        result = self.live().status()
        versions = result.get("versions") or {}
        result["versions"] = {self.app: list(versions.values())[0] if versions else None}
        result["strategy"] = mode
        live = self.live()
        result["agents"] = pod_readiness(self.api, self.namespace, "Deployment", live.name)
        if result["agents"]["unhealthy"]:
            result["problems"].append("%d of %d pods of %s unhealthy: %s" % (
                result["agents"]["unhealthy"], result["agents"]["desired"], live.name,
                ", ".join(result["agents"]["unhealthy_pods"]) or "%d missing" % result["agents"]["missing"]))
            result["healthy"] = False
        if mode == "canary":
            current = self.canary.in_progress() or {}
            result["problems"].append("canary of %s at %s%% in progress"
                                      % (current.get("version"), current.get("percent")))
            result["healthy"] = False
            result["canary"] = dict((k, v) for k, v in current.items() if k != "deployment")
            result["canary"]["measured_share"] = self.canary.measured_share()
        if mode == "blue-green":
            result["active_color"] = self.blue_green.active_color()
        return result

    def verify_backup(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        mode = self.mode()
        if mode == "canary":
            result = self.canary.verify_backup()
        elif mode == "blue-green":
            result = self.blue_green.verify_backup(version)
        else:
            result = self.rolling_rollout.verify_backup(version)
        result["strategy"] = mode
        return result
