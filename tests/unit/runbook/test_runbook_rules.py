# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbooks' classification and decision rules (plugins/module_utils/runbook/), on hand-made facts."""

import datetime

import pytest

from ansible_collections.meshos.release.plugins.module_utils.runbook import assess, decide, steps
from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import RunbookError, result_status

NOW = datetime.datetime(2026, 12, 2, 10, 0, 0, tzinfo=datetime.timezone.utc)


def _state(age_minutes, kind="deploy", strategy="rolling", **op):
    stamp = (NOW - datetime.timedelta(minutes=age_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    operation = dict({"kind": kind, "version": "5.1.0", "strategy": strategy, "status": "in_progress",
                      "started": stamp, "from_versions": {"app1": "5.0.0", "app2": "5.0.0"},
                      "done": ["app1"], "pending": ["app2"],
                      "steps": [{"action": "switch", "target": "app1", "done": True, "at": stamp}]}, **op)
    record, findings = assess.state({"file": "/s/prod.json", "exists": True, "status": {"versions": {
        "app1": "5.1.0", "app2": "5.0.0"}}, "data": {"operation": operation, "updated": stamp}}, {}, now=NOW)
    assert findings == []
    return record


def test_state_record_ages_the_last_step_and_drops_the_steps():
    record = _state(20)
    assert record["in_progress"] and record["age_seconds"] == 1200
    assert "steps" not in record["operation"] and record["last_step"]["target"] == "app1"
    assert record["status_error"] is None


def test_stuck_after_the_threshold_with_retry_and_abort_commands():
    decision, findings, recs = decide.stuck({"state": _state(20), "status": {}}, {
        "environment": "prod", "after_minutes": 10, "artifact": "/a/meshapp-5.1.0.tar.gz"})
    assert decision["stuck"] and decision["resolution"] == "resume"
    assert decision["abort_version"] == "5.0.0" and decision["rollback_version"] == "5.0.0"
    severities = dict((f["message"].split(" ")[0], f["severity"]) for f in findings)
    assert severities["deploy"] == "critical"
    assert any("stuck: more than 10 minutes" in f["message"] for f in findings)
    assert any(f["message"].startswith("mixed versions") for f in findings)
    assert recs[0] == ("ansible-playbook playbooks/deploy.yml -e env=prod -e version=5.1.0 -e strategy=rolling"
                       " -e artifact=/a/meshapp-5.1.0.tar.gz")
    assert recs[1].endswith("-e strategy=rolling -e version=5.0.0")


def test_not_stuck_before_the_threshold_recommends_nothing():
    decision, findings, recs = decide.stuck({"state": _state(5), "status": {}}, {"environment": "prod"})
    assert not decision["stuck"] and recs == []
    assert any("(not stuck yet)" in f["message"] and f["severity"] == "info" for f in findings)


def test_canary_is_always_aborted_without_a_version():
    decision, _f, _r = decide.stuck({"state": _state(30, strategy="canary"), "status": {}},
                                    {"environment": "prod", "action": "retry"})
    assert decision["resolution"] == "abort" and decision["rollback_version"] == ""


def test_blue_green_that_never_switched_has_nothing_to_roll_back():
    state = _state(30, strategy="blue-green", to_color="green")
    decision, _f, _r = decide.stuck({"state": state, "status": {"active_color": "blue"}},
                                    {"environment": "prod", "action": "abort"})
    assert decision["resolution"] == "nothing_switched"


def test_a_live_lock_is_named_and_kept():
    lock = {"lock": {"holder": "ci#12", "since": "2026-12-02T09:00:00Z"}, "stale": None}
    decision, findings, _r = decide.stuck({"state": _state(30), "lock": lock}, {"environment": "prod"})
    assert decision["lock_live"] and not decision["lock_stale"]
    assert any(f["step"] == "lock" and "locked by ci#12" in f["message"] and "(live)" in f["message"] for f in findings)


def test_bad_stuck_action_is_one_line_naming_it():
    with pytest.raises(RunbookError, match="runbook_stuck_action must be retry or abort \\(got 'later'\\)"):
        decide.stuck({"state": _state(1)}, {"environment": "prod", "action": "later"})


def test_haproxy_down_is_critical_drain_is_a_warning_missing_is_critical():
    servers = [{"backend": "be_app", "server": "app1", "state": "down", "status": "DOWN", "check_status": "L4CON",
                "check_code": "", "last_change_seconds": 7},
               {"backend": "be_app", "server": "app2", "state": "drain", "status": "DRAIN", "check_status": "L7OK",
                "check_code": "200", "last_change_seconds": 3}]
    record, findings = assess.haproxy({"info": {"servers": servers}, "targets": [
        {"name": "app1"}, {"name": "app2"}, {"name": "app3"}]}, {"backend": "be_app"})
    by_target = dict((f["target"], f) for f in findings)
    assert by_target["app1"]["severity"] == "critical" and "is DOWN (check L4CON, for 7s)" in by_target["app1"]["message"]
    assert by_target["app2"]["severity"] == "warning" and "(check L7OK 200, for 3s)" in by_target["app2"]["message"]
    assert by_target["app3"]["message"] == "server be_app/app3 not found in HAProxy" and record["app3"] is None


def test_collected_disk_full_on_a_remote_host_is_critical_and_names_the_host():
    collected = [{"label": "app2", "remote": True, "host": {"memory": {"available_percent": 60.0}},
                  "instances": {"app2": {"name": "app2", "disk": {
                      "path": "/x/releases", "filesystem": "meshos-disk-full", "mount": "/x/releases", "size_bytes": 2097152,
                      "free_bytes": 0, "free_percent": 0.0}, "resources": None}}},
                 {"unreachable": True, "msg": "ssh: connect to host 10.83.0.13 port 22: No route", "item": {"name": "app3"}}]
    record, findings, _r = steps.run("resources", {"collected": collected}, {"disk_min_free_percent": 10})
    assert record["disks"] == {"app2:None": collected[0]["instances"]["app2"]["disk"]}  # no release_root given
    [disk] = [f for f in findings if f["target"] == "app2"]
    assert disk["severity"] == "critical" and "of host app2" in disk["message"] and "meshos-disk-full" in disk["message"]
    record, findings, _r = steps.run("processes", {"collected": collected}, {})
    assert record["app3"]["error"].startswith("ssh: connect")
    assert [f["message"] for f in findings] == [
        "diagnostics of app3 unavailable: host unreachable: ssh: connect to host 10.83.0.13 port 22: No route"]


def test_process_not_running_and_not_managed():
    collected = [{"label": "lb", "host": {}, "instances": {
        "app1": {"process": {"pid_file": "/r/app1.pid", "managed": True, "pid": 42, "alive": False}},
        "app2": {"process": {"pid_file": "/r/app2.pid", "managed": False, "pid": None, "alive": None}}}}]
    _rec, findings, _r = steps.run("processes", {"collected": collected}, {})
    assert ("critical", "app1 process is not running (pid file says 42)") in [(f["severity"], f["message"]) for f in findings]
    assert any(f["target"] == "app2" and f["severity"] == "warning" for f in findings)


def test_log_trouble_lines_are_warnings_with_the_last_one():
    collected = [{"label": "lb", "host": {}, "instances": {"app1": {"log": {
        "path": "/l/app1.log", "exists": True, "lines": ["ok", "ERROR db down", "Traceback (most recent call last):"]}},
        "app2": {"log": {"path": "/l/app2.log", "exists": False, "lines": []}}}}]
    record, findings, _r = steps.run("logs", {"collected": collected}, {})
    assert record == {"app1": ["ok", "ERROR db down", "Traceback (most recent call last):"]}
    assert [f["message"] for f in findings] == ["app1 log shows: Traceback (most recent call last):",
                                                "no log file /l/app2.log"]


def test_health_plan_recommends_restart_then_rollback_then_scale_up():
    health = {"app1": {"ok": True}, "app2": {"ok": False, "status": -1}}
    plan, _f, recs = decide.health_plan({"health": health}, {"environment": "prod"})
    assert plan["unhealthy"] == ["app2"] and "restart app2" in recs[0]
    plan, _f, recs = decide.health_plan({"health": health, "health_after": health, "findings": [
        {"step": "resources", "severity": "critical"}]}, {"environment": "prod", "resolve": True})
    assert recs[0].endswith("# persistent failures on app2") and recs[1].startswith("scale up")


def test_escalation_names_the_immediate_contacts():
    contacts = [{"role": "Release Manager", "contact": "ops@example.com", "escalation": "Immediate"},
                {"role": "Lead", "contact": "cto@example.com", "escalation": "15 minutes"}]
    decision, findings, recs = decide.escalation({"backup_ok": False, "resolved": False},
                                                 {"environment": "prod", "contacts": contacts})
    assert decision["escalate"]
    assert findings[0]["message"] == "escalate now to Release Manager ops@example.com (see Emergency contacts)"
    assert recs[0].startswith("restore the release directories")


def test_result_status():
    assert result_status([], False) == "healthy"
    assert result_status([{"severity": "warning"}], False) == "problems_found"
    assert result_status([{"severity": "critical"}], True) == "resolved"


def test_unknown_step_is_refused():
    with pytest.raises(RunbookError, match="step 'nope' is not one of"):
        steps.run("nope", {}, {})
