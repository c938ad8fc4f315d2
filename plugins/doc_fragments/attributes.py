# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Attribute documentation shared by the collection's modules."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
"""

    # Modules that only read state
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: This action does not modify state.
  diff_mode:
    support: N/A
    details: This action does not modify state.
"""

    # Every module of the collection is in the action group meshos.release.release (meta/runtime.yml)
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/meshos.release.release) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - meshos.release.release
"""

    # Modules in both the release group and the platform group (rollout_strategy, rollback)
    ACTION_GROUP_PLATFORM = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/meshos.release.release) or C(group/meshos.release.platform) in C(module_defaults) to set defaults
        for this module; the C(platform) group holds the modules that share the platform options.
    support: full
    membership:
      - meshos.release.release
      - meshos.release.platform
"""
