# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: the gate's signal sources now live in ``gate/sources.py``.

Kept only for bench/health_gate_bench.py; new code imports ``gate.sources``.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.gate.sources import (  # noqa: F401 pylint: disable=unused-import
    SourceError,
    fetch_many,
)
