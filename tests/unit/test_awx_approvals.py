# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/module_utils/_awx.py: decisions, grants, pagination and failures (no network: a stand-in client)."""

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils import _awx


class StubClient(_awx.AwxClient):
    """AwxClient whose GETs answer from a dict (path -> payload); a missing path is a 404."""

    def __init__(self, answers):
        super().__init__("https://awx.example.com", token="t")
        self.answers = answers

    def get(self, path):
        if path not in self.answers:
            raise _awx.AwxError("controller answered HTTP 404 for %s" % path)
        return self.answers[path]


def _approval_node(node_id, name, approval_id):
    return {"id": node_id, "identifier": name.lower().replace(" ", "-"),
            "summary_fields": {"job": {"id": approval_id, "name": name, "type": "workflow_approval"},
                               "unified_job_template": {"name": name, "unified_job_type": "workflow_approval"}}}


def _answers(status, timed_out=False, who="alice"):
    approval = {"id": 9, "status": status, "timed_out": timed_out, "finished": "2026-12-01T10:00:00Z",
                "summary_fields": {"approved_or_denied_by": {"id": 1, "username": who}} if who else {}}
    return {"/api/v2/workflow_jobs/5/workflow_nodes/": {"results": [_approval_node(1, "QA Sign-Off", 9)], "next": None},
            "/api/v2/workflow_approvals/9/": approval}


def test_approved_grants_evidence_case_insensitively():
    approvals, nodes = _awx.workflow_approvals(StubClient(_answers("successful")), 5, version="5.1.0")
    assert list(approvals) == ["qa_signoff"]
    assert approvals["qa_signoff"]["by"] == "alice" and approvals["qa_signoff"]["versions"] == ["5.1.0"]
    assert approvals["qa_signoff"]["ref"] == "https://awx.example.com/#/jobs/workflow/5"
    assert nodes[0]["decision"] == "approved"


DECISIONS = [("failed", False, "denied"), ("failed", True, "timed_out"), ("pending", False, "pending"),
             ("canceled", False, "canceled")]


@pytest.mark.parametrize("status,timed_out,decision", DECISIONS)
def test_anything_but_approved_grants_nothing(status, timed_out, decision):
    approvals, nodes = _awx.workflow_approvals(StubClient(_answers(status, timed_out)), 5)
    assert approvals == {} and nodes[0]["decision"] == decision


def test_custom_grants_and_unmapped_nodes():
    approvals, nodes = _awx.workflow_approvals(StubClient(_answers("successful")), 5, grants={"other": ["x"]})
    assert approvals == {} and nodes[0]["grants"] == []


@pytest.mark.parametrize("bad", [0, -1, "abc", None])
def test_invalid_workflow_job_id(bad):
    with pytest.raises(_awx.AwxError, match="invalid workflow job id"):
        _awx.workflow_approvals(StubClient({}), bad)


def test_invalid_grants():
    with pytest.raises(_awx.AwxError, match="invalid grants for node 'QA sign-off'"):
        _awx.workflow_approvals(StubClient({}), 5, grants={"QA sign-off": "qa_signoff"})


def test_missing_credential_and_bad_host():
    with pytest.raises(_awx.AwxError, match="no controller credential"):
        _awx.AwxClient("https://awx.example.com")
    with pytest.raises(_awx.AwxError, match="no controller host"):
        _awx.AwxClient(None, token="t")
    with pytest.raises(_awx.AwxError, match="invalid controller host"):
        _awx.AwxClient("ftp://awx.example.com", token="t")
    assert _awx.AwxClient("awx.example.com", token="t").host == "https://awx.example.com"


def test_not_a_paginated_list_fails_closed():
    client = StubClient({"/api/v2/workflow_jobs/5/workflow_nodes/": {"detail": "odd"}})
    with pytest.raises(_awx.AwxError, match="expected a paginated list"):
        _awx.workflow_approvals(client, 5)


def test_endless_pagination_is_bounded():
    client = StubClient({"/p": {"results": [], "next": "/p"}})
    with pytest.raises(_awx.AwxError, match="more than 100 pages"):
        client.paged("/p")


def test_basic_auth_header():
    client = _awx.AwxClient("http://awx.example.com", username="u", password="p")
    assert client._auth == "Basic dTpw"
