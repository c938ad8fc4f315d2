# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout state file ``<state_dir>/<environment>.json``: operation in progress, last operation, history.

Written atomically (``_fsutil.write_atomic``) before and after every step, so a re-run resumes.
"""

from __future__ import annotations

import json
import os
import typing as t

from ansible_collections.meshos.release.plugins.module_utils._fsutil import write_atomic
from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError, Target
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import now


HISTORY = 20


class StateStore:
    """``<state_dir>/<environment>.json``; the operation in progress, last operation, history."""

    def __init__(self, state_dir: str, environment: str, check_mode: bool = False) -> None:
        if not environment or not all(c.isalnum() or c in "-_." for c in environment) or environment[0] == ".":
            raise ConfigError("invalid environment %r: letters, digits, '-', '_', '.'" % (environment,))
        self.path = os.path.join(state_dir, "%s.json" % environment)
        self.environment = environment
        self.check_mode = check_mode
        self.data = self.load()

    def load(self) -> t.Dict[str, t.Any]:
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise ConfigError("state file %s is unreadable: %s" % (self.path, exc))
        if not isinstance(data, dict):
            raise ConfigError("state file %s does not hold a JSON object" % self.path)
        data.setdefault("environment", self.environment)
        data.setdefault("history", [])
        return data

    def save(self) -> None:
        if self.check_mode:
            return
        self.data["updated"] = now()
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    @property
    def operation(self) -> t.Optional[t.Dict[str, t.Any]]:
        return self.data.get("operation")

    def begin(self, kind: str, strategy: str, version: str, targets: t.List[Target], extra: t.Dict[str, t.Any]
              ) -> t.Dict[str, t.Any]:
        """Start an operation, or resume the same one left in progress."""
        op = self.operation
        if op and op.get("status") == "in_progress" and op.get("kind") == kind and op.get("strategy") == strategy \
                and op.get("version") == version:
            op["resumed"] = op.get("resumed", 0) + 1
            return op
        op = {"kind": kind, "strategy": strategy, "version": version, "status": "in_progress", "started": now(),
              "from_versions": dict((tg.name, tg.version) for tg in targets), "done": [], "pending": [],
              "steps": [], "resumed": 0}
        op.update(extra)
        self.data["operation"] = op
        self.save()
        return op

    def finish(self, status: str, summary: t.Dict[str, t.Any]) -> None:
        op = self.operation or {}
        op["status"] = status
        op["finished"] = now()
        entry = {"kind": op.get("kind"), "strategy": op.get("strategy"), "version": op.get("version"),
                 "status": status, "started": op.get("started"), "finished": op["finished"]}
        entry.update(summary)
        self.data["last_operation"] = entry
        self.data["history"] = (self.data.get("history") or [])[-(HISTORY - 1):] + [entry]
        self.save()
