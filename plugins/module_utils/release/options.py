# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of meshos.release.release_version, one dict per group (standard library only).

==================  ======================================  ==================================================
dict                documented in                           what
==================  ======================================  ==================================================
VERSION_OPTIONS     the module's own DOCUMENTATION          state, repository, how the next version is computed
GIT_OPTIONS         doc fragment meshos.release.release.git changelog (content), commit, tag, push
MANIFEST_OPTIONS    meshos.release.release.manifest         the signed manifest (create and verify)
==================  ======================================  ==================================================
"""

from __future__ import annotations

import copy
import typing as t

VERSION_OPTIONS = dict(
    state=dict(type="str", choices=["create", "verify"], default="create"),
    path=dict(type="path"),
    bump=dict(type="str", choices=["auto", "patch", "minor", "major"], default="auto"),
    version=dict(type="str"),
    prerelease=dict(type="str"),
    build=dict(type="str"),
    tag_pattern=dict(type="str", default="v{version}"),
    initial_version=dict(type="str", default="0.1.0"),
    failed_versions=dict(type="list", elements="str", default=[]),
    types=dict(type="dict"),
    breaking_on_zero=dict(type="str", choices=["minor", "major"], default="minor"),
)  # type: t.Dict[str, t.Any]

GIT_OPTIONS = dict(
    changelog_types=dict(type="dict"),
    commit_url=dict(type="str"),
    date=dict(type="str"),
    changelog=dict(type="bool", default=True),
    changelog_path=dict(type="str", default="CHANGELOG.md"),
    commit=dict(type="bool", default=False),
    tag=dict(type="bool", default=True),
    allow_dirty=dict(type="bool", default=False),
    allow_detached=dict(type="bool", default=False),
    unshallow=dict(type="bool", default=False),
    push=dict(type="str", choices=["auto", "always", "never"], default="auto"),
    sign=dict(type="bool", default=False),
)  # type: t.Dict[str, t.Any]

MANIFEST_OPTIONS = dict(
    manifest_dir=dict(type="path"),
    artifacts=dict(type="list", elements="path", default=[]),
    # key paths, not key material
    signing_key=dict(type="path", no_log=False),
    manifest_path=dict(type="path"),
    public_key=dict(type="path", no_log=False),
    allowed_signers=dict(type="path"),
    signer_identity=dict(type="str", default="meshos-release"),
    artifact_dir=dict(type="path"),
)  # type: t.Dict[str, t.Any]


def release_version_argument_spec() -> t.Dict[str, t.Any]:
    """A fresh argument spec of release_version (deep copies: AnsibleModule may annotate them)."""
    spec = {}  # type: t.Dict[str, t.Any]
    for group in (VERSION_OPTIONS, GIT_OPTIONS, MANIFEST_OPTIONS):
        spec.update(copy.deepcopy(group))
    return spec
