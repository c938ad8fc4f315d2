#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: awx_approvals
short_description: Read the approval nodes of an AWX workflow job as release evidence
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Reads the approval nodes of an AWX / Automation Controller workflow job through the API v2
    (C(/api/v2/workflow_jobs/<id>/workflow_nodes/) and C(/api/v2/workflow_approvals/<id>/)) and maps each approved node,
    by its name, to the evidence names it grants (for example C(QA sign-off) grants C(qa_signoff)).
  - A denied, timed out, pending or canceled approval grants nothing, so a stage requiring it fails closed.
  - An unreachable controller, a rejected credential or an unexpected answer fails with one line naming the URL.
  - Read only; never changes anything on the controller.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.attributes.action_group
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  workflow_job_id:
    description: The workflow job whose approval nodes are read (inside AWX the extra var C(awx_workflow_job_id)).
    type: int
    required: true
  controller_host:
    description:
      - URL of the controller, for example C(https://awx.example.com).
      - If not set, the environment variable E(CONTROLLER_HOST) (or E(TOWER_HOST)) is used.
    type: str
  controller_oauthtoken:
    description:
      - OAuth2 / personal access token; takes precedence over O(controller_username) and O(controller_password).
      - If not set, the environment variable E(CONTROLLER_OAUTH_TOKEN) (or E(TOWER_OAUTH_TOKEN)) is used.
    type: str
  controller_username:
    description:
      - User for basic authentication.
      - If not set, the environment variable E(CONTROLLER_USERNAME) (or E(TOWER_USERNAME)) is used.
    type: str
  controller_password:
    description:
      - Password for basic authentication.
      - If not set, the environment variable E(CONTROLLER_PASSWORD) (or E(TOWER_PASSWORD)) is used.
    type: str
  validate_certs:
    description:
      - Verify the controller's TLS certificate.
      - If not set, the environment variable E(CONTROLLER_VERIFY_SSL) (or E(TOWER_VERIFY_SSL)) is used.
    type: bool
    default: true
  grants:
    description:
      - Approval node name (or node identifier, case-insensitive) to the evidence names an approval of it grants.
    type: dict
    default:
      QA sign-off: [qa_signoff]
      business approval: [business_approval, change_ticket]
  version:
    description: Release version; when set, every returned approval is limited to it (C(versions)).
    type: str
  timeout:
    description: Seconds to wait for each API answer.
    type: int
    default: 10
notes:
  - The credential needs read access to the workflow job (the launching user's, or an auditor's).
seealso:
  - module: meshos.release.audit_log
"""

EXAMPLES = r"""
- name: Read the approvals of the running workflow
  meshos.release.awx_approvals:
    workflow_job_id: "{{ awx_workflow_job_id }}"
    version: 5.1.0
  register: awx

- name: Map custom approval nodes
  meshos.release.awx_approvals:
    workflow_job_id: 42
    controller_host: https://awx.example.com
    controller_oauthtoken: "{{ controller_token }}"
    grants:
      Security review: [security_review]
      CAB: [business_approval, change_ticket]
"""

RETURN = r"""
approvals:
  description: Evidence name to approval record, for approved nodes only (the shape of the pipeline's approvals).
  returned: success
  type: dict
  sample:
    qa_signoff:
      by: alice
      role: AWX approval node QA sign-off
      at: "2026-12-01T10:00:00.000000Z"
      ref: https://awx.example.com/#/jobs/workflow/42
      node: QA sign-off
      workflow_job_id: 42
      approval_id: 77
      versions: [5.1.0]
nodes:
  description: Every approval node of the workflow job with its decision.
  returned: success
  type: list
  elements: dict
  contains:
    node:
      description: Name of the approval node.
      type: str
    node_id:
      description: Id of the workflow job node.
      type: int
    identifier:
      description: Identifier of the node in the workflow.
      type: str
    approval_id:
      description: Id of the workflow approval, none if the node has not run.
      type: int
    decision:
      description: V(approved), V(denied), V(timed_out), V(pending), V(not_run) or another AWX status.
      type: str
    by:
      description: Who approved or denied.
      type: str
    at:
      description: When the decision was taken (ISO 8601).
      type: str
    timed_out:
      description: Whether the approval timed out.
      type: bool
    grants:
      description: Evidence names the node grants when approved.
      type: list
      elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.meshos.release.plugins.module_utils._awx import DEFAULT_GRANTS, AwxClient, AwxError, \
    workflow_approvals


def main():
    module = AnsibleModule(
        argument_spec=dict(
            workflow_job_id=dict(type="int", required=True),
            controller_host=dict(type="str", fallback=(env_fallback, ["CONTROLLER_HOST", "TOWER_HOST"])),
            controller_oauthtoken=dict(type="str", no_log=True,
                                       fallback=(env_fallback, ["CONTROLLER_OAUTH_TOKEN", "TOWER_OAUTH_TOKEN"])),
            controller_username=dict(type="str", fallback=(env_fallback, ["CONTROLLER_USERNAME", "TOWER_USERNAME"])),
            controller_password=dict(type="str", no_log=True,
                                     fallback=(env_fallback, ["CONTROLLER_PASSWORD", "TOWER_PASSWORD"])),
            validate_certs=dict(type="bool", default=True,
                                fallback=(env_fallback, ["CONTROLLER_VERIFY_SSL", "TOWER_VERIFY_SSL"])),
            grants=dict(type="dict", default=DEFAULT_GRANTS),
            version=dict(type="str"),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        client = AwxClient(p["controller_host"], token=p["controller_oauthtoken"], username=p["controller_username"],
                           password=p["controller_password"], validate_certs=p["validate_certs"], timeout=p["timeout"])
        approvals, nodes = workflow_approvals(client, p["workflow_job_id"], grants=p["grants"], version=p["version"])
    except AwxError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(changed=False, approvals=approvals, nodes=nodes)


if __name__ == "__main__":
    main()
