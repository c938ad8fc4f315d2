# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the health_gate module wrapper: verdict -> exit/fail, bad input -> one-line error."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshos.release.plugins.modules import health_gate


class Exit(Exception):
    pass


def run(args, result=None):
    out = {}

    def exit_json(self, **kwargs):
        out.update(kwargs)
        raise Exit()

    def fail_json(self, **kwargs):
        kwargs["failed"] = True
        out.update(kwargs)
        raise Exit()

    with patch_module_args(args), \
            mock.patch.object(health_gate.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(health_gate.AnsibleModule, "fail_json", fail_json):
        if result is None:
            with pytest.raises(Exit):
                health_gate.main()
        else:
            with mock.patch.object(health_gate, "run_gate", return_value=result), pytest.raises(Exit):
                health_gate.main()
    return out


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
