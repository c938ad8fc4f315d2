# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: release creation now lives in ``release/release.py``.

Kept only for tests/integration and bench imports; new code imports ``release.release``.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.release.release import (  # noqa: F401 pylint: disable=unused-import
    ReleaseError,
    create,
    plan,
)
