# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.meshos.release.plugins.filter.release_metrics import FilterModule

FILTERS = FilterModule().filters()
ENTRY = {"seq": 1, "ts": "2025-10-26T10:00:00Z", "actor": "a", "action": "deploy", "version": "5.1.0",
         "environment": "staging", "strategy": "rolling", "result": "success", "duration": 60.0, "details": {}}


def test_filters_accept_query_result():
    report = FILTERS["release_metrics"]({"entries": [ENTRY], "count": 1})
    assert report["deployments"] == 1
    assert "| Deployment Success Rate | > 95% | 100.0% (1 of 1) | yes |" in FILTERS["release_metrics_markdown"](report)
    assert FILTERS["release_timeline"]([ENTRY], "5.1.0")["milestones"][0]["name"] == "Staging Deploy"


def test_filters_reject_bad_input():
    with pytest.raises(AnsibleFilterError, match="list of audit log entries"):
        FILTERS["release_metrics"]("nope")
    with pytest.raises(AnsibleFilterError, match="needs a version"):
        FILTERS["release_timeline"]([ENTRY], "")


def test_filters_report_only_measured_numbers():
    unmeasured = dict(ENTRY, details={"downtime_seconds": 0})
    measured = dict(ENTRY, seq=2, details={"measured": {"source": "haproxy:/run/admin.sock", "requests": 100,
                                                        "failed_requests": 0, "downtime_seconds": 0,
                                                        "window_seconds": 30}})
    table = FILTERS["release_metrics_markdown"](FILTERS["release_metrics"]([unmeasured]))
    assert "| Deployment Downtime | 0 minutes | not measured | - |" in table
    assert "| Failed Requests During Deploys | 0 | not measured | - |" in table
    assert "| Test Coverage | > 80% | not recorded | - |" in table
    table = FILTERS["release_metrics_markdown"](FILTERS["release_metrics"]([unmeasured, measured]))
    assert "| Deployment Downtime | 0 minutes | 0.0 min (1 of 2 deploys measured, source: haproxy) | - |" in table
    rolled = [dict(ENTRY, result="failure"), dict(ENTRY, seq=2, action="rollback", result="success",
                                                  details={"automatic": True, "to_version": "5.0.0"})]
    assert FILTERS["release_timeline"](rolled, "5.1.0")["metrics"]["rollback_count"] == 1
