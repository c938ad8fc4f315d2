# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.meshos.release.plugins.module_utils.release import changelog as _changelog
from ansible_collections.meshos.release.plugins.module_utils.release.conventional import parse_message


def _commits():
    return [
        parse_message("feat(api): weights", "a" * 40),
        parse_message("fix: race", "b" * 40),
        parse_message("chore: bump deps", "c" * 40),
        parse_message("perf(db)!: new index\n\nBREAKING CHANGE: reindex needed\nsecond line\nSigned-off-by: x <x@y>", "d" * 40),
        parse_message("docs: readme", "e" * 40),
    ]


def test_group_order_and_breaking_first():
    groups = _changelog.group(_commits())
    assert [group[0] for group in groups] == ["Breaking changes", "Features", "Bug fixes", "Performance"]
    assert groups[0][1] == ["**db:** reindex needed\nsecond line"]


def test_configurable_sections_and_links():
    groups = _changelog.group(_commits(), {"docs": "Documentation"}, "https://git.example/c/{sha}")
    assert [group[0] for group in groups] == ["Breaking changes", "Documentation"]
    assert groups[1][1] == ["readme ([eeeeeee](https://git.example/c/%s))" % ("e" * 40)]


def test_render_section():
    text = _changelog.render_section("5.1.0", "2026-01-02", _changelog.group(_commits()))
    assert text.startswith("## [5.1.0] - 2026-01-02\n\n### Breaking changes\n\n- **db:** reindex needed\n  second line\n")
    assert "Signed-off-by" not in text
    assert "- **api:** weights" in text and "bump deps" not in text
    assert "No user-facing changes." in _changelog.render_section("1.0.0", "2026-01-02", [])


def test_prepend_new_file_and_idempotent():
    section = _changelog.render_section("1.0.0", "2026-01-02", [])
    first = _changelog.prepend(None, section, "1.0.0")
    assert first.startswith(_changelog.HEADER) and section in first
    assert _changelog.prepend(first, section, "1.0.0") == first
    second = _changelog.prepend(first, _changelog.render_section("1.1.0", "2026-01-03", []), "1.1.0")
    assert second.index("## [1.1.0]") < second.index("## [1.0.0]")
    assert second.startswith(_changelog.HEADER)


def test_prepend_keeps_unreleased_on_top():
    existing = "# Changelog\n\n## [Unreleased]\n\n- wip\n\n## [1.0.0] - 2026-01-01\n\n- old\n"
    out = _changelog.prepend(existing, "## [1.1.0] - 2026-01-02\n\n- new\n", "1.1.0")
    assert out.index("[Unreleased]") < out.index("[1.1.0]") < out.index("[1.0.0]")
    assert _changelog.prepend("# Changelog\n", "## [1.0.0] - x\n", "1.0.0") == "# Changelog\n\n## [1.0.0] - x\n"


def test_reverts_section():
    commits = [parse_message('Revert "feat(api): weights"\n\nThis reverts commit %s.' % ("a" * 40), "b" * 40),
               parse_message("revert: fix: race", "c" * 40), parse_message("fix: other", "d" * 40)]
    groups = _changelog.group(commits)
    assert groups == [("Bug fixes", ["other"]), ("Reverts", ["feat(api): weights", "fix: race"])]


def test_mark_failed_marks_exactly_the_listed_headings_once():
    text = ("# Changelog\n\n## [Unreleased]\n\n## [5.2.0] - 2026-12-01\n\n- b\n\n## [5.1.0] - 2026-11-30\n\n- a\n\n"
            "## [5.1.0-rc.1] - 2026-11-29\n\n## [15.1.0] - 2020-01-01\n\n## [5.0.0] - 2026-11-01\n\n- first\n")
    marked = _changelog.mark_failed(text, ["5.1.0"])
    assert marked == text.replace("## [5.1.0] - 2026-11-30\n", "## [5.1.0] - 2026-11-30 %s\n" % _changelog.FAILED_MARK)
    assert _changelog.mark_failed(marked, ["5.1.0"]) == marked
    assert _changelog.mark_failed(text, []) == text and _changelog.mark_failed(None, ["5.1.0"]) is None
    assert _changelog.mark_failed(text, ["9.9.9"]) == text
