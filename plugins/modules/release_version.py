#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_version
short_description: Next semantic version from git tags and Conventional Commits, changelog, tag and signed manifest
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Reads a git repository with one C(git) call listing the release tags and one C(git log) for the commits since the
    last final release, and computes the next semantic version from Conventional Commits, or takes an explicit
    O(version). The log stops at the release tags, so its cost follows the new commits, not the size of the history;
    only when a tag that C(HEAD) does not contain shares history with it (or C(HEAD) is behind a release tag) does a
    precise C(git for-each-ref --merged=HEAD) listing decide. No git library is needed.
  - The last release is the highest tag matching O(tag_pattern) whose version is valid semver; other tags are ignored.
  - With O(state=create) it prepends the release section to C(CHANGELOG.md) (Keep a Changelog), creates an annotated
    (optionally signed) tag whose message is the changelog section, and writes C(release-<version>.json) with the
    sha256 of each artifact, signed with C(ssh-keygen -Y sign) (namespace C(meshos-release)) when O(signing_key) is set.
  - With O(state=verify) it checks a manifest's signature and artifact checksums and fails when either does not match.
  - "Nothing to release (no commits, or only commits that trigger no bump, or C(HEAD) already tagged) is a result of its
    own: RV(released=false), C(changed=false), never an error."
  - "Bump rules with O(bump=auto): a breaking change (C(!) after the type/scope, or a C(BREAKING CHANGE:) /
    C(BREAKING-CHANGE:) footer) is major, then the O(types) table (default C(feat) minor, C(fix) and C(perf) patch).
    Types are case-insensitive. While the last release is 0.x a breaking change bumps O(breaking_on_zero) (minor by
    default, as semver allows anything to change in initial development)."
  - "Pre-releases: O(prerelease=rc) gives C(5.1.0-rc.1), then C(5.1.0-rc.2); the next run without O(prerelease) gives
    the final C(5.1.0). A pending pre-release line absorbs smaller bumps. Changelog sections of pre-releases and of the
    final release cover the commits since the last final release."
  - "The first release (no matching tag) is O(initial_version) with O(bump=auto), otherwise C(0.0.0) bumped."
extends_documentation_fragment:
  - meshos.release.attributes
attributes:
  check_mode:
    support: full
    details: Computes and returns everything (version, changelog text, tag name, manifest content) and writes nothing.
  diff_mode:
    support: full
    details: Shows the C(CHANGELOG.md) change.
options:
  state:
    description:
      - V(create) plans and makes the release; V(verify) checks the manifest at O(manifest_path).
    type: str
    choices: [create, verify]
    default: create
  path:
    description: Root of the git work tree. Required with O(state=create).
    type: path
  bump:
    description: V(auto) follows Conventional Commits; the others force that bump. Ignored when O(version) is set.
    type: str
    choices: [auto, patch, minor, major]
    default: auto
  version:
    description:
      - Explicit version. Must be valid semver and strictly greater than the last release, else the module fails and
        changes nothing. Re-running for a version that already tags C(HEAD) changes nothing.
    type: str
  prerelease:
    description: Pre-release label such as V(rc); the next free C(<label>.N) of the computed version is used.
    type: str
  build:
    description: Build metadata appended as C(+<build>) (ignored for precedence, as semver says).
    type: str
  tag_pattern:
    description: Tag naming scheme; must contain C({version}) once, e.g. V(v{version}) or V(release-{version}).
    type: str
    default: v{version}
  initial_version:
    description: Version of the first release when no tag matches O(tag_pattern) and O(bump=auto).
    type: str
    default: 0.1.0
  types:
    description:
      - Commit type to bump table merged over the defaults C(feat=minor), C(fix=patch), C(perf=patch).
      - Values are V(major), V(minor), V(patch) or V(none).
    type: dict
  breaking_on_zero:
    description: Bump a breaking change makes while the last release is 0.x.
    type: str
    choices: [minor, major]
    default: minor
  changelog_types:
    description:
      - Commit types shown in the changelog and their section titles, in order (Breaking changes always come first).
      - Default C(feat=Features), C(fix=Bug fixes), C(perf=Performance).
    type: dict
  commit_url:
    description: When set, each changelog entry links its commit; C({sha}) is replaced by the full commit id.
    type: str
  date:
    description: Release date (YYYY-MM-DD) in the changelog heading; default today (UTC).
    type: str
  changelog:
    description: Whether to update the changelog file.
    type: bool
    default: true
  changelog_path:
    description: Changelog file, relative to O(path) unless absolute.
    type: str
    default: CHANGELOG.md
  commit:
    description: Commit the changelog (C(chore(release) <version>)) before tagging, so the tag contains it.
    type: bool
    default: false
  tag:
    description: Whether to create the annotated tag.
    type: bool
    default: true
  sign:
    description: Sign the tag (C(git tag -s)) with git's own signing configuration (gpg or ssh C(gpg.format)).
    type: bool
    default: false
  manifest_dir:
    description: Directory for C(release-<version>.json); no manifest is written when unset.
    type: path
  artifacts:
    description: Files whose sha256 goes into the manifest.
    type: list
    elements: path
    default: []
  signing_key:
    description: Private ssh key that signs the manifest (C(release-<version>.json.sig)).
    type: path
  manifest_path:
    description: Manifest to check with O(state=verify).
    type: path
  public_key:
    description: Public ssh key the manifest signature must verify against (O(state=verify)).
    type: path
  allowed_signers:
    description: An ssh C(allowed_signers) file instead of O(public_key).
    type: path
  signer_identity:
    description: Principal of the signer in the allowed signers.
    type: str
    default: meshos-release
  artifact_dir:
    description: With O(state=verify), look for the artifacts by name in this directory instead of their recorded paths.
    type: path
notes:
  - Needs C(git) on the target; signing and verification need C(ssh-keygen) (OpenSSH 8.1 or later).
seealso:
  - name: Conventional Commits
    description: The commit message convention the bump rules follow.
    link: https://www.conventionalcommits.org/en/v1.0.0/
  - name: Keep a Changelog
    description: The changelog format.
    link: https://keepachangelog.com/en/1.1.0/
"""

EXAMPLES = r"""
- name: Compute and create the next release from Conventional Commits
  meshos.release.release_version:
    path: /srv/src/meshos
  register: release

- name: Release an explicit version with a signed manifest of the artifacts
  meshos.release.release_version:
    path: /srv/src/meshos
    version: 5.1.0
    manifest_dir: /srv/releases
    artifacts:
      - /srv/build/meshapp-5.1.0.tar.gz
    signing_key: /etc/meshos/release_ed25519

- name: Cut the next release candidate
  meshos.release.release_version:
    path: /srv/src/meshos
    prerelease: rc

- name: Refuse a manifest whose signature or checksums do not match
  meshos.release.release_version:
    state: verify
    manifest_path: /srv/releases/release-5.1.0.json
    public_key: /etc/meshos/release_ed25519.pub
    artifact_dir: /srv/artifacts
"""

RETURN = r"""
released:
  description: Whether a new release was (or, in check mode, would be) made.
  returned: state=create
  type: bool
  sample: true
version:
  description: The new version; when nothing is released, the version already on C(HEAD) (or null).
  returned: always
  type: str
  sample: 5.1.0
previous_version:
  description: Highest release tag version reachable from C(HEAD) before this release.
  returned: state=create
  type: str
  sample: 5.0.1
previous_tag:
  description: Tag of RV(previous_version).
  returned: state=create
  type: str
  sample: v5.0.1
bump:
  description: V(major), V(minor), V(patch), V(prerelease), V(initial), or V(none) when nothing is released.
  returned: state=create
  type: str
  sample: minor
bump_reason:
  description: The commit or option that decided the bump.
  returned: state=create
  type: str
  sample: "feat commit 3f2a9c1d0b7e: feat(api): add canary weights"
changelog:
  description: The Markdown changelog section of the release.
  returned: state=create
  type: str
  sample: "## [5.1.0] - 2026-11-25\n\n### Features\n\n- **api:** add canary weights\n"
changes:
  description: Changelog entries by section title (for announcements).
  returned: state=create
  type: dict
  sample: {"Features": ["**api:** add canary weights"], "Bug fixes": ["fix the scheduler race"]}
commits:
  description: Commits since the last final release.
  returned: state=create
  type: dict
  contains:
    count:
      description: Number of commits.
      type: int
    types:
      description: Count per lower-cased type (C(other) for non-conventional messages).
      type: dict
    since:
      description: Tag the commits were counted from (null for the whole history).
      type: str
  sample: {"count": 3, "types": {"feat": 1, "fix": 1, "chore": 1}, "since": "v5.0.1"}
commit:
  description: Commit the tag points (or would point) at.
  returned: state=create
  type: str
  sample: 3f2a9c1d0b7e5a6f4c3b2a1908f7e6d5c4b3a291
tag:
  description: The release tag name.
  returned: state=create
  type: str
  sample: v5.1.0
date:
  description: Date in the changelog heading.
  returned: when a release is made
  type: str
  sample: "2026-11-25"
changelog_path:
  description: Changelog file written (or that would be).
  returned: state=create
  type: str
  sample: /srv/src/meshos/CHANGELOG.md
manifest_path:
  description: The release manifest (null when O(manifest_dir) is unset); for O(state=verify) the checked manifest.
  returned: always
  type: str
  sample: /srv/releases/release-5.1.0.json
signature_path:
  description: Detached ssh signature of the manifest.
  returned: state=create
  type: str
  sample: /srv/releases/release-5.1.0.json.sig
manifest:
  description: Manifest content.
  returned: when a manifest is written, kept or verified
  type: dict
  sample: {"version": "5.1.0", "previous_version": "5.0.1", "artifacts": [{"name": "meshapp-5.1.0.tar.gz", "sha256": "..."}]}
steps:
  description: What each step did (C(updated)/C(unchanged), C(created), C(written)).
  returned: state=create
  type: dict
  sample: {"changelog": "updated", "tag": "created", "manifest": "written"}
verified:
  description: The manifest passed every check.
  returned: state=verify
  type: bool
  sample: true
signature_verified:
  description: The signature was checked (a key was given) and matches.
  returned: state=verify
  type: bool
  sample: true
artifacts:
  description: Artifacts whose checksum was verified.
  returned: state=verify
  type: list
  elements: dict
  sample: [{"name": "meshapp-5.1.0.tar.gz", "path": "/srv/artifacts/meshapp-5.1.0.tar.gz", "sha256": "..."}]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils._manifest import ManifestError, verify
from ansible_collections.meshos.release.plugins.module_utils._release import ReleaseError, create


def _runner(module):
    def run(argv, cwd=None, data=None):
        return module.run_command(argv, cwd=cwd, data=data, binary_data=True, errors="surrogate_then_replace")
    return run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["create", "verify"], default="create"),
            path=dict(type="path"),
            bump=dict(type="str", choices=["auto", "patch", "minor", "major"], default="auto"),
            version=dict(type="str"),
            prerelease=dict(type="str"),
            build=dict(type="str"),
            tag_pattern=dict(type="str", default="v{version}"),
            initial_version=dict(type="str", default="0.1.0"),
            types=dict(type="dict"),
            breaking_on_zero=dict(type="str", choices=["minor", "major"], default="minor"),
            changelog_types=dict(type="dict"),
            commit_url=dict(type="str"),
            date=dict(type="str"),
            changelog=dict(type="bool", default=True),
            changelog_path=dict(type="str", default="CHANGELOG.md"),
            commit=dict(type="bool", default=False),
            tag=dict(type="bool", default=True),
            sign=dict(type="bool", default=False),
            manifest_dir=dict(type="path"),
            artifacts=dict(type="list", elements="path", default=[]),
            signing_key=dict(type="path", no_log=False),
            manifest_path=dict(type="path"),
            public_key=dict(type="path", no_log=False),
            allowed_signers=dict(type="path"),
            signer_identity=dict(type="str", default="meshos-release"),
            artifact_dir=dict(type="path"),
        ),
        required_if=[("state", "create", ["path"]), ("state", "verify", ["manifest_path"])],
        mutually_exclusive=[("public_key", "allowed_signers")],
        supports_check_mode=True,
    )
    p = module.params
    run = _runner(module)
    if p["state"] == "verify":
        try:
            checked = verify(run, p["manifest_path"], public_key=p["public_key"], allowed_signers=p["allowed_signers"],
                             identity=p["signer_identity"], artifact_dir=p["artifact_dir"])
        except ManifestError as exc:
            module.fail_json(msg=str(exc), verified=False, manifest_path=p["manifest_path"])
        module.exit_json(changed=False, verified=True, manifest_path=p["manifest_path"],
                         version=checked["manifest"].get("version"), **checked)

    option_names = ("bump", "version", "prerelease", "build", "tag_pattern", "initial_version", "types",
                    "breaking_on_zero", "changelog_types", "commit_url", "date", "changelog", "changelog_path",
                    "commit", "tag", "sign", "manifest_dir", "artifacts", "signing_key")
    options = dict((name, p[name]) for name in option_names)
    try:
        result, diff = create(run, p["path"], check_mode=module.check_mode, **options)
    except ReleaseError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    if module._diff and diff is not None and result["changed"]:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
