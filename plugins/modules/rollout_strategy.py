#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_strategy
short_description: Roll a release out to hosts behind HAProxy or a Kubernetes Deployment at zero downtime
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Deploys O(version) to the O(targets) with one of three strategies, steering traffic through the HAProxy runtime API.
  - B(rolling) drains each batch in HAProxy (waits for its sessions to end), installs the artifact into
    C(releases/<version>) (checksum verified, manifest written), switches C(current) atomically (temp symlink + rename),
    runs the restart command, waits for C(ready_url) and for HAProxy to report the server UP, re-enables it.
  - B(blue-green) installs on the idle color, validates it through its own backend, then switches the route map key
    C(active) to the idle color's backend; the old color keeps running for an instant rollback.
  - B(canary) deploys O(canary_count) hosts and gives them O(initial_traffic) percent by server weights; O(canary_action)
    C(advance) goes to the next of O(steps), C(promote) finishes, C(abort) sets the canary weight to 0 and restores the
    stable version.
  - Every step is recorded before/after in the environment's state file; re-running resumes an interrupted operation.
  - All input, the HAProxy socket, backends, servers and version availability are validated before anything changes.
  - Paths are local to the machine running the module (the lab, or shared storage); see O(targets).
  - With O(platform=kubernetes), B(rolling) uses one patch that sets the container image (O(image)) and the
    C(meshos.release/version) label and annotation on the Deployment's pod template; the Deployment controller replaces
    the pods (its C(maxSurge)/C(maxUnavailable)) and the module waits for the Deployment's own status (observed
    generation, updated = ready = available = desired replicas). C(ProgressDeadlineExceeded) or O(rollout_timeout)
    fails the task as STUCK (RV(stuck)); M(meshos.release.rollback) then restores the previous revision.
  - With O(platform=kubernetes), B(blue-green) writes the version into the idle one of C(<deployment>-blue) /
    C(<deployment>-green), waits for its rollout, requires every pod Ready without restarts and every replica a ready
    endpoint of O(preview_service), then switches the selector of O(service) in one JSON patch (O(phase=prepare) stops
    before the switch, O(phase=switch) only switches). A faulty idle color is scaled to 0 and traffic does not move.
    The old color keeps its pods for O(scale_down_delay) seconds.
  - With O(platform=kubernetes), B(canary) runs C(<deployment>-canary) beside the stable Deployment; the share is
    the replica ratio, or exact weights of an HTTPRoute or an NGINX canary Ingress (O(canary_router)), written and
    read back (RV(router_weights)). Each step waits for the canary's pods and fails when one is not Ready, restarted
    or in C(CrashLoopBackOff) (RV(agents)). O(canary_count), O(batch_size) and O(default_weight) do not apply.
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
    details: Returns the plan (hosts, actions, weights) in RV(plan) and changes nothing.
  diff_mode:
    support: partial
    details: With O(platform=kubernetes), RV(diff) holds the objects' state before and after (rolling, the Deployment's
      version and image; blue-green, the Service's selected color and each color's version; canary, the canary's
      version and percent); check mode returns the object changes in RV(plan).
options:
  version:
    description: Release version to deploy, for example C(5.1.0). Optional for O(canary_action=advance), C(promote), C(abort).
    type: str
  strategy:
    description: Deployment strategy.
    type: str
    choices: [rolling, blue-green, canary]
    default: rolling
  artifact:
    description:
      - Local path of C(<name>-<version>.tar.gz) to install. Without it, O(version) must already be installed on every
        target that changes (the error lists what is available).
    type: path
  checksum:
    description: Expected sha256 of O(artifact) (hex, optionally prefixed C(sha256:)). Checked before any host changes.
    type: str
  manifest:
    description:
      - Release manifest C(release-<version>.json) (written by M(meshos.release.release_version)). Its C(version) must be
        O(version) and its C(artifacts) entry named like O(artifact) must carry the artifact's sha256; with
        O(public_key) its detached signature C(<manifest>.sig) is verified (C(ssh-keygen -Y verify)). A mismatch fails
        before any host changes, naming the file and both hashes.
    type: path
  public_key:
    description: SSH public key that must have signed O(manifest). Requires O(manifest).
    type: path
  require_checksum:
    description:
      - Refuse to install an O(artifact) that neither O(checksum) nor O(manifest) verifies. Set it on every
        production path so an unchecked artifact can never be installed.
    type: bool
    default: false
  require_signature:
    description: Refuse to install an O(artifact) unless O(manifest) is given and its signature verifies with O(public_key).
    type: bool
    default: false
  phase:
    description:
      - Blue-green only. C(full) prepares the idle color and switches. C(prepare) installs, restarts and enables the
        idle color in its own backend and returns its URLs in RV(idle_targets) without switching, so a full health
        gate can judge it first; C(switch) then moves traffic (it refuses unless the idle color was prepared with
        O(version) and is ready).
    type: str
    choices: [full, prepare, switch]
    default: full
  max_batches:
    description: Rolling only; stop after this many batches (C(0) = all). Re-run to continue from the state file.
    type: int
    default: 0
  keep_releases:
    description: Releases kept per host after a complete deploy (C(0) disables pruning); the current and previous are never deleted.
    type: int
    default: 5
  keep_previous_color:
    description: Blue-green only; keep the old color running (C(true)) or put its servers into maintenance after the switch.
    type: bool
    default: true
  canary_action:
    description: Canary only. C(start) deploys the canary hosts at O(initial_traffic); C(advance) goes to the next step
      (C(100) promotes); C(promote) finishes on every host; C(abort) gives the canary weight 0 and restores it.
    type: str
    choices: [start, advance, promote, abort]
    default: start
  initial_traffic:
    description: Canary only; percentage of requests for the canary hosts at start (1-99).
    type: int
    default: 5
  steps:
    description: Canary only; increasing percentages after O(initial_traffic), ending at 100.
    type: list
    elements: int
    default: [10, 25, 50, 100]
  canary_count:
    description: Canary only; how many targets (the first ones listed) run the canary.
    type: int
    default: 1
notes:
  - On a failure at any step (install, restart, readiness, HAProxy) every target the operation changed is switched back
    to the release it ran before, restarted and re-enabled (weights back to their recorded values) before the task
    fails; a target that cannot be restored is put into maintenance. The failure result lists it in RV(restored) and
    the release the failed deploy installed is removed from those hosts so retention stays steady.
  - The artifact is installed on every target that changes before the first one leaves traffic, so a full disk or an
    unwritable release directory fails with the fleet untouched.
  - The HAProxy configuration must route with C(use_backend %[str(active),map(<route_map>,be_app)]), have health checks
    (C(option httpchk GET /ready)) and should use C(option redispatch), C(retries) and C(retry-on) so no request fails
    while an instance restarts.
seealso:
  - module: meshos.release.rollback
"""

EXAMPLES = r"""
- name: Rolling deploy of 5.1.0, one host at a time
  meshos.release.rollout_strategy:
    environment: production
    state_dir: /var/lib/meshos-release
    haproxy_socket: /run/haproxy/admin.sock
    version: 5.1.0
    artifact: /srv/artifacts/meshapp-5.1.0.tar.gz
    checksum: "sha256:0b5c..."
    targets:
      - name: app1
        release_root: /srv/meshapp/app1
        restart_command: systemctl restart meshapp@app1
        ready_url: http://10.0.0.11:8081/ready

- name: Canary at 5 percent
  meshos.release.rollout_strategy:
    environment: production
    state_dir: /var/lib/meshos-release
    haproxy_socket: /run/haproxy/admin.sock
    strategy: canary
    canary_action: start
    initial_traffic: 5
    version: 5.1.0
    targets: "{{ fleet }}"
"""

RETURN = r"""
status:
  description: C(complete), C(in_progress) (batches or canary steps remain), C(prepared) (blue-green O(phase=prepare)),
    C(aborted), or C(failed) in the failure result.
  returned: always
  type: str
  sample: complete
plan:
  description: In check mode, the steps that would run (target, action, version/weight/color).
  returned: always
  type: list
  elements: dict
steps:
  description: Steps performed, each with target, action and changed.
  returned: always
  type: list
  elements: dict
versions:
  description: Version of C(current) per target afterwards.
  returned: always
  type: dict
  sample: {app1: 5.1.0, app2: 5.0.0}
mixed_versions:
  description: Whether targets run different versions (a rolling deploy in progress).
  returned: always
  type: bool
state_file:
  description: The environment's state file.
  returned: always
  type: str
strategy:
  description: Strategy used.
  returned: success
  type: str
active_color:
  description: Blue-green only; the color receiving traffic afterwards (O(platform=kubernetes), the color the Service's
    selector names).
  returned: when strategy is blue-green
  type: str
  sample: green
canary_percent:
  description: Canary only; the canary's share of requests in percent.
  returned: when strategy is canary
  type: int
  sample: 5
weights:
  description: Canary only; the HAProxy weights set on canary and stable servers.
  returned: when a canary step set weights
  type: dict
  sample: {canary: 16, stable: 100}
pruned:
  description: Releases removed per target by retention.
  returned: success
  type: dict
traffic:
  description:
    - What clients saw during the operation, measured from HAProxy's own counters (C(show stat)) sampled every
      O(measure_interval) seconds. C(measured.source) is C(haproxy:<socket>); C(requests) and C(failed_requests) are
      the increase of C(req_tot) and C(hrsp_5xx) on the frontends; C(downtime_seconds) is the time a live backend had
      no ready server; C(window_seconds) the measured span; C(econ), C(eresp), C(backend_5xx), C(server_5xx), C(retries),
      C(redispatches) the live backends' counters.
    - "When nothing could be measured, C(measured) is C({source: null, reason: <why>}); never a made-up 0."
  returned: when a fleet-changing operation ran (also in the failure result)
  type: dict
  sample: {measured: {source: "haproxy:/run/haproxy/admin.sock", requests: 5230, failed_requests: 0,
           downtime_seconds: 0.0, window_seconds: 14.2, samples: 57}}
restored:
  description:
    - On failure only (in the failure result); per target changed by the operation, whether it was switched back
      and restarted on the version it ran before (C(restored)), or taken out of traffic (C(out_of_traffic)), with the error.
  returned: on failure
  type: list
  elements: dict
artifact_check:
  description: How O(artifact) was verified (C(sha256), C(checksum_verified), C(manifest_verified), C(signature_verified)).
  returned: when an artifact was given
  type: dict
phase:
  description: Blue-green only; the phase that ran.
  returned: when strategy is blue-green
  type: str
idle_color:
  description: Blue-green O(phase=prepare); the prepared color (not yet receiving traffic).
  returned: when phase is prepare
  type: str
idle_backend:
  description: Blue-green O(phase=prepare); the HAProxy backend of the prepared color.
  returned: when phase is prepare
  type: str
idle_targets:
  description: Blue-green O(phase=prepare); name, server, backend, ready_url and status_url of each prepared target.
  returned: when phase is prepare
  type: list
  elements: dict
diff:
  description: O(platform=kubernetes); the objects' state before and after (see the C(diff_mode) attribute).
  returned: when platform is kubernetes and the operation succeeded
  type: dict
router_weights:
  description: O(platform=kubernetes), canary with O(canary_router) C(gateway) or C(nginx); C(stable) and C(canary)
    weights as read back from the HTTPRoute or the canary Ingress after writing them.
  returned: when platform is kubernetes and strategy is canary
  type: dict
measured_share:
  description: O(platform=kubernetes), canary; ready pods of each track (C(canary_ready), C(stable_ready)) and the
    canary's share of them in percent (C(replica_share_percent)), read from the Deployments' status.
  returned: when platform is kubernetes, strategy is canary and the canary is in progress
  type: dict
agents:
  description: O(platform=kubernetes), canary; the canary's pods (desired, pods, ready, unhealthy, unhealthy_ratio,
    unhealthy_pods); a pod is unhealthy when not Ready, in C(CrashLoopBackOff) or restarted.
  returned: when platform is kubernetes, strategy is canary and the canary is in progress
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
  returned: when platform is kubernetes and strategy is rolling
  type: int
replicas:
  description: O(platform=kubernetes); rolling, the desired, current, updated, ready, available and unavailable
    replicas; canary, the C(canary) and C(stable) replicas of the step.
  returned: when platform is kubernetes and strategy is rolling
  type: dict
conditions:
  description: O(platform=kubernetes); the Deployment's conditions (type, status, reason, message).
  returned: when platform is kubernetes and strategy is rolling
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import (
    build_runner,
    common_argument_spec,
    common_required_if,
    measured_run,
    module_result,
)


def main():
    spec = common_argument_spec()
    spec.update(
        version=dict(type="str"),
        strategy=dict(type="str", choices=["rolling", "blue-green", "canary"], default="rolling"),
        artifact=dict(type="path"),
        checksum=dict(type="str"),
        manifest=dict(type="path"),
        public_key=dict(type="path"),
        require_checksum=dict(type="bool", default=False),
        require_signature=dict(type="bool", default=False),
        phase=dict(type="str", choices=["full", "prepare", "switch"], default="full"),
        max_batches=dict(type="int", default=0),
        keep_releases=dict(type="int", default=5),
        keep_previous_color=dict(type="bool", default=True),
        canary_action=dict(type="str", choices=["start", "advance", "promote", "abort"], default="start"),
        initial_traffic=dict(type="int", default=5),
        steps=dict(type="list", elements="int", default=[10, 25, 50, 100]),
        canary_count=dict(type="int", default=1),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, required_by={"public_key": "manifest"},
                           required_if=common_required_if())
    p = module.params
    if p["strategy"] != "canary" and not p["version"]:
        module.fail_json(msg="version is required for strategy %s" % p["strategy"])
    if p["max_batches"] < 0:
        module.fail_json(msg="invalid max_batches %d: expected 0 (all) or more" % p["max_batches"])
    if p["keep_releases"] < 0 or p["keep_releases"] == 1:
        module.fail_json(msg="invalid keep_releases %d: expected 0 (no pruning) or >= 2" % p["keep_releases"])
    if p["phase"] != "full" and p["strategy"] != "blue-green":
        module.fail_json(msg="phase %s is for strategy blue-green, not %s" % (p["phase"], p["strategy"]))

    def deploy():
        runner = build_runner(p, module.check_mode, need_color=p["strategy"] == "blue-green",
                              run_command=_runner_command(module))
        if p["strategy"] == "rolling":
            return measured_run(runner, p, lambda: runner.rolling(
                p["version"], p["artifact"], p["checksum"], p["batch_size"], p["max_batches"], p["keep_releases"]))
        if p["strategy"] == "blue-green":
            return measured_run(runner, p, lambda: runner.blue_green(
                p["version"], p["artifact"], p["checksum"], p["keep_previous_color"], p["keep_releases"], p["phase"]))
        return measured_run(runner, p, lambda: runner.canary(
            p["canary_action"], p["version"], p["artifact"], p["checksum"], p["initial_traffic"], p["steps"],
            p["canary_count"], p["default_weight"], p["batch_size"]))

    module.exit_json(**module_result(module, deploy))


def _runner_command(module):
    """restart_command and ssh-keygen runner: binary-safe stdin for signature checks."""
    def run(argv, data=None):
        if data is None:
            return module.run_command(argv)
        return module.run_command(argv, data=data, binary_data=True)
    return run


if __name__ == "__main__":
    main()
