# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release report (role meshos.release.report, module meshos.release.release_report) from a real audit log and a
real Prometheus with data, opened in headless Chromium.

Two meshapp instances under steady traffic, scraped every second by Prometheus, all on 127.0.0.1 in ports 23000-23099
(docs/design.md). A good release (5.1.0: canary steps, then done) and a faulty one (5.2.0: one instance answers half of
its requests with 500, the gate fails, it is rolled back) are recorded in a hash-chained audit log as they happen;
every canary step is judged for real (health_gate mode=compare of the canary instance against the stable one: score,
measured share); playbooks/report.yml writes each release's page, and Chromium checks that it renders without script
errors, that every chart shows samples, and that the rolled-back page shows the error spike, the failed gate and the rollback.
Screenshots: tests/output/report-good.png and tests/output/report-rolled-back.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import free_ports
from test_health_gate import Procs, Traffic, release, start_app, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
OUTPUT = os.path.join(ROOT, "tests", "output")
sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))

from ansible_collections.meshos.release.plugins.module_utils._audit import AuditLog  # noqa: E402
from ansible_collections.meshos.release.plugins.module_utils.gate.loop import run_gate  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PADDING = 6


def _judged_step(canary_port, stable_port, step, total, weight, versions):
    """The details of a canary step entry as roles/deploy/tasks/step_record.yml writes them, from a real judgement:
    health_gate mode=compare of the canary instance against the stable one for 5 s (score, measured share)."""
    result = run_gate({"mode": "compare", "targets": ["http://127.0.0.1:%d" % canary_port],
                       "baseline_targets": ["http://127.0.0.1:%d" % stable_port], "interval": 1, "window": 1,
                       "duration": 5, "checks": ["health_checks", "error_rate"], "fail_fast": False})
    judge = result["judge"]
    return {"step": "%d/%d" % (step, total), "step_number": step, "step_total": total, "weight": weight,
            "actual_share_percent": judge["traffic"]["canary_share_percent"], "hosts_per_version": versions,
            "verdict": result["verdict"], "summary": result["summary"], "mode": "compare", "score": judge["score"],
            "judge": judge["status"], "judgements": judge["judgements"], "checks": result["checks"]}


def _prom_value(prom, query):
    with urllib.request.urlopen(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": query}), timeout=5) as resp:
        result = json.loads(resp.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Run both releases against real instances and Prometheus; return the paths of the audit log and Prometheus."""
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not installed")
    tmp = tmp_path_factory.mktemp("report")
    app1, app2, prom_port = free_ports(23000, 23099, 3)
    prom = "http://127.0.0.1:%d" % prom_port
    manager, load = Procs(str(tmp)), Traffic()
    log = AuditLog(str(tmp / "audit.jsonl"))

    def record(**fields):
        log.append(actor="report-test", environment="production", **fields)

    def swap(port, release_dir):
        # a deploy (or its rollback) of one instance: stop it, start it on another release directory
        manager.stop("app%d" % port)
        start_app(manager, port, release_dir)
        wait_http("http://127.0.0.1:%d/ready" % port)

    try:
        good, faulty = release(tmp, "5.1.0"), release(tmp, "5.2.0", error_ratio=0.5)
        for port in (app1, app2):
            start_app(manager, port, good)
        for port in (app1, app2):
            wait_http("http://127.0.0.1:%d/ready" % port)
            load.add(port, per_port=2)
        (tmp / "prom.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: meshapp\n    static_configs:\n      - targets: ['127.0.0.1:%d', "
            "'127.0.0.1:%d']\n" % (app1, app2))
        manager.start("prometheus", ["prometheus", "--config.file", str(tmp / "prom.yml"),
                                     "--storage.tsdb.path", str(tmp / "prom-data"),
                                     "--web.listen-address", "127.0.0.1:%d" % prom_port])
        wait_http(prom + "/-/ready", timeout=30)
        deadline = time.monotonic() + 30
        while (_prom_value(prom, "sum(rate(meshapp_requests_total[3s]))") or 0) <= 0:
            assert time.monotonic() < deadline, "prometheus has no meshapp data after 30 s"
            time.sleep(0.5)
        time.sleep(PADDING)  # a baseline before the first release

        started = time.monotonic()
        record(action="deploy", version="5.1.0", strategy="canary", result="started")
        # each instance gets the same direct traffic: the canary's measured share is half, its target share 50 %
        step = _judged_step(app2, app1, 1, 2, 50, {"5.1.0": 2})
        assert step["verdict"] == "pass", step["summary"]
        record(action="canary_step", version="5.1.0", strategy="canary", result="info", details=step)
        time.sleep(2)
        record(action="canary_step", version="5.1.0", strategy="canary", result="info",
               details={"step": "2/2", "weight": 100, "actual_share_percent": None, "verdict": "pass",
                        "hosts_per_version": {"5.1.0": 2}})
        record(action="watch", version="5.1.0", result="success", duration=2.0, details={"verdict": "pass"})
        record(action="deploy", version="5.1.0", strategy="canary", result="success",
               duration=round(time.monotonic() - started, 1),
               details={"measured": {"source": None, "reason": "no HAProxy in this test"}})
        time.sleep(PADDING)

        started = time.monotonic()
        record(action="deploy", version="5.2.0", strategy="canary", result="started")
        record(action="approval", version="5.2.0", result="success", details={"by": "alice", "grants": ["qa_signoff"]})
        swap(app2, faulty)
        time.sleep(1)
        step = _judged_step(app2, app1, 1, 2, 50, {"5.1.0": 1, "5.2.0": 1})
        assert step["verdict"] == "fail" and step["judge"] == "fail", step["summary"]
        record(action="canary_step", version="5.2.0", strategy="canary", result="info", details=step)
        time.sleep(1)
        errors = _prom_value(prom, 'sum(rate(meshapp_requests_total{code=~"5.."}[3s]))') or 0
        assert errors > 0, "the faulty instance's errors never reached Prometheus"
        record(action="deploy", version="5.2.0", strategy="canary", result="failure",
               duration=round(time.monotonic() - started, 1),
               details={"failed_task": "Gate the canary step", "reason": "error_rate above 0.01",
                        "measured": {"source": None, "reason": "no HAProxy in this test"}})
        rollback_started = time.monotonic()
        swap(app2, good)
        record(action="rollback", version="5.2.0", strategy="canary", result="success",
               duration=round(time.monotonic() - rollback_started, 1),
               details={"automatic": True, "to_version": "5.1.0", "from_version": "5.2.0"})
        time.sleep(PADDING + 2)  # the samples after the rollback, up to the end of the window
        yield {"log": str(tmp / "audit.jsonl"), "prom": prom, "tmp": tmp}
    finally:
        load.stop()
        manager.stop_all()


def _reports(recorded, versions):
    """Both pages from one ansible-playbook run of the report role (as playbooks/report.yml applies it)."""
    out = recorded["tmp"] / "out"
    playbook = recorded["tmp"] / "reports.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Report each release", "ansible.builtin.include_role": {"name": "meshos.release.report"},
                   "loop": versions, "loop_control": {"loop_var": "release_under_test"},
                   "vars": {"report_version": "{{ release_under_test }}",
                            "report_output_dir": str(out) + "/{{ release_under_test }}"}}]}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".build", "collections"))
    extra = {"report_audit_log": recorded["log"], "report_prometheus_url": recorded["prom"],
             "report_rate_window": "3s", "report_padding": PADDING, "report_period": "day",
             "ansible_python_interpreter": sys.executable}
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
                          "-e", json.dumps(extra)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return [(out / v / ("release-report-%s.html" % v), out / v / ("release-report-%s.md" % v)) for v in versions]


def _chromium(tmp, page, *args):
    profile = tmp / ("chromium-profile-%d" % time.monotonic_ns())
    argv = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--user-data-dir=%s" % profile,
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", *args, "file://%s" % page]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    return run


def _open(recorded, page, screenshot):
    """Render the page once: (dom, chart attributes by chart name); asserts no script error and a saved screenshot."""
    os.makedirs(OUTPUT, exist_ok=True)
    target = os.path.join(OUTPUT, screenshot)
    if os.path.exists(target):
        os.remove(target)
    run = _chromium(recorded["tmp"], page, "--dump-dom", "--screenshot=%s" % target, "--window-size=1280,2300",
                    "--hide-scrollbars")
    assert run.returncode == 0, run.stderr[-2000:]
    assert os.path.exists(target) and os.path.getsize(target) > 20000, run.stderr[-2000:]
    dom = run.stdout
    # the console and the page's own error trap: nothing may have failed while loading
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if re.search(r"error|uncaught", line, re.I)], console
    assert not re.search(r"<html[^>]*data-errors", dom), re.search(r"<html[^>]*>", dom).group(0)
    assert re.search(r'<body[^>]*data-charts-checked="\d+"', dom), "the chart check never ran"
    charts = {}
    for match in re.finditer(r'<div class="chart"([^>]*)>', dom):
        attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', match.group(1)))
        charts[attrs["data-chart"]] = attrs
    assert set(charts) == {"request_rate", "error_rate", "latency_p95"}, charts
    for name, attrs in charts.items():
        assert attrs["data-rendered"] == "yes", (name, attrs)
        assert int(attrs["data-rendered-points"]) > 0 and attrs["data-rendered-points"] == attrs["data-points"], \
            (name, attrs)
        assert attrs["data-source"].startswith("prometheus:"), (name, attrs)
    return dom, charts


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/bootstrap.sh installs it)")
def test_good_and_rolled_back_release_reports_render_with_data(recorded):
    (good_html, good_md), (bad_html, bad_md) = _reports(recorded, ["5.1.0", "5.2.0"])

    dom, charts = _open(recorded, good_html, "report-good.png")
    assert float(charts["error_rate"]["data-max"]) < 0.01, charts["error_rate"]
    assert "canary step" in dom and "deploy production done" in dom and "gate failed" not in dom
    good = good_md.read_text()
    assert "Outcome: **success**" in good and "| Error rate | prometheus:%s" % recorded["prom"] in good
    assert "weight 50%" in good and "| Deployment Downtime | 0 minutes | not measured | - |" in good
    # the canary steps over the charts: target and measured share on the right axis, a label per step
    assert "canary share set (%)" in dom and "canary share measured (%)" in dom
    assert "step 1/2 50% score 100" in dom and "step 2/2 100%" in dom
    assert re.search(r"measured share (4\d|5\d)(\.\d+)?%", good), good

    dom, charts = _open(recorded, bad_html, "report-rolled-back.png")
    # one of two instances answered half of its requests with 500: the spike is in the error-rate series
    assert float(charts["error_rate"]["data-max"]) > 0.1, charts["error_rate"]
    # the failed gate and the rollback are drawn on the charts (annotations plotly rendered into the SVG)
    svg_text = " ".join(re.findall(r'class="annotation-text[^"]*"[^>]*>(.*?)</text>', dom))
    assert "gate failed production" in svg_text and "rollback production" in svg_text, svg_text[:500]
    assert "step 1/2 50% score 50 fail" in svg_text and "canary step failed production" in svg_text, svg_text[:800]
    bad = bad_md.read_text()
    assert "Outcome: **rolled_back**" in bad and "at: Gate the canary step" in bad and "automatic; to 5.1.0" in bad
    assert "# Release v5.2.0 Retrospective" in bad and "- Rolled back in production (automatic, to 5.1.0" in bad
    # delivery metrics of the day: two deployments, one failed and rolled back
    assert re.search(r"^\| production \| \d{4}-\d\d-\d\d \| 2 \| [\d.]+ \| [\d.]+ s \| 50.0% \| 50.0% \| [\d.]+ s \|$",
                     bad, re.M), bad
