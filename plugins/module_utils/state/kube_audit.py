# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit log in the cluster: one immutable ConfigMap per entry, plus a head ConfigMap.

Entry N of log L is ConfigMap ``meshos-audit-<L>-<N, 8 digits>`` (``immutable: true``; key ``entry`` holds exactly the
JSON line the file log would hold), labelled ``meshos.release/audit-log=<L>``. Creating an entry's name is the append's
critical section: two runners that read the same tail both build entry N, the API server lets one create it, the other
gets 409 Conflict, re-reads the tail and appends N+1. ``meshos-audit-<L>-head`` holds the head record (seq, hash,
keyed_from, MAC), replaced only with the resourceVersion it was read at, so entries deleted off the end are detected
as with the file log. Verify, query and the HMAC rules are the file log's (``_audit.AuditLog``), over the same lines.

One object per entry rather than one growing ConfigMap: an entry can never be edited in place (immutable), a write
never rewrites history, and no object approaches the 1 MiB limit however long the log grows.
"""

from __future__ import annotations

import json
import time

from ansible_collections.meshos.release.plugins.module_utils._audit import AuditLog
from ansible_collections.meshos.release.plugins.module_utils._audit_chain import AuditError
from ansible_collections.meshos.release.plugins.module_utils.state.kube import PART_LABEL, Conflict, Missing, slug
from ansible_collections.meshos.release.plugins.module_utils.state.store import StateError

LOG_LABEL = "meshos.release/audit-log"
SEQ_LABEL = "meshos.release/audit-seq"
# how long an append waits for a concurrent runner's entry to get its head before giving up
CONTENTION_SECONDS = 15.0


def log_name(path):
    """The cluster log's name from the audit_log ``path`` option: its file name without the extension."""
    base = str(path or "audit").rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    return slug(base or "audit")


class ClusterAuditLog(AuditLog):
    """The audit log ``name`` as ConfigMaps in ``namespace`` (``calls``: state.kube.KubeCalls)."""

    def __init__(self, calls, namespace, name, key=None):
        self.calls = calls
        self.namespace = namespace
        self.name = slug(name)
        self.prefix = "meshos-audit-%s-" % self.name
        super().__init__("configmaps %s/%s*" % (namespace, self.prefix), key=key)
        self.head_path = "configmap %s/%shead" % (namespace, self.prefix)
        self._head_version = None

    def _call(self, what, func, *args, **kwargs):
        """A call with API errors as AuditError (Conflict passes: append handles it)."""
        try:
            return self.calls.call(what, func, *args, **kwargs)
        except Conflict:
            raise
        except StateError as exc:
            raise AuditError(str(exc))

    def _read(self, what, func, *args, **kwargs):
        """A read: None when the object is not there."""
        try:
            return self._call(what, func, *args, **kwargs)
        except AuditError as exc:
            if isinstance(exc.__context__, Missing):
                return None
            raise

    def _labels(self, role):
        return {PART_LABEL: "meshos-release", LOG_LABEL: self.name, "meshos.release/audit-role": role}

    # -- storage the file log's verify/query/_tail read through ----------------------------------
    def _lines(self):
        listed = self._read("list %s" % self.path, self.calls.core.list_namespaced_config_map, self.namespace,
                            label_selector="%s=%s,meshos.release/audit-role=entry" % (LOG_LABEL, self.name)) or {}
        found = []
        for obj in listed.get("items") or []:
            name = (obj.get("metadata") or {}).get("name") or ""
            number = name[len(self.prefix):]
            if name.startswith(self.prefix) and number.isdigit():
                found.append((int(number), (obj.get("data") or {}).get("entry") or ""))
        return [line for _number, line in sorted(found)]

    def _torn_tail(self):
        return False  # an object is written whole or not at all

    def _read_head(self):
        obj = self._read("read %s" % self.head_path, self.calls.core.read_namespaced_config_map,
                         self.prefix + "head", self.namespace)
        if obj is None:
            self._head_version = None
            return None
        self._head_version = (obj.get("metadata") or {}).get("resourceVersion")
        try:
            head = json.loads((obj.get("data") or {}).get("head") or "")
        except ValueError:
            return {"invalid": True}
        return head if isinstance(head, dict) else {"invalid": True}

    def _write_head(self, entry, keyed_from):
        name = self.prefix + "head"
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": self.namespace, "labels": self._labels("head")},
                "data": {"head": json.dumps(self.head_record(entry, keyed_from), sort_keys=True)}}
        what = "write %s" % self.head_path
        try:
            if self._head_version is None:
                self._call(what, self.calls.core.create_namespaced_config_map, self.namespace, body)
            else:
                body["metadata"]["resourceVersion"] = self._head_version
                self._call(what, self.calls.core.replace_namespaced_config_map, name, self.namespace, body)
        except Conflict as exc:
            raise AuditError("entry %d was written but %s: run verify" % (entry["seq"], exc))

    # -- appending ---------------------------------------------------------------------------
    def append(self, **fields):
        deadline = time.monotonic() + CONTENTION_SECONDS
        while True:
            try:
                entry, keyed_from, line = self._next_entry(fields)
            except AuditError:
                # a concurrent runner's entry whose head is not written yet looks like an unrecorded line: wait
                if time.monotonic() < deadline and self._contended:
                    time.sleep(0.2)
                    continue
                raise
            name = "%s%08d" % (self.prefix, entry["seq"])
            labels = dict(self._labels("entry"), **{SEQ_LABEL: str(entry["seq"])})
            body = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                    "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                    "data": {"entry": line}}
            try:
                self._call("create %s/%s" % (self.namespace, name), self.calls.core.create_namespaced_config_map,
                           self.namespace, body)
            except Conflict:
                self._contended = True
                if time.monotonic() >= deadline:
                    raise AuditError("cannot append to %s: entry %d kept being taken by other runners for %ss; "
                                     "nothing was written" % (self.path, entry["seq"], CONTENTION_SECONDS))
                continue
            self._write_head(entry, keyed_from)
            return entry

    _contended = False
