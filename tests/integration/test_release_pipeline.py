# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/release.yml end to end on three real lab stacks (development, staging, production), ports 22000-22299.

Each stack is the lab role's own: meshapp instances behind their own HAProxy, with the lab's synthetic traffic so the
health gates see real request and error rates. The test writes an inventory shaped like inventories/lab (environment
groups with one host per instance) and approvals files of its own.
"""

import json
import os
import sys
import urllib.request

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import lab_vars, port_is_free, run_playbook, stop_lab, write_env_inventory  # noqa: E402

STACKS = {"development": 22000, "staging": 22100, "production": 22200}
INSTANCES = 2
# Short gates and watch for the test (the lab inventory uses 10 s, the seed 30 minutes).
FAST = {"release_batch_gate_duration": 3, "release_batch_gate_window": 2, "release_gate_window": 3,
        "release_gate_interval": 1, "watch_seconds": 3}
APPROVED = {
    "code_review_approved": {"by": "alice", "role": "reviewer", "at": "2026-11-30T09:00:00Z", "ref": "PR-1"},
    "docs_updated": {"by": "alice", "role": "writer", "at": "2026-11-30T09:00:00Z", "ref": "DOC-1"},
    "qa_signoff": {"by": "bob", "role": "QA lead", "at": "2026-11-30T10:00:00Z", "ref": "QA-1"},
    "business_approval": {"by": "carol", "role": "product owner", "at": "2026-11-30T11:00:00Z", "ref": "BIZ-1"},
    "change_ticket": {"by": "dave", "role": "change manager", "at": "2026-11-30T11:30:00Z", "ref": "CHG-1"},
}


class Stacks:
    def __init__(self, root):
        self.root = str(root)
        self.roots = dict((env, os.path.join(self.root, env)) for env in STACKS)
        self.work = os.path.join(self.root, "release")
        self.inventory = os.path.join(self.root, "inventory.yml")
        self.extra = {}
        for env, base in STACKS.items():
            extra = lab_vars(self.roots[env], base, base, base + 10, base + 30, base + 31, INSTANCES)
            extra.update({"lab_prometheus_enabled": False, "lab_alertmanager_enabled": False,
                          "lab_traffic_enabled": True, "lab_traffic_rps": 30})
            self.extra[env] = extra

    def release(self, version, approvals=None, check=True, **extra):
        # the version may be a bad one on purpose (a newline, 300 characters): not part of the file name
        path = os.path.join(self.root, "approvals-%08x.yml" % (hash(version) & 0xFFFFFFFF))
        with open(path, "w") as handle:
            yaml.safe_dump({"approvals": APPROVED if approvals is None else approvals}, handle)
        variables = dict(FAST, version=version, approvals_file=path, release_work_dir=self.work)
        variables.update(extra)
        return run_playbook("playbooks/release.yml", variables, check=check, inventory=self.inventory, timeout=600)

    def version(self, env):
        """The version the environment's HAProxy frontend serves (one request)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/" % STACKS[env], timeout=5) as response:
            return response.headers.get("X-Meshapp-Version")

    def instance_versions(self, env):
        out = {}
        for i in range(1, INSTANCES + 1):
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % (STACKS[env] + i), timeout=5) as response:
                out["app%d" % i] = json.loads(response.read())["version"]
        return out

    def audit(self):
        with open(os.path.join(self.work, "audit.jsonl")) as handle:
            return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    wanted = [p for base in STACKS.values() for p in [base, base + 10] + [base + i for i in range(1, INSTANCES + 1)]]
    busy = [port for port in wanted if not port_is_free(port)]
    if busy:
        pytest.fail("ports already in use on 127.0.0.1: %s" % busy)
    lab = Stacks(tmp_path_factory.mktemp("pipeline"))
    write_env_inventory(lab.inventory, dict(
        (env, (lab.roots[env], [("app%d" % i, base + i) for i in range(1, INSTANCES + 1)])) for env, base in STACKS.items()))
    try:
        for env in STACKS:
            run_playbook("playbooks/lab_up.yml", lab.extra[env])
        yield lab
    finally:
        for env in STACKS:
            stop_lab(lab.roots[env], lab.extra[env])


def test_release_runs_every_stage_with_recorded_evidence(stacks):
    assert [stacks.version(env) for env in STACKS] == ["5.0.0"] * 3
    run = stacks.release("5.1.0")
    for env in STACKS:
        assert stacks.instance_versions(env) == {"app1": "5.1.0", "app2": "5.1.0"}, env
    assert "audit log verified" in run.output
    entries = stacks.audit()
    deploys = [(e["environment"], e["result"]) for e in entries if e["action"] == "deploy"]
    assert deploys == [("development", "started"), ("development", "success"), ("staging", "started"),
                       ("staging", "success"), ("production", "started"), ("production", "success")]
    assert [e["result"] for e in entries if e["action"] in ("predeploy_check", "release_create", "communicate")] == \
        ["success"] * 3
    # the release itself: signed off manifest, notes per audience, the outbox message
    out = os.path.join(stacks.work, "5.1.0")
    for name in ("release-5.1.0.json", "announcement-5.1.0.md", "notes_engineering-5.1.0.md", "notes_support-5.1.0.md"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(stacks.work, "outbox.jsonl")) as handle:
        assert "5.1.0" in handle.readline()
    # a re-run resumes: every stage is already done, nothing is deployed again
    again = stacks.release("5.1.0")
    assert again.output.count("already runs 5.1.0") == 3
    assert [e["action"] for e in stacks.audit()[len(entries):]] == ["predeploy_check"]


def test_production_refuses_without_staging_success_and_approvals(stacks):
    approvals = dict((k, v) for k, v in APPROVED.items() if k not in ("business_approval", "change_ticket"))
    run = stacks.release("5.2.0", approvals=approvals, check=False, release_stages=["production"])
    assert run.rc != 0
    assert "production refused for 5.2.0: missing staging_success, business_approval, change_ticket" in run.output
    assert stacks.instance_versions("production") == {"app1": "5.1.0", "app2": "5.1.0"}
    last = stacks.audit()[-1]
    assert (last["action"], last["environment"], last["result"]) == ("deploy", "production", "aborted")
    assert last["details"]["missing"] == ["staging_success", "business_approval", "change_ticket"]


def test_faulty_release_is_rolled_back_automatically_in_development(stacks):
    run = stacks.release("5.3.0", check=False, fault="errors")
    assert run.rc != 0
    assert "development deploy of 5.3.0 failed" in run.output and "rolled back automatically to 5.1.0" in run.output
    assert stacks.instance_versions("development") == {"app1": "5.1.0", "app2": "5.1.0"}
    assert stacks.instance_versions("staging") == {"app1": "5.1.0", "app2": "5.1.0"}
    tail = [(e["action"], e.get("environment"), e["result"]) for e in stacks.audit()
            if e.get("version") == "5.3.0" and e["action"] in ("deploy", "incident", "rollback")]
    assert tail == [("deploy", "development", "started"), ("deploy", "development", "failure"),
                    ("incident", "development", "info"), ("rollback", "development", "success")]
    # the chain still verifies after the failure
    report = run_playbook("playbooks/report.yml", {"report_audit_log": os.path.join(stacks.work, "audit.jsonl"),
                                                   "report_output_dir": os.path.join(stacks.root, "report")},
                          inventory=stacks.inventory, check=False)
    assert report.rc == 0, report.output[-3000:]


def test_faulty_canary_is_aborted_and_the_stage_keeps_its_version(stacks):
    run = stacks.release("5.4.0", check=False, fault="errors", strategy="canary", release_stages=["development"])
    assert run.rc != 0
    assert "development deploy of 5.4.0 failed" in run.output and "error_rate" in run.output, run.output[-3000:]
    # back to what ran before this deploy (5.1.0), never to an older release
    assert stacks.instance_versions("development") == {"app1": "5.1.0", "app2": "5.1.0"}
    assert "rolled back automatically to 5.1.0" in run.output


def test_deploy_yml_needs_production_approvals_and_is_recorded(stacks):
    """deploy.yml goes through the pipeline's approvals, lock, audit log and state: release.yml then sees its work."""
    common = dict(FAST, release_work_dir=stacks.work, env="production", version="5.1.0")
    refused = run_playbook("playbooks/deploy.yml", common, check=False, inventory=stacks.inventory)
    assert refused.rc != 0
    assert "refused: missing approvals business_approval, change_ticket" in refused.output
    last = stacks.audit()[-1]
    assert (last["action"], last["environment"], last["result"]) == ("deploy", "production", "aborted")
    # break glass: proceeds, recorded; the version is installed already (5.1.0), so nothing changes but the record
    run = run_playbook("playbooks/deploy.yml", dict(common, break_glass_reason="INC-42 hotfix"),
                       inventory=stacks.inventory)
    entries = stacks.audit()
    glass = [e for e in entries if e["action"] == "break_glass"][-1]
    assert glass["details"]["reason"] == "INC-42 hotfix"
    assert glass["details"]["missing"] == ["business_approval", "change_ticket"]
    done = entries[-1]
    assert (done["action"], done["result"], done["details"]["source"]) == ("deploy", "success", "deploy.yml")
    # measured from HAProxy's counters, never a constant
    assert done["details"]["measured"]["source"].startswith("haproxy:"), done["details"]["measured"]
    assert "rolling 5.1.0 in production: complete" in run.output


def test_bad_versions_fail_before_anything_changes(stacks):
    before = len(stacks.audit())
    for bad in ("5.2.0\n", "5.1", "v" * 300):
        run = stacks.release(bad, check=False, release_stages=["development"])
        assert run.rc != 0 and "must be a full SemVer 2.0" in run.output, (bad, run.output[-1500:])
        run = run_playbook("playbooks/deploy.yml", dict(FAST, release_work_dir=stacks.work, env="development",
                                                        version=bad), check=False, inventory=stacks.inventory)
        assert run.rc != 0 and "invalid version" in run.output, (bad, run.output[-1500:])
    assert len(stacks.audit()) == before
    missing = stacks.release("5.2.0", check=False, approvals_file="/nonexistent/approvals.yml")
    assert missing.rc != 0 and "/nonexistent/approvals.yml" in missing.output and "not found" in missing.output, \
        missing.output[-1500:]


def test_emergency_patch_records_its_deadlines(stacks):
    run = stacks.release("5.5.0", emergency="critical", cve="CVE-2026-0001", release_stages=["development"])
    assert "release 5.5.0 done" in run.output
    marks = [e for e in stacks.audit() if e["action"] == "emergency_patch"]
    assert [m["result"] for m in marks] == ["started", "success"]
    assert marks[0]["details"]["security_notify_deadline_hours"] == 1
    assert marks[1]["details"]["deploy_deadline_hours"] == 4 and marks[1]["details"]["deadline_met"] is True
    with open(os.path.join(stacks.work, "outbox.jsonl")) as handle:
        assert "[security] emergency patch 5.5.0 (critical CVE-2026-0001)" in handle.read()
