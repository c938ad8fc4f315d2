# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.meshos.release.plugins.callback.progress import gate_table, rollout_line


def test_gate_table_lists_judged_checks_with_values_thresholds_and_verdict():
    result = {"verdict": "fail", "summary": "health gate fail: error_rate 0.1 > 0.05", "checks": [
        {"name": "error_rate", "status": "fail", "value": 0.1, "threshold": 0.05, "effective_threshold": 0.05},
        {"name": "latency_p95", "status": "pass", "value": 0.012, "threshold": 1.0, "effective_threshold": 0.1,
         "baseline": 0.05, "target": 0.5},
        {"name": "cpu_usage", "status": "skipped", "value": None, "threshold": 0.9},
    ]}
    lines = gate_table(result).splitlines()
    assert lines[0].split() == ["check", "value", "threshold", "baseline", "target", "verdict"]
    assert lines[1].split() == ["error_rate", "0.1", "0.05", "-", "-", "fail"]
    # the threshold applied (after the baseline factor) is the one shown
    assert lines[2].split() == ["latency_p95", "0.012", "0.1", "0.05", "0.5", "pass"]
    assert not any("cpu_usage" in line for line in lines)
    assert lines[-1] == "  verdict: fail (health gate fail: error_rate 0.1 > 0.05)"


def test_rollout_line_counts_hosts_per_version_and_names_the_measurement_source():
    line = rollout_line({"strategy": "canary", "status": "in_progress", "canary_percent": 25,
                         "versions": {"app1": "5.1.0", "app2": "5.0.0", "app3": "5.0.0"},
                         "traffic": {"measured": {"source": "haproxy:/run/admin.sock", "requests": 400,
                                                  "failed_requests": 0}}})
    assert line == ("strategy canary; status in_progress; canary share 25 %; hosts per version 5.0.0: 2, 5.1.0: 1; "
                    "failed requests 0 of 400 (haproxy:/run/admin.sock)")
    # nothing measured: no number is printed
    assert "failed requests" not in rollout_line({"strategy": "rolling", "traffic": {"measured": {"source": None}}})
