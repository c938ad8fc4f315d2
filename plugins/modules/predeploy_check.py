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
    shape) and C(pip-audit -f json) into counts by severity, and fails when any finding is at or above
    O(severity_threshold) (default V(high), that is CVSS 7.0 or more).
  - A test command's coverage summary (pytest-cov and C(coverage report) C(TOTAL) line, pytest-cov
    C(Total coverage:) line, istanbul/jest C(All files) row or text-summary C(Statements :) line) is returned as
    RV(checks[].coverage_percent) and RV(coverage_percent); O(min_coverage) fails a test check below it.
  - Checklist items that are not commands (code review approved, docs updated, changelog prepared, stakeholders
    notified, performance benchmarks met, compliance checks passed) pass only with recorded O(evidence).
  - Returns every result and fails with one message listing every failing check and item.
  - The module itself changes nothing, but the commands it runs are the project's own and may write files (a build
    writes its artifact, a test run its caches); it reports C(changed=false) because it changes no deployed
    state.
  - In check mode only the checks marked O(checks[].read_only) run (the seed's V(git_status) is); every other
    command is not started and is reported with RV(checks[].status=would_run) and a reason C(would run) followed by the command.
    Such a run does not clear a release (RV(passed=false)) and fails only on what it could check.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.attributes.action_group
attributes:
  check_mode:
    support: partial
    details:
      - Only the checks marked O(checks[].read_only) run (with C(GIT_OPTIONAL_LOCKS=0), so C(git status) does not
        refresh the index); the module trusts that marking. The others are reported as V(would_run), not run.
      - The checklist evidence is evaluated as usual.
  diff_mode:
    support: none
options:
  checks:
    description:
      - The command checks. When omitted, the seed's four checks run
        (V(git_status) C(git status --porcelain) expecting V(empty), read-only, V(tests) C(npm test) expecting V(all_pass),
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
      read_only:
        description:
          - The command changes nothing (like C(git status --porcelain)), so it also runs in check mode, with
            C(GIT_OPTIONAL_LOCKS=0) in its environment.
          - Leave it V(false) for builds, test runs and anything else that writes; in check mode such a check is
            reported as V(would_run) instead.
        type: bool
        default: false
      expected:
        description:
          - V(empty) rc 0 and no output on stdout; V(success) rc 0; V(all_pass) rc 0 and no failed tests in a
            recognised test summary (pytest, mocha, jest, TAP).
          - V(below_threshold) stdout is npm audit or pip-audit JSON without any finding at or above
            O(checks[].severity_threshold) (the exit code is ignored).
          - V(no_critical) is the seed's name, an alias of V(below_threshold). With the default threshold V(high) it
            now fails on high findings too (CVSS 7.0 or more), not only on critical ones; set
            O(checks[].severity_threshold=critical) for the old behaviour.
        type: str
        choices: [empty, success, all_pass, below_threshold, no_critical]
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
        description: Output format of a scan check; V(auto) detects it.
        type: str
        choices: [auto, npm, pip-audit]
        default: auto
      severity_threshold:
        description:
          - Lowest severity that fails a scan check, as a CVSS v3 severity name (V(critical) 9.0-10, V(high) 7.0-8.9,
            V(moderate) or V(medium) 4.0-6.9, V(low) 0.1-3.9, V(info)) or a CVSS base score from 0 to 10
            (for example V(7.5)). A name stands for the lowest score of its band.
          - A finding with a score is compared by the higher of its score and the lowest score of its severity name;
            a finding known only by name counts as the highest score of its band, so it fails whenever its band
            reaches the threshold.
          - Defaults to O(severity_threshold). Mutually exclusive with O(checks[].fail_on).
        type: raw
      fail_on:
        description:
          - Legacy form, kept valid; prefer O(checks[].severity_threshold). The exact severities that fail the check
            (only these, not "at or above"). When set, O(checks[].severity_threshold) and O(severity_threshold) do
            not apply to this check.
        type: list
        elements: str
        choices: [critical, high, moderate, low, info, unknown]
      unrated_severity:
        description:
          - Severity given to findings without a rating. C(pip-audit -f json) carries no severity at all, so every
            pip-audit finding is unrated.
          - The default V(high) fails closed. A finding nobody has rated blocks the release at the default threshold
            until it is fixed, rated, or this option is lowered on purpose. V(unknown) never reaches a threshold
            (explicit opt-out; still counted and reported).
        type: str
        choices: [critical, high, moderate, low, info, unknown]
        default: high
      min_coverage:
        description:
          - Lowest coverage percentage (0-100, inclusive) a check's output must report, from its coverage summary.
            Without a recognisable summary the check fails (fail closed).
          - Defaults to O(min_coverage) for V(all_pass) checks.
        type: float
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
  severity_threshold:
    description:
      - Default O(checks[].severity_threshold) of every scan check (V(below_threshold), V(no_critical)), a CVSS v3
        severity name or base score. The default V(high) fails on high and critical findings, following the seed's
        CVSS table where both call for an emergency patch release (critical within 4 hours, high within 24 hours).
    type: raw
    default: high
  min_coverage:
    description:
      - Default O(checks[].min_coverage) of every V(all_pass) check. The seed's target is more than 80 percent.
      - Unset by default because a test command does not always print coverage; when set, a test check without a
        coverage summary fails.
    type: float
  output_lines:
    description: How many trailing lines of stdout and stderr to return per check.
    type: int
    default: 20
  fail_on_error:
    description: Fail the task when a check or checklist item fails; when V(false) only report.
    type: bool
    default: true
notes:
  - C(npm audit) and C(pip-audit) exit non-zero when they find vulnerabilities; a scan check judges the JSON only.
  - npm 7+ reports counts per severity (one per vulnerable package) and no scores, so its findings are judged by
    severity name.
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
      - {name: git_status, command: git status --porcelain, expected: empty, read_only: true}
      - {name: tests, command: [python3, -m, pytest, -q, --cov=tool], expected: all_pass, timeout: 900,
         min_coverage: 80}
      - {name: security_scan, command: pip-audit -f json, expected: below_threshold, severity_threshold: 7.0}

- name: Only critical findings block (the seed's literal "no critical"), unrated ones count as moderate
  meshos.release.predeploy_check:
    chdir: /srv/src/tool
    checklist: []
    severity_threshold: critical
    checks:
      - {name: security_scan, command: pip-audit -f json, expected: no_critical, unrated_severity: moderate}
"""

RETURN = r"""
passed:
  description:
    - Whether every check and every required checklist item passed.
    - In check mode V(false) as soon as a check did not run (RV(would_run) is not empty).
  returned: always
  type: bool
failed_checks:
  description: Names of the failing checks and checklist items (checks that did not run in check mode are not listed).
  returned: always
  type: list
  elements: str
  sample: [tests, docs_updated]
would_run:
  description: Names of the checks check mode did not run (every check not marked O(checks[].read_only)).
  returned: always
  type: list
  elements: str
  sample: [tests, build, security_scan]
checks:
  description: One result per command check.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Check name., type: str, returned: always}
    command: {description: The argv that ran (or would run)., type: list, elements: str, returned: always}
    expected: {description: The expectation., type: str, returned: always}
    rc: {description: Exit code (null when it could not start or timed out and was killed by a signal)., type: int,
         returned: always}
    passed: {description: Whether the check ran and passed., type: bool, returned: always}
    status:
      description: V(passed), V(failed), or V(would_run) for a check that check mode did not run.
      type: str
      returned: always
      sample: would_run
    reason: {description: "Why it passed or failed, in one line; C(would run: <command>) when not run.", type: str,
             returned: always, sample: exit code 1}
    duration: {description: Seconds it ran., type: float, returned: always}
    timed_out: {description: Whether it was killed at its timeout., type: bool, returned: always}
    stdout_tail: {description: Last lines of stdout., type: list, elements: str, returned: always}
    stderr_tail: {description: Last lines of stderr., type: list, elements: str, returned: always}
    scanner: {description: "Detected scanner output: npm, npm6 or pip-audit.", type: str,
              returned: for scan checks with parsable output}
    vulnerabilities:
      description: Counts by severity (critical, high, moderate, low, info, unknown, total); unrated findings are
        counted under O(checks[].unrated_severity).
      type: dict
      returned: for scan checks with parsable output
      sample: {critical: 1, high: 2, moderate: 0, low: 0, info: 0, unknown: 0, total: 3}
    failing_vulnerabilities:
      description: Counts by severity of the findings at or above the threshold (those that fail the check).
      type: dict
      returned: for scan checks with parsable output
      sample: {critical: 1, high: 2, moderate: 0, low: 0, info: 0, unknown: 0, total: 3}
    threshold:
      description: The threshold applied, C(severity) and C(cvss) (lowest failing score), or the legacy C(fail_on) list.
      type: dict
      returned: for scan checks with parsable output
      sample: {severity: high, cvss: 7.0, fail_on: null}
    tests: {description: Passed and failed counts from the test summary (null when not recognised)., type: dict,
            returned: for all_pass checks that exited 0}
    coverage_percent:
      description: Coverage percent from the output's coverage summary; null when the output reports none (and for
        scan and V(empty) checks).
      type: float
      returned: always
      sample: 87.5
coverage_percent:
  description: The lowest RV(checks[].coverage_percent) reported by any check; null when no check reported coverage.
  returned: always
  type: float
  sample: 87.5
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
  description: Summary; on failure it lists every failing check with its reason, in check mode every check not run.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils.predeploy.checks import PredeployError, run_checks

SEVERITY_CHOICES = ["critical", "high", "moderate", "low", "info", "unknown"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                command=dict(type="raw", required=True),
                shell=dict(type="bool", default=False),
                read_only=dict(type="bool", default=False),
                expected=dict(type="str", default="success",
                              choices=["empty", "success", "all_pass", "below_threshold", "no_critical"]),
                timeout=dict(type="float"),
                chdir=dict(type="path"),
                env=dict(type="dict"),
                scanner=dict(type="str", default="auto", choices=["auto", "npm", "pip-audit"]),
                severity_threshold=dict(type="raw"),
                fail_on=dict(type="list", elements="str", choices=SEVERITY_CHOICES),
                unrated_severity=dict(type="str", default="high", choices=SEVERITY_CHOICES),
                min_coverage=dict(type="float"),
            ), mutually_exclusive=[("severity_threshold", "fail_on")]),
            checklist=dict(type="list", elements="str", default=[
                "code_review_approved", "docs_updated", "changelog_prepared", "stakeholders_notified",
                "performance_benchmarks_met", "compliance_checks_passed"]),
            evidence=dict(type="dict", default={}),
            chdir=dict(type="path"),
            timeout=dict(type="float", default=600),
            severity_threshold=dict(type="raw", default="high"),
            min_coverage=dict(type="float"),
            output_lines=dict(type="int", default=20),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = run_checks(p["checks"], checklist=p["checklist"], evidence=p["evidence"], chdir=p["chdir"],
                            default_timeout=p["timeout"], output_lines=p["output_lines"],
                            severity_threshold=p["severity_threshold"], min_coverage=p["min_coverage"],
                            check_mode=module.check_mode)
    except PredeployError as exc:
        module.fail_json(msg=str(exc), changed=False)
    result["changed"] = False
    # a check that check mode did not run is not a failure (it is in would_run, not in failed_checks)
    if result["failed_checks"] and p["fail_on_error"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
