# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""release_notify run in-process through the real exit_json/fail_json, with the invocation injected as -vvv shows it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshos.release.plugins.modules import release_notify as notify

TOKEN = "xoxb-T0KEN-4f3e2d1c0b9a"
PASSWORD = "pa55-w0rd-smtp-s3cret"
HEADER = "Bearer h3ader-t0ken-77"


class _Hook(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.path, self.headers.get("Authorization")))
        self.send_response(500 if "broken" in self.path else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def hook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Hook.received = []
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def run(args, capsys, check_mode=False):
    args = dict(args, _ansible_inject_invocation=True)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            notify.main()
    raw = capsys.readouterr().out
    out = json.loads(raw)
    out["_rc"] = exc.value.code
    out["_raw"] = raw
    return out


def _assert_clean(out):
    for secret in (TOKEN, PASSWORD, HEADER):
        assert secret not in out["_raw"], (secret, out["_raw"])


def test_secrets_are_no_log_in_the_invocation_and_results(hook, capsys, tmp_path):
    out = run({"subject": "s", "body": "b", "channels": [
        {"type": "slack", "name": "slack", "url": hook + "/services/" + TOKEN},
        {"type": "webhook", "name": "hook", "url": hook + "/hook?token=" + TOKEN, "headers": {"Authorization": HEADER}},
        {"type": "email", "name": "mail", "to": ["a@example.com"], "smtp_host": "127.0.0.1", "smtp_port": 1,
         "smtp_user": "bot", "smtp_password": PASSWORD, "starttls": True},
        {"type": "file", "name": "outbox", "path": str(tmp_path / "outbox.jsonl")},
    ]}, capsys)
    assert out["_rc"] == 0 and out["sent"] == 3 and out["failed_channels"] == ["mail"]
    assert "invocation" in out and len(out["invocation"]["module_args"]["channels"]) == 4
    assert [r["sent"] for r in out["results"]] == [True, True, False, True]
    assert _Hook.received[1] == ("/hook?token=" + TOKEN, HEADER)
    _assert_clean(out)
    assert TOKEN not in (tmp_path / "outbox.jsonl").read_text()


def test_required_channel_failure_message_is_redacted(hook, capsys):
    out = run({"subject": "s", "body": "b", "channels": [
        {"type": "webhook", "name": "hook", "required": True,
         "url": "http://bot:%s@%s/broken?token=%s" % (TOKEN, hook.split("//")[1], TOKEN)},
    ]}, capsys)
    assert out["_rc"] == 1 and out["sent"] == 0 and out["results"][0]["sent"] is False
    assert out["msg"].startswith("required notification channel(s) failed: hook: ")
    _assert_clean(out)


@pytest.mark.parametrize("timeout", [0, -1])
def test_timeout_must_be_positive(capsys, tmp_path, timeout):
    out = run({"subject": "s", "body": "b", "timeout": timeout,
               "channels": [{"type": "file", "path": str(tmp_path / "o.jsonl")}]}, capsys)
    assert out["_rc"] == 1 and out["msg"] == "timeout %d is not allowed: use a number of seconds > 0" % timeout
    assert not (tmp_path / "o.jsonl").exists()


def test_bad_scheme_and_plaintext_password_fail_before_sending(capsys, tmp_path):
    outbox = tmp_path / "o.jsonl"
    scheme = run({"subject": "s", "body": "b", "channels": [
        {"type": "file", "path": str(outbox)},
        {"type": "webhook", "name": "w", "url": "file:///etc/passwd?token=" + TOKEN}]}, capsys)
    assert scheme["_rc"] == 1 and "url scheme 'file' is not supported" in scheme["msg"] and "\n" not in scheme["msg"]
    _assert_clean(scheme)
    plain = run({"subject": "s", "body": "b", "channels": [
        {"type": "file", "path": str(outbox)},
        {"type": "email", "name": "mail", "to": "a@example.com", "smtp_host": "127.0.0.1", "smtp_user": "bot",
         "smtp_password": PASSWORD}]}, capsys)
    assert plain["_rc"] == 1 and "refusing to send the SMTP password without TLS" in plain["msg"]
    _assert_clean(plain)
    assert not outbox.exists()


def test_typed_suboptions(capsys, tmp_path):
    unknown = run({"subject": "s", "body": "b", "channels": [{"type": "file", "path": "x", "smtp_pasword": "p"}]},
                  capsys)
    assert unknown["_rc"] == 1 and "smtp_pasword" in unknown["msg"]
    missing = run({"subject": "s", "body": "b", "channels": [{"type": "slack"}]}, capsys)
    assert missing["_rc"] == 1 and "url" in missing["msg"]
    both = run({"subject": "s", "body": "b", "channels": [
        {"type": "email", "to": ["a@x"], "smtp_host": "h", "starttls": True, "smtps": True}]}, capsys)
    assert both["_rc"] == 1 and "mutually exclusive" in both["msg"]


def test_check_mode_sends_nothing(hook, capsys):
    out = run({"subject": "s", "body": "b", "channels": [{"type": "webhook", "url": hook + "/hook"}]}, capsys,
              check_mode=True)
    assert out["_rc"] == 0 and out["changed"] is False and out["sent"] == 0 and _Hook.received == []
