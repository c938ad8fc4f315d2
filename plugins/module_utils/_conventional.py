# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conventional Commits 1.0.0 parsing and the bump rules derived from it."""

from __future__ import annotations

import re

from ansible_collections.meshos.release.plugins.module_utils._semver import SemverError

_HEADER_RE = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_-]*)(?:\((?P<scope>[^()\r\n]*)\))?(?P<bang>!)?:[ \t]+(?P<subject>\S.*)$")
_BREAKING_RE = re.compile(r"^BREAKING[ -]CHANGE(?::[ \t]*|[ \t]+#)(?P<value>.*)$")
_FOOTER_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*(?::[ \t]|[ \t]#)|BREAKING[ -]CHANGE:)")

DEFAULT_TYPES = {"feat": "minor", "fix": "patch", "perf": "patch"}
BUMP_CHOICES = ("major", "minor", "patch", "none")
_RANK = {"none": 0, "patch": 1, "minor": 2, "major": 3}


class Commit:
    """One parsed commit. ``type`` is lower-cased; ``None`` when the header is not conventional."""

    __slots__ = ("sha", "parents", "type", "scope", "subject", "breaking", "breaking_description", "raw_header")

    def __init__(self, sha, parents, ctype, scope, subject, breaking, breaking_description, raw_header):
        self.sha = sha
        self.parents = parents
        self.type = ctype
        self.scope = scope
        self.subject = subject
        self.breaking = breaking
        self.breaking_description = breaking_description
        self.raw_header = raw_header

    def as_dict(self):
        return {"sha": self.sha, "type": self.type, "scope": self.scope, "subject": self.subject,
                "breaking": self.breaking, "breaking_description": self.breaking_description}


def parse_message(message, sha="", parents=()):
    """Parse one commit message (header, body, footers) into a :class:`Commit`."""
    lines = message.strip("\n").split("\n")
    header = lines[0].strip() if lines else ""
    match = _HEADER_RE.match(header)
    if not match:
        return Commit(sha, tuple(parents), None, None, header, False, None, header)
    breaking = bool(match.group("bang"))
    description = None
    collecting = None
    for line in lines[1:]:
        line = line.rstrip()
        if collecting is not None:
            if _FOOTER_RE.match(line):
                description = "\n".join(collecting).strip()
                collecting = None
            else:
                collecting.append(line)
                continue
        found = _BREAKING_RE.match(line)
        if found and description is None:
            breaking = True
            collecting = [found.group("value").strip()]
    if collecting is not None:
        description = "\n".join(collecting).strip()
    subject = match.group("subject").strip()
    if breaking and not description:
        description = subject
    scope = match.group("scope")
    return Commit(sha, tuple(parents), match.group("type").lower(), scope.strip() if scope else None,
                  subject, breaking, description, header)


def validate_types(types):
    """Merge a user type->bump table over the defaults, lower-casing the types."""
    merged = dict(DEFAULT_TYPES)
    for key, value in (types or {}).items():
        if value not in BUMP_CHOICES:
            raise SemverError("types[%s]=%r is invalid: use one of %s" % (key, value, ", ".join(BUMP_CHOICES)))
        merged[str(key).lower()] = value
    return merged


def bump_for(commits, types=None, zero_major=False, breaking_on_zero="minor"):
    """The bump the commits call for and why: ``(bump, reason)``; bump is ``none`` when nothing triggers one.

    On 0.x (``zero_major``) a breaking change bumps ``breaking_on_zero`` (minor by default, as semver allows
    anything to change in initial development).
    """
    table = DEFAULT_TYPES if types is None else types
    best = "none"
    reason = None
    for commit in commits:
        if commit.type is None:
            continue
        if commit.breaking:
            kind = breaking_on_zero if zero_major else "major"
            why = "breaking change in %s: %s" % (commit.sha[:12] or "commit", commit.raw_header)
            if zero_major and kind != "major":
                why += " (0.x: breaking changes bump %s)" % kind
        else:
            kind = table.get(commit.type, "none")
            why = "%s commit %s: %s" % (commit.type, commit.sha[:12] or "", commit.raw_header)
        if _RANK[kind] > _RANK[best]:
            best, reason = kind, why
            if best == "major":
                break
    return best, reason


def count_types(commits):
    counts = {}
    for commit in commits:
        key = commit.type or "other"
        counts[key] = counts.get(key, 0) + 1
    return counts
