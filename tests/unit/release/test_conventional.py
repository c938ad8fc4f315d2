# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils.release.conventional import (
    bump_for, count_types, drop_reverted, parse_message, validate_types,
)
from ansible_collections.meshos.release.plugins.module_utils.release.semver import SemverError


def test_plain_header():
    commit = parse_message("feat(api): add weights\n", "a" * 40)
    assert (commit.type, commit.scope, commit.subject, commit.breaking) == ("feat", "api", "add weights", False)


def test_uppercase_type_and_no_scope():
    commit = parse_message("FIX: Crash on start")
    assert (commit.type, commit.scope, commit.subject) == ("fix", None, "Crash on start")


def test_bang_breaking_uses_subject():
    commit = parse_message("refactor(core)!: drop python 3.8")
    assert commit.breaking and commit.breaking_description == "drop python 3.8"


@pytest.mark.parametrize("token", ["BREAKING CHANGE", "BREAKING-CHANGE"])
def test_footer_breaking_full_description_without_trailers(token):
    message = ("feat: new queue\n\nLong body.\n\n%s: the queue API changed shape;\nmigrate with tool X.\n"
               "Signed-off-by: A <a@example.com>\nReviewed-by: B <b@example.com>\n" % token)
    commit = parse_message(message)
    assert commit.breaking
    assert commit.breaking_description == "the queue API changed shape;\nmigrate with tool X."


def test_non_conventional():
    commit = parse_message("Merge branch 'x'\n\nfeat: inside body")
    assert commit.type is None and not commit.breaking
    assert parse_message("feat:missing space").type is None
    assert parse_message("").type is None


def _commits(*messages):
    return [parse_message(m, "%040d" % i) for i, m in enumerate(messages)]


def test_bump_rules():
    assert bump_for(_commits("chore: x", "docs: y"))[0] == "none"
    assert bump_for(_commits("chore: x", "fix: y"))[0] == "patch"
    assert bump_for(_commits("PERF: x"))[0] == "patch"
    assert bump_for(_commits("fix: y", "Feat: x"))[0] == "minor"
    kind, reason = bump_for(_commits("feat: x", "fix!: y"))
    assert kind == "major" and "breaking change" in reason
    assert bump_for(_commits("chore: x\n\nBREAKING CHANGE: gone"))[0] == "major"
    assert bump_for(_commits("random text"))[0] == "none"


def test_zero_major():
    assert bump_for(_commits("feat!: x"), zero_major=True)[0] == "minor"
    assert bump_for(_commits("feat!: x"), zero_major=True, breaking_on_zero="major")[0] == "major"
    assert "0.x" in bump_for(_commits("feat!: x"), zero_major=True)[1]


def test_custom_types():
    table = validate_types({"Docs": "patch", "feat": "patch"})
    assert table["docs"] == "patch" and table["fix"] == "patch"
    assert bump_for(_commits("docs: x"), table)[0] == "patch"
    assert bump_for(_commits("feat: x"), table)[0] == "patch"
    with pytest.raises(SemverError, match=r"types\[docs\]='huge' is invalid"):
        validate_types({"docs": "huge"})


def test_count_types():
    assert count_types(_commits("feat: a", "FEAT: b", "what")) == {"feat": 2, "other": 1}


# ---------------------------------------------------------------- reverts (issue 15)

def test_git_revert_header_and_body():
    commit = parse_message('Revert "feat(api): add weights"\n\nThis reverts commit ABCDEF0123456789.\n', "9" * 40)
    assert (commit.type, commit.scope, commit.subject, commit.reverts) == ("revert", None, "feat(api): add weights",
                                                                           "abcdef0123456789")
    assert not commit.breaking


def test_conventional_revert_header():
    commit = parse_message("revert: fix: race\n\nThis reverts commit 1234567.")
    assert (commit.type, commit.subject, commit.reverts) == ("revert", "fix: race", "1234567")
    assert parse_message("revert(api): feat: x").reverts is None
    # "This reverts commit" in a non-revert commit does not make it a revert
    assert parse_message("fix: y\n\nThis reverts commit 1234567.").reverts is None


def test_revert_bumps_patch_by_default_and_is_configurable():
    revert = [parse_message('Revert "feat: x"\n\nThis reverts commit %s.' % ("a" * 40), "b" * 40)]
    assert bump_for(revert, validate_types(None))[0] == "patch"
    assert bump_for(revert, validate_types({"revert": "none"}))[0] == "none"
    assert bump_for(revert, validate_types({"revert": "minor"}))[0] == "minor"


def test_wildcard_type_bumps_every_other_conventional_type():
    table = validate_types({"*": "patch"})
    assert bump_for([parse_message("chore: deps", "a" * 40)], table)[0] == "patch"
    assert bump_for([parse_message("feat: x", "a" * 40)], table)[0] == "minor"
    assert bump_for([parse_message("Merge branch 'x'", "a" * 40)], table)[0] == "none"
    with pytest.raises(SemverError, match="types key 'a b' is invalid"):
        validate_types({"a b": "patch"})


def test_drop_reverted_pairs_by_sha_and_header():
    feat = parse_message("feat: x", "a" * 40)
    fix = parse_message("fix: y", "c" * 40)
    by_sha = parse_message('Revert "feat: x"\n\nThis reverts commit %s.' % ("a" * 12), "b" * 40)
    assert drop_reverted([by_sha, fix, feat]) == [fix]
    by_header = parse_message("revert: fix: y", "d" * 40)
    assert drop_reverted([by_header, fix, feat]) == [feat]
    # the reverted commit is older than this window: the revert stays (and bumps patch)
    outside = parse_message('Revert "feat: z"\n\nThis reverts commit %s.' % ("e" * 40), "f" * 40)
    assert drop_reverted([outside, fix]) == [outside, fix]


def test_revert_of_a_revert_keeps_the_original():
    feat = parse_message("feat: x", "a" * 40)
    revert = parse_message('Revert "feat: x"\n\nThis reverts commit %s.' % ("a" * 40), "b" * 40)
    again = parse_message('Revert "Revert "feat: x""\n\nThis reverts commit %s.' % ("b" * 40), "c" * 40)
    assert again.subject == 'Revert "feat: x"' and again.reverts == "b" * 40
    assert drop_reverted([again, revert, feat]) == [feat]
