# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A runbook finding and the small helpers every step shares (standard library only)."""

from __future__ import annotations

import datetime

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

SEVERITIES = ("critical", "warning", "info")
STAMP = "%Y-%m-%dT%H:%M:%SZ"


class RunbookError(MeshosError):
    """Bad runbook input (one line naming the value and what is allowed)."""


def finding(severity, step, message, target=None):
    if severity not in SEVERITIES:
        raise RunbookError("severity %r is not one of %s" % (severity, ", ".join(SEVERITIES)))
    return {"severity": severity, "step": step, "target": target, "message": message}


def truncate(text, length):
    """Jinja's truncate: cut at a word boundary and end with '...' when longer than length."""
    text = "" if text is None else str(text)
    if len(text) <= length:
        return text
    cut = text[:length - 3]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "..."


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def parse_stamp(value):
    return datetime.datetime.strptime(value, STAMP).replace(tzinfo=datetime.timezone.utc)


def number(value, name, minimum=None):
    """A setting as float, or a RunbookError naming it."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise RunbookError("%s must be a number (got %r)" % (name, value))
    if minimum is not None and result < minimum:
        raise RunbookError("%s must be >= %s (got %r)" % (name, minimum, value))
    return result


def result_status(findings, resolved):
    if resolved:
        return "resolved"
    if any(f["severity"] in ("critical", "warning") for f in findings):
        return "problems_found"
    return "healthy"
