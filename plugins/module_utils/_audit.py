# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Append-only, hash-chained audit log of release actions (JSON lines), optionally authenticated with an HMAC key.

Every line is one JSON object with the fields in ``FIELDS`` (plus ``mac`` in a keyed log). ``hash`` is the SHA-256
of the canonical JSON (sorted keys, no whitespace) of the entry without its ``hash`` and ``mac`` keys, and
``prev_hash`` is the previous line's ``hash`` (``GENESIS`` for the first line). Editing, removing, reordering or
inserting a line breaks the chain. A small head file (``<path>.head``) records the last ``seq`` and ``hash`` so
that cutting lines off the end is detected too.

The chain alone only detects careless edits: anyone who can write the file can recompute every hash. With a key,
each entry carries ``mac`` = HMAC-SHA256(key, hash) and the head file carries a MAC over (seq, hash, keyed_from), so
forged entries, rewritten history and a truncated log with a rewritten head file fail ``verify`` unless the forger
has the key. ``keyed_from`` is the first keyed entry (1: a key is introduced with a new log file, appending keyed
entries to an unkeyed log is refused because it would bless whatever was forged in it; ``verify`` still accepts an
unkeyed prefix, which the first keyed entry's ``prev_hash`` covers). What a key cannot detect: restoring an older,
genuine copy of both the log and its head file, or deleting both (keep a copy of the head elsewhere for that).

Appends hold an exclusive ``fcntl`` lock on ``<path>.lock`` and check the tail against the head file first, so a line
written without the lock is refused at the next append. A failed append is undone (the log is cut back to its old
length, the temporary head file removed) before the error is raised. Standard library only.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import math
import os
import re

from ansible_collections.meshos.release.plugins.module_utils._audit_chain import (
    GENESIS,
    KEY_ENV,
    AuditError,
    entry_hash,
    entry_mac,
    head_mac,
    utc_now,
)
from ansible_collections.meshos.release.plugins.module_utils._fsutil import write_atomic

FIELDS = ("seq", "ts", "actor", "action", "version", "environment", "strategy", "result",
          "duration", "details", "prev_hash", "hash")
KEYED_FIELDS = FIELDS + ("mac",)
RESULTS = ("success", "failure", "rolled_back", "started", "aborted", "skipped", "info")
ACTION_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def _os_reason(exc):
    if isinstance(exc, OSError) and exc.errno is not None:
        return "[Errno %d] %s" % (exc.errno, exc.strerror or os.strerror(exc.errno))
    return str(exc) or type(exc).__name__


def _check_fields(actor, action, result, duration, details):
    if not isinstance(actor, str) or not actor.strip():
        raise AuditError("actor must be a non-empty string, got %r" % (actor,))
    if not isinstance(action, str) or not ACTION_RE.match(action):
        raise AuditError("action %r is not allowed: use lower-case letters, digits, '_', '.', '-' "
                         "(for example deploy, rollback, incident)" % (action,))
    if result not in RESULTS:
        raise AuditError("result %r is not allowed: use one of %s" % (result, ", ".join(RESULTS)))
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
                or duration < 0:
            raise AuditError("duration %r is not allowed: use a number of seconds >= 0" % (duration,))
    if details is not None and not isinstance(details, dict):
        raise AuditError("details %r is not allowed: use a dictionary" % (details,))


class AuditLog:
    """One audit log file plus its head and lock files; ``key`` (bytes) turns on HMAC authentication."""

    def __init__(self, path, key=None):
        if not path:
            raise AuditError("path must be a file path, got %r" % (path,))
        if key is not None and (not isinstance(key, bytes) or not key):
            raise AuditError("the HMAC key must be non-empty bytes")
        self.path = path
        self.head_path = path + ".head"
        self.lock_path = path + ".lock"
        self.key = key

    # -- reading -------------------------------------------------------------------
    def _lines(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        text = data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        # a last line without newline (torn write or truncation) is kept so that verify reports it
        return lines

    def _read_head(self):
        try:
            with open(self.head_path, "r", encoding="utf-8") as f:
                head = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            return {"invalid": True}
        return head if isinstance(head, dict) else {"invalid": True}

    def _head_problem(self, head, count, last_hash):
        """(line number, reason) when the head file does not match the log's ``count`` lines ending in
        ``last_hash``, else None. Checks the head's MAC with a key, and that a keyed head is not used without one."""
        head_seq = head.get("seq")
        keyed_from = head.get("keyed_from")
        if head.get("invalid") or not isinstance(head_seq, int) or isinstance(head_seq, bool) or head_seq < 0 \
                or (keyed_from is not None and (not isinstance(keyed_from, int) or keyed_from < 1)):
            return max(count, 1), "the head file %s is not valid" % self.head_path
        if head_seq > count:
            return count + 1, "missing: the head file records %d entries (lines cut off the end)" % head_seq
        if head_seq < count:
            return head_seq + 1, "not recorded in the head file (line appended without the log's lock)"
        if head.get("hash") != last_hash:
            return max(count, 1), "hash differs from the head file (entries replaced)"
        if self.key is not None:
            if "mac" not in head:
                return max(count, 1), ("the head file %s carries no MAC: the log was not written with this key "
                                       "(or the head was rewritten)" % self.head_path)
            expected = head_mac(self.key, head_seq, head.get("hash"), keyed_from)
            if not isinstance(head.get("mac"), str) or not hmac.compare_digest(expected, head["mac"]):
                return max(count, 1), ("the head file's MAC does not match the key (forged or rewritten head, "
                                       "or a different key)")
        return None

    def entries(self):
        """Parsed entries; raises AuditError on the first line that is not JSON."""
        out = []
        for number, line in enumerate(self._lines(), 1):
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AuditError("%s line %d is not valid JSON" % (self.path, number))
        return out

    def verify(self, require_head=True):
        """Check the whole chain (and the MACs with a key). Returns a dict; ``first_bad_line`` is 1-based or None.

        ``authenticated`` is True only when a key was given and every keyed entry and the head verified; ``keyed``
        tells whether the log carries MACs at all.
        """
        lines = self._lines()
        head = self._read_head()
        keyed_from = head.get("keyed_from") if isinstance(head, dict) else None
        if not isinstance(keyed_from, int) or isinstance(keyed_from, bool):
            keyed_from = None
        state = {"prev": GENESIS, "count": 0, "keyed": keyed_from is not None}

        def report(valid, number=None, why=None, error=None):
            return {"valid": valid, "entries": state["count"], "first_bad_line": number,
                    "error": error if error is not None else (
                        None if why is None else "%s line %d: %s" % (self.path, number, why)),
                    "last_hash": state["prev"], "keyed": state["keyed"],
                    "authenticated": bool(valid and self.key is not None)}

        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                return report(False, number, "not valid JSON (edited or truncated)")
            if not isinstance(entry, dict) or set(entry) not in (set(FIELDS), set(KEYED_FIELDS)):
                return report(False, number, "fields are not exactly %s (and mac in a keyed log)" % ", ".join(FIELDS))
            if entry["seq"] != number:
                return report(False, number, "seq is %r, expected %d (line removed, inserted or reordered)"
                              % (entry["seq"], number))
            if entry["prev_hash"] != state["prev"]:
                return report(False, number, "prev_hash does not match the hash of line %d "
                              "(line removed, inserted or reordered)" % (number - 1))
            if entry_hash(entry) != entry["hash"]:
                return report(False, number, "hash does not match the content (entry edited)")
            if "mac" in entry:
                state["keyed"] = True
            if self.key is not None:
                if "mac" in entry:
                    if not isinstance(entry["mac"], str) or \
                            not hmac.compare_digest(entry_mac(self.key, entry["hash"]), entry["mac"]):
                        return report(False, number, "MAC does not match (entry forged or rewritten, or a different "
                                      "key)")
                elif keyed_from is None or number >= keyed_from:
                    return report(False, number, "entry has no MAC (forged or rewritten without the key, or the "
                                  "log was never appended to with this key)")
            state["prev"] = entry["hash"]
            state["count"] = number
        if head is None:
            if state["count"] and require_head:
                return report(False, error="%s is missing (cannot detect lines cut off the end)" % self.head_path)
            if self.key is not None and state["count"]:
                return report(False, error="%s is missing: without it the log's authenticity cannot be checked"
                              % self.head_path)
        else:
            problem = self._head_problem(head, state["count"], state["prev"])
            if problem is not None:
                return report(False, problem[0], problem[1])
        if state["keyed"] and self.key is None:
            # a keyed log read without its key: the chain is intact, but anyone could have recomputed it
            return report(False, error="%s carries HMACs but no key is configured: cannot verify its authenticity "
                          "(set hmac_key_file, hmac_key or %s)" % (self.path, KEY_ENV))
        return report(True)

    def query(self, environment=None, version=None, action=None, result=None):
        out = []
        for entry in self.entries():
            if environment is not None and entry.get("environment") != environment:
                continue
            if version is not None and entry.get("version") != version:
                continue
            if action is not None and entry.get("action") != action:
                continue
            if result is not None and entry.get("result") != result:
                continue
            out.append(entry)
        return out

    # -- writing -------------------------------------------------------------------
    def build_entry(self, prev_entry, actor, action, version=None, environment=None, strategy=None,
                    result="info", duration=None, details=None, ts=None):
        _check_fields(actor, action, result, duration, details)
        entry = {
            "seq": (prev_entry["seq"] + 1) if prev_entry else 1,
            "ts": ts or utc_now(),
            "actor": actor,
            "action": action,
            "version": version,
            "environment": environment,
            "strategy": strategy,
            "result": result,
            "duration": duration,
            "details": details or {},
            "prev_hash": prev_entry["hash"] if prev_entry else GENESIS,
        }
        try:
            entry["hash"] = entry_hash(entry)
        except (TypeError, ValueError) as exc:
            raise AuditError("details cannot be stored as JSON: %s" % exc)
        if self.key is not None:
            entry["mac"] = entry_mac(self.key, entry["hash"])
        return entry

    def _refuse(self, number, why):
        raise AuditError("%s line %d %s: refusing to extend a damaged log (run verify)" % (self.path, number, why))

    def _tail(self):
        """(last entry or None, head dict or None) after checking the last line and the head file against each
        other: a line written without the lock, lines cut off the end or a replaced head are refused here."""
        lines = self._lines()
        head = self._read_head()
        last = None
        if lines:
            if self._torn_tail():
                self._refuse(len(lines), "has no line end (torn write or truncation)")
            try:
                last = json.loads(lines[-1])
            except ValueError:
                self._refuse(len(lines), "is not valid JSON")
            if not isinstance(last, dict) or last.get("seq") != len(lines) or entry_hash(last) != last.get("hash"):
                self._refuse(len(lines), "does not verify")
            if head is None:
                self._refuse(len(lines), "is not covered by a head file (%s is missing)" % self.head_path)
        if head is not None:
            if self.key is not None and "mac" not in head and lines and \
                    not any(k in head for k in ("invalid", "keyed_from")) and "mac" not in last:
                # re-keying an unkeyed log would also bless whatever was forged in it before: start a new file
                raise AuditError("%s was written without an HMAC key: refusing to add keyed entries to it (start a "
                                 "new audit log file for the key, or keep appending without one)" % self.path)
            problem = self._head_problem(head, len(lines), last["hash"] if last else GENESIS)
            if problem is not None:
                self._refuse(problem[0], "does not match the head file: %s" % problem[1])
            keyed_from = head.get("keyed_from")
            if self.key is None and (keyed_from is not None or "mac" in head or (last and "mac" in last)):
                raise AuditError("%s is HMAC-keyed: configure its key (hmac_key_file, hmac_key or %s) to append; "
                                 "refusing to add an unauthenticated entry" % (self.path, KEY_ENV))
            if self.key is not None and last is not None and keyed_from is not None and last["seq"] >= keyed_from:
                if not isinstance(last.get("mac"), str) or \
                        not hmac.compare_digest(entry_mac(self.key, last["hash"]), last["mac"]):
                    self._refuse(len(lines), "has no valid MAC")
        return last, head

    def _torn_tail(self):
        """Whether the file's last line lacks its newline (a write cut short)."""
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    def _last_entry(self):
        return self._tail()[0]

    def preview(self, **fields):
        """The entry ``append`` would write, without writing (check mode); the same checks as ``append``."""
        return self.build_entry(self._last_entry(), **fields)

    def _next_entry(self, fields):
        """(entry, keyed_from, JSON line without newline) to append after the verified tail."""
        last, head = self._tail()
        entry = self.build_entry(last, **fields)
        keyed_from = head.get("keyed_from") if head else None
        if self.key is not None and keyed_from is None:
            keyed_from = entry["seq"]  # a new keyed log (an unkeyed one is refused in _tail)
        return entry, keyed_from, json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def append(self, **fields):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise AuditError("directory %s of the audit log does not exist" % directory)
        try:
            lock = open(self.lock_path, "a")
        except OSError as exc:
            raise AuditError("cannot open the lock file %s: %s; nothing was written"
                             % (self.lock_path, _os_reason(exc)))
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                entry, keyed_from, line = self._next_entry(fields)
                self._write_line((line + "\n").encode("utf-8"), entry, keyed_from)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        return entry

    def _write_line(self, data, entry, keyed_from):
        """Append one line and update the head, or leave both as they were and raise AuditError."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError("cannot open %s: %s; nothing was written" % (self.path, _os_reason(exc)))
        try:
            size = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    count = os.write(fd, data[written:])
                    if count <= 0:
                        raise OSError(28, os.strerror(28))
                    written += count
                os.fsync(fd)
                self._write_head(entry, keyed_from)
            except (OSError, AuditError) as exc:
                # undo: without the line the head still matches the log, so verify and the next append stay green
                try:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError as undo:
                    raise AuditError("cannot append entry %d to %s: %s; removing the partial line also failed (%s): "
                                     "run verify" % (entry["seq"], self.path, _os_reason(exc), _os_reason(undo)))
                raise AuditError("cannot append entry %d to %s: %s; nothing was written"
                                 % (entry["seq"], self.path, _os_reason(exc)))
        finally:
            os.close(fd)

    def head_record(self, entry, keyed_from):
        """The head after ``entry``: its seq and hash, where the keyed part starts, and the head's MAC with a key."""
        head = {"seq": entry["seq"], "hash": entry["hash"]}
        if keyed_from is not None:
            head["keyed_from"] = keyed_from
        if self.key is not None:
            head["mac"] = head_mac(self.key, entry["seq"], entry["hash"], keyed_from)
        return head

    def _write_head(self, entry, keyed_from):
        write_atomic(self.head_path, json.dumps(self.head_record(entry, keyed_from), sort_keys=True))
