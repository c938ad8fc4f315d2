# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: the hosts backend now lives in ``platform/hosts.py`` (fleet) and ``platform/releases.py``.

Kept only for tests/integration imports (``install_release``, ``switch_current``, ``sort_versions``); new code imports
the platform modules.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.platform.releases import (  # noqa: F401 pylint: disable=unused-import
    install_release,
    sort_versions,
    switch_current,
)
