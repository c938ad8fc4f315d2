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
    C(BREAKING-CHANGE:) footer) is major, then the O(types) table (default C(feat) minor, C(fix), C(perf) and
    C(revert) patch). Types are case-insensitive. While the last release is 0.x a breaking change bumps
    O(breaking_on_zero) (minor by default, as semver allows anything to change in initial development)."
  - "Reverts: a C(revert:) header and git's own C(Revert \"<header>\") header (with its C(This reverts commit <sha>.)
    body) are commits of type C(revert), listed under C(Reverts) in the changelog. A revert and the commit it reverts
    that are both unreleased cancel out: neither drives the bump nor appears in the changelog (a revert of a revert
    keeps the original), as conventional-changelog and semantic-release do."
  - "Pre-releases: O(prerelease=rc) gives C(5.1.0-rc.1), then C(5.1.0-rc.2); the next run without O(prerelease) gives
    the final C(5.1.0). A pending pre-release line absorbs smaller bumps. Changelog sections of pre-releases and of the
    final release cover the commits since the last final release."
  - "The first release (no matching tag) is O(initial_version) with O(bump=auto), otherwise C(0.0.0) bumped."
  - "Failed releases (O(failed_versions)): their tags stay (a version is never reused) but they are not the previous
    version. See O(failed_versions)."
  - "Fails closed before any change: a work tree with uncommitted or untracked files (other than the module's own
    changelog, manifest directory and artifacts) unless O(allow_dirty=true); a shallow clone, whose missing history
    and tags would give a wrong last release, unless O(unshallow=true) deepens it (C(git fetch --unshallow --tags));
    a detached C(HEAD) when a tag or commit is to be made, unless O(allow_detached=true); an O(date) or O(version)
    that is not exactly an ISO date or a semantic version."
  - "All or nothing: the steps run in the order changelog, release commit (O(commit=true)), manifest, signature
    (verified at once against O(public_key), or the public half of O(signing_key)), tag, push. A failure before the
    push undoes what the run did (the tag is deleted, the release commit is removed only while it is still C(HEAD),
    the changelog and manifest are restored) and the error says what was undone. A tag therefore means a complete
    release; a rerun after an interrupted run completes it (including writing a missing manifest or signature for a
    tag already on C(HEAD)) instead of reporting nothing to release."
  - "Push (O(push=auto), the default): when the current branch has an upstream remote, the release commit and the
    tag are pushed to it atomically (C(git push --atomic)); a failed push fails the task with the remote's answer,
    the local release stays complete, and a rerun only pushes. O(push=always) fails when there is no upstream,
    O(push=never) never pushes."
extends_documentation_fragment:
  - meshos.release.release.git
  - meshos.release.release.manifest
  - meshos.release.attributes
  - meshos.release.attributes.action_group
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
      - Explicit version. Must be exactly a SemVer 2.0 version (no C(v) prefix, spaces or control characters, at most
        128 characters) and strictly greater than the last release, else the module fails and changes nothing.
        Re-running for a version that already tags C(HEAD) changes nothing.
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
  failed_versions:
    description:
      - Versions whose release tag exists but that never reached production (the pipeline takes them from its audit
        log). Each entry must be exactly a semantic version, else the module fails naming it and changes nothing.
      - Their tags are not the previous version. RV(previous_version) is the highest tag not in this list, the
        changelog section and RV(commits) cover the commits since the last final release not in this list (so a
        failed release's changes are in the next release's notes), and O(bump=auto) computes the bump against that
        release.
      - Versions are never reused, so the new version is still greater than every tag, failed ones included. When the
        computed version is not greater than the newest failed version, the same bump is applied to the newest failed
        version instead (V(5.0.0) good, V(5.1.0) failed, commits with a C(feat) give V(5.2.0); a failed pre-release
        such as V(5.1.0-rc.1) gives its final V(5.1.0)). An explicit O(version) that is in this list fails.
      - "When the module writes a release's changelog, the heading of each listed version found there gets the
        suffix C(FAILED: never reached production) in parentheses, once."
      - The version being released now must not be listed.
    type: list
    elements: str
    default: []
  initial_version:
    description: Version of the first release when no tag matches O(tag_pattern) and O(bump=auto).
    type: str
    default: 0.1.0
  types:
    description:
      - Commit type to bump table merged over the defaults C(feat=minor), C(fix=patch), C(perf=patch),
        C(revert=patch).
      - Values are V(major), V(minor), V(patch) or V(none).
      - The key C(*) sets the bump of every conventional type not in the table (unset, they bump nothing). Messages
        that are not Conventional Commits never bump.
      - The EXAMPLES give the tables of semantic-release, commitizen and git-cliff.
    type: dict
  breaking_on_zero:
    description: Bump a breaking change makes while the last release is 0.x.
    type: str
    choices: [minor, major]
    default: minor
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

- name: Tag a CI checkout (shallow clone, detached HEAD); a detached HEAD has no upstream, so nothing is pushed
  meshos.release.release_version:
    path: "{{ ci_project_dir }}"
    changelog: false
    unshallow: true
    allow_detached: true

- name: Release the branch and push the release commit and tag to its upstream, failing when there is none
  meshos.release.release_version:
    path: /srv/src/meshos
    commit: true
    push: always

- name: Release after a failed 5.1.0 (tagged, never reached production); it is marked failed in the changelog
  meshos.release.release_version:
    path: /srv/src/meshos
    failed_versions: ["5.1.0"]

- name: Cut the next release candidate
  meshos.release.release_version:
    path: /srv/src/meshos
    prerelease: rc

# Types tables of three common conventions (each replayed against a generated history of 250 releases in the test
# suite, tests/integration/test_release_replay.py, predicting every tag).
- name: semantic-release defaults (feat minor; fix, perf and revert patch; breaking major) - the module's defaults
  meshos.release.release_version:
    path: /srv/src/meshos

- name: commitizen (cz_conventional_commits) - refactor bumps patch, reverts do not bump
  meshos.release.release_version:
    path: /srv/src/meshos
    types:
      refactor: patch
      revert: none

- name: git-cliff defaults - every conventional type bumps at least patch (feat minor, breaking major)
  meshos.release.release_version:
    path: /srv/src/meshos
    types:
      "*": patch

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
  description: Highest release tag version reachable from C(HEAD) before this release, not counting O(failed_versions).
  returned: state=create
  type: str
  sample: 5.0.1
previous_tag:
  description: Tag of RV(previous_version).
  returned: state=create
  type: str
  sample: v5.0.1
skipped_versions:
  description: Versions of O(failed_versions) whose tags are reachable from C(HEAD) and were skipped as previous version.
  returned: state=create
  type: list
  elements: str
  sample: ["5.1.0"]
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
    cancelled:
      description: Commits left out because a revert and the commit it reverts are both in the window.
      type: int
  sample: {"count": 3, "types": {"feat": 1, "fix": 1, "chore": 1}, "since": "v5.0.1", "cancelled": 0}
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
  description:
    - What each step did (C(updated)/C(unchanged), C(created), C(written), C(pushed), C(pending) in check mode,
      C(fetched) for O(unshallow)).
  returned: state=create
  type: dict
  sample: {"changelog": "updated", "tag": "created", "manifest": "written", "signature": "written", "push": "pushed"}
push:
  description: Where the release was (or would be) pushed.
  returned: when a push was attempted
  type: dict
  contains:
    remote:
      description: The upstream remote.
      type: str
    refs:
      description: The remote branch and tag refs.
      type: list
      elements: str
  sample: {"remote": "origin", "refs": ["refs/heads/main", "refs/tags/v5.1.0"]}
verified:
  description: The manifest passed every check.
  returned: state=verify
  type: bool
  sample: true
signature_verified:
  description:
    - The signature was checked (a key was given) and matches.
    - With O(state=create), the manifest signature made or kept by this run verified against the public key.
  returned: state=verify, or state=create with O(signing_key)
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

from ansible_collections.meshos.release.plugins.module_utils.release.manifest import ManifestError, verify
from ansible_collections.meshos.release.plugins.module_utils.release.options import release_version_argument_spec
from ansible_collections.meshos.release.plugins.module_utils.release.release import ReleaseError, create


def _runner(module):
    def run(argv, cwd=None, data=None):
        # GIT_TERMINAL_PROMPT=0: a push or fetch that needs credentials fails instead of waiting for a terminal
        return module.run_command(argv, cwd=cwd, data=data, binary_data=True, errors="surrogate_then_replace",
                                  environ_update={"GIT_TERMINAL_PROMPT": "0"})
    return run


def main():
    module = AnsibleModule(
        argument_spec=release_version_argument_spec(),
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

    option_names = ("bump", "version", "prerelease", "build", "tag_pattern", "initial_version", "failed_versions",
                    "types", "breaking_on_zero", "changelog_types", "commit_url", "date", "changelog", "changelog_path",
                    "commit", "tag", "sign", "manifest_dir", "artifacts", "signing_key", "public_key", "allow_dirty",
                    "allow_detached", "unshallow", "push")
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
