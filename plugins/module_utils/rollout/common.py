# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the strategies: option validation, the failure type, small helpers (stdlib only, Python 3.9+).
"""

from __future__ import annotations

import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError, PlatformError, Target


STRATEGIES = ("rolling", "blue-green", "canary")
CANARY_ACTIONS = ("start", "advance", "promote", "abort")
PHASES = ("full", "prepare", "switch")
DEFAULT_STEPS = (10, 25, 50, 100)


def parse_batch_size(value: t.Any, total: int) -> int:
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, int(total * pct / 100.0))
        count = int(text)
        if count < 1:
            raise ValueError
        return min(count, total)
    except ValueError:
        raise ConfigError("invalid batch_size %r: expected a count >= 1 (e.g. 2) or a percentage 1-100%% (e.g. 25%%)"
                          % (value,))


def validate_canary(initial_traffic: t.Any, steps: t.Any) -> t.List[int]:
    if isinstance(initial_traffic, bool) or not isinstance(initial_traffic, int) or not 1 <= initial_traffic <= 99:
        raise ConfigError("invalid initial_traffic %r: expected an integer percentage 1-99" % (initial_traffic,))
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ConfigError("invalid steps %r: expected a non-empty list of increasing percentages ending at 100"
                          % (steps,))
    prev = initial_traffic
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 100:
            raise ConfigError("invalid step %r in steps %r: expected integer percentages 1-100" % (step, list(steps)))
        if step <= prev:
            raise ConfigError("steps %r are not increasing: %d follows %d (initial_traffic %d)"
                              % (list(steps), step, prev, initial_traffic))
        prev = step
    if steps[-1] != 100:
        raise ConfigError("steps %r must end at 100 (full promotion)" % (list(steps),))
    return list(steps)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RolloutFailed(PlatformError):
    """A step failed; the fleet was restored (or taken out of traffic) before raising. ``result`` says what."""

    def __init__(self, msg: str, result: t.Dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.result = result


class suppress_platform:
    """Context manager: ignore PlatformError/OSError (best-effort steps while restoring)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: t.Any, exc: t.Any, tb: t.Any) -> bool:
        return exc_type is not None and issubclass(exc_type, (PlatformError, OSError))


def target_urls(target: Target) -> t.Dict[str, t.Any]:
    return {"name": target.name, "server": target.server, "backend": target.backend,
            "ready_url": target.extra.get("ready_url"), "status_url": target.extra.get("status_url")}
