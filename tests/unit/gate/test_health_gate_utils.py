# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the health gate math and engine (no network, no waiting: clock and sleep are fakes)."""

from __future__ import annotations

import math

import pytest

from ansible_collections.meshos.release.plugins.module_utils.gate.loop import run_gate
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import DEFAULT_POLICY, PolicyError, build_policy
from ansible_collections.meshos.release.plugins.module_utils.gate.sources import SourceError, _parse_response
from ansible_collections.meshos.release.plugins.module_utils.gate.stats import (
    bucket_delta, counter_delta, histogram_buckets, histogram_quantile, mann_whitney_u, parse_duration,
    parse_exposition, rate,
)


@pytest.mark.parametrize("value,seconds", [(30, 30.0), ("30s", 30.0), ("2m", 120.0), ("1m30s", 90.0),
                                           ("500ms", 0.5), ("1h", 3600.0), ("2.5", 2.5), (0, 0.0)])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["abc", "5x", "-1", -3, True, "", "2m junk"])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError) as err:
        parse_duration(value, "interval")
    assert "interval" in str(err.value)


def test_histogram_quantile_matches_prometheus_interpolation():
    # 100 observations: 50 <= 0.1, 90 <= 0.5, 100 <= 1
    buckets = {0.1: 50, 0.5: 90, 1.0: 100, math.inf: 100}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    # rank 95 lies in (0.5, 1]: 0.5 + 0.5 * (95 - 90) / 10
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    # rank 25 in the first bucket: 0 + 0.1 * 25 / 50
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)


def test_histogram_quantile_edge_cases():
    assert histogram_quantile(0.95, {}) is None
    assert histogram_quantile(0.95, {0.1: 0, math.inf: 0}) is None
    # everything above the last finite bucket: the last finite bound
    assert histogram_quantile(0.95, {0.1: 0, 1.0: 0, math.inf: 10}) == 1.0


def test_rates_and_resets():
    assert counter_delta(10, 25) == 15
    assert counter_delta(100, 7) == 7  # reset
    assert rate(10, 40, 10) == 3
    assert rate(1, 2, 0) is None
    assert bucket_delta({0.1: 5, math.inf: 10}, {0.1: 8, math.inf: 20}) == {0.1: 3, math.inf: 10}


EXPOSITION = """# HELP x
meshapp_requests_total{path="/",code="200"} 90
meshapp_requests_total{path="/",code="500"} 10
meshapp_request_duration_seconds_bucket{le="0.1"} 50
meshapp_request_duration_seconds_bucket{le="0.5"} 90
meshapp_request_duration_seconds_bucket{le="1.0"} 100
meshapp_request_duration_seconds_bucket{le="+Inf"} 100
process_cpu_seconds_total 1.5
"""


def test_parse_exposition_and_buckets():
    samples = parse_exposition(EXPOSITION)
    assert ("meshapp_requests_total", {"path": "/", "code": "500"}, 10.0) in samples
    buckets = histogram_buckets(samples, "meshapp_request_duration_seconds")
    assert buckets[math.inf] == 100 and buckets[0.5] == 90


def test_mann_whitney_u():
    slow = [10, 11, 12, 13, 14, 15, 16, 17]
    fast = [1, 2, 3, 4, 5, 6, 7, 8]
    u, p = mann_whitney_u(slow, fast, "greater")
    assert u == 64 and p < 0.001
    u, p = mann_whitney_u(fast, slow, "greater")
    assert u == 0 and p > 0.99
    _u, p = mann_whitney_u([1, 1, 1], [1, 1, 1])
    assert p == 1.0
    # by hand: U1 = 4.5, mu = 12.5, sigma = sqrt(25/12 * (11 - 18/90)) = 4.743 (ties), z = (4.5 - 12.5 + 0.5) / sigma
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [3, 4, 5, 6, 7], "less")
    assert u == 4.5
    assert p == pytest.approx(0.5 * math.erfc(1.5811 / math.sqrt(2)), abs=1e-4)


def test_parse_response_chunked():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert _parse_response(raw) == (200, {"transfer-encoding": "chunked"}, b"hello")


def test_default_policy_is_the_seed():
    checks = dict((c["name"], c) for c in build_policy())
    assert checks["error_rate"]["threshold"] == 0.05
    assert checks["success_rate"]["threshold"] == 0.99 and checks["success_rate"]["comparison"] == "lt"
    assert checks["latency_p95"]["baseline_factor"] == 2.0
    assert checks["agents_unhealthy"]["threshold"] == 0.10
    assert checks["health_checks"]["threshold"] == 120
    assert len(DEFAULT_POLICY) == 8


@pytest.mark.parametrize("policy,overrides,only,needle", [
    ([{"name": "x", "metric": "nope", "threshold": 1}], None, None, "'nope'"),
    ([{"name": "x", "metric": "cpu", "comparison": "eq", "threshold": 1}], None, None, "'eq'"),
    ([{"name": "x", "metric": "cpu"}], None, None, "threshold"),
    ([{"name": "x", "metric": "cpu", "threshold": 1, "bogus": 1}], None, None, "'bogus'"),
    (None, {"nope": {}}, None, "'nope'"),
    (None, None, ["nope"], "'nope'"),
    ([{"name": "x", "metric": "cpu", "threshold": 1, "window": "forever"}], None, None, "'forever'"),
])
def test_bad_policy_is_one_line_error(policy, overrides, only, needle):
    with pytest.raises(PolicyError) as err:
        build_policy(policy, overrides, only)
    assert needle in str(err.value) and "\n" not in str(err.value)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def metrics_body(ok, errors, buckets):
    lines = ['meshapp_requests_total{path="/",code="200"} %d' % ok,
             'meshapp_requests_total{path="/",code="500"} %d' % errors]
    for le, count in buckets:
        lines.append('meshapp_request_duration_seconds_bucket{le="%s"} %d' % (le, count))
    lines.append("process_cpu_seconds_total %.2f" % (ok / 1000.0))
    lines.append("process_resident_memory_bytes 1000")
    return "\n".join(lines).encode()


class FakeSources:
    """Targets whose counters grow by (ok, errors) per second of the fake clock."""

    def __init__(self, clock, per_second, down=(), prom=None, alerts=None):
        self.clock = clock
        self.per_second = per_second
        self.down = set(down)
        self.prom_values = prom
        self.alert_list = alerts or []
        self.fetches = 0

    def fetch(self, urls, want_body):
        self.fetches += 1
        out = {}
        for url in urls:
            base = url.rsplit("/", 1)[0]
            if base in self.down:
                out[url] = {"status": None, "error": "connect: ECONNREFUSED", "body": None}
            elif url.endswith("/health"):
                out[url] = {"status": 200, "error": None, "body": None}
            else:
                ok, err = self.per_second.get(base, (100, 0))
                t = self.clock.now
                n = (ok + err) * t
                body = metrics_body(ok * t, err * t, [(0.1, n * 0.9), (1.0, n), ("+Inf", n)])
                out[url] = {"status": 200, "error": None, "body": body}
        return out

    def prom(self, query):
        if self.prom_values is None:
            raise SourceError("prometheus http://127.0.0.1:1 unreachable: connection refused")
        return [({}, self.prom_values)]

    def alerts(self, severities, matchers):
        return self.alert_list

    def haproxy(self):
        return []


TARGETS = ["http://t1", "http://t2", "http://t3", "http://t4"]


def gate(fake, sources, **params):
    params.setdefault("targets", TARGETS)
    return run_gate(params, sources=sources, clock=fake.clock, sleep=fake.sleep)


def test_scrape_pass_waits_one_window_without_real_sleep():
    fake = FakeClock()
    result = gate(fake, FakeSources(fake, {}), window="10s", interval="5s")
    assert result["verdict"] == "pass", result["summary"]
    assert fake.now == 10.0 and fake.slept == [5.0, 5.0]
    checks = dict((c["name"], c) for c in result["checks"])
    assert checks["error_rate"]["value"] == 0
    # 90 % under 0.1 s, rest in (0.1, 1]: p95 = 0.1 + 0.9 * 0.5
    assert checks["latency_p95"]["value"] == pytest.approx(0.55)
    assert checks["critical_alerts"]["status"] == "skipped"


def test_error_rate_fails_with_summary():
    fake = FakeClock()
    sources = FakeSources(fake, dict((t, (90, 10)) for t in TARGETS))
    result = gate(fake, sources, window="10s", interval="5s", checks=["error_rate"])
    assert result["verdict"] == "fail"
    assert result["summary"].startswith("health gate fail: error_rate 0.1 > 0.05")


def test_failure_limit_needs_consecutive_breaches():
    fake = FakeClock()
    sources = FakeSources(fake, dict((t, (90, 10)) for t in TARGETS))
    result = gate(fake, sources, window="5s", interval="5s", duration="10s", checks=["error_rate"],
                  policy_overrides={"error_rate": {"failure_limit": 3}})
    check = [c for c in result["checks"] if c["name"] == "error_rate"][0]
    assert check["breaches"] == 2 and check["status"] == "pass"
    fake = FakeClock()
    sources = FakeSources(fake, dict((t, (90, 10)) for t in TARGETS))
    result = gate(fake, sources, window="5s", interval="5s", duration="15s", checks=["error_rate"],
                  policy_overrides={"error_rate": {"failure_limit": 3}})
    assert result["verdict"] == "fail"


def test_agents_ratio_and_health_duration():
    fake = FakeClock()
    sources = FakeSources(fake, {}, down=["http://t4"])
    result = gate(fake, sources, checks=["agents_unhealthy"])
    assert result["verdict"] == "fail" and result["checks"][5]["value"] == 0.25
    fake = FakeClock()
    result = gate(fake, sources, checks=["health_checks"], duration="3m", interval="30s", fail_fast=True)
    health = result["checks"][0]
    assert health["status"] == "fail" and health["value"] == 150.0  # first value above 120 s
    assert result["stopped_early"] is True


def test_prometheus_unreachable_is_inconclusive():
    fake = FakeClock()
    result = gate(fake, FakeSources(fake, {}), source="prometheus", prometheus_url="http://127.0.0.1:1",
                  checks=["error_rate"])
    assert result["verdict"] == "inconclusive"
    assert "fails closed" in result["summary"] and "unreachable" in result["summary"]


def test_alerts_and_baseline_relative_latency():
    fake = FakeClock()
    result = gate(fake, FakeSources(fake, {}, alerts=[{"alertname": "Down", "severity": "critical"}]),
                  alertmanager_url="http://am", checks=["critical_alerts"])
    assert result["verdict"] == "fail" and "Down" in result["summary"]
    fake = FakeClock()
    result = gate(fake, FakeSources(fake, {}), checks=["latency_p95"], window="5s", baseline={"latency_p95": 0.2})
    check = result["checks"][3]
    assert check["effective_threshold"] == pytest.approx(0.4) and check["status"] == "fail"


def test_baseline_mode_returns_values():
    fake = FakeClock()
    result = gate(fake, FakeSources(fake, {}), mode="baseline", window="5s")
    assert result["baseline"] == {"latency_p95": pytest.approx(0.55)}


def test_compare_mode_judge():
    fake = FakeClock()
    sources = FakeSources(fake, {"http://c1": (80, 20)})
    result = gate(fake, sources, mode="compare", targets=["http://c1"], baseline_targets=["http://b1"],
                  checks=["error_rate"], window="1s", interval="1s", duration="8s", fail_fast=False,
                  policy_overrides={"error_rate": {"baseline_factor": 2}})
    assert result["verdict"] == "fail"
    judge = result["judge"]
    error = [m for m in judge["metrics"] if m["metric"] == "error_rate"][0]
    assert error["result"] == "fail" and error["canary_samples"] >= 5


@pytest.mark.parametrize("params,needle", [
    ({"source": "carrier-pigeon"}, "carrier-pigeon"),
    ({"interval": "soon"}, "soon"),
    ({"targets": ["ftp://x"]}, "ftp://x"),
    ({"mode": "compare"}, "baseline_targets"),
    ({"source": "prometheus"}, "prometheus_url"),
])
def test_bad_params(params, needle):
    with pytest.raises(PolicyError) as err:
        run_gate(params, sources=object())
    assert needle in str(err.value)
