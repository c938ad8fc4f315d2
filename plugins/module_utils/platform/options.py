# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module options, one dict per group; each matches a section of ``plugins/doc_fragments/platform.py``.

==================  ==========================================  ==========================================
dict                doc fragment                                used by
==================  ==========================================  ==========================================
ROLLOUT_OPTIONS     meshos.release.platform                     rollout_strategy, rollback
HAPROXY_OPTIONS     meshos.release.platform.haproxy             rollout_strategy, rollback, haproxy_info
HOSTS_OPTIONS       meshos.release.platform.hosts               rollout_strategy, rollback
KUBERNETES_OPTIONS  meshos.release.platform.kubernetes          rollout_strategy, rollback
SSH_OPTIONS         meshos.release.platform.ssh                 rollout_strategy, rollback (platform: ssh)
==================  ==========================================  ==========================================

rollout_strategy and rollback take ``haproxy_socket`` and ``targets`` as optional (documented in the hosts section):
they are required only with ``platform: hosts`` and ``platform: ssh`` (``HOSTS_REQUIRED_IF``, ``SSH_REQUIRED_IF``).

A new backend adds its own group (and fragment section) and an entry in ``factory.BACKENDS``.
"""

from __future__ import annotations

import copy
import typing as t

# the operation: state file, timeouts, batching, measurement; the backend is chosen by ``platform``
ROLLOUT_OPTIONS = dict(
    platform=dict(type="str", default="hosts"),
    environment=dict(type="str", required=True),
    state_dir=dict(type="path", required=True),
    # where the operation section of the state store lives (plugins/module_utils/state/backend.py)
    state_backend=dict(type="str", default="file", choices=["file", "kubernetes"]),
    drain_timeout=dict(type="float", default=30.0),
    ready_timeout=dict(type="float", default=30.0),
    interval=dict(type="float", default=0.2),
    batch_size=dict(type="str", default="1"),
    forks=dict(type="int", default=1),
    default_weight=dict(type="int", default=100),
    measure_interval=dict(type="float", default=0.25),
)  # type: t.Dict[str, t.Any]

# the HAProxy runtime API (the hosts backend's traffic router)
HAPROXY_OPTIONS = dict(
    haproxy_socket=dict(type="path", required=True),
)  # type: t.Dict[str, t.Any]

# the hosts backend: instances with release directories behind HAProxy backends
HOSTS_OPTIONS = dict(
    backend=dict(type="str", default="be_app"),
    route_map=dict(type="path"),
    targets=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        server=dict(type="str"),
        backend=dict(type="str"),
        color=dict(type="str", choices=["blue", "green"]),
        release_root=dict(type="str", required=True),
        restart_command=dict(type="str", required=True),
        ready_url=dict(type="str", required=True),
        status_url=dict(type="str"),
        weight=dict(type="int"),
        host=dict(type="str"),
        port=dict(type="int"),
        # platform ssh only: how the controller reaches the target's host (the inventory's ansible_* facts)
        ssh_host=dict(type="str"),
        ssh_port=dict(type="int"),
        ssh_user=dict(type="str"),
        ssh_private_key_file=dict(type="path"),
        ssh_known_hosts_file=dict(type="path"),
        ssh_common_args=dict(type="str"),
    )),
    haproxy_frontends=dict(type="list", elements="str"),
    # the environment's other balancers (an HA pair): every traffic step on all of them (platform/balancers.py)
    haproxy_sockets=dict(type="list", elements="str"),
)  # type: t.Dict[str, t.Any]

# the ssh backend: per-host work on each target's host over the system ssh/scp (targets carry the ssh_* facts)
SSH_OPTIONS = dict(
    ssh_connect_timeout=dict(type="float", default=5.0),
    ssh_command_timeout=dict(type="float", default=120.0),
    ssh_remote_python=dict(type="str", default="python3"),
    ssh_control_persist=dict(type="float", default=30.0),
)  # type: t.Dict[str, t.Any]


# the kubernetes backend: one app's Deployments (rolling, blue-green colors, canary), its Service and routers
KUBERNETES_OPTIONS = dict(
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    in_cluster=dict(type="bool", default=False),
    namespace=dict(type="str", default="default"),
    deployment=dict(type="str"),
    container=dict(type="str"),
    image=dict(type="str"),
    pod_labels=dict(type="dict"),
    rollout_timeout=dict(type="float", default=600.0),
    service=dict(type="str"),
    preview_service=dict(type="str"),
    scale_down_delay=dict(type="float", default=30.0),
    canary_router=dict(type="str", choices=["replicas", "gateway", "nginx"], default="replicas"),
    canary_httproute=dict(type="str"),
    canary_ingress=dict(type="str"),
)  # type: t.Dict[str, t.Any]

HOSTS_REQUIRED_IF = [("platform", "hosts", ("haproxy_socket", "targets"))]
SSH_REQUIRED_IF = [("platform", "ssh", ("haproxy_socket", "targets"))]
KUBERNETES_REQUIRED_IF = [("platform", "kubernetes", ("deployment",))]


def merged(*groups: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
    """A fresh argument spec from option groups (deep copies: AnsibleModule may annotate them)."""
    spec = {}  # type: t.Dict[str, t.Any]
    for group in groups:
        spec.update(copy.deepcopy(group))
    return spec


def rollout_argument_spec() -> t.Dict[str, t.Any]:
    """Options shared by rollout_strategy and rollback (documented by the platform fragments: hosts, ssh, kubernetes)."""
    spec = merged(ROLLOUT_OPTIONS, HAPROXY_OPTIONS, HOSTS_OPTIONS, SSH_OPTIONS, KUBERNETES_OPTIONS)
    spec["platform"]["choices"] = ["hosts", "kubernetes", "ssh"]
    for key in ("haproxy_socket", "targets"):
        spec[key]["required"] = False
    return spec


def rollout_required_if() -> t.List[t.Any]:
    """``required_if`` of rollout_strategy and rollback: each backend's own required options."""
    return list(HOSTS_REQUIRED_IF + SSH_REQUIRED_IF + KUBERNETES_REQUIRED_IF)
