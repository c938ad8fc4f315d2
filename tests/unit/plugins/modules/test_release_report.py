# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meshos.release.release_report in-process: a real audit log, a small HTTP server answering /api/v1/query_range
like Prometheus (the integration test uses a real Prometheus and Chromium)."""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse

import pytest

from ansible_collections.meshos.release.plugins.module_utils import _release_report as rr
from ansible_collections.meshos.release.plugins.module_utils._audit import AuditLog
from ansible_collections.meshos.release.plugins.modules import release_report

from ansible_collections.meshos.release.tests.unit.plugins.modules.module_runner import run_module

START = 1796205600  # 2026-12-02T10:00:00Z


class _Prometheus(http.server.BaseHTTPRequestHandler):
    queries = []
    auth = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urllib.parse.urlparse(self.path)
        args = dict(urllib.parse.parse_qsl(url.query))
        _Prometheus.queries.append(args)
        _Prometheus.auth.append(self.headers.get("Authorization"))
        if url.path != "/api/v1/query_range":
            self.send_response(404)
            self.end_headers()
            return
        start, end, step = float(args["start"]), float(args["end"]), float(args["step"].rstrip("s"))
        spike = "5.." in args["query"]
        values, ts = [], start
        while ts <= end:
            value = (0.4 if START + 60 <= ts <= START + 120 else 0.0) if spike else 20.0
            values.append([ts, str(value)])
            ts += step
        values.append([end, "NaN"])  # never drawn
        body = json.dumps({"status": "success", "data": {"resultType": "matrix",
                                                         "result": [{"metric": {}, "values": values}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def prometheus():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Prometheus.queries = []
    _Prometheus.auth = []
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def ts(offset):
    return rr._iso(START + offset)


@pytest.fixture
def audit(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path)
    for offset, fields in (
            (0, dict(action="deploy", version="5.1.0", result="started")),
            (30, dict(action="canary_step", version="5.1.0", result="success", details={"step": 1, "weight": 10})),
            (90, dict(action="deploy", version="5.1.0", result="failure", duration=90.0,
                      details={"failed_task": "Gate the canary step", "reason": "error_rate 0.4 > 0.01"})),
            (110, dict(action="rollback", version="5.1.0", result="success", duration=20.0,
                       details={"automatic": True, "to_version": "5.0.0", "from_version": "5.1.0"}))):
        log.append(actor="tester", environment="production", strategy="canary", ts=ts(offset), **fields)
    return path


def test_report_files_charts_and_markers(tmp_path, audit, prometheus):
    pytest.importorskip("plotly")
    out = tmp_path / "out"
    args = {"audit_log": audit, "version": "5.1.0", "output_dir": str(out), "prometheus_url": prometheus,
            "padding": 30, "period": "all", "retrospective": "# Release v5.1.0 Retrospective\n",
            # a fixed end: "per day" over an open period moves with the clock, and the re-run below must match
            "until": ts(86400)}
    result = run_module(release_report, args)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["outcome"] == "rolled_back"
    assert result["window"] == {"start": ts(-30), "end": ts(140), "step_seconds": 1}
    charts = result["charts"]
    assert charts["error_rate"]["max"] == 0.4 and charts["request_rate"]["mean"] == 20.0
    assert all(c["source"] == "prometheus:" + prometheus and c["points"] == 171 for c in charts.values())
    assert [e["label"] for e in result["events"]] == [
        "deploy production started", "canary step production 1: 10%", "gate failed production",
        "rollback production"]
    (group,) = result["dora"]["groups"]
    assert group["change_failure_rate"] == 100.0 and group["time_to_restore_seconds"] == 20.0
    assert group["deployment_frequency_per_day"] == pytest.approx(1.0, abs=0.01)
    page = (out / "release-report-5.1.0.html").read_text()
    assert page.count('class="chart"') == 3 and page.count('data-points="171"') == 3
    assert "gate failed production" in page and "rollback production" in page and "Retrospective" in page
    assert "cdn.plot.ly" not in page.split("<body", 1)[1][:2000]  # plotly.js is inline
    markdown = (out / "release-report-5.1.0.md").read_text()
    assert "Outcome: **rolled_back**" in markdown and "| Error rate | prometheus:" in markdown
    assert "at: Gate the canary step; error_rate 0.4 > 0.01" in markdown
    assert markdown.rstrip().endswith("# Release v5.1.0 Retrospective")
    # the rate window is in every query; the same inputs write nothing new
    assert all("[1m]" in q["query"] for q in _Prometheus.queries)
    again = run_module(release_report, args)
    assert again["changed"] is False


def test_check_mode_writes_nothing(tmp_path, audit, prometheus):
    pytest.importorskip("plotly")
    out = tmp_path / "out"
    result = run_module(release_report, {"audit_log": audit, "version": "5.1.0", "output_dir": str(out),
                                         "prometheus_url": prometheus, "_ansible_check_mode": True})
    assert result["changed"] is True and not out.exists()


def test_monitoring_auth_reaches_prometheus_and_is_never_returned(tmp_path, audit, prometheus):
    token = "report-token-0123456789"
    args = {"audit_log": audit, "version": "5.1.0", "output_dir": str(tmp_path), "prometheus_url": prometheus,
            "html": False, "monitoring_auth": {"bearer_token": token, "allow_plaintext": True}}
    result = run_module(release_report, args)
    assert not result.get("failed"), result
    assert _Prometheus.auth and set(_Prometheus.auth) == {"Bearer " + token}
    assert token not in json.dumps(result) and token not in (tmp_path / "release-report-5.1.0.md").read_text()
    # credentials over plain http:// without allow_plaintext: refused before any request, nothing written
    _Prometheus.auth = []
    out = tmp_path / "refused"
    refused = run_module(release_report, dict(args, output_dir=str(out), monitoring_auth={"bearer_token": token}))
    assert refused["failed"] and "plain http://" in refused["msg"] and token not in refused["msg"]
    assert _Prometheus.auth == [] and not out.exists()


def test_unreachable_prometheus_is_not_measured(tmp_path, audit):
    result = run_module(release_report, {"audit_log": audit, "version": "5.1.0", "output_dir": str(tmp_path),
                                         "prometheus_url": "http://127.0.0.1:9", "timeout": 2, "html": False})
    assert not result.get("failed"), result
    for chart in result["charts"].values():
        assert chart["source"] is None and chart["points"] == 0 and "failed" in chart["reason"]
    markdown = (tmp_path / "release-report-5.1.0.md").read_text()
    assert markdown.count("| 0 | - | - |") == 3 and "not measured: range query" in markdown
    assert result["html_path"] is None and not os.path.exists(tmp_path / "release-report-5.1.0.html")


def test_without_version_only_the_delivery_metrics(tmp_path, audit):
    result = run_module(release_report, {"audit_log": audit, "period": "day"})
    assert result["changed"] is False and result["html_path"] is None and result["markdown_path"] is None
    assert result["dora"]["groups"][0]["period"] == "2026-12-02"
    assert "| production | 2026-12-02 | 1 |" in result["dora_markdown"]


def test_missing_plotly_is_missing_required_lib(tmp_path, audit, monkeypatch):
    monkeypatch.setattr(rr, "HAS_PLOTLY", False)
    result = run_module(release_report, {"audit_log": audit, "version": "5.1.0", "output_dir": str(tmp_path)})
    assert result["failed"] and "Failed to import the required Python library (plotly)" in result["msg"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith("release-report")]


@pytest.mark.parametrize("extra, words", [
    ({"rate_window": "1m])"}, "rate_window '1m])' is not allowed"),
    ({"padding": -1}, "padding -1 is not allowed"),
    ({"queries": {"error_rate": "sum(x{code='5'})"}}, "queries.error_rate"),
    ({"version": "9.9.9"}, "version '9.9.9' has no audit entries"),
    ({"since": "soon"}, "since 'soon' is not allowed"),
])
def test_bad_input_fails_closed_with_one_line(tmp_path, audit, extra, words):
    args = {"audit_log": audit, "version": "5.1.0", "output_dir": str(tmp_path / "out"), "html": False}
    args.update(extra)
    result = run_module(release_report, args)
    assert result["failed"] and words in result["msg"] and "\n" not in result["msg"], result["msg"]
    assert not (tmp_path / "out").exists()
