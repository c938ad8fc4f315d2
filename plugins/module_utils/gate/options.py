# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of meshos.release.health_gate (standard library only).

Documented by the module itself (sources, targets, mode), the doc fragment meshos.release.monitoring
(``monitoring_auth``) and meshos.release.health_gate (sections ``policy``, ``judge`` and ``agents``).
"""

from __future__ import annotations

import copy
import typing as t

from ansible_collections.meshos.release.plugins.module_utils._monitoring import monitoring_auth_option

HEALTH_GATE_OPTIONS = dict(
    targets=dict(type="list", elements="str", default=[]),
    baseline_targets=dict(type="list", elements="str", default=[]),
    health_path=dict(type="str", default="/health"),
    metrics_path=dict(type="str", default="/metrics"),
    source=dict(type="str", choices=["scrape", "prometheus"], default="scrape"),
    prometheus_url=dict(type="str"),
    prometheus_selector=dict(type="str", default='job="meshapp"'),
    baseline_selector=dict(type="str"),
    alertmanager_url=dict(type="str"),
    haproxy_socket=dict(type="path"),
    haproxy_backend=dict(type="str", default="be_app"),
    agents_source=dict(type="str", choices=["endpoints", "haproxy", "kubernetes", "prometheus"], default="endpoints"),
    agents_workload=dict(type="dict", options=dict(
        kind=dict(type="str", choices=["Deployment", "DaemonSet"], default="Deployment"),
        name=dict(type="str", required=True),
        namespace=dict(type="str", default="default"),
        max_restarts=dict(type="int", default=0),
    )),
    kubeconfig=dict(type="path"),
    context=dict(type="str"),
    in_cluster=dict(type="bool", default=False),
    policy=dict(type="list", elements="dict"),
    policy_overrides=dict(type="dict"),
    checks=dict(type="list", elements="str"),
    duration=dict(type="raw", default=0),
    interval=dict(type="raw", default=5),
    window=dict(type="raw", default=30),
    timeout=dict(type="raw", default=5),
    validate_certs=dict(type="bool", default=True),
    mode=dict(type="str", choices=["gate", "baseline", "compare"], default="gate"),
    baseline=dict(type="dict"),
    on_inconclusive=dict(type="str", choices=["fail", "pass", "warn"], default="fail"),
    fail_fast=dict(type="bool", default=True),
    concurrency=dict(type="int", default=256),
    memory_limit_bytes=dict(type="int", default=1073741824),
    requests_metric=dict(type="str", default="meshapp_requests_total"),
    latency_metric=dict(type="str", default="meshapp_request_duration_seconds"),
    traffic_path=dict(type="str", default="/"),
    confidence=dict(type="float", default=0.95),
    judge_tolerance=dict(type="float", default=0.1),
    judge_min_samples=dict(type="int", default=5),
    pass_score=dict(type="float", default=75, no_log=False),
    marginal_score=dict(type="float", default=50),
    judge_rejudgements=dict(type="int", default=2),
    judge_critical=dict(type="list", elements="str", default=["error_rate"]),
    profile=dict(type="str", choices=["rollback_triggers", "post_deploy", "batch"], default="rollback_triggers"),
    alerts_required=dict(type="bool", default=False),
    max_source_failure_ratio=dict(type="float", default=0.2),
    monitoring_auth=monitoring_auth_option(),
)  # type: t.Dict[str, t.Any]


def health_gate_argument_spec() -> t.Dict[str, t.Any]:
    """A fresh argument spec (deep copy: AnsibleModule may annotate it)."""
    return copy.deepcopy(HEALTH_GATE_OPTIONS)
