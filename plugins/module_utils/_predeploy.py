# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility: the pre-deployment checks now live in ``predeploy/`` (``checks.py``, ``evaluate.py``, ``scan.py``,
``common.py``).

Kept for code written against the old path; new code imports from ``predeploy``.
"""

from __future__ import annotations

# pylint: disable=unused-import
from ansible_collections.meshos.release.plugins.module_utils.predeploy.checks import (  # noqa: F401
    check_evidence,
    normalize_checks,
    run_checks,
    run_command,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.common import (  # noqa: F401
    CVSS_BANDS,
    DEFAULT_CHECKLIST,
    DEFAULT_CHECKS,
    PredeployError,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.evaluate import (  # noqa: F401
    evaluate,
    parse_coverage,
    parse_percent,
    parse_test_summary,
)
from ansible_collections.meshos.release.plugins.module_utils.predeploy.scan import (  # noqa: F401
    judge_scan,
    parse_audit,
    parse_threshold,
)
