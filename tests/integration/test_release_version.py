# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""release_version against real throwaway git repositories (and real ssh-keygen), no mocks.

Logic cases call the module_utils directly; the end-to-end cases run the module through ``ansible`` /
``ansible-playbook`` (check mode, idempotence, verify). No network ports are used.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTIONS = tempfile.mkdtemp(prefix="relver-collections-")
os.makedirs(os.path.join(_COLLECTIONS, "ansible_collections", "meshos"))
os.symlink(ROOT, os.path.join(_COLLECTIONS, "ansible_collections", "meshos", "release"))
sys.path.insert(0, _COLLECTIONS)
atexit.register(shutil.rmtree, _COLLECTIONS, True)

from ansible_collections.meshos.release.plugins.module_utils.release import manifest as _manifest, release as _release  # noqa: E402
from ansible_collections.meshos.release.plugins.module_utils.release.release import ReleaseError  # noqa: E402

BIN = os.path.dirname(sys.executable)


def run_git(argv, cwd=None, data=None):
    """The runner release_version's helpers take, on plain subprocess."""
    proc = subprocess.run(argv, cwd=cwd, input=data.encode("utf-8") if isinstance(data, str) else data,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / "gitconfig"
    gitconfig.write_text("[user]\n\tname = Release Bot\n\temail = release@example.com\n[init]\n\tdefaultBranch = main\n")
    environ = dict(os.environ)
    environ.update(
        GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1", HOME=str(home),
        ANSIBLE_COLLECTIONS_PATH=_COLLECTIONS, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(home / "ansible-tmp"),
        ANSIBLE_HOST_KEY_CHECKING="False", PATH=BIN + os.pathsep + environ.get("PATH", ""),
    )
    environ.pop("ANSIBLE_INVENTORY", None)
    old = dict(os.environ)
    os.environ.update(environ)  # the direct module_utils calls run git through subprocess too
    yield environ
    os.environ.clear()
    os.environ.update(old)


class Repo:
    def __init__(self, path, environ):
        self.path = str(path)
        self.env = environ
        self.git("init", "-q")

    def git(self, *args):
        return subprocess.run(["git", "-C", self.path] + list(args), env=self.env, check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True).stdout

    def commit(self, *messages):
        for message in messages:
            self.git("commit", "-q", "--allow-empty", "-m", message)
        return self

    def tag(self, name, annotated=True):
        if annotated:
            self.git("tag", "-a", "-m", name, name)
        else:
            self.git("tag", name)
        return self

    def tags(self):
        return sorted(self.git("tag", "--list").split())

    def status(self):
        return self.git("status", "--porcelain", "--untracked-files=all")


@pytest.fixture
def repo(tmp_path, env):
    os.makedirs(str(tmp_path / "repo"))
    return Repo(tmp_path / "repo", env)


def create(repo, **kwargs):
    kwargs.setdefault("date", "2026-01-02")
    return _release.create(run_git, repo.path, **kwargs)[0]


def ansible(environ, args, check=False, diff=False, expect_rc=0):
    argv = [os.path.join(BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o",
            "-e", "ansible_python_interpreter=%s" % sys.executable, "-m", "meshos.release.release_version",
            "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=120, check=False)
    assert proc.returncode == expect_rc, proc.stdout + proc.stderr
    line = [text for text in proc.stdout.splitlines() if text.startswith("localhost |")][-1]
    return json.loads(line.split("=>", 1)[1])


# ---------------------------------------------------------------- logic on real repositories (module_utils)

def test_no_tags_yet_is_initial_release(repo):
    repo.commit("chore: init", "feat: first")
    result = create(repo)
    assert (result["version"], result["bump"], result["previous_version"]) == ("0.1.0", "initial", None)
    assert repo.tags() == ["v0.1.0"]
    assert "## [0.1.0] - 2026-01-02" in open(os.path.join(repo.path, "CHANGELOG.md")).read()


def test_chore_only_window_is_nothing_to_release(repo):
    repo.commit("feat: a").tag("v1.0.0").commit("chore: deps", "docs: readme", "ci: cache")
    result = create(repo)
    assert (result["released"], result["changed"], result["bump"]) == (False, False, "none")
    assert "3 commit(s) since v1.0.0, none of a type that bumps" in result["msg"]
    assert repo.tags() == ["v1.0.0"] and repo.status() == ""


def test_uppercase_types(repo):
    repo.commit("chore: init").tag("v1.2.3").commit("FIX(Core): upper", "Feat: mixed case")
    result = create(repo, tag=False, changelog=False)
    assert result["version"] == "1.3.0" and result["commits"]["types"] == {"fix": 1, "feat": 1}


def test_bang_breaking_change(repo):
    repo.commit("chore: init").tag("v5.1.0").commit("fix: small", "refactor(api)!: drop v1 endpoints")
    result = create(repo)
    assert (result["version"], result["bump"]) == ("6.0.0", "major")
    assert result["changes"]["Breaking changes"] == ["**api:** drop v1 endpoints"]


def test_footer_breaking_change_full_description_no_trailers(repo):
    repo.commit("chore: init").tag("v5.1.0")
    repo.commit("feat(queue): new scheduler\n\nReworks the queue.\n\nBREAKING CHANGE: jobs must declare a priority;\n"
                "the default queue is gone.\nSigned-off-by: Dev <dev@example.com>\nRefs: #42")
    repo.commit("perf: faster\n\nBREAKING-CHANGE: cache format changed")
    result = create(repo)
    assert result["version"] == "6.0.0"
    changelog = open(os.path.join(repo.path, "CHANGELOG.md")).read()
    assert "- cache format changed" in changelog
    assert "- **queue:** jobs must declare a priority;\n  the default queue is gone.\n" in changelog
    assert "Signed-off-by" not in changelog and "Refs" not in changelog
    assert changelog.index("### Breaking changes") < changelog.index("### Features") < changelog.index("### Performance")


def test_zero_x_breaking_bumps_minor_then_configurable(repo):
    repo.commit("chore: init").tag("v0.4.2").commit("feat!: new config")
    assert create(repo, tag=False, changelog=False)["version"] == "0.5.0"
    assert create(repo, tag=False, changelog=False, breaking_on_zero="major")["version"] == "1.0.0"


def test_prerelease_sequence_then_final(repo):
    repo.commit("chore: init").tag("v5.0.0").commit("feat: canary weights")
    assert create(repo, prerelease="rc")["version"] == "5.1.0-rc.1"
    repo.commit("fix: weight rounding")
    rc2 = create(repo, prerelease="rc")
    assert (rc2["version"], rc2["previous_version"]) == ("5.1.0-rc.2", "5.1.0-rc.1")
    assert create(repo, prerelease="rc")["released"] is False  # same commit: no rc.3
    final = create(repo)
    assert (final["version"], final["previous_version"], final["commit"]) == ("5.1.0", "5.1.0-rc.2", rc2["commit"])
    assert repo.tags() == ["v5.0.0", "v5.1.0", "v5.1.0-rc.1", "v5.1.0-rc.2"]
    assert create(repo)["released"] is False
    changelog = open(os.path.join(repo.path, "CHANGELOG.md")).read()
    assert changelog.index("## [5.1.0]") < changelog.index("## [5.1.0-rc.2]") < changelog.index("## [5.1.0-rc.1]")


def test_non_semver_and_unmerged_tags_ignored(repo):
    repo.commit("chore: init").tag("v1.4.0").tag("latest", annotated=False).tag("v2", annotated=False)
    repo.tag("v1.x").tag("v01.2.3").tag("release-9.0.0")
    repo.git("checkout", "-q", "-b", "side")
    repo.commit("feat: side").tag("v7.0.0")
    repo.git("checkout", "-q", "main")
    repo.commit("fix: on main")
    result = create(repo, tag=False, changelog=False)
    assert (result["previous_version"], result["version"]) == ("1.4.0", "1.4.1")


def test_unmerged_tag_sharing_history_does_not_shrink_the_window(repo):
    repo.commit("chore: init").tag("v1.0.0").commit("feat: shared")
    repo.git("checkout", "-q", "-b", "side")
    repo.commit("fix: side only").tag("v3.0.0")
    repo.git("checkout", "-q", "main")
    repo.commit("fix: main")
    result = create(repo, tag=False, changelog=False)
    assert (result["previous_version"], result["version"], result["commits"]["count"]) == ("1.0.0", "1.1.0", 2)


def test_head_behind_a_release_tag(repo):
    repo.commit("chore: init").tag("v1.0.0").commit("feat: a", "fix: b").tag("v1.1.0")
    assert create(repo, tag=False, changelog=False)["released"] is False
    repo.git("checkout", "-q", "HEAD~1")
    planned = create(repo, changelog=False, tag=False)
    assert (planned["previous_version"], planned["version"]) == ("1.0.0", "1.1.0")
    with pytest.raises(ReleaseError, match="HEAD of .* is detached: .* set allow_detached=true"):
        create(repo, changelog=False)
    with pytest.raises(ReleaseError, match="tag v1.1.0 already exists on commit"):
        create(repo, changelog=False, allow_detached=True)


def test_merged_maintenance_release(repo):
    repo.commit("chore: init").tag("v1.0.0")
    repo.git("checkout", "-q", "-b", "maint")
    repo.commit("fix: backport").tag("v1.0.1")
    repo.git("checkout", "-q", "main")
    repo.commit("feat: big").tag("v1.1.0").commit("fix: after")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch 'maint'", "maint")
    result = create(repo, tag=False, changelog=False)
    assert (result["previous_version"], result["version"]) == ("1.1.0", "1.1.1")
    assert result["commits"]["types"] == {"other": 1, "fix": 1}


def test_custom_tag_pattern(repo):
    repo.commit("chore: init").tag("release-2.0.0").tag("v9.9.9").commit("fix: x")
    result = create(repo, tag_pattern="release-{version}")
    assert (result["previous_version"], result["tag"]) == ("2.0.0", "release-2.0.1")
    assert "release-2.0.1" in repo.tags()


def test_explicit_downgrade_refused_nothing_changed(repo):
    repo.commit("chore: init").tag("v5.1.0").commit("feat: x")
    for bad in ("5.0.9", "5.1.0", "5.1.0-rc.1"):
        with pytest.raises(ReleaseError, match="version %s is not greater than the last release 5.1.0" % bad):
            create(repo, version=bad)
    with pytest.raises(ReleaseError, match="'5.2' is not a semantic version"):
        create(repo, version="5.2")
    assert repo.tags() == ["v5.1.0"] and repo.status() == ""
    assert create(repo, version="5.3.0-beta.1+exp.7")["tag"] == "v5.3.0-beta.1+exp.7"


def test_merge_history_window(repo):
    repo.commit("chore: init").tag("v1.0.0")
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feat(ui): dark mode")
    repo.git("checkout", "-q", "main")
    repo.commit("fix: typo")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature")
    result = create(repo, tag=False, changelog=False)
    assert result["version"] == "1.1.0" and result["commits"]["count"] == 3
    assert result["commits"]["types"] == {"other": 1, "fix": 1, "feat": 1}


def test_commit_option_tags_the_changelog_commit(repo):
    repo.commit("chore: init").tag("v1.0.0").commit("feat: x")
    result = create(repo, commit=True)
    assert result["steps"]["commit"] == "created" and repo.status() == ""
    assert repo.git("rev-list", "-n1", "v1.1.0").strip() == result["commit"]
    assert "## [1.1.0]" in repo.git("show", "v1.1.0:CHANGELOG.md")
    again = create(repo, commit=True)
    assert again["released"] is False and again["changed"] is False


def test_signed_tag_with_ssh_format(repo, tmp_path):
    key = tmp_path / "tagkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tagger", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed"
    allowed.write_text("release@example.com " + (tmp_path / "tagkey.pub").read_text())
    repo.git("config", "gpg.format", "ssh")
    repo.git("config", "user.signingkey", str(key))
    repo.git("config", "gpg.ssh.allowedSignersFile", str(allowed))
    repo.commit("chore: init").tag("v1.0.0").commit("fix: x")
    assert create(repo, sign=True)["tag"] == "v1.0.1"
    proc = subprocess.run(["git", "-C", repo.path, "tag", "-v", "v1.0.1"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0 and "Good" in proc.stdout, proc.stdout


# ---------------------------------------------------------------- fail closed and atomic (issue 16)

def test_dirty_tree_refused_then_allowed(repo):
    repo.commit("chore: init").tag("v1.0.0")
    with open(os.path.join(repo.path, "app.py"), "w") as handle:
        handle.write("print(1)\n")
    repo.git("add", "app.py")
    repo.commit("fix: app")
    with open(os.path.join(repo.path, "app.py"), "a") as handle:
        handle.write("print(2)\n")
    with open(os.path.join(repo.path, "scratch.txt"), "w") as handle:
        handle.write("x\n")
    with pytest.raises(ReleaseError, match=r"is not clean \(2 changed or untracked path\(s\): 'app.py', 'scratch.txt'\)"):
        create(repo, commit=True)
    assert repo.tags() == ["v1.0.0"] and not os.path.exists(os.path.join(repo.path, "CHANGELOG.md"))
    assert create(repo, allow_dirty=True)["tag"] == "v1.0.1"


def test_shallow_clone_refused_then_deepened(repo, tmp_path):
    repo.commit("chore: init", "feat: one").tag("v1.0.0").commit("fix: a", "fix: b")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "file://" + repo.path, str(clone)], check=True,
                   env=repo.env)
    shallow = Repo.__new__(Repo)
    shallow.path, shallow.env = str(clone), repo.env
    with pytest.raises(ReleaseError, match=r"clone is a shallow clone: .*set unshallow=true"):
        create(shallow)
    assert shallow.tags() == []
    result = create(shallow, unshallow=True)
    assert (result["previous_version"], result["version"], result["steps"]["unshallow"]) == ("1.0.0", "1.0.1", "fetched")
    assert shallow.git("rev-parse", "--is-shallow-repository").strip() == "false"


def test_invalid_date_and_version_change_nothing(repo):
    repo.commit("chore: init").tag("v1.0.0").commit("fix: a")
    with pytest.raises(ReleaseError, match=r"^date 'yesterday!' is invalid: use an ISO date YYYY-MM-DD"):
        create(repo, date="yesterday!")
    with pytest.raises(ReleaseError, match=r"^version '1\.0\.1\\n' is not a semantic version"):
        create(repo, version="1.0.1\n")
    assert repo.tags() == ["v1.0.0"] and repo.status() == ""


def test_signature_that_does_not_verify_undoes_commit_tag_and_manifest(repo, tmp_path, signing):
    key, pub, other_pub = signing
    repo.commit("chore: init").tag("v1.0.0").commit("feat: x")
    before = repo.git("rev-parse", "HEAD").strip()
    out = str(tmp_path / "out")
    with pytest.raises(ReleaseError) as exc:
        create(repo, commit=True, manifest_dir=out, signing_key=key, public_key=other_pub)
    message = str(exc.value)
    assert message.startswith("release v1.1.0 not made: signature ") and "does not verify" in message
    assert "release commit" in message and "removed" in message and "CHANGELOG.md restored" in message
    assert repo.git("rev-parse", "HEAD").strip() == before and repo.tags() == ["v1.0.0"] and repo.status() == ""
    assert os.listdir(out) == []
    # a signing key that is not a key fails before any change
    bad = tmp_path / "bad_key"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(ReleaseError, match=r"bad_key is not a usable ssh private key"):
        create(repo, commit=True, manifest_dir=out, signing_key=str(bad))
    assert repo.git("rev-parse", "HEAD").strip() == before and os.listdir(out) == []
    # the right key: the whole release, signature verified
    done = create(repo, commit=True, manifest_dir=out, signing_key=key)
    assert done["signature_verified"] is True and repo.tags() == ["v1.0.0", "v1.1.0"]
    assert _manifest.verify(run_git, done["manifest_path"], public_key=pub)["signature_verified"] is True


def test_rerun_completes_a_partial_release(repo, tmp_path, signing):
    key, pub = signing[:2]
    repo.commit("chore: init").tag("v1.0.0").commit("feat: x")
    # an interrupted run: tag made, no manifest (and the changelog written but not committed)
    first = create(repo, date="2026-01-02")
    assert first["tag"] == "v1.1.0"
    out = str(tmp_path / "out")
    again = create(repo, date=None, manifest_dir=out, signing_key=key)
    assert again["released"] is True and again["changed"] is True and again["msg"].startswith("completed release v1.1.0")
    assert again["steps"]["tag"] == "unchanged" and again["steps"]["changelog"] == "unchanged"
    data = json.load(open(again["manifest_path"]))
    assert (data["version"], data["previous_version"], data["bump"]) == ("1.1.0", "1.0.0", "minor")
    assert "## [1.1.0] - 2026-01-02" in data["changelog"]  # the date of the tag's section, not today's
    assert _manifest.verify(run_git, again["manifest_path"], public_key=pub)["signature_verified"] is True
    assert create(repo, manifest_dir=out, signing_key=key)["changed"] is False


def test_rerun_commits_a_changelog_left_uncommitted(repo):
    repo.commit("chore: init").tag("v1.0.0").commit("fix: x")
    create(repo, tag=False)  # stands for a run interrupted between the changelog and the release commit
    assert repo.status() == "?? CHANGELOG.md\n"
    result = create(repo, commit=True)
    assert result["steps"] == {"changelog": "unchanged", "commit": "created", "tag": "created"}
    assert repo.status() == "" and "## [1.0.1]" in repo.git("show", "v1.0.1:CHANGELOG.md")


def test_push_to_upstream_and_failed_push_completed_by_rerun(repo, tmp_path):
    remote = str(tmp_path / "remote.git")
    subprocess.run(["git", "init", "-q", "--bare", remote], check=True, env=repo.env)
    repo.commit("chore: init").tag("v1.0.0")
    repo.git("remote", "add", "origin", remote)
    repo.git("push", "-q", "-u", "origin", "main", "v1.0.0")
    repo.commit("feat: x")
    result = create(repo, commit=True, push="auto")
    assert result["steps"]["push"] == "pushed" and result["push"]["remote"] == "origin"

    def remote_ref(ref):
        return subprocess.run(["git", "-C", remote, "rev-parse", "--verify", "-q", ref + "^{commit}"],
                              stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout.strip()
    assert remote_ref("refs/tags/v1.1.0") == result["commit"] == remote_ref("refs/heads/main")

    repo.commit("fix: y")
    repo.git("remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(ReleaseError, match=r"release v1.1.1 is complete locally but was not pushed: git push to "
                                           r"origin failed in .*; fix the remote and rerun"):
        create(repo, commit=True, push="auto")
    assert "v1.1.1" in repo.tags() and remote_ref("refs/tags/v1.1.1") == ""
    repo.git("remote", "set-url", "origin", remote)
    rerun = create(repo, commit=True, push="auto")
    assert rerun["released"] is False and rerun["steps"]["push"] == "pushed" and rerun["changed"] is True
    assert remote_ref("refs/tags/v1.1.1") == repo.git("rev-parse", "HEAD").strip()
    assert create(repo, commit=True, push="auto")["changed"] is False
    with pytest.raises(ReleaseError, match="push=always but branch side has no upstream remote"):
        repo.git("checkout", "-q", "-b", "side")
        create(repo, push="always")


# ---------------------------------------------------------------- end to end through ansible

@pytest.fixture
def signing(tmp_path):
    key = tmp_path / "release_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshos-release", "-f", str(key)], check=True)
    other = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    return str(key), str(key) + ".pub", str(other) + ".pub"


def test_module_check_mode_create_idempotent_verify_and_tamper(repo, tmp_path, env, signing):
    key, pub, other_pub = signing
    repo.commit("chore: init").tag("v5.0.1").commit("feat(api): weights", "fix: race")
    artifact = tmp_path / "meshapp-5.1.0.tar.gz"
    artifact.write_bytes(b"artifact bytes")
    out = str(tmp_path / "out")
    args = {"path": repo.path, "manifest_dir": out, "artifacts": [str(artifact)], "signing_key": key, "date": "2026-01-02"}

    checked = ansible(env, args, check=True, diff=True)
    assert checked["changed"] is True and checked["version"] == "5.1.0" and checked["tag"] == "v5.1.0"
    assert "### Features" in checked["changelog"]
    assert repo.tags() == ["v5.0.1"] and repo.status() == "" and not os.path.exists(out)

    first = ansible(env, args)
    assert first["changed"] is True
    assert first["steps"] == {"changelog": "updated", "tag": "created", "manifest": "written", "signature": "written"}
    manifest_path = first["manifest_path"]
    assert manifest_path == os.path.join(out, "release-5.1.0.json") and os.path.exists(manifest_path + ".sig")
    data = json.load(open(manifest_path))
    assert (data["version"], data["previous_version"], data["commit"]) == ("5.1.0", "5.0.1", first["commit"])
    assert data["artifacts"][0]["name"] == "meshapp-5.1.0.tar.gz"
    assert "Release 5.1.0" in repo.git("tag", "-n1", "v5.1.0")
    # the key's own public half (derived) verified the new signature
    assert first["signature_verified"] is True

    second = ansible(env, args)
    assert second["changed"] is False and second["released"] is False and second["version"] == "5.1.0"
    assert ansible(env, dict(args, version="5.1.0"))["changed"] is False
    refused = ansible(env, dict(args, version="5.0.0"), expect_rc=2)
    assert "not greater than the last release 5.1.0" in refused["msg"]

    verify = {"state": "verify", "manifest_path": manifest_path, "public_key": pub}
    good = ansible(env, verify)
    assert good["verified"] is True and good["signature_verified"] is True and good["changed"] is False

    wrong_key = ansible(env, dict(verify, public_key=other_pub), expect_rc=2)
    assert "does not verify" in wrong_key["msg"]

    original = open(manifest_path).read()
    with open(manifest_path, "w") as handle:
        handle.write(original.replace('"5.1.0"', '"5.1.1"', 1))
    tampered = ansible(env, verify, expect_rc=2)
    assert tampered["verified"] is False and "does not verify" in tampered["msg"]

    with open(manifest_path, "w") as handle:
        handle.write(original)
    artifact.write_bytes(b"artifact bytes, swapped")
    swapped = ansible(env, verify, expect_rc=2)
    assert "does not match the manifest" in swapped["msg"]


def test_manifest_verify_direct_allowed_signers(tmp_path, signing):
    key, pub = signing[:2]
    art = tmp_path / "a.tgz"
    art.write_bytes(b"x")
    path = tmp_path / "release-1.0.0.json"
    content = _manifest.dumps({"version": "1.0.0", "artifacts": _manifest.artifact_entries([str(art)])})
    path.write_text(content)
    (tmp_path / "release-1.0.0.json.sig").write_text(_manifest.sign(run_git, key, content))
    allowed = tmp_path / "allowed_signers"
    allowed.write_text('ops@example.com namespaces="meshos-release" ' + open(pub).read())
    result = _manifest.verify(run_git, str(path), allowed_signers=str(allowed), identity="ops@example.com")
    assert result["signature_verified"] is True
    with pytest.raises(_manifest.ManifestError, match="does not verify"):
        _manifest.verify(run_git, str(path), allowed_signers=str(allowed), identity="someone@else")


def test_playbook_renders_announcement_and_check_mode(repo, tmp_path, env):
    repo.commit("chore: init").tag("v5.0.1")
    repo.commit("feat: self-healing engine", "perf(sched): 40% faster job scheduling", "fix: telemetry memory leak")
    out = str(tmp_path / "release")
    base = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", os.path.join(ROOT, "playbooks", "create_release.yml"),
            "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "create_release_repo=%s" % repo.path,
            "-e", "create_release_output_dir=%s" % out, "-e", "bump=auto"]
    check = subprocess.run(base + ["--check", "--diff"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout
    assert repo.tags() == ["v5.0.1"] and repo.status() == "" and not os.path.exists(os.path.join(out, "release-5.1.0.json"))
    run = subprocess.run(base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout
    announcement = open(os.path.join(out, "announcement-5.1.0.md")).read()
    assert announcement.startswith("Subject: Autonomous Mesh OS v5.1.0 Released")
    assert "- self-healing engine" in announcement and "- **sched:** 40% faster job scheduling" in announcement
    assert "- telemetry memory leak" in announcement and "CHANGELOG_v5.1.0.md" in announcement
    assert os.path.exists(os.path.join(out, "CHANGELOG_v5.1.0.md")) and "v5.1.0" in repo.tags()


def test_failed_release_is_skipped_as_previous_and_marked_in_the_changelog(repo, env):
    """v5.0.0 good, v5.1.0 tagged but never reached production, then a fix: through the module, with real git."""
    repo.commit("feat: first")
    assert create(repo, version="5.0.0", commit=True, date="2026-11-01")["tag"] == "v5.0.0"
    repo.commit("feat(api): weights")
    assert create(repo, commit=True, date="2026-11-30")["tag"] == "v5.1.0"
    repo.commit("fix: race")
    args = {"path": repo.path, "failed_versions": ["5.1.0"], "commit": True, "date": "2026-12-01"}
    out = ansible(env, args)
    # the commits since 5.0.0 decide (a feat: minor); 5.1.0 is taken, so the minor bump starts from it
    assert (out["version"], out["previous_version"], out["previous_tag"], out["bump"]) == ("5.2.0", "5.0.0", "v5.0.0",
                                                                                           "minor")
    assert out["skipped_versions"] == ["5.1.0"] and out["commits"]["since"] == "v5.0.0"
    assert "- **api:** weights" in out["changelog"] and "- race" in out["changelog"]
    text = open(os.path.join(repo.path, "CHANGELOG.md")).read()
    assert "\n## [5.1.0] - 2026-11-30 (FAILED: never reached production)\n" in text
    assert "\n## [5.0.0] - 2026-11-01\n" in text and text.index("## [5.2.0] - 2026-12-01") < text.index("## [5.1.0]")
    assert repo.tags() == ["v5.0.0", "v5.1.0", "v5.2.0"] and repo.status() == ""
    assert "weights" in repo.git("tag", "-l", "--format=%(contents)", "v5.2.0")
    # rerun: HEAD is released, nothing changes; a bad entry fails naming it
    again = ansible(env, args)
    assert again["changed"] is False and again["released"] is False and again["version"] == "5.2.0"
    bad = ansible(env, dict(args, failed_versions=["5.1"]), expect_rc=2)
    assert bad["msg"].startswith("failed_versions entry '5.1' is not a semantic version")
