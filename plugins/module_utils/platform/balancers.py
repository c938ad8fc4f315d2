# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several balancers of one environment (an HAProxy HA pair) as one traffic router (standard library only).

``BalancerSetRouter`` applies every traffic step (drain, enable, disable, weight, color switch) to each balancer in
order. A step that fails on one balancer is undone on every balancer it already reached (and on the failing one, as
far as it still answers), then the error is raised naming the balancer, the step and whether the undo worked: the
balancers never stay split between the old and the new routing. Reads come from the first balancer (the one the
strategies' ``refresh`` and ``active_color`` describe); counters are summed over all of them.
"""

from __future__ import annotations

import contextlib
import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    NotFoundError,
    PlatformError,
    PlatformTimeoutError,
    Target,
    TrafficRouter,
)

# traffic counters summed over the balancers (each balancer serves its own share of the clients)
SUMMED_COUNTERS = ("requests", "failed_requests", "backend_5xx", "server_5xx", "econ", "eresp", "retries",
                   "redispatches")


def _copy(target: Target) -> Target:
    return Target(target.name, server=target.server, backend=target.backend, color=target.color)


class BalancerSetRouter(TrafficRouter):
    """BALANCERS: [(name, router), ...], two or more; the name (socket path or address) appears in every error."""

    def __init__(self, balancers: t.List[t.Tuple[str, TrafficRouter]],
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        if len(balancers) < 2:
            raise ConfigError("a balancer set needs at least two balancers, got %d" % len(balancers))
        names = [name for name, dummy in balancers]
        if len(set(names)) != len(names):
            raise ConfigError("duplicate balancer in %s: each HAProxy runtime API once" % ", ".join(names))
        self.balancers = list(balancers)
        self.clock = clock
        self.capabilities = frozenset.intersection(*[router.capabilities for dummy, router in balancers])

    @property
    def first(self) -> TrafficRouter:
        return self.balancers[0][1]

    def names(self) -> t.List[str]:
        return [name for name, dummy in self.balancers]

    # ------------------------------------------------------------------ reads
    def check(self) -> None:
        for name, router in self.balancers:
            try:
                router.check()
            except PlatformError as exc:
                raise type(exc)("balancer %s: %s" % (name, exc))

    def refresh(self, targets: t.List[Target]) -> None:
        self.first.refresh(targets)
        for name, router in self.balancers[1:]:
            try:
                router.refresh([_copy(tg) for tg in targets])
            except NotFoundError as exc:
                raise NotFoundError("balancer %s: %s" % (name, exc))

    def states(self, targets: t.List[Target]) -> t.Dict[str, t.Dict[str, t.Tuple[str, int]]]:
        """balancer -> target name -> (state, weight): what every balancer routes now (to compare them)."""
        result = {}
        for name, router in self.balancers:
            copies = [_copy(tg) for tg in targets]
            router.refresh(copies)
            result[name] = dict((tg.name, (tg.state, tg.weight)) for tg in copies)
        return result

    def active_color(self) -> t.Optional[str]:
        return self.first.active_color()

    def active_route(self) -> t.Optional[str]:
        return self.first.active_route()

    def color_route(self, color: str) -> str:
        return self.first.color_route(color)

    def max_weight(self) -> int:
        return min(router.max_weight() for dummy, router in self.balancers)

    def share_weights(self, percent: int, n_canary: int, n_stable: int) -> t.Tuple[int, int]:
        return self.first.share_weights(percent, n_canary, n_stable)

    def live_routes(self, targets: t.List[Target]) -> t.List[str]:
        return self.first.live_routes(targets)

    # ------------------------------------------------------------------ steps on every balancer
    def _on_all(self, step: str, snapshot: t.Callable[[TrafficRouter], t.Any],
                apply: t.Callable[[TrafficRouter], bool], restore: t.Callable[[TrafficRouter, t.Any], None]) -> bool:
        """APPLY on each balancer in order; on a failure RESTORE the SNAPSHOT on each one reached, then raise."""
        reached = []  # type: t.List[t.Tuple[str, TrafficRouter, t.Any]]
        changed = False
        for name, router in self.balancers:
            try:
                before = snapshot(router)
            except PlatformError as exc:
                raise self._failed(exc, name, step, reached, restore)
            reached.append((name, router, before))
            try:
                changed = bool(apply(router)) or changed
            except PlatformError as exc:
                raise self._failed(exc, name, step, reached, restore)
        return changed

    def _failed(self, exc: PlatformError, name: str, step: str, reached: t.List[t.Tuple[str, TrafficRouter, t.Any]],
                restore: t.Callable[[TrafficRouter, t.Any], None]) -> PlatformError:
        not_restored = []
        for other, router, before in reversed(reached):
            try:
                restore(router, before)
            except PlatformError as undo_exc:
                not_restored.append("%s (%s)" % (other, undo_exc))
        if not_restored:
            outcome = "NOT restored on %s: check these balancers by hand" % "; ".join(not_restored)
        elif reached:
            outcome = "undone on %s, every balancer routes as before the step" % ", ".join(n for n, r, b in reached)
        else:
            outcome = "no balancer was changed"
        return type(exc)("balancer %s failed to %s: %s; %s" % (name, step, exc, outcome))

    def _server_snapshot(self, target: Target) -> t.Callable[[TrafficRouter], t.Tuple[str, int]]:
        def snapshot(router: TrafficRouter) -> t.Tuple[str, int]:
            copy = _copy(target)
            router.refresh([copy])
            return copy.state, copy.weight
        return snapshot

    @staticmethod
    def _restore_server(target: Target) -> t.Callable[[TrafficRouter, t.Tuple[str, int]], None]:
        def restore(router: TrafficRouter, before: t.Tuple[str, int]) -> None:
            state, weight = before
            if state == "maint":
                router.disable(target)
            elif state == "drain":
                # back to draining without waiting for its sessions (it was draining before the step)
                with contextlib.suppress(PlatformTimeoutError):
                    router.drain(target, 0)
            else:
                router.enable(target)  # ready, or down by its health check (the admin state was ready)
            if router.supports("weights"):
                router.set_weight(target, weight)
        return restore

    def _server_step(self, step: str, target: Target, apply: t.Callable[[TrafficRouter], bool]) -> bool:
        return self._on_all("%s %s/%s" % (step, target.backend, target.server), self._server_snapshot(target), apply,
                            self._restore_server(target))

    def drain(self, target: Target, timeout: float) -> bool:
        deadline = self.clock() + timeout

        def start_draining(router: TrafficRouter) -> bool:
            try:
                return router.drain(target, 0)
            except PlatformTimeoutError:
                return True  # sessions still open: waited for below, once every balancer stopped sending new ones

        changed = self._server_step("drain", target, start_draining)

        def wait_drained(router: TrafficRouter) -> bool:
            router.drain(target, max(0.0, deadline - self.clock()))
            return False

        # the wait is part of the step: a balancer that does not drain in time makes it fail (and be undone) on all
        self._server_step("drain", target, wait_drained)
        return changed

    def enable(self, target: Target) -> bool:
        return self._server_step("enable", target, lambda router: router.enable(target))

    def disable(self, target: Target) -> bool:
        return self._server_step("disable", target, lambda router: router.disable(target))

    def set_weight(self, target: Target, weight: int) -> bool:
        return self._server_step("set the weight %d of" % weight, target,
                                 lambda router: router.set_weight(target, weight))

    def wait_up(self, target: Target, timeout: float) -> None:
        deadline = self.clock() + timeout
        for name, router in self.balancers:
            try:
                router.wait_up(target, max(0.0, deadline - self.clock()))
            except PlatformError as exc:
                raise type(exc)("balancer %s: %s" % (name, exc))

    def switch_traffic(self, color: str) -> bool:
        def restore(router: TrafficRouter, before: t.Optional[str]) -> None:
            if before:
                router.switch_traffic(before)

        return self._on_all("switch traffic to %s" % color, lambda router: router.active_color(),
                            lambda router: router.switch_traffic(color), restore)

    # ------------------------------------------------------------------ counters
    def traffic_meter(self, targets: t.List[Target], frontends: t.Optional[t.List[str]] = None,
                      interval: float = 0.25, factory: t.Optional[t.Callable[..., t.Any]] = None) -> t.Any:
        meters = []
        for name, router in self.balancers:
            meter = router.traffic_meter(targets, frontends=frontends, interval=interval, factory=factory)
            if meter is None:
                return None
            meters.append((name, meter))
        return SummedMeter(meters)


class SummedMeter:
    """The meters of every balancer: requests and errors summed, downtime the longest one any balancer saw."""

    def __init__(self, meters: t.List[t.Tuple[str, t.Any]]) -> None:
        self.meters = meters
        self.result = None  # type: t.Optional[t.Dict[str, t.Any]]

    def stop(self) -> t.Dict[str, t.Any]:
        if self.result is None:
            self.result = summed_measurements([(name, meter.stop()) for name, meter in self.meters])
        return self.result


def summed_measurements(measured: t.List[t.Tuple[str, t.Dict[str, t.Any]]]) -> t.Dict[str, t.Any]:
    """One ``measured`` dict from each balancer's; unmeasured (source null) as soon as one balancer was not."""
    for name, one in measured:
        if not one.get("source"):
            return {"source": None, "reason": "balancer %s: %s" % (name, one.get("reason") or "not measured")}
    result = {"source": ",".join(one["source"] for dummy, one in measured),
              "balancers": dict((name, one) for name, one in measured),
              "frontends": sorted(set(f for dummy, one in measured for f in one.get("frontends", []))),
              "window_seconds": max(one["window_seconds"] for dummy, one in measured),
              "downtime_seconds": max(one["downtime_seconds"] for dummy, one in measured),
              "samples": min(one["samples"] for dummy, one in measured),
              "sample_interval": max(one["sample_interval"] for dummy, one in measured)}
    for key in SUMMED_COUNTERS:
        result[key] = sum(one.get(key, 0) for dummy, one in measured)
    warnings = ["%s: %s" % (name, one["warning"]) for name, one in measured if one.get("warning")]
    if warnings:
        result["warning"] = "; ".join(warnings)
    return result
