# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the SSH fleet runs ON an instance's host (standard library only, Python 3.9+).

``ssh_fleet.SshFleet`` ships this file, ``releases.py`` and the few modules it imports to the host's ``python3`` on
stdin (``ssh HOST python3 -``): the same release layout, manifest and atomic ``current`` switch as the hosts fleet, by
construction rather than by a second implementation. One request in, one result line out (``RESULT_MARK`` + JSON).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import typing as t
import urllib.parse

from ansible_collections.meshos.release.plugins.module_utils.platform import releases
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    InstallError,
    PlatformError,
    PlatformTimeoutError,
)

RESULT_MARK = "MESHOS-SSH-RESULT "


def _current(root: str) -> t.Optional[str]:
    link = os.path.join(root, "current")
    return os.path.basename(os.path.normpath(os.readlink(link))) if os.path.islink(link) else None


def _installed(root: str) -> t.List[str]:
    base = os.path.join(root, "releases")
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    return releases.sort_versions(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(base, n)))


def _http(url: str, timeout: float = 2.0) -> t.Tuple[int, bytes]:
    """(status, body) of GET URL, 0 when nothing answers (plain http.client: only the standard library is here)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("invalid URL %r: expected http(s)://host[:port]/path" % url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + ("?" + parts.query if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def _intact(root: str, version: str, artifact_sha256: str) -> bool:
    """Is releases/VERSION installed, intact and made from this artifact? (then no copy is needed)"""
    state = releases.verify_release(root, version)
    if not state["ok"]:
        return False
    try:
        with open(os.path.join(root, "releases", version, releases.MANIFEST)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return False
    return manifest.get("artifact_sha256") in (None, artifact_sha256)


def handle(req: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
    """One operation on one host's release root."""
    op, root = req["op"], req["root"]
    version = req.get("version")
    if op == "state":
        return {"current": _current(root), "installed": _installed(root)}
    if op == "verify":
        return {"report": releases.verify_release(root, version)}
    if op == "stage":
        # before a copy: already there (idempotent install), else where the controller copies the artifact to
        releases.check_version(version)
        if _intact(root, version, req["artifact_sha256"]):
            return {"installed": True}
        base = os.path.join(root, "releases")
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as exc:
            raise InstallError("cannot create %s: %s" % (base, exc.strerror or exc))
        return {"installed": False, "incoming": os.path.join(base, ".incoming-%s-%s.tar.gz"
                                                             % (version, req["artifact_sha256"][:16]))}
    if op == "install":
        incoming = req.get("artifact")
        if not incoming:
            # no artifact: already installed and intact (False), damaged (ChecksumError) or missing (not installed)
            return {"changed": releases.install_release(root, version, None, req.get("checksum"))}
        if not os.path.basename(incoming).startswith(".incoming-"):
            raise ConfigError("refusing to install from %s: not a staged artifact" % incoming)
        try:
            return {"changed": releases.install_release(root, version, incoming, req["checksum"])}
        finally:
            try:
                os.unlink(incoming)
            except OSError:
                pass
    if op == "discard":
        try:
            os.unlink(req["artifact"])
        except OSError:
            pass
        return {}
    if op == "prune":
        return {"removed": releases.prune_releases(root, req["keep"], req.get("protect") or (), req.get("check_mode"))}
    if op == "remove":
        return {"changed": releases.remove_release(root, version)}
    if op == "activate":
        available = _installed(root)
        if version not in available:
            return {"installed": False, "available": available, "changed": False}
        return {"installed": True, "changed": releases.switch_current(root, version)}
    if op == "switch":
        return {"changed": releases.switch_current(root, version)}
    if op == "running":
        code, body = _http(req["url"])
        if code != 200:
            return {"version": None}
        try:
            return {"version": str(json.loads(body.decode()).get("version"))}
        except (ValueError, AttributeError):
            return {"version": None}
    if op == "wait_ready":
        deadline = time.monotonic() + float(req["timeout"])
        while True:
            code, _body = _http(req["url"])
            if code == 200:
                return {"ready": True}
            if time.monotonic() >= deadline:
                raise PlatformTimeoutError("%s is not ready: GET %s gave %s, not 200, within %ss"
                                           % (req["name"], req["url"], code or "no answer", req["timeout"]))
            time.sleep(float(req.get("interval") or 0.2))
    raise ConfigError("unknown remote operation %r" % op)


def main(raw: str) -> str:
    """The result line for one JSON request; a PlatformError or OSError becomes {failed, error, msg}."""
    try:
        result = handle(json.loads(raw))
        result["failed"] = False
    except PlatformError as exc:
        result = {"failed": True, "error": type(exc).__name__, "msg": str(exc)}
    except OSError as exc:
        result = {"failed": True, "error": "InstallError", "msg": "%s: %s" % (exc.filename or "", exc.strerror or exc)}
    return RESULT_MARK + json.dumps(result, sort_keys=True)
