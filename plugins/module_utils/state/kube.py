# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes backend of the state store: every runner that reaches the cluster sees the same state and lock.

* ConfigMap ``meshos-state-<env>`` holds the sections as JSON under the keys ``release`` and ``operation``; a section
  is written with a JSON merge patch of its own key, so release_state and a rollout never overwrite each other.
* Lease ``meshos-lock-<env>`` (``coordination.k8s.io/v1``) is the lock: holderIdentity, acquireTime, renewTime and
  leaseDurationSeconds (the ttl) as any Lease reader expects, plus the whole lock record (pid, host, reason, what it
  broke) in the annotation ``meshos.release/lock``. Taking, breaking and releasing the lock are conditional on the
  Lease's resourceVersion (create fails when it exists, replace and delete when it changed): the API server is the
  critical section, as ``fcntl`` is for the file backend.

``<env>`` is the environment when it is already a DNS label, else its lower-cased form plus 8 hex of its sha256 (so
``Prod`` and ``prod`` stay apart); the exact name is in the label ``meshos.release/environment`` and annotation.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re

from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import ApiException, _api_error
from ansible_collections.meshos.release.plugins.module_utils.state.store import LockedError, StateError, iso, parse_iso

try:
    from kubernetes import client as _k8s_client
except ImportError:  # pragma: no cover - the module reports missing_required_lib first
    _k8s_client = None

LOCK_ANNOTATION = "meshos.release/lock"
ENV_LABEL = "meshos.release/environment"
PART_LABEL = "app.kubernetes.io/part-of"
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")


class Conflict(StateError):
    """The object changed (or appeared) between our read and our write."""


class Missing(StateError):
    """The object (or its namespace) does not exist."""


def slug(name):
    """A DNS-label form of ``name`` for object names: itself when it is one, else lower-cased plus a short hash."""
    if _LABEL_RE.match(name):
        return name
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40] or "x"
    return "%s-%s" % (cleaned, hashlib.sha256(name.encode("utf-8")).hexdigest()[:8])


def _micro_time(text):
    """RFC 3339 with microseconds, as Lease's MicroTime fields want.

    The Python client re-serializes time strings through ``datetime.isoformat()``, which drops a zero fraction, and
    the API server refuses a MicroTime without one: the fraction is kept non-zero (1 microsecond)."""
    parsed = parse_iso(text) or datetime.datetime.now(datetime.timezone.utc)
    parsed = parsed.astimezone(datetime.timezone.utc)
    if not parsed.microsecond:
        parsed = parsed.replace(microsecond=1)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeCalls:
    """The official client's core/v1 and coordination/v1 calls as plain dicts; 404 -> Missing, 409 -> Conflict, every
    other API error a one-line StateError (the same wording as the kubernetes platform)."""

    def __init__(self, kube_client):
        self.api_client = kube_client.api_client
        self.core = _k8s_client.CoreV1Api(self.api_client)
        self.coordination = _k8s_client.CoordinationV1Api(self.api_client)

    def read(self, what, func, *args, **kwargs):
        """A call whose 404 means "not there": None."""
        try:
            return self.call(what, func, *args, **kwargs)
        except Missing:
            return None

    def call(self, what, func, *args, **kwargs):
        try:
            obj = func(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise Missing(str(_api_error(what, exc)))
            if exc.status == 409:
                raise Conflict("%s: changed by another runner meanwhile (409 Conflict)" % what)
            raise StateError(str(_api_error(what, exc)))
        except (OSError, ValueError) as exc:
            raise StateError("Kubernetes API unreachable on %s: %s" % (what, str(exc).splitlines()[0] if str(exc)
                                                                       else exc))
        return self.api_client.sanitize_for_serialization(obj)


class KubernetesBackend:
    """Sections in a ConfigMap, the lock in a Lease, per environment, in one namespace."""

    kind = "kubernetes"

    def __init__(self, calls, namespace):
        self.calls = calls
        self.namespace = namespace
        self._lease_versions = {}

    def state_name(self, environment):
        return "meshos-state-" + slug(environment)

    def lease_name(self, environment):
        return "meshos-lock-" + slug(environment)

    def where(self, environment, section):
        if section == "lock":
            return "lease %s/%s" % (self.namespace, self.lease_name(environment))
        return "configmap %s/%s key %s" % (self.namespace, self.state_name(environment), section)

    def _meta(self, environment, name):
        return {"name": name, "namespace": self.namespace,
                "labels": {PART_LABEL: "meshos-release", ENV_LABEL: slug(environment)},
                "annotations": {ENV_LABEL: environment}}

    @contextlib.contextmanager
    def guard(self, environment, create=True):
        # the API server serializes: lock writes carry the Lease's resourceVersion (see write/delete)
        yield

    # -- sections --------------------------------------------------------------------------
    def read(self, environment, section):
        if section == "lock":
            return self._read_lock(environment)
        name = self.state_name(environment)
        obj = self.calls.read("read configmap %s/%s" % (self.namespace, name),
                              self.calls.core.read_namespaced_config_map, name, self.namespace)
        text = ((obj or {}).get("data") or {}).get(section)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise StateError("%s is not valid JSON" % self.where(environment, section))
        if not isinstance(data, dict):
            raise StateError("%s does not hold a JSON object" % self.where(environment, section))
        return data

    def write(self, environment, section, data):
        if section == "lock":
            return self._write_lock(environment, data)
        name = self.state_name(environment)
        text = json.dumps(data, sort_keys=True)
        what = "write %s" % self.where(environment, section)
        patched = self.calls.read(what, self.calls.core.patch_namespaced_config_map, name, self.namespace,
                                  {"data": {section: text}}, _content_type="application/merge-patch+json")
        if patched is None:  # not there yet
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self._meta(environment, name),
                    "data": {section: text}}
            try:
                self.calls.call(what, self.calls.core.create_namespaced_config_map, self.namespace, body)
            except Conflict:  # another runner created it first: patch our key into theirs
                self.calls.call(what, self.calls.core.patch_namespaced_config_map, name, self.namespace,
                                {"data": {section: text}}, _content_type="application/merge-patch+json")
        return None

    def delete(self, environment, section):
        if section != "lock":
            raise StateError("only the lock is ever deleted, not the %s section" % section)
        name = self.lease_name(environment)
        version = self._lease_versions.get(environment)
        options = {"preconditions": {"resourceVersion": version}} if version else {}
        self.calls.read("delete %s" % self.where(environment, "lock"), self.calls.coordination.delete_namespaced_lease,
                        name, self.namespace, body=options)
        self._lease_versions.pop(environment, None)

    # -- the Lease -------------------------------------------------------------------------
    def _read_lock(self, environment):
        name = self.lease_name(environment)
        obj = self.calls.read("read %s" % self.where(environment, "lock"),
                              self.calls.coordination.read_namespaced_lease, name, self.namespace)
        if obj is None:
            self._lease_versions.pop(environment, None)
            return None
        meta = obj.get("metadata") or {}
        self._lease_versions[environment] = meta.get("resourceVersion")
        spec = obj.get("spec") or {}
        if not spec.get("holderIdentity"):
            return None  # a released Lease (holder cleared by another tool) is free
        try:
            record = json.loads((meta.get("annotations") or {}).get(LOCK_ANNOTATION) or "{}")
        except ValueError:
            record = {}
        lock = {"environment": environment, "pid": None, "host": None, "reason": None}
        lock.update(record if isinstance(record, dict) else {})
        # the Lease's own fields win: they are what other Lease readers see and change
        lock["holder"] = spec.get("holderIdentity")
        if lock.get("since") is None:
            since = parse_iso(spec.get("acquireTime") or spec.get("renewTime") or "")
            lock["since"] = iso(since.replace(microsecond=0)) if since else None
        if spec.get("leaseDurationSeconds") is not None:
            lock["ttl"] = spec.get("leaseDurationSeconds")
        return lock

    def _write_lock(self, environment, lock):
        name = self.lease_name(environment)
        meta = self._meta(environment, name)
        meta["annotations"][LOCK_ANNOTATION] = json.dumps(lock, sort_keys=True)
        spec = {"holderIdentity": lock["holder"], "leaseDurationSeconds": lock["ttl"],
                "acquireTime": _micro_time(lock["since"]), "renewTime": _micro_time(lock["since"])}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}
        version = self._lease_versions.get(environment)
        what = "take %s" % self.where(environment, "lock")
        try:
            if version is None:
                self.calls.call(what, self.calls.coordination.create_namespaced_lease, self.namespace, body)
            else:
                meta["resourceVersion"] = version
                self.calls.call(what, self.calls.coordination.replace_namespaced_lease, name, self.namespace, body)
        except Conflict:
            current = self._read_lock(environment)
            raise LockedError("environment %s was locked by %s (since %s) while this runner took the lock: run again"
                              % (environment, (current or {}).get("holder"), (current or {}).get("since")))
