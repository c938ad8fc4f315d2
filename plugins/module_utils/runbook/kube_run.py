# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module runbook_kube's spec and its one call: a diagnosis, a restart of the unhealthy pods, or a scale."""

from __future__ import annotations

import copy

from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import HAS_KUBERNETES, KubeClient
from ansible_collections.meshos.release.plugins.module_utils.platform.options import KUBERNETES_OPTIONS
from ansible_collections.meshos.release.plugins.module_utils.runbook import kube

__all__ = ["ARGUMENT_SPEC", "HAS_KUBERNETES", "run"]

ARGUMENT_SPEC = dict((k, copy.deepcopy(KUBERNETES_OPTIONS[k]))
                     for k in ("kubeconfig", "context", "in_cluster", "namespace", "container"))
ARGUMENT_SPEC.update(
    action=dict(type="str", choices=["diagnose", "restart_unhealthy", "scale"], default="diagnose"),
    deployment=dict(type="str", required=True),
    replicas=dict(type="int"),
    log_lines=dict(type="int", default=20),
)


def run(params, check_mode, api=None):
    api = api or KubeClient(kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                            in_cluster=bool(params.get("in_cluster")))
    reader = kube.KubeRunbookReader(api, params.get("namespace") or "default", params["deployment"],
                                    container=params.get("container"), log_lines=params.get("log_lines") or 20)
    if params["action"] == "scale":
        scaled = reader.scale(int(params["replicas"]), check_mode)
        return {"changed": scaled["before"] != scaled["after"], "scaled": scaled}
    snapshot = reader.snapshot()
    diagnosis = kube.diagnose(snapshot)
    result = {"changed": False, "diagnosis": diagnosis, "snapshot": kube.public(snapshot)}
    if params["action"] == "restart_unhealthy":
        deleted = reader.delete_pods(diagnosis["unhealthy_pods"], check_mode)
        result.update(changed=bool(deleted), deleted=deleted)
    return result
