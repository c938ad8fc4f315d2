# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hosts fleet: VM / bare-metal instances with release directories and a restart command (stdlib, Python 3.9+).

Each target has ``release_root`` (see ``releases.py``); activating switches ``current`` atomically, runs the target's
``restart_command`` and waits for its ``ready_url``. Traffic is the router's job (``haproxy_router.py``).

Limitation: the paths are local to the machine running this code (the HAProxy host in the lab, or shared storage).
For remote hosts, run the install/activate per host (delegate_to) and keep the HAProxy part on the balancer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
import typing as t
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils.platform import releases
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLORS,
    CommandError,
    ConfigError,
    Fleet,
    PlatformTimeoutError,
    Target,
    VersionNotInstalledError,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TARGET_KEYS = ("name", "server", "backend", "color", "release_root", "restart_command", "ready_url", "status_url",
               "weight", "port", "host")


def parse_targets(specs: t.Any, default_backend: str = "be_app", need_color: bool = False,
                  max_weight: int = 256) -> t.List[Target]:
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
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= max_weight:
            raise ConfigError("target %s: weight %r is invalid: expected an integer 1-%d" % (name, weight, max_weight))
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


class HostsFleet(Fleet):
    """Targets = host instances: ``release_root`` directories, a restart command, a ready URL."""

    def __init__(self, targets: t.List[Target], interval: float = 0.2, command_timeout: float = 60.0,
                 run_command: t.Optional[t.Callable[[t.List[str]], t.Tuple[int, str, str]]] = None,
                 sleep: t.Callable[[float], None] = time.sleep, clock: t.Callable[[], float] = time.monotonic) -> None:
        self._targets = targets
        self.interval = interval
        self.command_timeout = command_timeout
        self.run_command = run_command
        self.sleep = sleep
        self.clock = clock

    def instances(self) -> t.List[Target]:
        return list(self._targets)

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
        root = os.path.join(self._root(target), "releases")
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
        return releases.sort_versions(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))

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

    def install(self, target: Target, version: str, artifact: t.Optional[str] = None,
                checksum: t.Optional[str] = None) -> bool:
        return releases.install_release(self._root(target), version, artifact, checksum)

    def verify(self, target: Target, version: str) -> t.Dict[str, t.Any]:
        return releases.verify_release(self._root(target), version)

    def prune(self, target: Target, keep: int, protect: t.Iterable[str] = (), check_mode: bool = False) -> t.List[str]:
        return releases.prune_releases(self._root(target), keep, protect, check_mode)

    def remove(self, target: Target, version: str) -> bool:
        return releases.remove_release(self._root(target), version)

    def switch_current(self, target: Target, version: str) -> bool:
        return releases.switch_current(self._root(target), version)

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
            raise VersionNotInstalledError(releases.not_installed_msg(target.name, version,
                                                                      self.installed_versions(target)))
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
