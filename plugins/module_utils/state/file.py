# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file backend of the state store: the files the collection has always written, so nothing migrates.

``DIR/<environment>.json`` holds one section, ``release`` (release_state's ``root``) or ``operation`` (the rollout
modules' ``state_dir``), ``DIR/<environment>.lock`` the lock. Every write is atomic (``_fsutil.write_atomic``: temp
file, fsync, rename, fsync of the directory) and happens under an ``fcntl`` lock on ``DIR/.<environment>.guard``, so
two processes on the machine holding the directory cannot both take the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils._fsutil import fsync_dir, write_atomic

# a key only the other section's file carries: one directory given as both root and state_dir is refused, not mixed
_FOREIGN_KEY = {"release": "history", "operation": "updated_at"}


class FileStateError(MeshosError):
    """A state or lock file that cannot be used; the store turns it into its StateError."""


class FileBackend:
    """Sections and the lock of each environment as files in one directory."""

    kind = "file"

    def __init__(self, root):
        if not root or not isinstance(root, str):
            raise FileStateError("state root must be a directory path, got %r" % (root,))
        self.root = root

    def where(self, environment, section):
        return os.path.join(self.root, environment + (".lock" if section == "lock" else ".json"))

    def ensure(self):
        os.makedirs(self.root, mode=0o750, exist_ok=True)

    @contextlib.contextmanager
    def guard(self, environment, create=True):
        """Exclusive ``fcntl`` lock on the environment's guard file (nothing when the directory is absent)."""
        if not os.path.isdir(self.root):
            if not create:
                yield
                return
            self.ensure()
        with open(os.path.join(self.root, "." + environment + ".guard"), "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_json(self, path, what):
        try:
            with open(path, "r", encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise FileStateError("%s %s is not valid JSON (%s)" % (what, path, exc))
        if not isinstance(data, dict):
            raise FileStateError("%s %s does not hold a JSON object" % (what, path))
        return data

    def read(self, environment, section):
        path = self.where(environment, section)
        data = self._read_json(path, "lock file" if section == "lock" else "state file")
        foreign = _FOREIGN_KEY.get(section)
        if data is not None and foreign in data:
            raise FileStateError("state file %s holds the %s section: give release_state's root and the rollout "
                                 "modules' state_dir different directories" % (
                                     path, "operation" if section == "release" else "release"))
        return data

    def write(self, environment, section, data):
        self.ensure()
        indent = 1 if section == "operation" else 2  # the layouts each file always had
        write_atomic(self.where(environment, section), json.dumps(data, sort_keys=True, indent=indent) + "\n")

    def delete(self, environment, section):
        try:
            os.unlink(self.where(environment, section))
        except FileNotFoundError:
            return
        fsync_dir(self.root)
