# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan the next release from git: the tag history, the commits since the last tag, the bump and the changelog
(two git calls). ``release.py`` applies a plan.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.meshos.release.plugins.module_utils.release import changelog as _changelog, git as _git
from ansible_collections.meshos.release.plugins.module_utils.release.conventional import (
    bump_for,
    count_types,
    drop_reverted,
    validate_types,
)
from ansible_collections.meshos.release.plugins.module_utils.release.semver import (
    BUMPS,
    SemverError,
    TagPattern,
    Version,
    next_prerelease,
    validate_identifier,
    validate_version,
)
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError


BUMP_OPTIONS = ("auto",) + BUMPS


PUSH_OPTIONS = ("auto", "always", "never")


_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


class ReleaseError(MeshosError):
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


def read_history(run, path, pattern, skip=()):
    """``(tags merged into HEAD, commits since the last final release, HEAD sha)`` with two git calls.

    Versions in ``skip`` (failed releases) do not count as releases here: the window runs back past their tags to
    the last final release not in ``skip``, so their commits are part of it.

    The commit walk excludes every final release tag, so it stops where the window meets released history and costs
    the size of the window, not of the history; its boundary shows which release tags HEAD contains. When that is
    not conclusive (a boundary commit that carries no release tag, i.e. an unmerged tag shares history with HEAD, or
    HEAD is not after a release tag), the precise and slower ``for-each-ref --merged=HEAD`` listing decides.
    """
    tags = _git.release_tags(run, path, pattern)
    final_shas = set(t[2] for t in tags if not t[1].is_prerelease and t[1] not in skip)
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
    finals = [t for t in merged if not t[1].is_prerelease and t[1] not in skip]
    last_final = max(finals, key=lambda t: t[1]) if finals else None
    commits = _git.commits_since(run, path, last_final[2] if last_final else None)
    return merged, commits, commits[0].sha if commits else last_final[2]


def check_date(date):
    """``date`` when it is an ISO calendar date YYYY-MM-DD (it goes into the changelog and the tag message)."""
    if isinstance(date, str) and _DATE_RE.match(date):
        try:
            datetime.datetime.strptime(date, "%Y-%m-%d")
            return date
        except ValueError:
            pass
    shown = repr(date[:40]) + "..." if isinstance(date, str) and len(date) > 40 else repr(date)
    raise ReleaseError("date %s is invalid: use an ISO date YYYY-MM-DD such as 2026-01-02" % shown)


def check_inputs(bump="auto", version=None, prerelease=None, build=None, tag_pattern="v{version}", types=None,
                 changelog_types=None, breaking_on_zero="minor", initial_version="0.1.0", commit_url=None, date=None,
                 failed_versions=None):
    """Validate the planning options (no git).

    Returns ``(pattern, explicit version, first version, types table, set of failed Versions)``.
    """
    try:
        pattern = TagPattern(tag_pattern)
        if bump not in BUMP_OPTIONS:
            raise ReleaseError("bump %r is invalid: use one of %s" % (bump, ", ".join(BUMP_OPTIONS)))
        if breaking_on_zero not in ("minor", "major"):
            raise ReleaseError("breaking_on_zero %r is invalid: use minor or major" % (breaking_on_zero,))
        explicit = Version.parse(validate_version(version)) if version is not None else None
        if prerelease:
            validate_identifier(prerelease, "prerelease")
        if build:
            validate_identifier(build, "build")
        first = Version.parse(validate_version(initial_version, "initial_version"))
        table = validate_types(types)
        if failed_versions is not None and not isinstance(failed_versions, (list, tuple)):
            raise ReleaseError("failed_versions %r is invalid: use a list of versions such as ['5.1.0']"
                               % (failed_versions,))
        failed = set(Version.parse(validate_version(v, "failed_versions entry")) for v in failed_versions or ())
    except SemverError as exc:
        raise ReleaseError(str(exc))
    if explicit is not None and explicit in failed:
        raise ReleaseError("version %s is listed in failed_versions: a failed release keeps its number and versions "
                           "are never reused; release a greater version" % explicit)
    if date is not None:
        check_date(date)
    return pattern, explicit, first, table, failed


def plan(run, path, bump="auto", version=None, prerelease=None, build=None, tag_pattern="v{version}",
         types=None, changelog_types=None, breaking_on_zero="minor", initial_version="0.1.0",
         commit_url=None, date=None, failed_versions=None):
    """Compute the next release without changing anything. Returns a dict (see the module's RETURN).

    ``failed_versions``: releases whose tags exist but that never reached production. They are not the previous
    version: the window and the bump start at the newest release not in the list (so their commits are in this
    release's notes), and as versions are never reused a computed version not greater than the newest failed one is
    bumped again from it (same bump kind).
    """
    pattern, explicit, first, table, failed = check_inputs(bump, version, prerelease, build, tag_pattern, types,
                                                           changelog_types, breaking_on_zero, initial_version,
                                                           commit_url, date, failed_versions)
    if date is None:
        date = _today()
    sections = _changelog.DEFAULT_SECTIONS if changelog_types is None else dict(
        (str(k).lower(), v) for k, v in changelog_types.items())

    tags, commits, head_sha = read_history(run, path, pattern, skip=failed)
    # ``top``: every tag, failed or not (a new version must exceed it); ``highest``: the previous good release
    top = max(tags, key=lambda t: t[1]) if tags else None
    skipped = sorted((t for t in tags if t[1] in failed), key=lambda t: t[1])
    good = [t for t in tags if t[1] not in failed]
    highest = max(good, key=lambda t: t[1]) if good else None
    finals = [t for t in good if not t[1].is_prerelease]
    last_final = max(finals, key=lambda t: t[1]) if finals else None
    # a revert and the commit it reverts, both unreleased, cancel out: neither bumps nor reaches the changelog
    effective = drop_reverted(commits)

    result = {
        "released": False, "version": None, "previous_version": str(highest[1]) if highest else None,
        "previous_tag": highest[0] if highest else None, "bump": "none", "bump_reason": None,
        "changelog": "", "changes": {}, "tag": None, "commit": head_sha,
        "skipped_versions": [str(t[1]) for t in skipped],
        "commits": {"count": len(commits), "types": count_types(commits),
                    "since": last_final[0] if last_final else None, "cancelled": len(commits) - len(effective)},
    }
    head_versions = [t[1] for t in good if t[2] == head_sha]
    wants_prerelease = bool(prerelease) or bool(explicit and explicit.is_prerelease)
    head_final = [v for v in head_versions if not v.is_prerelease]
    if head_final or (wants_prerelease and head_versions):
        done = max(head_final or head_versions)
        result.update(version=str(done), tag=pattern.format(done),
                      msg="nothing to release: HEAD %s is already released as %s" % (head_sha[:12], pattern.format(done)))
        if explicit and explicit != done and not (explicit > top[1]):
            raise ReleaseError("version %s is not greater than the last release %s" % (explicit, top[1]))
        return result

    base = last_final[1] if last_final else None
    if explicit is not None:
        if top and explicit <= top[1]:
            raise ReleaseError("version %s is not greater than the last release %s (%s): a release version must go up"
                               % (explicit, top[1], top[0]))
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
                kind, reason = bump_for(effective, table, zero_major=base.major == 0, breaking_on_zero=breaking_on_zero)
                if kind == "none":
                    cancelled = len(commits) - len(effective)
                    result["msg"] = ("nothing to release: no commits since %s" % last_final[0] if not commits else
                                     "nothing to release: %d commit(s) since %s, none of a type that bumps the version%s"
                                     % (len(commits), last_final[0],
                                        " (%d cancelled by reverts)" % cancelled if cancelled else ""))
                    return result
            else:
                kind, reason = bump, "requested %s bump" % bump
            core = base.bump(kind)
        if highest and highest[1].is_prerelease and highest[1].core >= core:
            # a pending pre-release line absorbs smaller bumps: 5.1.0-rc.1 + fix -> 5.1.0-rc.2 / 5.1.0
            core = highest[1].core
            reason += "; continues %s" % highest[0]
        target = next_prerelease(core, prerelease, [t[1] for t in tags]) if prerelease else core
        newest_failed = skipped[-1] if skipped else None
        if newest_failed and target <= newest_failed[1]:
            # versions are never reused: a failed release keeps its number, so the bump starts from it instead
            failed_v = newest_failed[1]
            core = failed_v.core if failed_v.is_prerelease else failed_v.bump(kind if kind in BUMPS else "patch")
            reason += "; %s failed (never reached production) and versions are never reused" % newest_failed[0]
            target = next_prerelease(core, prerelease, [t[1] for t in tags]) if prerelease else core
        if build:
            target = target.with_build(build)
        if top and target <= top[1]:
            raise ReleaseError("next version %s would not be greater than the last release %s: choose another "
                               "prerelease label or an explicit version" % (target, top[1]))

    groups = _changelog.group(effective, sections, commit_url)
    section = _changelog.render_section(target, date, groups)
    result.update(
        released=True, version=str(target), bump=kind, bump_reason=reason, changelog=section,
        changes=dict((title, entries) for title, entries in groups), tag=pattern.format(target), date=date,
        msg="release %s (%s)" % (pattern.format(target), reason),
    )
    return result
