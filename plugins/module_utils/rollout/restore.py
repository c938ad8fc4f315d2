# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failure handling: restore one consistent fleet, remove what a failed deploy installed.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import HEALTH_UP, PlatformError, Target
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import RolloutFailed, suppress_platform


class RestoreMixin:
    """On failure: return every changed target to its version and into traffic, or out of traffic."""

    def _guarded(self, op: t.Dict[str, t.Any], targets: t.List[Target], func: t.Callable[[], t.Dict[str, t.Any]]
                 ) -> t.Dict[str, t.Any]:
        """Run a fleet change; on any error restore every target the operation changed, then raise RolloutFailed.

        Only Exception is caught: an interrupted run (KeyboardInterrupt, SIGTERM) leaves the state file in progress
        and a re-run resumes it, as before.
        """
        if self.check_mode:
            return func()
        try:
            return func()
        except RolloutFailed:
            raise
        except (PlatformError, OSError) as exc:
            error = str(exc) if isinstance(exc, PlatformError) else "%s: %s" % (type(exc).__name__, exc)
            raise self._fail_and_restore(op, targets, " ".join(error.split()))

    def _normal_weight(self, target: Target, op: t.Dict[str, t.Any], default: t.Optional[int] = None
                       ) -> t.Optional[int]:
        weights = op.get("original_weights") or self.store.data.get("normal_weights") or {}
        return weights.get(target.name, default)

    def _restore_target(self, target: Target, version: t.Optional[str], op: t.Dict[str, t.Any],
                        in_flight: bool) -> t.Dict[str, t.Any]:
        """Back to VERSION and into traffic; when that fails, out of traffic. Never raises."""
        report = {"target": target.name, "version": version}
        try:
            current = self.p.fleet.current_version(target)
            if version is None:
                raise PlatformError("no version to return to (it had none before)")
            running = self.p.fleet.running_version(target) if in_flight else version
            if current != version or running != version:
                # also when `current` still names the old release: its process may have been stopped
                with suppress_platform():
                    self.p.router.drain(target, min(self.drain_timeout, 5.0))
                try:
                    self._step(target, "restore", lambda: self.p.fleet.activate(target, version, force_restart=True), version=version,
                               from_version=current)
                except PlatformError as exc:
                    # restart_command itself is broken: when the old process never stopped and still serves VERSION,
                    # `current` is back on VERSION and the server can take traffic again
                    if self.p.fleet.running_version(target) != version \
                            or self.p.fleet.current_version(target) != version:
                        raise
                    self.p.fleet.wait_ready(target, min(self.ready_timeout, 5.0))
                    report["note"] = "restart failed (%s) but the old process still serves %s" % (
                        " ".join(str(exc).split()), version)
            weight = self._normal_weight(target, op)
            if weight is not None:
                self._step(target, "set_weight", lambda: self.p.router.set_weight(target, weight), weight=weight)
            self._step(target, "enable", lambda: self.p.router.enable(target))
            if self.p.router.supports(HEALTH_UP):
                self._step(target, "wait_up", lambda: self.p.router.wait_up(target, self.ready_timeout))
            report["restored"] = True
        except Exception as exc:  # noqa: BLE001 - whatever broke, the target must leave traffic
            report["restored"] = False
            report["error"] = " ".join(str(exc).split())
            try:
                self.p.router.disable(target)
                report["out_of_traffic"] = True
                self.actions.append({"target": target.name, "action": "disable", "changed": True})
            except Exception as exc2:  # noqa: BLE001
                report["out_of_traffic"] = False
                report["error"] += "; taking it out of traffic failed too: %s" % (
                    " ".join(str(exc2).split()) or type(exc2).__name__)
        return report

    def _fail_and_restore(self, op: t.Dict[str, t.Any], targets: t.List[Target], error: str) -> RolloutFailed:
        froms = op.get("from_versions") or {}
        pending = list(op.get("pending") or [])
        touched = set(op.get("done") or []) | set(pending)
        if op.get("kind") == "rollback":
            # never "restore" a failed rollback to the release it was leaving: the host that failed leaves traffic,
            # the ones already rolled back stay; a re-run continues the rollback
            froms = dict((name, op.get("version")) for name in pending)
            touched = set(pending)
        # canary weights are changed on hosts that were not redeployed: every target with a recorded weight
        if op.get("original_weights"):
            touched |= set(tg.name for tg in targets if tg.name in op["original_weights"])
        reports = []
        for target in targets:
            if target.name not in touched:
                continue
            reports.append(self._restore_target(target, froms.get(target.name), op, target.name in pending))
        failed_version = op.get("version")
        removed = self._remove_failed_release(op, targets)
        restored = [r["target"] for r in reports if r.get("restored")]
        out = [r for r in reports if not r.get("restored")]
        versions = self._versions(targets, tolerant=True)
        op["pending"] = []
        data = self.store.data
        if op.get("kind") == "deploy" and failed_version:
            data["failed_versions"] = [v for v in (data.get("failed_versions") or []) if v != failed_version][-9:] \
                + [failed_version]
        summary = {"versions": versions, "error": error, "restored": reports, "removed_failed_release": removed}
        with suppress_platform():
            self.store.finish("failed", summary)
        back_to = sorted(set(str(r["version"]) for r in reports if r.get("restored")))
        msg = "%s of %s failed: %s" % (op.get("kind", "operation"), failed_version, error)
        if restored:
            msg += "; restored %s to %s" % (", ".join(restored), ", ".join(back_to))
        elif not reports:
            msg += "; no target had been changed"
        if out:
            msg += "; could not restore %s (%s): %s" % (
                ", ".join(r["target"] for r in out), out[0]["error"],
                "taken out of traffic" if all(r.get("out_of_traffic") for r in out) else "STILL IN TRAFFIC")
        in_traffic = sorted(set(v for n, v in versions.items() if n not in [r["target"] for r in out]))
        msg += "; fleet now on %s" % (", ".join(str(v) for v in in_traffic) or "nothing")
        result = self._result(targets, "failed", error=error, restored=reports, removed_failed_release=removed)
        result["changed"] = True
        return RolloutFailed(msg, result)

    def _remove_failed_release(self, op: t.Dict[str, t.Any], targets: t.List[Target]) -> t.Dict[str, t.List[str]]:
        """Delete what a failed deploy installed (where it is not current) so retention stays steady."""
        removed = {}  # type: t.Dict[str, t.List[str]]
        if self.check_mode or op.get("kind") != "deploy":
            return removed
        by_name = dict((tg.name, tg) for tg in targets)
        pending = self.store.data.setdefault("pending_cleanup", {})
        for name, versions in (op.get("installed_new") or {}).items():
            target = by_name.get(name)
            if target is None:
                # not among this call's targets (a rollback of one batch): removed by the next operation on it
                pending[name] = sorted(set(pending.get(name, []) + list(versions)))
                continue
            for version in versions:
                with suppress_platform():
                    if self.p.fleet.remove(target, version):
                        removed.setdefault(name, []).append(version)
        op["installed_new"] = {}
        removed.update(self._cleanup_pending(targets))
        if not pending:
            self.store.data.pop("pending_cleanup", None)
        self.store.save()
        return removed

    def _cleanup_pending(self, targets: t.List[Target], keep: t.Optional[str] = None) -> t.Dict[str, t.List[str]]:
        """Remove failed releases left on hosts a previous rollback did not cover (never KEEP, never current)."""
        removed = {}  # type: t.Dict[str, t.List[str]]
        pending = self.store.data.get("pending_cleanup") or {}
        if self.check_mode or not pending:
            return removed
        for target in targets:
            versions = pending.pop(target.name, None) or []
            for version in versions:
                if version == keep:
                    continue  # deployed again now: it is the release being installed
                with suppress_platform():
                    if self.p.fleet.remove(target, version):
                        removed.setdefault(target.name, []).append(version)
        if not pending:
            self.store.data.pop("pending_cleanup", None)
        return removed

    def _close_failed_deploy(self, op: t.Dict[str, t.Any]) -> None:
        """Record the stopped deploy as rolled back in the history before the rollback operation replaces it."""
        data = self.store.data
        version = op.get("version")
        if version:
            data["failed_versions"] = [v for v in (data.get("failed_versions") or []) if v != version][-9:] + [version]
        self.store.finish("rolled_back", {"versions": op.get("from_versions")})
