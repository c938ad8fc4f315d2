#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_report
short_description: Release report with charts (HTML and Markdown) and delivery metrics from the audit log
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Reads the hash-chained audit log (M(meshos.release.audit_log)) and computes the delivery metrics per environment
    and per period (deployment frequency, mean time to deploy, rollback rate, change failure rate, time to restore),
    returned as RV(dora).
  - With O(version), also writes the release report to O(output_dir) - C(release-report-<version>.html), a
    self-contained page whose charts (request rate, error rate, P95 latency) come from Prometheus range queries
    (C(/api/v1/query_range)) over the release window, with every audit entry of the release (deploys, gates,
    canary steps, approvals, rollbacks) drawn over them; plus the success metrics, the delivery metrics, the
    timeline and the retrospective - and C(release-report-<version>.md), the same content for the ticket.
  - The release window runs from the release's first to its last audit entry, widened by O(padding) seconds.
    A chart whose query fails or returns nothing says "not measured" with the reason; no value is made up.
  - The charts are drawn with the C(plotly) Python library and plotly.js is embedded in the page, so it opens
    without network access. Runs on the controller (delegate the task to C(localhost)).
requirements:
  - plotly (Python library, for the HTML page)
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.attributes.action_group
  - meshos.release.monitoring
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written; C(changed) tells whether the files would change.
  diff_mode:
    support: none
options:
  audit_log:
    description: Path of the audit log on the controller.
    type: path
    required: true
  version:
    description: Release to report on; empty returns only the delivery metrics and writes nothing.
    type: str
    default: ""
  environment:
    description: Limit the success and delivery metrics to this environment; empty means all of them.
    type: str
    default: ""
  output_dir:
    description: Directory receiving the report files (created when missing). Required with O(version).
    type: path
  prometheus_url:
    description: Base URL of the Prometheus HTTP API; empty draws no charts (every chart reads "not measured").
    type: str
    default: ""
  validate_certs:
    description: Verify the TLS certificate of O(prometheus_url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each range query.
    type: float
    default: 10.0
  queries:
    description:
      - PromQL per chart, replacing the defaults written for the lab's meshapp metrics. C({rate_window}) is replaced
        by O(rate_window); other braces must be doubled.
      - C(request_rate) default C(sum(rate(meshapp_requests_total[{rate_window}]))).
      - C(error_rate) default the share of requests answered 5xx (0 when no request failed).
      - C(latency_p95) default C(histogram_quantile(0.95, ...)) over C(meshapp_request_duration_seconds_bucket).
    type: dict
    default: {}
    suboptions:
      request_rate:
        description: Requests per second.
        type: str
      error_rate:
        description: Share of requests that failed, 0..1.
        type: str
      latency_p95:
        description: 95th percentile latency in seconds.
        type: str
  rate_window:
    description: Range of the C(rate()) in the default queries, a Prometheus duration such as C(1m) or C(5s).
    type: str
    default: 1m
  step:
    description: Seconds between chart samples; 0 picks about 300 samples over the window.
    type: int
    default: 0
  padding:
    description: Seconds added before the first and after the last audit entry of the release.
    type: int
    default: 60
  period:
    description: Period of the delivery metrics; C(all) gives one row per environment for the whole range.
    type: str
    choices: [day, week, month, all]
    default: week
  since:
    description: Only audit entries at or after this ISO 8601 time count for the delivery metrics.
    type: str
  until:
    description: Only audit entries before this ISO 8601 time count for the delivery metrics.
    type: str
  retrospective:
    description: Retrospective text (Markdown) appended to both documents; role C(meshos.release.report) renders it.
    type: str
    default: ""
  html:
    description: Write the HTML page (needs C(plotly)); C(false) writes only the Markdown.
    type: bool
    default: true
seealso:
  - module: meshos.release.audit_log
  - module: meshos.release.health_gate
"""

EXAMPLES = r"""
- name: Write the report of release 5.1.0 beside its notes
  meshos.release.release_report:
    audit_log: /tmp/meshos-lab/release/audit.jsonl
    version: 5.1.0
    output_dir: /tmp/meshos-lab/release/5.1.0
    prometheus_url: http://127.0.0.1:19090
  delegate_to: localhost

- name: Delivery metrics of production per month
  meshos.release.release_report:
    audit_log: /tmp/meshos-lab/release/audit.jsonl
    environment: production
    period: month
  delegate_to: localhost
  register: report_delivery
"""

RETURN = r"""
dora:
  description: Delivery metrics per environment and period, from the audit log only (null where nothing was recorded).
  returned: always
  type: dict
  contains:
    period:
      description: The period asked for.
      type: str
    groups:
      description:
        - One row per environment and period, with C(environment), C(period), C(start), C(end), C(days),
          C(deployments), C(successful), C(failed_changes), C(refused) (aborted before any change), C(rollbacks),
          C(deployment_frequency_per_day), C(mean_time_to_deploy_seconds), C(rollback_rate) and
          C(change_failure_rate) (percent), C(time_to_restore_seconds), C(restores_measured), C(unrestored).
      type: list
      elements: dict
  sample: {period: week, groups: [{environment: production, period: 2026-W49, deployments: 4, change_failure_rate: 25.0}]}
dora_markdown:
  description: RV(dora) as a Markdown table.
  returned: always
  type: str
html_path:
  description: The HTML page (null without O(version) or with O(html=false)).
  returned: always
  type: str
  sample: /tmp/meshos-lab/release/5.1.0/release-report-5.1.0.html
markdown_path:
  description: The Markdown document (null without O(version)).
  returned: always
  type: str
outcome:
  description: C(success), C(rolled_back), C(failed), C(aborted), C(in progress) or C(not deployed).
  returned: when O(version) is set
  type: str
window:
  description: Release window of the charts, C(start) and C(end) (UTC) and C(step_seconds).
  returned: when O(version) is set
  type: dict
charts:
  description: Per chart C(query), C(source) (null when not measured), C(reason), C(points), C(max), C(mean).
  returned: when O(version) is set
  type: dict
events:
  description: The timeline, one item per audit entry of the release (C(seq), C(ts), C(kind), C(label), C(text), ...).
  returned: when O(version) is set
  type: list
  elements: dict
metrics:
  description: The Success Metrics table of the release (as filter C(meshos.release.release_metrics) returns it).
  returned: when O(version) is set
  type: dict
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.meshos.release.plugins.module_utils._audit import AuditError, AuditLog
from ansible_collections.meshos.release.plugins.module_utils._dora import DoraError, dora_markdown, dora_metrics
from ansible_collections.meshos.release.plugins.module_utils._fsutil import write_atomic
from ansible_collections.meshos.release.plugins.module_utils._monitoring import (
    MonitoringAuthError,
    check_url,
    monitoring_auth_option,
    normalize_auth,
    request_options,
)
from ansible_collections.meshos.release.plugins.module_utils import _release_report as rr


def _same(path, content):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read() == content
    except (IOError, OSError):
        return False


def main():
    module = AnsibleModule(
        argument_spec=dict(
            audit_log=dict(type="path", required=True),
            version=dict(type="str", default=""),
            environment=dict(type="str", default=""),
            output_dir=dict(type="path"),
            prometheus_url=dict(type="str", default=""),
            validate_certs=dict(type="bool", default=True),
            monitoring_auth=monitoring_auth_option(),
            timeout=dict(type="float", default=10.0),
            queries=dict(type="dict", default={}, options=dict(
                request_rate=dict(type="str"), error_rate=dict(type="str"), latency_p95=dict(type="str"))),
            rate_window=dict(type="str", default="1m"),
            step=dict(type="int", default=0),
            padding=dict(type="int", default=60),
            period=dict(type="str", default="week", choices=["day", "week", "month", "all"]),
            since=dict(type="str"),
            until=dict(type="str"),
            retrospective=dict(type="str", default=""),
            html=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    version = p["version"].strip()
    if version and not p["output_dir"]:
        module.fail_json(msg="output_dir is required with version %r" % version)
    for name, low in (("step", 0), ("padding", 0)):
        if p[name] < low:
            module.fail_json(msg="%s %r is not allowed: use a whole number >= %d" % (name, p[name], low))
    if not p["timeout"] > 0:
        module.fail_json(msg="timeout %r is not allowed: use a number > 0" % p["timeout"])
    if not p["rate_window"].strip() or not all(c.isalnum() for c in p["rate_window"].strip()):
        module.fail_json(msg="rate_window %r is not allowed: use a Prometheus duration such as 1m or 30s"
                         % p["rate_window"])
    if version and p["html"] and not rr.HAS_PLOTLY:
        module.fail_json(msg=missing_required_lib("plotly"), exception=rr.PLOTLY_IMPORT_ERROR)
    if not os.path.exists(p["audit_log"]):
        module.fail_json(msg="audit_log %s does not exist" % p["audit_log"])
    try:
        entries = AuditLog(p["audit_log"]).entries()
        dora = dora_metrics(entries, period=p["period"], environment=p["environment"] or None,
                            since=p["since"], until=p["until"])
    except (AuditError, DoraError) as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    result = {"changed": False, "dora": dora, "dora_markdown": dora_markdown(dora), "html_path": None,
              "markdown_path": None}
    if not version:
        module.exit_json(**result)
    queries = dict((k, v) for k, v in (p["queries"] or {}).items() if v)
    for name, text in queries.items():
        try:
            text.format(rate_window="1m")
        except (KeyError, IndexError, ValueError) as exc:
            module.fail_json(msg="queries.%s %r is not allowed: only {rate_window} may be in braces, double others "
                             "(%s)" % (name, text, exc))
    try:
        auth = normalize_auth(p["monitoring_auth"], validate_certs=p["validate_certs"])
        check_url(auth, p["prometheus_url"].strip(), "prometheus_url")
    except MonitoringAuthError as exc:
        module.fail_json(msg=str(exc))
    http = dict(request_options(auth, p["validate_certs"]), timeout=p["timeout"])
    try:
        report = rr.build_report(entries, version, p["audit_log"], dora, prometheus_url=p["prometheus_url"].strip(),
                                 queries=queries, rate_window=p["rate_window"].strip(), step=p["step"],
                                 padding=p["padding"], retrospective=p["retrospective"],
                                 environment=p["environment"] or None,
                                 http=http)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    files = [(os.path.join(p["output_dir"], "release-report-%s.md" % version), report["markdown"])]
    if p["html"]:
        files.append((os.path.join(p["output_dir"], "release-report-%s.html" % version), report["html"]))
    changed = any(not _same(path, content) for path, content in files)
    if changed and not module.check_mode:
        try:
            if not os.path.isdir(p["output_dir"]):
                os.makedirs(p["output_dir"], mode=0o755)
            for path, content in files:
                if not _same(path, content):
                    write_atomic(path, content, mode=0o644)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot write the report to %s: %s" % (p["output_dir"], exc))
    result.update(changed=changed, markdown_path=files[0][0], html_path=files[1][0] if p["html"] else None,
                  outcome=report["outcome"], window=report["window"], charts=report["charts"],
                  events=report["events"], metrics=report["metrics"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
