# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing the state backend from module options: ``state_backend: file|kubernetes`` plus the kubernetes platform
group's connection options (kubeconfig, context, in_cluster, namespace), documented by ``meshos.release.state``."""

from __future__ import annotations

import copy

from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError
from ansible_collections.meshos.release.plugins.module_utils.platform.options import KUBERNETES_OPTIONS
from ansible_collections.meshos.release.plugins.module_utils.state.file import FileBackend
from ansible_collections.meshos.release.plugins.module_utils.state.store import StateError

BACKENDS = ("file", "kubernetes")
# the connection part of the kubernetes platform group (the Deployment options are the rollout's business)
CONNECTION_KEYS = ("kubeconfig", "context", "in_cluster", "namespace")

__all__ = ["BACKENDS", "build_backend", "cluster_audit_log", "kubernetes_import_error", "state_backend_options"]


def state_backend_options():
    """``state_backend`` and the kubernetes connection options, fresh copies for an argument spec."""
    spec = dict(state_backend=dict(type="str", default="file", choices=list(BACKENDS)))
    for key in CONNECTION_KEYS:
        spec[key] = copy.deepcopy(KUBERNETES_OPTIONS[key])
    return spec


def kubernetes_import_error():
    """Why the ``kubernetes`` library cannot be imported, or None when it can (imports it).

    The client takes seconds to import: only a kubernetes backend imports it, never a file-backend run."""
    from ansible_collections.meshos.release.plugins.module_utils.platform import kube_api
    return None if kube_api.HAS_KUBERNETES else (kube_api.KUBERNETES_IMPORT_ERROR or "kubernetes is not installed")


def kube_client(params):
    if kubernetes_import_error() is not None:
        from ansible.module_utils.basic import missing_required_lib
        raise StateError(missing_required_lib("kubernetes"))
    from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import KubeClient
    try:
        return KubeClient(kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                          in_cluster=bool(params.get("in_cluster")))
    except ConfigError as exc:  # the loader's reason, already one line
        raise StateError(str(exc))


def build_backend(params, root):
    """The backend ``params`` ask for; ``root`` is the file backend's directory (ignored by kubernetes)."""
    kind = params.get("state_backend") or "file"
    if kind == "file":
        if not root:
            raise StateError("state_backend file needs a directory (root or state_dir), got %r" % (root,))
        return FileBackend(root)
    if kind == "kubernetes":
        from ansible_collections.meshos.release.plugins.module_utils.state.kube import KubeCalls, KubernetesBackend
        return KubernetesBackend(KubeCalls(kube_client(params)), params.get("namespace") or "default")
    raise StateError("state_backend %r is not allowed: use one of %s" % (kind, ", ".join(BACKENDS)))


def cluster_audit_log(params, key=None):
    """audit_log's log in the cluster (state.kube_audit), named after the file name of ``path``."""
    from ansible_collections.meshos.release.plugins.module_utils.state.kube import KubeCalls
    from ansible_collections.meshos.release.plugins.module_utils.state.kube_audit import ClusterAuditLog, log_name
    return ClusterAuditLog(KubeCalls(kube_client(params)), params.get("namespace") or "default",
                           log_name(params.get("path")), key=key)
