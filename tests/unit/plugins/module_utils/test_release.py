# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.meshos.release.plugins.module_utils import _release
from ansible_collections.meshos.release.plugins.module_utils._release import ReleaseError

HEAD = "f" * 40


class FakeGit:
    """Answers the git calls release_version makes from a tag list and a commit list (all tags merged into HEAD)."""

    def __init__(self, tags=(), commits=(), existing_tag=None, boundary=None):
        self.tags = list(tags)          # (name, sha)
        self.commits = list(commits)    # (sha, message), newest first
        self.existing_tag = existing_tag
        finals = [t for t in self.tags if not re.search(r"\d-", t[0])]
        # by default the window stops at the newest final tag
        self.boundary = boundary if boundary is not None else ([finals[-1][1]] if finals and self.commits else [])
        self.calls = []

    def __call__(self, argv, cwd=None, data=None):
        self.calls.append((argv, data))
        args = argv[argv.index("core.quotePath=false") + 1:]
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
    assert result["commits"] == {"count": 2, "types": {"feat": 1, "chore": 1}, "since": "v5.0.1"}
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
    with pytest.raises(ReleaseError, match="git for-each-ref failed in /repo: fatal: not a git repository"):
        _release.create(broken, "/repo")
