# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: progress
type: aggregate
short_description: Live progress of releases, gates and rollouts beside the normal output
version_added: 0.2.0
author: meshos release engineering (@meshos)
description:
  - An aggregate callback. It adds lines to whatever stdout callback runs (the default, C(yaml), C(json) ...), so
    C(-o) and JSON output for machines stay as they are.
  - While a task runs longer than O(heartbeat_seconds), prints one line per interval with the task, the host, the
    elapsed time and, when the module reports progress, its latest values (a health gate's checks against their
    thresholds, a rollout's step). No stretch of a long watch is silent.
  - After every meshos.release.health_gate task, prints the gate's table (check, value, threshold, baseline, target,
    verdict) and its verdict; after every meshos.release.rollout_strategy and meshos.release.rollback task, one line
    with the strategy, the status, the traffic share of the canary, the active color and the hosts per version.
  - Progress from modules comes through the file named by E(MESHOS_PROGRESS_FILE), which this callback sets for the
    modules it launches on the controller (local connection); a module on a remote host has no progress lines,
    only the heartbeat.
requirements:
  - Enable it with C(callbacks_enabled = meshos.release.progress) in C(ansible.cfg) or
    E(ANSIBLE_CALLBACKS_ENABLED=meshos.release.progress).
options:
  heartbeat_seconds:
    description: Seconds between two lines for a task that is still running (at most 30 by design).
    type: float
    default: 15
    env:
      - name: MESHOS_PROGRESS_HEARTBEAT
    ini:
      - section: meshos_progress
        key: heartbeat_seconds
"""

import json
import os
import tempfile
import threading
import time

from ansible.plugins.callback import CallbackBase

GATE_ACTIONS = ("health_gate",)
ROLLOUT_ACTIONS = ("rollout_strategy", "rollback")


def _short_action(action):
    return (action or "").rsplit(".", 1)[-1]


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.4g" % value
    return str(value)


def gate_table(result):
    """The compact table of a health_gate result: one row per judged check, then the verdict."""
    rows = [("check", "value", "threshold", "baseline", "target", "verdict")]
    for check in result.get("checks") or []:
        if check.get("status") == "skipped":
            continue
        threshold = check.get("effective_threshold", check.get("threshold"))
        rows.append((str(check.get("name")), _fmt(check.get("value")), _fmt(threshold), _fmt(check.get("baseline")),
                     _fmt(check.get("target")), str(check.get("status"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.append("  verdict: %s (%s)" % (result.get("verdict"), result.get("summary", "")))
    return "\n".join(lines)


def rollout_line(result):
    """One line for a rollout or rollback result: strategy, status, share, color, hosts per version."""
    versions = result.get("versions") or {}
    per_version = {}
    for version in versions.values():
        per_version[version] = per_version.get(version, 0) + 1
    parts = ["strategy %s" % result.get("strategy", "-"), "status %s" % result.get("status", "-")]
    if result.get("canary_percent") is not None:
        parts.append("canary share %s %%" % result["canary_percent"])
    if result.get("active_color"):
        parts.append("active color %s" % result["active_color"])
    if per_version:
        parts.append("hosts per version " + ", ".join("%s: %d" % (v, n) for v, n in sorted(per_version.items(), key=str)))
    measured = (result.get("traffic") or {}).get("measured") or {}
    if measured.get("source"):
        parts.append("failed requests %s of %s (%s)" % (
            measured.get("failed_requests"), measured.get("requests"), measured["source"]))
    return "; ".join(parts)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "meshos.release.progress"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._lock = threading.Lock()
        self._running = {}  # (host, task uuid) -> (task name, start)
        self._stop = threading.Event()
        self._thread = None
        handle, self._progress_file = tempfile.mkstemp(prefix="meshos-progress-", suffix=".jsonl")
        os.close(handle)
        # modules started on the controller from now on inherit it and append their progress lines to it
        os.environ["MESHOS_PROGRESS_FILE"] = self._progress_file

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._heartbeat = min(30.0, max(1.0, float(self.get_option("heartbeat_seconds"))))

    # ------------------------------------------------------------------ heartbeat
    def _latest_progress(self, task_name):
        """The last progress line a module wrote for this task (matched by task name), or None."""
        try:
            with open(self._progress_file, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 65536))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("line") and item.get("task") in (None, task_name):
                return item["line"]
        return None

    def _beat(self):
        while not self._stop.wait(self._heartbeat):
            now = time.monotonic()
            with self._lock:
                running = list(self._running.items())
            for (host, _uuid), (name, started) in running:
                elapsed = now - started
                if elapsed < self._heartbeat:
                    continue
                progress = self._latest_progress(name)
                self._display.display("[progress] %s | %s | running %.0f s%s" % (
                    host, name, elapsed, (" | " + progress) if progress else ""))

    def _ensure_thread(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="meshos-progress", daemon=True)
            self._thread.start()

    def v2_runner_on_start(self, host, task):
        with self._lock:
            self._running[(host.get_name(), task._uuid)] = (task.get_name(), time.monotonic())
        self._ensure_thread()

    def _finish(self, result):
        with self._lock:
            self._running.pop((result._host.get_name(), result._task._uuid), None)
        action = _short_action(result._task.action)
        data = result._result or {}
        if action in GATE_ACTIONS and data.get("checks") is not None:
            self._display.display("[gate] %s | %s\n%s" % (result._host.get_name(), result._task.get_name(),
                                                          gate_table(data)))
        elif action in ROLLOUT_ACTIONS and (data.get("versions") or data.get("status")):
            self._display.display("[rollout] %s | %s | %s" % (result._host.get_name(), result._task.get_name(),
                                                              rollout_line(data)))

    def v2_runner_on_ok(self, result):
        self._finish(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._finish(result)

    def v2_runner_on_skipped(self, result):
        self._finish(result)

    def v2_runner_on_unreachable(self, result):
        self._finish(result)

    def v2_playbook_on_stats(self, stats):
        self._stop.set()
        try:
            os.unlink(self._progress_file)
        except OSError:
            pass
