# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""release_version's logic: plan the next release from git (two git calls), then apply it (changelog, tag, manifest)."""

from __future__ import annotations

import datetime
import os

from ansible_collections.meshos.release.plugins.module_utils import _changelog, _git, _manifest
from ansible_collections.meshos.release.plugins.module_utils._conventional import (
    bump_for, count_types, validate_types,
)
from ansible_collections.meshos.release.plugins.module_utils._semver import (
    BUMPS, SemverError, TagPattern, Version, next_prerelease, validate_identifier,
)

BUMP_OPTIONS = ("auto",) + BUMPS


class ReleaseError(Exception):
    """Bad input or a release that must not be made; the message is one line."""


def _today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def _bump_between(old, new):
    if old is None or new.major != old.major:
        return "major" if old is not None else "initial"
    if new.minor != old.minor:
        return "minor"
    if new.patch != old.patch:
        return "patch"
    return "prerelease"


def read_history(run, path, pattern):
    """``(tags merged into HEAD, commits since the last final release, HEAD sha)`` with two git calls.

    The commit walk excludes every final release tag, so it stops where the window meets released history and costs
    the size of the window, not of the history; its boundary shows which release tags HEAD contains. When that is
    not conclusive (a boundary commit that carries no release tag, i.e. an unmerged tag shares history with HEAD, or
    HEAD is not after a release tag), the precise and slower ``for-each-ref --merged=HEAD`` listing decides.
    """
    tags = _git.release_tags(run, path, pattern)
    final_shas = set(t[2] for t in tags if not t[1].is_prerelease)
    commits, boundary = _git.commits_excluding(run, path, sorted(final_shas))
    if commits and boundary <= final_shas:
        in_window = set(c.sha for c in commits)
        merged = [t for t in tags if (t[2] in boundary and not t[1].is_prerelease) or t[2] in in_window]
        return merged, commits, commits[0].sha
    if not commits and final_shas:
        head_sha = _git.head(run, path)
        if head_sha in final_shas:
            return [t for t in tags if t[2] == head_sha], commits, head_sha
    merged = _git.release_tags(run, path, pattern, merged=True)
    finals = [t for t in merged if not t[1].is_prerelease]
    last_final = max(finals, key=lambda t: t[1]) if finals else None
    commits = _git.commits_since(run, path, last_final[2] if last_final else None)
    return merged, commits, commits[0].sha if commits else last_final[2]


def plan(run, path, bump="auto", version=None, prerelease=None, build=None, tag_pattern="v{version}",
         types=None, changelog_types=None, breaking_on_zero="minor", initial_version="0.1.0",
         commit_url=None, date=None):
    """Compute the next release without changing anything. Returns a dict (see the module's RETURN)."""
    try:
        pattern = TagPattern(tag_pattern)
        if bump not in BUMP_OPTIONS:
            raise ReleaseError("bump %r is invalid: use one of %s" % (bump, ", ".join(BUMP_OPTIONS)))
        if breaking_on_zero not in ("minor", "major"):
            raise ReleaseError("breaking_on_zero %r is invalid: use minor or major" % (breaking_on_zero,))
        explicit = Version.parse(version) if version else None
        if prerelease:
            validate_identifier(prerelease, "prerelease")
        if build:
            validate_identifier(build, "build")
        first = Version.parse(initial_version)
        table = validate_types(types)
    except SemverError as exc:
        raise ReleaseError(str(exc))
    if date is None:
        date = _today()
    elif not isinstance(date, str) or len(date) != 10:
        raise ReleaseError("date %r is invalid: use YYYY-MM-DD" % (date,))
    sections = _changelog.DEFAULT_SECTIONS if changelog_types is None else dict(
        (str(k).lower(), v) for k, v in changelog_types.items())

    tags, commits, head_sha = read_history(run, path, pattern)
    highest = max(tags, key=lambda t: t[1]) if tags else None
    finals = [t for t in tags if not t[1].is_prerelease]
    last_final = max(finals, key=lambda t: t[1]) if finals else None

    result = {
        "released": False, "version": None, "previous_version": str(highest[1]) if highest else None,
        "previous_tag": highest[0] if highest else None, "bump": "none", "bump_reason": None,
        "changelog": "", "changes": {}, "tag": None, "commit": head_sha,
        "commits": {"count": len(commits), "types": count_types(commits),
                    "since": last_final[0] if last_final else None},
    }
    head_versions = [t[1] for t in tags if t[2] == head_sha]
    wants_prerelease = bool(prerelease) or bool(explicit and explicit.is_prerelease)
    head_final = [v for v in head_versions if not v.is_prerelease]
    if head_final or (wants_prerelease and head_versions):
        done = max(head_final or head_versions)
        result.update(version=str(done), tag=pattern.format(done),
                      msg="nothing to release: HEAD %s is already released as %s" % (head_sha[:12], pattern.format(done)))
        if explicit and explicit != done and not (explicit > highest[1]):
            raise ReleaseError("version %s is not greater than the last release %s" % (explicit, highest[1]))
        return result

    base = last_final[1] if last_final else None
    if explicit is not None:
        if highest and explicit <= highest[1]:
            raise ReleaseError("version %s is not greater than the last release %s (%s): a release version must go up"
                               % (explicit, highest[1], highest[0]))
        target = explicit
        kind = _bump_between(base, explicit.core)
        reason = "explicit version %s" % explicit
    else:
        if base is None:
            if bump == "auto":
                core, kind, reason = first, "initial", "first release (no tag matching %s yet)" % tag_pattern
            else:
                core, kind, reason = Version(0, 0, 0).bump(bump), bump, "first release, requested %s bump" % bump
        else:
            if bump == "auto":
                kind, reason = bump_for(commits, table, zero_major=base.major == 0, breaking_on_zero=breaking_on_zero)
                if kind == "none":
                    result["msg"] = ("nothing to release: no commits since %s" % last_final[0] if not commits else
                                     "nothing to release: %d commit(s) since %s, none of a type that bumps the version"
                                     % (len(commits), last_final[0]))
                    return result
            else:
                kind, reason = bump, "requested %s bump" % bump
            core = base.bump(kind)
        if highest and highest[1].is_prerelease and highest[1].core >= core:
            # a pending pre-release line absorbs smaller bumps: 5.1.0-rc.1 + fix -> 5.1.0-rc.2 / 5.1.0
            core = highest[1].core
            reason += "; continues %s" % highest[0]
        target = next_prerelease(core, prerelease, [t[1] for t in tags]) if prerelease else core
        if build:
            target = target.with_build(build)
        if highest and target <= highest[1]:
            raise ReleaseError("next version %s would not be greater than the last release %s: choose another "
                               "prerelease label or an explicit version" % (target, highest[1]))

    groups = _changelog.group(commits, sections, commit_url)
    section = _changelog.render_section(target, date, groups)
    result.update(
        released=True, version=str(target), bump=kind, bump_reason=reason, changelog=section,
        changes=dict((title, entries) for title, entries in groups), tag=pattern.format(target), date=date,
        msg="release %s (%s)" % (pattern.format(target), reason),
    )
    return result


def _resolve(base, relpath):
    return relpath if os.path.isabs(relpath) else os.path.join(base, relpath)


def apply(run, path, planned, check_mode=False, changelog=True, changelog_path="CHANGELOG.md", commit=False,
          tag=True, sign=False, manifest_dir=None, artifacts=None, signing_key=None, now=None):
    """Write what ``plan`` computed. Every step is idempotent; nothing is written in check mode.

    Returns ``(result, diff)`` where result is ``planned`` plus changed, manifest_path and the per-step states.
    """
    result = dict(planned)
    result.update(changed=False, manifest_path=None, changelog_path=None, signature_path=None, steps={})
    diff = None
    if not planned["released"]:
        if manifest_dir and planned["version"]:
            candidate = os.path.join(manifest_dir, _manifest.manifest_name(planned["version"]))
            result["manifest_path"] = candidate if os.path.exists(candidate) else None
        return result, diff
    version = planned["version"]
    # validate everything before the first write so a bad input changes nothing
    entries = _manifest.artifact_entries(artifacts) if manifest_dir else []
    if manifest_dir and signing_key and not os.path.isfile(signing_key):
        raise ReleaseError("signing_key %s does not exist" % signing_key)
    existing_tag = _git.tag_target(run, path, planned["tag"]) if tag else None
    if existing_tag and existing_tag != planned["commit"]:
        raise ReleaseError("tag %s already exists on commit %s, not on HEAD %s"
                           % (planned["tag"], existing_tag[:12], planned["commit"][:12]))

    if changelog:
        file_path = _resolve(path, changelog_path)
        result["changelog_path"] = file_path
        before = None
        if os.path.exists(file_path):
            with open(file_path, "rb") as handle:
                before = handle.read().decode("utf-8")
        after = _changelog.prepend(before, planned["changelog"], version)
        diff = {"before": before or "", "after": after, "before_header": file_path, "after_header": file_path}
        if after != before:
            result["changed"] = True
            result["steps"]["changelog"] = "updated"
            if not check_mode:
                _manifest.write_atomic(file_path, after)
                if commit:
                    rel = os.path.relpath(file_path, path)
                    result["commit"] = _git.commit_file(run, path, rel, "chore(release): %s" % version)
                    result["steps"]["commit"] = "created"
        else:
            result["steps"]["changelog"] = "unchanged"

    if tag:
        if existing_tag == result["commit"]:
            result["steps"]["tag"] = "unchanged"
        elif existing_tag:
            raise ReleaseError("tag %s already exists on commit %s, not on %s"
                               % (planned["tag"], existing_tag[:12], result["commit"][:12]))
        else:
            result["changed"] = True
            result["steps"]["tag"] = "created"
            if not check_mode:
                message = "Release %s\n\n%s" % (version, planned["changelog"])
                _git.create_tag(run, path, planned["tag"], message, result["commit"], sign=sign)

    if manifest_dir:
        manifest_path = os.path.join(manifest_dir, _manifest.manifest_name(version))
        result["manifest_path"] = manifest_path
        stamp = now or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = {
            "version": version, "previous_version": planned["previous_version"], "tag": planned["tag"],
            "commit": result["commit"], "date": stamp, "bump": planned["bump"],
            "bump_reason": planned["bump_reason"], "changelog": planned["changelog"], "artifacts": entries,
            "commits": planned["commits"],
        }
        old = None
        if os.path.exists(manifest_path):
            try:
                old = _manifest.load(manifest_path)[1]
            except _manifest.ManifestError:
                old = None
        sig_path = manifest_path + ".sig" if signing_key else None
        result["signature_path"] = sig_path
        if old is not None and _manifest.same_release(old, data) and (not sig_path or os.path.exists(sig_path)):
            result["steps"]["manifest"] = "unchanged"
            result["manifest"] = old
        else:
            result["changed"] = True
            result["steps"]["manifest"] = "written"
            result["manifest"] = data
            if not check_mode:
                content = _manifest.dumps(old if old is not None and _manifest.same_release(old, data) else data)
                _manifest.write_atomic(manifest_path, content)
                if signing_key:
                    _manifest.write_atomic(sig_path, _manifest.sign(run, signing_key, content))
                    result["steps"]["signature"] = "written"
    return result, diff


def create(run, path, check_mode=False, **options):
    """plan + apply, with errors of the helpers turned into :class:`ReleaseError`."""
    apply_keys = ("changelog", "changelog_path", "commit", "tag", "sign", "manifest_dir", "artifacts", "signing_key", "now")
    apply_options = dict((k, options.pop(k)) for k in apply_keys if k in options)
    try:
        planned = plan(run, path, **options)
        return apply(run, path, planned, check_mode=check_mode, **apply_options)
    except (_git.GitError, _manifest.ManifestError, SemverError) as exc:
        raise ReleaseError(str(exc))
