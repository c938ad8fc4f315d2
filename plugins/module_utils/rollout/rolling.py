# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling strategy.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.releases import check_version
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import parse_batch_size


class RollingMixin:
    """Rolling: batches drained, updated and re-enabled one after another."""

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
                # a host left pending by an interrupted run is restarted even when `current` already names VERSION
                forced = set(op.get("pending", []))
                # at least one server stays in traffic even when the batch is the whole fleet (batch_size 100%)
                self._each(batch, lambda tg: self._update_target(tg, version, None, checksum, force=tg.name in forced),
                           limit=max(1, len(targets) - 1))
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
