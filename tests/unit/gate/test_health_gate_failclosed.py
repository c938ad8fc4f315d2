# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate fails closed: sources that stop answering, impossible values, out-of-range thresholds, profiles,
alerts_required and credential masking. Clock and sleep are fakes: nothing waits, nothing is contacted."""

from __future__ import annotations

import json
import math

import pytest

from ansible_collections.meshos.release.plugins.module_utils.gate.loop import run_gate
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import PROFILES, PolicyError, build_policy
from ansible_collections.meshos.release.plugins.module_utils.gate.sources import SourceError

PROM = "http://gate:s3cr3t-pass@prom.example:9090"
AM = "http://am.example:9093/?token=am-t0ken-value"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Script:
    """Sources whose answers follow the fake clock: ``prom_at(t)`` / ``alerts_at(t)`` return a value or raise."""

    def __init__(self, clock, prom_at=None, alerts_at=None, health_down_at=None, metrics_down_at=None):
        self.clock = clock
        self.prom_at = prom_at
        self.alerts_at = alerts_at
        self.health_down_at = health_down_at or {}
        self.metrics_down_at = metrics_down_at or {}
        self.prom_calls = 0

    def fetch(self, urls, want_body):
        out = {}
        now = self.clock.now
        for url in urls:
            base, _sep, path = url.rpartition("/")
            down_at = (self.health_down_at if path == "health" else self.metrics_down_at).get(base)
            if down_at is not None and now >= down_at:
                out[url] = {"status": None, "error": "connect: ECONNREFUSED", "body": None}
            elif path == "health":
                out[url] = {"status": 200, "error": None, "body": None}
            else:
                n = 100 * now
                body = "\n".join([
                    'meshapp_requests_total{path="/",code="200"} %d' % n,
                    'meshapp_request_duration_seconds_bucket{le="0.1"} %d' % n,
                    'meshapp_request_duration_seconds_bucket{le="+Inf"} %d' % n,
                    "process_cpu_seconds_total %.3f" % (0.1 * now),
                    "process_resident_memory_bytes 1000"])
                out[url] = {"status": 200, "error": None, "body": body.encode()}
        return out

    def prom(self, query):
        self.prom_calls += 1
        value = self.prom_at(self.clock.now, query)
        if isinstance(value, Exception):
            raise value
        return [({}, value)]

    def alerts(self, severities, matchers):
        value = self.alerts_at(self.clock.now)
        if isinstance(value, Exception):
            raise value
        return value

    def haproxy(self):
        return []


def prom_unreachable():
    return SourceError("prometheus %s/api/v1/query unreachable: [Errno 111] Connection refused" % PROM)


def gate(fake, sources, **params):
    params.setdefault("targets", ["http://t1", "http://t2"])
    return run_gate(params, sources=sources, clock=fake.clock, sleep=fake.sleep)


def by_name(result):
    return dict((c["name"], c) for c in result["checks"])


# ------------------------------------------------------------------------------------------ sources stop answering

def test_prometheus_stopping_mid_window_is_inconclusive_not_pass():
    fake = FakeClock()
    # healthy 0.1 % errors for 6 s, then Prometheus is gone: the earlier samples must not make a pass
    sources = Script(fake, prom_at=lambda t, q: 0.001 if t < 6 else prom_unreachable())
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, checks=["error_rate"],
                  duration="10s", interval="2s")
    check = by_name(result)["error_rate"]
    assert result["verdict"] == "inconclusive"
    assert check["status"] == "inconclusive" and check["samples"] == 3 and check["failed_polls"] == 3
    assert "failed at the last poll" in check["reason"] and "Connection refused" in check["reason"]
    assert check["source"].startswith("prometheus http://")
    assert "fails closed" in result["summary"]


def test_one_blip_within_the_bound_still_passes():
    fake = FakeClock()
    # 1 failed poll of 6 (t=4), last poll fine: 1/6 <= 0.2
    sources = Script(fake, prom_at=lambda t, q: prom_unreachable() if t == 4 else 0.001)
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, checks=["error_rate"],
                  duration="10s", interval="2s")
    assert result["verdict"] == "pass", result["summary"]
    assert by_name(result)["error_rate"]["failed_polls"] == 1


def test_too_many_failed_polls_is_inconclusive_even_if_the_last_answered():
    fake = FakeClock()
    flaky = {2, 4, 6}  # 3 of 6 polls fail, the last (t=10) answers
    sources = Script(fake, prom_at=lambda t, q: prom_unreachable() if t in flaky else 0.001)
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, checks=["error_rate"],
                  duration="10s", interval="2s")
    check = by_name(result)["error_rate"]
    assert check["status"] == "inconclusive"
    assert "failed 3/6 polls" in check["reason"] and "max_source_failure_ratio 0.2" in check["reason"]
    # a looser bound the caller chose accepts it
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: prom_unreachable() if t in flaky else 0.001)
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, checks=["error_rate"],
                  duration="10s", interval="2s", max_source_failure_ratio=0.5)
    assert result["verdict"] == "pass"


def test_a_breach_before_the_source_stopped_still_fails():
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: 0.3 if t < 4 else prom_unreachable())
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, checks=["error_rate"],
                  duration="10s", interval="2s", fail_fast=False)
    assert result["verdict"] == "fail"


def test_alertmanager_stopping_mid_window_is_inconclusive():
    fake = FakeClock()
    sources = Script(fake, alerts_at=lambda t: [] if t < 5 else SourceError("alertmanager %s unreachable" % AM))
    result = gate(fake, sources, alertmanager_url=AM, checks=["critical_alerts"], duration="10s", interval="1s")
    check = by_name(result)["critical_alerts"]
    assert result["verdict"] == "inconclusive" and check["status"] == "inconclusive"
    assert "alertmanager" in check["reason"]


def test_alertmanager_down_at_start_is_inconclusive_not_skipped():
    fake = FakeClock()
    sources = Script(fake, alerts_at=lambda t: SourceError("alertmanager %s unreachable: refused" % AM))
    result = gate(fake, sources, alertmanager_url=AM, checks=["critical_alerts"])
    assert by_name(result)["critical_alerts"]["status"] == "inconclusive"
    assert result["verdict"] == "inconclusive"


@pytest.mark.parametrize("on_inconclusive", ["fail", "warn", "pass"])
def test_alerts_required_fails_whatever_on_inconclusive_says(on_inconclusive):
    fake = FakeClock()
    sources = Script(fake, alerts_at=lambda t: SourceError("alertmanager %s unreachable: refused" % AM))
    # the caller's checks leave the alerts out: alerts_required runs them anyway
    result = gate(fake, sources, alertmanager_url=AM, checks=["agents_unhealthy"], alerts_required=True,
                  on_inconclusive=on_inconclusive)
    assert result["verdict"] == "fail"
    assert "critical_alerts inconclusive and alerts_required" in result["summary"]
    assert by_name(result)["critical_alerts"]["required"] is True


def test_alerts_required_passes_when_alertmanager_answers():
    fake = FakeClock()
    result = gate(fake, Script(fake, alerts_at=lambda t: []), alertmanager_url=AM, checks=["critical_alerts"],
                  alerts_required=True)
    assert result["verdict"] == "pass"


def test_alerts_required_needs_an_alertmanager():
    with pytest.raises(PolicyError) as err:
        run_gate({"targets": ["http://t1"], "alerts_required": True}, sources=object())
    assert "alerts_required" in str(err.value) and "alertmanager_url" in str(err.value)


def test_scrape_target_unreadable_at_the_end_is_inconclusive():
    fake = FakeClock()
    sources = Script(fake, metrics_down_at={"http://t2": 9})
    result = gate(fake, sources, checks=["error_rate", "memory_usage"], window="5s", interval="1s", duration="10s")
    for name in ("error_rate", "memory_usage"):
        check = by_name(result)[name]
        assert check["status"] == "inconclusive", check
        assert "http://t2" in check["reason"] and "ECONNREFUSED" in check["reason"]


def test_health_endpoint_stopping_near_the_end_is_inconclusive():
    fake = FakeClock()
    sources = Script(fake, health_down_at={"http://t2": 8})
    result = gate(fake, sources, checks=["health_checks"], duration="10s", interval="1s")
    check = by_name(result)["health_checks"]
    assert check["status"] == "inconclusive" and "still failing" in check["reason"] and "http://t2" in check["reason"]
    # long enough down: a real failure
    fake = FakeClock()
    sources = Script(fake, health_down_at={"http://t2": 0})
    result = gate(fake, sources, checks=["health_checks"], duration="10s", interval="1s", profile="batch")
    assert result["verdict"] == "fail"


# ------------------------------------------------------------------------------------------ impossible values

@pytest.mark.parametrize("check,value", [
    ("error_rate", -0.01), ("error_rate", math.inf), ("error_rate", -math.inf), ("error_rate", math.nan),
    ("error_rate", 1.5), ("success_rate", math.inf), ("success_rate", 1.2), ("success_rate", -0.5),
    ("latency_p95", -1.0), ("latency_p95", -math.inf), ("latency_p95", math.nan), ("cpu_usage", -0.2),
    ("memory_usage", math.inf), ("memory_usage", -1.0), ("agents_unhealthy", -0.1), ("agents_unhealthy", math.nan),
])
def test_impossible_prometheus_values_never_pass(check, value):
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: value)
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, agents_source="prometheus",
                  checks=[check], duration="4s", interval="2s")
    entry = by_name(result)[check]
    assert result["verdict"] == "inconclusive" and entry["status"] == "inconclusive", entry
    assert "invalid" in entry["reason"] and "prometheus: " in entry["reason"]  # the query is named
    assert entry["samples"] == 0


def test_nan_beside_a_good_series_is_still_invalid():
    fake = FakeClock()

    class Two(Script):
        def prom(self, query):
            return [({"instance": "a"}, 0.001), ({"instance": "b"}, math.nan)]

    result = gate(fake, Two(fake), source="prometheus", prometheus_url=PROM, checks=["error_rate"])
    assert by_name(result)["error_rate"]["status"] == "inconclusive"


# ------------------------------------------------------------------------------------------ range checks

@pytest.mark.parametrize("overrides,needle", [
    ({"error_rate": {"threshold": 5}}, "policy_overrides.error_rate.threshold: 5 is out of range; allowed: 0 <= threshold <= 1"),
    ({"success_rate": {"threshold": -1}}, "policy_overrides.success_rate.threshold: -1 is out of range"),
    ({"agents_unhealthy": {"threshold": 1.1}}, "policy_overrides.agents_unhealthy.threshold: 1.1"),
    ({"latency_p95": {"threshold": 0}}, "allowed: 0 < threshold"),
    ({"latency_p95": {"threshold": -0.5}}, "-0.5 is out of range"),
    ({"latency_p95": {"baseline_factor": 0}}, "baseline_factor: 0 is out of range; allowed: 0 < baseline_factor"),
    ({"latency_p95": {"baseline_floor": -1}}, "baseline_floor: -1"),
    ({"cpu_usage": {"threshold": 0}}, "cpu_usage.threshold: 0"),
    ({"memory_usage": {"threshold": "-5%"}}, "memory_usage.threshold: -0.05"),
    ({"error_rate": {"threshold": "nan"}}, "not a finite number"),
    ({"error_rate": {"threshold": float("inf")}}, "not a finite number"),
    ({"error_rate": {"threshold": "5 percent"}}, "is not a number"),
    ({"error_rate": {"window": 0}}, "window: 0 is out of range; allowed: 0 < window"),
    ({"error_rate": {"interval": "0s"}}, "interval: 0 is out of range"),
    ({"error_rate": {"failure_limit": 0}}, "failure_limit: 0"),
    ({"latency_p95": {"quantile": 0}}, "quantile: 0"),
    ({"health_checks": {"threshold": -1}}, "health_checks.threshold: -1"),
    ({"critical_alerts": {"threshold": -1}}, "critical_alerts.threshold: -1"),
])
def test_out_of_range_policy_values_are_one_line_errors(overrides, needle):
    with pytest.raises(PolicyError) as err:
        build_policy(overrides=overrides)
    assert needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_percent_strings_are_fractions():
    checks = dict((c["name"], c) for c in build_policy(overrides={"error_rate": {"threshold": "2%"},
                                                                  "memory_usage": {"threshold": "90 %"}}))
    assert checks["error_rate"]["threshold"] == pytest.approx(0.02)
    assert checks["memory_usage"]["threshold"] == pytest.approx(0.9)
    with pytest.raises(PolicyError):
        build_policy(overrides={"latency_p95": {"threshold": "50%"}})  # latency is seconds, never a percent


@pytest.mark.parametrize("params,needle", [
    ({"interval": 0}, "interval: 0 is out of range; allowed: 0 < interval"),
    ({"window": "0s"}, "window: 0 is out of range"),
    ({"timeout": 0}, "timeout: 0 is out of range"),
    ({"duration": -5}, "duration: -5 is negative"),
    ({"duration": float("inf")}, "not a finite number"),
    ({"interval": float("nan")}, "not a finite number"),
    ({"memory_limit_bytes": 0}, "memory_limit_bytes: 0 is out of range"),
    ({"max_source_failure_ratio": 1}, "max_source_failure_ratio: 1 is out of range; allowed: 0 <= max_source_failure_ratio < 1"),
    ({"max_source_failure_ratio": -0.1}, "max_source_failure_ratio: -0.1"),
    ({"pass_score": 101}, "pass_score: 101"),
    ({"marginal_score": 80}, "marginal_score: 80 is out of range; allowed: marginal_score <= pass_score"),
    ({"judge_tolerance": -1}, "judge_tolerance: -1"),
    ({"confidence": 1}, "confidence: 1"),
    ({"baseline": {"latency_p95": -0.1}}, "baseline.latency_p95: -0.1"),
    ({"baseline": {"latency_p95": "nan"}}, "baseline.latency_p95: 'nan' is not a finite number"),
    ({"profile": "yolo"}, "profile: 'yolo' is not one of batch, post_deploy, rollback_triggers"),
    ({"prometheus_url": "ftp://u:pw@x"}, "prometheus_url: 'ftp://********@x'"),
])
def test_bad_options_fail_before_any_poll(params, needle):
    params.setdefault("targets", ["http://t1"])

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("a source was contacted: %s" % name)

    with pytest.raises(PolicyError) as err:
        run_gate(params, sources=Untouchable())
    assert needle in str(err.value), str(err.value)


# ------------------------------------------------------------------------------------------ profiles

def test_profiles_carry_the_seed_table():
    post = dict((c["name"], c) for c in build_policy(profile="post_deploy"))
    batch = dict((c["name"], c) for c in build_policy(profile="batch"))
    rollback = dict((c["name"], c) for c in build_policy())
    assert rollback["error_rate"]["threshold"] == 0.05  # the trigger, unchanged default
    for checks in (post, batch):
        assert checks["error_rate"]["threshold"] == 0.01 and checks["error_rate"]["target"] == 0.001
        assert checks["success_rate"]["threshold"] == 0.99 and checks["success_rate"]["target"] == 0.999
        assert checks["latency_p95"]["threshold"] == 1.0 and checks["latency_p95"]["baseline_factor"] == 2.0
        assert checks["cpu_usage"]["threshold"] == 0.9 and checks["memory_usage"]["threshold"] == 0.95
        assert checks["agents_unhealthy"]["threshold"] == 0.1
    assert batch["health_checks"]["threshold"] == 5 and post["health_checks"]["threshold"] == 120
    assert [c["name"] for c in PROFILES["batch"]] == [c["name"] for c in PROFILES["rollback_triggers"]]


def test_batch_profile_fails_a_two_percent_error_release_and_overrides_win():
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: 0.02)
    common = dict(source="prometheus", prometheus_url=PROM, checks=["error_rate"])
    assert gate(fake, sources, **common)["verdict"] == "pass"  # rollback trigger is 5 %
    assert gate(fake, sources, profile="batch", **common)["verdict"] == "fail"
    result = gate(fake, sources, profile="batch", policy_overrides={"error_rate": {"threshold": 0.03}}, **common)
    assert result["verdict"] == "pass"


def test_batch_profile_fails_a_slow_release_absolute_and_relative():
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: 1.2)
    common = dict(source="prometheus", prometheus_url=PROM, checks=["latency_p95"], profile="batch")
    assert gate(fake, sources, **common)["verdict"] == "fail"
    sources = Script(fake, prom_at=lambda t, q: 0.3)
    result = gate(fake, sources, baseline={"latency_p95": 0.1}, **common)
    assert result["verdict"] == "fail" and by_name(result)["latency_p95"]["effective_threshold"] == pytest.approx(0.2)


def test_cpu_and_memory_from_scrape_and_targets_reported():
    fake = FakeClock()
    result = gate(fake, Script(fake), checks=["cpu_usage", "memory_usage"], window="5s", interval="1s",
                  memory_limit_bytes=1200)
    checks = by_name(result)
    assert checks["cpu_usage"]["value"] == pytest.approx(0.1) and checks["cpu_usage"]["target_met"] is True
    # 1000 of 1200 bytes = 83 %: under the 95 % threshold, under the 85 % target
    assert checks["memory_usage"]["value"] == pytest.approx(1000 / 1200.0)
    assert result["verdict"] == "pass"
    fake = FakeClock()
    result = gate(fake, Script(fake), checks=["memory_usage"], memory_limit_bytes=1100)
    assert result["verdict"] == "pass" and by_name(result)["memory_usage"]["target_met"] is False
    assert "outside target: memory_usage" in result["summary"]


# ------------------------------------------------------------------------------------------ credentials

def test_credentials_never_in_messages_or_results():
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: prom_unreachable(),
                     alerts_at=lambda t: SourceError("alertmanager %s/api/v2/alerts unreachable" % AM))
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, alertmanager_url=AM,
                  targets=["http://user:hunter22@t1"], checks=["error_rate", "critical_alerts", "health_checks"])
    text = repr(result)
    for secret in ("s3cr3t-pass", "am-t0ken-value", "hunter22"):
        assert secret not in text
    assert "********" in result["summary"]


# ------------------------------------------------------------------------------------------ progress for the operator

def test_every_round_writes_a_progress_line_when_the_callback_asks(tmp_path, monkeypatch):
    progress = tmp_path / "progress.jsonl"
    monkeypatch.setenv("MESHOS_PROGRESS_FILE", str(progress))
    fake = FakeClock()
    sources = Script(fake, prom_at=lambda t, q: 0.001)
    result = gate(fake, sources, source="prometheus", prometheus_url=PROM, checks=["error_rate"],
                  duration="10s", interval="2s")
    lines = [json.loads(line)["line"] for line in progress.read_text().splitlines()]
    assert len(lines) == result["rounds"]
    assert lines[0].startswith("gate 0/10 s: error_rate 0.001 (fails if > ")
    assert lines[-1].startswith("gate 10/10 s: error_rate 0.001") and lines[-1].endswith("ok so far")


def test_no_progress_file_no_progress(monkeypatch):
    monkeypatch.delenv("MESHOS_PROGRESS_FILE", raising=False)
    fake = FakeClock()
    result = gate(fake, Script(fake, prom_at=lambda t, q: 0.001), source="prometheus", prometheus_url=PROM,
                  checks=["error_rate"], duration="4s", interval="2s")
    assert result["verdict"] == "pass"
