# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delivery metrics per environment and period from a synthetic audit log (plugins/module_utils/_dora.py)."""

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils._dora import (
    DoraError,
    dora_markdown,
    dora_metrics,
    period_bounds,
    parse_ts,
)

NOW = "2026-12-20T00:00:00Z"


def log():
    """Two weeks of production and staging (2026-W49: Mon 30 Nov .. Sun 6 Dec; 2026-W50: 7 .. 13 Dec)."""
    raw = [
        # week 49, production: a success, a failure rolled back after 4 minutes, a refused deploy
        ("2026-12-01T10:00:00Z", "deploy", "production", "5.1.0", "started", None, {}),
        ("2026-12-01T10:20:00Z", "deploy", "production", "5.1.0", "success", 1200.0, {}),
        ("2026-12-02T09:00:00Z", "deploy", "production", "5.2.0", "started", None, {}),
        ("2026-12-02T09:10:00Z", "deploy", "production", "5.2.0", "failure", 600.0, {"failed_task": "gate"}),
        ("2026-12-02T09:14:00Z", "rollback", "production", "5.2.0", "success", 200.0,
         {"automatic": True, "to_version": "5.1.0", "from_version": "5.2.0"}),
        ("2026-12-03T09:00:00Z", "deploy", "production", "5.2.1", "aborted", None, {"reason": "requirements missing"}),
        # week 49, staging: one success
        ("2026-12-01T08:00:00Z", "deploy", "staging", "5.1.0", "success", 300.0, {}),
        # week 50, production: a success, then an incident for it and a manual rollback 30 s long
        ("2026-12-08T10:00:00Z", "deploy", "production", "5.3.0", "success", 1800.0, {}),
        ("2026-12-08T11:00:00Z", "incident", "production", "5.3.0", "info", None, {"severity": "sev2"}),
        ("2026-12-08T11:05:00Z", "rollback", "production", "5.1.0", "success", 30.0, {"to_version": "5.1.0"}),
        # week 50, production: a failure never restored
        ("2026-12-09T10:00:00Z", "deploy", "production", "5.4.0", "failure", 100.0, {}),
    ]
    return [{"seq": i + 1, "ts": ts, "actor": "t", "action": action, "environment": env, "version": version,
             "result": result, "duration": duration, "details": details, "strategy": "rolling"}
            for i, (ts, action, env, version, result, duration, details) in enumerate(raw)]


def rows(report):
    return dict(((r["environment"], r["period"]), r) for r in report["groups"])


def test_weekly_metrics_per_environment():
    got = rows(dora_metrics(log(), period="week", now=NOW))
    assert set(got) == {("production", "2026-W49"), ("staging", "2026-W49"), ("production", "2026-W50")}
    w49 = got[("production", "2026-W49")]
    assert (w49["deployments"], w49["successful"], w49["refused"], w49["failed_changes"]) == (2, 1, 1, 1)
    assert w49["deployment_frequency_per_day"] == round(2 / 7.0, 3)
    assert w49["mean_time_to_deploy_seconds"] == 1200.0
    assert w49["rollback_rate"] == 50.0 and w49["change_failure_rate"] == 50.0
    # failure at 09:10, rollback entry at 09:14: 240 s (longer than its recorded 200 s)
    assert w49["time_to_restore_seconds"] == 240.0 and w49["unrestored"] == 0
    assert (w49["start"], w49["end"]) == ("2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z")

    w50 = got[("production", "2026-W50")]
    # the success followed by an incident and a rollback is a failed change; so is the failure never restored
    assert (w50["deployments"], w50["failed_changes"], w50["rollbacks"]) == (2, 2, 1)
    assert w50["change_failure_rate"] == 100.0 and w50["rollback_rate"] == 50.0
    # the incident restored by the rollback 5 minutes later; the last failure has no restore yet
    assert w50["time_to_restore_seconds"] == 300.0 and w50["restores_measured"] == 1 and w50["unrestored"] == 1

    staging = got[("staging", "2026-W49")]
    assert staging["change_failure_rate"] == 0.0 and staging["time_to_restore_seconds"] is None
    assert staging["rollback_rate"] == 0.0 and staging["mean_time_to_deploy_seconds"] == 300.0


def test_all_period_environment_and_bounds():
    report = dora_metrics(log(), period="all", environment="production", now=NOW)
    (only,) = report["groups"]
    assert only["period"] == "all" and only["deployments"] == 4 and only["failed_changes"] == 3
    assert only["mean_time_to_deploy_seconds"] == 1500.0

    bounded = rows(dora_metrics(log(), period="day", since="2026-12-02T00:00:00Z", until="2026-12-03T00:00:00Z",
                                now=NOW))
    assert list(bounded) == [("production", "2026-12-02")]
    assert bounded[("production", "2026-12-02")]["days"] == 1.0


def test_nothing_recorded_is_none_not_zero():
    report = dora_metrics([{"seq": 1, "ts": "2026-12-01T00:00:00Z", "action": "deploy", "environment": "dev",
                            "version": "1.0.0", "result": "aborted"}], period="month", now=NOW)
    (row,) = report["groups"]
    assert row["deployments"] == 0 and row["refused"] == 1 and row["period"] == "2026-12"
    for key in ("deployment_frequency_per_day", "mean_time_to_deploy_seconds", "rollback_rate",
                "change_failure_rate", "time_to_restore_seconds"):
        assert row[key] is None, key
    text = dora_markdown(report)
    assert "| dev | 2026-12 | 0 (+1 refused) | - | - | - | - | - |" in text
    assert "(no deployments recorded)" in dora_markdown(dora_metrics([], now=NOW))


def test_running_period_counts_its_days_so_far():
    entries = [{"seq": 1, "ts": "2026-12-01T10:00:00Z", "action": "deploy", "environment": "p", "version": "1.0.0",
                "result": "success", "duration": 60}]
    (row,) = dora_metrics(entries, period="week", now="2026-12-02T00:00:00Z")["groups"]
    assert row["days"] == 2.0 and row["deployment_frequency_per_day"] == 0.5


@pytest.mark.parametrize("kwargs, words", [
    ({"period": "year"}, ["period 'year'", "day, week, month, all"]),
    ({"since": "yesterday"}, ["since 'yesterday'", "ISO 8601"]),
    ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, ["is not after"]),
])
def test_bad_input_fails_with_one_line(kwargs, words):
    with pytest.raises(DoraError) as exc:
        dora_metrics(log(), **kwargs)
    assert "\n" not in str(exc.value) and all(w in str(exc.value) for w in words)


def test_period_bounds():
    stamp = parse_ts("2027-01-01T12:00:00Z")  # a Friday in ISO week 2026-W53
    assert period_bounds(stamp, "week")[0] == "2026-W53"
    assert period_bounds(stamp, "month")[1:] == (parse_ts("2027-01-01T00:00:00Z"), parse_ts("2027-02-01T00:00:00Z"))
