# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Append-only, hash-chained audit log of release actions (JSON lines).

Every line is one JSON object with the fields in ``FIELDS``. ``hash`` is the
SHA-256 of the canonical JSON (sorted keys, no whitespace) of the entry without
its ``hash`` key, and ``prev_hash`` is the previous line's ``hash`` (``GENESIS``
for the first line). Editing, removing, reordering or inserting a line breaks
the chain. A small head file (``<path>.head``) records the last ``seq`` and
``hash`` so that cutting lines off the end is detected too.

Appends hold an exclusive ``fcntl`` lock on ``<path>.lock``. Standard library only.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import re

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "actor", "action", "version", "environment", "strategy", "result",
          "duration", "details", "prev_hash", "hash")
RESULTS = ("success", "failure", "rolled_back", "started", "aborted", "skipped", "info")
ACTION_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class AuditError(Exception):
    """Bad input or a log that cannot be appended to; the message is one line."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def canonical(entry):
    """Canonical JSON of an entry without its ``hash`` field."""
    body = dict((k, v) for k, v in entry.items() if k != "hash")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry):
    return hashlib.sha256(canonical(entry).encode("utf-8")).hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_fields(actor, action, result, duration, details):
    if not isinstance(actor, str) or not actor.strip():
        raise AuditError("actor must be a non-empty string, got %r" % (actor,))
    if not isinstance(action, str) or not ACTION_RE.match(action):
        raise AuditError("action %r is not allowed: use lower-case letters, digits, '_', '.', '-' "
                         "(for example deploy, rollback, incident)" % (action,))
    if result not in RESULTS:
        raise AuditError("result %r is not allowed: use one of %s" % (result, ", ".join(RESULTS)))
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise AuditError("duration %r is not allowed: use a number of seconds >= 0" % (duration,))
    if details is not None and not isinstance(details, dict):
        raise AuditError("details %r is not allowed: use a dictionary" % (details,))


class AuditLog:
    """One audit log file plus its head and lock files."""

    def __init__(self, path):
        if not path:
            raise AuditError("path must be a file path, got %r" % (path,))
        self.path = path
        self.head_path = path + ".head"
        self.lock_path = path + ".lock"

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
        else:
            # last line without newline: a torn write or a truncation; keep it so verify reports it
            pass
        return lines

    def _read_head(self):
        try:
            with open(self.head_path, "r", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            return {"invalid": True}

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
        """Check the whole chain. Returns a dict; ``first_bad_line`` is 1-based or None."""
        lines = self._lines()
        prev = GENESIS
        count = 0
        last = None

        def bad(number, why):
            return {"valid": False, "entries": count, "first_bad_line": number,
                    "error": "%s line %d: %s" % (self.path, number, why), "last_hash": prev}

        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                return bad(number, "not valid JSON (edited or truncated)")
            if not isinstance(entry, dict) or set(entry) != set(FIELDS):
                return bad(number, "fields are not exactly %s" % ", ".join(FIELDS))
            if entry["seq"] != number:
                return bad(number, "seq is %r, expected %d (line removed, inserted or reordered)"
                           % (entry["seq"], number))
            if entry["prev_hash"] != prev:
                return bad(number, "prev_hash does not match the hash of line %d "
                           "(line removed, inserted or reordered)" % (number - 1))
            if entry_hash(entry) != entry["hash"]:
                return bad(number, "hash does not match the content (entry edited)")
            prev = entry["hash"]
            count = number
            last = entry
        head = self._read_head()
        if head is None:
            if count and require_head:
                return {"valid": False, "entries": count, "first_bad_line": None, "last_hash": prev,
                        "error": "%s is missing (cannot detect lines cut off the end)" % self.head_path}
        else:
            head_seq = head.get("seq")
            last_hash = last["hash"] if last else GENESIS
            if head.get("invalid") or not isinstance(head_seq, int) or head_seq < 0:
                number, why = max(count, 1), "the head file %s is not valid" % self.head_path
            elif head_seq > count:
                number, why = count + 1, "missing: the head file records %d entries (lines cut off the end)" % head_seq
            elif head_seq < count:
                number, why = head_seq + 1, "not recorded in the head file (line appended without the log's lock)"
            elif head.get("hash") != last_hash:
                number, why = max(count, 1), "hash differs from the head file (entries replaced)"
            else:
                number = None
            if number is not None:
                return bad(number, why)
        return {"valid": True, "entries": count, "first_bad_line": None, "error": None, "last_hash": prev}

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
        return entry

    def _last_entry(self):
        lines = self._lines()
        if not lines:
            return None
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                raise AuditError("%s line %d has no line end (torn write or truncation): refusing to extend a "
                                 "damaged log (run verify)" % (self.path, len(lines)))
        try:
            entry = json.loads(lines[-1])
        except ValueError:
            raise AuditError("%s line %d is not valid JSON: refusing to extend a damaged log (run verify)"
                             % (self.path, len(lines)))
        if not isinstance(entry, dict) or entry.get("seq") != len(lines) or entry_hash(entry) != entry.get("hash"):
            raise AuditError("%s line %d does not verify: refusing to extend a damaged log (run verify)"
                             % (self.path, len(lines)))
        return entry

    def preview(self, **fields):
        """The entry ``append`` would write, without writing (check mode)."""
        return self.build_entry(self._last_entry(), **fields)

    def append(self, **fields):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise AuditError("directory %s of the audit log does not exist" % directory)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                entry = self.build_entry(self._last_entry(), **fields)
                line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._write_head(entry)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        return entry

    def _write_head(self, entry):
        tmp = "%s.tmp.%d" % (self.head_path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"seq": entry["seq"], "hash": entry["hash"]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)
        _fsync_dir(self.head_path)
