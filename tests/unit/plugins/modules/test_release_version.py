# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
from unittest import mock

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshos.release.plugins.modules import release_version

HEAD = "f" * 40


class FakeRunCommand:
    def __init__(self, tags, commits, untracked=()):
        self.tags, self.commits, self.calls, self.untracked = tags, commits, [], list(untracked)

    def __call__(self, module, args, **kwargs):
        self.calls.append(args)
        sub = args[args.index("core.quotePath=false") + 1:]
        if sub[0] == "rev-parse" and "--is-shallow-repository" in sub:
            return 0, "false\n%s\n" % args[2], ""
        if sub[0] == "status":
            return 0, "# branch.head main\0" + "".join("? %s\0" % p for p in self.untracked), ""
        if sub[0] == "for-each-ref" and sub[-1].startswith("refs/heads/"):
            return 0, "\x1f\n", ""
        if sub[0] == "for-each-ref" and sub[-1].endswith("*"):
            return 0, "".join("%s\x1f%s\x1f\n" % t for t in self.tags), ""
        if sub[0] == "for-each-ref":
            return 0, "", ""
        if sub[0] == "log":
            boundary = "".join("\x1e-\x1f%s\x1f\x1f\n" % t[1] for t in self.tags[-1:])
            return 0, "".join("\x1e>\x1f%s\x1f\x1f%s\n" % c for c in self.commits) + boundary, ""
        if sub[0] == "tag":
            return 0, "", ""
        return 1, "", "unexpected"


def run_module(args, fake=None, check_mode=False, diff=False, capsys=None):
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    fake = fake or FakeRunCommand([], [])
    with patch_module_args(args), mock.patch.object(AnsibleModule, "run_command", autospec=True, side_effect=fake):
        with pytest.raises(SystemExit) as exc:
            release_version.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_check_mode_with_diff(tmp_path, capsys):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "feat(api): weights")])
    rc, out = run_module({"path": str(tmp_path), "date": "2026-01-02"}, fake, check_mode=True, diff=True, capsys=capsys)
    assert rc == 0 and out["changed"] is True and out["released"] is True
    assert (out["version"], out["previous_version"], out["tag"], out["bump"]) == ("5.1.0", "5.0.1", "v5.1.0", "minor")
    assert "## [5.1.0] - 2026-01-02" in out["diff"]["after"]
    assert out["commits"]["count"] == 1
    assert [c for c in fake.calls if c[c.index("core.quotePath=false") + 1] == "tag"] == []
    assert os.listdir(str(tmp_path)) == []


def test_create_writes_changelog(tmp_path, capsys):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "fix: race")])
    rc, out = run_module({"path": str(tmp_path)}, fake, capsys=capsys)
    assert rc == 0 and out["changed"] and out["version"] == "5.0.2"
    assert (tmp_path / "CHANGELOG.md").read_text().count("## [5.0.2]") == 1
    tag_calls = [c for c in fake.calls if c[c.index("core.quotePath=false") + 1] == "tag"]
    assert len(tag_calls) == 1 and "v5.0.2" in tag_calls[0]


def test_nothing_to_release(tmp_path, capsys):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "chore: deps")])
    rc, out = run_module({"path": str(tmp_path)}, fake, capsys=capsys)
    assert rc == 0 and out["changed"] is False and out["released"] is False and "nothing to release" in out["msg"]


def test_downgrade_refused(tmp_path, capsys):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "feat: x")])
    rc, out = run_module({"path": str(tmp_path), "version": "5.0.0"}, fake, capsys=capsys)
    assert rc == 1 and out["failed"] is True
    assert out["msg"].startswith("version 5.0.0 is not greater than the last release 5.0.1")
    assert os.listdir(str(tmp_path)) == []


def test_invalid_choice(capsys):
    rc, out = run_module({"path": "/x", "bump": "huge"}, capsys=capsys)
    assert rc == 1 and "bump" in out["msg"] and "huge" in out["msg"]


def test_verify_mode(tmp_path, capsys):
    art = tmp_path / "a.bin"
    art.write_bytes(b"abc")
    manifest = tmp_path / "release-1.0.0.json"
    manifest.write_text(json.dumps({"version": "1.0.0", "artifacts": [
        {"name": "a.bin", "path": str(art), "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}]}))
    rc, out = run_module({"state": "verify", "manifest_path": str(manifest)}, capsys=capsys)
    assert rc == 0 and out["verified"] is True and out["changed"] is False and out["version"] == "1.0.0"
    art.write_bytes(b"tampered")
    rc, out = run_module({"state": "verify", "manifest_path": str(manifest)}, capsys=capsys)
    assert rc == 1 and out["verified"] is False and "does not match" in out["msg"]


def test_verify_requires_manifest_path(capsys):
    rc, out = run_module({"state": "verify"}, capsys=capsys)
    assert rc == 1 and "manifest_path" in out["msg"]


@pytest.mark.parametrize("args,message", [
    ({"date": "yesterday!"}, "date 'yesterday!' is invalid: use an ISO date YYYY-MM-DD such as 2026-01-02"),
    ({"version": "5.2.0\n"}, "version '5.2.0\\n' is not a semantic version: use a semantic version"),
])
def test_bad_date_and_version_fail_before_git(tmp_path, capsys, args, message):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "feat: x")])
    rc, out = run_module(dict(args, path=str(tmp_path)), fake, capsys=capsys)
    assert rc == 1 and out["msg"].startswith(message), out["msg"]
    assert fake.calls == [] and os.listdir(str(tmp_path)) == []


def test_dirty_tree_option(tmp_path, capsys):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "fix: x")], untracked=["stray.txt"])
    rc, out = run_module({"path": str(tmp_path)}, fake, capsys=capsys)
    assert rc == 1 and "'stray.txt'" in out["msg"] and "allow_dirty=true" in out["msg"]
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "fix: x")], untracked=["stray.txt"])
    rc, out = run_module({"path": str(tmp_path), "allow_dirty": True, "push": "never"}, fake, capsys=capsys)
    assert rc == 0 and out["version"] == "5.0.2" and "push" not in out["steps"]


def test_failed_versions_option(tmp_path, capsys):
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [5.1.0] - 2026-11-30\n\n- weights\n")
    fake = FakeRunCommand([("v5.0.0", "a" * 40), ("v5.1.0", "b" * 40)], [(HEAD, "fix: race"), ("b" * 40, "feat: w")])
    # the fake's walk boundary is the last tag listed: the good v5.0.0 must be last for the window to reach past v5.1.0
    fake.tags = [("v5.1.0", "b" * 40), ("v5.0.0", "a" * 40)]
    rc, out = run_module({"path": str(tmp_path), "failed_versions": ["5.1.0"], "push": "never"}, fake, capsys=capsys)
    assert rc == 0 and out["changed"] is True, out
    assert (out["version"], out["previous_version"], out["skipped_versions"]) == ("5.2.0", "5.0.0", ["5.1.0"])
    assert "## [5.1.0] - 2026-11-30 (FAILED: never reached production)" in (tmp_path / "CHANGELOG.md").read_text()


def test_bad_failed_version_fails_before_git(tmp_path, capsys):
    fake = FakeRunCommand([("v5.0.1", "a" * 40)], [(HEAD, "feat: x")])
    rc, out = run_module({"path": str(tmp_path), "failed_versions": ["5.0.1", "v5.1.0"]}, fake, capsys=capsys)
    assert rc == 1 and out["msg"].startswith("failed_versions entry 'v5.1.0' is not a semantic version"), out["msg"]
    assert fake.calls == [] and os.listdir(str(tmp_path)) == []
