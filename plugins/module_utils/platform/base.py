# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform seam: what a rollout strategy may ask of a backend (standard library only, Python 3.9+).

A backend is two objects:

- a ``Fleet``: the instances that run releases (install, verify, prune, switch, restart, wait ready, versions);
- a ``TrafficRouter``: what sends users to them (drain, enable/disable, traffic share, color route, counters).

``Platform`` bundles the two for the strategies in ``rollout/``; ``factory.py`` builds one from the module options.
A backend whose platform runs the rollout itself (a Kubernetes Deployment's controller) also hands over a
``NativeRollout`` as ``Platform.native``: the runner then delegates the strategies it names to it instead of driving
the fleet target by target (``rollout/native.py``).
Every method a strategy calls is declared here. Optional abilities are named in ``capabilities``: a strategy checks
``router.supports("weights")``, never ``hasattr``; a method of a capability the backend lacks raises ``NotSupported``.
Errors are typed and carry one-line messages.
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError, one_line

TARGET_STATES = ("ready", "drain", "maint", "down")
COLORS = ("blue", "green")

# TrafficRouter capabilities
WEIGHTS = "weights"      # per-target traffic share (canary)
COLOR_ROUTE = "colors"   # one switch moves all traffic between the blue and green groups
COUNTERS = "counters"    # request / failure counters measured while an operation runs
HEALTH_UP = "health_up"  # the router health-checks targets itself: wait_up() waits for it
ROUTER_CAPABILITIES = (WEIGHTS, COLOR_ROUTE, COUNTERS, HEALTH_UP)


class PlatformError(MeshosError):
    """Base of every platform error; ``str(exc)`` is one line meant for the user."""

    def __init__(self, msg: str) -> None:
        super().__init__(one_line(msg))


class ConfigError(PlatformError):
    """Invalid input (options, target list); raised before anything is touched."""


class NotFoundError(PlatformError):
    """A backend, server, target or map that does not exist."""


class VersionNotInstalledError(PlatformError):
    """The requested version is not installed on a target."""


class ChecksumError(PlatformError):
    """An artifact or installed release does not match its expected checksum."""


class PlatformTimeoutError(PlatformError):
    """A bounded wait (drain, readiness) expired."""


class StuckError(PlatformError):
    """A rollout the platform runs itself stopped progressing (deadline exceeded, or the wait timed out)."""


class CommandError(PlatformError):
    """A configured command (restart) failed."""


class InstallError(PlatformError):
    """Writing a release to disk failed (disk full, read-only or unwritable directory)."""


class NotSupported(PlatformError):
    """The backend lacks the capability this call needs (see ``capabilities``)."""


class Target:
    """One unit of the fleet that receives traffic: a host instance or a pod group."""

    __slots__ = ("name", "server", "backend", "address", "color", "version", "state", "weight", "sessions", "extra")

    def __init__(self, name: str, server: str = "", backend: str = "", address: str = "", color: str = "",
                 version: t.Optional[str] = None, state: str = "down", weight: int = 0, sessions: int = 0,
                 extra: t.Optional[t.Dict[str, t.Any]] = None) -> None:
        self.name = name
        self.server = server or name
        self.backend = backend
        self.address = address
        self.color = color
        self.version = version
        self.state = state
        self.weight = weight
        self.sessions = sessions
        self.extra = dict(extra or {})

    def as_dict(self) -> t.Dict[str, t.Any]:
        return {"name": self.name, "server": self.server, "backend": self.backend, "address": self.address,
                "color": self.color, "version": self.version, "state": self.state, "weight": self.weight,
                "sessions": self.sessions}

    def __repr__(self) -> str:
        return "Target(%r)" % self.as_dict()


def _abstract(obj: object, name: str) -> PlatformError:
    return NotSupported("%s does not implement %s" % (type(obj).__name__, name))


class Fleet:
    """The instances. Mutating methods return ``changed``; every method may raise ``PlatformError``."""

    def instances(self) -> t.List[Target]:
        """The configured targets (name, color, route/backend); traffic fields are filled by the router."""
        raise _abstract(self, "instances")

    def current_version(self, target: Target) -> t.Optional[str]:
        raise _abstract(self, "current_version")

    def installed_versions(self, target: Target) -> t.List[str]:
        """Installed releases, oldest first."""
        raise _abstract(self, "installed_versions")

    def running_version(self, target: Target) -> t.Optional[str]:
        """The version the instance reports it runs; None when it cannot tell (then only ``current`` counts)."""
        return None

    def install(self, target: Target, version: str, artifact: t.Optional[str] = None,
                checksum: t.Optional[str] = None) -> bool:
        raise _abstract(self, "install")

    def verify(self, target: Target, version: str) -> t.Dict[str, t.Any]:
        """{version, path, present, manifest, ok, problems}: is the installed release intact?"""
        raise _abstract(self, "verify")

    def prune(self, target: Target, keep: int, protect: t.Iterable[str] = (), check_mode: bool = False) -> t.List[str]:
        """Remove the oldest releases beyond KEEP (never the current, the previous nor PROTECT); the removed ones."""
        raise _abstract(self, "prune")

    def remove(self, target: Target, version: str) -> bool:
        """Remove one installed release unless it is current."""
        raise _abstract(self, "remove")

    def switch_current(self, target: Target, version: str) -> bool:
        raise _abstract(self, "switch_current")

    def restart(self, target: Target, version: str) -> None:
        raise _abstract(self, "restart")

    def activate(self, target: Target, version: str, force_restart: bool = False) -> bool:
        """Switch to an installed VERSION, restart (always when FORCE_RESTART) and wait until ready."""
        raise _abstract(self, "activate")

    def wait_ready(self, target: Target, timeout: float) -> None:
        raise _abstract(self, "wait_ready")


class TrafficRouter:
    """What sends users to the targets. ``capabilities`` names the optional abilities (ROUTER_CAPABILITIES)."""

    capabilities = frozenset()  # type: t.FrozenSet[str]

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def _need(self, capability: str, what: str) -> None:
        if capability not in self.capabilities:
            raise NotSupported("%s cannot %s: it lacks the %r capability (it has: %s)"
                               % (type(self).__name__, what, capability, ", ".join(sorted(self.capabilities)) or "none"))

    def check(self) -> None:
        """Is the router reachable and configured? Raises before anything is touched."""
        raise _abstract(self, "check")

    def refresh(self, targets: t.List[Target]) -> None:
        """Fill state, weight, sessions and address of TARGETS; NotFoundError for a target the router lacks."""
        raise _abstract(self, "refresh")

    def drain(self, target: Target, timeout: float) -> bool:
        """No new requests; wait up to TIMEOUT for the open ones to end."""
        raise _abstract(self, "drain")

    def enable(self, target: Target) -> bool:
        raise _abstract(self, "enable")

    def disable(self, target: Target) -> bool:
        """Take the target out of traffic entirely (maintenance)."""
        raise _abstract(self, "disable")

    def wait_up(self, target: Target, timeout: float) -> None:
        """Wait until the router itself sends traffic to TARGET (its health check). No-op without HEALTH_UP."""
        return None

    # -- WEIGHTS: the strategy speaks percent; the router turns it into its own unit
    def max_weight(self) -> int:
        self._need(WEIGHTS, "weigh targets")
        raise _abstract(self, "max_weight")

    def share_weights(self, percent: int, n_canary: int, n_stable: int) -> t.Tuple[int, int]:
        """Router weights (canary, stable) per target so the canary group gets PERCENT % of requests."""
        self._need(WEIGHTS, "split traffic by percent")
        raise _abstract(self, "share_weights")

    def set_weight(self, target: Target, weight: int) -> bool:
        self._need(WEIGHTS, "set a weight")
        raise _abstract(self, "set_weight")

    # -- COLOR_ROUTE
    def active_color(self) -> t.Optional[str]:
        self._need(COLOR_ROUTE, "read the active color")
        raise _abstract(self, "active_color")

    def active_route(self) -> t.Optional[str]:
        """What the color switch points at now, as the router names it (for error messages)."""
        self._need(COLOR_ROUTE, "read the active route")
        raise _abstract(self, "active_route")

    def color_route(self, color: str) -> str:
        """The router's name for COLOR's group (for example an HAProxy backend)."""
        self._need(COLOR_ROUTE, "name a color's route")
        raise _abstract(self, "color_route")

    def switch_traffic(self, color: str) -> bool:
        self._need(COLOR_ROUTE, "switch traffic")
        raise _abstract(self, "switch_traffic")

    # -- COUNTERS
    def live_routes(self, targets: t.List[Target]) -> t.List[str]:
        """The routes (backends) that serve users now."""
        return sorted(set(tg.backend for tg in targets))

    def traffic_meter(self, targets: t.List[Target], frontends: t.Optional[t.List[str]] = None,
                      interval: float = 0.25, factory: t.Optional[t.Callable[..., t.Any]] = None) -> t.Any:
        """A started meter (``stop()`` returns the measured traffic) or None without COUNTERS."""
        return None


class NativeRollout:
    """A rollout the platform performs itself (its controller replaces instances, keeps revisions).

    ``strategies`` names what it runs (``rolling`` today); the runner refuses any other strategy with NotSupported
    before anything is touched. Each method returns a result dict (``changed``, ``status``, ``versions``...) and
    raises ``PlatformError`` (``StuckError`` for a rollout that stopped progressing) with a one-line message.
    """

    strategies = frozenset()  # type: t.FrozenSet[str]

    def rolling(self, version: str, check_mode: bool = False) -> t.Dict[str, t.Any]:
        raise _abstract(self, "rolling")

    def rollback(self, version: t.Optional[str], check_mode: bool = False) -> t.Dict[str, t.Any]:
        """To VERSION, or to the previous revision; an error listing what exists when VERSION is absent."""
        raise _abstract(self, "rollback")

    def status(self) -> t.Dict[str, t.Any]:
        raise _abstract(self, "status")

    def verify_backup(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        raise _abstract(self, "verify_backup")


class Platform:
    """A backend: one fleet and one traffic router over the same targets (and, optionally, a native rollout)."""

    def __init__(self, fleet: Fleet, router: TrafficRouter, native: t.Optional[NativeRollout] = None) -> None:
        self.fleet = fleet
        self.router = router
        self.native = native

    def targets(self) -> t.List[Target]:
        """Every target with its traffic state (router) and current version (fleet)."""
        targets = self.fleet.instances()
        self.router.refresh(targets)
        for target in targets:
            target.version = self.fleet.current_version(target)
        return list(targets)
