# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option groups of meshos.release.health_gate; each section matches a dict in module_utils/gate/options.py."""

from __future__ import annotations


class ModuleDocFragment:
    # POLICY_OPTIONS: which checks run and how a verdict is reached
    POLICY = r"""
options:
  profile:
    description:
      - The named set of checks and thresholds from the seed's tables that the gate judges (ignored when O(policy) is
        given). Every profile has the same check names, so O(checks) and O(policy_overrides) work with each;
        explicit O(policy_overrides) win over the profile's values.
      - V(rollback_triggers) (the default, as before) is for the long watch after a deploy, where only an automatic
        rollback trigger should stop the release. health_checks failing > 120 s (trigger "health checks fail for
        > 2 minutes"); error_rate > 0.05 (trigger "error rate > 5 %"); success_rate < 0.99 (alert threshold,
        target > 99.9 %); latency_p95 > 2 x baseline with a 50 ms floor (trigger "P95 > 2x baseline"; the floor
        keeps a few-millisecond loopback baseline from failing on one slow request) or > 1.0 s (alert threshold,
        target < 500 ms); critical_alerts > 0 (trigger "any critical alert fired"); agents_unhealthy > 0.10
        (trigger "> 10 % of agents unhealthy", agent health alert < 90 %, target > 95 %); cpu_usage > 0.90 of one
        core (alert threshold, target < 80 %); memory_usage > 0.95 of O(memory_limit_bytes) (alert threshold,
        target < 85 %).
      - V(post_deploy) is the post-deployment validation table at its alert thresholds. As V(rollback_triggers) but
        error_rate > 0.01 (alert threshold "> 1 %", target < 0.1 %).
      - V(batch) is for the gate after each batch of a rolling deploy. The alert thresholds, so a release with 1-4 %
        errors or a slow P95 (> 1000 ms, or > 2 x baseline when O(baseline) is given) stops at the first batch
        instead of reaching every host before the watch starts. error_rate > 0.01, latency_p95 as above, and
        health_checks failing > 5 s (a batch gate lasts seconds, and its targets were declared ready before it).
      - The C(Target) column of the table is reported per check (RV(checks[].target), RV(checks[].target_met)) and
        named in the pass summary when missed; it never changes the verdict.
      - CPU and memory come from C(process_cpu_seconds_total) (rate) and C(process_resident_memory_bytes) (divided
        by O(memory_limit_bytes)), read from each target's O(metrics_path) or from Prometheus.
    type: str
    choices: [rollback_triggers, post_deploy, batch]
    default: rollback_triggers
  alerts_required:
    description:
      - The critical alerts check may not pass unjudged. Every C(alerts) check of the policy runs (whatever
        O(checks) says), O(alertmanager_url) is required, and an alerts check that is inconclusive (Alertmanager
        unreachable at the start, or at the end of the watch) fails the gate whatever O(on_inconclusive) says.
      - Set it for production, where a release must never go out with its alerts unread.
    type: bool
    default: false
  max_source_failure_ratio:
    description:
      - Largest fraction of a check's polls whose source may fail (unreachable, bad answer, impossible value)
        before the check is inconclusive, in [0, 1). One failed poll in five is tolerated as a blip (a scrape
        racing a restart); more means the source cannot be trusted. A failed last poll is inconclusive
        whatever this says.
    type: float
    default: 0.2
  policy:
    description:
      - The checks, replacing the profile's policy (O(profile) is then ignored). Each check is a dict with C(name), C(metric) (one of
        C(health_failing_seconds), C(error_rate), C(success_rate), C(latency), C(alerts), C(unhealthy_ratio), C(cpu),
        C(memory), C(query)), C(comparison) (C(gt), C(ge), C(lt), C(le)), C(threshold), and optionally C(target)
        (the table's target, reported only), C(window),
        C(interval), C(failure_limit) (consecutive breaches that fail the check, default 1), C(min_samples)
        (default 1), C(quantile), C(baseline_factor), C(baseline_floor), C(severities), C(matchers), C(query)
        (PromQL; C($selector), C($window) are substituted), C(enabled), C(description).
      - A check with C(baseline_factor) compares against C(factor x baseline) (at least C(baseline_floor)), and
        against C(threshold) as an absolute bound.
    type: list
    elements: dict
  policy_overrides:
    description: 'Changes to checks of the policy by name, for example C({latency_p95: {threshold: 0.5}}).'
    type: dict
  checks:
    description: Run only these checks of the policy (by name); the others are reported as skipped.
    type: list
    elements: str
  on_inconclusive:
    description:
      - What an inconclusive verdict does; V(fail) fails closed, V(warn) passes with a warning, V(pass) passes.
      - It does not apply to an inconclusive alerts check when O(alerts_required=true); that one fails.
    type: str
    choices: [fail, pass, warn]
    default: fail
  fail_fast:
    description: Stop watching as soon as a check fails.
    type: bool
    default: true
"""

    # JUDGE_OPTIONS: timing, polling and the metrics and statistics the judge reads
    JUDGE = r"""
options:
  duration:
    description:
      - How long to watch, in seconds or as a string like V(30s), V(2m), V(30m). V(0) is one evaluation (with
        O(source=scrape) rate checks still need one O(window)).
    type: raw
    default: 0
  interval:
    description: Time between evaluations (seconds or V(5s)-style string); checks may set their own.
    type: raw
    default: 5
  window:
    description: Default rate / quantile window of the checks (seconds or V(30s)-style string).
    type: raw
    default: 30
  timeout:
    description: Timeout of every single request (seconds or a string).
    type: raw
    default: 5
  concurrency:
    description: Maximum simultaneous HTTP connections while polling targets.
    type: int
    default: 256
  memory_limit_bytes:
    description: Memory that counts as 100 % for the C(memory) metric.
    type: int
    default: 1073741824
  requests_metric:
    description: Counter of requests with a C(code) label (and C(path) label, see O(traffic_path)).
    type: str
    default: meshapp_requests_total
  latency_metric:
    description: Histogram (base name) of request latency in seconds.
    type: str
    default: meshapp_request_duration_seconds
  traffic_path:
    description: Only requests with this C(path) label count for error and success rate; empty counts all.
    type: str
    default: /
  confidence:
    description: Confidence level of the Mann-Whitney U judge in O(mode=compare).
    type: float
    default: 0.95
  judge_tolerance:
    description: Relative margin by which the canary median may exceed the baseline median before the judge fails it.
    type: float
    default: 0.1
  judge_min_samples:
    description: Per-interval samples needed per group and metric before the judge decides.
    type: int
    default: 5
  pass_score:
    description: Judge score (0-100) at or above which the canary passes.
    type: float
    default: 75
  marginal_score:
    description:
      - Judge score at or above which a canary that did not pass is marginal. A marginal judgement holds the gate
        and judges again over a fresh interval (O(judge_rejudgements)); still marginal after the last one fails.
        Below O(marginal_score) fails at once.
      - The score is 100 x the mean over the judged metrics (error rate, P95 latency) of pass 1, marginal 0.5, fail 0.
    type: float
    default: 50
  judge_rejudgements:
    description:
      - How often a marginal canary is judged again (each time over a fresh O(interval) x O(judge_min_samples)) before
        it fails. V(0) fails the first marginal judgement.
    type: int
    default: 2
  judge_critical:
    description:
      - Judged metrics (V(error_rate), V(latency)) whose failure fails the canary whatever the score (Kayenta's
        critical metrics). The policy's absolute limits (the seed's thresholds) fail it too, without a hold.
    type: list
    elements: str
    default: [error_rate]
"""

    # where the agents_unhealthy check reads the agents (gate/measure.py; kubernetes: gate/sources.kubernetes_agents)
    AGENTS = r"""
options:
  haproxy_socket:
    description: HAProxy runtime API unix socket, for O(agents_source=haproxy).
    type: path
  haproxy_backend:
    description: HAProxy backend whose servers are the agents, for O(agents_source=haproxy).
    type: str
    default: be_app
  agents_source:
    description:
      - Where the unhealthy agents ratio comes from.
      - V(endpoints) polls O(health_path) of every target concurrently; V(haproxy) reads the server states of
        O(haproxy_backend) (servers in MAINT do not count); V(prometheus) uses C(1 - avg(up{selector}));
        V(kubernetes) reads the pods of O(agents_workload).
    type: str
    choices: [endpoints, haproxy, kubernetes, prometheus]
    default: endpoints
  agents_workload:
    description:
      - For O(agents_source=kubernetes), the Deployment or DaemonSet whose pods are the agents. A pod counts as
        unhealthy when it is not Ready, waits in C(CrashLoopBackOff) or restarted more than O(agents_workload.max_restarts)
        times; a desired pod that does not exist counts as unhealthy too. A Deployment's agents are the pods of the
        ReplicaSets it owns (a canary Deployment beside it is not counted).
    type: dict
    suboptions:
      kind:
        description: The workload's kind.
        type: str
        choices: [Deployment, DaemonSet]
        default: Deployment
      name:
        description: The workload's name.
        type: str
        required: true
      namespace:
        description: The workload's namespace.
        type: str
        default: default
      max_restarts:
        description: Restarts a pod may have had and still count as healthy.
        type: int
        default: 0
  kubeconfig:
    description:
      - Kubeconfig file for O(agents_source=kubernetes). Default is the client's own lookup (C(KUBECONFIG), then
        C(~/.kube/config)). Ignored with O(in_cluster).
    type: path
  context:
    description: Kubeconfig context for O(agents_source=kubernetes); default is the current context.
    type: str
  in_cluster:
    description: With O(agents_source=kubernetes), use the pod's service account instead of a kubeconfig.
    type: bool
    default: false
requirements:
  - The Python library C(kubernetes) where the module runs, for O(agents_source=kubernetes) only.
"""
