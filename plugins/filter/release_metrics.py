# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters computing the seed's Success Metrics and a release timeline from audit log entries."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.meshos.release.plugins.module_utils._report import (
    metrics_markdown,
    release_timeline,
    success_metrics,
)


def _entries(value, name):
    if isinstance(value, dict) and "entries" in value:
        value = value["entries"]
    if not isinstance(value, list):
        raise AnsibleFilterError("%s expects a list of audit log entries, got %s" % (name, type(value).__name__))
    return value


def release_metrics(entries, environment=None, version=None):
    """Success Metrics table (list of rows plus counts) from audit log entries."""
    return success_metrics(_entries(entries, "release_metrics"), environment=environment, version=version)


def release_metrics_markdown(report):
    """Markdown table from the result of release_metrics."""
    if not isinstance(report, dict) or "metrics" not in report:
        raise AnsibleFilterError("release_metrics_markdown expects the result of release_metrics")
    return metrics_markdown(report)


def release_timeline_filter(entries, version):
    """Timeline, participants and retrospective metrics of one release."""
    if not version:
        raise AnsibleFilterError("release_timeline needs a version, got %r" % (version,))
    return release_timeline(_entries(entries, "release_timeline"), str(version))


class FilterModule:
    def filters(self):
        return {
            "release_metrics": release_metrics,
            "release_metrics_markdown": release_metrics_markdown,
            "release_timeline": release_timeline_filter,
        }
