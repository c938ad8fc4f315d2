# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from ansible_collections.meshos.release.plugins.module_utils._report import (
    fmt_downtime,
    measured_impact,
    measurement,
    metrics_markdown,
    release_timeline,
    rollback_events,
    success_metrics,
)
from ansible_collections.meshos.release.plugins.module_utils._report_events import MeasurementError, parse_amount

SOCK = "haproxy:/tmp/meshos-lab/haproxy/admin.sock"


def _e(seq, action, result, version="5.1.0", env="production", duration=None, **details):
    return {"seq": seq, "ts": "2025-10-%02dT10:00:00Z" % (20 + seq), "actor": "alice", "action": action,
            "version": version, "environment": env, "strategy": "rolling", "result": result,
            "duration": duration, "details": details}


def _m(downtime, requests=None, failed=None, source=SOCK, window=60):
    return {"source": source, "requests": requests, "failed_requests": failed, "downtime_seconds": downtime,
            "window_seconds": window}


ENTRIES = [
    _e(1, "release_create", "success", env=None),
    _e(2, "deploy", "started", env="staging"),
    # the old constant is not a measurement
    _e(3, "deploy", "success", env="staging", duration=600, downtime_seconds=0),
    _e(4, "deploy", "success", duration=1800, measured=_m(0.0, 1200, 0)),
    _e(5, "watch", "success"),
    _e(6, "incident", "info", severity="minor", impact="none"),
    _e(7, "deploy", "rolled_back", version="5.2.0", env="development", duration=120),
    _e(8, "rollback", "success", version="5.2.0", env="development", duration=30, automatic=True, to_version="5.1.0"),
    _e(9, "deploy", "failure", version="5.2.1", env="development", duration=60,
       measured=_m(90, 1800, 36)),
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
    # deploy rolled_back and the rollback entry of the same (environment, version, attempt) count once
    assert report["rollbacks"] == 1 and _row(report, "Rollback Rate")["value"] == 25.0
    assert _row(report, "Post-Release Incidents")["value"] == round(1 / 3.0, 2)
    downtime = _row(report, "Deployment Downtime")
    assert downtime["value"] == 90 and downtime["met"] is False
    assert downtime["actual"] == "1.5 min (2 of 4 deploys, 0 of 1 rollbacks measured, source: haproxy)"
    failed = _row(report, "Failed Requests During Deploys")
    assert failed["value"] == 36 and failed["met"] is False
    assert failed["actual"].startswith("36 of 3000 requests (1.2%) (2 of 4 deploys")
    assert _row(report, "Test Coverage")["value"] == 83.5 and _row(report, "Test Coverage")["met"] is True


def test_success_metrics_filtered_and_empty():
    report = success_metrics(ENTRIES, environment="production")
    assert report["deployments"] == 1 and _row(report, "Deployment Success Rate")["met"] is True
    # every production deploy measured, zero downtime, zero failed requests: the target is shown met
    assert _row(report, "Deployment Downtime")["actual"] == "0.0 min (1 of 1 deploys measured, source: haproxy)"
    assert _row(report, "Deployment Downtime")["met"] is True
    assert _row(report, "Failed Requests During Deploys")["met"] is True
    empty = success_metrics([])
    assert all(row["met"] is None for row in empty["metrics"])
    assert _row(empty, "Deployment Downtime")["actual"] == "not measured"
    assert _row(empty, "Failed Requests During Deploys")["actual"] == "not measured"
    assert _row(empty, "Test Coverage")["actual"] == "not recorded"
    assert "| Deployment Success Rate | > 95% | - | - |" in metrics_markdown(empty)


def test_downtime_never_from_a_constant():
    """8 deploys that carry the old constant downtime_seconds: 0 and no measurement are "not measured"."""
    entries = [_e(i, "deploy", "success", version="5.1.%d" % i, downtime_seconds=0) for i in range(1, 9)]
    row = _row(success_metrics(entries), "Deployment Downtime")
    assert row["actual"] == "not measured" and row["value"] is None and row["met"] is None
    assert "0.0 min" not in metrics_markdown(success_metrics(entries))
    # some measured: the number and how many were measured; zero on a part cannot show the target met
    entries[0]["details"]["measured"] = _m(0, 100, 0)
    entries[1]["details"]["measured"] = {"source": None, "reason": "no HAProxy socket on this platform"}
    entries[2]["details"]["measured"] = _m(0, 100, 0, source="prober:http://127.0.0.1:18080/")
    entries[3]["details"]["measured"] = _m(0, 100, 0)
    report = success_metrics(entries)
    row = _row(report, "Deployment Downtime")
    assert row["actual"] == "0.0 min (3 of 8 deploys measured, source: haproxy, prober)" and row["met"] is None
    assert report["measurement"]["not_measured_reasons"] == ["no HAProxy socket on this platform",
                                                             "no measurement recorded"]


def test_invalid_measurements_are_not_measured():
    bad = [{"source": SOCK, "downtime_seconds": -1}, {"source": SOCK, "downtime_seconds": "soon"},
           {"source": SOCK, "downtime_seconds": 1, "requests": 5, "failed_requests": 6},
           {"source": SOCK, "downtime_seconds": 1, "requests": 5.5, "failed_requests": 0},
           {"source": SOCK}, "haproxy", {"source": "None", "downtime_seconds": 0}]
    for value in bad:
        found = measurement(_e(1, "deploy", "success", measured=value))
        assert found["source"] is None and found["reason"], value
    assert measurement(_e(1, "deploy", "success")) is None
    ok = measurement(_e(1, "deploy", "success", measured={"source": SOCK, "downtime_seconds": "1.5",
                                                          "requests": "10", "failed_requests": 0}))
    assert ok == {"source": SOCK, "downtime_seconds": 1.5, "requests": 10, "failed_requests": 0,
                  "window_seconds": None}


def test_release_timeline():
    timeline = release_timeline(ENTRIES, "5.1.0")
    names = [m["name"] for m in timeline["milestones"]]
    assert names == ["Release Created", "Staging Deploy", "Production Deploy", "Monitoring Complete"]
    assert timeline["milestones"][1]["ts"] == "2025-10-23T10:00:00Z"
    metrics = timeline["metrics"]
    assert metrics["deployment_duration"] == "40.0 min" and metrics["rollback_count"] == 0
    assert metrics["rollback_text"] == "0"
    assert metrics["incidents_text"] == "1 (minor)" and metrics["customer_impact"] == "none"
    assert metrics["downtime"] == "0.0 min (1 of 2 deploys measured, source: haproxy)"
    assert metrics["test_coverage"] == "not recorded"
    assert timeline["participants"] == ["alice"] and len(timeline["events"]) == 6
    assert "Downtime not measured for 1 of 2 deploys and rollbacks (no measurement recorded)" in \
        timeline["observations"]["improve"]


def test_release_timeline_rolled_back_release():
    timeline = release_timeline(ENTRIES, "5.2.0")
    assert timeline["metrics"]["rollback_count"] == 1 and timeline["metrics"]["failed_deployments"] == 1
    assert timeline["metrics"]["rollback_text"] == "1 (development: automatic, to 5.1.0)"
    assert timeline["milestones"] == []
    assert timeline["metrics"]["downtime"] == "not measured"
    coverage = release_timeline(ENTRIES, "5.2.1")["metrics"]
    assert coverage["coverage_percent"] == 83.5 and coverage["test_coverage"] == "83.5% (pre-deployment check, seq 10)"


def test_rollbacks_from_the_audit_log():
    """The pipeline's automatic rollback (version = the failed release), a manual rollback recorded under the version
    it returned to, a runbook rollback, a failed rollback and a retried deploy all count for the right release."""
    entries = [
        _e(1, "deploy", "started", version="5.2.0", env="development"),
        _e(2, "deploy", "failure", version="5.2.0", env="development"),
        _e(3, "rollback", "success", version="5.2.0", env="development", automatic=True, to_version="5.1.0"),
        _e(4, "deploy", "started", version="5.2.0", env="development"),
        _e(5, "deploy", "success", version="5.2.0", env="development"),
        _e(6, "deploy", "started", version="5.2.0"),
        _e(7, "deploy", "success", version="5.2.0", measured=_m(2.0, 500, 4)),
        # playbooks/rollback.yml run by hand, recorded under the version it returned to
        _e(8, "rollback", "success", version="5.1.0", to_version="5.1.0", measured=_m(1.0, 300, 2)),
        _e(9, "runbook_rollback", "failure", version="5.3.0", env="staging", from_version="5.3.0"),
        _e(10, "rollback", "started", version="5.2.0", env="staging"),
        _e(11, "rollback", "skipped", version="5.2.0", env="staging"),
    ]
    events = rollback_events(entries)
    assert [(r["environment"], r["version"], r["automatic"], r["result"]) for r in events] == [
        ("development", "5.2.0", True, "success"), ("production", "5.2.0", False, "success"),
        ("staging", "5.3.0", False, "failure")]
    timeline = release_timeline(entries, "5.2.0")
    assert timeline["metrics"]["rollback_count"] == 2
    assert timeline["metrics"]["rollback_text"] == "2 (development: automatic, to 5.1.0; production: manual, to 5.1.0)"
    # the manual rollback's measurement counts for 5.2.0 even though it was recorded under 5.1.0
    assert timeline["metrics"]["downtime_seconds"] == 3.0
    assert timeline["metrics"]["failed_requests"] == 6
    assert release_timeline(entries, "5.1.0")["metrics"]["rollback_count"] == 0
    assert "FAILED" in release_timeline(entries, "5.3.0")["metrics"]["rollback_text"]
    report = success_metrics(entries)
    assert report["rollbacks"] == 3 and report["deployments"] == 3
    assert success_metrics(entries, version="5.2.0")["rollbacks"] == 2


def test_rollback_inferred_from_the_last_deploy():
    entries = [_e(1, "deploy", "success", version="5.2.0"),
               _e(2, "rollback", "success", version="5.1.0", to_version="5.1.0")]
    assert rollback_events(entries)[0]["version"] == "5.2.0"
    # a deploy entry that ended rolled_back counts without a separate rollback entry
    canary = [_e(1, "deploy", "started", version="5.3.0"), _e(2, "deploy", "rolled_back", version="5.3.0")]
    assert release_timeline(canary, "5.3.0")["metrics"]["rollback_count"] == 1


_AMOUNT = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(_AMOUNT, st.integers(0, 10000), st.integers(0, 10000), st.booleans()), max_size=12))
def test_measured_totals_property(samples):
    """The reported downtime and failed requests are exactly the sum of the measurements; none -> not measured."""
    entries = []
    for i, (downtime, a, b, has_source) in enumerate(samples):
        requests, failed = max(a, b), min(a, b)
        measured = _m(downtime, requests, failed) if has_source else {"source": None, "reason": "off"}
        entries.append(_e(i + 1, "deploy", "success", version="5.1.%d" % i, measured=measured))
    impact = measured_impact(entries)
    sources = [s for s in samples if s[3]]
    assert impact["deploys_measured"] == len(sources) and impact["deploys"] == len(samples)
    if not sources:
        assert impact["downtime_seconds"] is None and impact["downtime_text"] == "not measured"
        assert impact["failed_requests_text"] == "not measured"
    else:
        assert math.isclose(impact["downtime_seconds"], round(sum(s[0] for s in sources), 3), abs_tol=1e-6)
        assert impact["failed_requests"] == sum(min(s[1], s[2]) for s in sources)
        assert "%d of %d deploys measured" % (len(sources), len(samples)) in impact["downtime_text"]


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=12),
                 st.booleans(), st.none()))
def test_parse_amount_property(value):
    try:
        number = parse_amount(value, "downtime_seconds")
    except MeasurementError as exc:
        assert str(exc).startswith("downtime_seconds ") and "is not allowed: use a number >= 0" in str(exc)
    else:
        assert number >= 0 and math.isfinite(number)
        assert parse_amount(str(number), "x") == pytest.approx(number)


@pytest.mark.parametrize("seconds, text", [(0, "0.0 min"), (0.04, "< 0.1 s"), (1.5, "1.5 s"), (59.9, "59.9 s"),
                                           (60, "1.0 min"), (90, "1.5 min")])
def test_fmt_downtime_never_hides_a_short_outage(seconds, text):
    assert fmt_downtime(seconds) == text
