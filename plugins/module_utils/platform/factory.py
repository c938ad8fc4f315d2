# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the backend (fleet + traffic router) named by the ``platform`` option (standard library only).

A backend is one entry in ``BACKENDS``: a function ``(params, need_color, run_command) -> Platform`` that validates its
own options (ConfigError before anything is touched).
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError, Platform

RunCommand = t.Optional[t.Callable[..., t.Tuple[int, str, str]]]


def _hosts(params: t.Dict[str, t.Any], need_color: bool, run_command: RunCommand) -> Platform:
    """Hosts with release directories (``hosts.HostsFleet``) behind HAProxy (``haproxy_router.HAProxyRouter``)."""
    from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient
    from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy_router import HAProxyRouter
    from ansible_collections.meshos.release.plugins.module_utils.platform.hosts import HostsFleet, parse_targets

    for key in ("haproxy_socket", "targets"):
        if not params.get(key):
            raise ConfigError("platform hosts needs %s" % key)
    router = HAProxyRouter(HAProxyClient(params["haproxy_socket"]), route_map=params.get("route_map"),
                           interval=params["interval"])
    max_weight = router.max_weight()
    if not 1 <= params["default_weight"] <= max_weight:
        raise ConfigError("invalid default_weight %r: expected 1-%d" % (params["default_weight"], max_weight))
    targets = parse_targets(params["targets"], params["backend"], need_color=need_color, max_weight=max_weight)
    fleet = HostsFleet(targets, interval=params["interval"], command_timeout=max(params["ready_timeout"], 10.0),
                       run_command=run_command)
    return Platform(fleet, router)


def _kubernetes(params: t.Dict[str, t.Any], need_color: bool, run_command: RunCommand) -> Platform:
    """One Deployment (``kubernetes.DeploymentRollout``): the controller rolls, the fleet and router are read-only."""
    from ansible_collections.meshos.release.plugins.module_utils.platform.kubernetes import (
        HAS_KUBERNETES,
        DeploymentRollout,
        KubeClient,
        KubernetesFleet,
        KubernetesRouter,
    )

    if not params.get("deployment"):
        raise ConfigError("platform kubernetes needs deployment (the Deployment's name)")
    if need_color:
        raise ConfigError("platform kubernetes does not support blue-green yet (supported strategies: rolling)")
    if not HAS_KUBERNETES:
        from ansible.module_utils.basic import missing_required_lib
        raise ConfigError(missing_required_lib("kubernetes"))
    # one client per run, shared by the fleet, the router and the rollout
    api = KubeClient(kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                     in_cluster=bool(params.get("in_cluster")))
    rollout = DeploymentRollout(api, params.get("namespace") or "default", params["deployment"],
                                container=params.get("container"), image=params.get("image"),
                                pod_labels=params.get("pod_labels"), timeout=params.get("rollout_timeout") or 600.0,
                                interval=max(params.get("interval") or 1.0, 0.2))
    return Platform(KubernetesFleet(rollout), KubernetesRouter(rollout), native=rollout)


BACKENDS = {
    "hosts": _hosts,
    "kubernetes": _kubernetes,
}  # type: t.Dict[str, t.Callable[[t.Dict[str, t.Any], bool, RunCommand], Platform]]


def build_platform(params: t.Dict[str, t.Any], need_color: bool = False, run_command: RunCommand = None) -> Platform:
    """The backend for ``params['platform']`` (default ``hosts``); ConfigError naming an unknown one."""
    name = params.get("platform") or "hosts"
    if name not in BACKENDS:
        raise ConfigError("invalid platform %r: expected one of %s" % (name, ", ".join(sorted(BACKENDS))))
    return BACKENDS[name](params, need_color, run_command)
