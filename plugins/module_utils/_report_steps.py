# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary steps and rolling batches of the release report, drawn over its charts.

Every canary step and rolling batch is one audit entry (roles/deploy/tasks/step_record.yml: action ``canary_step`` or
``batch``, details ``step`` n/N, ``weight`` (the target share), ``actual_share_percent`` (measured by the canary judge,
or null), ``score``, ``verdict``). On every chart: the target canary share as a step line and the measured share as
markers on a right-hand percent axis, and a short label per step or batch at the foot of the chart.
"""

from __future__ import annotations

STEP_ACTIONS = ("canary_step", "batch")


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return float(value)


def step_info(entry):
    """The step of an audit entry for the timeline: {kind, step, weight, actual, score, verdict, label}, or None."""
    action = entry.get("action")
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    if action not in STEP_ACTIONS:
        return None
    info = {"kind": action, "step": details.get("step"), "weight": _number(details.get("weight")),
            "actual": _number(details.get("actual_share_percent")), "score": _number(details.get("score")),
            "verdict": details.get("verdict")}
    parts = ["%s %s" % ("step" if action == "canary_step" else "batch", info["step"] if info["step"] else "?")]
    if action == "canary_step" and info["weight"] is not None:
        parts.append("%g%%" % info["weight"])
    if info["score"] is not None:
        parts.append("score %g" % info["score"])
    if info["verdict"] not in (None, "", "pass"):
        parts.append(str(info["verdict"]))
    info["label"] = " ".join(parts)
    return info


def draw_steps(fig, go, events, iso):
    """The canary shares (target line, measured markers, right axis) and one label per step or batch on ``fig``."""
    steps = [e for e in events if e.get("epoch") is not None and e.get("step_info")]
    if not steps:
        return
    canary = [e for e in steps if e["step_info"]["kind"] == "canary_step" and e["step_info"]["weight"] is not None]
    if canary:
        fig.add_trace(go.Scatter(x=[iso(e["epoch"]) for e in canary], y=[e["step_info"]["weight"] for e in canary],
                                 mode="lines+markers", line={"shape": "hv", "color": "#8c564b", "width": 1,
                                                             "dash": "dash"},
                                 name="canary share set (%)", meta="steps", yaxis="y2"))
        measured = [e for e in canary if e["step_info"]["actual"] is not None]
        if measured:
            fig.add_trace(go.Scatter(x=[iso(e["epoch"]) for e in measured],
                                     y=[e["step_info"]["actual"] for e in measured], mode="markers",
                                     marker={"symbol": "diamond", "size": 8, "color": "#8c564b"},
                                     name="canary share measured (%)", meta="steps", yaxis="y2"))
        fig.update_layout(yaxis2={"title": {"text": "canary share %"}, "overlaying": "y", "side": "right",
                                  "range": [0, 110], "showgrid": False,
                                  "tickmode": "array", "tickvals": [0, 25, 50, 75, 100]})
    for index, event in enumerate(steps):
        fig.add_annotation(x=iso(event["epoch"]), y=0.02 + 0.07 * (index % 2), yref="paper", showarrow=False,
                           text=event["step_info"]["label"], xanchor="left", font={"size": 9, "color": "#8c564b"})
