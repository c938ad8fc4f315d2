# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.meshos.release.plugins.module_utils.release import release as _release
from ansible_collections.meshos.release.plugins.module_utils.release.release import ReleaseError

HEAD = "f" * 40


class FakeGit:
    """Answers the git calls release_version makes from a tag list and a commit list (all tags merged into HEAD)."""

    def __init__(self, tags=(), commits=(), existing_tag=None, boundary=None, shallow=False, branch="main",
                 changes=(), upstream=None):
        self.shallow, self.branch, self.changes, self.upstream = shallow, branch, list(changes), upstream
        self.tags = list(tags)          # (name, sha)
        self.commits = list(commits)    # (sha, message), newest first
        self.existing_tag = existing_tag
        finals = [t for t in self.tags if not re.search(r"\d-", t[0])]
        # by default the window stops at the newest final tag
        self.boundary = boundary if boundary is not None else ([finals[-1][1]] if finals and self.commits else [])
        self.calls = []

    def __call__(self, argv, cwd=None, data=None):
        self.calls.append((argv, data))
        if argv[0] != "git":
            return 1, "", "%s: not answered by FakeGit" % argv[0]
        args = argv[argv.index("core.quotePath=false") + 1:]
        if args[0] == "rev-parse" and "--is-shallow-repository" in args:
            return 0, "%s\n%s\n" % ("true" if self.shallow else "false", argv[2]), ""
        if args[0] == "status":
            return 0, "# branch.oid %s\0# branch.head %s\0" % (HEAD, self.branch or "(detached)") + "".join(
                "? %s\0" % change for change in self.changes), ""
        if args[0] == "for-each-ref" and args[-1].startswith("refs/heads/"):
            return 0, ("%s\x1f%s\n" % self.upstream) if self.upstream else "\x1f\n", ""
        if args[0] == "for-each-ref" and args[-1].endswith("*"):
            return 0, "".join("%s\x1f%s\x1f\n" % tag for tag in self.tags), ""
        if args[0] == "for-each-ref":
            return 0, ("%s\x1f%s\x1f\n" % (args[-1][len("refs/tags/"):], self.existing_tag)) if self.existing_tag else "", ""
        if args[0] == "log":
            out = "".join("\x1e>\x1f%s\x1f\x1f%s\n" % c for c in self.commits)
            if "--boundary" in args:
                out += "".join("\x1e-\x1f%s\x1f\x1f\n" % sha for sha in self.boundary)
            return 0, out, ""
        if args[0] == "rev-parse":
            return 0, (self.commits[0][0] if self.commits else self.tags[-1][1]) + "\n", ""
        if args[0] == "tag":
            return 0, "", ""
        return 1, "", "unexpected %s" % args

    def git_calls(self, name):
        return [call[0] for call in self.calls if name in call[0]]


def _log(*messages):
    return [("%040x" % (len(messages) - i) if i else HEAD, m) for i, m in enumerate(messages)]


def plan(git, **kwargs):
    kwargs.setdefault("date", "2026-01-02")
    return _release.plan(git, "/repo", **kwargs)


def test_two_git_calls_and_window_since_last_final():
    git = FakeGit([("v5.0.0", "a" * 40), ("v5.0.1", "b" * 40), ("notsemver", "c" * 40), ("v5.0", "d" * 40)],
                  _log("feat(api): weights", "chore: deps"), boundary=["b" * 40])
    result = plan(git)
    assert len(git.calls) == 2
    assert git.calls[1][0][-4:] == ["--boundary", "--format=%x1e%m%x1f%H%x1f%P%x1f%B", "--stdin", "HEAD", "--"][-4:]
    assert git.calls[1][1] == "^%s\n^%s\n" % ("a" * 40, "b" * 40)
    assert (result["released"], result["version"], result["previous_version"], result["bump"]) == (True, "5.1.0", "5.0.1", "minor")
    assert result["tag"] == "v5.1.0" and result["commit"] == HEAD
    assert result["commits"] == {"count": 2, "types": {"feat": 1, "chore": 1}, "since": "v5.0.1", "cancelled": 0}
    assert result["changelog"].startswith("## [5.1.0] - 2026-01-02\n\n### Features\n\n- **api:** weights\n")


def test_first_release():
    git = FakeGit([], _log("chore: init"))
    result = plan(git)
    assert result["version"] == "0.1.0" and result["bump"] == "initial" and result["previous_version"] is None
    assert git.calls[1][0][-2:] == ["HEAD", "--"]
    assert plan(FakeGit([], _log("chore: init")), bump="major")["version"] == "1.0.0"
    assert plan(FakeGit([], _log("chore: init")), initial_version="1.0.0")["version"] == "1.0.0"


def test_nothing_to_release():
    chore = plan(FakeGit([("v1.0.0", "a" * 40)], _log("chore: x", "docs: y")))
    assert (chore["released"], chore["bump"], chore["version"]) == (False, "none", None)
    assert "none of a type that bumps" in chore["msg"]
    empty = plan(FakeGit([("v1.0.0", "a" * 40)], []))
    assert empty["released"] is False and empty["version"] == "1.0.0" and "already released" in empty["msg"]
    # explicit re-run of the release on HEAD: not an error, nothing to do
    assert plan(FakeGit([("v1.0.0", "a" * 40)], []), version="1.0.0")["released"] is False
    # an explicit bump still needs commits
    assert plan(FakeGit([("v1.0.0", "a" * 40)], []), bump="patch")["released"] is False
    assert plan(FakeGit([("v1.0.0", "a" * 40)], _log("chore: x")), bump="patch")["version"] == "1.0.1"


def test_zero_x_breaking_is_minor_by_default():
    git = FakeGit([("v0.4.2", "a" * 40)], _log("feat!: drop"))
    assert plan(git)["version"] == "0.5.0"
    assert plan(FakeGit([("v0.4.2", "a" * 40)], _log("feat!: drop")), breaking_on_zero="major")["version"] == "1.0.0"


def test_explicit_version_rules():
    tags = [("v5.0.1", "a" * 40)]
    assert plan(FakeGit(tags, _log("chore: x")), version="5.1.0")["version"] == "5.1.0"
    assert plan(FakeGit(tags, _log("chore: x")), version="5.1.0")["bump"] == "minor"
    for bad in ("5.0.1", "5.0.0", "5.0.1-rc.1"):
        with pytest.raises(ReleaseError, match="version %s is not greater than the last release 5.0.1" % bad):
            plan(FakeGit(tags, _log("feat: x")), version=bad)
    with pytest.raises(ReleaseError, match="'5.1' is not a semantic version"):
        plan(FakeGit(tags, _log("feat: x")), version="5.1")


@pytest.mark.parametrize("kwargs,match", [
    ({"bump": "huge"}, "bump 'huge' is invalid"),
    ({"prerelease": "r c"}, "prerelease 'r c' is invalid"),
    ({"tag_pattern": "v"}, "tag_pattern 'v' must contain"),
    ({"types": {"docs": "big"}}, "types"),
    ({"date": "tomorrow"}, "date 'tomorrow' is invalid"),
])
def test_bad_input_fails_before_git(kwargs, match):
    git = FakeGit()
    with pytest.raises(ReleaseError, match=match):
        plan(git, **kwargs)
    assert git.calls == []


def test_prerelease_sequence_and_final():
    one = "%040x" % 1
    tags = [("v5.0.0", "a" * 40)]
    assert plan(FakeGit(tags, _log("feat: x")), prerelease="rc")["version"] == "5.1.0-rc.1"
    tags.append(("v5.1.0-rc.1", one))
    assert plan(FakeGit(tags, _log("fix: y", "feat: x")), prerelease="rc")["version"] == "5.1.0-rc.2"
    tags.append(("v5.1.0-rc.2", HEAD))
    # same commit: no new rc, but promoting it to the final release is allowed
    assert plan(FakeGit(tags, _log("fix: y", "feat: x")), prerelease="rc")["released"] is False
    final = plan(FakeGit(tags, _log("fix: y", "feat: x")))
    assert (final["version"], final["previous_version"]) == ("5.1.0", "5.1.0-rc.2")
    # a breaking change after rc.1 starts a new line
    assert plan(FakeGit(tags[:2], _log("feat!: z", "feat: x")), prerelease="rc")["version"] == "6.0.0-rc.1"


def test_unmerged_tag_in_history_falls_back_to_merged_listing():
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), boundary=["e" * 40])
    assert plan(git)["version"] == "1.0.1"
    assert [c[0][c[0].index("core.quotePath=false") + 1:][:2] for c in git.calls] == [
        ["for-each-ref", "--format=%(refname:strip=2)%1f%(objectname)%1f%(*objectname)"],
        ["log", "--no-color"], ["for-each-ref", "--merged=HEAD"], ["log", "--no-color"]]
    assert git.calls[3][0][-2:] == ["%s..HEAD" % ("a" * 40), "--"]


def test_build_metadata():
    assert plan(FakeGit([("v1.0.0", "a" * 40)], _log("fix: x")), build="ci.7")["version"] == "1.0.1+ci.7"


def test_custom_tag_pattern():
    git = FakeGit([("release-2.0.0", "a" * 40)], _log("fix: x"))
    result = plan(git, tag_pattern="release-{version}")
    assert result["tag"] == "release-2.0.1"
    assert git.calls[0][0][-1] == "refs/tags/release-*"


def test_apply_check_mode_writes_nothing(tmp_path):
    git = FakeGit([("v1.0.0", "a" * 40)], _log("feat: x"))
    result, diff = _release.create(git, str(tmp_path), check_mode=True, date="2026-01-02",
                                   manifest_dir=str(tmp_path / "out"))
    assert result["changed"] and result["released"]
    assert os.listdir(str(tmp_path)) == []
    assert git.git_calls("tag") == []
    assert diff["before"] == "" and "## [1.1.0] - 2026-01-02" in diff["after"]
    assert result["manifest"]["version"] == "1.1.0"


def test_apply_writes_and_is_idempotent(tmp_path):
    art = tmp_path / "a.tar.gz"
    art.write_bytes(b"payload")
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"))
    result = _release.create(git, str(tmp_path), date="2026-01-02", manifest_dir=str(tmp_path / "out"),
                             artifacts=[str(art)])[0]
    assert result["steps"] == {"changelog": "updated", "tag": "created", "manifest": "written"}
    tag_call = git.git_calls("tag")[0]
    assert "-a" in tag_call and "v1.0.1" in tag_call
    data = json.loads((tmp_path / "out" / "release-1.0.1.json").read_text())
    assert data["artifacts"][0]["sha256"] == "239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5"
    assert data["previous_version"] == "1.0.0" and data["commit"] == HEAD
    # the tag now exists on HEAD (e.g. a partial earlier run): the rest is unchanged
    again = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), existing_tag=HEAD)
    result = _release.create(again, str(tmp_path), date="2026-01-02", manifest_dir=str(tmp_path / "out"),
                             artifacts=[str(art)])[0]
    assert result["changed"] is False and again.git_calls("tag") == []


def test_apply_refuses_tag_elsewhere_and_missing_artifact(tmp_path):
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), existing_tag="9" * 40)
    with pytest.raises(ReleaseError, match="tag v1.0.1 already exists on commit 999999999999"):
        _release.create(git, str(tmp_path))
    with pytest.raises(ReleaseError, match="artifact /nonexistent.tgz does not exist"):
        _release.create(FakeGit([("v1.0.0", "a" * 40)], _log("fix: x")), str(tmp_path),
                        manifest_dir=str(tmp_path), artifacts=["/nonexistent.tgz"])
    assert os.listdir(str(tmp_path)) == []


def test_git_failure_is_one_line():
    def broken(argv, cwd=None, data=None):
        return 128, "", "fatal: not a git repository (or any of the parent directories): .git\n"
    with pytest.raises(ReleaseError, match="git rev-parse failed in /repo: fatal: not a git repository"):
        _release.create(broken, "/repo")


def test_revert_only_window_releases_a_patch_with_a_reverts_section():
    released = "%040x" % 0xabc
    git = FakeGit([("v2.3.0", "a" * 40)], _log('Revert "feat(api): weights"\n\nThis reverts commit %s.' % released))
    result = plan(git)
    assert (result["released"], result["version"], result["bump"]) == (True, "2.3.1", "patch")
    assert result["changes"] == {"Reverts": ["feat(api): weights"]}
    assert "### Reverts\n\n- feat(api): weights\n" in result["changelog"]
    assert plan(FakeGit([("v2.3.0", "a" * 40)], _log("revert: feat: x")), types={"revert": "none"})["released"] is False


def test_revert_and_reverted_in_one_window_cancel_out():
    feat_sha = "%040x" % 1
    git = FakeGit([("v2.3.0", "a" * 40)], [(HEAD, 'Revert "feat: risky"\n\nThis reverts commit %s.' % feat_sha),
                                           ("%040x" % 2, "chore: deps"), (feat_sha, "feat: risky")])
    result = plan(git)
    assert result["released"] is False and "(2 cancelled by reverts)" in result["msg"]
    assert result["commits"]["cancelled"] == 2 and result["commits"]["count"] == 3
    git = FakeGit([("v2.3.0", "a" * 40)], [(HEAD, 'Revert "feat: risky"\n\nThis reverts commit %s.' % feat_sha),
                                           ("%040x" % 2, "fix: keep"), (feat_sha, "feat: risky")])
    result = plan(git)
    assert (result["version"], result["changes"]) == ("2.3.1", {"Bug fixes": ["keep"]})


# ---------------------------------------------------------------- fail closed (issue 16) and one version rule

@pytest.mark.parametrize("kwargs,match", [
    ({"version": "5.2.0\n"}, r"^version '5\.2\.0\\n' is not a semantic version: use "),
    ({"version": "v5.2.0"}, r"^version 'v5\.2\.0' is not a semantic version"),
    ({"version": "5.1"}, r"^version '5\.1' is not a semantic version"),
    ({"initial_version": "1.0"}, r"^initial_version '1\.0' is not a semantic version"),
    ({"date": "yesterday!"}, r"^date 'yesterday!' is invalid: use an ISO date YYYY-MM-DD"),
    ({"date": "2026-02-30"}, r"^date '2026-02-30' is invalid"),
    ({"date": "2026-01-02\n"}, r"^date '2026-01-02\\n' is invalid"),
    ({"date": "2026-1-2"}, r"^date '2026-1-2' is invalid"),
    ({"push": "sometimes"}, r"^push 'sometimes' is invalid: use one of auto, always, never"),
    ({"failed_versions": ["5.1"]}, r"^failed_versions entry '5\.1' is not a semantic version: use "),
    ({"failed_versions": ["5.1.0\n"]}, r"^failed_versions entry '5\.1\.0\\n' is not a semantic version"),
    ({"failed_versions": "5.1.0"}, r"^failed_versions '5\.1\.0' is invalid: use a list of versions"),
    ({"version": "5.1.0", "failed_versions": ["5.1.0"]}, r"^version 5\.1\.0 is listed in failed_versions"),
])
def test_create_bad_input_fails_before_git(tmp_path, kwargs, match):
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"))
    with pytest.raises(ReleaseError, match=match):
        _release.create(git, str(tmp_path), **kwargs)
    assert git.calls == [] and os.listdir(str(tmp_path)) == []


def test_dirty_tree_refused_naming_paths_unless_allowed(tmp_path):
    dirty = ["src/app.py", "notes.txt"]
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), changes=dirty)
    with pytest.raises(ReleaseError, match=r"work tree of .* is not clean \(2 changed or untracked path\(s\): "
                                           r"'src/app.py', 'notes.txt'\): .* or set allow_dirty=true"):
        _release.create(git, str(tmp_path), date="2026-01-02")
    assert git.git_calls("tag") == [] and os.listdir(str(tmp_path)) == []
    result = _release.create(FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), changes=dirty), str(tmp_path),
                             date="2026-01-02", allow_dirty=True)[0]
    assert result["version"] == "1.0.1"
    # computing the next version only (nothing written) is not refused
    query = _release.create(FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), changes=dirty), str(tmp_path),
                            tag=False, changelog=False)[0]
    assert query["version"] == "1.0.1" and query["changed"] is False


def test_own_outputs_do_not_make_the_tree_dirty(tmp_path):
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), changes=["CHANGELOG.md", "out/", "dist/a.tgz"])
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "a.tgz").write_bytes(b"x")
    result = _release.create(git, str(tmp_path), date="2026-01-02", manifest_dir=str(tmp_path / "out"),
                             artifacts=[str(tmp_path / "dist" / "a.tgz")])[0]
    assert result["released"] and result["steps"]["manifest"] == "written"


def test_shallow_clone_refused_or_deepened(tmp_path):
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), shallow=True)
    with pytest.raises(ReleaseError, match=r"is a shallow clone: .*\(git fetch --unshallow --tags\) or set "
                                           r"unshallow=true"):
        _release.create(git, str(tmp_path), date="2026-01-02", tag=False, changelog=False)
    with pytest.raises(ReleaseError, match="check mode does not deepen it"):
        _release.create(git, str(tmp_path), check_mode=True, unshallow=True, tag=False, changelog=False)
    assert git.git_calls("fetch") == []

    class Deepening(FakeGit):
        def __call__(self, argv, cwd=None, data=None):
            if "fetch" in argv:
                self.calls.append((argv, data))
                return 0, "", ""
            return FakeGit.__call__(self, argv, cwd, data)

    deep = Deepening([("v1.0.0", "a" * 40)], _log("fix: x"), shallow=True)
    result = _release.create(deep, str(tmp_path), date="2026-01-02", tag=False, changelog=False, unshallow=True)[0]
    assert deep.git_calls("fetch")[0][-3:] == ["--quiet", "--unshallow", "--tags"]
    assert result["steps"]["unshallow"] == "fetched" and result["version"] == "1.0.1"


def test_detached_head_refused_when_tagging_unless_allowed(tmp_path):
    def fake():
        return FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"), branch=None)
    with pytest.raises(ReleaseError, match=r"HEAD of .* is detached: .* or set allow_detached=true"):
        _release.create(fake(), str(tmp_path), date="2026-01-02")
    # planning only (no tag, no commit) is not refused
    assert _release.create(fake(), str(tmp_path), tag=False, changelog=False)[0]["version"] == "1.0.1"
    assert _release.create(fake(), str(tmp_path), date="2026-01-02", allow_detached=True)[0]["tag"] == "v1.0.1"


def test_bad_signing_key_fails_before_any_change(tmp_path):
    key = tmp_path / "key"
    key.write_text("not a key")
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"))
    with pytest.raises(ReleaseError, match=r"signing_key .*key is not a usable ssh private key .*set public_key"):
        _release.create(git, str(tmp_path / "repo"), date="2026-01-02", manifest_dir=str(tmp_path / "out"),
                        signing_key=str(key))
    assert git.git_calls("tag") == [] and not os.path.exists(str(tmp_path / "out"))


def test_failure_after_writes_is_undone(tmp_path):
    """Signing fails after the changelog and manifest are written: both are put back, no tag is made."""
    key, pub = tmp_path / "key", tmp_path / "key.pub"
    key.write_text("private")
    pub.write_text("ssh-ed25519 AAAA test")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "CHANGELOG.md").write_text("# Changelog\n")
    git = FakeGit([("v1.0.0", "a" * 40)], _log("fix: x"))
    with pytest.raises(ReleaseError) as exc:
        _release.create(git, str(repo), date="2026-01-02", manifest_dir=str(tmp_path / "out"), signing_key=str(key),
                        public_key=str(pub))
    message = str(exc.value)
    assert message.startswith("release v1.0.1 not made: ssh-keygen -Y sign with ")
    assert "undone: manifest " in message and "CHANGELOG.md restored" in message and "\n" not in message
    assert (repo / "CHANGELOG.md").read_text() == "# Changelog\n"
    assert os.listdir(str(tmp_path / "out")) == [] and git.git_calls("tag") == []


def test_push_always_needs_an_upstream_and_auto_pushes_commit_and_tag(tmp_path):
    with pytest.raises(ReleaseError, match=r"push=always but branch main has no upstream remote"):
        _release.create(FakeGit([("v1.0.0", "a" * 40)], _log("fix: x")), str(tmp_path), push="always")

    class Remote(FakeGit):
        def __call__(self, argv, cwd=None, data=None):
            if "push" in argv:
                self.calls.append((argv, data))
                return 0, "To /remote\n*\trefs/tags/v1.0.1:refs/tags/v1.0.1\t[new tag]\n \t%s:refs/heads/main\t" \
                          "a..b\nDone\n" % HEAD, ""
            return FakeGit.__call__(self, argv, cwd, data)

    git = Remote([("v1.0.0", "a" * 40)], _log("fix: x"), upstream=("origin", "refs/heads/main"))
    result = _release.create(git, str(tmp_path), date="2026-01-02", push="auto")[0]
    push = git.git_calls("push")[0]
    assert push[push.index("push"):] == ["push", "--porcelain", "--atomic", "origin", "%s:refs/heads/main" % HEAD,
                                         "refs/tags/v1.0.1:refs/tags/v1.0.1"]
    assert result["steps"]["push"] == "pushed" and result["push"]["remote"] == "origin"


def test_push_failure_is_reported_and_keeps_the_local_release(tmp_path):
    class Rejecting(FakeGit):
        def __call__(self, argv, cwd=None, data=None):
            if "push" in argv:
                return 1, "To /remote\n!\t%s:refs/heads/main\t[rejected] (fetch first)\nDone\n" % HEAD, "error: failed"
            return FakeGit.__call__(self, argv, cwd, data)

    git = Rejecting([("v1.0.0", "a" * 40)], _log("fix: x"), upstream=("origin", "refs/heads/main"))
    with pytest.raises(ReleaseError, match=r"release v1.0.1 is complete locally but was not pushed: git push to origin "
                                           r"failed in .*: refs/heads/main \(\[rejected\] \(fetch first\)\); .*rerun"):
        _release.create(git, str(tmp_path), date="2026-01-02", push="auto")
    assert len(git.git_calls("tag")) == 1  # the tag stays: the rerun only pushes


# failed releases (tags that never reached production): skipped as previous version, never reused
FAILED_SHA = "%040x" % 7


def _failed_history(*new):
    """v5.0.0 (good) on a*40, v5.1.0 on FAILED_SHA with a feat, then ``new`` commits (newest first) up to HEAD."""
    commits = [(HEAD if i == 0 else "%040x" % (100 + i), m) for i, m in enumerate(new)]
    return [("v5.0.0", "a" * 40), ("v5.1.0", FAILED_SHA)], commits + [(FAILED_SHA, "feat(api): weights")]


def test_failed_version_is_skipped_as_previous_and_its_commits_are_in_the_notes():
    tags, commits = _failed_history("fix: race")
    git = FakeGit(tags, commits, boundary=["a" * 40])
    result = plan(git, failed_versions=["5.1.0"])
    # the walk stops only at the good release's commit, so the failed release's commits are in the window
    assert git.calls[1][1] == "^%s\n" % ("a" * 40)
    assert (result["version"], result["previous_version"], result["previous_tag"]) == ("5.2.0", "5.0.0", "v5.0.0")
    assert result["skipped_versions"] == ["5.1.0"] and result["bump"] == "minor"
    assert result["commits"]["since"] == "v5.0.0" and result["commits"]["count"] == 2
    assert "- **api:** weights" in result["changelog"] and "- race" in result["changelog"]
    assert "v5.1.0 failed (never reached production) and versions are never reused" in result["bump_reason"]


def test_without_failed_versions_the_failed_tag_stays_the_previous_version():
    tags, commits = _failed_history("fix: race")
    git = FakeGit(tags, commits[:1], boundary=[FAILED_SHA])
    result = plan(git)
    assert (result["version"], result["previous_version"], result["skipped_versions"]) == ("5.1.1", "5.1.0", [])
    assert "weights" not in result["changelog"]


def test_failed_patch_release_then_fix_gives_the_next_patch_and_a_feat_is_not_bumped_again():
    git = FakeGit([("v5.0.0", "a" * 40), ("v5.0.1", FAILED_SHA)], [(HEAD, "fix: b"), (FAILED_SHA, "fix: a")],
                  boundary=["a" * 40])
    assert plan(git, failed_versions=["5.0.1"])["version"] == "5.0.2"
    git = FakeGit([("v5.0.0", "a" * 40), ("v5.0.1", FAILED_SHA)], [(HEAD, "feat: b"), (FAILED_SHA, "fix: a")],
                  boundary=["a" * 40])
    result = plan(git, failed_versions=["5.0.1"])
    assert (result["version"], result["skipped_versions"]) == ("5.1.0", ["5.0.1"])
    assert "never reused" not in result["bump_reason"]


def test_failed_prerelease_gives_its_final_version():
    git = FakeGit([("v5.0.0", "a" * 40), ("v5.1.0-rc.1", FAILED_SHA)], [(HEAD, "fix: b"), (FAILED_SHA, "feat: a")],
                  boundary=["a" * 40])
    assert plan(git, failed_versions=["5.1.0-rc.1"])["version"] == "5.1.0"
    git = FakeGit([("v5.0.0", "a" * 40), ("v5.1.0-rc.1", FAILED_SHA)], [(HEAD, "fix: b"), (FAILED_SHA, "feat: a")],
                  boundary=["a" * 40])
    assert plan(git, failed_versions=["5.1.0-rc.1"], prerelease="rc")["version"] == "5.1.0-rc.2"


def test_explicit_version_must_exceed_the_failed_tag_and_head_on_a_failed_tag_is_not_released():
    tags, commits = _failed_history("fix: race")
    with pytest.raises(ReleaseError, match=r"^version 5\.0\.5 is not greater than the last release 5\.1\.0 "):
        plan(FakeGit(tags, commits, boundary=["a" * 40]), version="5.0.5", failed_versions=["5.1.0"])
    result = plan(FakeGit(tags, commits, boundary=["a" * 40]), version="5.1.1", failed_versions=["5.1.0"])
    assert (result["released"], result["version"], result["previous_version"], result["bump"]) == (
        True, "5.1.1", "5.0.0", "minor")
    # HEAD is the failed release's commit itself: it is not "already released", the next version is made on it
    git = FakeGit([("v5.0.0", "a" * 40), ("v5.1.0", HEAD)], [(HEAD, "feat: a")], boundary=["a" * 40])
    result = plan(git, failed_versions=["5.1.0"])
    assert (result["released"], result["version"], result["previous_version"]) == (True, "5.2.0", "5.0.0")


def test_failed_version_without_a_tag_changes_nothing():
    git = FakeGit([("v5.0.0", "a" * 40)], _log("fix: x"))
    result = plan(git, failed_versions=["4.9.0", "7.0.0"])
    assert (result["version"], result["previous_version"], result["skipped_versions"]) == ("5.0.1", "5.0.0", [])


def test_create_marks_the_failed_heading_in_the_changelog_once(tmp_path):
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [5.1.0] - 2026-11-30\n\n- weights\n\n"
                                           "## [5.0.0] - 2026-11-01\n\n- first\n")
    tags, commits = _failed_history("fix: race")
    result, diff = _release.create(FakeGit(tags, commits, boundary=["a" * 40]), str(tmp_path), date="2026-12-01",
                                   failed_versions=["5.1.0"])
    text = (tmp_path / "CHANGELOG.md").read_text()
    assert result["version"] == "5.2.0" and result["steps"]["changelog"] == "updated"
    assert "\n## [5.1.0] - 2026-11-30 (FAILED: never reached production)\n" in text
    assert "## [5.0.0] - 2026-11-01\n" in text and text.index("## [5.2.0]") < text.index("## [5.1.0]")
    assert diff["after"] == text
    again = _release.apply(FakeGit(tags, commits, boundary=["a" * 40]), str(tmp_path), dict(result, released=True),
                           tag=False, failed_versions=["5.1.0"])[0]
    assert again["steps"]["changelog"] == "unchanged" and (tmp_path / "CHANGELOG.md").read_text() == text
