# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-deployment checks: the shared names (error, expectations, severities, the seed's checks and checklist)."""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

EXPECTED = ("empty", "success", "all_pass", "below_threshold", "no_critical")
SCAN_EXPECTED = ("below_threshold", "no_critical")
SEVERITIES = ("critical", "high", "moderate", "low", "info", "unknown")
SCANNERS = ("auto", "npm", "pip-audit")
DEFAULT_THRESHOLD = "high"
# Findings without a rating (pip-audit's JSON has none) count as high by default: a scan that cannot say how bad a
# finding is must not pass it, so an unrated finding blocks until someone rates or fixes it (fail closed).
DEFAULT_UNRATED = "high"

# CVSS v3 qualitative bands (FIRST CVSS v3.1 specification, section 5): name -> (lowest, highest) base score.
# npm calls "medium" "moderate"; "none" is npm's "info".
CVSS_BANDS = {"critical": (9.0, 10.0), "high": (7.0, 8.9), "moderate": (4.0, 6.9), "low": (0.1, 3.9),
              "info": (0.0, 0.0)}
SEVERITY_ALIASES = {"medium": "moderate", "none": "info", "informational": "info"}

DEFAULT_CHECKS = [
    {"name": "git_status", "command": ["git", "status", "--porcelain"], "expected": "empty", "read_only": True},
    {"name": "tests", "command": ["npm", "test"], "expected": "all_pass"},
    {"name": "build", "command": ["npm", "run", "build"], "expected": "success"},
    {"name": "security_scan", "command": ["npm", "audit", "--json"], "expected": "no_critical"},
]
DEFAULT_CHECKLIST = ["code_review_approved", "docs_updated", "changelog_prepared", "stakeholders_notified",
                     "performance_benchmarks_met", "compliance_checks_passed"]

# (regex, group meaning) for common test runner summaries: pytest, mocha, jest, go, tap


class PredeployError(MeshosError):
    """Bad input; one-line message naming the bad value and what is allowed."""


def _tail(text, lines):
    parts = text.splitlines()
    return parts[-lines:] if lines > 0 else []
