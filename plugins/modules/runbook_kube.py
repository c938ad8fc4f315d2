#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runbook_kube
short_description: Diagnose a Deployment for the troubleshooting runbooks, restart its unhealthy pods, scale it
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - The Kubernetes side of the role C(meshos.release.runbook). O(action=diagnose) reads the Deployment's conditions and
    replica counts, its ReplicaSets, the pods' states, the events of all of them, the tail of the container logs (where
    the cluster serves them) and the requests of a pod against the nodes' allocatable, and classifies why a rollout does
    not progress (C(insufficient_resources), C(unschedulable), C(image_pull), C(crash_loop), C(config_error),
    C(readiness_failing), C(pending), C(unknown)).
  - O(action=restart_unhealthy) deletes the pods that are not Ready, waiting (for example C(CrashLoopBackOff)) or
    restarting, so the ReplicaSet replaces them; O(action=scale) sets the Deployment's replicas.
  - Uses the official C(kubernetes) Python client through the collection's Kubernetes backend client.
extends_documentation_fragment:
  - meshos.release.attributes
attributes:
  check_mode:
    support: full
    details: O(action=restart_unhealthy) and O(action=scale) report what they would delete or set and change nothing.
  diff_mode:
    support: none
requirements:
  - kubernetes (the Python client)
options:
  action:
    description: What to do.
    type: str
    choices: [diagnose, restart_unhealthy, scale]
    default: diagnose
  kubeconfig:
    description: Kubeconfig file; default is the client's own lookup (C(KUBECONFIG), then C(~/.kube/config)).
    type: path
  context:
    description: Kubeconfig context.
    type: str
  in_cluster:
    description: Use the pod's service account instead of a kubeconfig.
    type: bool
    default: false
  namespace:
    description: Namespace of the Deployment.
    type: str
    default: default
  deployment:
    description: Name of the Deployment.
    type: str
    required: true
  container:
    description: The release container (log tails); default the pod template's first container.
    type: str
  replicas:
    description: The replicas to set with O(action=scale).
    type: int
  log_lines:
    description: Lines of each container log tail.
    type: int
    default: 20
seealso:
  - module: meshos.release.runbook_diagnose
  - module: meshos.release.rollback
"""

EXAMPLES = r"""
- name: Diagnose the Deployment
  meshos.release.runbook_kube:
    kubeconfig: ~/.kube/config
    namespace: mesh
    deployment: meshapp
  register: runbook_kube_diagnosis

- name: Restart the unhealthy pods
  meshos.release.runbook_kube:
    action: restart_unhealthy
    namespace: mesh
    deployment: meshapp
"""

RETURN = r"""
diagnosis:
  description:
    - O(action=diagnose). C(complete), C(stuck) (C(ProgressDeadlineExceeded)), C(cause) and C(evidence) (null when
      complete), C(unhealthy_pods), C(findings) (severity, step, target, message).
  returned: success
  type: dict
  sample: {complete: false, stuck: true, cause: readiness_failing, evidence: "3 of 3 new pods Running but not Ready: ...",
           unhealthy_pods: [meshapp-7c9d-abcde], findings: []}
snapshot:
  description:
    - What was read - C(deployment), C(revision), C(version), C(replicas), C(conditions), C(progress_deadline_seconds),
      C(replica_sets), C(pods) (name, phase, ready, waiting, restarts), C(new_pods), C(events), C(logs) (per pod, lines
      or error), C(capacity) (nodes, allocatable, requested, free, pod_requests, more_pods_fit; cpu in cores, memory
      in bytes).
  returned: success
  type: dict
deleted:
  description: O(action=restart_unhealthy), the pods deleted (or that would be).
  returned: when action is restart_unhealthy
  type: list
  elements: str
scaled:
  description: O(action=scale), C(before) and C(after) replicas.
  returned: when action is scale
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError, one_line
from ansible_collections.meshos.release.plugins.module_utils.runbook.kube_run import ARGUMENT_SPEC, HAS_KUBERNETES, run


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_if=[("action", "scale", ("replicas",))])
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"))
    try:
        result = run(module.params, module.check_mode)
    except MeshosError as exc:
        module.fail_json(msg=one_line(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
