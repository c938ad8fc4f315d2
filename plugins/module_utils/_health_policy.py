# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The health gate engine: a policy of checks evaluated against real signals over time.

``DEFAULT_POLICY`` is the seed's "Automatic Rollback Triggers" and "Post-Deployment Validation" tables. It is the one
place the defaults live: the module, the rollout strategies and playbooks all take it from here (override per run
with the module's ``policy`` / ``policy_overrides`` options).

Verdicts: ``pass`` (every check has enough samples and none breached its threshold ``failure_limit`` times in a row),
``fail`` (some check did), ``inconclusive`` (no data, too few samples, a source unreachable).

Fail closed on sources: a check whose source (Prometheus, Alertmanager, HAProxy, the targets' /metrics or /health)
failed at the check's last poll, or failed more than ``max_source_failure_ratio`` of the polls that reached it, is
``inconclusive`` naming the source and the error, never ``pass`` from samples taken before the source stopped. A value
no real signal can have (NaN, +/-Inf, a negative rate or latency, a ratio outside [0, 1]) is a failed poll naming the
query. Thresholds, ratios and durations are range-checked before anything is polled.

Profiles (``profile`` option; same check names in each, ``policy_overrides`` win). Fail = the check fails; target =
reported as ``target_met``, never deciding. Ratios are fractions.

| check            | rollback_triggers | post_deploy | batch   | target  | reason                                          |
|------------------|-------------------|-------------|---------|---------|-------------------------------------------------|
| health_checks    | > 120 s           | > 120 s     | > 5 s   |         | trigger "fail > 2 min"; a batch gate lasts secs |
| error_rate       | > 0.05            | > 0.01      | > 0.01  | < 0.001 | trigger 5 %; table alert 1 % (batch: 1-4 % stop)|
| success_rate     | < 0.99            | < 0.99      | < 0.99  | > 0.999 | table alert < 99 %                              |
| latency_p95      | > 1.0 s or > 2x   | same        | same    | < 0.5 s | table alert 1000 ms; trigger 2x baseline;       |
|                  | baseline (>= 50ms)|             |         |         | 50 ms floor: ms-level baselines are noise       |
| critical_alerts  | > 0               | > 0         | > 0     |         | trigger "any critical alert"                    |
| agents_unhealthy | > 0.10            | > 0.10      | > 0.10  | < 0.05  | trigger > 10 %; table agent health < 90 %       |
| cpu_usage        | > 0.90 core       | > 0.90      | > 0.90  | < 0.80  | table alert 90 %                                |
| memory_usage     | > 0.95 of limit   | > 0.95      | > 0.95  | < 0.85  | table alert 95 % of memory_limit_bytes          |

Source bound: a check is inconclusive when its last poll failed, or more than ``max_source_failure_ratio`` (0.2: one
blip in five polls, e.g. a scrape racing a restart) of the polls that reached its source failed.
"""

from __future__ import annotations

import copy
import math
import time

from ansible_collections.meshos.release.plugins.module_utils import _health_sources as sources_mod
from ansible_collections.meshos.release.plugins.module_utils._redact import redact_text, redact_url
from ansible_collections.meshos.release.plugins.module_utils._stats import (
    bucket_delta, counter_delta, format_duration, histogram_buckets, histogram_quantile,
    mann_whitney_u, median, parse_duration, parse_exposition,
)
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

SourceError = sources_mod.SourceError

# The seed's tables (release-playbook.md "Automatic Rollback Triggers" and "Post-Deployment Validation"). Thresholds
# are the trigger / "Alert Threshold" columns and fail the check; ``target`` is the "Target" column, reported per
# check (``target_met``) but never deciding the verdict. Ratios are fractions (0.05 = 5 %).
_HEALTH = {"name": "health_checks", "metric": "health_failing_seconds", "comparison": "gt", "threshold": 120,
           "description": "rollback trigger: a target's health check failing for > 2 minutes"}
_ALERTS = {"name": "critical_alerts", "metric": "alerts", "severities": ["critical"], "comparison": "gt",
           "threshold": 0, "description": "rollback trigger: any critical alert fired (silenced / inhibited ignored)"}
_SUCCESS = {"name": "success_rate", "metric": "success_rate", "comparison": "lt", "threshold": 0.99, "target": 0.999,
            "description": "success rate < 99 % (alert threshold; target > 99.9 %)"}
# 2x baseline is the rollback trigger; the 50 ms floor keeps a loopback baseline of a few ms from failing on noise
# (2 x 3 ms = 6 ms would be one slow request); 1000 ms is the table's alert threshold, 500 ms its target.
_LATENCY = {"name": "latency_p95", "metric": "latency", "quantile": 0.95, "comparison": "gt", "threshold": 1.0,
            "target": 0.5, "baseline_factor": 2.0, "baseline_floor": 0.05,
            "description": "latency P95 > 2x baseline (floor 50 ms) or > 1000 ms (target < 500 ms)"}
_AGENTS = {"name": "agents_unhealthy", "metric": "unhealthy_ratio", "comparison": "gt", "threshold": 0.10,
           "target": 0.05, "description": "> 10 % of agents unhealthy (agent health < 90 %; target > 95 % healthy)"}
_CPU = {"name": "cpu_usage", "metric": "cpu", "comparison": "gt", "threshold": 0.90, "target": 0.80,
        "description": "CPU usage > 90 % of one core per instance (target < 80 %)"}
_MEMORY = {"name": "memory_usage", "metric": "memory", "comparison": "gt", "threshold": 0.95, "target": 0.85,
           "description": "memory usage > 95 % of memory_limit_bytes (target < 85 %)"}


def _with(check, **changes):
    out = dict(check)
    out.update(changes)
    return out


PROFILES = {
    # The automatic rollback triggers (error rate > 5 %) plus the table's alert thresholds for the other metrics:
    # the long post-deploy watch, where only a real trigger should roll back. The default, as before.
    "rollback_triggers": [
        _HEALTH,
        {"name": "error_rate", "metric": "error_rate", "comparison": "gt", "threshold": 0.05, "target": 0.001,
         "description": "rollback trigger: error rate > 5 % (target < 0.1 %)"},
        _SUCCESS, _LATENCY, _ALERTS, _AGENTS, _CPU, _MEMORY,
    ],
    # Post-deployment validation: every metric at the table's alert threshold (error rate > 1 %).
    "post_deploy": [
        _HEALTH,
        {"name": "error_rate", "metric": "error_rate", "comparison": "gt", "threshold": 0.01, "target": 0.001,
         "description": "error rate > 1 % (alert threshold; target < 0.1 %)"},
        _SUCCESS, _LATENCY, _ALERTS, _AGENTS, _CPU, _MEMORY,
    ],
    # A batch of a rolling deploy: the alert thresholds, so a 1-4 % error or slow (> 1000 ms or > 2x baseline P95)
    # release stops at the first batch instead of reaching every host before the watch; a batch gate lasts seconds,
    # so a target that fails health for > 5 s after it was declared ready fails the batch.
    "batch": [
        _with(_HEALTH, threshold=5,
              description="a target's health check failing for > 5 s after it was declared ready (batch gate)"),
        {"name": "error_rate", "metric": "error_rate", "comparison": "gt", "threshold": 0.01, "target": 0.001,
         "description": "error rate > 1 % (alert threshold; target < 0.1 %)"},
        _SUCCESS, _LATENCY, _ALERTS, _AGENTS, _CPU, _MEMORY,
    ],
}
DEFAULT_PROFILE = "rollback_triggers"
DEFAULT_POLICY = PROFILES[DEFAULT_PROFILE]

METRICS = ("health_failing_seconds", "error_rate", "success_rate", "latency", "alerts", "unhealthy_ratio",
           "cpu", "memory", "query")
SCRAPE_RATE_METRICS = ("error_rate", "success_rate", "latency", "cpu")
COMPARISONS = {
    "gt": (lambda v, t: v > t, ">"),
    "ge": (lambda v, t: v >= t, ">="),
    "lt": (lambda v, t: v < t, "<"),
    "le": (lambda v, t: v <= t, "<="),
}
CHECK_KEYS = ("name", "metric", "comparison", "threshold", "target", "window", "interval", "failure_limit",
              "min_samples", "quantile", "baseline_factor", "baseline_floor", "severities", "matchers", "query",
              "enabled", "description")
RATIO_METRICS = ("error_rate", "success_rate", "unhealthy_ratio")
# Metrics whose thresholds may be written as a percent string ("5%" = 0.05).
PERCENT_METRICS = RATIO_METRICS + ("cpu", "memory")
# Allowed threshold per metric: (low, low inclusive, high, high inclusive, what it is). Checked before any poll.
THRESHOLD_RANGES = {
    "error_rate": (0.0, True, 1.0, True, "a fraction, 0.05 = 5 %, or a string like '5%'"),
    "success_rate": (0.0, True, 1.0, True, "a fraction, 0.99 = 99 %, or a string like '99%'"),
    "unhealthy_ratio": (0.0, True, 1.0, True, "a fraction, 0.1 = 10 %, or a string like '10%'"),
    "latency": (0.0, False, None, False, "seconds"),
    "health_failing_seconds": (0.0, True, None, False, "seconds"),
    "alerts": (0.0, True, None, False, "a number of alerts"),
    "cpu": (0.0, False, None, False, "cores per instance, 0.9 = 90 % of one core, or '90%'"),
    "memory": (0.0, False, None, False, "a fraction of memory_limit_bytes, 0.95 = 95 %, or '95%'"),
    "query": (None, False, None, False, "any finite number"),
}
# Values a real signal can have; anything else (NaN, +/-Inf, below / above) is a failed poll, never a sample.
VALUE_RANGES = {
    "error_rate": (0.0, 1.0), "success_rate": (0.0, 1.0), "unhealthy_ratio": (0.0, 1.0),
    "latency": (0.0, None), "health_failing_seconds": (0.0, None), "alerts": (0.0, None),
    "cpu": (0.0, None), "memory": (0.0, None), "query": (None, None),
}

# PromQL defaults for the lab's metric names; $selector, $window, $quantile, $path, $memory_limit, $requests,
# $latency are substituted.
DEFAULT_QUERIES = {
    "error_rate": '(sum(rate($requests{$selector$path,code=~"5.."}[$window])) or vector(0))'
                  ' / sum(rate($requests{$selector$path}[$window]))',
    "success_rate": '(sum(rate($requests{$selector$path,code!~"5.."}[$window])) or vector(0))'
                    ' / sum(rate($requests{$selector$path}[$window]))',
    "latency": 'histogram_quantile($quantile, sum by (le) (rate($latency_bucket{$selector}[$window])))',
    "unhealthy_ratio": '1 - avg(up{$selector})',
    "cpu": 'max(rate(process_cpu_seconds_total{$selector}[$window]))',
    "memory": 'max(process_resident_memory_bytes{$selector}) / $memory_limit',
}
JUDGE_METRICS = ("error_rate", "latency")


class PolicyError(MeshosError, ValueError):
    """Bad gate input (policy, options). One-line message naming the bad value and what is allowed."""


def _number(value, where, percent=False):
    """A finite float from a number or numeric string; with ``percent``, '5%' is 0.05. Raises PolicyError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = str(value).strip()
        scale = 1.0
        if percent and text.endswith("%"):
            text, scale = text[:-1].strip(), 0.01
        try:
            number = float(text) * scale
        except ValueError:
            raise PolicyError("%s: %r is not a number" % (where, value))
    else:
        number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise PolicyError("%s: %r is not a finite number" % (where, value))
    return number


def _describe_range(low, low_incl, high, high_incl, name):
    parts = []
    if low is not None:
        parts.append("%s %s" % (_fmt(low), "<=" if low_incl else "<"))
    parts.append(name)
    if high is not None:
        parts.append("%s %s" % ("<=" if high_incl else "<", _fmt(high)))
    return " ".join(parts)


def check_range(value, where, low=None, low_incl=True, high=None, high_incl=True, unit=""):
    """Raise PolicyError naming ``where``, the value and the allowed range when ``value`` is outside it."""
    bad = math.isnan(value) or math.isinf(value)
    if low is not None and (value < low or (value == low and not low_incl)):
        bad = True
    if high is not None and (value > high or (value == high and not high_incl)):
        bad = True
    if bad:
        allowed = _describe_range(low, low_incl, high, high_incl, where.rsplit(" ", 1)[-1].rsplit(".", 1)[-1])
        raise PolicyError("%s: %s is out of range; allowed: %s%s" % (where, _fmt(value), allowed,
                                                                     (" (%s)" % unit) if unit else ""))
    return value


def _value_problem(metric, value):
    """None for a value a real signal can have, else why not (NaN, infinite, outside the metric's range)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "%r is not a number" % (value,)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "%sInf" % ("+" if value > 0 else "-")
    low, high = VALUE_RANGES[metric]
    if low is not None and value < low:
        return "%s is negative" % _fmt(value) if low == 0 else "%s < %s" % (_fmt(value), _fmt(low))
    if high is not None and value > high:
        return "%s is outside [%s, %s]" % (_fmt(value), _fmt(low), _fmt(high))
    return None


def build_policy(policy=None, overrides=None, only=None, default_window=30.0, default_interval=5.0,
                 profile=None):
    """Validate and normalise a policy (list of check dicts). Raises PolicyError.

    Without ``policy`` the checks of ``profile`` (default ``rollback_triggers``) are used; ``overrides`` change
    them by check name (explicit thresholds win over the profile's).
    """
    if policy is None:
        name = DEFAULT_PROFILE if profile is None else profile
        if name not in PROFILES:
            raise PolicyError("profile: %r is not one of %s" % (name, ", ".join(sorted(PROFILES))))
        raw = copy.deepcopy(PROFILES[name])
    else:
        raw = copy.deepcopy(policy)
    if not isinstance(raw, list) or not raw:
        raise PolicyError("policy: must be a non-empty list of checks")
    names = []
    for index, check in enumerate(raw):
        if not isinstance(check, dict):
            raise PolicyError("policy[%d]: %r is not a dict" % (index, check))
        names.append(check.get("name"))
    overridden = {}
    for name, change in (overrides or {}).items():
        if name not in names:
            raise PolicyError("policy_overrides: %r is not a check of the policy; known: %s" % (name, ", ".join(map(str, names))))
        if not isinstance(change, dict):
            raise PolicyError("policy_overrides.%s: %r is not a dict" % (name, change))
        raw[names.index(name)].update(change)
        overridden[name] = set(change)
    for name in only or []:
        if name not in names:
            raise PolicyError("checks: %r is not a check of the policy; known: %s" % (name, ", ".join(map(str, names))))
    checks = []
    seen = set()
    for index, check in enumerate(raw):
        where = "policy[%d]" % index
        unknown = sorted(set(check) - set(CHECK_KEYS))
        if unknown:
            raise PolicyError("%s: unknown key %r; allowed: %s" % (where, unknown[0], ", ".join(CHECK_KEYS)))
        name = check.get("name")
        if not name or not isinstance(name, str):
            raise PolicyError("%s.name: %r must be a non-empty string" % (where, name))
        if name in seen:
            raise PolicyError("%s.name: %r is used twice; check names must be unique" % (where, name))
        seen.add(name)

        def key_where(key, _name=name, _index=index):
            # name the option the value came from, so the error points at what to fix
            if key in overridden.get(_name, ()):
                return "policy_overrides.%s.%s" % (_name, key)
            if policy is None:
                return "profile %s check %r %s" % (profile or DEFAULT_PROFILE, _name, key)
            return "policy[%d] (%s).%s" % (_index, _name, key)

        where = "policy check %r" % name
        metric = check.get("metric")
        if metric not in METRICS:
            raise PolicyError("%s: metric %r is not one of %s" % (where, metric, ", ".join(METRICS)))
        comparison = check.get("comparison", "gt")
        if comparison not in COMPARISONS:
            raise PolicyError("%s: comparison %r is not one of gt, ge, lt, le" % (where, comparison))
        threshold = check.get("threshold")
        if threshold is None and check.get("baseline_factor") is None:
            raise PolicyError("%s: needs a threshold or a baseline_factor" % where)
        percent = metric in PERCENT_METRICS
        out = {
            "name": name, "metric": metric, "comparison": comparison,
            "threshold": None if threshold is None else _number(threshold, key_where("threshold"), percent),
            "target": None if check.get("target") is None else _number(check["target"], key_where("target"), percent),
            "failure_limit": int(_number(check.get("failure_limit", 1), key_where("failure_limit"))),
            "min_samples": int(_number(check.get("min_samples", 1), key_where("min_samples"))),
            "quantile": _number(check.get("quantile", 0.95), key_where("quantile")),
            "baseline_factor": None if check.get("baseline_factor") is None
            else _number(check["baseline_factor"], key_where("baseline_factor")),
            "baseline_floor": _number(check.get("baseline_floor", 0.0), key_where("baseline_floor")),
            "severities": list(check.get("severities") or ["critical"]),
            "matchers": dict(check.get("matchers") or {}),
            "query": check.get("query"),
            "enabled": bool(check.get("enabled", True)) and (not only or name in only),
            "description": check.get("description", ""),
        }
        try:
            out["window"] = parse_duration(check["window"], key_where("window")) if check.get("window") is not None \
                else default_window
            out["interval"] = parse_duration(check["interval"], key_where("interval")) \
                if check.get("interval") is not None else default_interval
        except ValueError as exc:
            raise PolicyError(str(exc))
        low, low_incl, high, high_incl, unit = THRESHOLD_RANGES[metric]
        for key in ("threshold", "target"):
            if out[key] is not None:
                check_range(out[key], key_where(key), low, low_incl, high, high_incl, unit)
        check_range(out["failure_limit"], key_where("failure_limit"), 1, True, unit="consecutive breaches")
        check_range(out["min_samples"], key_where("min_samples"), 0, True, unit="samples")
        check_range(out["quantile"], key_where("quantile"), 0, False, 1, True)
        if out["baseline_factor"] is not None:
            check_range(out["baseline_factor"], key_where("baseline_factor"), 0, False,
                        unit="multiplier of the baseline, 2 = 2x baseline")
        check_range(out["baseline_floor"], key_where("baseline_floor"), 0, True, unit=unit)
        check_range(out["window"], key_where("window"), 0, False, unit="seconds")
        check_range(out["interval"], key_where("interval"), 0, False, unit="seconds")
        if metric == "query" and not out["query"]:
            raise PolicyError("%s: metric 'query' needs a PromQL 'query'" % where)
        checks.append(out)
    if not any(c["enabled"] for c in checks):
        raise PolicyError("policy: every check is disabled; enable at least one")
    return checks


def _fmt(value):
    if value is None:
        return "none"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return "%d" % value
        return "%.4g" % value
    return str(value)


class Sources:
    """The real signal sources; unit tests replace this object."""

    def __init__(self, params):
        self.p = params

    def fetch(self, urls, want_body):
        return sources_mod.fetch_many(urls, timeout=self.p["timeout"], validate_certs=self.p["validate_certs"],
                                      concurrency=self.p["concurrency"], want_body=want_body)

    def prom(self, query):
        return sources_mod.prometheus_query(self.p["prometheus_url"], query, timeout=self.p["timeout"],
                                            validate_certs=self.p["validate_certs"])

    def alerts(self, severities, matchers):
        return sources_mod.alertmanager_alerts(self.p["alertmanager_url"], severities=severities, matchers=matchers,
                                               timeout=self.p["timeout"], validate_certs=self.p["validate_certs"])

    def haproxy(self):
        return sources_mod.haproxy_show_stat(self.p["haproxy_socket"], timeout=self.p["timeout"])


DEFAULTS = {
    "targets": [], "baseline_targets": [], "health_path": "/health", "metrics_path": "/metrics",
    "source": "scrape", "prometheus_url": None, "prometheus_selector": 'job="meshapp"', "baseline_selector": None,
    "alertmanager_url": None, "haproxy_socket": None, "haproxy_backend": "be_app", "agents_source": "endpoints",
    "policy": None, "policy_overrides": None, "checks": None, "duration": 0, "interval": 5, "window": 30,
    "timeout": 5, "validate_certs": True, "mode": "gate", "baseline": None, "on_inconclusive": "fail",
    "fail_fast": True, "concurrency": 256, "memory_limit_bytes": 1073741824,
    "requests_metric": "meshapp_requests_total", "latency_metric": "meshapp_request_duration_seconds",
    "traffic_path": "/", "confidence": 0.95, "judge_tolerance": 0.1, "judge_min_samples": 5,
    "pass_score": 75.0, "marginal_score": 50.0, "profile": DEFAULT_PROFILE, "alerts_required": False,
    "max_source_failure_ratio": 0.2,
}


def _url(base, path):
    return base.rstrip("/") + "/" + path.lstrip("/")


class Gate:
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
        if p["agents_source"] not in ("endpoints", "haproxy", "prometheus"):
            raise PolicyError("agents_source: %r is not one of endpoints, haproxy, prometheus" % p["agents_source"])
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
        for key in ("concurrency", "judge_min_samples", "memory_limit_bytes"):
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
        self.judge_samples = {"canary": dict((m, []) for m in JUDGE_METRICS),
                              "baseline": dict((m, []) for m in JUDGE_METRICS)}
        self.scrape_errors = {"targets": {}, "baseline": {}}
        self.state = dict((c["name"], {"samples": 0, "breaches": 0, "consecutive": 0, "value": None,
                                       "baseline": None, "effective_threshold": None, "reason": "",
                                       "status": None, "last": None, "values": [], "polls": 0,
                                       "failed_polls": 0, "last_failed": False, "last_error": None})
                          for c in self.checks)

    # ---------------------------------------------------------------- helpers
    def _skip_reason(self, check):
        p = self.p
        metric = check["metric"]
        if metric == "alerts" and not p["alertmanager_url"]:
            return "alertmanager_url not set"
        if metric in ("health_failing_seconds",) and not p["targets"]:
            return "no targets to poll"
        if metric == "unhealthy_ratio":
            if p["agents_source"] == "endpoints" and not p["targets"]:
                return "agents_source endpoints needs targets"
            if p["agents_source"] == "haproxy" and not p["haproxy_socket"]:
                return "agents_source haproxy needs haproxy_socket"
            if p["agents_source"] == "prometheus" and not p["prometheus_url"]:
                return "agents_source prometheus needs prometheus_url"
        if metric == "query" and not p["prometheus_url"]:
            return "metric query needs prometheus_url"
        if metric in ("error_rate", "success_rate", "latency", "cpu", "memory") and p["source"] == "scrape" \
                and not p["targets"]:
            return "source scrape needs targets"
        if p["mode"] == "baseline" and check["baseline_factor"] is None:
            return "mode baseline measures only checks with a baseline_factor"
        return None

    def _uses_scrape(self, check):
        return self.p["source"] == "scrape" and check["metric"] in ("error_rate", "success_rate", "latency",
                                                                    "cpu", "memory")

    def _needs_health(self, check):
        return check["metric"] == "health_failing_seconds" or (
            check["metric"] == "unhealthy_ratio" and self.p["agents_source"] == "endpoints")

    def _source_label(self, check):
        """The source that feeds a check, credentials masked (named in inconclusive reasons)."""
        p = self.p
        metric = check["metric"]
        if metric == "alerts":
            return "alertmanager %s" % redact_url(p["alertmanager_url"])
        if metric == "health_failing_seconds" or (metric == "unhealthy_ratio" and p["agents_source"] == "endpoints"):
            return "health endpoints (%s)" % p["health_path"]
        if metric == "unhealthy_ratio" and p["agents_source"] == "haproxy":
            return "haproxy %s" % p["haproxy_socket"]
        if metric == "query" or metric == "unhealthy_ratio" or p["source"] == "prometheus":
            return "prometheus %s" % redact_url(p["prometheus_url"])
        return "metrics endpoints (%s)" % p["metrics_path"]

    def _template(self, check, selector, window):
        p = self.p
        query = check["query"] or DEFAULT_QUERIES[check["metric"]]
        path = ',path="%s"' % p["traffic_path"] if p["traffic_path"] else ""
        replacements = (
            ("$selector", selector or ""), ("$window", format_duration(window)), ("$quantile", repr(check["quantile"])),
            ("$path", path), ("$memory_limit", str(int(p["memory_limit_bytes"]))),
            ("$requests", p["requests_metric"]), ("$latency", p["latency_metric"]),
        )
        for key, value in replacements:
            query = query.replace(key, value)
        return query.replace("{,", "{")

    # ------------------------------------------------------------ collection
    def _collect(self, now, need_health, need_scrape):
        p = self.p
        urls = []
        if need_health:
            urls += [_url(t, p["health_path"]) for t in p["targets"]]
        if need_scrape:
            urls += [_url(t, p["metrics_path"]) for t in p["targets"]]
            if p["mode"] == "compare":
                urls += [_url(t, p["metrics_path"]) for t in p["baseline_targets"]]
        if not urls:
            return
        answers = self.src.fetch(urls, need_scrape)
        if need_health:
            for target in p["targets"]:
                answer = answers.get(_url(target, p["health_path"])) or {"error": "no answer"}
                ok = answer.get("error") is None and answer.get("status") is not None and 200 <= answer["status"] < 300
                if ok:
                    self.fail_since.pop(target, None)
                else:
                    self.fail_since.setdefault(target, now)
                self.health[target] = {
                    "healthy": ok, "status": answer.get("status"), "error": answer.get("error"),
                    "failing_seconds": round(now - self.fail_since[target], 3) if not ok else 0.0,
                }
        if need_scrape:
            groups = [("targets", p["targets"])]
            if p["mode"] == "compare":
                groups.append(("baseline", p["baseline_targets"]))
            keep = max([c["window"] for c in self.checks] + [p["interval"]]) * 2 + p["interval"]
            for group, targets in groups:
                snap = {}
                errors = {}
                for target in targets:
                    answer = answers.get(_url(target, p["metrics_path"])) or {"error": "no answer"}
                    if answer.get("error") is None and answer.get("status") == 200:
                        snap[target] = parse_exposition((answer.get("body") or b"").decode("utf-8", "replace"))
                    else:
                        snap[target] = None
                        errors[target] = answer.get("error") or "HTTP %s" % answer.get("status")
                self.scrape_errors[group] = errors
                self.snaps[group].append((now, snap))
                self.snaps[group] = [s for s in self.snaps[group] if now - s[0] <= keep]

    # ------------------------------------------------------------ measuring
    def _scrape_pair(self, group, now, window):
        snaps = self.snaps[group]
        if len(snaps) < 2:
            return None, None
        newest = snaps[-1]
        slack = min(0.05 * window, 0.5)
        older = [s for s in snaps[:-1] if s[0] <= now - window + slack]
        if not older:
            return None, None
        return older[-1], newest

    def _scrape_value(self, check, group, now, window):
        """(value, reason) for a scrape-based metric of a group over ``window``."""
        p = self.p
        metric = check["metric"]
        if metric == "memory":
            if not self.snaps[group]:
                return None, "no scrape yet"
            self._raise_scrape_errors(group)
            _t, snap = self.snaps[group][-1]
            rss = [v for target, samples in snap.items() if samples for (n, _l, v) in samples
                   if n == "process_resident_memory_bytes"]
            if not rss:
                return None, "no process_resident_memory_bytes from any target"
            return max(rss) / float(p["memory_limit_bytes"]), "max over %d targets" % len(rss)
        old, new = self._scrape_pair(group, now, window)
        if old is None:
            return None, "waiting for a scrape %s apart" % format_duration(window)
        self._raise_scrape_errors(group)
        missing = sorted(t for t, samples in old[1].items() if not samples and new[1].get(t))
        if missing:
            # judged on the others, a bad target that just came back would be left out: not a sample
            raise SourceError("%s of %d/%d targets unreadable at the window start (%s ago): %s" % (
                p["metrics_path"], len(missing), len(new[1]), format_duration(now - old[0]), ", ".join(missing[:5])))
        dt = new[0] - old[0]
        total = errors = 0.0
        buckets = {}
        cpu = []
        used = 0
        down = 0
        for target, after in new[1].items():
            before = old[1].get(target)
            if not after or not before:
                down += 1
                continue
            used += 1
            if metric in ("error_rate", "success_rate"):
                b_idx = self._requests(before)
                for key, value in self._requests(after).items():
                    delta = counter_delta(b_idx.get(key, 0.0), value)
                    total += delta
                    if key.startswith("5"):
                        errors += delta
            elif metric == "latency":
                for le, delta in bucket_delta(histogram_buckets(before, p["latency_metric"]),
                                              histogram_buckets(after, p["latency_metric"])).items():
                    buckets[le] = buckets.get(le, 0.0) + delta
            elif metric == "cpu":
                b = [v for n, _l, v in before if n == "process_cpu_seconds_total"]
                a = [v for n, _l, v in after if n == "process_cpu_seconds_total"]
                if a and b and dt > 0:
                    cpu.append(counter_delta(b[0], a[0]) / dt)
        where = "%d/%d targets scraped over %s" % (used, used + down, format_duration(dt))
        if not used:
            return None, "no target could be scraped"
        if metric in ("error_rate", "success_rate"):
            if total <= 0:
                return None, "no traffic in window (%s)" % where
            ratio = errors / total
            return (ratio if metric == "error_rate" else 1.0 - ratio), "%d/%d requests failed, %s" % (errors, total, where)
        if metric == "latency":
            value = histogram_quantile(check["quantile"], buckets)
            if value is None:
                return None, "no requests observed in window (%s)" % where
            return value, "%d requests, %s" % (buckets.get(math.inf, 0), where)
        if not cpu:
            return None, "no process_cpu_seconds_total (%s)" % where
        return max(cpu), where

    def _raise_scrape_errors(self, group):
        """A target whose metrics could not be read in the newest scrape makes this poll a source failure."""
        errors = self.scrape_errors.get(group) or {}
        if errors:
            shown = sorted(errors.items())[:5]
            raise SourceError("%s of %d/%d targets unreadable: %s" % (
                self.p["metrics_path"], len(errors), len(self.snaps[group][-1][1]),
                "; ".join("%s: %s" % (t, e) for t, e in shown)))

    def _requests(self, samples):
        p = self.p
        out = {}
        for name, labels, value in samples:
            if name != p["requests_metric"]:
                continue
            if p["traffic_path"] and labels.get("path") != p["traffic_path"]:
                continue
            code = labels.get("code", "")
            out[code] = out.get(code, 0.0) + value
        return out

    def _prom_value(self, check, selector, window):
        query = self._template(check, selector, window)
        series = self.src.prom(query)
        values = [v for _labels, v in series]
        if not values:
            return None, "no data for %s" % query
        # every series is checked (a NaN or -Inf beside a good series is still an impossible answer)
        for value in values:
            if _value_problem(check["metric"], value):
                return value, "prometheus: %s" % query
        return max(values), "prometheus: %s" % query

    def _measure(self, check, now, group="targets"):
        """(value, reason) for one check on one group. Raises SourceError when a source is unreachable."""
        p = self.p
        metric = check["metric"]
        selector = p["prometheus_selector"] if group == "targets" else p["baseline_selector"]
        if metric == "health_failing_seconds":
            failing = [(h["failing_seconds"], t) for t, h in self.health.items() if not h["healthy"]]
            if not failing:
                return 0.0, "all %d targets healthy" % len(self.health)
            worst = max(failing)
            return worst[0], "%d/%d failing, longest %s (%ss)" % (len(failing), len(self.health), worst[1], _fmt(worst[0]))
        if metric == "unhealthy_ratio":
            if p["agents_source"] == "endpoints":
                bad = sorted(t for t, h in self.health.items() if not h["healthy"])
                total = len(self.health)
                return (len(bad) / float(total) if total else None), "%d/%d unhealthy%s" % (
                    len(bad), total, (": " + ", ".join(bad[:5])) if bad else "")
            if p["agents_source"] == "haproxy":
                rows = [r for r in self.src.haproxy() if r.get("pxname") == p["haproxy_backend"]
                        and r.get("svname") not in ("FRONTEND", "BACKEND")]
                counted = [r for r in rows if not str(r.get("status", "")).startswith("MAINT")]
                bad = sorted(r["svname"] for r in counted
                             if not str(r.get("status", "")).startswith(("UP", "DRAIN", "NOLB")))
                if not counted:
                    return None, "haproxy backend %s has no servers in service" % p["haproxy_backend"]
                return len(bad) / float(len(counted)), "haproxy %s: %d/%d servers down%s" % (
                    p["haproxy_backend"], len(bad), len(counted), (": " + ", ".join(bad)) if bad else "")
            return self._prom_value(check, selector, check["window"])
        if metric == "alerts":
            alerts = self.src.alerts(check["severities"], check["matchers"])
            names = sorted(set(a.get("alertname", "?") for a in alerts))
            return float(len(alerts)), ("firing: " + ", ".join(names)) if names else "no matching active alerts"
        if metric == "query" or p["source"] == "prometheus":
            return self._prom_value(check, selector, check["window"])
        return self._scrape_value(check, group, now, check["window"])

    # ------------------------------------------------------------- judging
    def _effective_threshold(self, check, baseline):
        threshold = check["threshold"]
        factor = check["baseline_factor"]
        if factor is None or baseline is None:
            return threshold
        relative = baseline * factor
        if check["comparison"] in ("gt", "ge"):
            relative = max(relative, check["baseline_floor"])
            return relative if threshold is None else min(threshold, relative)
        return relative if threshold is None else max(threshold, relative)

    def _baseline_for(self, check, now):
        p = self.p
        if check["baseline_factor"] is None:
            return None, ""
        if p["mode"] == "compare":
            try:
                value, reason = self._measure(check, now, "baseline")
            except SourceError as exc:
                return None, "baseline unreadable: %s" % exc
            problem = None if value is None else _value_problem(check["metric"], value)
            if problem:
                return None, "baseline group value invalid (%s): %s" % (problem, reason)
            return value, "baseline group: %s" % reason
        given = (p["baseline"] or {}).get(check["name"])
        if given is not None:
            return _number(given, "baseline.%s" % check["name"]), "given baseline"
        return None, "no baseline given"

    def _poll_failed(self, st, error):
        st["failed_polls"] += 1
        st["last_failed"] = True
        st["last_error"] = redact_text(" ".join(str(error).split()))
        st["reason"] = st["last_error"]
        st["error"] = True

    def _evaluate(self, check, now):
        st = self.state[check["name"]]
        st["last"] = now
        st["polls"] += 1
        try:
            value, reason = self._measure(check, now)
        except SourceError as exc:
            self._poll_failed(st, exc)
            return
        if value is None:
            # no data (no traffic, waiting for a second scrape) is not a source failure; too few samples is
            # judged at the end
            st["reason"] = reason
            return
        problem = _value_problem(check["metric"], value)
        if problem:
            self._poll_failed(st, "invalid %s value %s from %s" % (check["metric"], problem, reason))
            return
        st["error"] = False
        st["last_failed"] = False
        st["samples"] += 1
        st["value"] = value
        st["values"].append(value)
        if self.p["mode"] == "baseline":
            st["reason"] = reason
            return
        base, base_reason = self._baseline_for(check, now)
        if base is not None:
            st["baseline"] = base
        threshold = self._effective_threshold(check, st["baseline"])
        st["effective_threshold"] = threshold
        if threshold is None:
            st["reason"] = "%s; %s: no threshold without a baseline" % (reason, base_reason)
            st["no_threshold"] = True
            return
        st["no_threshold"] = False
        compare, symbol = COMPARISONS[check["comparison"]]
        breach = compare(value, threshold)
        relative = ""
        if base is not None:
            relative = " (%s x%s of %s)" % (base_reason, _fmt(check["baseline_factor"]), _fmt(base))
        verb = symbol if breach else "not " + symbol
        st["reason"] = "%s %s %s%s: %s" % (_fmt(value), verb, _fmt(threshold), relative, reason)
        if breach:
            st["breaches"] += 1
            st["consecutive"] += 1
            if st["consecutive"] >= check["failure_limit"]:
                st["status"] = "fail"
        else:
            st["consecutive"] = 0

    def _judge_round(self, now):
        """Per-interval samples of the judge metrics for canary and baseline (compare mode)."""
        p = self.p
        window = p["interval"] if p["source"] == "scrape" else max(p["interval"], 5.0)
        for metric in JUDGE_METRICS:
            probe = {"metric": metric, "quantile": 0.95, "window": window, "query": None}
            for group, key in (("targets", "canary"), ("baseline", "baseline")):
                try:
                    if p["source"] == "scrape":
                        value, _reason = self._scrape_value(probe, group, now, window)
                    else:
                        value, _reason = self._prom_value(
                            probe, p["prometheus_selector"] if group == "targets" else p["baseline_selector"], window)
                except SourceError:
                    value = None
                if value is not None:
                    self.judge_samples[key][metric].append(value)

    def _judge(self):
        p = self.p
        alpha = 1.0 - float(p["confidence"])
        metrics = []
        scores = []
        for metric in JUDGE_METRICS:
            canary = self.judge_samples["canary"][metric]
            base = self.judge_samples["baseline"][metric]
            entry = {"metric": metric, "canary_samples": len(canary), "baseline_samples": len(base),
                     "canary_median": median(canary), "baseline_median": median(base), "p_value": None, "u": None}
            if min(len(canary), len(base)) < int(p["judge_min_samples"]):
                entry["result"] = "nodata"
                metrics.append(entry)
                continue
            u, pvalue = mann_whitney_u(canary, base, "greater")
            entry["u"] = u
            entry["p_value"] = round(pvalue, 6)
            worse_by = entry["canary_median"] - entry["baseline_median"] * (1.0 + float(p["judge_tolerance"]))
            if pvalue < alpha and worse_by > 0:
                entry["result"] = "fail"
                scores.append(0.0)
            elif pvalue < alpha:
                entry["result"] = "marginal"
                scores.append(0.5)
            else:
                entry["result"] = "pass"
                scores.append(1.0)
            metrics.append(entry)
        score = round(100.0 * sum(scores) / len(scores), 1) if scores else None
        if score is None:
            status, reason = "inconclusive", "too few per-interval samples (need %d per group)" % p["judge_min_samples"]
        elif score >= float(p["pass_score"]):
            status, reason = "pass", "score %s >= %s" % (_fmt(score), _fmt(float(p["pass_score"])))
        elif score >= float(p["marginal_score"]):
            status, reason = "inconclusive", "marginal score %s (< %s): needs a human" % (_fmt(score), _fmt(float(p["pass_score"])))
        else:
            status, reason = "fail", "score %s < %s" % (_fmt(score), _fmt(float(p["marginal_score"])))
        failing = [m["metric"] for m in metrics if m["result"] == "fail"]
        if failing:
            reason += "; worse: " + ", ".join(failing)
        return {"score": score, "status": status, "reason": reason, "metrics": metrics,
                "confidence": float(p["confidence"])}

    # ------------------------------------------------------------------ run
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
            if p["mode"] == "compare" and rounds > 0:
                self._judge_round(now)
            rounds += 1
            if p["fail_fast"] and any(self.state[c["name"]]["status"] == "fail" for c in active):
                stopped_early = scheduled < end
                break
            if scheduled >= end:
                break
            scheduled = min(scheduled + tick, end)
            delay = start + scheduled - self.clock()
            if delay > 0:
                self.sleep(delay)
        elapsed = self.clock() - start
        return self._result(active, skipped, rounds, elapsed, stopped_early)

    def _source_verdict(self, check, st):
        """Why a check's source cannot be trusted for a pass (fail closed), or None."""
        label = self._source_label(check)
        reached = st["failed_polls"] + st["samples"]
        if st["last_failed"]:
            return "source %s failed at the last poll (%d/%d polls failed): %s" % (
                label, st["failed_polls"], reached, st["last_error"])
        limit = self.p["max_source_failure_ratio"]
        if reached and st["failed_polls"] > limit * reached:
            return "source %s failed %d/%d polls (more than max_source_failure_ratio %s); last error: %s" % (
                label, st["failed_polls"], reached, _fmt(limit), st["last_error"])
        if check["metric"] == "health_failing_seconds" and st["value"]:
            # a target that stopped answering near the end has not failed long enough to breach, nor passed
            failing = sorted(t for t, h in self.health.items() if not h["healthy"])
            return "%s still failing at the end of the watch (%ss, limit %ss): %s" % (
                label, _fmt(st["value"]), _fmt(check["threshold"]), ", ".join(redact_url(t) for t in failing[:5]))
        return None

    @staticmethod
    def _target_met(check, value):
        if check.get("target") is None or value is None:
            return None
        # the target is on the healthy side of the failure comparison (error < 0.1 %, success > 99.9 %)
        if check["comparison"] in ("gt", "ge"):
            return value < check["target"]
        return value > check["target"]

    def _result(self, active, skipped, rounds, elapsed, stopped_early):
        p = self.p
        checks = []
        for check in self.checks:
            st = self.state[check["name"]]
            entry = {
                "name": check["name"], "metric": check["metric"], "comparison": check["comparison"],
                "threshold": check["threshold"], "effective_threshold": st["effective_threshold"],
                "baseline_factor": check["baseline_factor"], "baseline": st["baseline"], "value": st["value"],
                "samples": st["samples"], "min_samples": check["min_samples"], "breaches": st["breaches"],
                "failure_limit": check["failure_limit"], "window": check["window"], "interval": check["interval"],
                "source": self._source_label(check), "polls": st["polls"], "failed_polls": st["failed_polls"],
                "last_error": st["last_error"], "target": check["target"],
                "target_met": self._target_met(check, st["value"]),
                "required": bool(p["alerts_required"] and check["metric"] == "alerts"),
            }
            source_problem = None if check["name"] in skipped else self._source_verdict(check, st)
            if check["name"] in skipped:
                entry["status"] = "skipped"
                entry["reason"] = skipped[check["name"]]
            elif st["status"] == "fail":
                entry["status"] = "fail"
                entry["reason"] = st["reason"]
            elif (st["samples"] < max(1, check["min_samples"]) and not (check["min_samples"] == 0 and not st.get("error"))) \
                    or st.get("no_threshold"):
                entry["status"] = "inconclusive"
                needed = max(1, check["min_samples"])
                entry["reason"] = "%d/%d samples: %s" % (st["samples"], needed, st["reason"] or "no data")
            elif source_problem:
                entry["status"] = "inconclusive"
                entry["reason"] = source_problem
            else:
                entry["status"] = "measured" if p["mode"] == "baseline" else "pass"
                entry["reason"] = st["reason"]
            entry["reason"] = redact_text(entry["reason"])
            checks.append(entry)
        judge = None
        if p["mode"] == "compare":
            judge = self._judge()
            checks.append({"name": "canary_judge", "metric": "mann_whitney_u", "status": judge["status"],
                           "value": judge["score"], "threshold": float(p["pass_score"]), "comparison": "ge",
                           "samples": min([m["canary_samples"] for m in judge["metrics"]] or [0]),
                           "reason": judge["reason"]})
        statuses = [c["status"] for c in checks]
        # alerts_required: an alerts check that could not be judged fails, whatever on_inconclusive says
        required_missing = [c for c in checks if c.get("required") and c["status"] in ("inconclusive", "skipped")]
        if "fail" in statuses or required_missing:
            verdict = "fail"
        elif "inconclusive" in statuses or not any(s in ("pass", "measured") for s in statuses):
            verdict = "inconclusive"
        else:
            verdict = "pass"
        baseline = {}
        if p["mode"] == "baseline":
            baseline = dict((c["name"], c["value"]) for c in checks if c["status"] == "measured")
        elif p["mode"] == "compare":
            baseline = dict((c["name"], c["baseline"]) for c in checks if c.get("baseline") is not None)
        else:
            baseline = dict(p["baseline"] or {})
        if verdict == "fail":
            bad = [c for c in checks if c["status"] == "fail"]
            parts = ["%s %s" % (c["name"], c["reason"]) for c in bad]
            parts += ["%s inconclusive and alerts_required (may not pass unjudged): %s" % (c["name"], c["reason"])
                      for c in required_missing]
            parts += ["also inconclusive %s: %s" % (c["name"], c["reason"]) for c in checks
                      if c["status"] == "inconclusive" and c not in required_missing]
            summary = "health gate fail: " + "; ".join(parts)
        elif verdict == "inconclusive":
            bad = [c for c in checks if c["status"] == "inconclusive"] or checks
            summary = "health gate inconclusive (%s): %s" % (
                {"fail": "fails closed", "pass": "passed by on_inconclusive=pass", "warn": "warning only"}[
                    p["on_inconclusive"]],
                "; ".join("%s: %s" % (c["name"], c["reason"]) for c in bad))
        else:
            summary = "health gate pass: " + ", ".join(
                "%s=%s" % (c["name"], _fmt(c["value"])) for c in checks if c["status"] in ("pass", "measured"))
            missed = [c for c in checks if c.get("target_met") is False]
            if missed:
                summary += "; outside target: " + ", ".join(
                    "%s %s (target %s %s)" % (c["name"], _fmt(c["value"]), "<" if c["comparison"] in ("gt", "ge")
                                              else ">", _fmt(c["target"])) for c in missed)
        targets = dict((redact_url(t), dict(h, error=redact_text(h.get("error")))) for t, h in self.health.items())
        return {
            "verdict": verdict, "summary": redact_text(" ".join(summary.split())), "checks": checks,
            "baseline": baseline, "judge": judge, "targets": targets, "rounds": rounds, "elapsed": round(elapsed, 3),
            "stopped_early": stopped_early, "mode": p["mode"], "source": p["source"],
            "policy": [dict((k, v) for k, v in c.items()) for c in self.checks],
        }


def run_gate(params, sources=None, clock=time.monotonic, sleep=time.sleep):
    """Build and run a gate. Raises PolicyError on bad input (nothing is contacted then)."""
    return Gate(params, sources=sources, clock=clock, sleep=sleep).run()
