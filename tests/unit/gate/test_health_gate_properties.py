# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests (hypothesis) of the health gate's value and threshold handling.

The expectations are written out here from the seed's meaning of each metric, not imported from the engine, so a
wrong range in the engine shows up as a counterexample. Clock and sleep are fakes; nothing is contacted.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.meshos.release.plugins.module_utils.gate.loop import Gate, run_gate
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import PolicyError, build_policy
from ansible_collections.meshos.release.plugins.module_utils.gate.sources import SourceError

SETTINGS = settings(max_examples=200, deadline=None)

# any float, including NaN, +/-Inf, negative zero, subnormals and huge values
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-12, -1e-12, 1.0000001, 0.9999999, 1e308, -1e308,
                               math.inf, -math.inf, math.nan, 0.5, 2.0, 5.0, 100.0])
FLOATS = st.one_of(ANY_FLOAT, EDGE_FLOATS)

# check name -> (metric, comparison, default threshold of the rollback_triggers profile, values a signal can have)
CHECKS = {
    "error_rate": ("error_rate", "gt", 0.05, (0.0, 1.0)),
    "success_rate": ("success_rate", "lt", 0.99, (0.0, 1.0)),
    "agents_unhealthy": ("unhealthy_ratio", "gt", 0.10, (0.0, 1.0)),
    "latency_p95": ("latency", "gt", 1.0, (0.0, None)),
    "cpu_usage": ("cpu", "gt", 0.90, (0.0, None)),
    "memory_usage": ("memory", "gt", 0.95, (0.0, None)),
}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class PromValues:
    """Prometheus answering ``values[i]`` at the i-th query; a None is an unreachable Prometheus."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def prom(self, query):
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        if value is None:
            raise SourceError("prometheus http://127.0.0.1:1 unreachable: refused")
        return [({}, value)]


def plausible(value, bounds):
    low, high = bounds
    if math.isnan(value) or math.isinf(value) or value < low:
        return False
    return high is None or value <= high


def breaches(value, comparison, threshold):
    return value > threshold if comparison == "gt" else value < threshold


def run(values, check, **params):
    fake = FakeClock()
    params.update(source="prometheus", prometheus_url="http://127.0.0.1:1", agents_source="prometheus",
                  checks=[check], interval=1, duration=len(values) - 1, fail_fast=False)
    return run_gate(params, sources=PromValues(values), clock=fake.clock, sleep=fake.sleep)


@SETTINGS
@given(check=st.sampled_from(sorted(CHECKS)), value=FLOATS)
def test_a_single_value_passes_exactly_when_plausible_and_within_threshold(check, value):
    metric, comparison, threshold, bounds = CHECKS[check]
    result = run([value], check)
    if not plausible(value, bounds):
        assert result["verdict"] == "inconclusive", (value, result["summary"])
        assert "invalid" in result["summary"] and "prometheus: " in result["summary"]
    elif breaches(value, comparison, threshold):
        assert result["verdict"] == "fail"
    else:
        assert result["verdict"] == "pass", result["summary"]


@SETTINGS
@given(check=st.sampled_from(sorted(CHECKS)), values=st.lists(st.one_of(FLOATS, st.none()), min_size=1, max_size=8))
def test_a_series_never_passes_on_a_bad_last_poll_or_any_breach(check, values):
    metric, comparison, threshold, bounds = CHECKS[check]
    result = run(values, check)
    good = [v for v in values if v is not None and plausible(v, bounds)]
    failed = len(values) - len(good)
    if any(breaches(v, comparison, threshold) for v in good):
        assert result["verdict"] == "fail"  # a real breach is never hidden by a later outage
        return
    last_ok = values[-1] is not None and plausible(values[-1], bounds)
    expect_pass = bool(good) and last_ok and failed <= 0.2 * len(values)
    assert (result["verdict"] == "pass") is expect_pass, (values, result["summary"])
    if not expect_pass:
        assert result["verdict"] == "inconclusive"


RATIO_CHECKS = ("error_rate", "success_rate", "agents_unhealthy")


@SETTINGS
@given(check=st.sampled_from(sorted(CHECKS)), threshold=FLOATS)
def test_threshold_range_check_rejects_exactly_the_out_of_range(check, threshold):
    finite = not (math.isnan(threshold) or math.isinf(threshold))
    if check in RATIO_CHECKS:
        allowed = finite and 0 <= threshold <= 1
    else:  # seconds, cores, fraction of the memory limit: a zero or negative bound makes no sense
        allowed = finite and threshold > 0
    try:
        checks = build_policy(overrides={check: {"threshold": threshold}})
    except PolicyError as exc:
        assert not allowed, str(exc)
        assert ("policy_overrides.%s.threshold" % check) in str(exc) and "\n" not in str(exc)
        return
    assert allowed, threshold
    assert [c for c in checks if c["name"] == check][0]["threshold"] == threshold


@SETTINGS
@given(percent=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_percent_strings_are_range_checked_as_fractions(percent):
    text = "%r%%" % percent
    try:
        checks = build_policy(overrides={"error_rate": {"threshold": text}})
    except PolicyError:
        assert not 0 <= percent / 100.0 <= 1
        return
    assert 0 <= percent / 100.0 <= 1
    assert checks[1]["threshold"] == pytest.approx(percent / 100.0)


@SETTINGS
@given(key=st.sampled_from(["interval", "window", "timeout"]), value=FLOATS)
def test_durations_must_be_positive_and_finite(key, value):
    allowed = not (math.isnan(value) or math.isinf(value)) and value > 0

    class Untouched:
        def __getattr__(self, name):
            raise AssertionError("contacted a source")

    try:
        gate = Gate({key: value, "targets": ["http://t1"]}, sources=Untouched())
    except PolicyError as exc:
        assert not allowed, str(exc)
        assert str(exc).startswith(key + ":")
        return
    assert allowed and gate.p[key] == value


@SETTINGS
@given(factor=FLOATS, floor=FLOATS)
def test_baseline_factor_and_floor(factor, floor):
    allowed = math.isfinite(factor) and factor > 0 and math.isfinite(floor) and floor >= 0
    try:
        build_policy(overrides={"latency_p95": {"baseline_factor": factor, "baseline_floor": floor}})
    except PolicyError:
        assert not allowed
        return
    assert allowed


@SETTINGS
@given(ratio=FLOATS)
def test_max_source_failure_ratio_range(ratio):
    allowed = not (math.isnan(ratio) or math.isinf(ratio)) and 0 <= ratio < 1
    try:
        run([0.0], "error_rate", max_source_failure_ratio=ratio)
    except PolicyError as exc:
        assert not allowed and "max_source_failure_ratio" in str(exc)
        return
    assert allowed


@SETTINGS
@given(baseline=FLOATS, value=st.floats(min_value=0, max_value=10))
def test_baseline_values_are_validated(baseline, value):
    allowed = not (math.isnan(baseline) or math.isinf(baseline)) and baseline >= 0
    try:
        result = run([value], "latency_p95", baseline={"latency_p95": baseline})
    except PolicyError as exc:
        assert not allowed and "baseline.latency_p95" in str(exc)
        return
    assert allowed
    limit = min(1.0, max(2.0 * baseline, 0.05))
    assert result["verdict"] == ("fail" if value > limit else "pass"), (baseline, value, result["summary"])
