# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The few git calls release_version needs, through a replaceable runner (no git library).

A runner is ``run(argv, cwd=None, data=None) -> (rc, stdout, stderr)`` with text output; the module passes one built on
``AnsibleModule.run_command``, the integration tests and the benchmark pass a small subprocess-based one.
"""

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.release.conventional import parse_message
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

RS = "\x1e"
US = "\x1f"
LOG_FORMAT = "%x1e%m%x1f%H%x1f%P%x1f%B"
TAG_FORMAT = "%(refname:strip=2)%1f%(objectname)%1f%(*objectname)"


class GitError(MeshosError):
    """A failed git call; the message is one line."""


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def git(run, path, *args, **kwargs):
    argv = ["git", "-C", path, "-c", "log.showSignature=false", "-c", "core.quotePath=false"] + list(args)
    rc, out, err = run(argv, data=kwargs.get("data"))
    if rc != 0:
        raise GitError("git %s failed in %s: %s" % (args[0], path, _first_line(err) or _first_line(out) or "rc=%d" % rc))
    return out


def _parse_tags(out, pattern):
    tags = []
    for line in out.splitlines():
        fields = line.split(US)
        if len(fields) != 3:
            continue
        version = pattern.parse(fields[0])
        if version is not None:
            tags.append((fields[0], version, fields[2] or fields[1]))
    return tags


def release_tags(run, path, pattern, merged=False):
    """``[(tag, Version, commit_sha)]`` for the tags matching ``pattern`` (one git call).

    With ``merged`` only the tags reachable from HEAD: precise, but git walks the history for it.
    """
    args = ["for-each-ref"] + (["--merged=HEAD"] if merged else []) + ["--format=" + TAG_FORMAT, pattern.ref_glob()]
    return _parse_tags(git(run, path, *args), pattern)


def _parse_log(out):
    commits = []
    boundary = set()
    for record in out.split(RS)[1:]:
        fields = record.split(US, 3)
        if len(fields) != 4:
            continue
        if fields[0] == "-":
            boundary.add(fields[1])
        else:
            commits.append(parse_message(fields[3], fields[1], fields[2].split()))
    return commits, boundary


def commits_since(run, path, since=None):
    """Parsed commits in ``since..HEAD`` (all of HEAD's history when ``since`` is None), newest first (one git call)."""
    rev = "%s..HEAD" % since if since else "HEAD"
    return _parse_log(git(run, path, "log", "--no-color", "--no-decorate", "--format=" + LOG_FORMAT, rev, "--"))[0]


def commits_excluding(run, path, excluded):
    """Commits reachable from HEAD but from none of ``excluded``, and the boundary (excluded parents) (one git call).

    The walk stops at the excluded commits, so it costs the size of the window, not of the history.
    """
    stdin = "".join("^%s\n" % sha for sha in excluded)
    out = git(run, path, "log", "--no-color", "--no-decorate", "--boundary", "--format=" + LOG_FORMAT, "--stdin",
              "HEAD", "--", data=stdin)
    return _parse_log(out)


def head(run, path):
    return git(run, path, "rev-parse", "--verify", "HEAD^{commit}").strip()


def tag_target(run, path, name):
    """The commit a tag points at, or None when the tag does not exist."""
    out = git(run, path, "for-each-ref", "--format=" + TAG_FORMAT, "refs/tags/" + name)
    for line in out.splitlines():
        fields = line.split(US)
        if len(fields) == 3 and fields[0] == name:
            return fields[2] or fields[1]
    return None


def create_tag(run, path, name, message, commit, sign=False):
    git(run, path, "tag", "-s" if sign else "-a", "--cleanup=whitespace", "-F", "-", name, commit, data=message)


def commit_file(run, path, relpath, message):
    git(run, path, "add", "--", relpath)
    git(run, path, "commit", "--no-verify", "-q", "-m", message, "--", relpath)
    return head(run, path)


def preflight(run, path):
    """What release_version checks before planning, with two git calls.

    Returns a dict: ``toplevel`` (real path of the work tree root), ``shallow`` (bool), ``branch`` (None when HEAD is
    detached or unborn), ``upstream`` (``"remote/branch"`` as git shows it, or None) and ``changes`` (paths relative
    to the top level of tracked changes and untracked, non-ignored files).
    """
    lines = git(run, path, "rev-parse", "--is-shallow-repository", "--show-toplevel").splitlines()
    if len(lines) < 2:
        raise GitError("git rev-parse failed in %s: unexpected output %r" % (path, "\n".join(lines)[:80]))
    info = {"shallow": lines[0].strip() == "true", "toplevel": lines[1].strip(), "branch": None, "upstream": None,
            "changes": []}
    out = git(run, path, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal",
              "--ignore-submodules=none")
    records = out.split("\0")
    index = 0
    while index < len(records):
        record = records[index]
        index += 1
        if record.startswith("# branch.head "):
            head_name = record[len("# branch.head "):]
            info["branch"] = None if head_name == "(detached)" else head_name
        elif record.startswith("# branch.upstream "):
            info["upstream"] = record[len("# branch.upstream "):]
        elif record.startswith("1 "):
            info["changes"].append(record.split(" ", 8)[8])
        elif record.startswith("2 "):
            info["changes"].append(record.split(" ", 9)[9])
            index += 1  # a rename's original path follows in its own record
        elif record.startswith("u "):
            info["changes"].append(record.split(" ", 10)[10])
        elif record.startswith("? "):
            info["changes"].append(record[2:])
    return info


def upstream_of(run, path, branch):
    """``(remote, remote branch ref)`` the branch pushes to, or None when it has no upstream remote."""
    out = git(run, path, "for-each-ref", "--format=%(upstream:remotename)" + US + "%(upstream:remoteref)",
              "refs/heads/" + branch)
    for line in out.splitlines():
        fields = line.split(US)
        if len(fields) == 2 and fields[0] and fields[1] and fields[0] != ".":
            return fields[0], fields[1]
    return None


def unshallow(run, path):
    """Fetch the rest of the history and the tags of a shallow clone (explicit: it is a network operation)."""
    git(run, path, "fetch", "--quiet", "--unshallow", "--tags")


def push(run, path, remote, refspecs, dry_run=False):
    """``git push --atomic --porcelain``; returns the refs that changed (``[]`` when all were up to date)."""
    argv = ["push", "--porcelain", "--atomic"] + (["--dry-run"] if dry_run else []) + [remote] + list(refspecs)
    full = ["git", "-C", path, "-c", "core.quotePath=false"] + argv
    rc, out, err = run(full, data=None)
    changed, rejected = [], []
    for line in (out or "").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and len(fields[0]) == 1:
            if fields[0] == "!":
                rejected.append("%s (%s)" % (fields[1].split(":")[-1], fields[2] if len(fields) > 2 else "rejected"))
            elif fields[0] != "=":
                changed.append(fields[1].split(":")[-1])
    if rc != 0 or rejected:
        detail = "; ".join(rejected) or _first_line(err) or _first_line(out) or "rc=%d" % rc
        raise GitError("git push to %s failed in %s: %s" % (remote, path, detail))
    return changed


def tag_message(run, path, name):
    """The message of an annotated tag ('' for a lightweight one)."""
    return git(run, path, "for-each-ref", "--format=%(contents)", "refs/tags/" + name)


def delete_tag(run, path, name):
    git(run, path, "tag", "-d", name)


def undo_commit(run, path, commit, parent, relpath):
    """Move HEAD back from ``commit`` to ``parent`` only if HEAD is still ``commit`` (compare-and-swap), and reset the
    index entry of ``relpath``; the caller restores the file itself."""
    git(run, path, "update-ref", "-m", "release_version: undo the release commit", "HEAD", parent, commit)
    git(run, path, "reset", "-q", "--", relpath)
