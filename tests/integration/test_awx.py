# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX approvals as release evidence, against a local HTTP server answering AWX API v2 payloads.

The payloads follow AWX's serializers: /api/v2/workflow_jobs/<id>/workflow_nodes/ is a paginated list of
WorkflowJobNodeSerializer items (summary_fields.job with type workflow_approval, summary_fields.unified_job_template
with unified_job_type), /api/v2/workflow_approvals/<id>/ a WorkflowApprovalSerializer item (status successful / failed /
pending, timed_out, finished, summary_fields.approved_or_denied_by {id, username, first_name, last_name}).
Ports 27100-27198 (docs/design.md); 27199 is never opened: the unreachable controller.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO_ROOT, ansible_env, free_ports, port_is_free

TOKEN = "awx-test-token-not-a-secret"
CLOSED_PORT = 27199


def _node(node_id, wf_id, identifier, template_name, job=None):
    """A WorkflowJobNodeSerializer item; job is the spawned approval (id, status) or None (not run yet)."""
    summary = {
        "workflow_job": {"id": wf_id, "name": "meshos release - dev to production"},
        "unified_job_template": {"id": 100 + node_id, "name": template_name, "description": "",
                                 "unified_job_type": "workflow_approval"},
    }
    if job:
        summary["job"] = {"id": job["id"], "name": template_name, "description": "", "status": job["status"],
                          "failed": job["status"] == "failed", "elapsed": 12.5, "type": "workflow_approval"}
    return {
        "id": node_id, "type": "workflow_job_node", "url": "/api/v2/workflow_job_nodes/%d/" % node_id,
        "related": {"workflow_job": "/api/v2/workflow_jobs/%d/" % wf_id},
        "summary_fields": summary, "created": "2026-12-01T09:00:00Z", "modified": "2026-12-01T09:00:00Z",
        "job": job["id"] if job else None, "workflow_job": wf_id, "unified_job_template": 100 + node_id,
        "success_nodes": [], "failure_nodes": [], "always_nodes": [], "all_parents_must_converge": False,
        "do_not_run": False, "identifier": identifier, "extra_data": {},
    }


def _deploy_node(node_id, wf_id, name, job_id):
    return {
        "id": node_id, "type": "workflow_job_node", "identifier": name, "job": job_id, "workflow_job": wf_id,
        "summary_fields": {
            "job": {"id": job_id, "name": name, "status": "successful", "failed": False, "type": "job"},
            "unified_job_template": {"id": 300 + node_id, "name": name, "unified_job_type": "job"},
        },
    }


def _approval(approval_id, wf_id, name, decision, username="alice"):
    """A WorkflowApprovalSerializer item: approved, denied, timed_out or pending."""
    status = {"approved": "successful", "denied": "failed", "timed_out": "failed", "pending": "pending"}[decision]
    summary = {
        "workflow_job": {"id": wf_id, "name": "meshos release - dev to production"},
        "workflow_approval_template": {"id": 200, "name": name, "description": "", "timeout": 86400},
        "unified_job_template": {"id": 200, "name": name, "unified_job_type": "workflow_approval"},
        "source_workflow_job": {"id": wf_id, "name": "meshos release - dev to production", "status": "running"},
    }
    if decision in ("approved", "denied"):
        summary["approved_or_denied_by"] = {"id": 7, "username": username, "first_name": "", "last_name": ""}
    return {
        "id": approval_id, "type": "workflow_approval", "url": "/api/v2/workflow_approvals/%d/" % approval_id,
        "summary_fields": summary, "name": name, "description": "", "unified_job_template": 200,
        "launch_type": "workflow", "status": status, "failed": status == "failed",
        "started": "2026-12-01T09:30:00.000000Z",
        "finished": None if decision == "pending" else "2026-12-01T10:00:00.000000Z",
        "canceled_on": None, "elapsed": 1800.0,
        "job_explanation": "The approval node %s (%d) has expired after 86400 seconds." % (name, approval_id)
        if decision == "timed_out" else "",
        "can_approve_or_deny": decision == "pending", "approval_expiration": None,
        "timed_out": decision == "timed_out",
    }


class FakeAwx:
    """Workflow job 42: deploy-development, then the QA sign-off node, the business approval node and a node not run."""

    def __init__(self, qa="approved", business="approved"):
        wf = 42
        self.nodes = [
            _deploy_node(1, wf, "meshos release - deploy development", 501),
            _node(2, wf, "approve-staging", "QA sign-off", {"id": 61, "status": qa}),
            _deploy_node(3, wf, "meshos release - deploy staging", 502),
            _node(4, wf, "approve-production", "business approval", {"id": 62, "status": business}),
            _node(5, wf, "approve-rollback-production", "roll back production?"),
        ]
        self.approvals = {61: _approval(61, wf, "QA sign-off", qa, "qa-lead"),
                          62: _approval(62, wf, "business approval", business, "vp-product")}
        self.requests = []


def _handler(fake):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server API)
            fake.requests.append((self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                return self._send(401, {"detail": "Authentication credentials were not provided."})
            path, _sep, query = self.path.partition("?")
            if path == "/api/v2/workflow_jobs/42/workflow_nodes/":
                # two pages, as AWX paginates (page_size 3 here) with a relative `next`
                page = 2 if query == "page=2" else 1
                results = fake.nodes[:3] if page == 1 else fake.nodes[3:]
                return self._send(200, {"count": len(fake.nodes),
                                        "next": "/api/v2/workflow_jobs/42/workflow_nodes/?page=2" if page == 1 else None,
                                        "previous": None if page == 1 else "/api/v2/workflow_jobs/42/workflow_nodes/",
                                        "results": results})
            if path.startswith("/api/v2/workflow_approvals/"):
                approval = fake.approvals.get(int(path.rstrip("/").rsplit("/", 1)[1]))
                if approval:
                    return self._send(200, approval)
            return self._send(404, {"detail": "Not found."})
    return Handler


@pytest.fixture(name="awx")
def awx_fixture():
    """start(qa=..., business=...) -> (FakeAwx, url); every server started is shut down at teardown."""
    servers = []

    def start(**decisions):
        fake = FakeAwx(**decisions)
        port = free_ports(27100, 27198)[0]
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(fake))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return fake, "http://127.0.0.1:%d" % port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _play(tmp_path, text, url, token=TOKEN, extra=None):
    book = tmp_path / "play.yml"
    book.write_text(text)
    env = ansible_env()
    env.update(CONTROLLER_HOST=url, CONTROLLER_OAUTH_TOKEN=token, CONTROLLER_VERIFY_SSL="false")
    argv = [shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook", "-i", "localhost,",
            "-c", "local", str(book), "-e", json.dumps(extra or {})]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


# One ansible-playbook run reads every controller (a run costs seconds under load): per item its own host and token,
# failed_when false so the failures are collected and asserted below.
READ = """
- hosts: localhost
  gather_facts: false
  tasks:
    - meshos.release.awx_approvals:
        workflow_job_id: 42
        version: 5.1.0
        controller_host: "{{ item.url }}"
        controller_oauthtoken: "{{ item.token }}"
      register: awx
      failed_when: false
      loop: "{{ controllers }}"
      loop_control:
        label: "{{ item.case }}"
    - ansible.builtin.copy:
        content: "{{ dict(controllers | map(attribute='case') | zip(awx.results)) | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


@pytest.fixture(name="read_all", scope="module")
def read_all_fixture(tmp_path_factory):
    """case -> module result, for approved / denied / timed_out / pending / unreachable / wrong token."""
    assert port_is_free(CLOSED_PORT)
    servers, controllers, fakes = [], [], {}
    ports = free_ports(27100, 27198, count=5)
    cases = [("approved", "approved"), ("denied", "denied"), ("timed_out", "timed_out"), ("pending", "pending"),
             ("wrong_token", "approved")]
    for (case, business), port in zip(cases, ports):
        fake = FakeAwx(business=business)
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(fake))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        fakes[case] = fake
        controllers.append({"case": case, "url": "http://127.0.0.1:%d" % port,
                            "token": "wrong-token" if case == "wrong_token" else TOKEN})
    controllers.append({"case": "unreachable", "url": "http://127.0.0.1:%d" % CLOSED_PORT, "token": TOKEN})
    tmp = tmp_path_factory.mktemp("awx-read")
    out = tmp / "result.json"
    try:
        rc, output = _play(tmp, READ, "", extra={"out": str(out), "controllers": controllers})
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert rc == 0, output[-3000:]
    results = json.loads(out.read_text())
    results["_output"] = output
    results["_fakes"] = fakes
    results["_urls"] = {c["case"]: c["url"] for c in controllers}
    return results


def test_approved_nodes_grant_the_seed_evidence(read_all):
    result = read_all["approved"]
    assert not result.get("failed"), result
    assert sorted(result["approvals"]) == ["business_approval", "change_ticket", "qa_signoff"]
    qa = result["approvals"]["qa_signoff"]
    assert qa["by"] == "qa-lead" and qa["at"] == "2026-12-01T10:00:00.000000Z" and qa["node"] == "QA sign-off"
    assert qa["workflow_job_id"] == 42 and qa["approval_id"] == 61 and qa["versions"] == ["5.1.0"]
    assert result["approvals"]["change_ticket"]["by"] == "vp-product"
    decisions = {n["node"]: n["decision"] for n in result["nodes"]}
    assert decisions == {"QA sign-off": "approved", "business approval": "approved", "roll back production?": "not_run"}
    assert result["changed"] is False
    # both pages read, the token sent, and never printed
    assert any("page=2" in path for path, _auth in read_all["_fakes"]["approved"].requests)
    assert TOKEN not in read_all["_output"]


@pytest.mark.parametrize("decision", ["denied", "timed_out", "pending"])
def test_denied_timed_out_or_pending_grants_nothing(read_all, decision):
    result = read_all[decision]
    assert not result.get("failed"), result
    assert sorted(result["approvals"]) == ["qa_signoff"]
    node = [n for n in result["nodes"] if n["node"] == "business approval"][0]
    assert node["decision"] == decision and node["grants"] == ["business_approval", "change_ticket"]
    assert node["timed_out"] is (decision == "timed_out")


def test_unreachable_controller_fails_closed(read_all):
    result = read_all["unreachable"]
    assert "approvals" not in result  # the module failed (failed_when: false keeps the run going)
    assert result["msg"].startswith("controller unreachable at http://127.0.0.1:%d/api/v2/workflow_jobs/42/workflow_nodes/: "
                                    % CLOSED_PORT), result["msg"]
    assert "\n" not in result["msg"]


def test_rejected_credential_fails_closed(read_all):
    result = read_all["wrong_token"]
    url = read_all["_urls"]["wrong_token"]
    assert "approvals" not in result  # the module failed (failed_when: false keeps the run going)
    assert result["msg"] == "controller answered HTTP 401 for %s/api/v2/workflow_jobs/42/workflow_nodes/ (credential rejected)" % url
    assert "wrong-token" not in read_all["_output"]


# The pipeline's stage check inside an AWX job (awx_workflow_job_id set): staging requires qa_signoff only here, and
# production's signature rule is applied to staging, so a stage whose requirements are met stops right after them at
# "the release must be signed" (no lab needed): that message proves the AWX approval was accepted as evidence.
STAGE = """
- hosts: localhost
  gather_facts: false
  vars:
    awx_workflow_job_id: 42
    pipeline_version: 5.1.0
    pipeline_stage: staging
    pipeline_audit_log: "{{ work }}/audit.jsonl"
    pipeline_state_root: "{{ work }}/state"
    pipeline_signature_required_stages: [staging]
    pipeline_environments:
      staging: {requires: [qa_signoff], rollback: automatic}
    pipeline_platforms:
      staging: {targets: [{name: app1, ready_url: "http://127.0.0.1:1/ready"}], state_dir: "{{ work }}/app",
                haproxy_socket: "{{ work }}/none.sock"}
    __pipeline_valid_approvals: {}
    __pipeline_public_key: ""
  tasks:
    - ansible.builtin.include_role:
        name: meshos.release.pipeline
        tasks_from: stage
"""


def _audit(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_pipeline_stage_takes_the_awx_approval_as_evidence(tmp_path, awx):
    _fake, url = awx(qa="approved")
    rc, output = _play(tmp_path, STAGE, url, extra={"work": str(tmp_path)})
    assert rc != 0
    assert "staging refused for 5.1.0: the release must be signed" in output, output[-3000:]
    entries = _audit(tmp_path / "audit.jsonl")
    approval = [e for e in entries if e["action"] == "approval"]
    assert len(approval) == 1 and approval[0]["result"] == "success"
    details = approval[0]["details"]
    assert details["by"] == "qa-lead" and details["node"] == "QA sign-off" and details["workflow_job"] == 42
    assert details["at"] == "2026-12-01T10:00:00.000000Z"
    assert [e["details"]["reason"] for e in entries if e["action"] == "deploy"] == ["signed manifest missing"]


def test_pipeline_stage_refuses_a_denied_approval(tmp_path, awx):
    _fake, url = awx(qa="denied")
    rc, output = _play(tmp_path, STAGE, url, extra={"work": str(tmp_path)})
    assert rc != 0
    assert "staging refused for 5.1.0: missing qa_signoff" in output, output[-3000:]
    assert "QA sign-off=denied" in output
    entries = _audit(tmp_path / "audit.jsonl")
    assert [(e["action"], e["result"]) for e in entries] == [("approval", "failure"), ("deploy", "aborted")]
    assert entries[1]["details"]["missing"] == ["qa_signoff"]


def test_pipeline_stage_fails_closed_on_an_unreachable_controller(tmp_path):
    rc, output = _play(tmp_path, STAGE, "http://127.0.0.1:%d" % CLOSED_PORT, extra={"work": str(tmp_path)})
    assert rc != 0
    assert "controller unreachable at http://127.0.0.1:%d/" % CLOSED_PORT in output
    assert not (tmp_path / "state" / "staging.lock").exists()
