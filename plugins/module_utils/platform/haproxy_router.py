# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy as the hosts backend's traffic router (standard library only, Python 3.9+).

Targets are servers of HAProxy backends; drain/enable/disable set the server state, a canary share in percent becomes
server weights (``share_weights``; HAProxy's weight range is this file's business only), blue-green routes through a
map file whose key (``active``) names ``be_blue`` or ``be_green``, and the counters of ``show stat`` measure traffic.
"""

from __future__ import annotations

import contextlib
import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils._fsutil import write_atomic
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLOR_ROUTE,
    COLORS,
    COUNTERS,
    HEALTH_UP,
    WEIGHTS,
    ConfigError,
    NotFoundError,
    PlatformError,
    PlatformTimeoutError,
    Target,
    TrafficRouter,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import (
    MAX_WEIGHT,
    HAProxyClient,
    TrafficMeter,
)


def canary_weights(percent: int, n_canary: int, n_stable: int, max_weight: int = MAX_WEIGHT) -> t.Tuple[int, int]:
    """Per-server weights (canary, stable) so the canary group gets ``percent`` % of requests."""
    if percent >= 100 or n_stable == 0:
        return max_weight, 0
    if percent <= 0:
        return 0, max_weight
    best = (0, max_weight)
    best_err = 1.0
    for stable in range(max_weight, 0, -1):
        canary = int(round(percent / 100.0 * n_stable * stable / ((1 - percent / 100.0) * n_canary)))
        if 1 <= canary <= max_weight:
            share = n_canary * canary / float(n_canary * canary + n_stable * stable)
            err = abs(share - percent / 100.0)
            if err < best_err - 1e-9:
                best, best_err = (canary, stable), err
            if err < 0.0005:
                break
    return best


class HAProxyRouter(TrafficRouter):
    """Servers in HAProxy backends, steered through the runtime API."""

    capabilities = frozenset((WEIGHTS, COLOR_ROUTE, COUNTERS, HEALTH_UP))

    def __init__(self, haproxy: HAProxyClient, route_map: t.Optional[str] = None, map_key: str = "active",
                 interval: float = 0.2, sleep: t.Callable[[float], None] = time.sleep,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        self.haproxy = haproxy
        self.route_map = route_map
        self.map_key = map_key
        self.interval = interval
        self.sleep = sleep
        self.clock = clock

    def check(self) -> None:
        self.haproxy.check()

    def refresh(self, targets: t.List[Target]) -> None:
        servers_by_backend = {}  # type: t.Dict[str, t.Dict[str, t.Dict[str, t.Any]]]
        for target in targets:
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

    # ------------------------------------------------------------------ server state
    def _poll(self, target: Target, done: t.Callable[[t.Dict[str, t.Any]], bool], timeout: float,
              failure: t.Callable[[t.Dict[str, t.Any]], str]) -> None:
        """Read the server until DONE(info) holds; PlatformTimeoutError(FAILURE(info)) after TIMEOUT seconds."""
        deadline = self.clock() + timeout
        while True:
            info = self.haproxy.server(target.backend, target.server)
            if done(info):
                return
            if self.clock() >= deadline:
                raise PlatformTimeoutError(failure(info))
            self.sleep(self.interval)

    def drain(self, target: Target, timeout: float) -> bool:
        info = self.haproxy.server(target.backend, target.server)
        changed = info["state"] != "drain"
        if changed:
            self.haproxy.set_server_state(target.backend, target.server, "drain")
        self._poll(target, lambda info: info["sessions"] == 0, timeout,
                   lambda info: "%s/%s still has %d session(s) after draining for %ss"
                   % (target.backend, target.server, info["sessions"], timeout))
        return changed

    def _ensure(self, target: Target, key: str, value: t.Any, apply: t.Callable[[str, str, t.Any], None]) -> bool:
        """Set the server's KEY (state, weight) to VALUE through APPLY unless it already is; changed."""
        if self.haproxy.server(target.backend, target.server)[key] == value:
            return False
        apply(target.backend, target.server, value)
        return True

    def enable(self, target: Target) -> bool:
        return self._ensure(target, "state", "ready", self.haproxy.set_server_state)

    def disable(self, target: Target) -> bool:
        return self._ensure(target, "state", "maint", self.haproxy.set_server_state)

    def wait_up(self, target: Target, timeout: float) -> None:
        """Wait until HAProxy's health check reports the server UP (it then takes traffic)."""
        self._poll(target, lambda info: info["state"] == "ready", timeout,
                   lambda info: "HAProxy does not report %s/%s UP within %ss (status %s)"
                   % (target.backend, target.server, timeout, info["status"]))

    # ------------------------------------------------------------------ weights
    def max_weight(self) -> int:
        return MAX_WEIGHT

    def share_weights(self, percent: int, n_canary: int, n_stable: int) -> t.Tuple[int, int]:
        return canary_weights(percent, n_canary, n_stable)

    def set_weight(self, target: Target, weight: int) -> bool:
        return self._ensure(target, "weight", weight, self.haproxy.set_weight)

    # ------------------------------------------------------------------ blue-green route map
    def _need_map(self) -> str:
        if not self.route_map:
            raise ConfigError("route_map is not set: blue-green needs the HAProxy map file that routes key "
                              "'%s' to be_blue or be_green" % self.map_key)
        return self.route_map

    def active_route(self) -> t.Optional[str]:
        return self.haproxy.show_map(self._need_map()).get(self.map_key)

    def color_route(self, color: str) -> str:
        return "be_%s" % color

    def active_color(self) -> t.Optional[str]:
        backend = self.active_route() or ""
        for color in COLORS:
            if backend == self.color_route(color):
                return color
        return None

    def switch_traffic(self, color: str) -> bool:
        if color not in COLORS:
            raise ConfigError("invalid color %r: expected blue or green" % (color,))
        path = self._need_map()
        backend = self.color_route(color)
        if self.active_route() == backend:
            return False
        self.haproxy.set_map(path, self.map_key, backend)
        # persist for the next HAProxy reload; the runtime change above is what moves traffic
        with contextlib.suppress(OSError):
            _write_map_file(path, self.map_key, backend)
        return True

    # ------------------------------------------------------------------ counters
    def live_routes(self, targets: t.List[Target]) -> t.List[str]:
        """Backends that serve users now: the routed color for blue-green, else the backends of uncolored targets."""
        plain = sorted(set(tg.backend for tg in targets if not tg.color))
        if any(tg.color for tg in targets) and self.route_map:
            active = self.active_route()
            if active:
                return [active]
        return plain or sorted(set(tg.backend for tg in targets))

    def traffic_meter(self, targets: t.List[Target], frontends: t.Optional[t.List[str]] = None,
                      interval: float = 0.25, factory: t.Optional[t.Callable[..., t.Any]] = None) -> t.Any:
        return (factory or TrafficMeter)(self.haproxy, lambda: self.live_routes(targets), frontends=frontends,
                                         interval=interval).start()


def _server_not_found(target: Target, servers: t.Dict[str, t.Any]) -> PlatformError:
    return NotFoundError("HAProxy server %r (target %s) not found in backend %r (known: %s)"
                         % (target.server, target.name, target.backend, ", ".join(sorted(servers)) or "none"))


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
