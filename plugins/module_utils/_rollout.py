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
PHASES = ("full", "prepare", "switch")
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


class RolloutFailed(PlatformError):
    """A step failed; the fleet was restored (or taken out of traffic) before raising. ``result`` says what."""

    def __init__(self, msg: str, result: t.Dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.result = result


# ---------------------------------------------------------------------------- the runner

class Rollout:
    """Strategies and rollback. ``platform`` must be a ``Platform`` (``HostsPlatform`` adds wait_up/verify/prune)."""

    def __init__(self, platform: Platform, store: StateStore, check_mode: bool = False, drain_timeout: float = 30.0,
                 ready_timeout: float = 30.0, clock: t.Callable[[], float] = time.monotonic,
                 manifest: t.Optional[str] = None, public_key: t.Optional[str] = None,
                 require_checksum: bool = False, require_signature: bool = False,
                 run_command: t.Optional[t.Callable[..., t.Tuple[int, str, str]]] = None) -> None:
        self.p = platform
        self.store = store
        self.check_mode = check_mode
        self.drain_timeout = drain_timeout
        self.ready_timeout = ready_timeout
        self.clock = clock
        self.manifest = manifest
        self.public_key = public_key
        self.require_checksum = require_checksum
        self.require_signature = require_signature
        self.run_command = run_command
        self.plan = []  # type: t.List[t.Dict[str, t.Any]]
        self.actions = []  # type: t.List[t.Dict[str, t.Any]]
        self.artifact_check = None  # type: t.Optional[t.Dict[str, t.Any]]

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

    def _verify_artifact(self, version: str, artifact: str, checksum: t.Optional[str]) -> t.Dict[str, t.Any]:
        """Checksum option and release manifest (and its signature) against the artifact, before any host changes."""
        actual = sha256_file(artifact)
        check = {"artifact": artifact, "sha256": actual, "checksum_verified": False, "manifest_verified": False,
                 "signature_verified": False}
        if checksum:
            if actual != checksum:
                raise ChecksumError("checksum mismatch for %s: sha256 is %s, expected %s" % (artifact, actual, checksum))
            check["checksum_verified"] = True
        if self.manifest:
            from ansible_collections.meshos.release.plugins.module_utils import _manifest
            try:
                raw, data = _manifest.load(self.manifest)
                if self.public_key:
                    if self.run_command is None:
                        raise ConfigError("no command runner to verify the signature of %s" % self.manifest)
                    _manifest.verify_signature(self.run_command, raw, self.manifest + ".sig", _manifest.NAMESPACE,
                                               public_key=self.public_key)
                    check["signature_verified"] = True
            except _manifest.ManifestError as exc:
                raise ChecksumError(str(exc))
            if str(data.get("version")) != version:
                raise ChecksumError("manifest %s is for version %s, not %s"
                                    % (self.manifest, data.get("version"), version))
            name = os.path.basename(artifact)
            entries = [e for e in (data.get("artifacts") or []) if isinstance(e, dict)
                       and (e.get("name") or os.path.basename(str(e.get("path") or ""))) == name]
            if not entries:
                listed = [str(e.get("name") or e.get("path")) for e in (data.get("artifacts") or [])
                          if isinstance(e, dict)]
                raise ChecksumError("manifest %s lists no artifact named %s (it lists: %s)"
                                    % (self.manifest, name, ", ".join(listed) or "none"))
            expected = str(entries[0].get("sha256") or "").lower()
            if actual != expected:
                raise ChecksumError("artifact %s sha256 %s does not match the manifest %s (%s)"
                                    % (artifact, actual, self.manifest, expected or "no sha256"))
            check["manifest_verified"] = True
        if self.require_signature and not check["signature_verified"]:
            raise ConfigError("require_signature is set but no manifest with public_key verifies %s: pass manifest "
                              "and public_key" % artifact)
        if self.require_checksum and not (check["checksum_verified"] or check["manifest_verified"]):
            raise ConfigError("require_checksum is set: artifact %s has neither checksum nor manifest to verify it "
                              "against" % artifact)
        return check

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
            if version is not None:
                self.artifact_check = self._verify_artifact(version, artifact, checksum)
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

    def _install_all(self, targets: t.List[Target], version: str, artifact: t.Optional[str],
                     checksum: t.Optional[str], op: t.Dict[str, t.Any]) -> None:
        """Install on every target that will change before any of them leaves traffic: a full disk or an
        unwritable release directory then fails with the whole fleet untouched."""
        if not artifact:
            return
        for target in targets:
            existed = version in self.p.installed_versions(target)
            changed = self._step(target, "install", lambda tg=target: self.p.install(tg, version, artifact, checksum),
                                 version=version)
            if changed and not existed and not self.check_mode:
                new = op.setdefault("installed_new", {})
                if version not in new.setdefault(target.name, []):
                    new[target.name].append(version)
                self.store.save()

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
        if self.artifact_check:
            result["artifact_check"] = self.artifact_check
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

    # ------------------------------------------------------------------ failure: restore one consistent fleet
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
            current = self.p.current_version(target)
            if version is None:
                raise PlatformError("no version to return to (it had none before)")
            running = getattr(self.p, "running_version", lambda _t: None)(target) if in_flight else version
            if current != version or running != version:
                # also when `current` still names the old release: its process may have been stopped
                with _suppress_platform():
                    self.p.drain(target, min(self.drain_timeout, 5.0))
                try:
                    self._step(target, "restore", lambda: _activate(self.p, target, version, True), version=version,
                               from_version=current)
                except PlatformError as exc:
                    # restart_command itself is broken: when the old process never stopped and still serves VERSION,
                    # `current` is back on VERSION and the server can take traffic again
                    if getattr(self.p, "running_version", lambda _t: None)(target) != version \
                            or self.p.current_version(target) != version:
                        raise
                    self.p.wait_ready(target, min(self.ready_timeout, 5.0))
                    report["note"] = "restart failed (%s) but the old process still serves %s" % (
                        " ".join(str(exc).split()), version)
            weight = self._normal_weight(target, op)
            if weight is not None:
                self._step(target, "set_weight", lambda: self.p.set_weight(target, weight), weight=weight)
            self._step(target, "enable", lambda: self.p.enable(target))
            if hasattr(self.p, "wait_up"):
                self._step(target, "wait_up", lambda: self.p.wait_up(target, self.ready_timeout))
            report["restored"] = True
        except Exception as exc:  # noqa: BLE001 - whatever broke, the target must leave traffic
            report["restored"] = False
            report["error"] = " ".join(str(exc).split())
            try:
                disable = getattr(self.p, "disable")
                disable(target)
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
        versions = self._versions(targets)
        op["pending"] = []
        data = self.store.data
        if op.get("kind") == "deploy" and failed_version:
            data["failed_versions"] = [v for v in (data.get("failed_versions") or []) if v != failed_version][-9:] \
                + [failed_version]
        summary = {"versions": versions, "error": error, "restored": reports, "removed_failed_release": removed}
        with _suppress_platform():
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
        if self.check_mode or op.get("kind") != "deploy" or not hasattr(self.p, "remove"):
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
                with _suppress_platform():
                    if self.p.remove(target, version):
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
        if self.check_mode or not pending or not hasattr(self.p, "remove"):
            return removed
        for target in targets:
            versions = pending.pop(target.name, None) or []
            for version in versions:
                if version == keep:
                    continue  # deployed again now: it is the release being installed
                with _suppress_platform():
                    if self.p.remove(target, version):
                        removed.setdefault(target.name, []).append(version)
        if not pending:
            self.store.data.pop("pending_cleanup", None)
        return removed

    # ------------------------------------------------------------------ rolling
    def rolling(self, version: str, artifact: t.Optional[str] = None, checksum: t.Optional[str] = None,
                batch_size: t.Any = 1, max_batches: int = 0, keep_releases: int = 5, kind: str = "deploy",
                only: t.Optional[t.List[str]] = None) -> t.Dict[str, t.Any]:
        check_version(version)
        targets = self._preflight(version, artifact, checksum, only=only)
        size = parse_batch_size(batch_size, len(targets))
        op = self.store.begin(kind, "rolling", version, targets, {}) if not self.check_mode else {"pending": []}
        todo = [tg for tg in targets if self._needs_update(tg, version, op)]
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]

        def run() -> t.Dict[str, t.Any]:
            done_batches = 0
            if not self.check_mode and self._cleanup_pending(targets, keep=version):
                self.store.save()
            self._install_all(todo, version, artifact, checksum, op)
            for batch in batches:
                if max_batches and done_batches >= max_batches:
                    break
                for target in batch:
                    self._update_target(target, version, None, checksum, force=target.name in op.get("pending", []))
                done_batches += 1
            remaining = len(batches) - done_batches
            status = "complete" if remaining == 0 else "in_progress"
            removed = {}
            if status == "complete":
                protect = [version] + [v for v in (op.get("from_versions") or {}).values() if v]
                removed = self._prune(targets, keep_releases, protect)
                if kind == "rollback":
                    self._restore_weights(targets, op)
                if not self.check_mode:
                    self._finish_deploy(op, status, version, targets)
            return self._result(targets, status, strategy="rolling", batch_size=size, batches=len(batches),
                                batches_remaining=remaining, pruned=removed)

        return self._guarded(op, targets, run)

    def _restore_weights(self, targets: t.List[Target], op: t.Dict[str, t.Any]) -> None:
        """After a rollback: every server back to its recorded normal weight (a crashed canary leaves others)."""
        normal = self.store.data.get("normal_weights") or {}
        for target in targets:
            weight = normal.get(target.name)
            if weight is not None:
                self._step(target, "set_weight", lambda tg=target, w=weight: self.p.set_weight(tg, w), weight=weight)

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
                   keep_previous: bool = True, keep_releases: int = 5, phase: str = "full") -> t.Dict[str, t.Any]:
        if phase not in PHASES:
            raise ConfigError("invalid phase %r: expected one of %s" % (phase, ", ".join(PHASES)))
        check_version(version)
        # switch installs nothing: the prepared idle color is checked below
        targets = self._preflight(version if phase != "switch" else None, artifact if phase != "switch" else None,
                                  checksum)
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
            return self._result(targets, "complete", strategy="blue-green", active_color=active, phase=phase)
        idle = "green" if active == "blue" else "blue"
        current = self.store.operation or {}
        if phase == "switch":
            prepared = (current.get("strategy") == "blue-green" and current.get("status") == "in_progress"
                        and current.get("version") == version and current.get("prepared"))
            if not prepared or any(self.p.current_version(tg) != version or tg.state != "ready"
                                   for tg in by_color[idle]):
                runs = ", ".join("%s=%s/%s" % (tg.name, self.p.current_version(tg), tg.state) for tg in by_color[idle])
                raise ConfigError("phase=switch needs the %s color prepared with %s and ready (run phase=prepare "
                                  "and gate it first); it runs %s" % (idle, version, runs))
        op = self.store.begin("deploy", "blue-green", version, targets, {"from_color": active, "to_color": idle}) \
            if not self.check_mode else {"pending": []}

        def run() -> t.Dict[str, t.Any]:
            if phase != "switch":
                todo = [tg for tg in by_color[idle] if self._needs_update(tg, version, op)]
                self._install_all(todo, version, artifact, checksum, op)
                for target in todo:
                    self._update_target(target, version, None, checksum, force=target.name in op.get("pending", []))
            if phase == "prepare":
                if not self.check_mode:
                    op["prepared"] = True
                    self.store.save()
                return self._result(targets, "prepared", strategy="blue-green", phase=phase, active_color=active,
                                    idle_color=idle, idle_backend="be_%s" % idle,
                                    idle_targets=[_target_urls(tg) for tg in by_color[idle]])
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
            return self._result(targets, "complete", strategy="blue-green", phase=phase,
                                active_color=active if self.check_mode else idle, previous_color=active,
                                pruned=removed)

        return self._guarded(op, targets, run)

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
            stable_version = op.get("stable_version") if in_progress else self.p.current_version(targets[-1])
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
            self._step(target, "set_weight", lambda tg=target, w=weight: self.p.set_weight(tg, w), weight=weight)
        size = parse_batch_size(batch_size, len(targets))
        for i in range(0, len(stable), size):
            for target in stable[i:i + size]:
                self._update_target(target, version, None, checksum, force=target.name in op.get("pending", []))
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
            weight = self._normal_weight(target, op, default_weight)
            self._step(target, "set_weight", lambda tg=target, w=weight: self.p.set_weight(tg, w), weight=weight)
        stable_version = op.get("stable_version")
        problems = []
        for target in canary:
            weight = self._normal_weight(target, op, default_weight)
            try:
                if stable_version and self.p.current_version(target) != stable_version:
                    self._update_target(target, stable_version, None, None, force=True, weight=weight)
                elif stable_version and target.name in (op.get("pending") or []):
                    self._update_target(target, stable_version, None, None, force=True, weight=weight)
                else:
                    self._step(target, "set_weight", lambda tg=target, w=weight: self.p.set_weight(tg, w),
                               weight=weight)
                    self._step(target, "enable", lambda tg=target: self.p.enable(tg))
            except (PlatformError, OSError) as exc:
                # weight 0 already keeps it out of traffic; say so and fail below
                with _suppress_platform():
                    self.p.disable(target)
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

    # ------------------------------------------------------------------ rollback
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
        current = self.p.current_version(targets[0]) or ""
        older = [v for v in self.p.installed_versions(targets[0])
                 if current and _version_key(v) < _version_key(current) and v not in failed]
        if not older:
            raise VersionNotInstalledError("no previous release to roll back to on %s (installed: %s)"
                                           % (targets[0].name, ", ".join(self.p.installed_versions(targets[0]))
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

    def _close_failed_deploy(self, op: t.Dict[str, t.Any]) -> None:
        """Record the stopped deploy as rolled back in the history before the rollback operation replaces it."""
        data = self.store.data
        version = op.get("version")
        if version:
            data["failed_versions"] = [v for v in (data.get("failed_versions") or []) if v != version][-9:] + [version]
        self.store.finish("rolled_back", {"versions": op.get("from_versions")})

    def _rollback_blue_green(self, version: t.Optional[str], open_op: t.Optional[t.Dict[str, t.Any]] = None
                             ) -> t.Dict[str, t.Any]:
        targets = self._preflight(None, None, None)
        active = self.p.active_color()
        if active is None:
            raise ConfigError("the HAProxy route map does not point at be_blue or be_green: nothing to switch back")
        if open_op is not None and open_op.get("from_color") == active:
            # prepared (or failed half-way) but never switched: traffic never left the live color. Return the idle
            # color to what it ran so it stays a valid instant-rollback target.
            return self._rollback_unswitched(targets, open_op, active)
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

    def _rollback_unswitched(self, targets: t.List[Target], op: t.Dict[str, t.Any], active: str
                             ) -> t.Dict[str, t.Any]:
        idle = [tg for tg in targets if tg.color == op.get("to_color")]
        froms = op.get("from_versions") or {}
        reports = []
        if not self.check_mode and op.get("status") == "in_progress":
            self._close_failed_deploy(op)
        for target in idle:
            want = froms.get(target.name)
            if want and (self.p.current_version(target) != want):
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

    # ------------------------------------------------------------------ verify-backup
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
            report = self.p.verify(target, want)
            installed = self.p.installed_versions(target)
            report["releases"] = installed
            report["current"] = self.p.current_version(target)
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


class _suppress_platform:
    """Context manager: ignore PlatformError/OSError (best-effort steps while restoring)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: t.Any, exc: t.Any, tb: t.Any) -> bool:
        return exc_type is not None and issubclass(exc_type, (PlatformError, OSError))


def _target_urls(target: Target) -> t.Dict[str, t.Any]:
    return {"name": target.name, "server": target.server, "backend": target.backend,
            "ready_url": target.extra.get("ready_url"), "status_url": target.extra.get("status_url")}


def _activate(platform: Platform, target: Target, version: str, force: bool) -> bool:
    activate = getattr(platform, "activate")
    try:
        return activate(target, version, force_restart=force)
    except TypeError:
        return activate(target, version)


def status(platform: Platform, store: StateStore) -> t.Dict[str, t.Any]:
    """Versions, HAProxy states and weights; ``healthy`` only when nothing is off (no canary weights left)."""
    targets = platform.targets()
    versions = dict((tg.name, tg.version) for tg in targets)
    color = None
    try:
        color = platform.active_color()
    except ConfigError:
        color = None
    op = store.operation or {}
    normal = store.data.get("normal_weights") or {}
    live = [tg for tg in targets if not tg.color or tg.color == color]
    problems = []
    live_versions = set(versions[tg.name] for tg in live)
    if len(live_versions) > 1:
        problems.append("mixed versions in traffic: %s" % ", ".join(
            "%s=%s" % (tg.name, versions[tg.name]) for tg in live))
    for tg in live:
        if tg.state != "ready":
            problems.append("%s is %s in HAProxy" % (tg.name, tg.state))
        want = normal.get(tg.name)
        if want is not None and tg.weight != want:
            problems.append("%s has weight %d, its normal weight is %d" % (tg.name, tg.weight, want))
    if op.get("status") == "in_progress":
        problems.append("%s %s of %s in progress" % (op.get("strategy"), op.get("kind"), op.get("version")))
    if op.get("status") == "failed":
        problems.append("last %s of %s failed" % (op.get("kind"), op.get("version")))
    return {"changed": False, "targets": [tg.as_dict() for tg in targets], "versions": versions,
            "mixed_versions": len(set(versions.values())) > 1, "active_color": color,
            "canary_percent": op.get("percent") if op.get("strategy") == "canary" else None,
            "healthy": not problems, "problems": problems, "normal_weights": normal,
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
        haproxy_frontends=dict(type="list", elements="str"),
        measure_interval=dict(type="float", default=0.25),
    )


def build_runner(params: t.Dict[str, t.Any], check_mode: bool, need_color: bool = False,
                 run_command: t.Optional[t.Callable[..., t.Tuple[int, str, str]]] = None) -> Rollout:
    """Validate the shared options and build HostsPlatform + StateStore + Rollout. ConfigError on bad input."""
    from ansible_collections.meshos.release.plugins.module_utils._haproxy import HAProxyClient
    from ansible_collections.meshos.release.plugins.module_utils._hosts import HostsPlatform, parse_targets

    for key in ("drain_timeout", "ready_timeout"):
        if not params[key] > 0:
            raise ConfigError("invalid %s %r: expected seconds > 0" % (key, params[key]))
    if not 0 < params["interval"] <= 10:
        raise ConfigError("invalid interval %r: expected seconds in (0, 10]" % (params["interval"],))
    measure = params.get("measure_interval")
    if measure is not None and not 0.05 <= measure <= 10:
        raise ConfigError("invalid measure_interval %r: expected seconds in [0.05, 10]" % (params["measure_interval"],))
    if not 1 <= params["default_weight"] <= MAX_WEIGHT:
        raise ConfigError("invalid default_weight %r: expected 1-%d" % (params["default_weight"], MAX_WEIGHT))
    if params.get("version") is not None:
        check_version(params["version"])
    targets = parse_targets(params["targets"], params["backend"], need_color=need_color)
    parse_batch_size(params["batch_size"], len(targets))
    store = StateStore(params["state_dir"], params["environment"], check_mode=check_mode)
    platform = HostsPlatform(HAProxyClient(params["haproxy_socket"]), targets, route_map=params.get("route_map"),
                             interval=params["interval"], command_timeout=max(params["ready_timeout"], 10.0),
                             run_command=run_command)
    return Rollout(platform, store, check_mode=check_mode, drain_timeout=params["drain_timeout"],
                   ready_timeout=params["ready_timeout"], manifest=params.get("manifest"),
                   public_key=params.get("public_key"), require_checksum=bool(params.get("require_checksum")),
                   require_signature=bool(params.get("require_signature")), run_command=run_command)


def measured_run(runner: Rollout, params: t.Dict[str, t.Any], func: t.Callable[[], t.Dict[str, t.Any]],
                 meter_factory: t.Optional[t.Callable[..., t.Any]] = None) -> t.Dict[str, t.Any]:
    """Run FUNC while sampling HAProxy's counters; the result (or RolloutFailed.result) gets ``traffic``."""
    if runner.check_mode:
        traffic = {"measured": {"source": None, "reason": "check mode: nothing ran"}}
        result = func()
        result["traffic"] = traffic
        return result
    meter = None
    haproxy = getattr(runner.p, "haproxy", None)
    if haproxy is not None:
        from ansible_collections.meshos.release.plugins.module_utils._haproxy import TrafficMeter
        factory = meter_factory or TrafficMeter
        meter = factory(haproxy, lambda: live_backends(runner.p), frontends=params.get("haproxy_frontends"),
                        interval=params.get("measure_interval") or 0.25).start()
    try:
        result = func()
    except RolloutFailed as exc:
        exc.result["traffic"] = {"measured": meter.stop() if meter else _unmeasured()}
        raise
    finally:
        measured = meter.stop() if meter else _unmeasured()
    result["traffic"] = {"measured": measured}
    return result


def _unmeasured() -> t.Dict[str, t.Any]:
    return {"source": None, "reason": "the platform has no HAProxy runtime API to read counters from"}


def live_backends(platform: Platform) -> t.List[str]:
    """Backends that serve users now: the routed color for blue-green, else the backends of uncolored targets."""
    targets = getattr(platform, "_targets", None) or []
    plain = sorted(set(tg.backend for tg in targets if not tg.color))
    if any(tg.color for tg in targets) and getattr(platform, "route_map", None):
        active = platform.active_backend()  # type: ignore[attr-defined]
        if active:
            return [active]
    return plain or sorted(set(tg.backend for tg in targets))
