# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH fleet: instances on their own hosts, per-host work run ON each host over SSH (stdlib, Python 3.9+).

The module runs on the balancer (or the controller next to it): traffic stays with the HAProxy router there, while
every release operation of a target runs on that target's host through the system ``ssh``/``scp`` with the
connection facts the target carries (``ssh_host``, ``ssh_port``, ``ssh_user``, ``ssh_private_key_file``,
``ssh_known_hosts_file``, ``ssh_common_args``, the fleet inventory's ``ansible_*`` facts):

- release operations (state, install, verify, prune, remove, switch ``current``, wait ready, running version) send
  ``ssh_remote.py`` with ``releases.py`` and its imports to the host's Python on stdin: one round trip each, the same
  release layout, manifest and atomic switch as the hosts fleet;
- an artifact is hashed on the controller (checked against ``checksum`` before anything is touched), copied with
  ``scp`` into ``releases/.incoming-*`` only when the host lacks it, and checked again on the host against that hash;
- ``restart_command`` runs on the host as given (argv quoted for the remote shell); ``ready_url`` is polled on the host.

Every call uses ``BatchMode=yes`` (never a prompt), ``ConnectTimeout`` and a per-command timeout; an error is one line
naming the target, its SSH destination and the operation; exit 255 from ``ssh`` (or a timeout) is an unreachable host.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import time
import typing as t
import zlib

from ansible_collections.meshos.release.plugins.module_utils.platform import base as _base
from ansible_collections.meshos.release.plugins.module_utils.platform import hosts as _hosts
from ansible_collections.meshos.release.plugins.module_utils.platform import releases
# not called here: shipped to the hosts as source (_bundle_sources); the static import makes AnsiballZ pack it
from ansible_collections.meshos.release.plugins.module_utils.platform import ssh_remote as _ssh_remote  # noqa: F401 pylint: disable=unused-import
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    CommandError,
    ConfigError,
    Fleet,
    PlatformError,
    Target,
    VersionNotInstalledError,
)

SSH_TARGET_KEYS = ("ssh_host", "ssh_port", "ssh_user", "ssh_private_key_file", "ssh_known_hosts_file",
                   "ssh_common_args")
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\[\]%-]{1,253}$")
_RESULT_MARK = "MESHOS-SSH-RESULT "
_MU = "ansible_collections.meshos.release.plugins.module_utils"
# what the remote side imports, shipped as source (ssh_remote -> releases -> base, _fsutil, semver -> _errors)
_BUNDLE_MODULES = ("_errors", "_fsutil", "release.semver", "platform.base", "platform.releases", "platform.ssh_remote")
_BUNDLE_PACKAGES = ("ansible_collections", "ansible_collections.meshos", "ansible_collections.meshos.release",
                    "ansible_collections.meshos.release.plugins", _MU, _MU + ".release", _MU + ".platform")
_BOOTSTRAP = r"""
import base64, importlib.abc, importlib.util, json, sys, zlib
S = json.loads(zlib.decompress(base64.b64decode("%(sources)s")).decode())
P = set(%(packages)r)
class _Loader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in S or name in P:
            return importlib.util.spec_from_loader(name, self, is_package=name in P)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        exec(compile(S.get(module.__name__, ""), "meshos:" + module.__name__, "exec"), module.__dict__)
sys.meta_path.insert(0, _Loader())
from ansible_collections.meshos.release.plugins.module_utils.platform import ssh_remote
print(ssh_remote.main(%(request)r))
"""
_BUNDLE = []  # type: t.List[str]


def _bundle_sources() -> str:
    """The remote modules' sources, compressed (read through their loaders: plain files or the AnsiballZ zip)."""
    if not _BUNDLE:
        sources = {}
        for short in _BUNDLE_MODULES:
            name = "%s.%s" % (_MU, short)
            module = importlib.import_module(name)
            loader = getattr(module, "__loader__", None)
            source = loader.get_source(name) if loader is not None and hasattr(loader, "get_source") else None
            if source is None:
                with open(module.__file__) as handle:
                    source = handle.read()
            # ansible-test's collection loader hands the source over as bytes
            sources[name] = source.decode("utf-8") if isinstance(source, bytes) else source
        _BUNDLE.append(base64.b64encode(zlib.compress(json.dumps(sources).encode(), 9)).decode())
    return _BUNDLE[0]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class HostUnreachableError(CommandError):
    """SSH could not reach the target's host (exit 255, connect timeout, no answer within the command timeout)."""


def parse_ssh_targets(specs: t.Any, default_backend: str = "be_app", need_color: bool = False,
                      max_weight: int = 256) -> t.List[Target]:
    """The hosts backend's target rules plus each target's SSH connection facts; ConfigError on the first bad one."""
    if not isinstance(specs, list) or not specs:
        raise ConfigError("targets must be a non-empty list of dicts with name, release_root, restart_command, "
                          "ready_url, ssh_host")
    plain = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ConfigError("targets[%d] is %r: expected a dict" % (index, spec))
        plain.append(dict((k, v) for k, v in spec.items() if k not in SSH_TARGET_KEYS))
    targets = _hosts.parse_targets(plain, default_backend, need_color=need_color, max_weight=max_weight)
    for target, spec in zip(targets, specs):
        spec = dict((k, v) for k, v in spec.items() if v is not None)
        name = target.name
        host = spec.get("ssh_host") or spec.get("host")
        if not isinstance(host, str) or not _HOST_RE.match(host) or host.startswith("-"):
            raise ConfigError("target %s: ssh_host %r is invalid: a host name or address (the inventory's "
                              "ansible_host)" % (name, host))
        port = spec.get("ssh_port", 22)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError("target %s: ssh_port %r is invalid: expected 1-65535" % (name, port))
        user = spec.get("ssh_user")
        if user is not None and (not isinstance(user, str) or not _USER_RE.match(user)):
            raise ConfigError("target %s: ssh_user %r is invalid: a login name (letters, digits, '_', '.', '-')"
                              % (name, user))
        for key in ("ssh_private_key_file", "ssh_known_hosts_file"):
            path = spec.get(key)
            if path is not None and not (isinstance(path, str) and os.path.isfile(os.path.expanduser(path))):
                raise ConfigError("target %s: %s %r is not a readable file on the controller" % (name, key, path))
        common = spec.get("ssh_common_args") or ""
        try:
            common_argv = shlex.split(common) if isinstance(common, str) else None
        except ValueError as exc:
            common_argv, common = None, "%s (%s)" % (common, exc)
        if common_argv is None:
            raise ConfigError("target %s: ssh_common_args %r is invalid: a string of ssh options" % (name, common))
        target.extra["ssh"] = {"host": host, "port": port, "user": user,
                               "key": os.path.expanduser(spec["ssh_private_key_file"])
                               if spec.get("ssh_private_key_file") else None,
                               "known_hosts": os.path.expanduser(spec["ssh_known_hosts_file"])
                               if spec.get("ssh_known_hosts_file") else None,
                               "common": common_argv}
    return targets


class SshFleet(Fleet):
    """Targets = instances on their own hosts; release work runs on each host over SSH."""

    def __init__(self, targets: t.List[Target], interval: float = 0.2, command_timeout: float = 120.0,
                 connect_timeout: float = 5.0, ready_timeout: float = 30.0, remote_python: str = "python3",
                 ssh: str = "ssh", scp: str = "scp", control_persist: float = 30.0, cache_ttl: float = 5.0,
                 clock: t.Callable[[], float] = time.monotonic,
                 run: t.Optional[t.Callable[..., t.Tuple[int, str, str]]] = None) -> None:
        self._targets = targets
        self.interval = interval
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.ready_timeout = ready_timeout
        self.remote_python = remote_python
        self.ssh = ssh
        self.scp = scp
        self.control_persist = control_persist
        self._control_dir = None  # type: t.Optional[str]
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._current = {}  # type: t.Dict[str, t.Tuple[float, t.Optional[str]]]
        self._run = run or self._subprocess

    # ------------------------------------------------------------------ transport
    @staticmethod
    def _subprocess(argv: t.List[str], data: t.Optional[str], timeout: float) -> t.Tuple[int, str, str]:
        """(rc, stdout, stderr); rc -1 on timeout (ssh and its children are killed)."""
        # AnsibleModule.run_command has no timeout: a cut-off host must not hang the rollout
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            argv, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(data.encode() if data is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            out, err = proc.communicate()
            return -1, "", "no answer within %ss %s" % (timeout, _last_line(err.decode("utf-8", "replace")))
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    @staticmethod
    def destination(target: Target) -> str:
        ssh = target.extra["ssh"]
        host = ssh["host"]
        return "%s@%s" % (ssh["user"], host) if ssh["user"] else host

    def _options(self, target: Target, port_flag: str) -> t.List[str]:
        ssh = target.extra["ssh"]
        # ssh keeps the first value of an option: ours first (never prompt, bounded connect), then the inventory's
        argv = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % max(1, int(self.connect_timeout)),
                port_flag, str(ssh["port"])]
        if ssh["key"]:
            argv += ["-i", ssh["key"], "-o", "IdentitiesOnly=yes"]
        if ssh["known_hosts"]:
            argv += ["-o", "UserKnownHostsFile=%s" % ssh["known_hosts"], "-o", "StrictHostKeyChecking=yes"]
        argv += self._multiplex()
        argv += ssh["common"]
        # a host cut off mid-command is noticed within ~6 s unless the inventory says otherwise
        argv += ["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"]
        return argv

    def _multiplex(self) -> t.List[str]:
        """One SSH connection per host shared by the many short operations of a rollout (ControlMaster).

        The master exits by itself CONTROL_PERSIST seconds after its last use; the socket directory is private
        (0700, owned by us) or multiplexing is off.
        """
        if self.control_persist <= 0:
            return ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        if self._control_dir is None:
            path = os.path.join(tempfile.gettempdir(), "meshos-ssh-%d" % os.getuid())
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError:
                path = ""
            if path:
                info = os.lstat(path)
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                    path = ""
            self._control_dir = path
        if not self._control_dir:
            return ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        return ["-o", "ControlMaster=auto", "-o", "ControlPath=%s" % os.path.join(self._control_dir, "%C"),
                "-o", "ControlPersist=%d" % max(1, int(self.control_persist))]

    def ssh_argv(self, target: Target, command: str) -> t.List[str]:
        return [self.ssh] + self._options(target, "-p") + ["--", self.destination(target), command]

    def _where(self, target: Target, what: str) -> str:
        return "host %s (%s): %s" % (target.name, self.destination(target), what)

    def _check_transport(self, target: Target, what: str, rc: int, err: str) -> None:
        if rc == -1 or rc == 255:
            raise HostUnreachableError("%s failed: host unreachable over ssh (%s)"
                                       % (self._where(target, what), _last_line(err) or "exit %d" % rc))

    def run_remote(self, target: Target, what: str, command: str, timeout: t.Optional[float] = None,
                   data: t.Optional[str] = None) -> t.Tuple[int, str, str]:
        argv = self.ssh_argv(target, command)
        try:
            rc, out, err = self._run(argv, data, timeout or self.command_timeout)
        except OSError as exc:
            raise ConfigError("%s: cannot run %s: %s" % (self._where(target, what), self.ssh, exc.strerror or exc))
        self._check_transport(target, what, rc, err)
        return rc, out, err

    def call(self, target: Target, what: str, request: t.Dict[str, t.Any],
             timeout: t.Optional[float] = None) -> t.Dict[str, t.Any]:
        """Run one ssh_remote operation on TARGET's host; its result, or the remote error re-raised as its type."""
        request = dict(request, root=target.extra["release_root"])
        script = _BOOTSTRAP % {"sources": _bundle_sources(), "packages": _BUNDLE_PACKAGES,
                               "request": json.dumps(request, sort_keys=True)}
        rc, out, err = self.run_remote(target, what, "%s -" % shlex.quote(self.remote_python), timeout, data=script)
        lines = [line for line in out.splitlines() if line.startswith(_RESULT_MARK)]
        if not lines:
            detail = _last_line(err) or _last_line(out) or "no result"
            raise CommandError("%s failed (exit %d): %s" % (self._where(target, what), rc, detail))
        result = json.loads(lines[-1][len(_RESULT_MARK):])
        if result.get("failed"):
            cls = getattr(_base, str(result.get("error")), None)
            if not (isinstance(cls, type) and issubclass(cls, PlatformError)):
                cls = CommandError
            raise cls("%s: %s" % (self._where(target, what), result.get("msg")))
        return result

    # ------------------------------------------------------------------ Fleet
    def instances(self) -> t.List[Target]:
        return list(self._targets)

    def _remember(self, target: Target, version: t.Optional[str]) -> t.Optional[str]:
        self._current[target.name] = (self.clock(), version)
        return version

    def current_version(self, target: Target) -> t.Optional[str]:
        # the runner reads this around every step: what this fleet read or wrote in the last CACHE_TTL seconds
        # (one operation holds the environment lock, so only this fleet switches `current` meanwhile), else a plain
        # readlink over ssh (no interpreter start)
        seen = self._current.get(target.name)
        if seen is not None and self.clock() - seen[0] < self.cache_ttl:
            return seen[1]
        link = os.path.join(target.extra["release_root"], "current")
        rc, out, err = self.run_remote(target, "read current", "readlink -- %s" % shlex.quote(link),
                                       timeout=self.connect_timeout + 10)
        value = out.strip() if rc == 0 else ""
        return self._remember(target, os.path.basename(os.path.normpath(value)) if value else None)

    def installed_versions(self, target: Target) -> t.List[str]:
        state = self.call(target, "list releases", {"op": "state"}, self.connect_timeout + 20)
        self._remember(target, state["current"])
        return list(state["installed"])

    def running_version(self, target: Target) -> t.Optional[str]:
        url = target.extra.get("status_url")
        if not url:
            return None
        return self.call(target, "GET %s" % url, {"op": "running", "url": url}, self.connect_timeout + 15)["version"]

    def install(self, target: Target, version: str, artifact: t.Optional[str] = None,
                checksum: t.Optional[str] = None) -> bool:
        releases.check_version(version)
        checksum = releases.normalize_checksum(checksum)
        what = "install %s" % version
        if not artifact:
            return bool(self.call(target, what, {"op": "install", "version": version, "checksum": checksum})["changed"])
        if not os.path.isfile(artifact):
            raise ConfigError("artifact %s does not exist" % artifact)
        digest = hashlib.sha256()
        with open(artifact, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        artifact_sum = digest.hexdigest()
        if checksum and artifact_sum != checksum:
            raise _base.ChecksumError("checksum mismatch for %s: sha256 is %s, expected %s"
                                      % (artifact, artifact_sum, checksum))
        staged = self.call(target, what, {"op": "stage", "version": version, "artifact_sha256": artifact_sum})
        if staged["installed"]:
            return False
        incoming = staged["incoming"]
        copy = "scp %s to %s" % (os.path.basename(artifact), incoming)
        argv = [self.scp, "-q"] + self._options(target, "-P") + \
            ["--", artifact, "%s:%s" % (self._scp_destination(target), incoming)]
        try:
            try:
                rc, out, err = self._run(argv, None, self.command_timeout)
            except OSError as exc:
                raise ConfigError("%s: cannot run %s: %s" % (self._where(target, copy), self.scp, exc.strerror or exc))
            self._check_transport(target, copy, rc, err)
            if rc != 0:
                # disk full, read-only release area: scp's own line names it
                raise _base.InstallError("%s failed (exit %d): %s" % (self._where(target, copy), rc,
                                                                      _last_line(err) or _last_line(out)))
        except PlatformError:
            try:
                self.call(target, "discard %s" % incoming, {"op": "discard", "artifact": incoming},
                          self.connect_timeout + 10)
            except PlatformError:
                pass  # the host is gone: the next install replaces the partial copy
            raise
        # the copy is checked again on the host against the controller's hash (install_release's checksum)
        return bool(self.call(target, what, {"op": "install", "version": version, "artifact": incoming,
                                             "checksum": artifact_sum})["changed"])

    def _scp_destination(self, target: Target) -> str:
        host = target.extra["ssh"]["host"]
        if ":" in host and not host.startswith("["):
            host = "[%s]" % host  # an IPv6 address
        user = target.extra["ssh"]["user"]
        return "%s@%s" % (user, host) if user else host

    def verify(self, target: Target, version: str) -> t.Dict[str, t.Any]:
        return dict(self.call(target, "verify %s" % version, {"op": "verify", "version": version})["report"])

    def prune(self, target: Target, keep: int, protect: t.Iterable[str] = (), check_mode: bool = False) -> t.List[str]:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise ConfigError("invalid keep_releases %r: expected an integer >= 2 (current and previous are always "
                              "kept)" % (keep,))
        return list(self.call(target, "prune releases (keep %d)" % keep,
                              {"op": "prune", "keep": keep, "protect": list(protect), "check_mode": check_mode})
                    ["removed"])

    def remove(self, target: Target, version: str) -> bool:
        releases.check_version(version)
        return bool(self.call(target, "remove %s" % version, {"op": "remove", "version": version})["changed"])

    def switch_current(self, target: Target, version: str) -> bool:
        releases.check_version(version)
        self._current.pop(target.name, None)
        changed = self.call(target, "switch current to %s" % version, {"op": "switch", "version": version})["changed"]
        self._remember(target, version)
        return bool(changed)

    def restart(self, target: Target, version: str) -> None:
        spec = target.extra
        cmd = spec["restart_command"].format(name=target.name, host=spec.get("host", ""), version=version,
                                             port=spec.get("port", ""), release_root=spec["release_root"])
        argv = shlex.split(cmd)
        # argv quoted for the remote shell: the command runs as given, never re-split or expanded there
        rc, out, err = self.run_remote(target, "restart (%s)" % cmd, " ".join(shlex.quote(a) for a in argv))
        if rc != 0:
            detail = _last_line(err) or _last_line(out) or cmd
            raise CommandError("%s failed (exit %d): %s" % (self._where(target, "restart (%s)" % cmd), rc, detail))

    def activate(self, target: Target, version: str, force_restart: bool = False) -> bool:
        releases.check_version(version)
        self._current.pop(target.name, None)
        # one round trip: is it installed, and switch `current` to it
        switched = self.call(target, "switch current to %s" % version, {"op": "activate", "version": version})
        if not switched["installed"]:
            raise VersionNotInstalledError(releases.not_installed_msg(target.name, version, switched["available"]))
        self._remember(target, version)
        changed = bool(switched["changed"])
        if changed or force_restart or (target.extra.get("status_url") and self.running_version(target) != version):
            self.restart(target, version)
            changed = True
        self.wait_ready(target, self.ready_timeout)
        return changed

    def wait_ready(self, target: Target, timeout: float) -> None:
        url = target.extra["ready_url"]
        self.call(target, "wait for %s" % url, {"op": "wait_ready", "url": url, "timeout": timeout,
                                                "interval": self.interval, "name": target.name},
                  timeout=timeout + self.connect_timeout + 10)
