# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate's verdicts: thresholds against samples, baseline comparison (the judge), and the result table.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils._redact import redact_text, redact_url
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import (
    COMPARISONS,
    JUDGE_METRICS,
    _fmt,
    _number,
    _value_problem,
)
from ansible_collections.meshos.release.plugins.module_utils.gate.sources import SourceError
from ansible_collections.meshos.release.plugins.module_utils.gate.stats import mann_whitney_u, median


class GateJudge:
    """Verdicts: per-check evaluation, the canary judge, the result table."""

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
        # the canary's actual share of the requests, measured over the same intervals as the samples
        groups = (("targets", "canary"), ("baseline", "baseline"))
        served = dict((key, self._group_requests(group, now, window)) for group, key in groups)
        if None not in served.values():
            self.judge_traffic["canary"] += served["canary"]
            self.judge_traffic["baseline"] += served["baseline"]
            self.judge_traffic["rounds"] += 1

    def _judge(self):
        """One judgement of the canary group against the baseline group over the interval just sampled.

        Per metric (Mann-Whitney U, canary greater than baseline at ``confidence``): pass (not worse), marginal
        (worse, within ``judge_tolerance`` of the baseline median) or fail (worse beyond it); the score is 100 x the
        mean of pass 1, marginal 0.5, fail 0. Score >= pass_score passes, >= marginal_score is marginal (held and
        judged again, see loop.py), below fails; a failed ``judge_critical`` metric fails whatever the score.
        """
        p = self.p
        alpha = 1.0 - float(p["confidence"])
        metrics = []
        scores = []
        for metric in JUDGE_METRICS:
            canary = self.judge_samples["canary"][metric]
            base = self.judge_samples["baseline"][metric]
            entry = {"metric": metric, "canary_samples": len(canary), "baseline_samples": len(base),
                     "canary_median": median(canary), "baseline_median": median(base), "p_value": None, "u": None,
                     "critical": metric in p["judge_critical"]}
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
        critical = [m["metric"] for m in metrics if m["result"] == "fail" and m["critical"]]
        if score is None:
            status, reason = "inconclusive", "too few per-interval samples (need %d per group)" % p["judge_min_samples"]
        elif critical:
            status, reason = "fail", "critical metric %s worse than the baseline (score %s)" % (
                ", ".join(critical), _fmt(score))
        elif score >= float(p["pass_score"]):
            status, reason = "pass", "score %s >= %s" % (_fmt(score), _fmt(float(p["pass_score"])))
        elif score >= float(p["marginal_score"]):
            status, reason = "marginal", "marginal score %s (< %s, >= %s)" % (
                _fmt(score), _fmt(float(p["pass_score"])), _fmt(float(p["marginal_score"])))
        else:
            status, reason = "fail", "score %s < %s" % (_fmt(score), _fmt(float(p["marginal_score"])))
        failing = [m["metric"] for m in metrics if m["result"] == "fail" and m["metric"] not in critical]
        if failing:
            reason += "; worse: " + ", ".join(failing)
        served = self.judge_traffic
        total = served["canary"] + served["baseline"]
        traffic = {"canary_requests": int(served["canary"]), "baseline_requests": int(served["baseline"]),
                   "canary_share_percent": round(100.0 * served["canary"] / total, 2) if total > 0 else None,
                   "intervals": served["rounds"]}
        return {"score": score, "status": status, "reason": reason, "metrics": metrics,
                "confidence": float(p["confidence"]), "traffic": traffic}

    def _final_judgement(self):
        """The decisive judgement: marginal after every re-judgement fails (Kayenta: a held canary may not pass)."""
        judgements = self.judgements or [self._judge()]
        last = dict(judgements[-1])
        rejudged = len(judgements) - 1
        if last["status"] == "marginal":
            last["status"] = "fail"
            last["reason"] = "still %s after %d re-judgement(s) (judge_rejudgements %d)" % (
                last["reason"], rejudged, int(self.p["judge_rejudgements"]))
        last["rejudgements"] = rejudged
        last["judgements"] = [{"score": j["score"], "status": j["status"], "reason": j["reason"], "at": j.get("at"),
                               "traffic": j["traffic"]} for j in judgements]
        last["thresholds"] = {"pass_score": float(self.p["pass_score"]), "marginal_score": float(self.p["marginal_score"]),
                              "rejudgements": int(self.p["judge_rejudgements"]), "critical": list(self.p["judge_critical"])}
        return last

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
            judge = self._final_judgement()
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
