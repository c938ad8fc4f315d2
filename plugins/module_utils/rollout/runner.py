# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner: ``Rollout`` (core + one mixin per strategy), ``status``, and the module glue (spec, build, measure).

Modules call ``build_runner`` (options -> platform factory -> state store -> Rollout) and ``measured_run``.
"""

from __future__ import annotations

import traceback
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLOR_ROUTE,
    COUNTERS,
    ConfigError,
    Platform,
    PlatformError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.factory import build_platform
from ansible_collections.meshos.release.plugins.module_utils.platform.options import (
    rollout_argument_spec,
    rollout_required_if,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import check_version
from ansible_collections.meshos.release.plugins.module_utils.rollout.blue_green import BlueGreenMixin
from ansible_collections.meshos.release.plugins.module_utils.rollout.canary import CanaryMixin
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import (
    DEFAULT_STEPS,
    RolloutFailed,
    parse_batch_size,
    validate_canary,
)
from ansible_collections.meshos.release.plugins.module_utils.rollout.core import RunnerCore
from ansible_collections.meshos.release.plugins.module_utils.rollout.native import NativeMixin, check_native_strategy
from ansible_collections.meshos.release.plugins.module_utils.rollout.restore import RestoreMixin
from ansible_collections.meshos.release.plugins.module_utils.rollout.rollback import RollbackMixin
from ansible_collections.meshos.release.plugins.module_utils.rollout.rolling import RollingMixin
from ansible_collections.meshos.release.plugins.module_utils.state.backend import build_backend
from ansible_collections.meshos.release.plugins.module_utils.state.store import StateError, StateStore


class Rollout(RollingMixin, BlueGreenMixin, CanaryMixin, RollbackMixin, RestoreMixin, NativeMixin, RunnerCore):
    """Strategies and rollback over ``platform.fleet`` and ``platform.router`` (``platform/base.py``).

    With ``platform.native`` (a backend whose controller rolls by itself) rolling, blue-green, canary, rollback and
    verify_backup go to it (``native.py``); a strategy it does not name was refused by ``build_runner``.
    """

    def rolling(self, version: str, *args: t.Any, **kwargs: t.Any) -> t.Dict[str, t.Any]:
        if self.p.native is not None:
            _refuse_artifact(kwargs.get("artifact", args[0] if args else None))
            return self.native_rolling(check_version(version))
        return RollingMixin.rolling(self, version, *args, **kwargs)

    def blue_green(self, version: str, *args: t.Any, **kwargs: t.Any) -> t.Dict[str, t.Any]:
        if self.p.native is not None:
            _refuse_artifact(kwargs.get("artifact", args[0] if args else None))
            return self.native_blue_green(check_version(version), kwargs.get("phase", args[4] if len(args) > 4
                                                                             else "full"))
        return BlueGreenMixin.blue_green(self, version, *args, **kwargs)

    def canary(self, action: str, version: t.Optional[str], *args: t.Any, **kwargs: t.Any) -> t.Dict[str, t.Any]:
        if self.p.native is not None:
            _refuse_artifact(kwargs.get("artifact", args[0] if args else None))
            initial = kwargs.get("initial_traffic", args[2] if len(args) > 2 else 5)
            steps = kwargs.get("steps", args[3] if len(args) > 3 else None)
            validate_canary(initial, list(steps or DEFAULT_STEPS))
            return self.native_canary(action, check_version(version) if version else None, initial,
                                      list(steps or DEFAULT_STEPS))
        return CanaryMixin.canary(self, action, version, *args, **kwargs)

    def rollback(self, strategy: t.Optional[str], version: t.Optional[str], *args: t.Any, **kwargs: t.Any
                 ) -> t.Dict[str, t.Any]:
        if self.p.native is not None:
            return self.native_rollback(check_version(version) if version else None)
        return RollbackMixin.rollback(self, strategy, version, *args, **kwargs)

    def verify_backup(self, version: t.Optional[str], retention: int = 5) -> t.Dict[str, t.Any]:
        if self.p.native is not None:
            return self.native_verify_backup(check_version(version) if version else None)
        return RollbackMixin.verify_backup(self, version, retention)


def _refuse_artifact(artifact: t.Optional[str]) -> None:
    if artifact:
        # an image deploy: silently ignoring a tarball would report a release that never shipped
        raise ConfigError("artifact %s is for platform hosts: platform kubernetes deploys the image of the "
                          "version (option image)" % artifact)


def status(platform: Platform, store: StateStore) -> t.Dict[str, t.Any]:
    """Versions, HAProxy states and weights; ``healthy`` only when nothing is off (no canary weights left)."""
    if platform.native is not None:
        result = platform.native.status()
        op = store.operation or {}
        if op.get("status") == "failed":
            result["problems"].append("last %s of %s failed" % (op.get("kind"), op.get("version")))
            result["healthy"] = False
        result.update(operation=dict((k, v) for k, v in op.items() if k != "steps"),
                      active_color=result.get("active_color"),
                      canary_percent=None, normal_weights={}, last_operation=store.data.get("last_operation"),
                      state_file=store.path, targets=[tg.as_dict() for tg in platform.targets()])
        return result
    targets = platform.targets()
    versions = dict((tg.name, tg.version) for tg in targets)
    color = None
    if platform.router.supports(COLOR_ROUTE):
        try:
            color = platform.router.active_color()
        except ConfigError:
            color = None
    op = store.operation or {}
    normal = store.data.get("normal_weights") or {}
    live = [tg for tg in targets if not tg.color or tg.color == color]
    problems = []
    live_versions = set(versions[tg.name] for tg in live)
    if len(live_versions) > 1:
        problems.append("mixed versions in traffic: %s" % ", ".join(
            "%s=%s" % (tg.name, versions[tg.name]) for tg in live))
    for tg in live:
        if tg.state != "ready":
            problems.append("%s is %s in HAProxy" % (tg.name, tg.state))
        want = normal.get(tg.name)
        if want is not None and tg.weight != want:
            problems.append("%s has weight %d, its normal weight is %d" % (tg.name, tg.weight, want))
    if op.get("status") == "in_progress":
        problems.append("%s %s of %s in progress" % (op.get("strategy"), op.get("kind"), op.get("version")))
    if op.get("status") == "failed":
        problems.append("last %s of %s failed" % (op.get("kind"), op.get("version")))
    return {"changed": False, "targets": [tg.as_dict() for tg in targets], "versions": versions,
            "mixed_versions": len(set(versions.values())) > 1, "active_color": color,
            "canary_percent": op.get("percent") if op.get("strategy") == "canary" else None,
            "healthy": not problems, "problems": problems, "normal_weights": normal,
            "operation": dict((k, v) for k, v in op.items() if k != "steps"),
            "last_operation": store.data.get("last_operation"), "state_file": store.path}


# ---------------------------------------------------------------------------- module glue

def common_argument_spec() -> t.Dict[str, t.Any]:
    """Options shared by rollout_strategy and rollback (the platform doc fragments document them)."""
    return rollout_argument_spec()


def common_required_if() -> t.List[t.Any]:
    """Each backend's required options (``haproxy_socket``/``targets`` for hosts, ``deployment`` for kubernetes)."""
    return rollout_required_if()


def build_runner(params: t.Dict[str, t.Any], check_mode: bool, need_color: bool = False,
                 run_command: t.Optional[t.Callable[..., t.Tuple[int, str, str]]] = None) -> Rollout:
    """Validate the shared options and build the platform (factory) + StateStore + Rollout. ConfigError on bad input."""
    for key in ("drain_timeout", "ready_timeout"):
        if not params[key] > 0:
            raise ConfigError("invalid %s %r: expected seconds > 0" % (key, params[key]))
    if not 0 < params["interval"] <= 10:
        raise ConfigError("invalid interval %r: expected seconds in (0, 10]" % (params["interval"],))
    measure = params.get("measure_interval")
    if measure is not None and not 0.05 <= measure <= 10:
        raise ConfigError("invalid measure_interval %r: expected seconds in [0.05, 10]" % (params["measure_interval"],))
    platform = build_platform(params, need_color=need_color, run_command=run_command)
    if platform.native is not None:
        check_native_strategy(platform.native, params.get("strategy"), params.get("platform") or "hosts")
    if params.get("version") is not None:
        check_version(params["version"])
    parse_batch_size(params["batch_size"], len(platform.fleet.instances()))
    forks = params.get("forks", 1)
    if not isinstance(forks, int) or isinstance(forks, bool) or not 1 <= forks <= 256:
        raise ConfigError("invalid forks %r: expected hosts changed at once, 1 to 256" % (forks,))
    try:
        store = StateStore(build_backend(params, params["state_dir"]), params["environment"], check_mode=check_mode)
    except StateError as exc:
        raise ConfigError(str(exc))
    return Rollout(platform, store, check_mode=check_mode, drain_timeout=params["drain_timeout"],
                   ready_timeout=params["ready_timeout"], manifest=params.get("manifest"),
                   public_key=params.get("public_key"), require_checksum=bool(params.get("require_checksum")),
                   require_signature=bool(params.get("require_signature")), run_command=run_command, forks=forks)


def module_result(module: t.Any, func: t.Callable[[], t.Dict[str, t.Any]]) -> t.Dict[str, t.Any]:
    """FUNC's result, or the module failed with the one-line message (and, for a RolloutFailed, what was restored)."""
    try:
        return func()
    except RolloutFailed as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except (PlatformError, StateError) as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    raise AssertionError("fail_json returned")  # pragma: no cover - AnsibleModule.fail_json exits


def measured_run(runner: Rollout, params: t.Dict[str, t.Any], func: t.Callable[[], t.Dict[str, t.Any]],
                 meter_factory: t.Optional[t.Callable[..., t.Any]] = None) -> t.Dict[str, t.Any]:
    """Run FUNC while sampling HAProxy's counters; the result (or RolloutFailed.result) gets ``traffic``."""
    if runner.check_mode:
        traffic = {"measured": {"source": None, "reason": "check mode: nothing ran"}}
        result = func()
        result["traffic"] = traffic
        return result
    meter = None
    if runner.p.router.supports(COUNTERS):
        meter = runner.p.router.traffic_meter(runner.p.fleet.instances(), frontends=params.get("haproxy_frontends"),
                                              interval=params.get("measure_interval") or 0.25, factory=meter_factory)
    try:
        result = func()
    except RolloutFailed as exc:
        exc.result["traffic"] = {"measured": meter.stop() if meter else _unmeasured()}
        raise
    finally:
        measured = meter.stop() if meter else _unmeasured()
    result["traffic"] = {"measured": measured}
    return result


def _unmeasured() -> t.Dict[str, t.Any]:
    return {"source": None, "reason": "the platform has no HAProxy runtime API to read counters from"}
