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
