# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conventional Commits 1.0.0 parsing and the bump rules derived from it."""

from __future__ import annotations

import re

from ansible_collections.meshos.release.plugins.module_utils.release.semver import SemverError

_HEADER_RE = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_-]*)(?:\((?P<scope>[^()\r\n]*)\))?(?P<bang>!)?:[ \t]+(?P<subject>\S.*)$")
_BREAKING_RE = re.compile(r"^BREAKING[ -]CHANGE(?::[ \t]*|[ \t]+#)(?P<value>.*)$")
_FOOTER_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*(?::[ \t]|[ \t]#)|BREAKING[ -]CHANGE:)")
# git's own revert header and body (``git revert``): Revert "<original header>" / This reverts commit <sha>.
_GIT_REVERT_RE = re.compile(r'^Revert "(?P<header>.+)"$')
_REVERTS_RE = re.compile(r"^This reverts commit (?P<sha>[0-9a-fA-F]{7,64})\b", re.M)

# revert bumps patch like semantic-release's default rules; ``*`` (when set) is the bump of every other type
DEFAULT_TYPES = {"feat": "minor", "fix": "patch", "perf": "patch", "revert": "patch"}
ANY_TYPE = "*"
BUMP_CHOICES = ("major", "minor", "patch", "none")
_RANK = {"none": 0, "patch": 1, "minor": 2, "major": 3}


class Commit:
    """One parsed commit. ``type`` is lower-cased; ``None`` when the header is not conventional."""

    __slots__ = ("sha", "parents", "type", "scope", "subject", "breaking", "breaking_description", "raw_header",
                 "reverts")

    def __init__(self, sha, parents, ctype, scope, subject, breaking, breaking_description, raw_header, reverts=None):
        self.sha = sha
        self.parents = parents
        self.type = ctype
        self.scope = scope
        self.subject = subject
        self.breaking = breaking
        self.breaking_description = breaking_description
        self.raw_header = raw_header
        # for a revert: the sha (possibly abbreviated, lower case) named by "This reverts commit <sha>.", else None
        self.reverts = reverts

    def as_dict(self):
        return {"sha": self.sha, "type": self.type, "scope": self.scope, "subject": self.subject,
                "breaking": self.breaking, "breaking_description": self.breaking_description}


def parse_message(message, sha="", parents=()):
    """Parse one commit message (header, body, footers) into a :class:`Commit`."""
    lines = message.strip("\n").split("\n")
    header = lines[0].strip() if lines else ""
    match = _HEADER_RE.match(header)
    reverted = _REVERTS_RE.search(message)
    reverted = reverted.group("sha").lower() if reverted else None
    if not match:
        git_revert = _GIT_REVERT_RE.match(header)
        if git_revert:
            # the subject of a revert is the header it reverts, which is how the changelog lists it
            return Commit(sha, tuple(parents), "revert", None, git_revert.group("header"), False, None, header,
                          reverted)
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
    ctype = match.group("type").lower()
    return Commit(sha, tuple(parents), ctype, scope.strip() if scope else None,
                  subject, breaking, description, header, reverted if ctype == "revert" else None)


def drop_reverted(commits):
    """The commits minus every revert whose reverted commit is in the same list, and minus that commit.

    A revert names its commit by sha (``This reverts commit <sha>.``, abbreviations allowed) or, without one, by
    the reverted header. Newest first, so a revert of a revert cancels the first revert and the original stays
    (conventional-changelog and semantic-release filter reverted commits the same way).
    """
    commits = list(commits)
    dropped = set()
    for index, commit in enumerate(commits):
        if index in dropped or commit.type != "revert":
            continue
        target = None
        for other in range(index + 1, len(commits)):  # a revert follows what it reverts: older entries only
            if other in dropped:
                continue
            if commit.reverts:
                if commits[other].sha.lower().startswith(commit.reverts):
                    target = other
                    break
            elif commits[other].raw_header == commit.subject:
                target = other
                break
        if target is not None:
            dropped.update((index, target))
    return [commit for index, commit in enumerate(commits) if index not in dropped]


def validate_types(types):
    """Merge a user type->bump table over the defaults, lower-casing the types."""
    merged = dict(DEFAULT_TYPES)
    for key, value in (types or {}).items():
        if value not in BUMP_CHOICES:
            raise SemverError("types[%s]=%r is invalid: use one of %s" % (key, value, ", ".join(BUMP_CHOICES)))
        if not isinstance(key, str) or not (key == ANY_TYPE or re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", key)):
            raise SemverError("types key %r is invalid: use a commit type such as feat or refactor, or * for every "
                              "other type" % (key,))
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
            kind = table.get(commit.type, table.get(ANY_TYPE, "none"))
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
