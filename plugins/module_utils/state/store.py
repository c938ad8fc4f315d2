# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state store: one environment's release section, operation section and lock, on one backend.

* ``release``: what release_state reads and writes (current_version, previous_version, strategy, in_progress, ...);
  ``set`` merges or replaces and reports (changed, before, after), ``updated_at`` is not a change.
* ``operation``: what the rollout modules keep while they run (the operation in progress, the last one, a history of
  ``HISTORY``, deployed/previous version, active color, normal weights); saved before and after every step so a
  re-run resumes.
* ``lock``: who holds the environment (holder, pid, host, since, ttl, reason). A held lock is never taken over
  silently: a lock is stale when its pid is dead on this host or it is older than its ttl, and only a stale lock can
  be broken, with force.

Backends (``file.FileBackend``, ``kube.KubernetesBackend``) store sections as JSON objects and offer ``guard`` (the
critical section of a lock change: ``fcntl`` for files, the object's resourceVersion for the cluster); ``backend.build``
picks one from module options.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import socket
import time

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils.state.file import FileBackend

ENV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_TTL = 4 * 3600
HISTORY = 20


class StateError(MeshosError):
    """Bad input or a store that cannot be read or written; one-line message."""


class LockedError(StateError):
    """The environment is locked by someone else."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text):
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def stamp():
    """The operation section's time stamps (second resolution, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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


def check_environment(environment):
    if not isinstance(environment, str) or not ENV_RE.match(environment):
        raise StateError("environment %r is not allowed: use letters, digits, '_', '.', '-' "
                         "(for example production)" % (environment,))
    return environment


class StateStore:
    """One environment's state on ``backend`` (a backend object, or a directory path for the file backend)."""

    def __init__(self, backend, environment, check_mode=False):
        self.environment = check_environment(environment)
        self.backend = FileBackend(backend) if isinstance(backend, str) else backend
        self.check_mode = check_mode
        self._data = None

    def _call(self, func, *args):
        """A backend call with its errors as StateError (the backends' own errors carry the one-line reason)."""
        try:
            return func(*args)
        except StateError:
            raise
        except MeshosError as exc:
            raise StateError(str(exc))

    def where(self, section):
        return self.backend.where(self.environment, section)

    # -- release section ------------------------------------------------------------------
    def get(self):
        return self._call(self.backend.read, self.environment, "release") or {}

    def set(self, values, replace=False, now=None):
        """Merge (or replace with) ``values``; returns (changed, before, after)."""
        if not isinstance(values, dict):
            raise StateError("values %r is not allowed: use a dictionary" % (values,))
        before = self.get()
        after = dict(values) if replace else dict(before, **values)
        after["environment"] = self.environment
        if dict((k, v) for k, v in before.items() if k != "updated_at") == \
                dict((k, v) for k, v in after.items() if k != "updated_at"):
            return False, before, before
        after["updated_at"] = iso(now or utc_now())
        try:
            json.dumps(after)
        except (TypeError, ValueError) as exc:
            raise StateError("values cannot be stored as JSON: %s" % exc)
        if not self.check_mode:
            with self.backend.guard(self.environment):
                self._call(self.backend.write, self.environment, "release", after)
        return True, before, after

    # -- lock -----------------------------------------------------------------------------
    def read_lock(self):
        return self._call(self.backend.read, self.environment, "lock")

    @staticmethod
    def stale_reason(lock, now=None):
        """Why ``lock`` is stale, or None when it is live."""
        now = now or utc_now()
        since = parse_iso(lock.get("since"))
        ttl = lock.get("ttl")
        if since is None:
            return "its start time %r cannot be read" % (lock.get("since"),)
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and (now - since).total_seconds() > ttl:
            return "it is older than its ttl of %ss" % ttl
        if lock.get("host") == socket.gethostname() and lock.get("pid") is not None and not pid_alive(lock.get("pid")):
            return "pid %s is not running on %s" % (lock.get("pid"), lock.get("host"))
        return None

    def describe(self, lock):
        return "environment %s is locked by %s since %s (pid %s on %s)" % (
            self.environment, lock.get("holder"), lock.get("since"), lock.get("pid"), lock.get("host"))

    def lock(self, holder, pid=None, ttl=DEFAULT_TTL, force=False, now=None, reason=None):
        """Take the lock; returns (changed, before, after). Raises LockedError when held."""
        if not isinstance(holder, str) or not holder.strip():
            raise StateError("holder must be a non-empty string, got %r" % (holder,))
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise StateError("ttl %r is not allowed: use a positive number of seconds" % (ttl,))
        now = now or utc_now()
        new = {"environment": self.environment, "holder": holder, "pid": pid, "host": socket.gethostname(),
               "since": iso(now), "ttl": ttl, "reason": reason}
        with self.backend.guard(self.environment, create=not self.check_mode):
            current = self.read_lock()
            if current is not None:
                if current.get("holder") == holder and current.get("pid") == pid \
                        and current.get("host") == new["host"]:
                    return False, current, current
                stale = self.stale_reason(current, now)
                if stale is None:
                    raise LockedError(self.describe(current))
                if not force:
                    raise LockedError("%s; the lock is stale (%s): take it over with force" % (
                        self.describe(current), stale))
                new["broke"] = {"holder": current.get("holder"), "since": current.get("since"),
                                "pid": current.get("pid"), "host": current.get("host"), "stale": stale}
            if not self.check_mode:
                self._call(self.backend.write, self.environment, "lock", new)
        return True, current, new

    def unlock(self, holder, force=False, now=None):
        """Release the lock held by ``holder``; returns (changed, before)."""
        with self.backend.guard(self.environment, create=False):
            current = self.read_lock()
            if current is None:
                return False, None
            if current.get("holder") != holder:
                stale = self.stale_reason(current, now)
                if stale is None:
                    raise LockedError("%s, not by %s: it cannot be released by another holder"
                                      % (self.describe(current), holder))
                if not force:
                    raise LockedError("%s, not by %s; the lock is stale (%s): release it with force" % (
                        self.describe(current), holder, stale))
            if not self.check_mode:
                self._call(self.backend.delete, self.environment, "lock")
        return True, current

    # -- operation section ----------------------------------------------------------------
    @property
    def path(self):
        """Where the operation section lives (a file path, or the cluster object), for results and messages."""
        return self.where("operation")

    @property
    def data(self):
        if self._data is None:
            data = self._call(self.backend.read, self.environment, "operation") or {}
            data.setdefault("environment", self.environment)
            data.setdefault("history", [])
            self._data = data
        return self._data

    def save(self):
        if self.check_mode:
            return
        self.data["updated"] = stamp()
        self._call(self.backend.write, self.environment, "operation", self.data)

    @property
    def operation(self):
        return self.data.get("operation")

    def begin(self, kind, strategy, version, targets, extra):
        """Start an operation, or resume the same one left in progress."""
        op = self.operation
        if op and op.get("status") == "in_progress" and op.get("kind") == kind and op.get("strategy") == strategy \
                and op.get("version") == version:
            op["resumed"] = op.get("resumed", 0) + 1
            return op
        op = {"kind": kind, "strategy": strategy, "version": version, "status": "in_progress", "started": stamp(),
              "from_versions": dict((tg.name, tg.version) for tg in targets), "done": [], "pending": [],
              "steps": [], "resumed": 0}
        op.update(extra)
        self.data["operation"] = op
        self.save()
        return op

    def finish(self, status, summary):
        op = self.operation or {}
        op["status"] = status
        op["finished"] = stamp()
        entry = {"kind": op.get("kind"), "strategy": op.get("strategy"), "version": op.get("version"),
                 "status": status, "started": op.get("started"), "finished": op["finished"]}
        entry.update(summary)
        self.data["last_operation"] = entry
        self.data["history"] = (self.data.get("history") or [])[-(HISTORY - 1):] + [entry]
        self.save()
