# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import multiprocessing

import pytest

from ansible_collections.meshos.release.plugins.module_utils._audit import (
    GENESIS,
    AuditError,
    AuditLog,
    entry_hash,
)


def _fill(path, n=5):
    log = AuditLog(str(path))
    for i in range(n):
        log.append(actor="alice", action="deploy", version="5.1.%d" % i, environment="staging",
                   strategy="rolling", result="success", duration=10.0 + i, details={"i": i})
    return log


def _lines(path):
    return path.read_text().splitlines(True)


def test_append_chains_entries(tmp_path):
    log = _fill(tmp_path / "audit.jsonl", 3)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == GENESIS
    assert entries[1]["prev_hash"] == entries[0]["hash"]
    assert all(entry_hash(e) == e["hash"] for e in entries)
    assert log.verify() == {"valid": True, "entries": 3, "first_bad_line": None, "error": None,
                            "last_hash": entries[-1]["hash"]}


def test_empty_log_verifies(tmp_path):
    assert AuditLog(str(tmp_path / "none.jsonl")).verify()["valid"] is True


def test_edit_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    lines = _lines(path)
    entry = json.loads(lines[2])
    entry["result"] = "failure"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 3
    assert "edited" in report["error"]


def test_edit_with_recomputed_hash_detected_on_next_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["actor"] = "mallory"
    entry["hash"] = entry_hash(entry)
    lines[1] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))
    assert log.verify()["first_bad_line"] == 3


def test_delete_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    lines = _lines(path)
    del lines[1]
    path.write_text("".join(lines))
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 2


def test_reorder_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    assert log.verify()["first_bad_line"] == 2


def test_insert_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    lines = _lines(path)
    fake = json.loads(lines[1])
    fake["details"] = {"forged": True}
    fake["hash"] = entry_hash(fake)
    lines.insert(2, json.dumps(fake) + "\n")
    path.write_text("".join(lines))
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 3


def test_truncate_whole_lines_detected_by_head(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    path.write_text("".join(_lines(path)[:3]))
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 4
    assert "cut off" in report["error"]


def test_truncate_mid_line_detected(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path)
    data = path.read_text()
    path.write_text(data[:-40])
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 5


def test_missing_head_detected_unless_not_required(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 2)
    (tmp_path / "audit.jsonl.head").unlink()
    assert log.verify()["valid"] is False
    assert log.verify(require_head=False)["valid"] is True


def test_append_refuses_missing_line_end(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 2)
    path.write_text(path.read_text()[:-1])
    with pytest.raises(AuditError, match="line 2 has no line end"):
        log.append(actor="a", action="deploy", result="success")


def test_append_refuses_damaged_tail(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 2)
    path.write_text(path.read_text()[:-10])
    with pytest.raises(AuditError, match="refusing to extend"):
        log.append(actor="a", action="deploy", result="success")


@pytest.mark.parametrize("fields, match", [
    (dict(actor="", action="deploy", result="success"), "actor"),
    (dict(actor="a", action="Deploy Now", result="success"), "action 'Deploy Now' is not allowed"),
    (dict(actor="a", action="deploy", result="great"), "result 'great' is not allowed"),
    (dict(actor="a", action="deploy", result="success", duration=-1), "duration"),
    (dict(actor="a", action="deploy", result="success", details=[1]), "details"),
])
def test_bad_input(tmp_path, fields, match):
    path = tmp_path / "audit.jsonl"
    with pytest.raises(AuditError, match=match):
        AuditLog(str(path)).append(**fields)
    assert not path.exists()


def test_query_filters(tmp_path):
    log = _fill(tmp_path / "audit.jsonl", 3)
    log.append(actor="bob", action="rollback", version="5.1.1", environment="production", result="success")
    assert [e["seq"] for e in log.query(version="5.1.1")] == [2, 4]
    assert [e["seq"] for e in log.query(environment="production")] == [4]
    assert [e["seq"] for e in log.query(action="deploy", version="5.1.1")] == [2]


def test_preview_does_not_write(tmp_path):
    path = tmp_path / "audit.jsonl"
    entry = AuditLog(str(path)).preview(actor="a", action="deploy", result="started")
    assert entry["seq"] == 1 and not path.exists()


def _worker(path, n):
    log = AuditLog(path)
    for _dummy in range(n):
        log.append(actor="w", action="deploy", result="info")


def test_concurrent_appends_keep_the_chain(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(path, 15)) for _dummy in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    report = AuditLog(path).verify()
    assert report == dict(report, valid=True, entries=60)
