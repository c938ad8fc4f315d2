# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback (to the previous release, the other color, or the canary's stable version) and
verify_backup.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    HEALTH_UP,
    ConfigError,
    Target,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import (
    _version_key,
    check_version,
    sort_versions,
)
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import STRATEGIES, RolloutFailed


class RollbackMixin:
    """Rollback and the rollback-target check."""

    def rollback_version(self, targets: t.List[Target], version: t.Optional[str]) -> str:
        if version:
            return check_version(version)
        # A deploy stopped half-way (for example by a failed batch gate): go back to what it replaced, not to the
        # previous_version of an older completed deploy.
        op = self.store.operation or {}
        failed = set(self.store.data.get("failed_versions") or [])
        if op.get("kind") == "rollback" and op.get("status") in ("in_progress", "failed") and op.get("version"):
            return op["version"]  # an interrupted rollback continues to where it was going
        if op.get("kind") == "deploy" and op.get("status") in ("in_progress", "failed"):
            froms = sort_versions(set(v for v in (op.get("from_versions") or {}).values()
                                      if v and v != op.get("version")))
            if froms:
                return froms[-1]
        prev = self.store.data.get("previous_version")
        if prev and prev not in failed:
            return prev
        current = self.p.fleet.current_version(targets[0]) or ""
        older = [v for v in self.p.fleet.installed_versions(targets[0])
                 if current and _version_key(v) < _version_key(current) and v not in failed]
        if not older:
            raise VersionNotInstalledError("no previous release to roll back to on %s (installed: %s)"
                                           % (targets[0].name, ", ".join(self.p.fleet.installed_versions(targets[0]))
                                              or "none"))
        return older[-1]

    def rollback(self, strategy: t.Optional[str], version: t.Optional[str], batch_size: t.Any = 1,
                 default_weight: int = 100) -> t.Dict[str, t.Any]:
        op = self.store.operation or {}
        canary_open = op.get("strategy") == "canary" and op.get("status") == "in_progress"
        # a blue-green deploy that never switched (prepared, or failed and restored): traffic never moved
        bg_open = op.get("strategy") == "blue-green" and op.get("status") in ("in_progress", "failed")
        # a canary in progress is always aborted (weights back), whatever strategy the caller guessed
        strategy = "canary" if canary_open and strategy != "blue-green" else \
            (strategy or op.get("strategy") or self.store.data.get("strategy") or "rolling")
        if strategy not in STRATEGIES:
            raise ConfigError("invalid strategy %r: expected one of %s" % (strategy, ", ".join(STRATEGIES)))
        started = self.clock()
        if canary_open:
            result = self.canary("abort", None, default_weight=default_weight)
        elif strategy == "blue-green":
            result = self._rollback_blue_green(version, op if bg_open else None)
        else:
            targets = self._preflight(None, None, None)
            only = None
            if any(tg.color for tg in targets):
                targets = [tg for tg in targets if not tg.color]
                only = [tg.name for tg in targets]
            if not targets:
                raise ConfigError("no targets without a color to roll back host by host: use strategy blue-green")
            target_version = self.rollback_version(targets, version)
            self._preflight(target_version, None, None, targets)
            failed_op = op if op.get("kind") == "deploy" and op.get("status") in ("in_progress", "failed") else None
            if failed_op is not None and not self.check_mode and failed_op.get("status") == "in_progress":
                self._close_failed_deploy(failed_op)
            result = self.rolling(target_version, batch_size=batch_size, keep_releases=0, kind="rollback", only=only)
            if failed_op is not None and not self.check_mode:
                # the release the failed deploy installed leaves the hosts: retention returns to its steady count
                result["removed_failed_release"] = self._remove_failed_release(failed_op, targets)
                self.store.save()
        result["rollback_seconds"] = round(self.clock() - started, 3)
        return result

    def _rollback_blue_green(self, version: t.Optional[str], open_op: t.Optional[t.Dict[str, t.Any]] = None
                             ) -> t.Dict[str, t.Any]:
        targets = self._preflight(None, None, None)
        active = self.p.router.active_color()
        if active is None:
            raise ConfigError("the HAProxy route map does not point at be_blue or be_green: nothing to switch back")
        if open_op is not None and open_op.get("from_color") == active:
            # prepared (or failed half-way) but never switched: traffic never left the live color. Return the idle
            # color to what it ran so it stays a valid instant-rollback target.
            return self._rollback_unswitched(targets, open_op, active)
        other = "green" if active == "blue" else "blue"
        standby = [tg for tg in targets if tg.color == other]
        versions = sorted(set(str(self.p.fleet.current_version(tg)) for tg in standby))
        if version and versions != [version]:
            raise VersionNotInstalledError("version %s is not what the %s color runs (%s): blue-green rollback switches "
                                           "back to the standby color only" % (version, other, ", ".join(versions)))
        for target in standby:
            if target.state != "ready":
                self._step(target, "enable", lambda tg=target: self.p.router.enable(tg))
                if self.p.router.supports(HEALTH_UP):
                    self._step(target, "wait_up", lambda tg=target: self.p.router.wait_up(tg, self.ready_timeout))
        if not self.check_mode:
            self.store.begin("rollback", "blue-green", versions[0] if versions else "", targets,
                             {"from_color": active, "to_color": other})
        self._step(None, "switch_traffic", lambda: self.p.router.switch_traffic(other), color=other, from_color=active)
        if not self.check_mode:
            self.store.data["active_color"] = other
            self.store.finish("complete", {"versions": self._versions(targets), "active_color": other})
        return self._result(targets, "complete", strategy="blue-green", active_color=other, previous_color=active)

    def _rollback_unswitched(self, targets: t.List[Target], op: t.Dict[str, t.Any], active: str
                             ) -> t.Dict[str, t.Any]:
        idle = [tg for tg in targets if tg.color == op.get("to_color")]
        froms = op.get("from_versions") or {}
        reports = []
        if not self.check_mode and op.get("status") == "in_progress":
            self._close_failed_deploy(op)
        for target in idle:
            want = froms.get(target.name)
            if want and (self.p.fleet.current_version(target) != want):
                if self.check_mode:
                    self.plan.append({"target": target.name, "action": "restore", "version": want})
                    continue
                reports.append(self._restore_target(target, want, op, True))
        removed = self._remove_failed_release(op, targets) if not self.check_mode else {}
        bad = [r for r in reports if not r.get("restored")]
        result = self._result(targets, "complete", strategy="blue-green", active_color=active, previous_color=active,
                              restored=reports, removed_failed_release=removed)
        if bad:
            raise RolloutFailed("traffic stayed on %s; could not restore the idle color on %s: %s"
                                % (active, ", ".join(r["target"] for r in bad), bad[0].get("error")),
                                dict(result, status="failed"))
        return result

    def verify_backup(self, version: t.Optional[str], retention: int = 5) -> t.Dict[str, t.Any]:
        """Is the release to return to intact (files match the manifest written at install) on every target?

        The number of kept releases is reported and may warn, but never fails: a deploy that failed half-way
        legitimately leaves one release more than the retention, and refusing the rollback then is the worst outcome.
        """
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 2:
            raise ConfigError("invalid retention %r: expected an integer >= 2 (current and previous are always kept)"
                              % (retention,))
        targets = self._preflight(None, None, None)
        reports = {}
        ok = True
        warnings = []
        for target in targets:
            try:
                want = self.rollback_version([target], version)
            except VersionNotInstalledError as exc:
                reports[target.name] = {"ok": False, "problems": [str(exc)], "version": None, "warnings": []}
                ok = False
                continue
            report = self.p.fleet.verify(target, want)
            installed = self.p.fleet.installed_versions(target)
            report["releases"] = installed
            report["current"] = self.p.fleet.current_version(target)
            report["warnings"] = []
            if len(installed) > retention:
                note = ("%s keeps %d releases, retention is %d (pruned after the next complete deploy)"
                        % (target.name, len(installed), retention))
                report["warnings"].append(note)
                warnings.append(note)
            if not report["present"]:
                report["problems"][0] += " (available: %s)" % (", ".join(installed) or "none")
            ok = ok and report["ok"]
            reports[target.name] = report
        return {"changed": False, "ok": ok, "targets": reports, "retention": retention, "retention_warnings": warnings,
                "state_file": self.store.path}
