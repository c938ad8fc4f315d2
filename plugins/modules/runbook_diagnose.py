#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runbook_diagnose
short_description: Judge the facts a troubleshooting runbook gathered (findings, decisions, recommendations)
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - The classification and decision rules of the role C(meshos.release.runbook), in Python
    (C(plugins/module_utils/runbook/)). One call per runbook step turns the gathered facts into a record for the report,
    findings (severity C(critical), C(warning) or C(info), step, target, message) and recommended commands.
  - Pure computation on its input; reads nothing and changes nothing.
extends_documentation_fragment:
  - meshos.release.attributes
attributes:
  check_mode:
    support: full
    details: The module only computes; it runs the same in check mode.
  diff_mode:
    support: none
options:
  step:
    description:
      - The step to judge. Assessments (C(state), C(logs), C(processes), C(resources), C(connectivity), C(health),
        C(dependencies), C(haproxy), C(audit), C(backup)) return a record and findings; decisions (C(stuck),
        C(health_plan), C(restarts), C(rollback_history), C(escalation)) also return recommendations.
    type: str
    required: true
    choices: [audit, backup, connectivity, dependencies, escalation, haproxy, health, health_plan, logs, processes,
              resources, restarts, rollback_history, state, stuck]
  facts:
    description:
      - What the role gathered for the step (registered results of C(ansible.builtin.uri), C(meshos.release.haproxy_info),
        C(meshos.release.audit_log), C(meshos.release.runbook_collect) under C(collected), the parsed state file, ...).
    type: dict
    default: {}
  settings:
    description: The role's thresholds and names the step uses (C(environment), C(after_minutes), C(cpu_warn_percent), ...).
    type: dict
    default: {}
seealso:
  - module: meshos.release.runbook_collect
"""

EXAMPLES = r"""
- name: Judge the HAProxy server states
  meshos.release.runbook_diagnose:
    step: haproxy
    facts:
      info: "{{ runbook_haproxy_info }}"
      targets: "{{ runbook_targets }}"
    settings:
      backend: be_app
  register: runbook_step
"""

RETURN = r"""
record:
  description: The step's data for the report (per instance, per host, or the decision's values).
  returned: success
  type: raw
  sample: {app1: {backend: be_app, server: app1, state: ready, status: UP}}
findings:
  description: The step's findings.
  returned: success
  type: list
  elements: dict
  sample: [{severity: critical, step: haproxy, target: app2, message: "be_app/app2 is DOWN (check L4CON, for 12s)"}]
recommendations:
  description: Recommended commands or actions (decision steps).
  returned: success
  type: list
  elements: str
  sample: ["ansible-playbook playbooks/rollback.yml -e env=production   # persistent failures on app2"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError, one_line
from ansible_collections.meshos.release.plugins.module_utils.runbook.steps import STEPS, run


def main():
    module = AnsibleModule(argument_spec=dict(
        step=dict(type="str", required=True, choices=STEPS),
        facts=dict(type="dict", default={}),
        settings=dict(type="dict", default={}),
    ), supports_check_mode=True)
    try:
        record, findings, recommendations = run(module.params["step"], module.params["facts"], module.params["settings"])
    except MeshosError as exc:
        module.fail_json(msg=one_line(exc))
    module.exit_json(changed=False, record=record, findings=findings, recommendations=recommendations)


if __name__ == "__main__":
    main()
