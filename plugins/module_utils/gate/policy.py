# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate policy: the checks of checks evaluated against real signals over time.

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

The gate loop is ``gate/loop.py``; measuring is ``gate/measure.py``, judging ``gate/judge.py``.
"""

from __future__ import annotations

import copy
import math

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils.gate.stats import parse_duration


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

COMPARISONS = {
    "gt": (lambda v, t: v > t, ">"),
    "ge": (lambda v, t: v >= t, ">="),
    "lt": (lambda v, t: v < t, "<"),
    "le": (lambda v, t: v <= t, "<="),
}
CHECK_KEYS = ("name", "metric", "comparison", "threshold", "target", "window", "interval", "failure_limit",
              "min_samples", "quantile", "baseline_factor", "baseline_floor", "severities", "matchers", "query",
              "enabled", "description")


def _metric(threshold, values, ratio=False, percent=False, scrape_rate=False, judge=False, query=None):
    """One metric: threshold range (low, low inclusive, high, high inclusive, what; checked before any poll), the
    values a real signal can have (anything else, NaN or infinite, is a failed poll), whether it is a fraction, may be
    written as a percent string ('5%'), is a rate over a window when scraped, is compared by the judge, and its PromQL
    default ($selector, $window, $quantile, $path, $memory_limit, $requests, $latency are substituted)."""
    return {"threshold": threshold, "values": values, "ratio": ratio, "percent": percent or ratio,
            "scrape_rate": scrape_rate, "judge": judge, "query": query}


_RATE = "sum(rate($requests{$selector$path}[$window]))"

# The metric registry: a new kind of signal is one entry here (plus its collection in measure.py). The tables below
# are derived from it, in this order.
METRIC_REGISTRY = {
    "health_failing_seconds": _metric((0.0, True, None, False, "seconds"), (0.0, None)),
    "error_rate": _metric((0.0, True, 1.0, True, "a fraction, 0.05 = 5 %, or a string like '5%'"), (0.0, 1.0),
                          ratio=True, scrape_rate=True, judge=True,
                          query='(sum(rate($requests{$selector$path,code=~"5.."}[$window])) or vector(0)) / ' + _RATE),
    "success_rate": _metric((0.0, True, 1.0, True, "a fraction, 0.99 = 99 %, or a string like '99%'"), (0.0, 1.0),
                            ratio=True, scrape_rate=True,
                            query='(sum(rate($requests{$selector$path,code!~"5.."}[$window])) or vector(0)) / '
                                  + _RATE),
    "latency": _metric((0.0, False, None, False, "seconds"), (0.0, None), scrape_rate=True, judge=True,
                       query="histogram_quantile($quantile, sum by (le) (rate($latency_bucket{$selector}[$window])))"),
    "alerts": _metric((0.0, True, None, False, "a number of alerts"), (0.0, None)),
    "unhealthy_ratio": _metric((0.0, True, 1.0, True, "a fraction, 0.1 = 10 %, or a string like '10%'"), (0.0, 1.0),
                               ratio=True, query="1 - avg(up{$selector})"),
    "cpu": _metric((0.0, False, None, False, "cores per instance, 0.9 = 90 % of one core, or '90%'"), (0.0, None),
                   percent=True, scrape_rate=True, query="max(rate(process_cpu_seconds_total{$selector}[$window]))"),
    "memory": _metric((0.0, False, None, False, "a fraction of memory_limit_bytes, 0.95 = 95 %, or '95%'"),
                      (0.0, None), percent=True, query="max(process_resident_memory_bytes{$selector}) / $memory_limit"),
    "query": _metric((None, False, None, False, "any finite number"), (None, None)),
}


def _metrics_with(flag):
    return tuple(name for name, spec in METRIC_REGISTRY.items() if spec[flag])


METRICS = tuple(METRIC_REGISTRY)
SCRAPE_RATE_METRICS = _metrics_with("scrape_rate")
RATIO_METRICS = _metrics_with("ratio")
PERCENT_METRICS = _metrics_with("percent")  # thresholds may be written as a percent string ("5%" = 0.05)
JUDGE_METRICS = _metrics_with("judge")
THRESHOLD_RANGES = dict((name, spec["threshold"]) for name, spec in METRIC_REGISTRY.items())
VALUE_RANGES = dict((name, spec["values"]) for name, spec in METRIC_REGISTRY.items())
DEFAULT_QUERIES = dict((name, spec["query"]) for name, spec in METRIC_REGISTRY.items() if spec["query"])


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


def _url(base, path):
    return base.rstrip("/") + "/" + path.lstrip("/")
