# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The health gate engine: a policy of checks evaluated against real signals over time.

``DEFAULT_POLICY`` is the seed's "Automatic Rollback Triggers" and "Post-Deployment Validation" tables. It is the one
place the defaults live: the module, the rollout strategies and playbooks all take it from here (override per run
with the module's ``policy`` / ``policy_overrides`` options).

Verdicts: ``pass`` (every check has enough samples and none breached its threshold ``failure_limit`` times in a row),
``fail`` (some check did), ``inconclusive`` (no data, too few samples, a source unreachable).
"""

from __future__ import annotations

import copy
import math
import time

from ansible_collections.meshos.release.plugins.module_utils import _health_sources as sources_mod
from ansible_collections.meshos.release.plugins.module_utils._stats import (
    bucket_delta, counter_delta, format_duration, histogram_buckets, histogram_quantile,
    mann_whitney_u, median, parse_duration, parse_exposition,
)

SourceError = sources_mod.SourceError

# The seed's tables. Thresholds are the "rollback trigger" / "alert threshold" columns.
DEFAULT_POLICY = [
    {"name": "health_checks", "metric": "health_failing_seconds", "comparison": "gt", "threshold": 120,
     "description": "a target's health check failing for > 2 minutes"},
    {"name": "error_rate", "metric": "error_rate", "comparison": "gt", "threshold": 0.05,
     "description": "error rate > 5 %"},
    {"name": "success_rate", "metric": "success_rate", "comparison": "lt", "threshold": 0.99,
     "description": "success rate < 99 % (target > 99.9 %)"},
    {"name": "latency_p95", "metric": "latency", "quantile": 0.95, "comparison": "gt", "threshold": 1.0,
     "baseline_factor": 2.0, "baseline_floor": 0.05,
     "description": "latency P95 > 2x baseline (floor 50 ms) or > 1000 ms (target < 500 ms)"},
    {"name": "critical_alerts", "metric": "alerts", "severities": ["critical"], "comparison": "gt", "threshold": 0,
     "description": "any critical alert fired (silenced / inhibited alerts ignored)"},
    {"name": "agents_unhealthy", "metric": "unhealthy_ratio", "comparison": "gt", "threshold": 0.10,
     "description": "> 10 % of agents unhealthy (target > 95 % healthy)"},
    {"name": "cpu_usage", "metric": "cpu", "comparison": "gt", "threshold": 0.90,
     "description": "CPU usage > 90 % (of one core per instance)"},
    {"name": "memory_usage", "metric": "memory", "comparison": "gt", "threshold": 0.95,
     "description": "memory usage > 95 % of memory_limit_bytes"},
]

METRICS = ("health_failing_seconds", "error_rate", "success_rate", "latency", "alerts", "unhealthy_ratio",
           "cpu", "memory", "query")
SCRAPE_RATE_METRICS = ("error_rate", "success_rate", "latency", "cpu")
COMPARISONS = {
    "gt": (lambda v, t: v > t, ">"),
    "ge": (lambda v, t: v >= t, ">="),
    "lt": (lambda v, t: v < t, "<"),
    "le": (lambda v, t: v <= t, "<="),
}
CHECK_KEYS = ("name", "metric", "comparison", "threshold", "window", "interval", "failure_limit", "min_samples",
              "quantile", "baseline_factor", "baseline_floor", "severities", "matchers", "query", "enabled",
              "description")

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


class PolicyError(ValueError):
    """Bad gate input (policy, options). One-line message naming the bad value and what is allowed."""


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return float(str(value))
        except ValueError:
            raise PolicyError("%s: %r is not a number" % (where, value))
    return float(value)


def build_policy(policy=None, overrides=None, only=None, default_window=30.0, default_interval=5.0):
    """Validate and normalise a policy (list of check dicts). Raises PolicyError."""
    raw = copy.deepcopy(DEFAULT_POLICY if policy is None else policy)
    if not isinstance(raw, list) or not raw:
        raise PolicyError("policy: must be a non-empty list of checks")
    names = []
    for index, check in enumerate(raw):
        if not isinstance(check, dict):
            raise PolicyError("policy[%d]: %r is not a dict" % (index, check))
        names.append(check.get("name"))
    for name, change in (overrides or {}).items():
        if name not in names:
            raise PolicyError("policy_overrides: %r is not a check of the policy; known: %s" % (name, ", ".join(map(str, names))))
        if not isinstance(change, dict):
            raise PolicyError("policy_overrides.%s: %r is not a dict" % (name, change))
        raw[names.index(name)].update(change)
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
        out = {
            "name": name, "metric": metric, "comparison": comparison,
            "threshold": None if threshold is None else _number(threshold, where + " threshold"),
            "failure_limit": int(_number(check.get("failure_limit", 1), where + " failure_limit")),
            "min_samples": int(_number(check.get("min_samples", 1), where + " min_samples")),
            "quantile": _number(check.get("quantile", 0.95), where + " quantile"),
            "baseline_factor": None if check.get("baseline_factor") is None
            else _number(check["baseline_factor"], where + " baseline_factor"),
            "baseline_floor": _number(check.get("baseline_floor", 0.0), where + " baseline_floor"),
            "severities": list(check.get("severities") or ["critical"]),
            "matchers": dict(check.get("matchers") or {}),
            "query": check.get("query"),
            "enabled": bool(check.get("enabled", True)) and (not only or name in only),
            "description": check.get("description", ""),
        }
        try:
            out["window"] = parse_duration(check["window"], where + " window") if check.get("window") is not None \
                else default_window
            out["interval"] = parse_duration(check["interval"], where + " interval") \
                if check.get("interval") is not None else default_interval
        except ValueError as exc:
            raise PolicyError(str(exc))
        if out["failure_limit"] < 1 or out["min_samples"] < 0:
            raise PolicyError("%s: failure_limit must be >= 1 and min_samples >= 0" % where)
        if not 0 <= out["quantile"] <= 1:
            raise PolicyError("%s: quantile %r is not between 0 and 1" % (where, out["quantile"]))
        if out["interval"] <= 0:
            raise PolicyError("%s: interval must be > 0" % where)
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
    "pass_score": 75.0, "marginal_score": 50.0,
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
        if p["interval"] <= 0:
            raise PolicyError("interval: %r must be > 0" % params.get("interval"))
        if p["timeout"] <= 0:
            raise PolicyError("timeout: %r must be > 0" % params.get("timeout"))
        if p["source"] not in ("scrape", "prometheus"):
            raise PolicyError("source: %r is not one of scrape, prometheus" % p["source"])
        if p["agents_source"] not in ("endpoints", "haproxy", "prometheus"):
            raise PolicyError("agents_source: %r is not one of endpoints, haproxy, prometheus" % p["agents_source"])
        if p["mode"] not in ("gate", "baseline", "compare"):
            raise PolicyError("mode: %r is not one of gate, baseline, compare" % p["mode"])
        if p["on_inconclusive"] not in ("fail", "pass", "warn"):
            raise PolicyError("on_inconclusive: %r is not one of fail, pass, warn" % p["on_inconclusive"])
        if not 0 < float(p["confidence"]) < 1:
            raise PolicyError("confidence: %r is not between 0 and 1 (exclusive)" % p["confidence"])
        for url in list(p["targets"]) + list(p["baseline_targets"]):
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise PolicyError("targets: %r is not an http:// or https:// base URL" % (url,))
        if p["mode"] == "compare" and p["source"] == "scrape" and not p["baseline_targets"]:
            raise PolicyError("mode: compare with source scrape needs baseline_targets (the stable group)")
        if p["mode"] == "compare" and p["source"] == "prometheus" and not p["baseline_selector"]:
            raise PolicyError("mode: compare with source prometheus needs baseline_selector (the stable group)")
        if p["source"] == "prometheus" and not p["prometheus_url"]:
            raise PolicyError("source: prometheus needs prometheus_url")
        self.p = p
        self.checks = build_policy(p["policy"], p["policy_overrides"], p["checks"], p["window"], p["interval"])
        self.src = sources or Sources(p)
        self.clock = clock
        self.sleep = sleep
        self.snaps = {"targets": [], "baseline": []}
        self.fail_since = {}
        self.health = {}
        self.judge_samples = {"canary": dict((m, []) for m in JUDGE_METRICS),
                              "baseline": dict((m, []) for m in JUDGE_METRICS)}
        self.state = dict((c["name"], {"samples": 0, "breaches": 0, "consecutive": 0, "value": None,
                                       "baseline": None, "effective_threshold": None, "reason": "",
                                       "status": None, "last": None, "values": []}) for c in self.checks)

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
                for target in targets:
                    answer = answers.get(_url(target, p["metrics_path"])) or {"error": "no answer"}
                    if answer.get("error") is None and answer.get("status") == 200:
                        snap[target] = parse_exposition((answer.get("body") or b"").decode("utf-8", "replace"))
                    else:
                        snap[target] = None
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
            _t, snap = self.snaps[group][-1]
            rss = [v for target, samples in snap.items() if samples for (n, _l, v) in samples
                   if n == "process_resident_memory_bytes"]
            if not rss:
                return None, "no process_resident_memory_bytes from any target"
            return max(rss) / float(p["memory_limit_bytes"]), "max over %d targets" % len(rss)
        old, new = self._scrape_pair(group, now, window)
        if old is None:
            return None, "waiting for a scrape %s apart" % format_duration(window)
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
        values = [v for _labels, v in series if not math.isnan(v)]
        if not values:
            return None, "no data for %s" % query
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
            return value, "baseline group: %s" % reason
        given = (p["baseline"] or {}).get(check["name"])
        if given is not None:
            return _number(given, "baseline.%s" % check["name"]), "given baseline"
        return None, "no baseline given"

    def _evaluate(self, check, now):
        st = self.state[check["name"]]
        st["last"] = now
        try:
            value, reason = self._measure(check, now)
        except SourceError as exc:
            st["reason"] = str(exc)
            st["error"] = True
            return
        st["error"] = False
        if value is None:
            st["reason"] = reason
            return
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
            }
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
            else:
                entry["status"] = "measured" if p["mode"] == "baseline" else "pass"
                entry["reason"] = st["reason"]
            checks.append(entry)
        judge = None
        if p["mode"] == "compare":
            judge = self._judge()
            checks.append({"name": "canary_judge", "metric": "mann_whitney_u", "status": judge["status"],
                           "value": judge["score"], "threshold": float(p["pass_score"]), "comparison": "ge",
                           "samples": min([m["canary_samples"] for m in judge["metrics"]] or [0]),
                           "reason": judge["reason"]})
        statuses = [c["status"] for c in checks]
        if "fail" in statuses:
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
            summary = "health gate fail: " + "; ".join("%s %s" % (c["name"], c["reason"]) for c in bad)
        elif verdict == "inconclusive":
            bad = [c for c in checks if c["status"] == "inconclusive"] or checks
            summary = "health gate inconclusive (%s): %s" % (
                {"fail": "fails closed", "pass": "passed by on_inconclusive=pass", "warn": "warning only"}[
                    p["on_inconclusive"]],
                "; ".join("%s: %s" % (c["name"], c["reason"]) for c in bad))
        else:
            summary = "health gate pass: " + ", ".join(
                "%s=%s" % (c["name"], _fmt(c["value"])) for c in checks if c["status"] in ("pass", "measured"))
        return {
            "verdict": verdict, "summary": " ".join(summary.split()), "checks": checks, "baseline": baseline,
            "judge": judge, "targets": self.health, "rounds": rounds, "elapsed": round(elapsed, 3),
            "stopped_early": stopped_early, "mode": p["mode"], "source": p["source"],
            "policy": [dict((k, v) for k, v in c.items()) for c in self.checks],
        }


def run_gate(params, sources=None, clock=time.monotonic, sleep=time.sleep):
    """Build and run a gate. Raises PolicyError on bad input (nothing is contacted then)."""
    return Gate(params, sources=sources, clock=clock, sleep=sleep).run()
