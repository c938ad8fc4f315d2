# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts behind HAProxy: the ``Platform`` backend for VMs / bare metal (standard library only, Python 3.9+).

Each target has ``release_root`` holding ``releases/<version>/`` and a ``current`` symlink. Installing unpacks an
artifact (``.tar.gz``) into a staging directory, writes ``.meshos-manifest.json`` (sha256 per file and of the
artifact) and renames it into place; activating switches ``current`` atomically (temp symlink + rename), runs the
target's ``restart_command`` and waits for its ``ready_url``. Traffic is steered through the HAProxy runtime API.

Limitation: the paths are local to the machine running this code (the HAProxy host in the lab, or shared storage).
For remote hosts, run the install/activate per host (delegate_to) and keep the HAProxy part on the balancer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import time
import typing as t
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils._haproxy import HAProxyClient
from ansible_collections.meshos.release.plugins.module_utils.platform import (
    COLORS,
    ChecksumError,
    CommandError,
    ConfigError,
    InstallError,
    NotFoundError,
    Platform,
    PlatformError,
    PlatformTimeoutError,
    Target,
    VersionNotInstalledError,
)

MANIFEST = ".meshos-manifest.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TARGET_KEYS = ("name", "server", "backend", "color", "release_root", "restart_command", "ready_url", "status_url",
               "weight", "port", "host")


def _version_key(version: str) -> t.Tuple[t.Any, ...]:
    parts = re.split(r"[.+-]", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def sort_versions(versions: t.Iterable[str]) -> t.List[str]:
    return sorted(versions, key=_version_key)


# The one version rule (issue 9 item 7): _semver.validate_version once it exists there. This try/except is the
# single switch point; the fallback below applies the same rule (full-string semver, bounded, no control characters).
try:
    from ansible_collections.meshos.release.plugins.module_utils._semver import validate_version as _validate_version
except ImportError:  # pragma: no cover - depends on the other module's progress
    _validate_version = None

MAX_VERSION_LEN = 128  # the same bound as _semver.validate_version; well below NAME_MAX for the directory
_SEMVER_FULL = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")


def _shown(value: t.Any) -> str:
    """repr() of a bad value, shortened so the error stays one readable line."""
    text = repr(value)
    if len(text) > 60:
        text = "%s... (%d characters)" % (text[:40], len(value) if isinstance(value, str) else len(text))
    return text


def check_version(version: t.Any, what: str = "version") -> str:
    """Validate a release version (also a directory name): ConfigError naming the value otherwise."""
    if _validate_version is not None:
        try:
            _validate_version(version, what=what)
        except ValueError as exc:  # SemverError is a ValueError
            raise ConfigError(str(exc))
        return version
    if not isinstance(version, str) or len(version) > MAX_VERSION_LEN or not _SEMVER_FULL.fullmatch(version):
        raise ConfigError("invalid %s %s: expected a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] such as "
                          "5.1.0, at most %d characters, no spaces or control characters"
                          % (what, _shown(version), MAX_VERSION_LEN))
    return version


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def parse_targets(specs: t.Any, default_backend: str = "be_app", need_color: bool = False) -> t.List[Target]:
    """Validate the ``targets`` option (list of dicts) into Target objects; ConfigError on the first bad entry."""
    if not isinstance(specs, list) or not specs:
        raise ConfigError("targets must be a non-empty list of dicts with name, release_root, restart_command, "
                          "ready_url")
    seen = set()
    result = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ConfigError("targets[%d] is %r: expected a dict" % (index, spec))
        spec = dict((k, v) for k, v in spec.items() if v is not None)
        unknown = sorted(set(spec) - set(TARGET_KEYS))
        if unknown:
            raise ConfigError("targets[%d] has unknown key(s) %s: allowed %s"
                              % (index, ", ".join(unknown), ", ".join(TARGET_KEYS)))
        name = spec.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError("targets[%d].name %r is invalid: letters, digits, '_', '.', '-'" % (index, name))
        if name in seen:
            raise ConfigError("targets[%d].name %r is duplicated" % (index, name))
        seen.add(name)
        for key in ("release_root", "restart_command", "ready_url"):
            if not isinstance(spec.get(key), str) or not spec.get(key):
                raise ConfigError("target %s lacks %s (a non-empty string)" % (name, key))
        if not os.path.isabs(spec["release_root"]):
            raise ConfigError("target %s: release_root %r must be an absolute path" % (name, spec["release_root"]))
        color = spec.get("color") or ""
        if color and color not in COLORS:
            raise ConfigError("target %s: color %r is invalid: expected blue or green" % (name, color))
        if need_color and not color:
            raise ConfigError("target %s has no color: blue-green needs every target to be blue or green" % name)
        weight = spec.get("weight", 100)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 256:
            raise ConfigError("target %s: weight %r is invalid: expected an integer 1-256" % (name, weight))
        try:
            restart = spec["restart_command"].format(name=name, host=spec.get("host", ""), version="VERSION",
                                                     port=spec.get("port", ""), release_root=spec["release_root"])
            shlex.split(restart)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError("target %s: restart_command %r is invalid (%s): placeholders are {name}, {host}, "
                              "{version}, {port}, {release_root}" % (name, spec["restart_command"], exc))
        backend = spec.get("backend") or ""
        if not backend:
            backend = ("be_%s" % color) if color else default_backend
        result.append(Target(name=name, server=spec.get("server") or name, backend=backend, color=color,
                             weight=weight, extra=dict(spec)))
    return result


def _http_status(url: str, timeout: float = 2.0) -> t.Tuple[int, bytes]:
    try:
        resp = open_url(url, timeout=timeout, validate_certs=False, follow_redirects="none")
        try:
            return resp.getcode(), resp.read()
        finally:
            resp.close()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


class HostsPlatform(Platform):
    """Targets = host instances (release dirs + restart command) and their servers in HAProxy."""

    def __init__(self, haproxy: HAProxyClient, targets: t.List[Target], route_map: t.Optional[str] = None,
                 map_key: str = "active", interval: float = 0.2, command_timeout: float = 60.0,
                 run_command: t.Optional[t.Callable[[t.List[str]], t.Tuple[int, str, str]]] = None,
                 sleep: t.Callable[[float], None] = time.sleep, clock: t.Callable[[], float] = time.monotonic) -> None:
        self.haproxy = haproxy
        self._targets = targets
        self.route_map = route_map
        self.map_key = map_key
        self.interval = interval
        self.command_timeout = command_timeout
        self.run_command = run_command
        self.sleep = sleep
        self.clock = clock

    # ------------------------------------------------------------------ reads
    def targets(self) -> t.List[Target]:
        servers_by_backend = {}  # type: t.Dict[str, t.Dict[str, t.Dict[str, t.Any]]]
        for target in self._targets:
            if target.backend not in servers_by_backend:
                servers_by_backend[target.backend] = self.haproxy.servers(target.backend)
            servers = servers_by_backend[target.backend]
            if target.server not in servers:
                raise _server_not_found(target, servers)
            info = servers[target.server]
            target.state = info["state"]
            target.weight = info["weight"]
            target.sessions = info["sessions"]
            target.address = info["address"]
            target.version = self.current_version(target)
        return list(self._targets)

    def refresh(self, target: Target) -> Target:
        info = self.haproxy.server(target.backend, target.server)
        target.state = info["state"]
        target.sessions = info["sessions"]
        target.version = self.current_version(target)
        return target

    def _root(self, target: Target) -> str:
        return target.extra["release_root"]

    def release_dir(self, target: Target, version: str) -> str:
        return os.path.join(self._root(target), "releases", version)

    def current_version(self, target: Target) -> t.Optional[str]:
        current = os.path.join(self._root(target), "current")
        if not os.path.islink(current):
            return None
        return os.path.basename(os.path.normpath(os.readlink(current)))

    def installed_versions(self, target: Target) -> t.List[str]:
        releases = os.path.join(self._root(target), "releases")
        try:
            names = os.listdir(releases)
        except FileNotFoundError:
            return []
        return sort_versions(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(releases, n)))

    def running_version(self, target: Target) -> t.Optional[str]:
        url = target.extra.get("status_url")
        if not url:
            return None
        code, body = _http_status(url)
        if code != 200:
            return None
        try:
            return str(json.loads(body.decode()).get("version"))
        except (ValueError, AttributeError):
            return None

    # ------------------------------------------------------------------ install / verify / prune
    def install(self, target: Target, version: str, artifact: t.Optional[str] = None,
                checksum: t.Optional[str] = None) -> bool:
        return install_release(self._root(target), version, artifact, checksum)

    def verify(self, target: Target, version: str) -> t.Dict[str, t.Any]:
        return verify_release(self._root(target), version)

    def prune(self, target: Target, keep: int, protect: t.Iterable[str] = (), check_mode: bool = False) -> t.List[str]:
        return prune_releases(self._root(target), keep, protect, check_mode)

    def remove(self, target: Target, version: str) -> bool:
        return remove_release(self._root(target), version)

    # ------------------------------------------------------------------ activate
    def switch_current(self, target: Target, version: str) -> bool:
        return switch_current(self._root(target), version)

    def restart(self, target: Target, version: str) -> None:
        spec = target.extra
        cmd = spec["restart_command"].format(name=target.name, host=spec.get("host", ""), version=version,
                                             port=spec.get("port", ""), release_root=spec["release_root"])
        argv = shlex.split(cmd)
        if self.run_command is None:
            raise ConfigError("no command runner configured to run restart_command for %s" % target.name)
        try:
            rc, out, err = self.run_command(argv)
        except OSError as exc:
            raise CommandError("restart of %s failed: %s: %s" % (target.name, argv[0], exc.strerror or exc))
        if rc != 0:
            lines = (err or out or "").strip().splitlines()
            raise CommandError("restart of %s failed (exit %d): %s" % (target.name, rc, lines[-1] if lines else cmd))

    def activate(self, target: Target, version: str, force_restart: bool = False) -> bool:
        if version not in self.installed_versions(target):
            raise VersionNotInstalledError(not_installed_msg(target.name, version, self.installed_versions(target)))
        changed = self.switch_current(target, version)
        if changed or force_restart or (target.extra.get("status_url") and self.running_version(target) != version):
            self.restart(target, version)
            changed = True
        self.wait_ready(target, self.command_timeout)
        return changed

    def wait_ready(self, target: Target, timeout: float) -> None:
        url = target.extra["ready_url"]
        deadline = self.clock() + timeout
        while True:
            code, _body = _http_status(url)
            if code == 200:
                return
            if self.clock() >= deadline:
                raise PlatformTimeoutError("%s is not ready: GET %s gave %s, not 200, within %ss"
                                           % (target.name, url, code or "no answer", timeout))
            self.sleep(self.interval)

    # ------------------------------------------------------------------ traffic
    def drain(self, target: Target, timeout: float) -> bool:
        info = self.haproxy.server(target.backend, target.server)
        changed = info["state"] != "drain"
        if changed:
            self.haproxy.set_server_state(target.backend, target.server, "drain")
        deadline = self.clock() + timeout
        while info["sessions"] > 0:
            if self.clock() >= deadline:
                raise PlatformTimeoutError("%s/%s still has %d session(s) after draining for %ss"
                                           % (target.backend, target.server, info["sessions"], timeout))
            self.sleep(self.interval)
            info = self.haproxy.server(target.backend, target.server)
        return changed

    def enable(self, target: Target) -> bool:
        info = self.haproxy.server(target.backend, target.server)
        if info["state"] == "ready":
            return False
        self.haproxy.set_server_state(target.backend, target.server, "ready")
        return True

    def wait_up(self, target: Target, timeout: float) -> None:
        """Wait until HAProxy's health check reports the server UP (it then takes traffic)."""
        deadline = self.clock() + timeout
        while True:
            info = self.haproxy.server(target.backend, target.server)
            if info["state"] == "ready":
                return
            if self.clock() >= deadline:
                raise PlatformTimeoutError("HAProxy does not report %s/%s UP within %ss (status %s)"
                                           % (target.backend, target.server, timeout, info["status"]))
            self.sleep(self.interval)

    def disable(self, target: Target) -> bool:
        info = self.haproxy.server(target.backend, target.server)
        if info["state"] == "maint":
            return False
        self.haproxy.set_server_state(target.backend, target.server, "maint")
        return True

    def set_weight(self, target: Target, weight: int) -> bool:
        info = self.haproxy.server(target.backend, target.server)
        if info["weight"] == weight:
            return False
        self.haproxy.set_weight(target.backend, target.server, weight)
        return True

    def _need_map(self) -> str:
        if not self.route_map:
            raise ConfigError("route_map is not set: blue-green needs the HAProxy map file that routes key "
                              "'%s' to be_blue or be_green" % self.map_key)
        return self.route_map

    def active_backend(self) -> t.Optional[str]:
        return self.haproxy.show_map(self._need_map()).get(self.map_key)

    def active_color(self) -> t.Optional[str]:
        backend = self.active_backend() or ""
        for color in COLORS:
            if backend == "be_%s" % color:
                return color
        return None

    def switch_traffic(self, color: str) -> bool:
        if color not in COLORS:
            raise ConfigError("invalid color %r: expected blue or green" % (color,))
        path = self._need_map()
        backend = "be_%s" % color
        if self.active_backend() == backend:
            return False
        self.haproxy.set_map(path, self.map_key, backend)
        # persist for the next HAProxy reload; the runtime change above is what moves traffic
        with contextlib.suppress(OSError):
            _write_map_file(path, self.map_key, backend)
        return True


def _server_not_found(target: Target, servers: t.Dict[str, t.Any]) -> PlatformError:
    return NotFoundError("HAProxy server %r (target %s) not found in backend %r (known: %s)"
                         % (target.server, target.name, target.backend, ", ".join(sorted(servers)) or "none"))


def not_installed_msg(name: str, version: str, available: t.List[str]) -> str:
    return ("version %s is not installed on %s (available: %s) and no artifact was given"
            % (version, name, ", ".join(available) or "none"))


def _write_map_file(path: str, key: str, value: str) -> None:
    lines = []
    replaced = False
    with contextlib.suppress(FileNotFoundError), open(path) as handle:
        for line in handle:
            parts = line.split()
            if parts and parts[0] == key:
                lines.append("%s %s\n" % (key, value))
                replaced = True
            else:
                lines.append(line)
    if not replaced:
        lines.append("%s %s\n" % (key, value))
    write_atomic(path, "".join(lines))


def write_atomic(path: str, data: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def switch_current(release_root: str, version: str) -> bool:
    """Point release_root/current at releases/VERSION atomically (temp symlink + rename). True when changed."""
    current = os.path.join(release_root, "current")
    target = os.path.join("releases", version)
    if os.path.islink(current) and os.readlink(current) == target:
        return False
    if os.path.exists(current) and not os.path.islink(current):
        raise ConfigError("%s exists and is not a symlink: refusing to replace it" % current)
    tmp = os.path.join(release_root, ".current-%d" % os.getpid())
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, current)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InstallError("cannot switch %s to %s: %s" % (current, target, exc.strerror or exc))
    return True


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
