#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: predeploy_check
short_description: Run the release playbook's pre-deployment checks and checklist
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Runs the seed's B(Pre-Deployment Checks) (git status, tests, build, security scan), each with a timeout,
    and records rc, duration and the tail of its output.
  - The security scan parses C(npm audit --json) (npm 7+ C(metadata.vulnerabilities) and the older C(advisories)
    shape) and C(pip-audit -f json) into counts by severity.
  - Checklist items that are not commands (code review approved, docs updated, changelog prepared, stakeholders
    notified, performance benchmarks met, compliance checks passed) pass only with recorded O(evidence).
  - Returns every result and fails with one message listing every failing check and item.
  - The module itself changes nothing; the commands it runs are the project's own and run in check mode too.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.attributes.INFO_MODULE
options:
  checks:
    description:
      - The command checks. When omitted, the seed's four checks run
        (V(git_status) C(git status --porcelain) expecting V(empty), V(tests) C(npm test) expecting V(all_pass),
        V(build) C(npm run build) expecting V(success), V(security_scan) C(npm audit --json) expecting V(no_critical)).
      - Give the full list to configure a project (for example C(pytest) and C(pip-audit -f json)).
    type: list
    elements: dict
    suboptions:
      name:
        description: Unique name of the check.
        type: str
        required: true
      command:
        description:
          - The command, an argv list or a string split like a shell would (no shell features unless O(checks[].shell)).
        type: raw
        required: true
      shell:
        description: Run the command through C(/bin/sh -c).
        type: bool
        default: false
      expected:
        description:
          - V(empty) rc 0 and no output on stdout; V(success) rc 0; V(all_pass) rc 0 and no failed tests in a
            recognised test summary (pytest, mocha, jest, TAP); V(no_critical) stdout is npm audit or pip-audit
            JSON without findings of a severity in O(checks[].fail_on) (the exit code is ignored).
        type: str
        choices: [empty, success, all_pass, no_critical]
        default: success
      timeout:
        description: Seconds before the command and its process group are killed; defaults to O(timeout).
        type: float
      chdir:
        description: Working directory; defaults to O(chdir).
        type: path
      env:
        description: Extra environment variables.
        type: dict
      scanner:
        description: Output format for V(no_critical); V(auto) detects it.
        type: str
        choices: [auto, npm, pip-audit]
        default: auto
      fail_on:
        description: Severities that fail a V(no_critical) check.
        type: list
        elements: str
        choices: [critical, high, moderate, low, info, unknown]
        default: [critical]
      unrated_severity:
        description:
          - Severity given to findings without one (every pip-audit finding). pip-audit findings only fail the
            check when this severity is in O(checks[].fail_on).
        type: str
        choices: [critical, high, moderate, low, info, unknown]
        default: unknown
  checklist:
    description: Checklist items that need recorded evidence.
    type: list
    elements: str
    default: [code_review_approved, docs_updated, changelog_prepared, stakeholders_notified,
              performance_benchmarks_met, compliance_checks_passed]
  evidence:
    description:
      - Recorded evidence, item name -> dictionary with C(by) (who), C(at) (ISO 8601 date or time) and C(ref)
        (ticket, link). An item without C(by) and a valid C(at) fails.
    type: dict
    default: {}
  chdir:
    description: Default working directory of the checks (the project checkout).
    type: path
  timeout:
    description: Default timeout of a check, in seconds.
    type: float
    default: 600
  output_lines:
    description: How many trailing lines of stdout and stderr to return per check.
    type: int
    default: 20
  fail_on_error:
    description: Fail the task when a check or checklist item fails; when V(false) only report.
    type: bool
    default: true
notes:
  - C(npm audit) and C(pip-audit) exit non-zero when they find vulnerabilities; V(no_critical) judges the JSON only.
"""

EXAMPLES = r"""
- name: Run the seed's checks in the project checkout
  meshos.release.predeploy_check:
    chdir: /srv/src/meshos
    evidence:
      code_review_approved: {by: alice, at: "2025-10-24T10:00:00Z", ref: "PR-1234"}
      docs_updated: {by: bob, at: "2025-10-24", ref: "docs!88"}
      changelog_prepared: {by: bob, at: "2025-10-24", ref: CHANGELOG_v5.1.0.md}
      stakeholders_notified: {by: carol, at: "2025-10-24", ref: "mail 2025-10-24"}
      performance_benchmarks_met: {by: dave, at: "2025-10-24", ref: "bench run 77"}
      compliance_checks_passed: {by: erin, at: "2025-10-24", ref: "GRC-12"}

- name: A Python project
  meshos.release.predeploy_check:
    chdir: /srv/src/tool
    checklist: [code_review_approved]
    evidence: "{{ release_evidence }}"
    checks:
      - {name: git_status, command: git status --porcelain, expected: empty}
      - {name: tests, command: [python3, -m, pytest, -q], expected: all_pass, timeout: 900}
      - {name: security_scan, command: pip-audit -f json, expected: no_critical, unrated_severity: high,
         fail_on: [critical, high]}
"""

RETURN = r"""
passed:
  description: Whether every check and every required checklist item passed.
  returned: always
  type: bool
failed_checks:
  description: Names of the failing checks and checklist items.
  returned: always
  type: list
  elements: str
  sample: [tests, docs_updated]
checks:
  description: One result per command check.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Check name., type: str, returned: always}
    command: {description: The argv that ran., type: list, elements: str, returned: always}
    expected: {description: The expectation., type: str, returned: always}
    rc: {description: Exit code (null when it could not start or timed out and was killed by a signal)., type: int,
         returned: always}
    passed: {description: Whether the check passed., type: bool, returned: always}
    reason: {description: "Why it passed or failed, in one line.", type: str, returned: always, sample: exit code 1}
    duration: {description: Seconds it ran., type: float, returned: always}
    timed_out: {description: Whether it was killed at its timeout., type: bool, returned: always}
    stdout_tail: {description: Last lines of stdout., type: list, elements: str, returned: always}
    stderr_tail: {description: Last lines of stderr., type: list, elements: str, returned: always}
    scanner: {description: "Detected scanner output: npm, npm6 or pip-audit.", type: str, returned: for no_critical checks}
    vulnerabilities:
      description: Counts by severity (critical, high, moderate, low, info, unknown, total).
      type: dict
      returned: for no_critical checks with parsable output
      sample: {critical: 1, high: 2, moderate: 0, low: 0, info: 0, unknown: 0, total: 3}
    tests: {description: Passed and failed counts from the test summary (null when not recognised)., type: dict,
            returned: for all_pass checks that exited 0}
checklist:
  description: One result per checklist item (and per extra evidence item, with RV(checklist[].required=false)).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Item name., type: str, returned: always}
    required: {description: Whether the item is in O(checklist)., type: bool, returned: always}
    passed: {description: Whether valid evidence is recorded., type: bool, returned: always}
    reason: {description: One line., type: str, returned: always}
    evidence: {description: The evidence given., type: dict, returned: always}
msg:
  description: Summary; on failure it lists every failing check with its reason.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils._predeploy import PredeployError, run_checks

SEVERITY_CHOICES = ["critical", "high", "moderate", "low", "info", "unknown"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                command=dict(type="raw", required=True),
                shell=dict(type="bool", default=False),
                expected=dict(type="str", default="success", choices=["empty", "success", "all_pass", "no_critical"]),
                timeout=dict(type="float"),
                chdir=dict(type="path"),
                env=dict(type="dict"),
                scanner=dict(type="str", default="auto", choices=["auto", "npm", "pip-audit"]),
                fail_on=dict(type="list", elements="str", default=["critical"], choices=SEVERITY_CHOICES),
                unrated_severity=dict(type="str", default="unknown", choices=SEVERITY_CHOICES),
            )),
            checklist=dict(type="list", elements="str", default=[
                "code_review_approved", "docs_updated", "changelog_prepared", "stakeholders_notified",
                "performance_benchmarks_met", "compliance_checks_passed"]),
            evidence=dict(type="dict", default={}),
            chdir=dict(type="path"),
            timeout=dict(type="float", default=600),
            output_lines=dict(type="int", default=20),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = run_checks(p["checks"], checklist=p["checklist"], evidence=p["evidence"], chdir=p["chdir"],
                            default_timeout=p["timeout"], output_lines=p["output_lines"])
    except PredeployError as exc:
        module.fail_json(msg=str(exc), changed=False)
    result["changed"] = False
    if not result["passed"] and p["fail_on_error"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
