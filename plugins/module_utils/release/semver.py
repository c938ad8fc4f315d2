# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Semantic Versioning 2.0.0: parsing, precedence and bumps (no third-party library)."""

from __future__ import annotations

import re

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

SEMVER_PATTERN = (
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
# \Z, not $: "$" also matches before a trailing newline, which would let "5.2.0\n" through
_SEMVER_RE = re.compile(r"^" + SEMVER_PATTERN + r"\Z")
_SEMVER_FULL_RE = re.compile(SEMVER_PATTERN)
_IDENT_RE = re.compile(r"^[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*\Z")
BUMPS = ("major", "minor", "patch")
MAX_VERSION_LENGTH = 128
_ALLOWED_VERSION = ("use a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] such as 5.1.0 or 5.1.0-rc.1, "
                    "at most %d characters, without a 'v' prefix, spaces or control characters" % MAX_VERSION_LENGTH)


class SemverError(MeshosError, ValueError):
    """An invalid version or identifier; the message is one line."""


class Version:
    """An immutable semantic version with semver precedence (build metadata ignored)."""

    __slots__ = ("major", "minor", "patch", "prerelease", "build")

    def __init__(self, major, minor, patch, prerelease=(), build=()):
        self.major = int(major)
        self.minor = int(minor)
        self.patch = int(patch)
        self.prerelease = tuple(prerelease)
        self.build = tuple(build)

    @classmethod
    def parse(cls, text):
        match = _SEMVER_RE.match(text or "")
        if not match:
            raise SemverError("%r is not a semantic version (expected MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 5.1.0)" % (text,))
        return cls.from_match(match)

    @classmethod
    def from_match(cls, match):
        pre = match.group("prerelease")
        build = match.group("build")
        return cls(match.group("major"), match.group("minor"), match.group("patch"),
                   tuple(pre.split(".")) if pre else (), tuple(build.split(".")) if build else ())

    @classmethod
    def try_parse(cls, text):
        match = _SEMVER_RE.match(text or "")
        return cls.from_match(match) if match else None

    @property
    def is_prerelease(self):
        return bool(self.prerelease)

    @property
    def core(self):
        return Version(self.major, self.minor, self.patch)

    def _key(self):
        if not self.prerelease:
            pre = (1,)
        else:
            # numeric identifiers sort before alphanumeric ones and compare numerically
            pre = (0,) + tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease) + ((-1, 0, ""),)
        return (self.major, self.minor, self.patch, pre)

    def __eq__(self, other):
        return isinstance(other, Version) and self._key() == other._key()

    def __ne__(self, other):
        return not self == other

    def __lt__(self, other):
        return self._key() < other._key()

    def __le__(self, other):
        return self._key() <= other._key()

    def __gt__(self, other):
        return self._key() > other._key()

    def __ge__(self, other):
        return self._key() >= other._key()

    def __hash__(self):
        return hash(self._key())

    def __str__(self):
        text = "%d.%d.%d" % (self.major, self.minor, self.patch)
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def __repr__(self):
        return "Version(%r)" % str(self)

    def bump(self, kind):
        """The next core version for ``major``/``minor``/``patch`` (pre-release and build dropped)."""
        if kind == "major":
            return Version(self.major + 1, 0, 0)
        if kind == "minor":
            return Version(self.major, self.minor + 1, 0)
        if kind == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise SemverError("bump %r is not one of %s" % (kind, ", ".join(BUMPS)))

    def with_prerelease(self, prerelease):
        return Version(self.major, self.minor, self.patch, tuple(prerelease.split(".")) if prerelease else (), self.build)

    def with_build(self, build):
        return Version(self.major, self.minor, self.patch, self.prerelease, tuple(build.split(".")) if build else ())


def _shown(value, limit=40):
    """repr of a bad value, truncated so the message stays one short line."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "... (%d characters)" % len(value)
    return repr(value)


def validate_version(value, what="version"):
    """``value`` when it is exactly a SemVer 2.0 version string, else :class:`SemverError` naming it (one line).

    The whole string must match (``5.2.0\\n`` and ``5.1`` are refused, as is a ``v`` prefix: strip a tag prefix
    before calling), and it is at most 128 characters long.
    """
    if not isinstance(value, str):
        raise SemverError("%s %s is not a semantic version: %s" % (what, _shown(value), _ALLOWED_VERSION))
    if len(value) > MAX_VERSION_LENGTH:
        raise SemverError("%s %s is too long: %s" % (what, _shown(value), _ALLOWED_VERSION))
    # fullmatch, not match: "$" would accept a trailing newline
    if _SEMVER_FULL_RE.fullmatch(value) is None:
        raise SemverError("%s %s is not a semantic version: %s" % (what, _shown(value), _ALLOWED_VERSION))
    return value


def validate_identifier(value, what):
    """Check a pre-release or build identifier such as ``rc`` or ``build.5``."""
    if not _IDENT_RE.match(value or ""):
        raise SemverError("%s %r is invalid: use dot-separated [0-9A-Za-z-] identifiers, e.g. rc or build.5" % (what, value))
    return value


def next_prerelease(core, label, existing):
    """``core-label.N`` with N one above the highest existing ``core-label.N`` (1 when none)."""
    validate_identifier(label, "prerelease")
    parts = tuple(label.split("."))
    highest = 0
    for version in existing:
        if version.core == core and version.prerelease[:len(parts)] == parts and len(version.prerelease) == len(parts) + 1:
            last = version.prerelease[-1]
            if last.isdigit():
                highest = max(highest, int(last))
    return core.with_prerelease("%s.%d" % (label, highest + 1))


class TagPattern:
    """A tag naming scheme such as ``v{version}`` or ``release-{version}``."""

    def __init__(self, pattern):
        if not isinstance(pattern, str) or pattern.count("{version}") != 1:
            raise SemverError("tag_pattern %r must contain {version} exactly once, e.g. v{version}" % (pattern,))
        self.pattern = pattern
        self.prefix, self.suffix = pattern.split("{version}")
        if any(c in self.prefix + self.suffix for c in " ~^:?*[\\"):
            raise SemverError("tag_pattern %r contains characters git does not allow in tag names" % (pattern,))
        self._re = re.compile("^" + re.escape(self.prefix) + SEMVER_PATTERN + re.escape(self.suffix) + "\\Z")

    def ref_glob(self):
        """The for-each-ref pattern that pre-filters tags on the git side."""
        return "refs/tags/" + self.prefix + "*" + self.suffix

    def parse(self, tag):
        match = self._re.match(tag)
        return Version.from_match(match) if match else None

    def format(self, version):
        return self.prefix + str(version) + self.suffix
