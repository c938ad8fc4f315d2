# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: the strategies now live in ``rollout/`` (``rollout/runner.py`` is the entry point).

Kept only for bench/zero_downtime_bench.py; new code imports ``rollout.runner``.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import (  # noqa: F401 pylint: disable=unused-import
    build_runner,
    common_argument_spec,
    measured_run,
)
