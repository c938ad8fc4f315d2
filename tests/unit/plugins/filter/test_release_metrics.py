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
