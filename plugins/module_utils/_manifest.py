# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: the release manifest now lives in ``release/manifest.py``.

Kept only for tests/integration imports; new code imports ``release.manifest``.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.release.manifest import (  # noqa: F401 pylint: disable=unused-import
    ManifestError,
    artifact_entries,
    dumps,
    sign,
    verify,
)
