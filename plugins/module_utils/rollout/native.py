# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strategies a backend runs itself (``Platform.native``, a ``platform.base.NativeRollout``).

The per-target strategies (rolling.py...) drain, install, activate and enable each target; a platform with its own
controller (a Kubernetes Deployment) replaces instances itself and keeps its own revisions. The runner then only
records the operation in the state file (begin, finish, failure) around the backend's call, so status, history and
the audit trail look the same whatever the backend.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import NotSupported, PlatformError
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import RolloutFailed


def check_native_strategy(native: t.Any, strategy: t.Optional[str], platform: str) -> None:
    """NotSupported, before anything is touched, for a strategy the backend does not run."""
    if strategy and strategy not in native.strategies:
        raise NotSupported("platform %s does not support strategy %s yet (supported: %s)"
                           % (platform, strategy, ", ".join(sorted(native.strategies))))


class NativeMixin:
    """``self.p.native`` runs the operation; the state file records it."""

    def _native_run(self, kind: str, version: t.Optional[str], call: t.Callable[[bool], t.Dict[str, t.Any]],
                    strategy: str = "rolling", final: t.Optional[bool] = True) -> t.Dict[str, t.Any]:
        """CALL(check_mode) recorded as one operation; FINAL: it leaves the app on one version (not a canary step
        or a prepared blue-green color), so the state's deployed version moves; None: a canary that promoted or
        aborted is final."""
        native = self.p.native
        # the plan first: bad input (an absent version, a missing container) fails here, with nothing changed and
        # no operation recorded
        plan = call(True)
        if self.check_mode:
            plan.setdefault("strategy", strategy)
            plan.update(state_file=self.store.path)
            return plan
        targets = self.p.fleet.instances()
        for target in targets:
            target.version = self.p.fleet.current_version(target)
        op = self.store.begin(kind, strategy, version or "previous", targets, {"native": type(native).__name__})
        started = self.clock()
        try:
            result = call(False)
        except PlatformError as exc:
            op["error"] = str(exc)
            self.store.finish("failed", {"error": str(exc)})
            failure = {"status": "failed", "strategy": strategy, "state_file": self.store.path,
                       "versions": dict((tg.name, tg.version) for tg in targets)}
            details = getattr(exc, "details", None)
            if details:
                failure["stuck"] = details
            raise RolloutFailed(str(exc), failure)
        op["version"] = str((result.get("versions") or {}).get(targets[0].name) or op["version"])
        data = self.store.data
        if final is None:
            final = result.get("canary_action") in ("promote", "abort")
        if final:
            if kind == "deploy" and result.get("from_version") and result.get("from_version") != version:
                data["previous_version"] = result["from_version"]
            data["deployed_version"] = op["version"]
            data["strategy"] = result.get("strategy") or strategy
        self.store.finish("complete", {"versions": result.get("versions") or {}})
        result.setdefault("strategy", strategy)
        result.update(state_file=self.store.path)
        if kind == "rollback":
            result["rollback_seconds"] = round(self.clock() - started, 3)
        return result

    def native_rolling(self, version: str) -> t.Dict[str, t.Any]:
        return self._native_run("deploy", version, lambda check: self.p.native.rolling(version, check_mode=check))

    def native_blue_green(self, version: str, phase: str) -> t.Dict[str, t.Any]:
        return self._native_run("deploy", version, lambda check: self.p.native.deploy_blue_green(
            version, phase, check_mode=check), strategy="blue-green", final=phase != "prepare")

    def native_canary(self, action: str, version: t.Optional[str], initial_traffic: int,
                      steps: t.List[int]) -> t.Dict[str, t.Any]:
        # one operation per action (an advance past the last step promotes); the canary's own progress (version,
        # percent, replicas) lives on its Deployment, so every runner sees it
        return self._native_run("deploy" if action != "abort" else "rollback", version, lambda check: (
            self.p.native.deploy_canary(action, version, initial_traffic, steps, check_mode=check)),
            strategy="canary", final=None)

    def native_rollback(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        return self._native_run("rollback", version,
                                lambda check: self.p.native.rollback(version, check_mode=check))

    def native_verify_backup(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        result = self.p.native.verify_backup(version)
        result.update(retention_warnings=[], state_file=self.store.path)
        return result
