# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kayenta-style canary judge of meshos.release.health_gate mode=compare: score, pass / marginal / fail
thresholds, critical metrics, the held step judged again, and the canary's measured traffic share."""

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils.gate.loop import run_gate
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import PolicyError


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


CANARY = "http://canary"
STABLE = ["http://s1", "http://s2", "http://s3"]


class Fleet:
    """Targets whose cumulative counters grow per whole second of the fake clock by ``profile(base, second)``:
    (ok requests, 5xx requests, share of requests slower than 0.1 s)."""

    def __init__(self, clock, profile):
        self.clock = clock
        self.profile = profile

    def _body(self, base):
        ok = err = fast = 0.0
        for second in range(int(self.clock.now)):
            s_ok, s_err, slow = self.profile(base, second)
            ok, err, fast = ok + s_ok, err + s_err, fast + (s_ok + s_err) * (1.0 - slow)
        total = ok + err
        return "\n".join([
            'meshapp_requests_total{path="/",code="200"} %d' % ok,
            'meshapp_requests_total{path="/",code="500"} %d' % err,
            'meshapp_request_duration_seconds_bucket{le="0.1"} %d' % fast,
            'meshapp_request_duration_seconds_bucket{le="1.0"} %d' % total,
            'meshapp_request_duration_seconds_bucket{le="+Inf"} %d' % total,
            "process_cpu_seconds_total 1", "process_resident_memory_bytes 1000"]).encode()

    def fetch(self, urls, want_body):
        return dict((url, {"status": 200, "error": None, "body": self._body(url.rsplit("/", 1)[0])}) for url in urls)


def judge(profile, **params):
    fake = FakeClock()
    params.setdefault("checks", ["health_checks"])
    result = run_gate(dict(dict(mode="compare", targets=[CANARY], baseline_targets=STABLE, interval="1s",
                                window="1s", fail_fast=False), **params),
                      sources=Fleet(fake, profile), clock=fake.clock, sleep=fake.sleep)
    return result, fake


def same(_base, _second):
    return 100, 0, 0.1


def slow_canary(base, _second):
    return (100, 0, 0.5) if base == CANARY else (100, 0, 0.1)


def test_good_canary_scores_100_and_measures_its_traffic_share():
    result, _fake = judge(same)
    assert result["verdict"] == "pass", result["summary"]
    assert result["judge"]["score"] == 100.0 and result["judge"]["status"] == "pass"
    assert result["judge"]["rejudgements"] == 0
    # one canary against three stable instances with the same traffic each: a quarter of the requests
    assert result["judge"]["traffic"]["canary_share_percent"] == pytest.approx(25.0)
    assert result["judge"]["traffic"]["canary_requests"] > 0


def test_canary_with_errors_fails_on_the_critical_metric_whatever_the_score():
    result, fake = judge(lambda base, _s: (90, 10, 0.1) if base == CANARY else (100, 0, 0.1))
    assert result["verdict"] == "fail"
    assert result["judge"]["status"] == "fail" and "critical metric error_rate" in result["judge"]["reason"]
    assert result["judge"]["rejudgements"] == 0 and fake.now == 5.0  # no hold for a failure


def test_marginal_canary_is_held_judged_again_then_fails():
    result, fake = judge(slow_canary)
    judge_result = result["judge"]
    assert [j["status"] for j in judge_result["judgements"]] == ["marginal", "marginal", "marginal"]
    assert judge_result["score"] == 50.0 and judge_result["status"] == "fail"
    assert "after 2 re-judgement(s)" in judge_result["reason"]
    assert result["verdict"] == "fail"
    assert fake.now == 15.0  # three intervals of five per-interval samples


def test_marginal_canary_that_recovers_passes_on_the_next_judgement():
    result, fake = judge(lambda base, second: slow_canary(base, second) if second < 5 else same(base, second))
    assert [j["status"] for j in result["judge"]["judgements"]] == ["marginal", "pass"]
    assert result["verdict"] == "pass" and result["judge"]["rejudgements"] == 1
    assert fake.now == 10.0


def test_no_rejudgement_fails_the_first_marginal_judgement():
    result, fake = judge(slow_canary, judge_rejudgements=0)
    assert result["verdict"] == "fail" and len(result["judge"]["judgements"]) == 1 and fake.now == 5.0


def test_thresholds_are_configurable():
    result, _fake = judge(slow_canary, pass_score=50, marginal_score=25)
    assert result["verdict"] == "pass" and result["judge"]["score"] == 50.0
    result, _fake = judge(slow_canary, pass_score=90, marginal_score=60)
    assert result["judge"]["status"] == "fail" and result["judge"]["judgements"][0]["status"] == "fail"
    assert result["judge"]["thresholds"] == {"pass_score": 90.0, "marginal_score": 60.0, "rejudgements": 2,
                                             "critical": ["error_rate"]}


def test_a_hard_limit_breach_is_not_held():
    # the seed's absolute error limit fails the canary even when the judge is only marginal
    result, fake = judge(slow_canary, checks=["latency_p95"], policy_overrides={"latency_p95": {"threshold": 0.5}})
    assert result["verdict"] == "fail" and fake.now == 5.0
    assert [c for c in result["checks"] if c["name"] == "latency_p95"][0]["status"] == "fail"


@pytest.mark.parametrize("params,needle", [
    ({"judge_critical": ["cpu"]}, "'cpu'"),
    ({"judge_rejudgements": -1}, "judge_rejudgements"),
    ({"pass_score": 40, "marginal_score": 60}, "marginal_score"),
])
def test_bad_judge_settings_are_one_line_errors(params, needle):
    with pytest.raises(PolicyError) as err:
        run_gate(dict(dict(mode="compare", targets=[CANARY], baseline_targets=STABLE), **params), sources=object())
    assert needle in str(err.value) and "\n" not in str(err.value)
