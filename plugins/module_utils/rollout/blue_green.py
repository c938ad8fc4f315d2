# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The blue-green strategy (needs the router's ``colors`` capability).
"""

from __future__ import annotations

import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import COLORS, ConfigError
from ansible_collections.meshos.release.plugins.module_utils.platform.releases import check_version
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import PHASES, target_urls


class BlueGreenMixin:
    """Blue-green: prepare the idle color, then switch the route."""

    def blue_green(self, version: str, artifact: t.Optional[str] = None, checksum: t.Optional[str] = None,
                   keep_previous: bool = True, keep_releases: int = 5, phase: str = "full") -> t.Dict[str, t.Any]:
        if phase not in PHASES:
            raise ConfigError("invalid phase %r: expected one of %s" % (phase, ", ".join(PHASES)))
        check_version(version)
        # switch installs nothing: the prepared idle color is checked below
        targets = self._preflight(version if phase != "switch" else None, artifact if phase != "switch" else None,
                                  checksum)
        by_color = dict((c, [tg for tg in targets if tg.color == c]) for c in COLORS)
        for color in COLORS:
            if not by_color[color]:
                raise ConfigError("blue-green needs targets of both colors: none is %s" % color)
        active = self.p.router.active_color()
        if active is None:
            raise ConfigError("the HAProxy route map does not point key 'active' at be_blue or be_green "
                              "(it says %r): switch once to a color before a blue-green deploy"
                              % (self.p.router.active_route(),))
        live = by_color[active]
        if all(self.p.fleet.current_version(tg) == version and tg.state == "ready" for tg in live):
            return self._result(targets, "complete", strategy="blue-green", active_color=active, phase=phase)
        idle = "green" if active == "blue" else "blue"
        current = self.store.operation or {}
        if phase == "switch":
            prepared = (current.get("strategy") == "blue-green" and current.get("status") == "in_progress"
                        and current.get("version") == version and current.get("prepared"))
            if not prepared or any(self.p.fleet.current_version(tg) != version or tg.state != "ready"
                                   for tg in by_color[idle]):
                runs = ", ".join("%s=%s/%s" % (tg.name, self.p.fleet.current_version(tg), tg.state) for tg in by_color[idle])
                raise ConfigError("phase=switch needs the %s color prepared with %s and ready (run phase=prepare "
                                  "and gate it first); it runs %s" % (idle, version, runs))
        op = self.store.begin("deploy", "blue-green", version, targets, {"from_color": active, "to_color": idle}) \
            if not self.check_mode else {"pending": []}

        def run() -> t.Dict[str, t.Any]:
            if phase != "switch":
                todo = [tg for tg in by_color[idle] if self._needs_update(tg, version, op)]
                self._install_all(todo, version, artifact, checksum, op)
                # the idle color serves no traffic: its hosts are updated in parallel
                forced = set(op.get("pending", []))
                self._each(todo, lambda tg: self._update_target(tg, version, None, checksum, force=tg.name in forced))
            if phase == "prepare":
                if not self.check_mode:
                    op["prepared"] = True
                    self.store.save()
                return self._result(targets, "prepared", strategy="blue-green", phase=phase, active_color=active,
                                    idle_color=idle, idle_backend=self.p.router.color_route(idle),
                                    idle_targets=[target_urls(tg) for tg in by_color[idle]])
            self._step(None, "switch_traffic", lambda: self.p.router.switch_traffic(idle), color=idle, from_color=active)
            if not keep_previous:
                for target in live:
                    self._step(target, "disable", lambda tg=target: self.p.router.disable(tg))
            removed = {}
            if not self.check_mode:
                self.store.data["active_color"] = idle
                removed = self._prune(by_color[idle], keep_releases,
                                      [version] + [v for v in op.get("from_versions", {}).values() if v])
                self._finish_deploy(op, "complete", version, targets)
            return self._result(targets, "complete", strategy="blue-green", phase=phase,
                                active_color=active if self.check_mode else idle, previous_color=active,
                                pruned=removed)

        return self._guarded(op, targets, run)
