# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollout strategies (rolling, blue-green, canary) and rollback over a ``Platform`` (stdlib only, Python 3.9+).

Every operation validates all input and the platform first (nothing is touched on error), then records each step
before/after in a JSON state file per environment (written atomically). A re-run of the same operation resumes: targets
already done are skipped, a target left half-way is finished (forced restart). Check mode returns the plan only.
"""

from __future__ import annotations

import json
import os
import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils._hosts import (
    check_version,
    normalize_checksum,
    not_installed_msg,
    sha256_file,
    sort_versions,
    write_atomic,
    _version_key,
)
from ansible_collections.meshos.release.plugins.module_utils.platform import (
    COLORS,
    ChecksumError,
    ConfigError,
    Platform,
    PlatformError,
    Target,
    VersionNotInstalledError,
)

STRATEGIES = ("rolling", "blue-green", "canary")
CANARY_ACTIONS = ("start", "advance", "promote", "abort")
DEFAULT_STEPS = (10, 25, 50, 100)
MAX_WEIGHT = 256
HISTORY = 20


# ---------------------------------------------------------------------------- input validation

def parse_batch_size(value: t.Any, total: int) -> int:
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, int(total * pct / 100.0))
        count = int(text)
        if count < 1:
            raise ValueError
        return min(count, total)
    except ValueError:
        raise ConfigError("invalid batch_size %r: expected a count >= 1 (e.g. 2) or a percentage 1-100%% (e.g. 25%%)"
                          % (value,))


def validate_canary(initial_traffic: t.Any, steps: t.Any) -> t.List[int]:
    if isinstance(initial_traffic, bool) or not isinstance(initial_traffic, int) or not 1 <= initial_traffic <= 99:
        raise ConfigError("invalid initial_traffic %r: expected an integer percentage 1-99" % (initial_traffic,))
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ConfigError("invalid steps %r: expected a non-empty list of increasing percentages ending at 100"
                          % (steps,))
    prev = initial_traffic
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 100:
            raise ConfigError("invalid step %r in steps %r: expected integer percentages 1-100" % (step, list(steps)))
        if step <= prev:
            raise ConfigError("steps %r are not increasing: %d follows %d (initial_traffic %d)"
                              % (list(steps), step, prev, initial_traffic))
        prev = step
    if steps[-1] != 100:
        raise ConfigError("steps %r must end at 100 (full promotion)" % (list(steps),))
    return list(steps)


def canary_weights(percent: int, n_canary: int, n_stable: int, max_weight: int = MAX_WEIGHT) -> t.Tuple[int, int]:
    """Per-server weights (canary, stable) so the canary group gets ``percent`` % of requests."""
    if percent >= 100 or n_stable == 0:
        return max_weight, 0
    if percent <= 0:
        return 0, max_weight
    best = (0, max_weight)
    best_err = 1.0
    for stable in range(max_weight, 0, -1):
        canary = int(round(percent / 100.0 * n_stable * stable / ((1 - percent / 100.0) * n_canary)))
        if 1 <= canary <= max_weight:
            share = n_canary * canary / float(n_canary * canary + n_stable * stable)
            err = abs(share - percent / 100.0)
            if err < best_err - 1e-9:
                best, best_err = (canary, stable), err
            if err < 0.0005:
                break
    return best


# ---------------------------------------------------------------------------- state file

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
        self.data["updated"] = _now()
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
        op = {"kind": kind, "strategy": strategy, "version": version, "status": "in_progress", "started": _now(),
              "from_versions": dict((tg.name, tg.version) for tg in targets), "done": [], "pending": [],
              "steps": [], "resumed": 0}
        op.update(extra)
        self.data["operation"] = op
        self.save()
        return op

    def finish(self, status: str, summary: t.Dict[str, t.Any]) -> None:
        op = self.operation or {}
        op["status"] = status
        op["finished"] = _now()
        entry = {"kind": op.get("kind"), "strategy": op.get("strategy"), "version": op.get("version"),
                 "status": status, "started": op.get("started"), "finished": op["finished"]}
        entry.update(summary)
        self.data["last_operation"] = entry
        self.data["history"] = (self.data.get("history") or [])[-(HISTORY - 1):] + [entry]
        self.save()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------- the runner

class Rollout:
    """Strategies and rollback. ``platform`` must be a ``Platform`` (``HostsPlatform`` adds wait_up/verify/prune)."""

    def __init__(self, platform: Platform, store: StateStore, check_mode: bool = False, drain_timeout: float = 30.0,
                 ready_timeout: float = 30.0, clock: t.Callable[[], float] = time.monotonic) -> None:
        self.p = platform
        self.store = store
        self.check_mode = check_mode
        self.drain_timeout = drain_timeout
        self.ready_timeout = ready_timeout
        self.clock = clock
        self.plan = []  # type: t.List[t.Dict[str, t.Any]]
        self.actions = []  # type: t.List[t.Dict[str, t.Any]]

    # ------------------------------------------------------------------ helpers
    def _step(self, target: t.Optional[Target], action: str, func: t.Callable[[], t.Any], **detail: t.Any) -> t.Any:
        """Record one step before/after in the state file and run it (not in check mode)."""
        entry = {"target": target.name if target else None, "action": action}
        entry.update(detail)
        if self.check_mode:
            self.plan.append(entry)
            return None
        op = self.store.operation
        before = self._snapshot(target)
        record = dict(entry, before=before, at=_now(), done=False)
        if op is not None:
            op["steps"] = (op.get("steps") or [])[-199:] + [record]
            self.store.save()
        result = func()
        record["after"] = self._snapshot(target)
        record["done"] = True
        record["changed"] = bool(result) if result is not None else True
        if op is not None:
            self.store.save()
        self.actions.append(dict(entry, changed=record["changed"]))
        return result

    def _snapshot(self, target: t.Optional[Target]) -> t.Dict[str, t.Any]:
        if target is None:
            return {}
        try:
            version = self.p.current_version(target)
        except PlatformError:
            version = None
        return {"version": version, "state": target.state}

    def _preflight(self, version: t.Optional[str], artifact: t.Optional[str], checksum: t.Optional[str],
                   targets: t.Optional[t.List[Target]] = None, only: t.Optional[t.List[str]] = None
                   ) -> t.List[Target]:
        """Everything that can be checked before touching anything."""
        if version is not None:
            check_version(version)
        checksum = normalize_checksum(checksum)
        if artifact:
            if not os.path.isfile(artifact):
                raise ConfigError("artifact %s does not exist" % artifact)
            if checksum:
                actual = sha256_file(artifact)
                if actual != checksum:
                    raise ChecksumError("checksum mismatch for %s: sha256 is %s, expected %s"
                                        % (artifact, actual, checksum))
        haproxy = getattr(self.p, "haproxy", None)
        if haproxy is not None:
            haproxy.check()
        all_targets = self.p.targets()  # raises for unknown backend / server
        for target in all_targets:
            target.version = self.p.current_version(target)
        if only is not None:
            all_targets = [tg for tg in all_targets if tg.name in only]
        chosen = targets if targets is not None else all_targets
        if version is not None and not artifact:
            for target in chosen:
                installed = self.p.installed_versions(target)
                if version not in installed:
                    raise VersionNotInstalledError(not_installed_msg(target.name, version, installed))
        return all_targets

    def _needs_update(self, target: Target, version: str, op: t.Dict[str, t.Any]) -> bool:
        if target.name in op.get("pending", []):
            return True
        if self.p.current_version(target) != version or target.state != "ready":
            return True
        running = getattr(self.p, "running_version", lambda _t: None)(target)
        return running is not None and running != version

    def _update_target(self, target: Target, version: str, artifact: t.Optional[str], checksum: t.Optional[str],
                       force: bool, weight: t.Optional[int] = None) -> None:
        """drain -> install -> activate (switch, restart, ready) -> [weight] -> enable -> wait UP."""
        op = self.store.operation or {}
        if not self.check_mode and target.name not in op.get("pending", []):
            op.setdefault("pending", []).append(target.name)
            self.store.save()
        self._step(target, "drain", lambda: self.p.drain(target, self.drain_timeout), timeout=self.drain_timeout)
        if artifact:
            self._step(target, "install", lambda: self.p.install(target, version, artifact, checksum), version=version)
        self._step(target, "activate", lambda: _activate(self.p, target, version, force), version=version,
                   from_version=target.version)
        if weight is not None:
            self._step(target, "set_weight", lambda: self.p.set_weight(target, weight), weight=weight)
        self._step(target, "enable", lambda: self.p.enable(target))
        if hasattr(self.p, "wait_up"):
            self._step(target, "wait_up", lambda: self.p.wait_up(target, self.ready_timeout))
        if not self.check_mode:
            op["pending"] = [n for n in op.get("pending", []) if n != target.name]
            if target.name not in op.setdefault("done", []):
                op["done"].append(target.name)
            self.store.save()

    def _versions(self, targets: t.List[Target]) -> t.Dict[str, t.Optional[str]]:
        return dict((tg.name, self.p.current_version(tg)) for tg in targets)

    def _result(self, targets: t.List[Target], status: str, **extra: t.Any) -> t.Dict[str, t.Any]:
        versions = self._versions(targets)
        result = {
            "changed": bool(self.plan) if self.check_mode else any(a.get("changed") for a in self.actions),
            "status": status, "plan": self.plan, "steps": self.actions, "versions": versions,
            "mixed_versions": len(set(v for v in versions.values())) > 1, "state_file": self.store.path,
        }
        result.update(extra)
        return result

    def _prune(self, targets: t.List[Target], keep: int, protect: t.Iterable[str]) -> t.Dict[str, t.List[str]]:
        removed = {}
        if not keep or not hasattr(self.p, "prune"):
            return removed
        for target in targets:
            gone = self.p.prune(target, keep, protect, self.check_mode)
            if gone:
                removed[target.name] = gone
                if not self.check_mode:
                    self.actions.append({"target": target.name, "action": "prune", "removed": gone, "changed": True})
        return removed

    # ------------------------------------------------------------------ rolling
    def rolling(self, version: str, artifact: t.Optional[str] = None, checksum: t.Optional[str] = None,
                batch_size: t.Any = 1, max_batches: int = 0, keep_releases: int = 5, kind: str = "deploy",
                only: t.Optional[t.List[str]] = None) -> t.Dict[str, t.Any]:
        targets = self._preflight(version, artifact, checksum, only=only)
        size = parse_batch_size(batch_size, len(targets))
        op = self.store.begin(kind, "rolling", version, targets, {}) if not self.check_mode else {"pending": []}
        todo = [tg for tg in targets if self._needs_update(tg, version, op)]
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]
        done_batches = 0
        for batch in batches:
            if max_batches and done_batches >= max_batches:
                break
            for target in batch:
                self._update_target(target, version, artifact, checksum, force=target.name in op.get("pending", []))
            done_batches += 1
        remaining = len(batches) - done_batches
        status = "complete" if remaining == 0 else "in_progress"
        removed = {}
        if status == "complete":
            protect = [version] + [v for v in (op.get("from_versions") or {}).values() if v]
            removed = self._prune(targets, keep_releases, protect)
            if not self.check_mode:
                self._finish_deploy(op, status, version, targets)
        return self._result(targets, status, strategy="rolling", batch_size=size, batches=len(batches),
                            batches_remaining=remaining, pruned=removed)

    def _finish_deploy(self, op: t.Dict[str, t.Any], status: str, version: str, targets: t.List[Target]) -> None:
        data = self.store.data
        froms = sort_versions(set(v for v in (op.get("from_versions") or {}).values() if v and v != version))
        if op.get("kind") == "deploy" and froms:
            data["previous_version"] = froms[-1]
        data["deployed_version"] = version
        data["strategy"] = op.get("strategy")
        self.store.finish(status, {"versions": self._versions(targets)})

    # ------------------------------------------------------------------ blue-green
    def blue_green(self, version: str, artifact: t.Optional[str] = None, checksum: t.Optional[str] = None,
                   keep_previous: bool = True, keep_releases: int = 5) -> t.Dict[str, t.Any]:
        targets = self._preflight(version, artifact, checksum)
        by_color = dict((c, [tg for tg in targets if tg.color == c]) for c in COLORS)
        for color in COLORS:
            if not by_color[color]:
                raise ConfigError("blue-green needs targets of both colors: none is %s" % color)
        active = self.p.active_color()
        if active is None:
            raise ConfigError("the HAProxy route map does not point key 'active' at be_blue or be_green "
                              "(it says %r): switch once to a color before a blue-green deploy"
                              % (getattr(self.p, "active_backend", lambda: None)(),))
        live = by_color[active]
        if all(self.p.current_version(tg) == version and tg.state == "ready" for tg in live):
            return self._result(targets, "complete", strategy="blue-green", active_color=active)
        idle = "green" if active == "blue" else "blue"
        op = self.store.begin("deploy", "blue-green", version, targets, {"from_color": active, "to_color": idle}) \
            if not self.check_mode else {"pending": []}
        for target in by_color[idle]:
            if self._needs_update(target, version, op):
                self._update_target(target, version, artifact, checksum, force=target.name in op.get("pending", []))
        self._step(None, "switch_traffic", lambda: self.p.switch_traffic(idle), color=idle, from_color=active)
        if not keep_previous:
            for target in live:
                self._step(target, "disable", lambda tg=target: self.p.disable(tg))
        removed = {}
        if not self.check_mode:
            self.store.data["active_color"] = idle
            removed = self._prune(by_color[idle], keep_releases,
                                  [version] + [v for v in op.get("from_versions", {}).values() if v])
            self._finish_deploy(op, "complete", version, targets)
        return self._result(targets, "complete", strategy="blue-green",
                            active_color=active if self.check_mode else idle, previous_color=active, pruned=removed)

    # ------------------------------------------------------------------ canary
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
            artifact = artifact or op.get("artifact")
        if not version:
            raise ConfigError("version is required to start a canary")
        targets = self._preflight(version, artifact, checksum)
        if isinstance(canary_count, bool) or not isinstance(canary_count, int) or not 1 <= canary_count < len(targets):
            raise ConfigError("invalid canary_count %r: expected 1-%d (some targets must stay stable)"
                              % (canary_count, len(targets) - 1))
        if action == "start":
            if in_progress and op.get("version") != version:
                raise ConfigError("a canary for version %s is in progress: promote or abort it first" % op.get("version"))
            names = op.get("canary_hosts") if in_progress else [tg.name for tg in targets[:canary_count]]
            stable_version = op.get("stable_version") if in_progress else self.p.current_version(targets[-1])
            if not self.check_mode:
                op = self.store.begin("deploy", "canary", version, targets,
                                      {"canary_hosts": names, "stable_version": stable_version, "percent": 0,
                                       "artifact": artifact, "steps_plan": steps})
            return self._canary_start(targets, names, version, artifact, checksum, initial_traffic, op)
        names = op["canary_hosts"]
        if action == "advance":
            nxt = [s for s in op.get("steps_plan", steps) if s > op.get("percent", 0)]
            if not nxt or nxt[0] >= 100:
                action = "promote"
            else:
                return self._canary_weights(targets, names, nxt[0], op, "advance")
        if action == "promote":
            return self._canary_promote(targets, names, version, artifact, checksum, default_weight, batch_size, op)
        return self._canary_abort(targets, names, op, default_weight)

    def _canary_weights(self, targets: t.List[Target], names: t.List[str], percent: int, op: t.Dict[str, t.Any],
                        what: str) -> t.Dict[str, t.Any]:
        canary = [tg for tg in targets if tg.name in names]
        stable = [tg for tg in targets if tg.name not in names]
        wc, ws = canary_weights(percent, len(canary), len(stable))
        for target in stable:  # raise stable first so the canary share never overshoots
            self._step(target, "set_weight", lambda tg=target: self.p.set_weight(tg, ws), weight=ws)
        for target in canary:
            self._step(target, "set_weight", lambda tg=target: self.p.set_weight(tg, wc), weight=wc)
        if not self.check_mode:
            op["percent"] = percent
            self.store.save()
        return self._result(targets, "in_progress", strategy="canary", canary_action=what, canary_percent=percent,
                            canary_hosts=names, weights={"canary": wc, "stable": ws})

    def _canary_start(self, targets, names, version, artifact, checksum, initial_traffic, op):
        wc, _ws = canary_weights(initial_traffic, len(names), len(targets) - len(names))
        for target in targets:
            if target.name in names and self._needs_update(target, version, op):
                self._update_target(target, version, artifact, checksum, force=target.name in op.get("pending", []),
                                    weight=wc)
        return self._canary_weights(targets, names, initial_traffic, op, "start")

    def _canary_promote(self, targets, names, version, artifact, checksum, default_weight, batch_size, op):
        for target in targets:
            self._step(target, "set_weight", lambda tg=target: self.p.set_weight(tg, default_weight),
                       weight=default_weight)
        stable = [tg for tg in targets if tg.name not in names and self._needs_update(tg, version, op)]
        size = parse_batch_size(batch_size, len(targets))
        for i in range(0, len(stable), size):
            for target in stable[i:i + size]:
                self._update_target(target, version, artifact, checksum, force=target.name in op.get("pending", []))
        if not self.check_mode:
            op["percent"] = 100
            self._finish_deploy(op, "complete", version, targets)
        return self._result(targets, "complete", strategy="canary", canary_action="promote", canary_percent=100,
                            canary_hosts=names)

    def _canary_abort(self, targets, names, op, default_weight):
        canary = [tg for tg in targets if tg.name in names]
        stable = [tg for tg in targets if tg.name not in names]
        for target in canary:  # at once: no new requests to the canary
            self._step(target, "set_weight", lambda tg=target: self.p.set_weight(tg, 0), weight=0)
        for target in stable:
            self._step(target, "set_weight", lambda tg=target: self.p.set_weight(tg, default_weight),
                       weight=default_weight)
        stable_version = op.get("stable_version")
        if stable_version:
            for target in canary:
                if self.p.current_version(target) != stable_version:
                    self._update_target(target, stable_version, None, None, force=False, weight=default_weight)
                else:
                    self._step(target, "set_weight", lambda tg=target: self.p.set_weight(tg, default_weight),
                               weight=default_weight)
        if not self.check_mode:
            op["percent"] = 0
            self.store.finish("aborted", {"versions": self._versions(targets)})
        return self._result(targets, "aborted", strategy="canary", canary_action="abort", canary_percent=0,
                            canary_hosts=names)

    # ------------------------------------------------------------------ rollback
    def rollback_version(self, targets: t.List[Target], version: t.Optional[str]) -> str:
        if version:
            return check_version(version)
        # A deploy stopped half-way (for example by a failed batch gate): go back to what it replaced, not to the
        # previous_version of an older completed deploy.
        op = self.store.operation or {}
        if op.get("kind") == "deploy" and op.get("status") == "in_progress":
            froms = sort_versions(set(v for v in (op.get("from_versions") or {}).values()
                                      if v and v != op.get("version")))
            if froms:
                return froms[-1]
        prev = self.store.data.get("previous_version")
        if prev:
            return prev
        current = self.p.current_version(targets[0]) or ""
        older = [v for v in self.p.installed_versions(targets[0]) if current and _version_key(v) < _version_key(current)]
        if not older:
            raise VersionNotInstalledError("no previous release to roll back to on %s (installed: %s)"
                                           % (targets[0].name, ", ".join(self.p.installed_versions(targets[0]))
                                              or "none"))
        return older[-1]

    def rollback(self, strategy: t.Optional[str], version: t.Optional[str], batch_size: t.Any = 1,
                 default_weight: int = 100) -> t.Dict[str, t.Any]:
        strategy = strategy or self.store.data.get("strategy") or "rolling"
        if strategy not in STRATEGIES:
            raise ConfigError("invalid strategy %r: expected one of %s" % (strategy, ", ".join(STRATEGIES)))
        started = self.clock()
        op = self.store.operation or {}
        if strategy == "canary" and op.get("strategy") == "canary" and op.get("status") == "in_progress":
            result = self.canary("abort", None, default_weight=default_weight)
        elif strategy == "blue-green":
            result = self._rollback_blue_green(version)
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
            result = self.rolling(target_version, batch_size=batch_size, keep_releases=0, kind="rollback", only=only)
        result["rollback_seconds"] = round(self.clock() - started, 3)
        return result

    def _rollback_blue_green(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        targets = self._preflight(None, None, None)
        active = self.p.active_color()
        if active is None:
            raise ConfigError("the HAProxy route map does not point at be_blue or be_green: nothing to switch back")
        other = "green" if active == "blue" else "blue"
        standby = [tg for tg in targets if tg.color == other]
        versions = sorted(set(str(self.p.current_version(tg)) for tg in standby))
        if version and versions != [version]:
            raise VersionNotInstalledError("version %s is not what the %s color runs (%s): blue-green rollback switches "
                                           "back to the standby color only" % (version, other, ", ".join(versions)))
        for target in standby:
            if target.state != "ready":
                self._step(target, "enable", lambda tg=target: self.p.enable(tg))
                if hasattr(self.p, "wait_up"):
                    self._step(target, "wait_up", lambda tg=target: self.p.wait_up(tg, self.ready_timeout))
        if not self.check_mode:
            self.store.begin("rollback", "blue-green", versions[0] if versions else "", targets,
                             {"from_color": active, "to_color": other})
        self._step(None, "switch_traffic", lambda: self.p.switch_traffic(other), color=other, from_color=active)
        if not self.check_mode:
            self.store.data["active_color"] = other
            self.store.finish("complete", {"versions": self._versions(targets), "active_color": other})
        return self._result(targets, "complete", strategy="blue-green", active_color=other, previous_color=active)

    # ------------------------------------------------------------------ verify-backup
    def verify_backup(self, version: t.Optional[str], retention: int = 5) -> t.Dict[str, t.Any]:
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 2:
            raise ConfigError("invalid retention %r: expected an integer >= 2 (current and previous are always kept)"
                              % (retention,))
        targets = self._preflight(None, None, None)
        reports = {}
        ok = True
        for target in targets:
            try:
                want = self.rollback_version([target], version)
            except VersionNotInstalledError as exc:
                reports[target.name] = {"ok": False, "problems": [str(exc)], "version": None}
                ok = False
                continue
            report = self.p.verify(target, want)
            installed = self.p.installed_versions(target)
            report["releases"] = installed
            report["current"] = self.p.current_version(target)
            if len(installed) > retention:
                report["problems"].append("%d releases kept, retention is %d" % (len(installed), retention))
            if not report["present"]:
                report["problems"][0] += " (available: %s)" % (", ".join(installed) or "none")
            report["ok"] = report["ok"] and len(installed) <= retention
            ok = ok and report["ok"]
            reports[target.name] = report
        return {"changed": False, "ok": ok, "targets": reports, "retention": retention, "state_file": self.store.path}


def _activate(platform: Platform, target: Target, version: str, force: bool) -> bool:
    activate = getattr(platform, "activate")
    try:
        return activate(target, version, force_restart=force)
    except TypeError:
        return activate(target, version)


def status(platform: Platform, store: StateStore) -> t.Dict[str, t.Any]:
    targets = platform.targets()
    versions = dict((tg.name, tg.version) for tg in targets)
    color = None
    try:
        color = platform.active_color()
    except ConfigError:
        color = None
    op = store.operation or {}
    return {"changed": False, "targets": [tg.as_dict() for tg in targets], "versions": versions,
            "mixed_versions": len(set(versions.values())) > 1, "active_color": color,
            "canary_percent": op.get("percent") if op.get("strategy") == "canary" else None,
            "operation": dict((k, v) for k, v in op.items() if k != "steps"),
            "last_operation": store.data.get("last_operation"), "state_file": store.path}


# ---------------------------------------------------------------------------- module glue

def common_argument_spec() -> t.Dict[str, t.Any]:
    """Options shared by rollout_strategy and rollback (their DOCUMENTATION repeats them)."""
    return dict(
        environment=dict(type="str", required=True),
        state_dir=dict(type="path", required=True),
        haproxy_socket=dict(type="path", required=True),
        backend=dict(type="str", default="be_app"),
        route_map=dict(type="path"),
        targets=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            server=dict(type="str"),
            backend=dict(type="str"),
            color=dict(type="str", choices=["blue", "green"]),
            release_root=dict(type="str", required=True),
            restart_command=dict(type="str", required=True),
            ready_url=dict(type="str", required=True),
            status_url=dict(type="str"),
            weight=dict(type="int"),
            host=dict(type="str"),
            port=dict(type="int"),
        )),
        drain_timeout=dict(type="float", default=30.0),
        ready_timeout=dict(type="float", default=30.0),
        interval=dict(type="float", default=0.2),
        batch_size=dict(type="str", default="1"),
        default_weight=dict(type="int", default=100),
    )


def build_runner(params: t.Dict[str, t.Any], check_mode: bool, need_color: bool = False,
                 run_command: t.Optional[t.Callable[[t.List[str]], t.Tuple[int, str, str]]] = None) -> Rollout:
    """Validate the shared options and build HostsPlatform + StateStore + Rollout. ConfigError on bad input."""
    from ansible_collections.meshos.release.plugins.module_utils._haproxy import HAProxyClient
    from ansible_collections.meshos.release.plugins.module_utils._hosts import HostsPlatform, parse_targets

    for key in ("drain_timeout", "ready_timeout"):
        if params[key] <= 0:
            raise ConfigError("invalid %s %r: expected seconds > 0" % (key, params[key]))
    if not 0 < params["interval"] <= 10:
        raise ConfigError("invalid interval %r: expected seconds in (0, 10]" % (params["interval"],))
    if not 1 <= params["default_weight"] <= MAX_WEIGHT:
        raise ConfigError("invalid default_weight %r: expected 1-%d" % (params["default_weight"], MAX_WEIGHT))
    targets = parse_targets(params["targets"], params["backend"], need_color=need_color)
    parse_batch_size(params["batch_size"], len(targets))
    store = StateStore(params["state_dir"], params["environment"], check_mode=check_mode)
    platform = HostsPlatform(HAProxyClient(params["haproxy_socket"]), targets, route_map=params.get("route_map"),
                             interval=params["interval"], command_timeout=max(params["ready_timeout"], 10.0),
                             run_command=run_command)
    return Rollout(platform, store, check_mode=check_mode, drain_timeout=params["drain_timeout"],
                   ready_timeout=params["ready_timeout"])
