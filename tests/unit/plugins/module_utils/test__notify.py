# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils._notify import NotifyError, send_all, validate_channels


class _Recorder(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        _Recorder.received.append((self.path, json.loads(self.rfile.read(length))))
        code = 500 if self.path == "/broken" else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _SmtpSink(socketserver.StreamRequestHandler):
    """A tiny real SMTP server: enough of RFC 5321 for smtplib's send_message."""
    messages = []

    def handle(self):
        self.wfile.write(b"220 sink ready\r\n")
        data_mode, lines = False, []
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if data_mode:
                if line == ".":
                    _SmtpSink.messages.append("\n".join(lines))
                    data_mode = False
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line)
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb == "DATA":
                data_mode = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def http_server():
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.received = []
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SmtpSink.messages = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_validate_rejects_unknown_type_naming_it():
    with pytest.raises(NotifyError, match="unknown type 'pager'.*webhook, slack, email, file"):
        validate_channels([{"type": "pager"}])


def test_validate_requires_url():
    with pytest.raises(NotifyError, match="needs 'url'"):
        validate_channels([{"type": "slack", "name": "ops"}])


def test_webhook_slack_file_and_email_are_delivered(http_server, smtp_server, tmp_path):
    outbox = tmp_path / "out" / "notes.jsonl"
    channels = validate_channels([
        {"type": "webhook", "url": http_server + "/hook"},
        {"type": "slack", "url": http_server + "/slack"},
        {"type": "file", "path": str(outbox)},
        {"type": "email", "to": ["support@example.com"], "smtp_host": "127.0.0.1", "smtp_port": smtp_server},
    ])
    results = send_all(channels, "v5.1.0 released", "body text", {"version": "5.1.0"}, open_url=open_url, timeout=5)
    assert [r["ok"] for r in results] == [True, True, True, True], results
    received = dict(_Recorder.received)
    assert received["/hook"] == {"subject": "v5.1.0 released", "body": "body text", "version": "5.1.0"}
    assert received["/slack"] == {"text": "*v5.1.0 released*\nbody text"}
    assert json.loads(outbox.read_text())["version"] == "5.1.0"
    assert "Subject: v5.1.0 released" in _SmtpSink.messages[0]


def test_failures_are_reported_not_raised(http_server):
    channels = validate_channels([
        {"type": "webhook", "url": http_server + "/broken", "required": True},
        {"type": "webhook", "url": "http://127.0.0.1:1/closed"},
    ])
    results = send_all(channels, "s", "b", open_url=open_url, timeout=2)
    assert [r["ok"] for r in results] == [False, False]
    assert results[0]["required"] is True
    assert "500" in results[0]["detail"]


def test_dry_run_sends_nothing(http_server):
    channels = validate_channels([{"type": "webhook", "url": http_server + "/hook"}])
    results = send_all(channels, "s", "b", open_url=open_url, dry_run=True)
    assert results[0]["sent"] is False
    assert _Recorder.received == []
