# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import glob
import json
import multiprocessing
import os

import pytest

from ansible_collections.meshos.release.plugins.module_utils import _audit
from ansible_collections.meshos.release.plugins.module_utils._audit import AuditLog
from ansible_collections.meshos.release.plugins.module_utils._audit_chain import (
    GENESIS,
    AuditError,
    entry_hash,
    entry_mac,
    load_key,
)

KEY = b"k" * 32


def _fill(path, n=5, key=None):
    log = AuditLog(str(path), key=key)
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
                            "last_hash": entries[-1]["hash"], "keyed": False, "authenticated": False}


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


# ------------------------------------------------------------------ head check on append


def _forge_next(path, **changes):
    """A correctly chained next line (hash recomputed, as anyone with write access can), without the key."""
    last = json.loads(_lines(path)[-1])
    entry = dict(last, seq=last["seq"] + 1, prev_hash=last["hash"], actor="mallory", **changes)
    entry.pop("mac", None)
    entry["hash"] = entry_hash(entry)
    return entry


def test_append_refuses_line_written_without_the_lock(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 3)
    with open(path, "a") as handle:
        handle.write(json.dumps(_forge_next(path)) + "\n")
    with pytest.raises(AuditError, match=r"line 4 does not match the head file: not recorded in the head file"):
        log.append(actor="a", action="deploy", result="success")
    assert len(_lines(path)) == 4
    assert log.verify()["first_bad_line"] == 4


def test_append_refuses_replaced_head_and_missing_head(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 3)
    head = tmp_path / "audit.jsonl.head"
    head.write_text(json.dumps({"seq": 3, "hash": "f" * 64}))
    with pytest.raises(AuditError, match="line 3 does not match the head file: hash differs"):
        log.append(actor="a", action="deploy", result="success")
    head.unlink()
    with pytest.raises(AuditError, match="line 3 is not covered by a head file"):
        log.append(actor="a", action="deploy", result="success")
    assert len(_lines(path)) == 3


def test_append_refuses_lines_cut_off_the_end(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 4)
    path.write_text("".join(_lines(path)[:2]))
    with pytest.raises(AuditError, match="line 3 does not match the head file: missing"):
        log.append(actor="a", action="deploy", result="success")


# ------------------------------------------------------------------ failed appends leave nothing behind


def _leftovers(tmp_path):
    return sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.tmp*")))


@pytest.mark.parametrize("fault", ["write", "short_write", "fsync", "head"])
def test_failed_append_leaves_no_partial_line_and_no_temp_file(tmp_path, monkeypatch, fault):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 2)
    before = path.read_bytes()
    head_before = (tmp_path / "audit.jsonl.head").read_bytes()
    real_write, real_fsync, real_replace = os.write, os.fsync, os.replace

    def enospc(*_args):
        raise OSError(28, "No space left on device")

    def half_then_full(fd, data):
        if len(data) > 10:
            return real_write(fd, data[:len(data) // 2])  # the disk fills up mid-line
        return enospc()

    if fault == "write":
        monkeypatch.setattr(_audit.os, "write", lambda fd, data: (real_write(fd, data[:7]), enospc())[1])
    elif fault == "short_write":
        monkeypatch.setattr(_audit.os, "write", half_then_full)
    elif fault == "fsync":
        calls = []

        def fsync_fails_on_the_log(fd):
            calls.append(fd)
            if len(calls) == 1:
                enospc()
            return real_fsync(fd)
        monkeypatch.setattr(_audit.os, "fsync", fsync_fails_on_the_log)
    else:
        monkeypatch.setattr(_audit.os, "replace", enospc)
    with pytest.raises(AuditError, match=r"cannot append entry 3 to .*\[Errno 28\] No space left on device; "
                                         r"nothing was written"):
        log.append(actor="a", action="deploy", result="success")
    monkeypatch.setattr(_audit.os, "write", real_write)
    monkeypatch.setattr(_audit.os, "fsync", real_fsync)
    monkeypatch.setattr(_audit.os, "replace", real_replace)
    assert path.read_bytes() == before
    assert (tmp_path / "audit.jsonl.head").read_bytes() == head_before
    assert _leftovers(tmp_path) == []
    assert log.verify()["valid"] is True
    assert log.append(actor="a", action="deploy", result="success")["seq"] == 3
    assert log.verify()["entries"] == 3


def test_failed_undo_is_reported_honestly(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 1)

    def enospc(*_args):
        raise OSError(28, "No space left on device")

    def eio(*_args):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(_audit.os, "fsync", enospc)
    monkeypatch.setattr(_audit.os, "ftruncate", eio)
    with pytest.raises(AuditError, match=r"removing the partial line also failed \(\[Errno 5\].*run verify"):
        log.append(actor="a", action="deploy", result="success")


# ------------------------------------------------------------------ HMAC


def test_keyed_log_appends_macs_and_authenticates(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 3, key=KEY)
    entries = log.entries()
    assert all(e["mac"] == entry_mac(KEY, e["hash"]) for e in entries)
    head = json.loads((tmp_path / "audit.jsonl.head").read_text())
    assert head["keyed_from"] == 1 and len(head["mac"]) == 64
    report = log.verify()
    assert report["valid"] is True and report["authenticated"] is True and report["keyed"] is True


def test_keyed_log_without_key_cannot_be_verified_or_extended(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 2, key=KEY)
    plain = AuditLog(str(path))
    report = plain.verify()
    assert report["valid"] is False and report["authenticated"] is False
    assert "no key is configured: cannot verify its authenticity" in report["error"]
    with pytest.raises(AuditError, match="HMAC-keyed.*refusing to add an unauthenticated entry"):
        plain.append(actor="a", action="deploy", result="success")


def test_wrong_key_fails(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 2, key=KEY)
    report = AuditLog(str(path), key=b"x" * 32).verify()
    assert report["valid"] is False and report["first_bad_line"] == 1 and "MAC does not match" in report["error"]


def test_forged_entry_with_head_updated_is_detected_with_key(tmp_path):
    """The forger recomputes the hash and rewrites the head file: the chain checks out, the MACs do not."""
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 3, key=KEY)
    forged = _forge_next(path, action="approval", result="success")
    with open(path, "a") as handle:
        handle.write(json.dumps(forged) + "\n")
    head = json.loads((tmp_path / "audit.jsonl.head").read_text())
    (tmp_path / "audit.jsonl.head").write_text(json.dumps(dict(head, seq=4, hash=forged["hash"])))
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 4
    assert "entry has no MAC" in report["error"]
    forged["mac"] = "0" * 64
    path.write_text("".join(_lines(path)[:3]) + json.dumps(forged) + "\n")
    assert "MAC does not match" in log.verify()["error"]


def test_entry_without_mac_in_keyed_log_fails(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 3, key=KEY)
    lines = _lines(path)
    entry = json.loads(lines[1])
    del entry["mac"]  # the hash does not cover the MAC, so the chain alone would still verify
    lines[1] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))
    report = log.verify()
    assert report["valid"] is False and report["first_bad_line"] == 2 and "no MAC" in report["error"]


def test_rewritten_history_is_detected_with_key(tmp_path):
    """Every entry rewritten and re-chained, MACs dropped, head rewritten: verifies without a key, not with it."""
    path = tmp_path / "audit.jsonl"
    _fill(path, 4, key=KEY)
    prev, out = GENESIS, []
    for entry in (json.loads(line) for line in _lines(path)):
        entry.pop("mac")
        entry.update(prev_hash=prev, actor="mallory")
        entry["hash"] = prev = entry_hash(entry)
        out.append(json.dumps(entry) + "\n")
    path.write_text("".join(out))
    (tmp_path / "audit.jsonl.head").write_text(json.dumps({"seq": 4, "hash": prev}))
    report = AuditLog(str(path), key=KEY).verify()
    assert report["valid"] is False and report["first_bad_line"] == 1 and "no MAC" in report["error"]


@pytest.mark.parametrize("head_mac", ["dropped", "stale"])
def test_truncated_log_with_fixed_head_is_detected_with_key(tmp_path, head_mac):
    path = tmp_path / "audit.jsonl"
    log = _fill(path, 5, key=KEY)
    old_head = json.loads((tmp_path / "audit.jsonl.head").read_text())
    lines = _lines(path)[:3]
    path.write_text("".join(lines))
    fixed = dict(old_head, seq=3, hash=json.loads(lines[-1])["hash"])
    if head_mac == "dropped":
        del fixed["mac"]
    (tmp_path / "audit.jsonl.head").write_text(json.dumps(fixed))
    assert AuditLog(str(path)).verify(require_head=False)["valid"] is False  # keyed: never passes silently
    report = log.verify()
    assert report["valid"] is False and "head file" in report["error"]
    with pytest.raises(AuditError, match="refusing to extend"):
        log.append(actor="a", action="deploy", result="success")


def test_key_is_not_introduced_on_an_unkeyed_log(tmp_path):
    path = tmp_path / "audit.jsonl"
    _fill(path, 2)
    keyed = AuditLog(str(path), key=KEY)
    report = keyed.verify()
    assert report["valid"] is False and report["first_bad_line"] == 1 and "no MAC" in report["error"]
    with pytest.raises(AuditError, match="written without an HMAC key: refusing to add keyed entries"):
        keyed.append(actor="a", action="deploy", result="success")
    assert len(_lines(path)) == 2 and AuditLog(str(path)).verify()["valid"] is True


def test_unkeyed_prefix_is_covered_by_the_first_keyed_entry(tmp_path):
    """verify accepts entries before head.keyed_from; editing one breaks the chain into the keyed part."""
    path = tmp_path / "audit.jsonl"
    _fill(path, 2)
    last = json.loads(_lines(path)[-1])
    keyed = AuditLog(str(path), key=KEY)
    entry = keyed.build_entry(last, actor="a", action="deploy", result="success")
    with open(path, "a") as handle:
        handle.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
    keyed._write_head(entry, 3)
    assert keyed.verify() == dict(keyed.verify(), valid=True, authenticated=True, entries=3)
    assert keyed.append(actor="a", action="deploy", result="success")["seq"] == 4
    lines = _lines(path)
    lines[0] = lines[0].replace('"actor":"alice"', '"actor":"mallory"')
    path.write_text("".join(lines))
    assert keyed.verify()["first_bad_line"] == 1


def test_keyed_concurrent_appends(tmp_path):
    path = str(tmp_path / "audit.jsonl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_keyed_worker, args=(path, 10)) for _dummy in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    report = AuditLog(path, key=KEY).verify()
    assert report == dict(report, valid=True, entries=30, authenticated=True)


def _keyed_worker(path, n):
    log = AuditLog(path, key=KEY)
    for _dummy in range(n):
        log.append(actor="w", action="deploy", result="info")


def test_load_key(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"0123456789abcdef0123\n")
    assert load_key(key_file=str(key_file)) == b"0123456789abcdef0123"
    assert load_key(key="0123456789abcdef") == b"0123456789abcdef"
    assert load_key() is None and load_key(key="") is None
    key_file.write_text("short\n")
    with pytest.raises(AuditError, match=r"HMAC key file .* is 5 bytes long: use at least 16") as err:
        load_key(key_file=str(key_file))
    assert "short" not in str(err.value).replace(str(key_file), "")
    with pytest.raises(AuditError, match="cannot be read"):
        load_key(key_file=str(tmp_path / "missing"))
