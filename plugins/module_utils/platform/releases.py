# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release directories of one host instance (standard library only, Python 3.9+).

``release_root`` holds ``releases/<version>/`` and a ``current`` symlink. Installing unpacks an artifact (``.tar.gz``)
into a staging directory, writes ``.meshos-manifest.json`` (sha256 per file and of the artifact) and renames it into
place; ``switch_current`` moves ``current`` atomically (``_fsutil.switch_symlink``). Used by the hosts fleet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils._fsutil import sha256_file, switch_symlink
from ansible_collections.meshos.release.plugins.module_utils.release.semver import validate_version
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ChecksumError,
    ConfigError,
    InstallError,
    VersionNotInstalledError,
)

MANIFEST = ".meshos-manifest.json"


def _version_key(version: str) -> t.Tuple[t.Any, ...]:
    parts = re.split(r"[.+-]", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def sort_versions(versions: t.Iterable[str]) -> t.List[str]:
    return sorted(versions, key=_version_key)


def check_version(version: t.Any, what: str = "version") -> str:
    """The collection's one version rule (``_semver.validate_version``) as a ConfigError naming the value."""
    try:
        validate_version(version, what=what)
    except ValueError as exc:  # SemverError is a ValueError
        raise ConfigError(str(exc))
    return version


def normalize_checksum(checksum: t.Optional[str]) -> t.Optional[str]:
    if checksum is None or checksum == "":
        return None
    value = str(checksum).strip().lower()
    if value.startswith("sha256:"):
        value = value[7:]
    if not re.match(r"^[0-9a-f]{64}$", value):
        raise ConfigError("invalid checksum %r: expected a sha256 hex digest, optionally prefixed 'sha256:'"
                          % (checksum,))
    return value


def not_installed_msg(name: str, version: str, available: t.List[str]) -> str:
    return ("version %s is not installed on %s (available: %s) and no artifact was given"
            % (version, name, ", ".join(available) or "none"))


def switch_current(release_root: str, version: str) -> bool:
    """Point release_root/current at releases/VERSION atomically (temp symlink + rename). True when changed."""
    current = os.path.join(release_root, "current")
    target = os.path.join("releases", version)
    try:
        return switch_symlink(current, target)
    except FileExistsError:
        raise ConfigError("%s exists and is not a symlink: refusing to replace it" % current)
    except OSError as exc:
        raise InstallError("cannot switch %s to %s: %s" % (current, target, exc.strerror or exc))


def _read_manifest(release_dir: str) -> t.Optional[t.Dict[str, t.Any]]:
    try:
        with open(os.path.join(release_dir, MANIFEST)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _dir_files(release_dir: str) -> t.Dict[str, str]:
    files = {}
    for base, _dirs, names in os.walk(release_dir):
        for name in names:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, release_dir)
            if rel == MANIFEST:
                continue
            files[rel] = sha256_file(path)
    return files


def verify_release(release_root: str, version: str) -> t.Dict[str, t.Any]:
    """Is releases/VERSION intact? {version, present, manifest, ok, problems}."""
    release_dir = os.path.join(release_root, "releases", version)
    result = {"version": version, "path": release_dir, "present": os.path.isdir(release_dir), "manifest": False,
              "ok": False, "problems": []}  # type: t.Dict[str, t.Any]
    if not result["present"]:
        result["problems"].append("release directory %s is missing" % release_dir)
        return result
    manifest = _read_manifest(release_dir)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        result["problems"].append("manifest %s is missing or unreadable" % os.path.join(release_dir, MANIFEST))
        return result
    result["manifest"] = True
    actual = _dir_files(release_dir)
    expected = manifest["files"]
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            result["problems"].append("%s is missing" % name)
        elif name not in expected:
            result["problems"].append("%s is not in the manifest" % name)
        elif actual[name] != expected[name]:
            result["problems"].append("%s sha256 %s does not match the manifest" % (name, actual[name][:12]))
    result["ok"] = not result["problems"]
    return result


def _safe_members(tar: tarfile.TarFile, artifact: str) -> t.List[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = os.path.normpath(member.name)
        if member.isdir():
            continue
        if not member.isfile() or name.startswith("..") or os.path.isabs(name) or name == MANIFEST:
            raise ChecksumError("artifact %s holds unsafe member %r: only regular files inside the release"
                                % (artifact, member.name))
        members.append(member)
    return members


def install_release(release_root: str, version: str, artifact: t.Optional[str] = None,
                    checksum: t.Optional[str] = None) -> bool:
    """Unpack ARTIFACT into releases/VERSION with a manifest. Returns False when already installed and intact."""
    check_version(version)
    checksum = normalize_checksum(checksum)
    release_dir = os.path.join(release_root, "releases", version)
    artifact_sum = None
    if artifact:
        if not os.path.isfile(artifact):
            raise ConfigError("artifact %s does not exist" % artifact)
        artifact_sum = sha256_file(artifact)
        if checksum and artifact_sum != checksum:
            raise ChecksumError("checksum mismatch for %s: sha256 is %s, expected %s" % (artifact, artifact_sum, checksum))
    if os.path.isdir(release_dir):
        state = verify_release(release_root, version)
        manifest = _read_manifest(release_dir) or {}
        if state["ok"] and (artifact_sum is None or manifest.get("artifact_sha256") in (None, artifact_sum)):
            return False
        if not artifact:
            raise ChecksumError("release %s is damaged (%s) and no artifact was given to reinstall it"
                                % (release_dir, "; ".join(state["problems"])))
    elif not artifact:
        available = [v for v in sorted(os.listdir(os.path.join(release_root, "releases")))
                     if not v.startswith(".")] if os.path.isdir(os.path.join(release_root, "releases")) else []
        raise VersionNotInstalledError(not_installed_msg(release_root, version, sort_versions(available)))
    releases = os.path.dirname(release_dir)
    staging = None
    try:
        os.makedirs(releases, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".%s-" % version, dir=releases)
        try:
            with tarfile.open(artifact, "r:gz") as tar:
                members = _safe_members(tar, artifact)
                for member in members:
                    dest = os.path.join(staging, os.path.normpath(member.name))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    src = tar.extractfile(member)
                    with open(dest, "wb") as handle:
                        shutil.copyfileobj(src, handle)
                    os.chmod(dest, 0o755 if member.mode & 0o111 else 0o644)
        except (tarfile.TarError, EOFError) as exc:
            raise ChecksumError("cannot unpack artifact %s: %s" % (artifact, exc))
        manifest = {"version": version, "artifact": os.path.basename(artifact), "artifact_sha256": artifact_sum,
                    "files": _dir_files(staging), "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(os.path.join(staging, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        if os.path.isdir(release_dir):
            old = release_dir + ".old-%d" % os.getpid()
            os.rename(release_dir, old)
            os.rename(staging, release_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, release_dir)
        staging = None
    except OSError as exc:
        # disk full, read-only or unwritable release directory: one line, nothing half-written left behind
        raise InstallError("cannot install %s into %s: %s" % (version, release_dir, exc.strerror or exc))
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    return True


def remove_release(release_root: str, version: str) -> bool:
    """Delete releases/VERSION unless ``current`` points at it (a failed release excluded after a rollback)."""
    check_version(version)
    link = os.path.join(release_root, "current")
    if os.path.islink(link) and os.path.basename(os.path.normpath(os.readlink(link))) == version:
        return False
    path = os.path.join(release_root, "releases", version)
    if not os.path.isdir(path):
        return False
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise InstallError("cannot remove failed release %s: %s" % (path, exc.strerror or exc))
    return True


def prune_releases(release_root: str, keep: int, protect: t.Iterable[str] = (), check_mode: bool = False) -> t.List[str]:
    """Delete the oldest releases beyond KEEP; never the current one nor those in PROTECT. Returns removed versions."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
        raise ConfigError("invalid keep_releases %r: expected an integer >= 2 (current and previous are always kept)"
                          % (keep,))
    releases = os.path.join(release_root, "releases")
    try:
        versions = sort_versions(n for n in os.listdir(releases)
                                 if not n.startswith(".") and os.path.isdir(os.path.join(releases, n)))
    except FileNotFoundError:
        return []
    current = None
    link = os.path.join(release_root, "current")
    if os.path.islink(link):
        current = os.path.basename(os.path.normpath(os.readlink(link)))
    keep_set = set(p for p in protect if p)
    if current:
        keep_set.add(current)
        older = [v for v in versions if _version_key(v) < _version_key(current)]
        if older:
            keep_set.add(older[-1])  # the previous release: the default rollback target
    newest = versions[-keep:]
    removed = [v for v in versions if v not in newest and v not in keep_set]
    if not check_mode:
        for version in removed:
            try:
                shutil.rmtree(os.path.join(releases, version))
            except OSError as exc:
                raise InstallError("cannot prune %s: %s" % (os.path.join(releases, version), exc.strerror or exc))
    return removed
