# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""release_version's logic: plan the next release from git (two git calls), then apply it (changelog, tag, manifest)."""

from __future__ import annotations

import datetime
import os
import re

from ansible_collections.meshos.release.plugins.module_utils.release import (
    changelog as _changelog,
    git as _git,
    manifest as _manifest,
)
from ansible_collections.meshos.release.plugins.module_utils.release.semver import SemverError
from ansible_collections.meshos.release.plugins.module_utils.release.plan import (
    PUSH_OPTIONS,
    check_inputs,
    plan,
    ReleaseError,
)


def _resolve(base, relpath):
    return relpath if os.path.isabs(relpath) else os.path.join(base, relpath)


def _read(path):
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return handle.read()


def _restore(path, content):
    """Put a file back as it was (``None``: it did not exist)."""
    if content is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        _manifest.write_atomic(path, content)


def check_tree(run, path, allow_dirty=False, allow_detached=False, unshallow=False, check_mode=False, outputs=(),
               writes_git=True, writes=True):
    """Refuse a shallow clone (or deepen it when asked), a dirty work tree and a detached HEAD before planning.

    ``outputs`` are the module's own files (changelog, manifest directory, artifacts): changes to them are not foreign
    changes; a run that writes nothing (``writes`` false: only the computed version is wanted) may run in a dirty
    tree. Returns the git state (see ``_git.preflight``) plus ``own_changes``.
    """
    info = _git.preflight(run, path)
    info["deepened"] = False
    if info["shallow"]:
        if not unshallow:
            raise ReleaseError("%s is a shallow clone: its history and release tags may be incomplete, so the last "
                               "release cannot be known; deepen it (git fetch --unshallow --tags) or set unshallow=true"
                               % path)
        if check_mode:
            raise ReleaseError("%s is a shallow clone and check mode does not deepen it: run git fetch --unshallow "
                               "--tags first, or run without check mode" % path)
        _git.unshallow(run, path)
        info["deepened"] = True
    top = os.path.realpath(info["toplevel"])
    own = []
    for output in outputs:
        rel = os.path.relpath(os.path.realpath(_resolve(path, output)), top)
        if rel != ".." and not rel.startswith(".." + os.sep) and rel != ".":
            own.append(rel.replace(os.sep, "/"))

    def is_own(change):
        change = change.rstrip("/")
        return any(change == o or change.startswith(o + "/") or o.startswith(change + "/") for o in own)

    foreign = [c for c in info["changes"] if not is_own(c)]
    info["own_changes"] = [c for c in info["changes"] if is_own(c)]
    if foreign and writes and not allow_dirty:
        shown = ", ".join(repr(c) for c in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ReleaseError("the work tree of %s is not clean (%d changed or untracked path(s): %s): commit or stash "
                           "them so the release is what was committed, or set allow_dirty=true" % (path, len(foreign), shown))
    if info["branch"] is None and writes_git and not allow_detached:
        raise ReleaseError("HEAD of %s is detached: the release commit and tag would be on no branch; check out the "
                           "release branch, or set allow_detached=true" % path)
    return info


def _rollback(run, path, undo):
    """Run the undo actions newest first; returns what was undone and what could not be."""
    done, failed = [], []
    for label, action in reversed(undo):
        try:
            action()
            done.append(label)
        except (_git.GitError, _manifest.ManifestError, OSError) as exc:
            failed.append("%s (%s)" % (label, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    text = "undone: %s" % (", ".join(done) or "nothing")
    if failed:
        text += "; NOT undone: %s" % ", ".join(failed)
    return text


def _push_step(run, path, result, push_to, check_mode):
    """Push the release commit to the branch's upstream and the tag, atomically."""
    remote, ref = push_to
    refspecs = ["%s:%s" % (result["commit"], ref), "refs/tags/%s:refs/tags/%s" % (result["tag"], result["tag"])]
    result["push"] = {"remote": remote, "refs": [ref, "refs/tags/" + result["tag"]]}
    try:
        changed = _git.push(run, path, remote, refspecs, dry_run=check_mode)
    except _git.GitError as exc:
        raise ReleaseError("release %s is complete locally but was not pushed: %s; fix the remote and rerun (the rerun "
                           "only pushes)" % (result["tag"], exc))
    result["steps"]["push"] = "pushed" if changed else "unchanged"
    if changed:
        result["changed"] = True


def apply(run, path, planned, check_mode=False, changelog=True, changelog_path="CHANGELOG.md", commit=False,
          tag=True, sign=False, manifest_dir=None, artifacts=None, signing_key=None, public_key=None, now=None,
          push_to=None, changelog_dirty=False, failed_versions=()):
    """Write what ``plan`` computed: changelog, release commit, manifest, signature (verified), tag, then push.

    All or nothing: a failure before the push undoes what this run did (the tag comes last, so a tag means a
    complete release). Every step is idempotent, so a rerun completes an interrupted release; nothing is written in
    check mode. Returns ``(result, diff)`` where result is ``planned`` plus changed, manifest_path and the step states.
    """
    result = dict(planned)
    result.update(changed=False, manifest_path=None, changelog_path=None, signature_path=None, steps={})
    diff = None
    if not planned["released"]:
        if manifest_dir and planned["version"]:
            candidate = os.path.join(manifest_dir, _manifest.manifest_name(planned["version"]))
            result["manifest_path"] = candidate if os.path.exists(candidate) else None
        if push_to and tag and planned.get("tag") and _git.tag_target(run, path, planned["tag"]) == planned["commit"]:
            _push_step(run, path, result, push_to, check_mode)
        return result, diff
    version = planned["version"]
    # validate everything before the first write so a bad input changes nothing
    entries = _manifest.artifact_entries(artifacts) if manifest_dir else []
    pub = None
    if manifest_dir and signing_key:
        if not os.path.isfile(signing_key):
            raise ReleaseError("signing_key %s does not exist" % signing_key)
        if public_key:
            try:
                with open(public_key) as handle:
                    pub = handle.read().strip()
            except (IOError, OSError) as exc:
                raise ReleaseError("cannot read public_key %s: %s" % (public_key, exc.strerror or exc))
            if not pub:
                raise ReleaseError("public_key %s is empty" % public_key)
        else:
            # a signature nobody checks protects nothing: verify with the key's own public half
            pub = _manifest.public_key_of(run, signing_key)
    existing_tag = _git.tag_target(run, path, planned["tag"]) if tag else None
    if existing_tag and existing_tag != planned["commit"]:
        raise ReleaseError("tag %s already exists on commit %s, not on HEAD %s"
                           % (planned["tag"], existing_tag[:12], planned["commit"][:12]))

    undo = []
    try:
        if changelog:
            file_path = _resolve(path, changelog_path)
            result["changelog_path"] = file_path
            raw_before = _read(file_path)
            before = raw_before.decode("utf-8") if raw_before is not None else None
            after = _changelog.mark_failed(_changelog.prepend(before, planned["changelog"], version),
                                           failed_versions or ())
            diff = {"before": before or "", "after": after, "before_header": file_path, "after_header": file_path}
            if after != before:
                result["changed"] = True
                result["steps"]["changelog"] = "updated"
                if not check_mode:
                    _manifest.write_atomic(file_path, after)
                    undo.append(("%s restored" % changelog_path, lambda: _restore(file_path, raw_before)))
            else:
                result["steps"]["changelog"] = "unchanged"
            # an interrupted run may have written the changelog without committing it
            if commit and (after != before or changelog_dirty):
                result["changed"] = True
                result["steps"]["commit"] = "created"
                if not check_mode:
                    rel = os.path.relpath(file_path, path)
                    parent = planned["commit"]
                    made = _git.commit_file(run, path, rel, "chore(release): %s" % version)
                    result["commit"] = made
                    undo.append(("release commit %s removed" % made[:12],
                                 lambda: _git.undo_commit(run, path, made, parent, rel)))

        if manifest_dir:
            _manifest_step(run, result, planned, manifest_dir, entries, signing_key, pub, now, check_mode, undo)

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
                    undo.append(("tag %s deleted" % planned["tag"], lambda: _git.delete_tag(run, path, planned["tag"])))
    except (ReleaseError, _git.GitError, _manifest.ManifestError, SemverError, OSError) as exc:
        if not undo:
            raise
        detail = str(exc) if not isinstance(exc, OSError) else "%s: %s" % (getattr(exc, "filename", ""), exc.strerror)
        raise ReleaseError("release %s not made: %s; %s" % (planned["tag"], detail, _rollback(run, path, undo)))

    if push_to and tag:
        if check_mode:
            result["steps"]["push"] = "pending"
            result["push"] = {"remote": push_to[0], "refs": [push_to[1], "refs/tags/" + planned["tag"]]}
        else:
            _push_step(run, path, result, push_to, check_mode)
    return result, diff


def _manifest_step(run, result, planned, manifest_dir, entries, signing_key, pub, now, check_mode, undo):
    """Write (or keep) the manifest, sign it and verify the signature at once; register the undo actions."""
    version = planned["version"]
    manifest_path = os.path.join(manifest_dir, _manifest.manifest_name(version))
    result["manifest_path"] = manifest_path
    stamp = now or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {
        "version": version, "previous_version": planned["previous_version"], "tag": planned["tag"],
        "commit": result["commit"], "date": stamp, "bump": planned["bump"],
        "bump_reason": planned["bump_reason"], "changelog": planned["changelog"], "artifacts": entries,
        "commits": planned["commits"],
    }
    raw_old, old = None, None
    if os.path.exists(manifest_path):
        try:
            raw_old, old = _manifest.load(manifest_path)
        except _manifest.ManifestError:
            raw_old, old = _read(manifest_path), None
    keep = old is not None and _manifest.same_release(old, data)
    content = raw_old if keep else _manifest.dumps(data).encode("utf-8")
    sig_path = manifest_path + ".sig" if signing_key else None
    result["signature_path"] = sig_path
    result["manifest"] = old if keep else data
    if keep:
        result["steps"]["manifest"] = "unchanged"
    else:
        result["changed"] = True
        result["steps"]["manifest"] = "written"
        if not check_mode:
            _manifest.write_atomic(manifest_path, content)
            undo.append(("manifest %s %s" % (manifest_path, "restored" if raw_old is not None else "removed"),
                         lambda: _restore(manifest_path, raw_old)))
    if not sig_path:
        return
    identity = _manifest.NAMESPACE
    if keep and os.path.exists(sig_path):
        try:
            _manifest.verify_signature(run, content, sig_path, identity, public_key_text=pub)
            result["signature_verified"] = True
            return
        except _manifest.ManifestError:
            pass  # a stale or foreign signature: sign again below
    result["changed"] = True
    result["steps"]["signature"] = "written"
    if check_mode:
        return
    raw_sig = _read(sig_path)
    signature = _manifest.sign(run, signing_key, content)
    _manifest.write_atomic(sig_path, signature)
    undo.append(("signature %s %s" % (sig_path, "restored" if raw_sig is not None else "removed"),
                 lambda: _restore(sig_path, raw_sig)))
    # right after signing: a signature that does not verify with the configured public key fails the release
    _manifest.verify_signature(run, content, sig_path, identity, public_key_text=pub)
    result["signature_verified"] = True


def _hiding(run, name):
    """A runner that does not show the tag ``name`` in tag listings (to re-plan a release whose tag exists)."""
    def hidden(argv, cwd=None, data=None):
        rc, out, err = run(argv, cwd=cwd, data=data)
        if "for-each-ref" in argv and rc == 0:
            out = "".join(line for line in out.splitlines(True) if line.split(_git.US, 1)[0] != name)
        return rc, out, err
    return hidden


def _partial(run, path, planned, options, manifest_dir, signing_key):
    """The plan that completes a release whose tag is on HEAD but whose manifest or signature is missing, else None.

    The release is planned again as it was before its tag (same version, the date of the tag's changelog section),
    so the manifest gets the same content the interrupted run would have written.
    """
    if planned["released"] or not manifest_dir or not planned.get("version") or not planned.get("tag"):
        return None
    if _git.tag_target(run, path, planned["tag"]) != planned["commit"]:
        return None
    manifest_path = os.path.join(manifest_dir, _manifest.manifest_name(planned["version"]))
    if os.path.exists(manifest_path) and (not signing_key or os.path.exists(manifest_path + ".sig")):
        return None
    redo = dict(options, version=planned["version"], prerelease=None, build=None, bump="auto")
    if redo.get("date") is None:
        found = re.search(r"^## \[%s\] - ([0-9]{4}-[0-9]{2}-[0-9]{2})$" % re.escape(planned["version"]),
                          _git.tag_message(run, path, planned["tag"]), re.M)
        redo["date"] = found.group(1) if found else None
    again = plan(_hiding(run, planned["tag"]), path, **redo)
    if not again["released"] or again["commit"] != planned["commit"]:
        return None
    again["msg"] = "completed release %s: its tag exists, its manifest or signature was missing" % planned["tag"]
    return again


def _is_under(relpath, changes):
    return any(relpath == c.rstrip("/") or relpath.startswith(c.rstrip("/") + "/") for c in changes)


def create(run, path, check_mode=False, allow_dirty=False, allow_detached=False, unshallow=False, push="never",
           **options):
    """Check the work tree, plan, apply (and push); errors of the helpers become :class:`ReleaseError`.

    ``push``: V(auto) pushes when the branch has an upstream remote, V(always) requires one, V(never) does not push
    (the module's default is auto; this function's is never so library callers opt in).
    """
    apply_keys = ("changelog", "changelog_path", "commit", "tag", "sign", "manifest_dir", "artifacts", "signing_key",
                  "public_key", "now")
    apply_options = dict((k, options.pop(k)) for k in apply_keys if k in options)
    try:
        if push not in PUSH_OPTIONS:
            raise ReleaseError("push %r is invalid: use one of %s" % (push, ", ".join(PUSH_OPTIONS)))
        check_inputs(**options)  # bad input fails before git is touched (unshallow fetches)
        changelog_path = apply_options.get("changelog_path", "CHANGELOG.md")
        outputs = ([changelog_path] if apply_options.get("changelog", True) else [])
        outputs += [d for d in [apply_options.get("manifest_dir")] if d] + list(apply_options.get("artifacts") or [])
        writes_git = apply_options.get("tag", True) or apply_options.get("commit", False)
        writes = writes_git or apply_options.get("changelog", True) or bool(apply_options.get("manifest_dir"))
        info = check_tree(run, path, allow_dirty=allow_dirty, allow_detached=allow_detached, unshallow=unshallow,
                          check_mode=check_mode, outputs=outputs, writes_git=writes_git, writes=writes)
        push_to = None
        if push != "never":
            push_to = _git.upstream_of(run, path, info["branch"]) if info["branch"] else None
            if push == "always" and push_to is None:
                raise ReleaseError("push=always but %s has no upstream remote: set one (git branch --set-upstream-to="
                                   "<remote>/<branch>) or use push=auto or never"
                                   % ("branch %s" % info["branch"] if info["branch"] else "a detached HEAD"))
        planned = plan(run, path, **options)
        completing = _partial(run, path, planned, options, apply_options.get("manifest_dir"),
                              apply_options.get("signing_key"))
        planned = completing or planned
        changelog_rel = os.path.relpath(os.path.realpath(_resolve(path, changelog_path)),
                                        os.path.realpath(info["toplevel"])).replace(os.sep, "/")
        result, diff = apply(run, path, planned, check_mode=check_mode, push_to=push_to,
                             changelog_dirty=_is_under(changelog_rel, info["own_changes"]),
                             failed_versions=options.get("failed_versions") or (), **apply_options)
        if info["deepened"]:
            result["steps"]["unshallow"] = "fetched"
            result["changed"] = True
        return result, diff
    except (_git.GitError, _manifest.ManifestError, SemverError) as exc:
        raise ReleaseError(str(exc))
