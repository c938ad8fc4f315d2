# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary strategy (needs the router's ``weights`` capability). Percent here, router
units (``share_weights``) only at the router.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError, PlatformError, Target
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import normalize_checksum
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import (
    CANARY_ACTIONS,
    DEFAULT_STEPS,
    RolloutFailed,
    parse_batch_size,
    suppress_platform,
    validate_canary,
)


class CanaryMixin:
    """Canary: a share of traffic in percent; the router turns it into its weights."""

    def canary(self, action: str, version: t.Optional[str], artifact: t.Optional[str] = None,
               checksum: t.Optional[str] = None, initial_traffic: int = 5, steps: t.Optional[t.List[int]] = None,
               canary_count: int = 1, default_weight: int = 100, batch_size: t.Any = 1) -> t.Dict[str, t.Any]:
        if action not in CANARY_ACTIONS:
            raise ConfigError("invalid canary_action %r: expected one of %s" % (action, ", ".join(CANARY_ACTIONS)))
        steps = validate_canary(initial_traffic, list(steps or DEFAULT_STEPS))
        op = self.store.operation or {}
        in_progress = op.get("strategy") == "canary" and op.get("status") == "in_progress"
        if action != "start":
            if not in_progress:
                raise ConfigError("no canary in progress for environment %s: start one with canary_action=start"
                                  % self.store.environment)
            if version and version != op.get("version"):
                raise ConfigError("canary in progress is for version %s, not %s" % (op.get("version"), version))
            version = op["version"]
            if not artifact and op.get("artifact"):
                artifact, checksum = op.get("artifact"), checksum or op.get("checksum")
        if not version:
            raise ConfigError("version is required to start a canary")
        # abort only goes back to what is installed: no artifact, and the new version need not be anywhere
        targets = self._preflight(version if action != "abort" else None, artifact if action != "abort" else None,
                                  checksum)
        if isinstance(canary_count, bool) or not isinstance(canary_count, int) or not 1 <= canary_count < len(targets):
            raise ConfigError("invalid canary_count %r: expected 1-%d (some targets must stay stable)"
                              % (canary_count, len(targets) - 1))
        if action == "start":
            if in_progress and op.get("version") != version:
                raise ConfigError("a canary for version %s is in progress: promote or abort it first" % op.get("version"))
            names = op.get("canary_hosts") if in_progress else [tg.name for tg in targets[:canary_count]]
            stable_version = op.get("stable_version") if in_progress else self.p.fleet.current_version(targets[-1])
            if not self.check_mode:
                # the weights to return to on abort/promote/rollback: recorded once, before the first change
                normal = self.store.data.get("normal_weights") or {}
                original = op.get("original_weights") if in_progress else None
                if not original:
                    original = dict((tg.name, normal.get(tg.name) or (tg.weight if tg.weight > 0 else default_weight))
                                    for tg in targets)
                self.store.data["normal_weights"] = dict(original)
                op = self.store.begin("deploy", "canary", version, targets,
                                      {"canary_hosts": names, "stable_version": stable_version, "percent": 0,
                                       "artifact": artifact, "checksum": normalize_checksum(checksum),
                                       "steps_plan": steps, "original_weights": original})
            return self._guarded(op, targets, lambda: self._canary_start(targets, names, version, artifact, checksum,
                                                                         initial_traffic, op))
        names = op["canary_hosts"]
        if action == "advance":
            nxt = [s for s in op.get("steps_plan", steps) if s > op.get("percent", 0)]
            if not nxt or nxt[0] >= 100:
                action = "promote"
            else:
                return self._guarded(op, targets, lambda: self._canary_weights(targets, names, nxt[0], op, "advance"))
        if action == "promote":
            return self._guarded(op, targets, lambda: self._canary_promote(
                targets, names, version, artifact, checksum, default_weight, batch_size, op))
        return self._canary_abort(targets, names, op, default_weight)

    def _canary_weights(self, targets: t.List[Target], names: t.List[str], percent: int, op: t.Dict[str, t.Any],
                        what: str) -> t.Dict[str, t.Any]:
        canary = [tg for tg in targets if tg.name in names]
        stable = [tg for tg in targets if tg.name not in names]
        wc, ws = self.p.router.share_weights(percent, len(canary), len(stable))
        for target in stable:  # raise stable first so the canary share never overshoots
            self._step(target, "set_weight", lambda tg=target: self.p.router.set_weight(tg, ws), weight=ws)
        for target in canary:
            self._step(target, "set_weight", lambda tg=target: self.p.router.set_weight(tg, wc), weight=wc)
        if not self.check_mode:
            op["percent"] = percent
            self.store.save()
        return self._result(targets, "in_progress", strategy="canary", canary_action=what, canary_percent=percent,
                            canary_hosts=names, weights={"canary": wc, "stable": ws})

    def _canary_start(self, targets, names, version, artifact, checksum, initial_traffic, op):
        wc, _ws = self.p.router.share_weights(initial_traffic, len(names), len(targets) - len(names))
        todo = [tg for tg in targets if tg.name in names and self._needs_update(tg, version, op)]
        self._install_all(todo, version, artifact, checksum, op)
        for target in todo:
            self._update_target(target, version, None, checksum, force=target.name in op.get("pending", []),
                                weight=wc)
        return self._canary_weights(targets, names, initial_traffic, op, "start")

    def _canary_promote(self, targets, names, version, artifact, checksum, default_weight, batch_size, op):
        stable = [tg for tg in targets if tg.name not in names and self._needs_update(tg, version, op)]
        self._install_all(stable, version, artifact, checksum, op)
        for target in targets:
            weight = self._normal_weight(target, op, default_weight)
            self._step(target, "set_weight", lambda tg=target, w=weight: self.p.router.set_weight(tg, w), weight=weight)
        size = parse_batch_size(batch_size, len(targets))
        forced = set(op.get("pending", []))
        for i in range(0, len(stable), size):
            self._each(stable[i:i + size],
                       lambda tg: self._update_target(tg, version, None, checksum, force=tg.name in forced))
        if not self.check_mode:
            op["percent"] = 100
            self._finish_deploy(op, "complete", version, targets)
        return self._result(targets, "complete", strategy="canary", canary_action="promote", canary_percent=100,
                            canary_hosts=names)

    def _canary_abort(self, targets, names, op, default_weight):
        canary = [tg for tg in targets if tg.name in names]
        stable = [tg for tg in targets if tg.name not in names]
        for target in canary:  # at once: no new requests to the canary
            self._step(target, "set_weight", lambda tg=target: self.p.router.set_weight(tg, 0), weight=0)
        for target in stable:
            weight = self._normal_weight(target, op, default_weight)
            self._step(target, "set_weight", lambda tg=target, w=weight: self.p.router.set_weight(tg, w), weight=weight)
        stable_version = op.get("stable_version")
        problems = []
        for target in canary:
            weight = self._normal_weight(target, op, default_weight)
            try:
                if stable_version and self.p.fleet.current_version(target) != stable_version:
                    self._update_target(target, stable_version, None, None, force=True, weight=weight)
                elif stable_version and target.name in (op.get("pending") or []):
                    self._update_target(target, stable_version, None, None, force=True, weight=weight)
                else:
                    self._step(target, "set_weight", lambda tg=target, w=weight: self.p.router.set_weight(tg, w),
                               weight=weight)
                    self._step(target, "enable", lambda tg=target: self.p.router.enable(tg))
            except (PlatformError, OSError) as exc:
                # weight 0 already keeps it out of traffic; say so and fail below
                with suppress_platform():
                    self.p.router.disable(target)
                problems.append("%s: %s" % (target.name, " ".join(str(exc).split())))
        if not self.check_mode:
            op["percent"] = 0
            op["pending"] = []
            self._remove_failed_release(op, targets)
            self.store.finish("aborted" if not problems else "failed", {"versions": self._versions(targets)})
        result = self._result(targets, "aborted", strategy="canary", canary_action="abort", canary_percent=0,
                              canary_hosts=names,
                              weights=dict((tg.name, self._normal_weight(tg, op, default_weight)) for tg in targets))
        if problems:
            raise RolloutFailed("canary abort could not restore %s; those hosts are out of traffic (weight 0)"
                                % "; ".join(problems), dict(result, status="failed"))
        return result
