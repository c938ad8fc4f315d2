# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the backend (fleet + traffic router) named by the ``platform`` option (standard library only).

A backend is one entry in ``BACKENDS``: a function ``(params, need_color, run_command) -> Platform`` that validates its
own options (ConfigError before anything is touched).
"""

from __future__ import annotations

import re
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError, Platform

RunCommand = t.Optional[t.Callable[..., t.Tuple[int, str, str]]]


def _haproxy_router(params: t.Dict[str, t.Any]) -> t.Any:
    """The HAProxy router on the machine running the module (the balancer), default_weight checked."""
    from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient
    from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy_router import HAProxyRouter

    for key in ("haproxy_socket", "targets"):
        if not params.get(key):
            raise ConfigError("platform %s needs %s" % (params.get("platform") or "hosts", key))
    # an HA pair (or more): haproxy_socket first, then every other balancer of the environment, each step on all
    sockets = [params["haproxy_socket"]]
    sockets += [s for s in params.get("haproxy_sockets") or [] if s not in sockets]
    routers = [(s, HAProxyRouter(HAProxyClient(s), route_map=params.get("route_map"), interval=params["interval"]))
               for s in sockets]
    if len(routers) == 1:
        router = routers[0][1]
    else:
        from ansible_collections.meshos.release.plugins.module_utils.platform.balancers import BalancerSetRouter
        router = BalancerSetRouter(routers)
    max_weight = router.max_weight()
    if not 1 <= params["default_weight"] <= max_weight:
        raise ConfigError("invalid default_weight %r: expected 1-%d" % (params["default_weight"], max_weight))
    return router


def _hosts(params: t.Dict[str, t.Any], need_color: bool, run_command: RunCommand) -> Platform:
    """Hosts with release directories (``hosts.HostsFleet``) behind HAProxy (``haproxy_router.HAProxyRouter``)."""
    from ansible_collections.meshos.release.plugins.module_utils.platform.hosts import HostsFleet, parse_targets

    router = _haproxy_router(params)
    max_weight = router.max_weight()
    targets = parse_targets(params["targets"], params["backend"], need_color=need_color, max_weight=max_weight)
    fleet = HostsFleet(targets, interval=params["interval"], command_timeout=max(params["ready_timeout"], 10.0),
                       run_command=run_command)
    return Platform(fleet, router)


def _kubernetes(params: t.Dict[str, t.Any], need_color: bool, run_command: RunCommand) -> Platform:
    """One app (``k8s_native.KubernetesNative``): the Deployment controller rolls, Services and routers move traffic;
    the fleet and router read the Deployment serving users."""
    from ansible_collections.meshos.release.plugins.module_utils.platform.k8s_native import KubernetesNative
    from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import HAS_KUBERNETES, KubeClient
    from ansible_collections.meshos.release.plugins.module_utils.platform.kubernetes import (
        DeploymentRollout,
        KubernetesFleet,
        KubernetesRouter,
    )

    if not params.get("deployment"):
        raise ConfigError("platform kubernetes needs deployment (the Deployment's name)")
    if not HAS_KUBERNETES:
        from ansible.module_utils.basic import missing_required_lib
        raise ConfigError(missing_required_lib("kubernetes"))
    delay = params.get("scale_down_delay")
    if delay is None:
        delay = 30.0
    # one client per run, shared by the fleet, the router and the rollouts
    api = KubeClient(kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                     in_cluster=bool(params.get("in_cluster")))

    def make(name: str) -> DeploymentRollout:
        return DeploymentRollout(api, params.get("namespace") or "default", name, container=params.get("container"),
                                 image=params.get("image"), pod_labels=params.get("pod_labels"),
                                 timeout=params.get("rollout_timeout") or 600.0,
                                 interval=max(params.get("interval") or 1.0, 0.2))

    native = KubernetesNative(api, make, params["deployment"], params.get("service") or params["deployment"],
                              preview_service=params.get("preview_service"), scale_down_delay=delay,
                              ready_timeout=params.get("ready_timeout") or 60.0,
                              canary_router=params.get("canary_router") or "replicas",
                              canary_httproute=params.get("canary_httproute"),
                              canary_ingress=params.get("canary_ingress"))
    rollout = native.rolling_rollout
    return Platform(KubernetesFleet(rollout, live=native.live), KubernetesRouter(rollout, live=native.live),
                    native=native)


def _ssh(params: t.Dict[str, t.Any], need_color: bool, run_command: RunCommand) -> Platform:
    """Instances on their own hosts, release work over SSH (``ssh_fleet.SshFleet``), HAProxy on the balancer."""
    from ansible_collections.meshos.release.plugins.module_utils.platform.ssh_fleet import SshFleet, parse_ssh_targets

    persist = params.get("ssh_control_persist")
    if persist is not None and not 0 <= persist <= 3600:
        raise ConfigError("invalid ssh_control_persist %r: expected seconds 0-3600 (0: no shared connection)"
                          % (persist,))
    python = params.get("ssh_remote_python") or "python3"
    if not re.match(r"^[A-Za-z0-9_./+-]+$", python):
        raise ConfigError("invalid ssh_remote_python %r: a command name or absolute path" % (python,))
    for key in ("ssh_connect_timeout", "ssh_command_timeout"):
        value = params.get(key)
        if value is not None and not 0 < value <= 3600:
            raise ConfigError("invalid %s %r: expected seconds, more than 0 and at most 3600" % (key, value))
    router = _haproxy_router(params)
    targets = parse_ssh_targets(params["targets"], params["backend"], need_color=need_color,
                                max_weight=router.max_weight())
    fleet = SshFleet(targets, interval=params["interval"], command_timeout=params.get("ssh_command_timeout") or 120.0,
                     connect_timeout=params.get("ssh_connect_timeout") or 5.0,
                     ready_timeout=max(params["ready_timeout"], 10.0),
                     remote_python=params.get("ssh_remote_python") or "python3",
                     control_persist=params.get("ssh_control_persist", 30.0) or 0.0)
    return Platform(fleet, router)


BACKENDS = {
    "hosts": _hosts,
    "kubernetes": _kubernetes,
    "ssh": _ssh,
}  # type: t.Dict[str, t.Callable[[t.Dict[str, t.Any], bool, RunCommand], Platform]]


def build_platform(params: t.Dict[str, t.Any], need_color: bool = False, run_command: RunCommand = None) -> Platform:
    """The backend for ``params['platform']`` (default ``hosts``); ConfigError naming an unknown one."""
    name = params.get("platform") or "hosts"
    if name not in BACKENDS:
        raise ConfigError("invalid platform %r: expected one of %s" % (name, ", ".join(sorted(BACKENDS))))
    return BACKENDS[name](params, need_color, run_command)
