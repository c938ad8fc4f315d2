# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner's core: each step recorded before/after in the state file, preflight, per-target update.

Every operation validates all input and the platform first (nothing is touched on error). Check mode only
plans. The strategies (rolling.py, blue_green.py, canary.py, rollback.py) build on it.
"""

from __future__ import annotations

import os
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.meshos.release.plugins.module_utils._fsutil import sha256_file
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    HEALTH_UP,
    ChecksumError,
    ConfigError,
    Platform,
    PlatformError,
    Target,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import (
    check_version,
    normalize_checksum,
    not_installed_msg,
    sort_versions,
)
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import now
from ansible_collections.meshos.release.plugins.module_utils.state.store import StateStore


class RunnerCore:
    """Steps, preflight and per-target update shared by every strategy (``self.p`` is a ``Platform``)."""

    def __init__(self, platform: Platform, store: StateStore, check_mode: bool = False, drain_timeout: float = 30.0,
                 ready_timeout: float = 30.0, clock: t.Callable[[], float] = time.monotonic,
                 manifest: t.Optional[str] = None, public_key: t.Optional[str] = None,
                 require_checksum: bool = False, require_signature: bool = False,
                 run_command: t.Optional[t.Callable[..., t.Tuple[int, str, str]]] = None, forks: int = 1) -> None:
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
        # the hosts of one batch are changed in parallel (like Ansible's forks); the state record and the action
        # list are shared by those threads, so every change to them (and its save) holds this lock
        self.forks = forks
        self._record_lock = threading.RLock()

    def _step(self, target: t.Optional[Target], action: str, func: t.Callable[[], t.Any], **detail: t.Any) -> t.Any:
        """Record one step before/after in the state file and run it (not in check mode)."""
        entry = {"target": target.name if target else None, "action": action}
        entry.update(detail)
        if self.check_mode:
            self.plan.append(entry)
            return None
        before = self._snapshot(target)
        record = dict(entry, before=before, at=now(), done=False)
        with self._record_lock:
            op = self.store.operation
            if op is not None:
                op["steps"] = (op.get("steps") or [])[-199:] + [record]
                self.store.save()
        result = func()
        record["after"] = self._snapshot(target)
        with self._record_lock:
            record["done"] = True
            record["changed"] = bool(result) if result is not None else True
            if op is not None:
                self.store.save()
            self.actions.append(dict(entry, changed=record["changed"]))
        return result

    def _each(self, targets: t.List[Target], work: t.Callable[[Target], t.Any], limit: t.Optional[int] = None) -> None:
        """WORK on every target, up to ``forks`` (and LIMIT) at a time. Every started target finishes (a half-done
        host is worse than a late error); then the first failure, in target order, is raised, so the restore sees
        every host the batch changed."""
        workers = min(self.forks, len(targets), limit if limit is not None else len(targets))
        if self.check_mode or workers <= 1:
            for target in targets:
                work(target)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(work, target) for target in targets]
        errors = [future.exception() for future in futures]
        for error in errors:
            if error is not None:
                raise error

    def _snapshot(self, target: t.Optional[Target]) -> t.Dict[str, t.Any]:
        if target is None:
            return {}
        try:
            version = self.p.fleet.current_version(target)
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
            from ansible_collections.meshos.release.plugins.module_utils.release import manifest as _manifest
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
        self.p.router.check()
        all_targets = self.p.targets()  # raises for unknown backend / server
        for target in all_targets:
            target.version = self.p.fleet.current_version(target)
        if only is not None:
            all_targets = [tg for tg in all_targets if tg.name in only]
        chosen = targets if targets is not None else all_targets
        if version is not None and not artifact:
            for target in chosen:
                installed = self.p.fleet.installed_versions(target)
                if version not in installed:
                    raise VersionNotInstalledError(not_installed_msg(target.name, version, installed))
        return all_targets

    def _needs_update(self, target: Target, version: str, op: t.Dict[str, t.Any]) -> bool:
        if target.name in op.get("pending", []):
            return True
        if self.p.fleet.current_version(target) != version or target.state != "ready":
            return True
        running = self.p.fleet.running_version(target)
        return running is not None and running != version

    def _install_all(self, targets: t.List[Target], version: str, artifact: t.Optional[str],
                     checksum: t.Optional[str], op: t.Dict[str, t.Any]) -> None:
        """Install on every target that will change before any of them leaves traffic: a full disk or an
        unwritable release directory then fails with the whole fleet untouched."""
        if not artifact:
            return

        def install(target: Target) -> None:
            existed = version in self.p.fleet.installed_versions(target)
            changed = self._step(target, "install", lambda: self.p.fleet.install(target, version, artifact, checksum),
                                 version=version)
            if changed and not existed and not self.check_mode:
                with self._record_lock:
                    new = op.setdefault("installed_new", {})
                    if version not in new.setdefault(target.name, []):
                        new[target.name].append(version)
                    self.store.save()

        self._each(targets, install)

    def _update_target(self, target: Target, version: str, artifact: t.Optional[str], checksum: t.Optional[str],
                       force: bool, weight: t.Optional[int] = None) -> None:
        """drain -> install -> activate (switch, restart, ready) -> [weight] -> enable -> wait UP."""
        op = self.store.operation or {}
        if not self.check_mode:
            with self._record_lock:
                if target.name not in op.get("pending", []):
                    op.setdefault("pending", []).append(target.name)
                    self.store.save()
        self._step(target, "drain", lambda: self.p.router.drain(target, self.drain_timeout), timeout=self.drain_timeout)
        if artifact:
            self._step(target, "install", lambda: self.p.fleet.install(target, version, artifact, checksum), version=version)
        self._step(target, "activate", lambda: self.p.fleet.activate(target, version, force_restart=force), version=version,
                   from_version=target.version)
        if weight is not None:
            self._step(target, "set_weight", lambda: self.p.router.set_weight(target, weight), weight=weight)
        self._step(target, "enable", lambda: self.p.router.enable(target))
        if self.p.router.supports(HEALTH_UP):
            self._step(target, "wait_up", lambda: self.p.router.wait_up(target, self.ready_timeout))
        if not self.check_mode:
            with self._record_lock:
                op["pending"] = [n for n in op.get("pending", []) if n != target.name]
                if target.name not in op.setdefault("done", []):
                    op["done"].append(target.name)
                self.store.save()

    def _versions(self, targets: t.List[Target], tolerant: bool = False) -> t.Dict[str, t.Optional[str]]:
        """Each target's current version; TOLERANT (after a failure): None for a target that cannot be read (an
        unreachable host), so the failure report and the state file still get written."""
        versions = {}  # type: t.Dict[str, t.Optional[str]]
        for target in targets:
            try:
                versions[target.name] = self.p.fleet.current_version(target)
            except PlatformError:
                if not tolerant:
                    raise
                versions[target.name] = None
        return versions

    def _result(self, targets: t.List[Target], status: str, **extra: t.Any) -> t.Dict[str, t.Any]:
        versions = self._versions(targets, tolerant=status == "failed")
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
        if not keep:
            return removed
        for target in targets:
            gone = self.p.fleet.prune(target, keep, protect, self.check_mode)
            if gone:
                removed[target.name] = gone
                if not self.check_mode:
                    self.actions.append({"target": target.name, "action": "prune", "removed": gone, "changed": True})
        return removed

    def _restore_weights(self, targets: t.List[Target], op: t.Dict[str, t.Any]) -> None:
        """After a rollback: every server back to its recorded normal weight (a crashed canary leaves others)."""
        normal = self.store.data.get("normal_weights") or {}
        for target in targets:
            weight = normal.get(target.name)
            if weight is not None:
                self._step(target, "set_weight", lambda tg=target, w=weight: self.p.router.set_weight(tg, w), weight=weight)

    def _finish_deploy(self, op: t.Dict[str, t.Any], status: str, version: str, targets: t.List[Target]) -> None:
        data = self.store.data
        froms = sort_versions(set(v for v in (op.get("from_versions") or {}).values() if v and v != version))
        if op.get("kind") == "deploy" and froms:
            data["previous_version"] = froms[-1]
        data["deployed_version"] = version
        data["strategy"] = op.get("strategy")
        self.store.finish(status, {"versions": self._versions(targets)})
