# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release report: a self-contained HTML page (plotly charts with plotly.js inline, so it opens offline) and its
Markdown twin for the ticket.

The timeline comes from the release's audit entries; the charts (request rate, error rate, P95) from Prometheus range
queries over the release window (its first to its last audit entry, padded); the success metrics from ``_report.py``
and the delivery metrics from ``_dora.py``. A chart with no series says why ("not measured: ..."): nothing is drawn from
a constant.
"""

from __future__ import annotations

import datetime
import html
import traceback

try:
    import plotly.graph_objects as go
    HAS_PLOTLY = True
    PLOTLY_IMPORT_ERROR = None
except ImportError:
    HAS_PLOTLY = False
    PLOTLY_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.meshos.release.plugins.module_utils._dora import dora_markdown, parse_ts
from ansible_collections.meshos.release.plugins.module_utils._prometheus_range import (
    RangeQueryError,
    auto_step,
    query_range,
)
from ansible_collections.meshos.release.plugins.module_utils._report import metrics_markdown, success_metrics
from ansible_collections.meshos.release.plugins.module_utils._report_events import (
    _details,
    _filter,
    _ordered,
    rollback_events,
)
from ansible_collections.meshos.release.plugins.module_utils._report_steps import draw_steps, step_info


# name -> (title, unit, PromQL with {rate_window}); meshapp's metrics (docs/design.md), overridable per chart
DEFAULT_QUERIES = {
    "request_rate": "sum(rate(meshapp_requests_total[{rate_window}]))",
    "error_rate": ("(sum(rate(meshapp_requests_total{{code=~\"5..\"}}[{rate_window}])) or vector(0))"
                   " / sum(rate(meshapp_requests_total[{rate_window}]))"),
    "latency_p95": ("histogram_quantile(0.95, sum by (le) "
                    "(rate(meshapp_request_duration_seconds_bucket[{rate_window}])))"),
}

CHARTS = (("request_rate", "Request rate", "requests/s"),
          ("error_rate", "Error rate", "share of requests answered 5xx"),
          ("latency_p95", "P95 latency", "seconds"))

# colours by what happened: failures and rollbacks stand out on every chart
KIND_COLOURS = {"failure": "#d62728", "rollback": "#9467bd", "start": "#1f77b4", "success": "#2ca02c",
                "approval": "#17becf", "gate": "#ff7f0e", "info": "#7f7f7f"}


def _epoch(ts):
    try:
        return parse_ts(ts).timestamp()
    except Exception:  # an entry without a readable time is listed, never placed on the charts
        return None


def _iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def release_entries(entries, version):
    """The release's entries plus rollbacks recorded under the version they returned to, in log order."""
    ordered = _ordered(entries)
    seqs = set(r["seq"] for r in rollback_events(ordered) if r["version"] == version and r["seq"] is not None)
    return [e for e in ordered if e.get("version") == version or (e.get("seq") in seqs)]


def describe(entry):
    """(kind, short label, long text) of one audit entry for the timeline."""
    action, result = str(entry.get("action") or ""), str(entry.get("result") or "")
    details = _details(entry)
    env = entry.get("environment") or ""
    where = (" " + env) if env else ""
    extra = []
    for key, fmt in (("step", "step %s"), ("batch", "batch %s"), ("weight", "weight %s%%"),
                     ("canary_weight", "weight %s%%"), ("actual_share_percent", "measured share %s%%"),
                     ("score", "score %s"), ("verdict", "verdict %s"), ("failed_task", "at: %s"),
                     ("to_version", "to %s"), ("by", "by %s"), ("reason", "%s")):
        value = details.get(key)
        if value not in (None, "", [], {}):
            extra.append(fmt % (value,))
    if action == "rollback" or action.endswith("_rollback") or result == "rolled_back":
        kind = "rollback"
        label = "rollback%s%s" % (where, " FAILED" if result == "failure" else "")
        if details.get("automatic"):
            extra.insert(0, "automatic")
    elif result in ("failure", "aborted") or (action in ("canary_step", "batch") and details.get("verdict") == "fail"):
        kind = "failure"
        label = ("%s failed%s" % (action.replace("_", " "), where)) if action in ("canary_step", "batch") else (
            "gate failed%s" % where) if (details.get("failed_task") or "gate" in action or details.get("gate")) \
            else "%s %s%s" % (action, result, where)
    elif action == "approval":
        kind, label = "approval", "approval%s" % where
    elif "gate" in action or action in ("canary_step", "batch") or details.get("weight") is not None:
        kind, label = "gate", "%s%s" % (action.replace("_", " "), where)
        for key, fmt in (("step", " %s"), ("batch", " %s"), ("weight", ": %s%%"), ("canary_weight", ": %s%%")):
            if details.get(key) not in (None, ""):
                label += fmt % (details[key],)
    elif action == "deploy" and result == "started":
        kind, label = "start", "deploy%s started" % where
    elif action == "deploy" and result == "success":
        kind, label = "success", "deploy%s done" % where
    elif action == "watch":
        kind, label = ("success" if result == "success" else "info"), "watch%s %s" % (where, result)
    else:
        kind, label = "info", "%s %s%s" % (action, result, where)
    tail = (": " + "; ".join(str(x) for x in extra)) if extra else ""
    text = "seq %s %s %s%s (%s)%s" % (entry.get("seq"), entry.get("ts"), action, where, result, tail)
    return kind, label, text[:400]


def timeline(entries):
    events = []
    for entry in entries:
        kind, label, text = describe(entry)
        events.append({"seq": entry.get("seq"), "ts": entry.get("ts"), "epoch": _epoch(entry.get("ts")),
                       "kind": kind, "label": label, "text": text, "action": entry.get("action"),
                       "result": entry.get("result"), "environment": entry.get("environment"),
                       "strategy": entry.get("strategy"), "duration": entry.get("duration"),
                       "step_info": step_info(entry)})
    return events


def outcome(entries, version):
    """success, rolled_back, failed, aborted or in progress, from the release's deploy and rollback entries."""
    if any(r["version"] == version for r in rollback_events(entries)):
        return "rolled_back"
    deploys = [e for e in entries if e.get("action") == "deploy" and e.get("version") == version]
    results = [e.get("result") for e in deploys]
    if "failure" in results:
        return "failed"
    if "success" in results and results[-1] in ("success", "started"):
        return "success" if results[-1] == "success" else "in progress"
    if "aborted" in results:
        return "aborted"
    return "in progress" if results else "not deployed"


def window(events, padding):
    stamps = [e["epoch"] for e in events if e["epoch"] is not None]
    if not stamps:
        return None
    return min(stamps) - padding, max(stamps) + padding


def collect_series(prometheus_url, queries, rate_window, start, end, step, query=query_range, **http):
    """{name: {query, source, points, reason, series}} for every chart; a failed query is "not measured" with why."""
    out = {}
    for name, _title, _unit in CHARTS:
        promql = queries[name].format(rate_window=rate_window)
        item = {"query": promql, "source": None, "series": [], "points": 0, "reason": None}
        if not prometheus_url:
            item["reason"] = "no Prometheus configured"
        else:
            try:
                series = query(prometheus_url, promql, start, end, step, **http)
                item["series"] = [s for s in series if s["points"]]
                item["points"] = sum(len(s["points"]) for s in item["series"])
                if item["points"]:
                    item["source"] = "prometheus:%s" % prometheus_url.rstrip("/")
                else:
                    item["reason"] = "Prometheus returned no samples for the release window"
            except RangeQueryError as exc:
                item["reason"] = str(exc)
        values = [v for s in item["series"] for _t, v in s["points"]]
        item["max"] = max(values) if values else None
        item["mean"] = (sum(values) / len(values)) if values else None
        out[name] = item
    return out


def _text(value):
    """Text for a plotly label: plotly reads a few HTML tags and entities, quotes are shown as they are."""
    return html.escape(value, quote=False)


def _figure(name, title, unit, item, events, span):
    fig = go.Figure()
    for series in item["series"]:
        labels = series["labels"]
        legend = ", ".join("%s=%s" % kv for kv in sorted(labels.items())) or title
        fig.add_trace(go.Scatter(x=[_iso(t) for t, _v in series["points"]], y=[v for _t, v in series["points"]],
                                 mode="lines", name=legend, meta="metric", line={"width": 2}))
    top = item["max"] if item["max"] else 1.0
    placed = [e for e in events if e["epoch"] is not None]
    labelled = {}
    for event in placed:
        colour = KIND_COLOURS[event["kind"]]
        strong = event["kind"] in ("failure", "rollback")
        fig.add_shape(type="line", xref="x", yref="paper", x0=_iso(event["epoch"]), x1=_iso(event["epoch"]),
                      y0=0, y1=1, line={"color": colour, "width": 2 if strong else 1,
                                        "dash": "solid" if strong else "dot"})
        if strong or event["kind"] in ("start", "success"):
            # entries of the same second (a failed gate and its rollback) side by side, not on top of each other
            shift = 13 * labelled.get(int(event["epoch"]), 0)
            labelled[int(event["epoch"])] = labelled.get(int(event["epoch"]), 0) + 1
            fig.add_annotation(x=_iso(event["epoch"]), y=1, yref="paper", text=_text(event["label"]),
                               showarrow=False, textangle=-90, xanchor="right", yanchor="top", xshift=shift,
                               font={"color": colour, "size": 10})
    if placed:
        # one marker per audit entry: hover shows the whole entry line
        fig.add_trace(go.Scatter(x=[_iso(e["epoch"]) for e in placed], y=[top * 1.02 for _e in placed],
                                 mode="markers", name="audit events", meta="events",
                                 marker={"color": [KIND_COLOURS[e["kind"]] for e in placed], "size": 9,
                                         "symbol": ["x" if e["kind"] in ("failure", "rollback") else "circle"
                                                    for e in placed]},
                                 hovertext=[e["text"] for e in placed], hoverinfo="text"))
    draw_steps(fig, go, placed, _iso)
    if not item["series"]:
        fig.add_annotation(x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16},
                           text="not measured: %s" % _text(str(item["reason"])[:120]))
    subtitle = ("source: %s, %s" % (item["source"], item["query"])) if item["source"] \
        else "not measured: %s" % item["reason"]
    fig.update_layout(title={"text": "%s<br><sup>%s</sup>" % (title, _text(subtitle[:160]))},
                      height=330, margin={"l": 60, "r": 20, "t": 70, "b": 40},
                      xaxis={"range": [_iso(span[0]), _iso(span[1])], "type": "date"},
                      yaxis={"title": {"text": unit}, "rangemode": "tozero"},
                      showlegend=True, legend={"orientation": "h", "y": -0.2}, template="plotly_white")
    return fig


CHECK_SCRIPT = """
<script>
/* after plotly has drawn: how many samples each chart shows, for readers and the report test */
window.addEventListener('load', function () {
  setTimeout(function () {
    var total = 0;
    document.querySelectorAll('.chart').forEach(function (box) {
      var plot = box.querySelector('.js-plotly-plot');
      var points = 0;
      if (plot && plot.data) {
        plot.data.forEach(function (trace) { if (trace.meta === 'metric' && trace.x) { points += trace.x.length; } });
      }
      box.setAttribute('data-rendered-points', String(points));
      box.setAttribute('data-rendered', plot && plot.querySelector('.main-svg') ? 'yes' : 'no');
      total += points;
    });
    document.body.setAttribute('data-charts-checked', String(total));
  }, 200);
});
</script>
"""

ERROR_TRAP = """
<script>
/* any script error while the page loads is kept on the body, so a headless check can read it */
window.addEventListener('error', function (ev) {
  var seen = document.documentElement.getAttribute('data-errors') || '';
  document.documentElement.setAttribute('data-errors', seen + (ev.message || 'error') + '\\n');
});
</script>
"""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:4px} .outcome{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff}
.success{background:#2ca02c} .rolled_back,.failed,.aborted{background:#d62728} .other{background:#7f7f7f}
table{border-collapse:collapse;margin:8px 0 20px 0;font-size:13px} th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f3f3f3} .chart{border:1px solid #eee;margin-bottom:12px}
pre{background:#f8f8f8;padding:12px;white-space:pre-wrap;font-size:12px} .muted{color:#777}
"""


def _table(headers, rows):
    out = ["<table><tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(h) for h in headers)]
    for row in rows:
        out.append("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape("-" if c is None else str(c)) for c in row))
    out.append("</table>")
    return "\n".join(out)


def _met(value):
    return "-" if value is None else ("yes" if value else "no")


def render_html(report, charts, events, span, retrospective):
    """The page: header, charts with the timeline drawn over them, metrics tables, timeline, retrospective."""
    parts = []
    first = True
    for name, title, unit in CHARTS:
        item = charts[name]
        fig = _figure(name, title, unit, item, events, span)
        # plotly.js once, inline: the page needs no network
        div = fig.to_html(full_html=False, include_plotlyjs=True if first else False, div_id="chart-" + name,
                          config={"displaylogo": False, "responsive": True})
        first = False
        top = "" if item["max"] is None else repr(float(item["max"]))
        parts.append('<div class="chart" id="box-%s" data-chart="%s" data-points="%d" data-max="%s" data-source="%s">'
                     '%s</div>' % (name, name, item["points"], top, html.escape(item["source"] or ""), div))
    state = report["outcome"]
    badge = state if state in ("success", "rolled_back", "failed", "aborted") else "other"
    metrics_rows = [(r["metric"], r["target"], r["actual"], _met(r["met"])) for r in report["metrics"]["metrics"]]
    chart_rows = [(title, charts[name]["source"] or "not measured", charts[name]["points"],
                   charts[name]["max"] if charts[name]["max"] is not None else "-",
                   charts[name]["query"] if charts[name]["source"] else charts[name]["reason"])
                  for name, title, _unit in CHARTS]
    dora_rows = [(g["environment"], g["period"], g["deployments"], g["deployment_frequency_per_day"],
                  g["mean_time_to_deploy_seconds"], g["rollback_rate"], g["change_failure_rate"],
                  g["time_to_restore_seconds"], g["unrestored"]) for g in report["dora"]["groups"]]
    event_rows = [(e["seq"], e["ts"], e["label"], e["action"], e["result"], e["environment"], e["text"])
                  for e in events]
    body = [
        "<h1>Release %s</h1>" % html.escape(report["version"]),
        '<p><span class="outcome %s">%s</span> <span class="muted">window %s .. %s (UTC), %d audit entries, '
        'audit log %s</span></p>' % (badge, html.escape(state), _iso(span[0]), _iso(span[1]), len(events),
                                     html.escape(report["audit_log"])),
        "<h2>Traffic during the release</h2>",
        '<p class="muted">Vertical lines are audit log entries (red: failed gate or deploy, purple: rollback, '
        'blue: deploy start, green: done); hover the markers for the whole entry.</p>',
        "\n".join(parts),
        "<h2>Success metrics</h2>",
        _table(["Metric", "Target", "Actual", "Met"], metrics_rows),
        _table(["Chart", "Source", "Samples", "Max", "Query / why not measured"], chart_rows),
        "<h2>Delivery metrics (per environment, per %s)</h2>" % html.escape(report["dora"]["period"]),
        _table(["Environment", "Period", "Deployments", "Per day", "Mean time to deploy (s)", "Rollback rate %",
                "Change failure rate %", "Time to restore (s)", "Not restored"], dora_rows),
        "<h2>Timeline</h2>",
        _table(["seq", "time", "event", "action", "result", "environment", "entry"], event_rows),
    ]
    if retrospective:
        body += ["<h2>Retrospective</h2>", "<pre>%s</pre>" % html.escape(retrospective)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Release %s report</title>"
            "<style>%s</style>%s</head><body>\n%s\n%s</body></html>\n"
            % (html.escape(report["version"]), STYLE, ERROR_TRAP, "\n".join(body), CHECK_SCRIPT))


def render_markdown(report, charts, events, span, retrospective):
    lines = ["# Release %s report" % report["version"], "",
             "Outcome: **%s**; window %s .. %s (UTC); audit log `%s`." % (
                 report["outcome"], _iso(span[0]), _iso(span[1]), report["audit_log"]), "",
             "## Success metrics", "", metrics_markdown(report["metrics"]), "",
             "## Traffic (Prometheus range queries)", "",
             "| Chart | Source | Samples | Max | Mean |", "|---|---|---|---|---|"]
    for name, title, _unit in CHARTS:
        item = charts[name]
        if item["source"]:
            lines.append("| %s | %s `%s` | %d | %.4g | %.4g |"
                         % (title, item["source"], item["query"], item["points"], item["max"], item["mean"]))
        else:
            lines.append("| %s | not measured: %s | 0 | - | - |" % (title, item["reason"]))
    lines += ["", "## Delivery metrics (per environment, per %s)" % report["dora"]["period"], "",
              dora_markdown(report["dora"]), "", "## Timeline", "",
              "| seq | time | event | result | entry |", "|---|---|---|---|---|"]
    for event in events:
        lines.append("| %s | %s | %s | %s | %s |"
                     % (event["seq"], event["ts"], event["label"], event["result"], event["text"].replace("|", "\\|")))
    if retrospective:
        lines += ["", "---", "", retrospective.rstrip()]
    return "\n".join(lines) + "\n"


def build_report(entries, version, audit_log, dora, prometheus_url="", queries=None, rate_window="1m", step=0,
                 padding=60, retrospective="", environment=None, query=query_range, http=None):
    """Everything the report shows; ``html`` and ``markdown`` are the two documents (``html`` None without plotly
    is the caller's decision: it checks HAS_PLOTLY first)."""
    mine = release_entries(entries, version)
    events = timeline(mine)
    span = window(events, padding)
    if span is None:
        raise ValueError("version %r has no audit entries with a time in %s: nothing to report" % (version, audit_log))
    merged = dict(DEFAULT_QUERIES)
    merged.update(dict((k, v) for k, v in (queries or {}).items() if v))
    chosen_step = step or auto_step(span[0], span[1])
    charts = collect_series(prometheus_url, merged, rate_window, span[0], span[1], chosen_step, query=query,
                            **(http or {}))
    report = {
        "version": version,
        "audit_log": audit_log,
        "outcome": outcome(_ordered(entries), version),
        "metrics": success_metrics(_filter(entries, environment=environment) if environment else entries,
                                   environment=environment or None, version=version),
        "dora": dora,
        "window": {"start": _iso(span[0]), "end": _iso(span[1]), "step_seconds": chosen_step},
    }
    report["markdown"] = render_markdown(report, charts, events, span, retrospective)
    report["html"] = render_html(report, charts, events, span, retrospective) if HAS_PLOTLY else None
    report["charts"] = dict((name, dict((k, v) for k, v in item.items() if k != "series"))
                            for name, item in charts.items())
    report["events"] = [dict((k, v) for k, v in e.items() if k != "epoch") for e in events]
    return report
