#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: health_gate
short_description: Decide from real signals whether a deployment may continue, must roll back, or needs a human
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Evaluates a policy of checks (the release playbook's automatic rollback triggers and post-deployment validation
    table) against real signals for O(duration) and returns a verdict C(pass), C(fail) or C(inconclusive) with the
    measured value, threshold, samples and reason of every check.
  - Signals are endpoint health checks polled concurrently over any number of targets, request error and success
    rates, a latency quantile, critical alerts from Alertmanager, the ratio of unhealthy agents (endpoints, HAProxy
    server states or Prometheus C(up)), CPU and memory usage.
  - Metrics come from Prometheus (O(source=prometheus), PromQL over the HTTP API) or from reading C(/metrics) of each
    target directly (O(source=scrape)) at least O(window) apart; rates and the quantile are computed from counters
    and histogram buckets.
  - C(fail) fails the task with a one-line summary naming the failing checks and values, and still returns every
    check's result, so C(block)/C(rescue) can roll back. C(inconclusive) (no data, too few samples, a source
    unreachable) fails closed unless O(on_inconclusive) says otherwise.
  - Sources fail closed. A check whose source (Prometheus, Alertmanager, HAProxy, the targets' metrics or health
    endpoints) failed at the check's last poll, or failed more than O(max_source_failure_ratio) of the polls that
    reached it, is C(inconclusive), naming the source and its error; it never passes on samples taken before the
    source stopped answering. A target whose health check is still failing at the end of the watch (not yet for
    the check's threshold) makes C(health_checks) inconclusive too. A breach seen before the source stopped still
    fails.
  - Values are validated. A value no real signal can have (NaN, +Inf or -Inf, a negative error rate, latency, CPU
    or memory value, a success, error or unhealthy ratio outside [0, 1]) is a failed poll whose error names the
    PromQL query or the scrape; the check cannot pass on it.
  - Thresholds, ratios, durations and scores are range-checked before anything is polled; a bad value fails the
    task with one line naming the option, the value and the allowed range. Ratios (error rate, success rate,
    unhealthy agents, CPU, memory) are fractions (V(0.05) is 5 %); a string with a percent sign (V('5%')) is
    accepted as well. Error, success and unhealthy ratios must lie in [0, 1], latency thresholds and CPU and memory
    thresholds must be > 0, C(baseline_factor) must be > 0, C(baseline_floor) >= 0, C(quantile) in (0, 1],
    windows, intervals and timeouts > 0, O(duration) >= 0 (V(0) is one evaluation).
  - 'The policy comes from O(profile) (the seed metric table, one list of checks per use) unless O(policy) is given;
    O(policy_overrides) change single checks of it. The profiles live in C(PROFILES) in
    C(plugins/module_utils/gate/policy.py), the single place where the seed''s thresholds are kept; RV(policy)
    returns the policy that was applied.'
  - Credentials embedded in O(prometheus_url), O(alertmanager_url) or O(targets) (user info, C(token=) style query
    values) are masked in every message and result.
  - O(mode=baseline) measures the baseline (for example latency P95 before a deploy) and returns it in RV(baseline)
    so the caller can store it and pass it back with O(baseline). O(mode=compare) compares a canary group with a
    baseline group over the same window, with the policy's baseline-relative checks and a Mann-Whitney U judge on
    per-interval samples (Kayenta style pass / marginal / fail per metric and a score).
  - Plain C(http://) endpoints are polled by one non-blocking event loop (1,000 loopback endpoints in well under a
    second); C(https://) endpoints go through a thread pool with certificate verification on by default.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.attributes.action_group
  - meshos.release.monitoring
  - meshos.release.health_gate.policy
  - meshos.release.health_gate.judge
  - meshos.release.health_gate.agents
attributes:
  check_mode:
    support: full
    details: The gate only reads signals; it runs the same in check mode.
  diff_mode:
    support: none
options:
  targets:
    description:
      - Base URLs of the instances (agents) to check, for example C(http://127.0.0.1:18081).
      - Health is O(health_path) below each, metrics (O(source=scrape)) O(metrics_path).
      - In O(mode=compare) these are the canary group.
    type: list
    elements: str
    default: []
  baseline_targets:
    description: Base URLs of the baseline (stable) group for O(mode=compare) with O(source=scrape).
    type: list
    elements: str
    default: []
  health_path:
    description: Health check path; a 2xx answer is healthy.
    type: str
    default: /health
  metrics_path:
    description: Prometheus metrics path of each target, read with O(source=scrape).
    type: str
    default: /metrics
  source:
    description:
      - Where the metric checks (error rate, success rate, latency, CPU, memory) read from.
      - V(scrape) reads each target's O(metrics_path) at least O(window) apart (the gate then lasts at least one
        window); V(prometheus) runs PromQL instant queries against O(prometheus_url).
    type: str
    choices: [scrape, prometheus]
    default: scrape
  prometheus_url:
    description: Prometheus base URL, for O(source=prometheus), O(agents_source=prometheus) and C(query) checks.
    type: str
  prometheus_selector:
    description: Label matchers (without braces) that select the targets' series in the default queries.
    type: str
    default: job="meshapp"
  baseline_selector:
    description: Label matchers of the baseline group for O(mode=compare) with O(source=prometheus).
    type: str
  alertmanager_url:
    description:
      - Alertmanager base URL (API v2). Without it the C(alerts) checks are skipped (an error with
        O(alerts_required=true)). Set but unreachable, they are inconclusive, never skipped.
      - Silenced and inhibited alerts are ignored.
    type: str
  validate_certs:
    description:
      - Verify TLS certificates of https endpoints, Prometheus and Alertmanager.
      - For Prometheus and Alertmanager, O(monitoring_auth.validate_certs) wins when set.
    type: bool
    default: true
  mode:
    description:
      - V(gate) judges the policy; baseline-relative checks use O(baseline).
      - V(baseline) only measures the checks that have a C(baseline_factor) and returns them in RV(baseline).
      - V(compare) judges O(targets) (canary) against O(baseline_targets) / O(baseline_selector) over the same window
        and adds the statistical judge C(canary_judge).
    type: str
    choices: [gate, baseline, compare]
    default: gate
  baseline:
    description: Baseline values by check name, as returned in RV(baseline) by an earlier O(mode=baseline) run.
    type: dict
notes:
  - The module only reads; it never changes the targets.
  - The module needs only the Python standard library on the host that runs it.
seealso:
  - name: Prometheus HTTP API
    description: Instant queries used by O(source=prometheus).
    link: https://prometheus.io/docs/prometheus/latest/querying/api/
"""

EXAMPLES = r"""
- name: Gate the rollout on the seed's default policy, scraping the instances directly
  meshos.release.health_gate:
    targets:
      - http://127.0.0.1:18081
      - http://127.0.0.1:18082
    alertmanager_url: http://127.0.0.1:19093
    window: 10s

- name: Measure the latency baseline before the deploy
  meshos.release.health_gate:
    mode: baseline
    targets: "{{ health_gate_targets }}"
    window: 30s
  register: health_gate_baseline

- name: Watch for 30 minutes after the deploy, against the stored baseline, from Prometheus
  meshos.release.health_gate:
    source: prometheus
    prometheus_url: http://127.0.0.1:19090
    alertmanager_url: http://127.0.0.1:19093
    agents_source: prometheus
    baseline: "{{ health_gate_baseline.baseline }}"
    duration: 30m
    interval: 30s
    window: 2m

- name: Canary against the stable group with the statistical judge
  meshos.release.health_gate:
    mode: compare
    targets: [http://127.0.0.1:18084]
    baseline_targets: [http://127.0.0.1:18081, http://127.0.0.1:18082]
    duration: 2m
    interval: 5s
    window: 30s

- name: Batch gate of a rolling deploy at the alert thresholds (errors > 1 %, P95 > 1 s or > 2x baseline)
  meshos.release.health_gate:
    profile: batch
    targets: "{{ batch_urls }}"
    checks: [health_checks, error_rate, latency_p95, cpu_usage, memory_usage]
    baseline: "{{ health_gate_baseline.baseline }}"
    duration: 10
    interval: 1
    window: 5

- name: Production watch that may never pass with the alerts unread
  meshos.release.health_gate:
    profile: post_deploy
    targets: "{{ health_gate_targets }}"
    alertmanager_url: http://127.0.0.1:19093
    alerts_required: true
    duration: 30m
    interval: 30s

- name: Read a Prometheus and an Alertmanager behind an authenticating TLS proxy with a private CA
  meshos.release.health_gate:
    source: prometheus
    prometheus_url: https://prometheus.example.internal
    alertmanager_url: https://alertmanager.example.internal
    agents_source: prometheus
    targets: "{{ health_gate_targets }}"
    monitoring_auth:
      bearer_token: "{{ lookup('ansible.builtin.env', 'MONITORING_TOKEN') }}"
      ca_path: /etc/pki/meshos/monitoring-ca.pem
    window: 2m

- name: Only the agents rule, from HAProxy server states, warning instead of failing on missing data
  meshos.release.health_gate:
    checks: [agents_unhealthy]
    agents_source: haproxy
    haproxy_socket: /tmp/meshos-lab/haproxy/admin.sock
    on_inconclusive: warn
"""

RETURN = r"""
verdict:
  description: C(pass), C(fail) or C(inconclusive).
  returned: always
  type: str
  sample: fail
summary:
  description: One line naming the deciding checks and their values.
  returned: always
  type: str
  sample: "health gate fail: error_rate 0.1025 > 0.05: 41/400 requests failed, 4/4 targets scraped over 5s"
checks:
  description: Result of every check of the policy (skipped ones included) and, in O(mode=compare), C(canary_judge).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Check name.
      type: str
    metric:
      description: What the check measures.
      type: str
    status:
      description: C(pass), C(fail), C(inconclusive), C(skipped) or (O(mode=baseline)) C(measured).
      type: str
    value:
      description: Last measured value.
      type: float
    threshold:
      description: The policy threshold.
      type: float
    effective_threshold:
      description: The threshold applied, after the baseline factor.
      type: float
    baseline:
      description: The baseline value used, if any.
      type: float
    samples:
      description: Number of measured samples.
      type: int
    breaches:
      description: Number of samples beyond the threshold.
      type: int
    reason:
      description: Why the check has its status, with the measured numbers (credentials masked).
      type: str
    source:
      description: The source that feeds the check (Prometheus, Alertmanager URL with credentials masked, ...).
      type: str
    polls:
      description: Number of times the check was evaluated.
      type: int
    failed_polls:
      description: Polls whose source failed or answered an impossible value.
      type: int
    last_error:
      description: The last source error of the check, or null.
      type: str
    target:
      description: The metric table's target for the check (informational), or null.
      type: float
    target_met:
      description: Whether the last value met the target; null without a target or a value.
      type: bool
    required:
      description: Whether the check may not be inconclusive (alerts with O(alerts_required)).
      type: bool
  sample:
    - name: error_rate
      metric: error_rate
      status: fail
      value: 0.1025
      threshold: 0.05
      effective_threshold: 0.05
      samples: 1
      breaches: 1
      reason: 0.1025 > 0.05
baseline:
  description: Baseline values by check name (measured in O(mode=baseline) or O(mode=compare), else O(baseline)).
  returned: always
  type: dict
  sample: {latency_p95: 0.00475}
judge:
  description:
    - Mann-Whitney U judge of O(mode=compare), the decisive C(score), C(status) (pass, fail, inconclusive), per metric
      U, p-value, medians and result; C(judgements) (every judgement, marginal ones held), C(rejudgements),
      C(thresholds) and C(traffic) (requests per group and the canary's measured share in percent).
  returned: when O(mode=compare)
  type: dict
  sample: {score: 50.0, status: fail, rejudgements: 2, traffic: {canary_share_percent: 24.8},
           metrics: [{metric: latency, result: fail, p_value: 0.0001}]}
targets:
  description: Per target health (healthy, status, error, failing_seconds) when health was polled.
  returned: always
  type: dict
  sample: {"http://127.0.0.1:18081": {healthy: true, status: 200, error: null, failing_seconds: 0.0}}
rounds:
  description: Number of evaluation rounds.
  returned: always
  type: int
  sample: 2
elapsed:
  description: Seconds the gate ran.
  returned: always
  type: float
  sample: 10.02
stopped_early:
  description: Whether O(fail_fast) ended the watch before O(duration).
  returned: always
  type: bool
  sample: false
mode:
  description: The mode that ran.
  returned: always
  type: str
  sample: gate
source:
  description: The metric source that was used.
  returned: always
  type: str
  sample: scrape
policy:
  description: The normalised policy that was applied.
  returned: always
  type: list
  elements: dict
  sample: [{name: error_rate, metric: error_rate, comparison: gt, threshold: 0.05}]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.meshos.release.plugins.module_utils.gate.loop import run_gate
from ansible_collections.meshos.release.plugins.module_utils.gate.options import health_gate_argument_spec
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import PolicyError
from ansible_collections.meshos.release.plugins.module_utils._redact import redact_text, url_secrets


def main():
    module = AnsibleModule(argument_spec=health_gate_argument_spec(), supports_check_mode=True)
    params = dict(module.params)
    # credentials in URLs are masked in everything returned, the invocation (module_args) included
    module.no_log_values.update(url_secrets([params["prometheus_url"], params["alertmanager_url"]]
                                            + list(params["targets"] or []) + list(params["baseline_targets"] or [])))
    if params["concurrency"] < 1:
        module.fail_json(msg="concurrency: %d is out of range; allowed: 1 <= concurrency (connections)"
                         % params["concurrency"])
    if params["agents_source"] == "kubernetes":
        if not params["agents_workload"]:
            module.fail_json(msg="agents_source: kubernetes needs agents_workload (kind, name, namespace)")
        from ansible_collections.meshos.release.plugins.module_utils.platform import kube_api
        if not kube_api.HAS_KUBERNETES:
            module.fail_json(msg=missing_required_lib("kubernetes"), exception=kube_api.KUBERNETES_IMPORT_ERROR)
    try:
        result = run_gate(params)
    except PolicyError as exc:
        module.fail_json(msg=redact_text(str(exc)))
    except Exception as exc:  # unexpected: keep the one-line message, add the traceback
        module.fail_json(msg=redact_text("health gate error: %s" % " ".join(str(exc).split())),
                         exception=redact_text(traceback.format_exc()))
    verdict = result["verdict"]
    if verdict == "fail":
        module.fail_json(msg=result["summary"], changed=False, **result)
    if verdict == "inconclusive":
        if params["on_inconclusive"] == "fail":
            module.fail_json(msg=result["summary"], changed=False, **result)
        if params["on_inconclusive"] == "warn":
            module.warn(result["summary"])
    module.exit_json(changed=False, msg=result["summary"], **result)


if __name__ == "__main__":
    main()
