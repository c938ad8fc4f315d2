# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Changelog sections grouped by commit type, and an idempotent Keep-a-Changelog CHANGELOG.md update."""

from __future__ import annotations

import re

DEFAULT_SECTIONS = {"feat": "Features", "fix": "Bug fixes", "perf": "Performance", "revert": "Reverts"}
BREAKING_TITLE = "Breaking changes"
HEADER = (
    "# Changelog\n\n"
    "All notable changes to this project will be documented in this file.\n\n"
    "The format is based on [Keep a Changelog](https://keepachangelog.com/en/1.1.0/),\n"
    "and this project adheres to [Semantic Versioning](https://semver.org/spec/v2.0.0.html).\n"
)


def _entry(text, commit, commit_url):
    line = text
    if commit.scope:
        line = "**%s:** %s" % (commit.scope, line)
    if commit_url and commit.sha:
        line += " ([%s](%s))" % (commit.sha[:7], commit_url.replace("{sha}", commit.sha))
    return line


def _bullet(text):
    lines = text.split("\n")
    return "- " + lines[0] + "".join("\n  " + rest if rest else "\n" for rest in lines[1:])


def group(commits, sections=None, commit_url=None):
    """Ordered ``[(title, [entry, ...]), ...]``: breaking changes first, then the configured types in order."""
    sections = DEFAULT_SECTIONS if sections is None else sections
    breaking = []
    by_type = {key: [] for key in sections}
    for commit in commits:
        if commit.type is None:
            continue
        if commit.breaking:
            breaking.append(_entry(commit.breaking_description or commit.subject, commit, commit_url))
        if commit.type in by_type:
            by_type[commit.type].append(_entry(commit.subject, commit, commit_url))
    groups = []
    if breaking:
        groups.append((BREAKING_TITLE, breaking))
    for key, title in sections.items():
        if by_type[key]:
            groups.append((title, by_type[key]))
    return groups


def render_section(version, date, groups, compare_url=None):
    """The Markdown section for one release (ends with a newline)."""
    title = "## [%s] - %s" % (version, date)
    out = [title, ""]
    if not groups:
        out += ["No user-facing changes.", ""]
    for name, entries in groups:
        out.append("### %s" % name)
        out.append("")
        out.extend(_bullet(entry) for entry in entries)
        out.append("")
    text = "\n".join(out)
    if compare_url:
        text += "[%s]: %s\n" % (version, compare_url)
    return text


def has_section(text, version):
    return re.search(r"^## \[%s\]" % re.escape(str(version)), text, re.M) is not None


def prepend(existing, section, version):
    """CHANGELOG.md content with ``section`` added above the newest release; unchanged if the version is there."""
    if existing is not None and has_section(existing, version):
        return existing
    if not existing or not existing.strip():
        return HEADER + "\n" + section
    match = re.search(r"^## (?!\[Unreleased\])", existing, re.M | re.I)
    if match:
        return existing[:match.start()] + section + "\n" + existing[match.start():]
    return existing.rstrip("\n") + "\n\n" + section


FAILED_MARK = "(FAILED: never reached production)"


def mark_failed(text, versions):
    """``text`` with the heading of each version in ``versions`` marked as a failed release (once: idempotent)."""
    if not text or not versions:
        return text
    wanted = set(str(v) for v in versions)
    lines = text.split("\n")
    for index, line in enumerate(lines):
        found = re.match(r"## \[([^\]]+)\]", line)
        if found and found.group(1) in wanted and FAILED_MARK not in line:
            lines[index] = line.rstrip() + " " + FAILED_MARK
    return "\n".join(lines)
