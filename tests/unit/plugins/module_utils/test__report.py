# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils._report import (
    metrics_markdown,
    release_timeline,
    success_metrics,
)


def _e(seq, action, result, version="5.1.0", env="production", duration=None, **details):
    return {"seq": seq, "ts": "2025-10-%02dT10:00:00Z" % (20 + seq), "actor": "alice", "action": action,
            "version": version, "environment": env, "strategy": "rolling", "result": result,
            "duration": duration, "details": details}


ENTRIES = [
    _e(1, "release_create", "success", env=None),
    _e(2, "deploy", "started", env="staging"),
    _e(3, "deploy", "success", env="staging", duration=600, downtime_seconds=0),
    _e(4, "deploy", "success", duration=1800, downtime_seconds=0),
    _e(5, "watch", "success"),
    _e(6, "incident", "info", severity="minor", impact="none"),
    _e(7, "deploy", "rolled_back", version="5.2.0", env="development", duration=120),
    _e(8, "rollback", "success", version="5.2.0", env="development", duration=30),
    _e(9, "deploy", "failure", version="5.2.1", env="development", duration=60, downtime_seconds=90),
    _e(10, "predeploy_check", "success", version="5.2.1", env=None, test_coverage=83.5),
]


def _row(report, name):
    return [r for r in report["metrics"] if r["metric"] == name][0]


def test_success_metrics():
    report = success_metrics(ENTRIES)
    assert report["deployments"] == 4 and report["successful_deployments"] == 2
    assert _row(report, "Deployment Success Rate")["value"] == 50.0
    assert _row(report, "Deployment Success Rate")["met"] is False
    assert _row(report, "Mean Time to Deploy")["value"] == 1200
    assert _row(report, "Mean Time to Deploy")["actual"] == "20.0 min"
    # deploy rolled_back and the rollback entry of the same (environment, version) count once
    assert report["rollbacks"] == 1 and _row(report, "Rollback Rate")["value"] == 25.0
    assert _row(report, "Post-Release Incidents")["value"] == round(1 / 3.0, 2)
    assert _row(report, "Deployment Downtime")["value"] == 90 and _row(report, "Deployment Downtime")["met"] is False
    assert _row(report, "Test Coverage")["value"] == 83.5 and _row(report, "Test Coverage")["met"] is True


def test_success_metrics_filtered_and_empty():
    report = success_metrics(ENTRIES, environment="production")
    assert report["deployments"] == 1 and _row(report, "Deployment Success Rate")["met"] is True
    empty = success_metrics([])
    assert all(row["met"] is None for row in empty["metrics"])
    assert _row(empty, "Deployment Downtime")["actual"] == "not measured"
    assert "| Deployment Success Rate | > 95% | - | - |" in metrics_markdown(empty)


def test_release_timeline():
    timeline = release_timeline(ENTRIES, "5.1.0")
    names = [m["name"] for m in timeline["milestones"]]
    assert names == ["Release Created", "Staging Deploy", "Production Deploy", "Monitoring Complete"]
    assert timeline["milestones"][1]["ts"] == "2025-10-23T10:00:00Z"
    metrics = timeline["metrics"]
    assert metrics["deployment_duration"] == "40.0 min" and metrics["rollback_count"] == 0
    assert metrics["incidents_text"] == "1 (minor)" and metrics["customer_impact"] == "none"
    assert timeline["participants"] == ["alice"] and len(timeline["events"]) == 6


def test_release_timeline_rolled_back_release():
    timeline = release_timeline(ENTRIES, "5.2.0")
    assert timeline["metrics"]["rollback_count"] == 1 and timeline["metrics"]["failed_deployments"] == 1
    assert timeline["milestones"] == []
