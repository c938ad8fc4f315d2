# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils._semver import (
    SemverError, TagPattern, Version, next_prerelease, validate_identifier,
)


@pytest.mark.parametrize("text", ["1.2.3", "0.0.0", "5.1.0-rc.1", "1.0.0-alpha.beta+exp.sha.5114f85", "1.0.0+20130313144700"])
def test_parse_roundtrip(text):
    assert str(Version.parse(text)) == text


@pytest.mark.parametrize("text", ["", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "1.2.3+", "1.2.3.4", "x"])
def test_parse_rejects(text):
    with pytest.raises(SemverError, match="not a semantic version"):
        Version.parse(text)
    assert Version.try_parse(text) is None


def test_precedence_chain_from_the_spec():
    chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"]
    versions = [Version.parse(v) for v in chain]
    assert sorted(reversed(versions)) == versions
    for lower, higher in zip(versions, versions[1:]):
        assert lower < higher and higher > lower and lower != higher and lower <= higher and higher >= lower


def test_build_metadata_ignored_for_precedence():
    assert Version.parse("1.0.0+a") == Version.parse("1.0.0+b")
    assert hash(Version.parse("1.0.0+a")) == hash(Version.parse("1.0.0"))


@pytest.mark.parametrize("kind,expected", [("major", "6.0.0"), ("minor", "5.2.0"), ("patch", "5.1.1")])
def test_bump(kind, expected):
    assert str(Version.parse("5.1.0-rc.1+b").bump(kind)) == expected


def test_bump_invalid():
    with pytest.raises(SemverError, match="'huge' is not one of major, minor, patch"):
        Version(1, 0, 0).bump("huge")


def test_next_prerelease_sequence():
    core = Version.parse("5.1.0")
    assert str(next_prerelease(core, "rc", [])) == "5.1.0-rc.1"
    existing = [Version.parse(v) for v in ("5.1.0-rc.1", "5.1.0-rc.2", "5.0.0-rc.9", "5.1.0-beta.7")]
    assert str(next_prerelease(core, "rc", existing)) == "5.1.0-rc.3"
    assert str(next_prerelease(core, "beta", existing)) == "5.1.0-beta.8"


def test_identifiers():
    assert validate_identifier("build.5", "build") == "build.5"
    with pytest.raises(SemverError, match="prerelease 'r c' is invalid"):
        validate_identifier("r c", "prerelease")


def test_tag_pattern():
    pattern = TagPattern("release-{version}")
    assert pattern.ref_glob() == "refs/tags/release-*"
    assert str(pattern.parse("release-1.2.3-rc.1")) == "1.2.3-rc.1"
    assert pattern.parse("release-1.2") is None
    assert pattern.parse("v1.2.3") is None
    assert pattern.format(Version(1, 2, 3)) == "release-1.2.3"
    assert TagPattern("{version}").parse("1.0.0") == Version(1, 0, 0)


@pytest.mark.parametrize("bad", ["v", "v{version}{version}", "v*{version}", None])
def test_tag_pattern_invalid(bad):
    with pytest.raises(SemverError, match="tag_pattern"):
        TagPattern(bad)
