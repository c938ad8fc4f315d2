# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Per-environment release state and the environment lock.

``ROOT/<environment>.json`` holds the state (current_version, previous_version, strategy,
active_color, weight, step, ... any JSON values) and is replaced atomically (temp file,
fsync, rename, fsync of the directory). ``ROOT/<environment>.lock`` records who holds the
environment: holder, pid, host, since, ttl. Checking and taking the lock happens under an
``fcntl`` lock on ``ROOT/.<environment>.guard`` so two processes cannot both win.

A held lock is never taken over silently. A lock is stale when its pid is dead on this
host or it is older than its ttl; only a stale lock can be broken, and only with force.
Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import socket

from ansible_collections.meshos.release.plugins.module_utils._fsutil import fsync_dir, write_atomic
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_TTL = 4 * 3600


class StateError(MeshosError):
    """Bad input or an I/O problem; one-line message."""


class LockedError(StateError):
    """The environment is locked by someone else."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(dt):
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text):
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def pid_alive(pid):
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def playbook_pid():
    """The outermost ``ansible-playbook`` (or ansible-runner) ancestor on this host, or None."""
    found = None
    pid = os.getppid()
    for _dummy in range(64):
        if pid <= 1:
            break
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%d/stat" % pid, "r") as f:
                stat = f.read()
        except OSError:
            break
        if "ansible-playbook" in cmd or "ansible-runner" in cmd:
            found = pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def atomic_write_json(path, data):
    write_atomic(path, json.dumps(data, sort_keys=True, indent=2) + "\n")


class StateStore:
    def __init__(self, root):
        if not root:
            raise StateError("state root must be a directory path, got %r" % (root,))
        self.root = root

    def _check_env(self, environment):
        if not isinstance(environment, str) or not ENV_RE.match(environment):
            raise StateError("environment %r is not allowed: use letters, digits, '_', '.', '-' "
                             "(for example production)" % (environment,))

    def _ensure_root(self, create):
        if os.path.isdir(self.root):
            return
        if not create:
            raise StateError("state directory %s does not exist" % self.root)
        os.makedirs(self.root, mode=0o750, exist_ok=True)

    def state_path(self, environment):
        self._check_env(environment)
        return os.path.join(self.root, environment + ".json")

    def lock_path(self, environment):
        self._check_env(environment)
        return os.path.join(self.root, environment + ".lock")

    @contextlib.contextmanager
    def _guard(self, environment):
        path = os.path.join(self.root, "." + environment + ".guard")
        with open(path, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _read_json(path, what):
        try:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            raise StateError("%s %s is not valid JSON" % (what, path))
        if not isinstance(data, dict):
            raise StateError("%s %s does not hold a JSON object" % (what, path))
        return data

    # -- state -------------------------------------------------------------------------
    def get(self, environment):
        return self._read_json(self.state_path(environment), "state file") or {}

    def set(self, environment, values, replace=False, check_mode=False, now=None):
        """Merge (or replace with) ``values``; returns (changed, before, after)."""
        if not isinstance(values, dict):
            raise StateError("values %r is not allowed: use a dictionary" % (values,))
        path = self.state_path(environment)
        before = self.get(environment)
        after = dict(values) if replace else dict(before, **values)
        after["environment"] = environment
        compare_before = dict((k, v) for k, v in before.items() if k != "updated_at")
        compare_after = dict((k, v) for k, v in after.items() if k != "updated_at")
        if compare_before == compare_after:
            return False, before, before
        after["updated_at"] = _iso(now or utc_now())
        try:
            json.dumps(after)
        except (TypeError, ValueError) as exc:
            raise StateError("values cannot be stored as JSON: %s" % exc)
        if not check_mode:
            self._ensure_root(create=True)
            with self._guard(environment):
                atomic_write_json(path, after)
        return True, before, after

    # -- lock ---------------------------------------------------------------------------
    def read_lock(self, environment):
        return self._read_json(self.lock_path(environment), "lock file")

    def stale_reason(self, lock, now=None):
        """Why ``lock`` is stale, or None when it is live."""
        now = now or utc_now()
        since = _parse_iso(lock.get("since"))
        ttl = lock.get("ttl")
        if since is None:
            return "its start time %r cannot be read" % (lock.get("since"),)
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and (now - since).total_seconds() > ttl:
            return "it is older than its ttl of %ss" % ttl
        if lock.get("host") == socket.gethostname() and lock.get("pid") is not None and not pid_alive(lock.get("pid")):
            return "pid %s is not running on %s" % (lock.get("pid"), lock.get("host"))
        return None

    @staticmethod
    def describe(environment, lock):
        return "environment %s is locked by %s since %s (pid %s on %s)" % (
            environment, lock.get("holder"), lock.get("since"), lock.get("pid"), lock.get("host"))

    def lock(self, environment, holder, pid=None, ttl=DEFAULT_TTL, force=False, check_mode=False, now=None,
             reason=None):
        """Take the lock; returns (changed, before, after). Raises LockedError when held."""
        if not isinstance(holder, str) or not holder.strip():
            raise StateError("holder must be a non-empty string, got %r" % (holder,))
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise StateError("ttl %r is not allowed: use a positive number of seconds" % (ttl,))
        path = self.lock_path(environment)
        if not check_mode:
            self._ensure_root(create=True)
        now = now or utc_now()
        new = {"environment": environment, "holder": holder, "pid": pid, "host": socket.gethostname(),
               "since": _iso(now), "ttl": ttl, "reason": reason}
        guard = self._guard(environment) if os.path.isdir(self.root) else contextlib.nullcontext()
        with guard:
            current = self.read_lock(environment)
            if current is not None:
                if current.get("holder") == holder and current.get("pid") == pid \
                        and current.get("host") == new["host"]:
                    return False, current, current
                stale = self.stale_reason(current, now)
                if stale is None:
                    raise LockedError(self.describe(environment, current))
                if not force:
                    raise LockedError("%s; the lock is stale (%s): take it over with force" % (
                        self.describe(environment, current), stale))
                new["broke"] = {"holder": current.get("holder"), "since": current.get("since"),
                                "pid": current.get("pid"), "host": current.get("host"), "stale": stale}
            if not check_mode:
                atomic_write_json(path, new)
        return True, current, new

    def unlock(self, environment, holder, force=False, check_mode=False, now=None):
        """Release the lock held by ``holder``; returns (changed, before)."""
        path = self.lock_path(environment)
        if not os.path.isdir(self.root):
            return False, None
        with self._guard(environment):
            current = self.read_lock(environment)
            if current is None:
                return False, None
            if current.get("holder") != holder:
                stale = self.stale_reason(current, now)
                if stale is None:
                    raise LockedError("%s, not by %s: it cannot be released by another holder"
                                      % (self.describe(environment, current), holder))
                if not force:
                    raise LockedError("%s, not by %s; the lock is stale (%s): release it with force" % (
                        self.describe(environment, current), holder, stale))
            if not check_mode:
                os.unlink(path)
                fsync_dir(self.root)
        return True, current
