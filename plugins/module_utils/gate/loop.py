# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate loop: ``run_gate`` polls every ``interval`` for ``duration`` and returns the verdict.

``Sources`` is the one object unit tests replace.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.meshos.release.plugins.module_utils.gate import sources as sources_mod
from ansible_collections.meshos.release.plugins.module_utils._monitoring import (
    MonitoringAuthError,
    check_url,
    normalize_auth,
)
from ansible_collections.meshos.release.plugins.module_utils._redact import redact_url
from ansible_collections.meshos.release.plugins.module_utils.gate.judge import GateJudge
from ansible_collections.meshos.release.plugins.module_utils.gate.measure import GateMeasure
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import (
    DEFAULT_PROFILE,
    JUDGE_METRICS,
    PROFILES,
    SCRAPE_RATE_METRICS,
    _fmt,
    _number,
    build_policy,
    check_range,
    PolicyError,
)
from ansible_collections.meshos.release.plugins.module_utils.gate.stats import parse_duration


AGENTS_SOURCES = ("endpoints", "haproxy", "kubernetes", "prometheus")


class Sources:
    """The real signal sources; unit tests replace this object."""

    def __init__(self, params):
        self.p = params
        self._kube = None

    def kubernetes_agents(self):
        """The workload's pods (``kube_api.pod_readiness``); one client per gate, built on first use."""
        workload = self.p["agents_workload"]
        if self._kube is None:
            from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import KubeClient
            from ansible_collections.meshos.release.plugins.module_utils.platform.base import PlatformError
            try:
                self._kube = KubeClient(kubeconfig=self.p["kubeconfig"], context=self.p["context"],
                                        in_cluster=bool(self.p["in_cluster"]))
            except PlatformError as exc:
                raise sources_mod.SourceError(str(exc))
        return sources_mod.kubernetes_agents(self._kube, workload.get("namespace") or "default",
                                             workload.get("kind") or "Deployment", workload["name"],
                                             max_restarts=int(workload.get("max_restarts") or 0))

    def fetch(self, urls, want_body):
        return sources_mod.fetch_many(urls, timeout=self.p["timeout"], validate_certs=self.p["validate_certs"],
                                      concurrency=self.p["concurrency"], want_body=want_body)

    def prom(self, query):
        return sources_mod.prometheus_query(self.p["prometheus_url"], query, timeout=self.p["timeout"],
                                            validate_certs=self.p["validate_certs"], auth=self.p["monitoring_auth"])

    def alerts(self, severities, matchers):
        return sources_mod.alertmanager_alerts(self.p["alertmanager_url"], severities=severities, matchers=matchers,
                                               timeout=self.p["timeout"], validate_certs=self.p["validate_certs"],
                                               auth=self.p["monitoring_auth"])

    def haproxy(self):
        return sources_mod.haproxy_show_stat(self.p["haproxy_socket"], timeout=self.p["timeout"])


DEFAULTS = {
    "targets": [], "baseline_targets": [], "health_path": "/health", "metrics_path": "/metrics",
    "source": "scrape", "prometheus_url": None, "prometheus_selector": 'job="meshapp"', "baseline_selector": None,
    "alertmanager_url": None, "haproxy_socket": None, "haproxy_backend": "be_app", "agents_source": "endpoints",
    "agents_workload": None, "kubeconfig": None, "context": None, "in_cluster": False,
    "policy": None, "policy_overrides": None, "checks": None, "duration": 0, "interval": 5, "window": 30,
    "timeout": 5, "validate_certs": True, "mode": "gate", "baseline": None, "on_inconclusive": "fail",
    "fail_fast": True, "concurrency": 256, "memory_limit_bytes": 1073741824,
    "requests_metric": "meshapp_requests_total", "latency_metric": "meshapp_request_duration_seconds",
    "traffic_path": "/", "confidence": 0.95, "judge_tolerance": 0.1, "judge_min_samples": 5,
    "pass_score": 75.0, "marginal_score": 50.0, "judge_rejudgements": 2, "judge_critical": ["error_rate"],
    "profile": DEFAULT_PROFILE, "alerts_required": False,
    "max_source_failure_ratio": 0.2, "monitoring_auth": None,
}


class Gate(GateMeasure, GateJudge):
    """One gate evaluation. ``clock``/``sleep`` are injectable so unit tests do not wait."""

    def __init__(self, params, sources=None, clock=time.monotonic, sleep=time.sleep):
        p = dict(DEFAULTS)
        p.update(dict((k, v) for k, v in (params or {}).items() if v is not None))
        try:
            p["duration"] = parse_duration(p["duration"], "duration")
            p["interval"] = parse_duration(p["interval"], "interval")
            p["window"] = parse_duration(p["window"], "window")
            p["timeout"] = parse_duration(p["timeout"], "timeout")
        except ValueError as exc:
            raise PolicyError(str(exc))
        # durations: duration 0 is one evaluation; the others divide time and must be > 0
        check_range(p["interval"], "interval", 0, False, unit="seconds")
        check_range(p["window"], "window", 0, False, unit="seconds")
        check_range(p["timeout"], "timeout", 0, False, unit="seconds")
        if p["source"] not in ("scrape", "prometheus"):
            raise PolicyError("source: %r is not one of scrape, prometheus" % p["source"])
        if p["agents_source"] not in AGENTS_SOURCES:
            raise PolicyError("agents_source: %r is not one of %s" % (p["agents_source"], ", ".join(AGENTS_SOURCES)))
        workload = p["agents_workload"]
        if workload is not None:
            if not isinstance(workload, dict) or not workload.get("name"):
                raise PolicyError("agents_workload: %r needs a name (and kind Deployment or DaemonSet)" % (workload,))
            if workload.get("kind", "Deployment") not in ("Deployment", "DaemonSet"):
                raise PolicyError("agents_workload.kind: %r is not one of Deployment, DaemonSet" % (workload.get("kind"),))
        if p["mode"] not in ("gate", "baseline", "compare"):
            raise PolicyError("mode: %r is not one of gate, baseline, compare" % p["mode"])
        if p["on_inconclusive"] not in ("fail", "pass", "warn"):
            raise PolicyError("on_inconclusive: %r is not one of fail, pass, warn" % p["on_inconclusive"])
        if p["profile"] not in PROFILES:
            raise PolicyError("profile: %r is not one of %s" % (p["profile"], ", ".join(sorted(PROFILES))))
        for key, low, low_incl, high, high_incl, unit in (
                ("confidence", 0, False, 1, False, "a probability"),
                ("judge_tolerance", 0, True, None, True, "a fraction of the baseline median, 0.1 = 10 %"),
                ("judge_min_samples", 1, True, None, True, "samples per group"),
                ("pass_score", 0, True, 100, True, "a score in percent"),
                ("marginal_score", 0, True, 100, True, "a score in percent"),
                ("memory_limit_bytes", 0, False, None, True, "bytes"),
                ("concurrency", 1, True, None, True, "connections"),
                ("max_source_failure_ratio", 0, True, 1, False, "a fraction of a check's polls, 0.2 = 20 %")):
            p[key] = check_range(_number(p[key], key), key, low, low_incl, high, high_incl, unit)
        p["judge_rejudgements"] = check_range(_number(p["judge_rejudgements"], "judge_rejudgements"),
                                              "judge_rejudgements", 0, True, 100, True, "re-judgements")
        bad = [m for m in p["judge_critical"] if m not in JUDGE_METRICS]
        if bad:
            raise PolicyError("judge_critical: %r is not a judged metric; allowed: %s"
                              % (bad[0], ", ".join(JUDGE_METRICS)))
        for key in ("concurrency", "judge_min_samples", "memory_limit_bytes", "judge_rejudgements"):
            p[key] = int(p[key])
        if p["marginal_score"] > p["pass_score"]:
            raise PolicyError("marginal_score: %s is out of range; allowed: marginal_score <= pass_score (%s)"
                              % (_fmt(p["marginal_score"]), _fmt(p["pass_score"])))
        for name, value in (p["baseline"] or {}).items():
            if value is not None:
                # a NaN or negative baseline would make every comparison false (pass) or every one true
                check_range(_number(value, "baseline.%s" % name), "baseline.%s" % name, 0, True,
                            unit="the value measured by mode=baseline")
        for url in list(p["targets"]) + list(p["baseline_targets"]):
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise PolicyError("targets: %r is not an http:// or https:// base URL" % (redact_url(url),))
        for key in ("prometheus_url", "alertmanager_url"):
            url = p[key]
            if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
                raise PolicyError("%s: %r is not an http:// or https:// URL" % (key, redact_url(url)))
        try:
            # one auth for Prometheus and Alertmanager; its validate_certs defaults to the gate's
            p["monitoring_auth"] = normalize_auth(p["monitoring_auth"], p["validate_certs"])
            for key in ("prometheus_url", "alertmanager_url"):
                check_url(p["monitoring_auth"], p[key], key)
        except MonitoringAuthError as exc:
            raise PolicyError(str(exc))
        if p["mode"] == "compare" and p["source"] == "scrape" and not p["baseline_targets"]:
            raise PolicyError("mode: compare with source scrape needs baseline_targets (the stable group)")
        if p["mode"] == "compare" and p["source"] == "prometheus" and not p["baseline_selector"]:
            raise PolicyError("mode: compare with source prometheus needs baseline_selector (the stable group)")
        if p["source"] == "prometheus" and not p["prometheus_url"]:
            raise PolicyError("source: prometheus needs prometheus_url")
        if p["alerts_required"] and not p["alertmanager_url"]:
            raise PolicyError("alerts_required: true needs alertmanager_url (the alerts check may not be skipped)")
        self.p = p
        self.checks = build_policy(p["policy"], p["policy_overrides"], p["checks"], p["window"], p["interval"],
                                   profile=p["profile"])
        if p["alerts_required"]:
            alert_checks = [c for c in self.checks if c["metric"] == "alerts"]
            if not alert_checks:
                raise PolicyError("alerts_required: true but the policy has no alerts check")
            for check in alert_checks:  # required: runs whatever checks / enabled say
                check["enabled"] = True
        self.src = sources or Sources(p)
        self.clock = clock
        self.sleep = sleep
        self.snaps = {"targets": [], "baseline": []}
        self.fail_since = {}
        self.health = {}
        self.judge_samples = self._empty_judge_samples()
        self.judge_traffic = {"canary": 0.0, "baseline": 0.0, "rounds": 0}
        self.judgements = []
        self.judge_from = 0.0
        self.scrape_errors = {"targets": {}, "baseline": {}}
        self.state = dict((c["name"], {"samples": 0, "breaches": 0, "consecutive": 0, "value": None,
                                       "baseline": None, "effective_threshold": None, "reason": "",
                                       "status": None, "last": None, "values": [], "polls": 0,
                                       "failed_polls": 0, "last_failed": False, "last_error": None})
                          for c in self.checks)

    @staticmethod
    def _empty_judge_samples():
        return {"canary": dict((m, []) for m in JUDGE_METRICS), "baseline": dict((m, []) for m in JUDGE_METRICS)}

    def run(self):
        p = self.p
        active = []
        skipped = {}
        for check in self.checks:
            if not check["enabled"]:
                skipped[check["name"]] = "not selected" if p["checks"] else "disabled"
                continue
            reason = self._skip_reason(check)
            if reason:
                skipped[check["name"]] = reason
            else:
                active.append(check)
        end = p["duration"]
        if p["source"] == "scrape":
            rate_windows = [c["window"] for c in active if c["metric"] in SCRAPE_RATE_METRICS]
            if rate_windows:
                end = max([end] + rate_windows)
            if p["mode"] == "compare":
                end = max(end, p["interval"] * int(p["judge_min_samples"]))
        tick = min([c["interval"] for c in active] + [p["interval"]])
        start = self.clock()
        rounds = 0
        scheduled = 0.0
        stopped_early = False
        while True:
            now = self.clock() - start
            due = [c for c in active if self.state[c["name"]]["status"] != "fail" and (
                self.state[c["name"]]["last"] is None or now - self.state[c["name"]]["last"] >= c["interval"] - 1e-6
                or scheduled >= end)]
            need_health = any(self._needs_health(c) for c in due)
            need_scrape = any(self._uses_scrape(c) for c in due) or (
                p["mode"] == "compare" and p["source"] == "scrape")
            self._collect(now, need_health, need_scrape)
            for check in due:
                self._evaluate(check, now)
            if p["mode"] == "compare" and rounds > 0 and now > self.judge_from:
                self._judge_round(now)
            rounds += 1
            self._report_progress(active, now, end)
            if p["fail_fast"] and any(self.state[c["name"]]["status"] == "fail" for c in active):
                stopped_early = scheduled < end
                break
            if scheduled >= end and not self._hold_for_rejudgement(now):
                break
            if scheduled >= end:
                # marginal: the step is held and judged again over a fresh interval of per-interval samples
                end = scheduled + p["interval"] * int(p["judge_min_samples"])
            scheduled = min(scheduled + tick, end)
            delay = start + scheduled - self.clock()
            if delay > 0:
                self.sleep(delay)
        elapsed = self.clock() - start
        return self._result(active, skipped, rounds, elapsed, stopped_early)

    def _hold_for_rejudgement(self, now):
        """Judge the interval that just ended (compare mode); True when it was marginal and may be judged again."""
        if self.p["mode"] != "compare" or any(st["status"] == "fail" for st in self.state.values()):
            return False
        judgement = self._judge()
        judgement["at"] = round(now, 3)
        self.judgements.append(judgement)
        hold = judgement["status"] == "marginal" and len(self.judgements) <= int(self.p["judge_rejudgements"])
        self._write_progress("canary judgement %d/%d: score %s (%s)%s" % (
            len(self.judgements), int(self.p["judge_rejudgements"]) + 1, _fmt(judgement["score"]),
            judgement["status"], ", holding the step to judge again" if hold else ""))
        if hold:
            self.judge_from = now
            self.judge_samples = self._empty_judge_samples()
            self.judge_traffic = {"canary": 0.0, "baseline": 0.0, "rounds": 0}
        return hold

    def _report_progress(self, active, now, end):
        """One progress line per round for the meshos.release.progress callback (only when it asked for them)."""
        path = os.environ.get("MESHOS_PROGRESS_FILE")
        if not path:
            return
        parts = []
        for check in active:
            st = self.state[check["name"]]
            threshold = st["effective_threshold"] if st["effective_threshold"] is not None else check["threshold"]
            symbol = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}.get(check["comparison"], check["comparison"])
            parts.append("%s %s (fails if %s %s) %s" % (
                check["name"], _fmt(st["value"]) if st["value"] is not None else "-", symbol, _fmt(threshold),
                st["status"] or "ok so far"))
        line = "gate %.0f/%.0f s: %s" % (now, end, "; ".join(parts))
        if self.p["mode"] == "compare":
            canary = self.judge_samples["canary"]
            line += "; canary judge: %d/%d per-interval samples%s" % (
                min(len(v) for v in canary.values()), int(self.p["judge_min_samples"]),
                (", judgement %d" % (len(self.judgements) + 1)) if self.judgements else "")
        self._write_progress(line)

    def _write_progress(self, line):
        path = os.environ.get("MESHOS_PROGRESS_FILE")
        if not path:
            return
        try:
            with open(path, "a") as handle:
                handle.write(json.dumps({"line": line}) + "\n")
        except OSError:
            pass  # progress is a courtesy to the operator; the gate's verdict never depends on it


def run_gate(params, sources=None, clock=time.monotonic, sleep=time.sleep):
    """Build and run a gate. Raises PolicyError on bad input (nothing is contacted then)."""
    return Gate(params, sources=sources, clock=clock, sleep=sleep).run()
