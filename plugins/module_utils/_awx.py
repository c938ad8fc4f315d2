# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Approval nodes of an AWX / Automation Controller workflow job as release evidence (stdlib only, Python 3.9+).

The AWX API v2 answers ``/api/v2/workflow_jobs/<id>/workflow_nodes/`` with a paginated list of workflow job nodes;
a node that has run carries ``summary_fields.job`` (``type: workflow_approval`` for an approval node) and the approval
itself is ``/api/v2/workflow_approvals/<id>/``: ``status`` (``successful`` once approved, ``failed`` once denied or
timed out, ``pending`` while waiting), ``timed_out``, ``finished`` and ``summary_fields.approved_or_denied_by``.
Only an approved node grants evidence: denied, timed out, pending or canceled grants nothing (fail closed).
"""

from __future__ import annotations

import base64
import json
import ssl
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin, urlsplit
from urllib.request import HTTPSHandler, Request, build_opener

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

# the seed's approval gates: QA signs off before staging; the business approves (with a change ticket) before production
DEFAULT_GRANTS = {
    "QA sign-off": ["qa_signoff"],
    "business approval": ["business_approval", "change_ticket"],
}
# bounds a runaway pagination (a controller answering `next` forever)
MAX_PAGES = 100


class AwxError(MeshosError):
    """The controller could not be read or answered something unexpected. One-line message naming the URL."""


def _decision(approval):
    """approved | denied | timed_out | pending | canceled | <status>, from a workflow_approval serializer payload."""
    status = approval.get("status")
    if approval.get("timed_out"):
        return "timed_out"
    if status == "successful":
        return "approved"
    if status == "failed":
        return "denied"
    if status in ("pending", "new", "waiting", "running"):
        return "pending"
    return str(status or "unknown")


def _actor(approval):
    """Who approved or denied: the username from summary_fields (the field itself is only a related URL)."""
    who = (approval.get("summary_fields") or {}).get("approved_or_denied_by") or {}
    if isinstance(who, dict):
        return who.get("username") or (str(who["id"]) if who.get("id") is not None else None)
    return str(who) if who else None


class AwxClient:
    """Minimal read-only AWX API v2 client: one credential, JSON GETs, fail closed on anything unexpected."""

    def __init__(self, host, token=None, username=None, password=None, validate_certs=True, timeout=10,
                 opener=None):
        if not host:
            raise AwxError("no controller host: set controller_host or CONTROLLER_HOST (TOWER_HOST)")
        if "://" not in host:
            host = "https://" + host
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AwxError("invalid controller host %r: expected https://HOST[:PORT] (or http://)" % host)
        self.host = host.rstrip("/")
        if token:
            self._auth = "Bearer " + token
        elif username and password:
            raw = ("%s:%s" % (username, password)).encode("utf-8")
            self._auth = "Basic " + base64.b64encode(raw).decode("ascii")
        else:
            raise AwxError("no controller credential: set controller_oauthtoken (CONTROLLER_OAUTH_TOKEN) or "
                           "controller_username and controller_password (CONTROLLER_USERNAME, CONTROLLER_PASSWORD)")
        self.timeout = timeout
        if opener is None:
            context = ssl.create_default_context()
            if not validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            opener = build_opener(HTTPSHandler(context=context))
        self._opener = opener

    def get(self, path):
        url = urljoin(self.host + "/", path.lstrip("/")) if not path.startswith("http") else path
        request = Request(url, headers={"Authorization": self._auth, "Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read()
        except HTTPError as exc:
            hint = {401: " (credential rejected)", 403: " (the credential may not read this workflow job)",
                    404: " (no such workflow job or approval)"}.get(exc.code, "")
            raise AwxError("controller answered HTTP %s for %s%s" % (exc.code, url, hint))
        except (URLError, OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AwxError("controller unreachable at %s: %s" % (url, reason))
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise AwxError("controller answered non-JSON for %s" % url)

    def paged(self, path):
        """Every result of a paginated list (follows `next`)."""
        results = []
        for _page in range(MAX_PAGES):
            data = self.get(path)
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise AwxError("unexpected answer for %s: expected a paginated list with results" % path)
            results.extend(data["results"])
            path = data.get("next")
            if not path:
                return results
        raise AwxError("more than %d pages for %s" % (MAX_PAGES, path))


def _grants_for(node_names, grants):
    """The evidence names a node grants: its names matched case-insensitively against the grants keys."""
    wanted = set(name.strip().lower() for name in node_names if name)
    granted = []
    for key, names in grants.items():
        if key.strip().lower() in wanted:
            granted.extend(n for n in names if n not in granted)
    return granted


def workflow_approvals(client, workflow_job_id, grants=None, version=None):
    """Read the approval nodes of a workflow job; return (approvals, nodes).

    approvals: evidence name -> {by, role, at, ref, node, workflow_job_id, approval_id[, versions]} for approved nodes.
    nodes: every approval node, with its decision (approved, denied, timed_out, pending, ...) and what it grants.
    """
    grants = DEFAULT_GRANTS if grants is None else grants
    for key, names in grants.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise AwxError("invalid grants for node %r: expected a list of evidence names, got %r" % (key, names))
    try:
        wf_id = int(workflow_job_id)
    except (TypeError, ValueError):
        raise AwxError("invalid workflow job id %r: expected a positive integer" % (workflow_job_id,))
    if wf_id <= 0:
        raise AwxError("invalid workflow job id %r: expected a positive integer" % (workflow_job_id,))
    approvals = {}
    nodes = []
    for node in client.paged("/api/v2/workflow_jobs/%d/workflow_nodes/" % wf_id):
        summary = node.get("summary_fields") or {}
        job = summary.get("job") or {}
        template = summary.get("unified_job_template") or {}
        is_approval = job.get("type") == "workflow_approval" or template.get("unified_job_type") == "workflow_approval"
        if not is_approval:
            continue
        names = [template.get("name"), job.get("name"), node.get("identifier")]
        name = template.get("name") or job.get("name") or node.get("identifier") or "node %s" % node.get("id")
        granted = _grants_for(names, grants)
        entry = dict(node=name, node_id=node.get("id"), identifier=node.get("identifier"), approval_id=job.get("id"),
                     decision="not_run", by=None, at=None, timed_out=False, grants=granted)
        if job.get("id") is not None:
            approval = client.get("/api/v2/workflow_approvals/%d/" % int(job["id"]))
            entry.update(decision=_decision(approval), by=_actor(approval), at=approval.get("finished"),
                         timed_out=bool(approval.get("timed_out")))
        nodes.append(entry)
        if entry["decision"] != "approved":
            continue
        for evidence in granted:
            record = dict(by=entry["by"] or "unknown", role="AWX approval node %s" % name, at=entry["at"],
                          ref="%s/#/jobs/workflow/%d" % (client.host, wf_id), node=name, workflow_job_id=wf_id,
                          approval_id=entry["approval_id"])
            if version:
                record["versions"] = [version]
            approvals[evidence] = record
    return approvals, nodes
