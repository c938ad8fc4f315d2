# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""audit_log's HMAC options, run in-process through the real exit_json/fail_json (which apply no_log masking)."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshos.release.plugins.modules import audit_log

KEY = "s3cr3t-audit-key-0123456789"


def run(args, capsys, check_mode=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            audit_log.main()
    raw = capsys.readouterr().out
    out = json.loads(raw)
    out["_rc"] = exc.value.code
    out["_raw"] = raw
    return out


def test_key_file_appends_macs_and_verify_needs_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MESHOS_AUDIT_HMAC_KEY", raising=False)
    path = str(tmp_path / "audit.jsonl")
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY + "\n")
    added = run({"path": path, "hmac_key_file": str(key_file), "action": "deploy", "result": "success",
                 "actor": "a", "details": {"note": "key is " + KEY}}, capsys)
    assert added["_rc"] == 0 and len(added["entry"]["mac"]) == 64
    assert KEY not in added["_raw"]  # a key read from a file is masked like a no_log option
    ok = run({"path": path, "hmac_key_file": str(key_file), "state": "verify"}, capsys)
    assert ok["valid"] is True and ok["authenticated"] is True and ok["keyed"] is True
    unkeyed = run({"path": path, "state": "verify"}, capsys)
    assert unkeyed["_rc"] == 1 and unkeyed["valid"] is False and unkeyed["authenticated"] is False
    assert "cannot verify its authenticity" in unkeyed["msg"]
    refused = run({"path": path, "action": "deploy", "result": "success", "actor": "a"}, capsys)
    assert refused["_rc"] == 1 and "refusing to add an unauthenticated entry" in refused["msg"]


def test_key_from_the_environment_is_no_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MESHOS_AUDIT_HMAC_KEY", KEY)
    path = str(tmp_path / "audit.jsonl")
    added = run({"path": path, "action": "approval", "result": "success", "actor": "a", "details": {"k": KEY}},
                capsys)
    assert added["_rc"] == 0 and "mac" in added["entry"] and KEY not in added["_raw"]
    ok = run({"path": path, "state": "verify"}, capsys)
    assert ok["authenticated"] is True
    wrong = run({"path": path, "state": "verify", "hmac_key": "another-key-of-enough-length"}, capsys)
    assert wrong["_rc"] == 1 and "MAC does not match" in wrong["msg"]


def test_key_option_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MESHOS_AUDIT_HMAC_KEY", raising=False)
    path = str(tmp_path / "audit.jsonl")
    short = run({"path": path, "state": "verify", "hmac_key": "tiny"}, capsys)
    assert short["_rc"] == 1 and "4 bytes long: use at least 16" in short["msg"]
    missing = run({"path": path, "state": "verify", "hmac_key_file": str(tmp_path / "nope")}, capsys)
    assert missing["_rc"] == 1 and "cannot be read" in missing["msg"]
    both = run({"path": path, "state": "verify", "hmac_key": KEY, "hmac_key_file": str(tmp_path / "k")}, capsys)
    assert both["_rc"] == 1 and "mutually exclusive" in both["msg"]


def test_check_mode_applies_the_same_head_check(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MESHOS_AUDIT_HMAC_KEY", raising=False)
    path = tmp_path / "audit.jsonl"
    run({"path": str(path), "action": "deploy", "result": "success", "actor": "a"}, capsys)
    (tmp_path / "audit.jsonl.head").unlink()
    preview = run({"path": str(path), "action": "deploy", "result": "success", "actor": "a"}, capsys,
                  check_mode=True)
    assert preview["_rc"] == 1 and "line 1 is not covered by a head file" in preview["msg"]
