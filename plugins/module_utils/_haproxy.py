# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: the HAProxy client and traffic meter now live in ``platform/haproxy.py``.

Kept only for tests/integration imports; new code imports ``platform.haproxy``.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import (  # noqa: F401 pylint: disable=unused-import
    HAProxyClient,
    TrafficMeter,
)
