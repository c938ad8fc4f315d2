#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback
short_description: Roll hosts behind HAProxy back to a previous release, verify the rollback target, or report status
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - O(mode=rollback) returns traffic to the previous release (or O(version)). Blue-green switches the route map back to the
    standby color (sub-second, no restart); rolling rolls C(current) back host by host (drain, switch, restart, ready,
    enable); a canary in progress is aborted (canary weight 0 at once, then the canary hosts are restored).
  - Refuses a version that is not installed, listing what is available, before touching anything.
  - O(mode=verify_backup) proves the rollback target is intact on every target (directory present, files match the
    manifest written at install). It fails only on integrity; more than O(retention) releases kept is a warning (a
    deploy that failed half-way legitimately leaves one more, and must not block its own rollback).
  - A canary in progress is always aborted by O(mode=rollback), whatever O(strategy) says, and every server gets the
    weight recorded at the start of the canary. After rolling back a failed or stopped deploy, the release that deploy
    installed is removed from the hosts where it is not current, so retention stays steady.
  - With O(platform=kubernetes), O(mode=rollback) writes the pod template of the previous revision (or of the newest
    ReplicaSet carrying O(version); absent, the error lists the available versions and revisions) back into the
    Deployment, as C(kubectl rollout undo) does, and waits for the controller to report it complete;
    O(mode=verify_backup) checks that ReplicaSet exists with an image; O(mode=status) reports the Deployment's
    version, replicas, conditions and RV(revisions).
  - With O(platform=kubernetes) the strategy to undo is read from the cluster, whatever O(strategy) says, a canary
    Deployment in progress is aborted (all traffic to the stable Deployment at once, canary removed); a Service
    (O(service)) whose selector names a color is switched back to the other color (scaled up first if it was scaled
    down; when the live color already runs O(version), a failed idle color is scaled to 0 instead); otherwise the
    Deployment goes back a revision. O(mode=verify_backup) checks the color to switch back to, or the stable
    Deployment of a canary. O(mode=status) adds C(agents) (the live Deployment's pods, unhealthy when not Ready,
    restarted or in C(CrashLoopBackOff)) and, for a canary, C(canary) (version, percent, measured share).
  - O(mode=status) reports versions per target, HAProxy state and weight, the active color, the canary share and the
    last operation. It changes nothing.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.platform
  - meshos.release.platform.hosts
  - meshos.release.platform.kubernetes
  - meshos.release.platform.ssh
  - meshos.release.attributes.action_group_platform
attributes:
  check_mode:
    support: full
    details: Returns the plan in RV(plan) and changes nothing.
  diff_mode:
    support: partial
    details: With O(platform=kubernetes), RV(diff) holds the objects' state before and after (the Deployment's version
      or revision, the Service's selected color, the canary's percent); check mode returns the changes in RV(plan).
options:
  mode:
    description: What to do.
    type: str
    choices: [rollback, verify_backup, status]
    default: rollback
  version:
    description:
      - Version to return to. Default is the previous release recorded in the state file, else the newest installed
        release older than the current one.
    type: str
  strategy:
    description: How to roll back; default is the strategy of the last deploy recorded in the state file, else C(rolling).
    type: str
    choices: [rolling, blue-green, canary]
  retention:
    description: O(mode=verify_backup) only; the number of releases a host should keep (at least 2); more is reported in
      RV(retention_warnings), never a failure.
    type: int
    default: 5
seealso:
  - module: meshos.release.rollout_strategy
"""

EXAMPLES = r"""
- name: Roll production back to 5.0.0
  meshos.release.rollback:
    environment: production
    state_dir: /var/lib/meshos-release
    haproxy_socket: /run/haproxy/admin.sock
    version: 5.0.0
    targets: "{{ fleet }}"

- name: Prove the rollback target is intact
  meshos.release.rollback:
    mode: verify_backup
    environment: production
    state_dir: /var/lib/meshos-release
    haproxy_socket: /run/haproxy/admin.sock
    targets: "{{ fleet }}"
"""

RETURN = r"""
status:
  description: C(complete), C(in_progress) or C(aborted) for O(mode=rollback).
  returned: when mode is rollback
  type: str
plan:
  description: In check mode, the steps that would run.
  returned: when mode is rollback
  type: list
  elements: dict
steps:
  description: Steps performed.
  returned: when mode is rollback
  type: list
  elements: dict
versions:
  description: Version of C(current) per target.
  returned: when mode is rollback or status
  type: dict
mixed_versions:
  description: Whether targets run different versions.
  returned: when mode is rollback or status
  type: bool
active_color:
  description: The color receiving traffic (blue-green), else null.
  returned: when mode is status or a blue-green rollback
  type: str
rollback_seconds:
  description: Time from the start of the rollback to its end (traffic fully back), in seconds.
  returned: when mode is rollback
  type: float
ok:
  description: O(mode=verify_backup); whether the rollback target is intact everywhere.
  returned: when mode is verify_backup
  type: bool
targets:
  description: O(mode=verify_backup) a dict per target (version, present, manifest, ok, problems, releases); O(mode=status) a
    list of targets (name, server, backend, color, version, state, weight, sessions).
  returned: when mode is verify_backup or status
  type: raw
canary_percent:
  description: O(mode=status); the canary share while a canary is in progress.
  returned: when mode is status
  type: int
operation:
  description: O(mode=status); the operation recorded in the state file (without its steps).
  returned: when mode is status
  type: dict
last_operation:
  description: O(mode=status); summary of the last finished operation.
  returned: when mode is status
  type: dict
state_file:
  description: The environment's state file.
  returned: always
  type: str
retention_warnings:
  description: O(mode=verify_backup); non-fatal findings such as more releases kept than O(retention) (also shown as warnings).
  returned: when mode is verify_backup
  type: list
  elements: str
healthy:
  description:
    - O(mode=status); true only when every server in traffic is ready, runs the same version, has its recorded normal
      weight (no canary weights left) and no operation is in progress or failed.
  returned: when mode is status
  type: bool
problems:
  description: O(mode=status); why RV(healthy) is false, one line each.
  returned: when mode is status
  type: list
  elements: str
normal_weights:
  description: O(mode=status); the weight of each server recorded before the last canary changed it.
  returned: when mode is status
  type: dict
removed_failed_release:
  description: O(mode=rollback); the release of the failed deploy removed per target (where it is not current).
  returned: when a failed or stopped deploy was rolled back
  type: dict
traffic:
  description:
    - What clients saw during the operation, measured from HAProxy's own counters; the same C(measured) dict as the
      C(traffic) result of M(meshos.release.rollout_strategy), which documents each field. Never a made-up 0.
  returned: when a fleet-changing operation ran (also in the failure result)
  type: dict
  sample: {measured: {source: "haproxy:/run/haproxy/admin.sock", requests: 5230, failed_requests: 0,
           downtime_seconds: 0.0, window_seconds: 14.2, samples: 57}}
restored:
  description: On failure only; per target, as the C(restored) result of M(meshos.release.rollout_strategy).
  returned: on failure
  type: list
  elements: dict
diff:
  description: O(platform=kubernetes); the Deployment's version and image (for a rollback, the revision) before and after.
  returned: when platform is kubernetes and the operation succeeded
  type: dict
stuck:
  description:
    - O(platform=kubernetes), failure result of a rollout that stopped progressing (C(ProgressDeadlineExceeded) or
      O(rollout_timeout)); C(cause), C(conditions), C(replicas), C(new_replica_set) and its C(pods) (phase, ready,
      waiting reasons, restarts).
  returned: on a stuck Kubernetes rollout
  type: dict
revision:
  description: O(platform=kubernetes); the Deployment's revision afterwards.
  returned: when platform is kubernetes
  type: int
replicas:
  description: O(platform=kubernetes); desired, current, updated, ready, available and unavailable replicas.
  returned: when platform is kubernetes
  type: dict
conditions:
  description: O(platform=kubernetes); the Deployment's conditions (type, status, reason, message).
  returned: when platform is kubernetes
  type: list
  elements: dict
revisions:
  description: O(mode=status) with O(platform=kubernetes); the Deployment's ReplicaSets, oldest first (revision, version,
    image, replicas, ready, name).
  returned: when mode is status and platform is kubernetes
  type: list
  elements: dict
to_revision:
  description: O(platform=kubernetes); the revision whose pod template was restored.
  returned: when platform is kubernetes and mode is rollback
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import (
    build_runner,
    common_argument_spec,
    common_required_if,
    measured_run,
    module_result,
    status,
)


def main():
    spec = common_argument_spec()
    spec.update(
        mode=dict(type="str", choices=["rollback", "verify_backup", "status"], default="rollback"),
        version=dict(type="str"),
        strategy=dict(type="str", choices=["rolling", "blue-green", "canary"]),
        retention=dict(type="int", default=5),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, required_if=common_required_if())
    p = module.params

    def run():
        read_only = module.check_mode or p["mode"] != "rollback"
        runner = build_runner(p, read_only, need_color=p["strategy"] == "blue-green", run_command=module.run_command)
        if p["mode"] == "verify_backup":
            return runner.verify_backup(p["version"], p["retention"])
        if p["mode"] == "status":
            return status(runner.p, runner.store)
        return measured_run(runner, p, lambda: runner.rollback(
            p["strategy"], p["version"], p["batch_size"], p["default_weight"]))

    result = module_result(module, run)
    if p["mode"] == "verify_backup":
        if not result["ok"]:
            bad = [name for name, rep in result["targets"].items() if not rep["ok"]]
            first = result["targets"][bad[0]]["problems"][0]
            module.fail_json(msg="rollback target not intact on %s: %s" % (", ".join(bad), first), **result)
        for note in result["retention_warnings"]:
            module.warn(note)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
