# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory backend (fleet + traffic router in one object) that records every call.

It is the reference for the backend contract (test_backend_contract.py) and the platform the strategy tests drive.
Weights are in percent-like units 0-100 (``max_weight`` 100): the strategies must not assume HAProxy's 0-256.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLOR_ROUTE,
    COLORS,
    WEIGHTS,
    CommandError,
    ConfigError,
    Fleet,
    InstallError,
    NotFoundError,
    Platform,
    Target,
    TrafficRouter,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import sort_versions


class FakePlatform(Platform, Fleet, TrafficRouter):
    """Fleet and router at once: ``fleet`` and ``router`` are this object."""

    capabilities = frozenset((WEIGHTS, COLOR_ROUTE))

    def __init__(self, names, version="5.0.0", installed=("5.0.0", "5.1.0"), colors=None):
        Platform.__init__(self, self, self)
        self._t = [Target(n, backend="be_app", color=(colors or {}).get(n, ""), state="ready", weight=100)
                   for n in names]
        self.current = dict((n, version) for n in names)
        self.installed = dict((n, list(installed)) for n in names)
        self.weights = dict((n, 100) for n in names)
        self.color = "blue"
        self.calls = []
        self.fail_on = None
        self.fail_version = None
        self.fail_install = None

    # ------------------------------------------------------------------ fleet
    def instances(self):
        return self._t

    def current_version(self, target):
        return self.current[target.name]

    def installed_versions(self, target):
        return self.installed[target.name]

    def install(self, target, version, artifact=None, checksum=None):
        self.calls.append(("install", target.name, version))
        if self.fail_install == target.name:
            raise InstallError("cannot install %s into /srv/%s/releases/%s: No space left on device"
                               % (version, target.name, version))
        if version not in self.installed[target.name]:
            if artifact is None:
                raise VersionNotInstalledError("version %s is not installed on %s" % (version, target.name))
            self.installed[target.name].append(version)
            return True
        return False

    def verify(self, target, version):
        present = version in self.installed[target.name]
        return {"version": version, "path": "/fake/%s/%s" % (target.name, version), "present": present,
                "manifest": present, "ok": present, "problems": [] if present else ["release %s is missing" % version]}

    def prune(self, target, keep, protect=(), check_mode=False):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise ConfigError("invalid keep_releases %r: expected an integer >= 2" % (keep,))
        versions = sort_versions(self.installed[target.name])
        current = self.current[target.name]
        keep_set = set(p for p in protect if p) | {current}
        older = versions[:versions.index(current)] if current in versions else []
        if older:
            keep_set.add(older[-1])
        removed = [v for v in versions if v not in versions[-keep:] and v not in keep_set]
        if not check_mode:
            for version in removed:
                self.installed[target.name].remove(version)
                self.calls.append(("prune", target.name, version))
        return removed

    def remove(self, target, version):
        if version in self.installed[target.name] and self.current[target.name] != version:
            self.installed[target.name].remove(version)
            self.calls.append(("remove", target.name, version))
            return True
        return False

    def switch_current(self, target, version):
        if version not in self.installed[target.name]:
            raise VersionNotInstalledError("version %s is not installed on %s" % (version, target.name))
        changed = self.current[target.name] != version
        self.current[target.name] = version
        return changed

    def restart(self, target, version):
        self.calls.append(("restart", target.name, version))

    def activate(self, target, version, force_restart=False):
        self.calls.append(("activate", target.name, version))
        if version not in self.installed[target.name]:
            raise VersionNotInstalledError("version %s is not installed on %s" % (version, target.name))
        if self.fail_on == target.name and (self.fail_version is None or self.fail_version == version):
            # like a failing restart_command: `current` is already switched when the restart fails
            self.current[target.name] = version
            raise CommandError("restart of %s failed (exit 1): boom" % target.name)
        changed = self.current[target.name] != version
        self.current[target.name] = version
        return changed

    def wait_ready(self, target, timeout):
        return None

    # ------------------------------------------------------------------ router
    def check(self):
        return None

    def refresh(self, targets):
        for target in targets:
            if target.name not in self.weights:
                raise NotFoundError("target %s is not routed" % target.name)
            target.weight = self.weights[target.name]

    def drain(self, target, timeout):
        self.calls.append(("drain", target.name))
        changed = target.state != "drain"
        target.state = "drain"
        return changed

    def enable(self, target):
        self.calls.append(("enable", target.name))
        changed = target.state != "ready"
        target.state = "ready"
        return changed

    def disable(self, target):
        self.calls.append(("disable", target.name))
        changed = target.state != "maint"
        target.state = "maint"
        return changed

    def max_weight(self):
        return 100

    def share_weights(self, percent, n_canary, n_stable):
        if percent >= 100 or n_stable == 0:
            return 100, 0
        if percent <= 0:
            return 0, 100
        # per target: canary/stable weight ratio = (p / n_canary) / ((100 - p) / n_stable), stable fixed at 100
        canary = max(1, int(round(100.0 * percent * n_stable / ((100 - percent) * n_canary))))
        if canary <= 100:
            return canary, 100
        return 100, max(1, int(round(100.0 * (100 - percent) * n_canary / (percent * n_stable))))

    def set_weight(self, target, weight):
        self.calls.append(("weight", target.name, weight))
        self.weights[target.name] = weight
        return True

    def active_color(self):
        return self.color

    def active_route(self):
        return self.color_route(self.color)

    def color_route(self, color):
        return "be_%s" % color

    def switch_traffic(self, color):
        if color not in COLORS:
            raise ConfigError("invalid color %r: expected blue or green" % (color,))
        self.calls.append(("switch", color))
        changed = self.color != color
        self.color = color
        return changed
