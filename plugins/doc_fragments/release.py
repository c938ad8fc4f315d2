# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option groups of meshos.release.release_version; each section matches a dict in module_utils/release/options.py."""

from __future__ import annotations


class ModuleDocFragment:
    # GIT_OPTIONS: what a release writes in the repository (changelog, commit, tag) and pushes
    GIT = r"""
options:
  changelog_types:
    description:
      - Commit types shown in the changelog and their section titles, in order (Breaking changes always come first).
      - Default C(feat=Features), C(fix=Bug fixes), C(perf=Performance), C(revert=Reverts).
    type: dict
  commit_url:
    description: When set, each changelog entry links its commit; C({sha}) is replaced by the full commit id.
    type: str
  date:
    description:
      - Release date in the changelog heading and the tag message; default today (UTC).
      - An ISO calendar date C(YYYY-MM-DD) and nothing else (anything else fails, naming the value).
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
  allow_dirty:
    description:
      - Release from a work tree with uncommitted or untracked files. By default the module refuses, naming the paths,
        so that the release is what was committed; its own changelog, manifest directory and artifacts do not count.
      - A run that writes nothing (O(changelog=false), O(tag=false), no O(commit), no O(manifest_dir)) only computes
        the version and is not refused.
    type: bool
    default: false
  allow_detached:
    description: Make the tag (and release commit) on a detached C(HEAD), i.e. on a commit no branch may contain.
    type: bool
    default: false
  unshallow:
    description:
      - In a shallow clone, deepen the repository first with C(git fetch --unshallow --tags) (a network call to the
        clone's remote). Without it a shallow clone fails, because its history and tags may be incomplete.
      - Not done in check mode (which then fails on a shallow clone).
    type: bool
    default: false
  push:
    description:
      - V(auto) pushes the release commit and tag (atomically) when the current branch has an upstream remote,
        V(always) requires an upstream and pushes, V(never) keeps the release local.
      - A rerun on an already released C(HEAD) pushes what is missing on the remote.
      - In check mode nothing is pushed (C(steps.push=pending) for a new release, a C(git push --dry-run) otherwise).
    type: str
    choices: [auto, always, never]
    default: auto
  sign:
    description: Sign the tag (C(git tag -s)) with git's own signing configuration (gpg or ssh C(gpg.format)).
    type: bool
    default: false
"""

    # MANIFEST_OPTIONS: the signed release manifest (create and verify)
    MANIFEST = r"""
options:
  manifest_dir:
    description: Directory for C(release-<version>.json); no manifest is written when unset.
    type: path
  artifacts:
    description: Files whose sha256 goes into the manifest.
    type: list
    elements: path
    default: []
  signing_key:
    description:
      - Private ssh key that signs the manifest (C(release-<version>.json.sig)). The signature is verified right
        after signing, against O(public_key) or, when unset, the public key derived from this key
        (C(ssh-keygen -y)); a key that cannot be used fails the task before any change.
    type: path
  manifest_path:
    description: Manifest to check with O(state=verify).
    type: path
  public_key:
    description:
      - Public ssh key the manifest signature must verify against (O(state=verify)).
      - With O(state=create) and O(signing_key), the key the new signature must verify against (default derived
        from O(signing_key)).
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
"""
