# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the health_gate module wrapper: verdict -> exit/fail, bad input -> one-line error."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from ansible_collections.meshos.release.plugins.modules import health_gate
from ansible_collections.meshos.release.tests.unit.plugins.modules.module_runner import run_module


def run(args, result=None):
    """The module with args; with result, run_gate is replaced so only the wrapper runs."""
    if result is None:
        return run_module(health_gate, args)
    with mock.patch.object(health_gate, "run_gate", return_value=result):
        return run_module(health_gate, args)


def verdict(v):
    return {"verdict": v, "summary": "health gate %s: x" % v, "checks": [], "baseline": {}}


def test_pass_exits_ok():
    out = run({"targets": ["http://127.0.0.1:1"]}, verdict("pass"))
    assert not out.get("failed") and out["verdict"] == "pass" and out["changed"] is False


def test_fail_fails_with_results():
    out = run({"targets": ["http://127.0.0.1:1"]}, verdict("fail"))
    assert out["failed"] and out["msg"] == "health gate fail: x" and out["checks"] == []


@pytest.mark.parametrize("mode,failed", [("fail", True), ("warn", False), ("pass", False)])
def test_inconclusive_modes(mode, failed):
    out = run({"targets": ["http://127.0.0.1:1"], "on_inconclusive": mode}, verdict("inconclusive"))
    assert bool(out.get("failed")) is failed


def test_bad_policy_is_one_line():
    out = run({"targets": ["http://127.0.0.1:1"], "policy": [{"name": "x", "metric": "nope", "threshold": 1}]})
    assert out["failed"] and "'nope'" in out["msg"] and "\n" not in out["msg"]
    json.dumps(out)


def test_bad_duration_is_one_line():
    out = run({"targets": ["http://127.0.0.1:1"], "duration": "forever"})
    assert out["failed"] and "'forever'" in out["msg"]


def test_url_secrets_are_collected_for_masking():
    secrets = health_gate.url_secrets(["http://gate:s3cr3tpw@prom:9090", "http://am/?token=t0k3n-value&x=1",
                                       "http://plain:9093", None, "not a url"])
    assert {"s3cr3tpw", "gate:s3cr3tpw", "t0k3n-value"} <= secrets
    assert not any("plain" in s for s in secrets)


def test_unreachable_prometheus_with_credentials_fails_closed_without_them():
    # a real refused connection (port 1 on loopback), no waiting: one evaluation
    out = run({"targets": ["http://127.0.0.1:1"], "source": "prometheus", "checks": ["error_rate"],
               "prometheus_url": "http://gate:s3cr3tpw@127.0.0.1:1", "timeout": 1})
    assert out["failed"] and out["verdict"] == "inconclusive"
    assert "s3cr3tpw" not in json.dumps(out) and "********" in out["msg"]
    assert "\n" not in out["msg"]


@pytest.mark.parametrize("args,needle", [
    ({"alerts_required": True}, "alerts_required: true needs alertmanager_url"),
    ({"policy_overrides": {"error_rate": {"threshold": 5}}},
     "policy_overrides.error_rate.threshold: 5 is out of range; allowed: 0 <= threshold <= 1"),
    ({"policy_overrides": {"success_rate": {"threshold": -1}}}, "policy_overrides.success_rate.threshold: -1"),
    ({"max_source_failure_ratio": 1.5}, "max_source_failure_ratio: 1.5 is out of range"),
    ({"interval": 0}, "interval: 0 is out of range"),
    ({"concurrency": 0}, "concurrency: 0 is out of range"),
    ({"profile": "fast"}, "profile"),
])
def test_bad_arguments_fail_with_one_line_naming_option_and_value(args, needle):
    base = {"targets": ["http://127.0.0.1:1"]}
    base.update(args)
    with mock.patch.object(health_gate, "run_gate", wraps=health_gate.run_gate) as gate:
        out = run(base)
    assert out["failed"] and needle in out["msg"] and "\n" not in out["msg"], out["msg"]
    assert gate.call_count <= 1


def test_alerts_required_inconclusive_fails_even_with_warn():
    result = verdict("fail")  # what the engine returns for an inconclusive required alerts check
    out = run({"targets": ["http://127.0.0.1:1"], "alertmanager_url": "http://127.0.0.1:1",
               "alerts_required": True, "on_inconclusive": "warn"}, result)
    assert out["failed"]


def test_alertmanager_down_with_alerts_required_fails_for_real():
    out = run({"targets": ["http://127.0.0.1:1"], "alertmanager_url": "http://127.0.0.1:1", "timeout": 1,
               "alerts_required": True, "on_inconclusive": "warn", "checks": ["critical_alerts"]})
    assert out["failed"] and out["verdict"] == "fail"
    assert "critical_alerts inconclusive and alerts_required" in out["msg"]


def test_monitoring_auth_spec_and_passthrough():
    """The argument spec's rules (one credential kind, basic auth complete) and the auth reaching run_gate."""
    base = {"alertmanager_url": "https://am:9093", "checks": ["critical_alerts"]}
    both = run(dict(base, monitoring_auth={"bearer_token": "t0ken-value", "username": "u", "password": "p4ssword"}))
    assert both["failed"] and "mutually exclusive" in both["msg"] and "t0ken-value" not in both["msg"]
    half = run(dict(base, monitoring_auth={"username": "u"}))
    assert half["failed"] and "password" in half["msg"]
    with mock.patch.object(health_gate, "run_gate", return_value=verdict("pass")) as gate:
        run_module(health_gate, dict(base, monitoring_auth={"bearer_token": "t0ken-value"}))
    auth = gate.call_args[0][0]["monitoring_auth"]
    assert auth["bearer_token"] == "t0ken-value" and auth["allow_plaintext"] is False
