#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_log
short_description: Append to, verify and query the hash-chained release audit log
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - The audit log is a JSON lines file; every entry has C(seq), C(ts), C(actor), C(action), C(version),
    C(environment), C(strategy), C(result), C(duration), C(details), C(prev_hash) and C(hash)
    (SHA-256 of the entry's canonical JSON), so editing, removing, reordering or inserting a line breaks the chain.
  - A head file (O(path) + C(.head)) records the last entry so that lines cut off the end are detected.
  - Appends hold an exclusive lock on O(path) + C(.lock); an append refuses to extend a log whose last line does
    not verify or does not match the head file (a line written without the lock is refused, naming its line).
  - A failed append (for example a full disk) leaves the log and the head file as they were and fails with the
    reason; no partial line and no temporary file stay behind.
  - With an HMAC key (O(hmac_key_file), O(hmac_key) or the E(MESHOS_AUDIT_HMAC_KEY) environment variable) every
    new entry carries C(mac), an HMAC-SHA256 of its hash, and the head file a MAC of its own, so forged entries,
    rewritten history and a truncated log with a rewritten head file fail V(verify) for anyone without the key.
    Entries written before the key was introduced stay valid (the first keyed entry chains them).
  - A keyed log verified without the key is reported as not verifiable (RV(valid=false)), never as valid; an
    append to a keyed log without the key is refused.
  - With O(state_backend=kubernetes) the log lives in the cluster, in O(namespace), named after O(path)'s file name
    without its extension (C(audit) when O(path) is not set); entry N is the immutable ConfigMap
    C(meshos-audit-<name>-<N>) holding exactly the line the file would hold, C(meshos-audit-<name>-head) is the head.
    Two runners appending at once cannot fork the chain (creating entry N succeeds for one, the other re-reads and
    appends N+1); V(verify), V(query) and the HMAC rules are the same as for the file.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.state
attributes:
  check_mode:
    support: full
    details: In check mode V(append) returns the entry it would write without writing it.
  diff_mode:
    support: full
    details: V(append) returns the new line as the diff.
options:
  path:
    description:
      - The audit log file. Its directory must exist. Required with O(state_backend=file); with V(kubernetes) its
        file name without the extension names the log in the cluster.
    type: path
  state:
    description:
      - V(append) adds one entry; V(verify) checks the whole chain; V(query) returns matching entries.
    type: str
    choices: [append, verify, query]
    default: append
  actor:
    description: Who performed the action (V(append)); defaults to the user running the module.
    type: str
  action:
    description:
      - What happened (V(append)), lower case, for example V(release_create), V(predeploy_check), V(approval),
        V(deploy), V(health_gate), V(rollback), V(watch), V(notify), V(incident).
      - With V(query), only entries with this action.
    type: str
  version:
    description: Release version; with V(query) a filter.
    type: str
  environment:
    description: Environment; with V(query) a filter.
    type: str
  strategy:
    description: Deployment strategy (V(append)).
    type: str
  result:
    description: Outcome (V(append)); with V(query) a filter.
    type: str
    choices: [success, failure, rolled_back, started, aborted, skipped, info]
  duration:
    description: Seconds the action took (V(append)).
    type: float
  details:
    description:
      - Any further JSON data (V(append)), for example C(measured), C(ticket), C(failed_checks).
      - Credentials inside URLs in string values (user info, secret query parameters, Slack webhook paths) are
        masked before the entry is written.
    type: dict
    default: {}
  fail_on_invalid:
    description: With V(verify), fail when the chain is broken (otherwise only report).
    type: bool
    default: true
  require_head:
    description: With V(verify), treat a missing head file as a break when the log has entries.
    type: bool
    default: true
  hmac_key_file:
    description:
      - File holding the HMAC key (at least 16 bytes; a trailing newline is not part of the key), for example
        written by C(openssl rand -hex 32 > key). Keep it readable only by the release user.
      - Used for V(append) (new entries get a MAC) and V(verify) (MACs checked).
      - Mutually exclusive with O(hmac_key).
    type: path
  hmac_key:
    description:
      - The HMAC key itself (at least 16 bytes), for example from Ansible Vault. Never logged.
      - If not set, the environment variable E(MESHOS_AUDIT_HMAC_KEY) is used.
      - Mutually exclusive with O(hmac_key_file).
    type: str
"""

EXAMPLES = r"""
- name: Record a deployment
  meshos.release.audit_log:
    path: /var/lib/meshos-release/audit.jsonl
    actor: "{{ release_actor }}"
    action: deploy
    version: 5.1.0
    environment: staging
    strategy: rolling
    result: success
    duration: 312.4
    details:
      # what users saw, as measured by the deploy (meshos.release.rollout_strategy RV(traffic.measured)), never a constant
      measured: "{{ deploy_result.traffic.measured }}"

- name: Verify the chain
  meshos.release.audit_log:
    path: /var/lib/meshos-release/audit.jsonl
    state: verify

- name: Record an approval in an HMAC-authenticated log
  meshos.release.audit_log:
    path: /var/lib/meshos-release/audit.jsonl
    hmac_key_file: /etc/meshos-release/audit.key
    action: approval
    version: 5.1.0
    environment: production
    result: success

- name: Verify the chain and every MAC
  meshos.release.audit_log:
    path: /var/lib/meshos-release/audit.jsonl
    hmac_key: "{{ vault_audit_hmac_key }}"
    state: verify

- name: Staging deployments of 5.1.0
  meshos.release.audit_log:
    path: /var/lib/meshos-release/audit.jsonl
    state: query
    action: deploy
    environment: staging
    version: 5.1.0
  register: staging_deploys
"""

RETURN = r"""
entry:
  description: The entry appended (or that would be appended in check mode).
  returned: state=append
  type: dict
  sample: {seq: 3, ts: "2025-10-26T10:00:00Z", actor: alice, action: deploy, version: 5.1.0, environment: staging,
           strategy: rolling, result: success, duration: 312.4, details: {}, prev_hash: "9f2c...", hash: "41ab..."}
valid:
  description: Whether the chain verifies.
  returned: state=verify
  type: bool
first_bad_line:
  description: 1-based number of the first line that does not verify (null when valid).
  returned: state=verify
  type: int
error:
  description: Why the chain does not verify, naming the line (null when valid).
  returned: state=verify
  type: str
count:
  description: Number of entries that verified (V(verify)) or matched (V(query)).
  returned: state in [verify, query]
  type: int
last_hash:
  description: Hash of the last verified entry.
  returned: state=verify
  type: str
keyed:
  description: Whether the log carries HMACs (it was written with a key).
  returned: state=verify
  type: bool
authenticated:
  description: True only when a key was configured and the chain, every MAC and the head file's MAC verified.
  returned: state=verify
  type: bool
entries:
  description: Matching entries in log order.
  returned: state=query
  type: list
  elements: dict
"""

import getpass
import json

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.meshos.release.plugins.module_utils._audit import RESULTS, AuditLog
from ansible_collections.meshos.release.plugins.module_utils._audit_chain import KEY_ENV, AuditError, load_key
from ansible_collections.meshos.release.plugins.module_utils._redact import redact_text
from ansible_collections.meshos.release.plugins.module_utils.state.backend import (
    cluster_audit_log,
    kubernetes_import_error,
    state_backend_options,
)
from ansible_collections.meshos.release.plugins.module_utils.state.store import StateError


def _redacted(value):
    """details with credentials in URLs masked (a gate's error message can carry one) before they are stored."""
    if isinstance(value, dict):
        return dict((k, _redacted(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value


def main():
    spec = state_backend_options()
    spec.update(
        path=dict(type="path"),
        state=dict(type="str", default="append", choices=["append", "verify", "query"]),
        actor=dict(type="str"),
        action=dict(type="str"),
        version=dict(type="str"),
        environment=dict(type="str"),
        strategy=dict(type="str"),
        result=dict(type="str", choices=list(RESULTS)),
        duration=dict(type="float"),
        details=dict(type="dict", default={}),
        fail_on_invalid=dict(type="bool", default=True),
        require_head=dict(type="bool", default=True),
        hmac_key_file=dict(type="path"),
        hmac_key=dict(type="str", no_log=True, fallback=(env_fallback, [KEY_ENV])),
    )
    module = AnsibleModule(
        argument_spec=spec,
        required_if=[("state", "append", ("action", "result")), ("state_backend", "file", ("path",))],
        mutually_exclusive=[("hmac_key", "hmac_key_file")],
        supports_check_mode=True,
    )
    p = module.params
    if p["state_backend"] == "kubernetes" and kubernetes_import_error() is not None:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=kubernetes_import_error())
    try:
        # an explicit key file wins over the environment fallback of hmac_key
        key = load_key(key=None if p["hmac_key_file"] else p["hmac_key"], key_file=p["hmac_key_file"])
    except AuditError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if key is not None:
        # a key read from a file is a secret too: mask it wherever it could show up
        module.no_log_values.add(key.decode("utf-8", errors="replace"))
    try:
        log = cluster_audit_log(p, key) if p["state_backend"] == "kubernetes" else AuditLog(p["path"], key=key)
        if p["state"] == "verify":
            report = log.verify(require_head=p["require_head"])
            result = dict(changed=False, valid=report["valid"], first_bad_line=report["first_bad_line"],
                          error=report["error"], count=report["entries"], last_hash=report["last_hash"],
                          keyed=report["keyed"], authenticated=report["authenticated"])
            if not report["valid"] and p["fail_on_invalid"]:
                module.fail_json(msg="audit log does not verify: %s" % report["error"], **result)
            module.exit_json(**result)
        if p["state"] == "query":
            entries = log.query(environment=p["environment"], version=p["version"], action=p["action"],
                                result=p["result"])
            module.exit_json(changed=False, entries=entries, count=len(entries))
        fields = dict(actor=p["actor"] or getpass.getuser(), action=p["action"], version=p["version"],
                      environment=p["environment"], strategy=p["strategy"], result=p["result"],
                      duration=p["duration"], details=_redacted(p["details"]))
        entry = log.preview(**fields) if module.check_mode else log.append(**fields)
    except (AuditError, StateError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    except OSError as exc:
        module.fail_json(msg="audit log %s: %s" % (p["path"], exc.strerror or exc), changed=False)
    result = dict(changed=True, entry=entry)
    if module._diff:
        result["diff"] = dict(before="", after=json.dumps(entry, sort_keys=True) + "\n",
                              before_header=log.path, after_header=log.path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
