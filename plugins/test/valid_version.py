# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Jinja test `meshos.release.valid_version`: the collection's one version rule for playbooks and roles.

The same rule the modules apply (module_utils/_semver.validate_version): a full-string SemVer 2.0 match, no
whitespace or control characters (a trailing newline must not become `releases/5.2.0\\n`), bounded length.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: valid_version
author: meshos release engineering (@meshos)
version_added: 0.2.0
short_description: Is the value a release version the collection accepts
description:
  - True when the value is a full SemVer 2.0 version (C(5.1.0), C(5.1.0-rc.1+build.7)) of at most 128 characters,
    with no whitespace or control characters; the rule every module of the collection applies to versions.
options:
  _input:
    description: The value to test.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Refuse a bad version before anything changes
  ansible.builtin.assert:
    that: version is meshos.release.valid_version
    fail_msg: "invalid version {{ version | to_json }}: expected MAJOR.MINOR.PATCH such as 5.1.0"
"""

RETURN = r"""
_value:
  description: Whether the value is a valid release version.
  type: bool
"""

from ansible_collections.meshos.release.plugins.module_utils.release.semver import SemverError, validate_version


def valid_version(value):
    """True for a value that validate_version accepts."""
    if not isinstance(value, str):
        return False
    try:
        validate_version(value)
    except SemverError:
        return False
    return True


class TestModule:
    """Jinja tests of meshos.release."""

    def tests(self):
        return {"valid_version": valid_version}
