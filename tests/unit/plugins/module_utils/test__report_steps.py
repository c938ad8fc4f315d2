# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary steps and rolling batches drawn over the release report's charts."""

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils._report_steps import draw_steps, step_info

go = pytest.importorskip("plotly.graph_objects")


def _step(epoch, step, weight, actual=None, score=None, verdict="pass", action="canary_step"):
    entry = {"action": action, "details": {"step": step, "weight": weight, "actual_share_percent": actual,
                                           "score": score, "verdict": verdict}}
    return {"epoch": epoch, "step_info": step_info(entry)}


def test_step_info_reads_the_step_entry():
    info = step_info({"action": "canary_step", "details": {"step": "2/3", "weight": 50, "actual_share_percent": 48.7,
                                                           "score": 100.0, "verdict": "pass"}})
    assert info["weight"] == 50 and info["actual"] == 48.7 and info["label"] == "step 2/3 50% score 100"
    failed = step_info({"action": "batch", "details": {"step": "1/2", "weight": "25.0", "verdict": "fail"}})
    assert failed["label"] == "batch 1/2 fail"
    assert step_info({"action": "deploy", "details": {"step": "x"}}) is None


def test_draw_steps_adds_the_share_axis_and_one_label_per_step():
    fig = go.Figure()
    events = [_step(100.0, "1/3", 25, 24.4, 100), _step(110.0, "2/3", 50, None, None, "not gated"),
              _step(120.0, "1/1", 100, action="batch"), {"epoch": 130.0, "step_info": None}]
    draw_steps(fig, go, events, str)
    names = [trace.name for trace in fig.data]
    assert names == ["canary share set (%)", "canary share measured (%)"]
    assert list(fig.data[0].y) == [25, 50] and list(fig.data[1].y) == [24.4]
    assert fig.layout.yaxis2.overlaying == "y"
    assert [a.text for a in fig.layout.annotations] == ["step 1/3 25% score 100", "step 2/3 50% not gated",
                                                        "batch 1/1"]


def test_no_steps_draws_nothing():
    fig = go.Figure()
    draw_steps(fig, go, [{"epoch": 1.0, "step_info": None}], str)
    assert not fig.data and not fig.layout.annotations
