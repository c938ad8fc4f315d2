# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform interface shared by the rollout strategies and rollback.

A backend (hosts behind HAProxy in ``_hosts.py``; Kubernetes later) implements ``Platform``. The strategies in
``_rollout.py`` only talk to this interface. Errors are typed and carry one-line messages.

Standard library only, Python 3.9+.
"""

from __future__ import annotations

import typing as t

TARGET_STATES = ("ready", "drain", "maint", "down")
COLORS = ("blue", "green")


class PlatformError(Exception):
    """Base of every platform error; ``str(exc)`` is one line meant for the user."""

    def __init__(self, msg: str) -> None:
        super().__init__(" ".join(str(msg).split()))


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


class CommandError(PlatformError):
    """A configured command (restart) failed."""


class InstallError(PlatformError):
    """Writing a release to disk failed (disk full, read-only or unwritable directory)."""


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


class Platform:
    """The interface. Every method may raise ``PlatformError``; mutating methods return ``changed``."""

    def targets(self) -> t.List[Target]:
        raise NotImplementedError

    def current_version(self, target: Target) -> t.Optional[str]:
        raise NotImplementedError

    def installed_versions(self, target: Target) -> t.List[str]:
        raise NotImplementedError

    def install(self, target: Target, version: str, artifact: t.Optional[str] = None,
                checksum: t.Optional[str] = None) -> bool:
        raise NotImplementedError

    def activate(self, target: Target, version: str) -> bool:
        """Switch the target to an installed version, restart it and wait until it is ready."""
        raise NotImplementedError

    def drain(self, target: Target, timeout: float) -> bool:
        raise NotImplementedError

    def enable(self, target: Target) -> bool:
        raise NotImplementedError

    def disable(self, target: Target) -> bool:
        """Take the target out of traffic entirely (maintenance)."""
        raise NotImplementedError

    def set_weight(self, target: Target, weight: int) -> bool:
        raise NotImplementedError

    def switch_traffic(self, color: str) -> bool:
        raise NotImplementedError

    def active_color(self) -> t.Optional[str]:
        raise NotImplementedError

    def wait_ready(self, target: Target, timeout: float) -> None:
        raise NotImplementedError
