# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils.release.semver import (
    SemverError, TagPattern, Version, next_prerelease, validate_identifier, validate_version,
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


# ---------------------------------------------------------------- one version rule (validate_version)

@pytest.mark.parametrize("text", ["5.2.0", "0.0.0", "5.1.0-rc.1", "1.0.0-alpha.beta+exp.sha.5114f85", "1.0.0+21"])
def test_validate_version_accepts_and_returns_the_string(text):
    assert validate_version(text) == text


@pytest.mark.parametrize("value,shown", [
    ("5.2.0\n", r"'5.2.0\n'"), ("5.1", "'5.1'"), ("v5.1.0", "'v5.1.0'"), (" 5.1.0", "' 5.1.0'"),
    ("5.1.0 ", "'5.1.0 '"), ("5.1.0\x00", r"'5.1.0\x00'"), ("5.1.0\t", r"'5.1.0\t'"), ("", "''"),
    ("01.2.3", "'01.2.3'"), ("1.2.3-01", "'1.2.3-01'"), (None, "None"), (5, "5"), ("5.1.0;rm", "'5.1.0;rm'"),
])
def test_validate_version_rejects_with_one_line_naming_the_value(value, shown):
    with pytest.raises(SemverError) as exc:
        validate_version(value, what="pipeline_version")
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("pipeline_version %s is not a semantic version: use " % shown), message
    assert "MAJOR.MINOR.PATCH" in message and "'v' prefix" in message


def test_validate_version_length_limit_and_truncated_value():
    core = "1.2.3-" + "a" * 122
    assert validate_version(core) == core  # exactly 128
    with pytest.raises(SemverError) as exc:
        validate_version(core + "b")
    message = str(exc.value)
    assert "is too long" in message and "(129 characters)" in message and len(message) < 300


def test_parse_and_identifiers_refuse_a_trailing_newline():
    with pytest.raises(SemverError):
        Version.parse("5.2.0\n")
    with pytest.raises(SemverError):
        validate_identifier("rc\n", "prerelease")
    assert TagPattern("v{version}").parse("v1.2.3\n") is None


try:
    from hypothesis import given, strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev requirement
    given = None

if given is not None:
    @given(st.text(max_size=40))
    def test_validate_version_property(text):
        """Accepted strings are exactly the ones that parse and print back unchanged; nothing with whitespace or
        control characters is ever accepted."""
        try:
            accepted = validate_version(text)
        except SemverError as exc:
            assert "\n" not in str(exc)
            return
        assert accepted == text == str(Version.parse(text))
        assert not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text)
