# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replay generated release histories of three conventions through release_version's plan (issue 15).

Each history is a real git repository (built in one ``git fast-import``, no network) whose tags follow one tool's
version rules, computed by a small oracle written here from that tool's documented defaults, independent of the module:

- semantic-release (commit-analyzer defaults): breaking major, feat minor, fix/perf/revert patch; a revert and the
  commit it reverts in the same release cancel out (conventional-commits-filter).
- commitizen (cz_conventional_commits bump_map): breaking (``!`` or footer) major, feat minor, fix/refactor/perf patch;
  reverts do not bump and nothing cancels.
- git-cliff (defaults, next_version rules): breaking major, feat minor, any other conventional type patch;
  unconventional messages are ignored and nothing cancels.

For every tag, its predecessors are the known releases and the tag's commit is HEAD; the module must predict the tag's
version with the convention's types table (the tables documented in the module's EXAMPLES). The generator is also used
by bench/release_version_bench.py.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the module's types table for each convention (the same tables as in release_version's EXAMPLES)
TABLES = {
    "semantic-release": None,  # the defaults: feat minor, fix/perf/revert patch
    "commitizen": {"refactor": "patch", "revert": "none"},
    "git-cliff": {"*": "patch"},
}
RELEASES = 250
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
IDENT = "Replay Bot <replay@example.com>"
_HEADER = re.compile(r"^(?P<type>[a-z]+)(?:\([a-z]+\))?(?P<bang>!)?: \S")
_RANK = {None: 0, "patch": 1, "minor": 2, "major": 3}


def _import_release():
    try:
        from ansible_collections.meshos.release.plugins.module_utils.release import release as _release  # pylint: disable=import-outside-toplevel
    except ImportError:
        tree = tempfile.mkdtemp(prefix="relver-replay-collections-")
        os.makedirs(os.path.join(tree, "ansible_collections", "meshos"))
        os.symlink(ROOT, os.path.join(tree, "ansible_collections", "meshos", "release"))
        atexit.register(shutil.rmtree, tree, True)
        sys.path.insert(0, tree)
        from ansible_collections.meshos.release.plugins.module_utils.release import release as _release  # pylint: disable=import-outside-toplevel
    return _release


# ---------------------------------------------------------------- oracles (each tool's rules, written independently)

def _kind(message):
    header = message.split("\n", 1)[0]
    match = _HEADER.match(header)
    breaking = "\nBREAKING CHANGE: " in message
    if match:
        return match.group("type"), breaking or bool(match.group("bang"))
    if header.startswith('Revert "'):
        return "git-revert", False
    return None, False


def _reverted_sha(message):
    found = re.search(r"^This reverts commit ([0-9a-f]{40})\.", message, re.M)
    return found.group(1) if found else None


def oracle_bump(convention, window):
    """The bump a tool makes for ``window`` ([(sha, message)], oldest first), or None for no release."""
    if convention == "semantic-release":
        # newest first, as conventional-commits-filter does: a revert drops itself and its target
        dropped = set()
        for sha, message in reversed(window):
            if sha in dropped:
                continue
            target = _reverted_sha(message)
            if _kind(message)[0] in ("revert", "git-revert") and target in [s for s, _msg in window if s not in dropped]:
                dropped.update((sha, target))
        window = [c for c in window if c[0] not in dropped]
        rules = {"feat": "minor", "fix": "patch", "perf": "patch", "revert": "patch", "git-revert": "patch"}
    elif convention == "commitizen":
        rules = {"feat": "minor", "fix": "patch", "refactor": "patch", "perf": "patch"}
    else:
        rules = {"feat": "minor"}
    best = None
    for _sha, message in window:
        ctype, breaking = _kind(message)
        if ctype is None or (convention == "git-cliff" and ctype == "git-revert"):
            continue
        if breaking:
            kind = "major"
        elif convention == "git-cliff":
            kind = rules.get(ctype, "patch")
        else:
            kind = rules.get(ctype)
        if _RANK[kind] > _RANK[best]:
            best = kind
    return best


def _bump(version, kind):
    major, minor, patch = version
    if kind == "major":
        return (major + 1, 0, 0)
    if kind == "minor":
        return (major, minor + 1, 0)
    return (major, minor, patch + 1)


# ---------------------------------------------------------------- history generator

def _commit_sha(parent, message, when):
    ident = "%s %d +0000" % (IDENT, when)
    text = "tree %s\n%sauthor %s\ncommitter %s\n\n%s" % (
        EMPTY_TREE, "parent %s\n" % parent if parent else "", ident, ident, message)
    raw = text.encode("utf-8")
    return hashlib.sha1(b"commit %d\x00" % len(raw) + raw).hexdigest()


def _message(rng, convention, window, released):
    scope = rng.choice(["", "", "(api)", "(ui)", "(db)", "(sched)"])
    roll = rng.random()
    word = rng.choice(["weights", "queue", "cache", "retries", "probe", "index", "banner", "timeouts"])
    if roll < 0.07:  # a revert
        in_window = [c for c in window if _kind(c[1])[0] is not None]
        if convention == "semantic-release" and in_window and rng.random() < 0.6:
            target = rng.choice(in_window)
        elif released:
            target = rng.choice(released[-40:])
        else:
            return "fix%s: %s" % (scope, word)
        header = target[1].split("\n", 1)[0]
        if convention == "git-cliff" or (convention == "semantic-release" and rng.random() < 0.3):
            return "revert: %s\n\nThis reverts commit %s.\n" % (header, target[0])
        return 'Revert "%s"\n\nThis reverts commit %s.\n' % (header, target[0])
    if roll < 0.09:  # a breaking change
        if convention != "semantic-release" and rng.random() < 0.5:
            return "feat%s!: drop the old %s" % (scope, word)
        return "feat%s: new %s\n\nBREAKING CHANGE: the %s format changed\n" % (scope, word, word)
    if roll < 0.14:
        return rng.choice(["Merge branch 'topic-%d'" % rng.randint(1, 99), "Update README", "WIP"])
    ctype = rng.choice(["feat", "fix", "fix", "perf", "refactor", "chore", "chore", "docs", "test", "ci", "style",
                        "build"])
    return "%s%s: %s %s" % (ctype, scope, rng.choice(["add", "tune", "fix", "rework"]), word)


def generate(path, convention, releases=RELEASES, seed=15):
    """A bare repository with ``releases`` + 1 tags; returns ``[(tag, commit_sha, version_string)]``, oldest first."""
    rng = random.Random("%s-%d" % (convention, seed))
    stream = []
    parent = None
    when = 1700000000
    released = []  # commits already in a release (candidates for reverts of released work)
    window = []
    tags = []
    version = (1, 0, 0)
    mark = 0

    def add(message):
        nonlocal parent, when, mark
        message = message if message.endswith("\n") else message + "\n"
        when += 60
        mark += 1
        sha = _commit_sha(parent, message, when)
        data = message.encode("utf-8")
        stream.append(b"commit refs/heads/main\nmark :%d\nauthor %s %d +0000\ncommitter %s %d +0000\ndata %d\n%s\n"
                      % (mark, IDENT.encode(), when, IDENT.encode(), when, len(data), data))
        parent = sha
        return sha, message

    def tag(sha, name):
        if len(tags) % 2:
            stream.append(b"reset refs/tags/%s\nfrom :%d\n\n" % (name.encode(), mark))
        else:
            text = ("release %s\n" % name).encode()
            stream.append(b"tag %s\nfrom :%d\ntagger %s %d +0000\ndata %d\n%s\n"
                          % (name.encode(), mark, IDENT.encode(), when, len(text), text))
        tags.append((name, sha, "%d.%d.%d" % version))

    first = add("chore: initial import")
    tag(first[0], "v1.0.0")
    while len(tags) <= releases:
        for _unused in range(rng.randint(1, 5)):
            window.append(add(_message(rng, convention, window, released)))
        kind = oracle_bump(convention, window)
        if kind is None:
            continue  # the tool would not release yet: the window grows
        version = _bump(version, kind)
        tag(window[-1][0], "v%d.%d.%d" % version)
        released.extend(c for c in window if _kind(c[1])[0] is not None)
        window = []
    subprocess.run(["git", "init", "-q", "--bare", path], check=True)
    subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input=b"".join(stream) + b"done\n", check=True)
    head = subprocess.run(["git", "-C", path, "rev-parse", "refs/heads/main"], stdout=subprocess.PIPE, check=True,
                          universal_newlines=True).stdout.strip()
    assert head == parent, "fast-import wrote %s, the generator computed %s" % (head, parent)
    return tags


class ReplayGit:
    """A runner over the real git that shows the repository as it was just before tag ``index``: HEAD is that
    tag's commit, later tags are hidden. The full tag listing is read once; the commit walk is git's own."""

    def __init__(self, path, tags, cache=True):
        self.path = path
        self.tags = tags
        self.cache = cache
        self.head = None
        self.visible = set()
        self._listing = None

    def at(self, index):
        self.head = self.tags[index][1]
        self.visible = set(t[0] for t in self.tags[:index])
        return self

    @staticmethod
    def _run(argv, data=None):
        proc = subprocess.run(argv, input=data.encode("utf-8") if isinstance(data, str) else data,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    def __call__(self, argv, cwd=None, data=None):
        argv = [arg.replace("HEAD", self.head) for arg in argv]
        if "for-each-ref" in argv:
            if not self.cache or self._listing is None or any(a.startswith("--merged") for a in argv):
                result = self._run(argv, data)
                if not any(a.startswith("--merged") for a in argv):
                    self._listing = result
            else:
                result = self._listing
            rc, out, err = result
            keep = [line for line in out.splitlines(True) if line.split("\x1f", 1)[0] in self.visible]
            return rc, "".join(keep), err
        return self._run(argv, data)


def replay(path, tags, types, cache=True):
    """``(agreed, [(tag, predicted)] disagreements)`` over every tag after the first."""
    release = _import_release()
    runner = ReplayGit(path, tags, cache=cache)
    wrong = []
    for index in range(1, len(tags)):
        planned = release.plan(runner.at(index), path, types=types, date="2026-01-02")
        if not planned["released"] or planned["version"] != tags[index][2]:
            wrong.append((tags[index][0], planned["version"] if planned["released"] else planned["msg"]))
    return len(tags) - 1 - len(wrong), wrong


@pytest.mark.parametrize("convention", sorted(TABLES))
def test_replay_predicts_every_tag(tmp_path, convention):
    path = str(tmp_path / ("%s.git" % convention))
    tags = generate(path, convention)
    assert len(tags) == RELEASES + 1
    # the histories exercise what they must: reverts of released work, cancelled pairs, breaking changes
    log = subprocess.run(["git", "-C", path, "log", "--format=%B%x00", "main"], stdout=subprocess.PIPE, check=True,
                         universal_newlines=True).stdout
    assert log.count("This reverts commit") > 20 and log.count("BREAKING CHANGE") + log.count("!:") > 5
    agreed, wrong = replay(path, tags, TABLES[convention])
    print("%s: %d/%d releases predicted" % (convention, agreed, len(tags) - 1))
    assert wrong == [], "%s: %d/%d agree; first disagreements %s" % (convention, agreed, len(tags) - 1, wrong[:5])


@pytest.mark.parametrize("history,table", [("commitizen", "semantic-release"), ("git-cliff", "commitizen"),
                                           ("git-cliff", "semantic-release"), ("semantic-release", "commitizen")])
def test_the_replay_discriminates(tmp_path, history, table):
    """Replayed with a table of a convention whose rules differ, a history gets tags wrong (the check has teeth).

    (git-cliff's table on the two others agrees: it bumps patch for more types, and their windows close only on a
    release-worthy commit, so those are the pairs that cannot differ.)
    """
    path = str(tmp_path / "h.git")
    tags = generate(path, history, releases=60)
    assert replay(path, tags, TABLES[history])[1] == []
    assert replay(path, tags, TABLES[table])[1] != []
