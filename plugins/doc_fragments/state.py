# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Where release_state and audit_log keep the environment's state, lock and audit trail
    (plugins/module_utils/state/backend.py: state_backend_options)."""

    DOCUMENTATION = r"""
options:
  state_backend:
    description:
      - Where the state, the lock and the audit trail live.
      - V(file) is a directory on the machine running the module (files C(<environment>.json), C(<environment>.lock),
        the audit log's JSON lines file).
      - V(kubernetes) keeps them in the cluster O(kubeconfig)/O(context) reach, in O(namespace), so every runner that
        reaches the cluster sees the same lock and history; ConfigMap C(meshos-state-<environment>) (state), Lease
        C(meshos-lock-<environment>) (lock, C(coordination.k8s.io/v1)), one immutable ConfigMap per audit entry plus
        a head ConfigMap. The Python library C(kubernetes) must be installed where the module runs, and the
        credentials must allow get, create, patch, update and delete on ConfigMaps and Leases in O(namespace).
      - Set it once for both modules with C(module_defaults) on C(group/meshos.release.state).
    type: str
    choices: [file, kubernetes]
    default: file
  kubeconfig:
    description:
      - Kubeconfig file for O(state_backend=kubernetes). Default is the client's own lookup (C(KUBECONFIG), then
        C(~/.kube/config)). Ignored with O(in_cluster).
    type: path
  context:
    description: Kubeconfig context to use with O(state_backend=kubernetes); default is the current context.
    type: str
  in_cluster:
    description: With O(state_backend=kubernetes), use the pod's service account instead of a kubeconfig.
    type: bool
    default: false
  namespace:
    description: Namespace of the state, lock and audit objects with O(state_backend=kubernetes).
    type: str
    default: default
attributes:
  action_group:
    description:
      - Use C(group/meshos.release.release) or C(group/meshos.release.state) in C(module_defaults) to set defaults
        for this module; the C(state) group holds the modules that share the state backend options.
    support: full
    membership:
      - meshos.release.release
      - meshos.release.state
"""
