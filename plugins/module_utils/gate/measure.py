# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate's measurements: scrape /metrics and /health, Prometheus, Alertmanager, HAProxy, one round at a time.
"""

from __future__ import annotations

import math

from ansible_collections.meshos.release.plugins.module_utils._redact import redact_url
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import (
    DEFAULT_QUERIES,
    _fmt,
    _url,
    _value_problem,
)
from ansible_collections.meshos.release.plugins.module_utils.gate.sources import SourceError
from ansible_collections.meshos.release.plugins.module_utils.gate.stats import (
    bucket_delta,
    counter_delta,
    format_duration,
    histogram_buckets,
    histogram_quantile,
    parse_exposition,
)


class GateMeasure:
    """Polling the sources: one round of samples per check."""

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
            if p["agents_source"] == "kubernetes" and not p["agents_workload"]:
                return "agents_source kubernetes needs agents_workload"
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
        if metric == "unhealthy_ratio" and p["agents_source"] == "kubernetes":
            workload = p["agents_workload"] or {}
            return "kubernetes %s %s/%s pods" % (workload.get("kind") or "Deployment",
                                                 workload.get("namespace") or "default", workload.get("name"))
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

    def _group_requests(self, group, now, window):
        """Requests a group served over ``window`` (for the canary's actual traffic share), None when unreadable."""
        p = self.p
        if p["source"] == "prometheus":
            selector = p["prometheus_selector"] if group == "targets" else p["baseline_selector"]
            probe = {"metric": "query", "quantile": 0.95, "query": "sum(increase($requests{$selector$path}[$window]))"}
            try:
                values = [v for _labels, v in self.src.prom(self._template(probe, selector, window))]
            except SourceError:
                return None
            values = [v for v in values if math.isfinite(v) and v >= 0]
            return sum(values) if values else None
        old, new = self._scrape_pair(group, now, window)
        if old is None:
            return None
        total = 0.0
        for target, after in new[1].items():
            before = old[1].get(target)
            if not after or not before:
                return None
            counted = self._requests(before)
            total += sum(counter_delta(counted.get(k, 0.0), v) for k, v in self._requests(after).items())
        return total

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
            if p["agents_source"] == "kubernetes":
                pods = self.src.kubernetes_agents()
                if not pods["desired"] and not pods["pods"]:
                    return None, "%s %s wants no pods" % (pods["kind"], pods["name"])
                return pods["unhealthy_ratio"], "%s %s: %d/%d pods unhealthy%s" % (
                    pods["kind"], pods["name"], pods["unhealthy"], max(pods["desired"], pods["pods"]),
                    (": " + "; ".join(pods["unhealthy_pods"][:5])) if pods["unhealthy_pods"] else "")
            return self._prom_value(check, selector, check["window"])
        if metric == "alerts":
            alerts = self.src.alerts(check["severities"], check["matchers"])
            names = sorted(set(a.get("alertname", "?") for a in alerts))
            return float(len(alerts)), ("firing: " + ", ".join(names)) if names else "no matching active alerts"
        if metric == "query" or p["source"] == "prometheus":
            return self._prom_value(check, selector, check["window"])
        return self._scrape_value(check, group, now, check["window"])
