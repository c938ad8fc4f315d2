# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The audit log's hash chain and HMAC keys: canonical JSON, entry hash, entry and head MACs, key loading.

Split from ``_audit.py`` (the log file itself: append under a lock, verify, query) so each stays readable; the format
is described there. Standard library only.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

GENESIS = "0" * 64
KEY_ENV = "MESHOS_AUDIT_HMAC_KEY"
MIN_KEY_BYTES = 16
_ENTRY_CONTEXT = b"meshos-audit-entry-v1\n"
_HEAD_CONTEXT = b"meshos-audit-head-v1\n"


class AuditError(MeshosError):
    """Bad input or a log that cannot be appended to; the message is one line."""


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def canonical(entry):
    """Canonical JSON of an entry without its ``hash`` and ``mac`` fields."""
    body = dict((k, v) for k, v in entry.items() if k not in ("hash", "mac"))
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry):
    return hashlib.sha256(canonical(entry).encode("utf-8")).hexdigest()


def entry_mac(key, entry_hash_value):
    """HMAC-SHA256 of an entry's hash (the hash covers the content and ``prev_hash``, so the MAC covers both)."""
    return hmac.new(key, _ENTRY_CONTEXT + str(entry_hash_value).encode("utf-8"), hashlib.sha256).hexdigest()


def head_mac(key, seq, hash_value, keyed_from):
    message = _HEAD_CONTEXT + ("%s\n%s\n%s" % (seq, hash_value, keyed_from)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def load_key(key=None, key_file=None):
    """The HMAC key as bytes from a value or a file (file wins); None when neither is set.

    A key file's trailing newline is not part of the key (``echo secret > file`` and ``ansible-vault`` output both
    end in one). Keys shorter than ``MIN_KEY_BYTES`` are refused: a guessable key is no authentication.
    """
    source = None
    if key_file:
        try:
            with open(key_file, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise AuditError("HMAC key file %s cannot be read: %s" % (key_file, exc.strerror or exc))
        raw = raw.rstrip(b"\r\n")
        source = "HMAC key file %s" % key_file
    elif key is not None and key != "":
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        source = "HMAC key"
    else:
        return None
    if len(raw) < MIN_KEY_BYTES:
        # the length, never the key itself, goes into the message
        raise AuditError("%s is %d bytes long: use at least %d bytes (for example `openssl rand -hex 32`)"
                         % (source, len(raw), MIN_KEY_BYTES))
    return raw
