#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_state
short_description: Per-environment release state and the environment lock
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Reads and writes C(ROOT/<environment>.json) (current version, previous version, strategy, active color, weight,
    in-progress step, or any other JSON values); writes are atomic (temporary file, fsync, rename).
  - Takes and releases C(ROOT/<environment>.lock) so two releases of one environment cannot run at once. The lock
    records holder, pid, host, since and ttl. Taking a lock held by someone else fails with
    C(environment X is locked by WHO since WHEN (pid P on HOST)).
  - A stale lock (its pid is dead on this host, or it is older than its ttl) is only taken over or released with
    O(force=true); a live lock is never taken over.
  - With O(state_backend=kubernetes) the state is the C(release) key of ConfigMap C(meshos-state-<environment>) and the
    lock is Lease C(meshos-lock-<environment>) in O(namespace) (holder identity, acquire/renew time, lease duration =
    O(ttl)); taking and releasing it are conditional on the Lease's resourceVersion, so two runners never both win.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.state
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  root:
    description:
      - Directory holding the state and lock files; created by V(set) and V(lock). Required with
        O(state_backend=file), ignored with V(kubernetes).
    type: path
  environment:
    description: Environment name (letters, digits, C(_), C(.), C(-)).
    type: str
    required: true
  operation:
    description:
      - V(get) returns the state and the lock; V(set) merges O(values) into the state; V(lock) takes the lock;
        V(unlock) releases it.
    type: str
    choices: [get, set, lock, unlock]
    default: get
  values:
    description: Values to store (V(set)), for example C(current_version), C(previous_version), C(strategy),
      C(active_color), C(weight), C(step).
    type: dict
    default: {}
  replace:
    description: With V(set), replace the whole state by O(values) instead of merging.
    type: bool
    default: false
  holder:
    description: Who takes or releases the lock (V(lock), V(unlock)), for example C(alice/release-5.1.0).
    type: str
  pid:
    description:
      - Process id recorded in the lock (V(lock)). Defaults to the outermost C(ansible-playbook) process running
        this module on this host, or none (then only the ttl makes the lock stale).
    type: int
  ttl:
    description: Seconds after which the lock counts as stale (V(lock)).
    type: int
    default: 14400
  reason:
    description: Free text recorded in the lock (V(lock)).
    type: str
  force:
    description: Take over (V(lock)) or release (V(unlock)) a stale lock held by someone else.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Lock production for this release
  meshos.release.release_state:
    root: /var/lib/meshos-release/state
    environment: production
    operation: lock
    holder: "{{ release_actor }}/{{ version }}"

- name: Record the new version
  meshos.release.release_state:
    root: /var/lib/meshos-release/state
    environment: production
    operation: set
    values:
      current_version: 5.1.0
      previous_version: 5.0.1
      strategy: rolling
      step: done

- name: Release the lock
  meshos.release.release_state:
    root: /var/lib/meshos-release/state
    environment: production
    operation: unlock
    holder: "{{ release_actor }}/{{ version }}"

- name: Lock a cluster environment with a Lease every runner sees
  meshos.release.release_state:
    state_backend: kubernetes
    kubeconfig: ~/.kube/config
    namespace: meshos-release
    environment: production
    operation: lock
    holder: "{{ release_actor }}/{{ version }}"
"""

RETURN = r"""
state:
  description: The environment's state after the task (empty when never set).
  returned: always
  type: dict
  sample: {environment: production, current_version: 5.1.0, previous_version: 5.0.1, updated_at: "2025-10-28T09:00:00Z"}
lock:
  description: The lock after the task (null when unlocked).
  returned: always
  type: dict
  sample: {environment: production, holder: alice/5.1.0, pid: 4242, host: deploy1, since: "2025-10-28T08:55:00Z",
           ttl: 14400, reason: null}
stale:
  description: Why the current lock is stale (null when live or unlocked).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.meshos.release.plugins.module_utils.state.backend import (
    build_backend,
    kubernetes_import_error,
    state_backend_options,
)
from ansible_collections.meshos.release.plugins.module_utils.state.store import (
    LockedError,
    StateError,
    StateStore,
    playbook_pid,
)


def main():
    spec = dict(
        root=dict(type="path"),
        environment=dict(type="str", required=True),
        operation=dict(type="str", default="get", choices=["get", "set", "lock", "unlock"]),
        values=dict(type="dict", default={}),
        replace=dict(type="bool", default=False),
        holder=dict(type="str"),
        pid=dict(type="int"),
        ttl=dict(type="int", default=14400),
        reason=dict(type="str"),
        force=dict(type="bool", default=False),
    )
    spec.update(state_backend_options())
    module = AnsibleModule(
        argument_spec=spec,
        required_if=[("operation", "lock", ("holder",)), ("operation", "unlock", ("holder",)),
                     ("state_backend", "file", ("root",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["state_backend"] == "kubernetes" and kubernetes_import_error() is not None:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=kubernetes_import_error())
    changed = False
    diff = None
    try:
        store = StateStore(build_backend(p, p["root"]), p["environment"], check_mode=module.check_mode)
        if p["operation"] == "set":
            changed, before, after = store.set(p["values"], replace=p["replace"])
            diff = dict(before=before, after=after)
        elif p["operation"] == "lock":
            pid = p["pid"] if p["pid"] is not None else playbook_pid()
            changed, before, after = store.lock(p["holder"], pid=pid, ttl=p["ttl"], force=p["force"],
                                                reason=p["reason"])
            diff = dict(before=before or {}, after=after)
        elif p["operation"] == "unlock":
            changed, before = store.unlock(p["holder"], force=p["force"])
            diff = dict(before=before or {}, after={})
        state = store.get()
        if module.check_mode and p["operation"] == "set":
            state = diff["after"]
        lock = store.read_lock()
        if module.check_mode and p["operation"] == "lock":
            lock = diff["after"]
        elif module.check_mode and p["operation"] == "unlock":
            lock = None
        stale = store.stale_reason(lock) if lock else None
    except LockedError as exc:
        module.fail_json(msg=str(exc), changed=False, locked=True)
    except StateError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except OSError as exc:
        module.fail_json(msg="state directory %s: %s" % (p["root"], exc.strerror or exc), changed=False)
    result = dict(changed=changed, state=state, lock=lock, stale=stale)
    if module._diff and diff is not None and changed:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
