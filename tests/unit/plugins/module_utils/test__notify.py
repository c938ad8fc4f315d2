# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import shutil
import socketserver
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils._notify import (
    NotifyError,
    send_all,
    validate_channels,
    validate_timeout,
)

TOKEN = "T0KEN-xoxb-9f8e7d6c5b4a"
PASSWORD = "pa55-w0rd-smtp-s3cret"


class _Recorder(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        _Recorder.received.append((self.path, json.loads(self.rfile.read(length))))
        code = 500 if self.path.startswith("/broken") else 302 if self.path.startswith("/moved") else 200
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/hook")
        self.send_header("Content-Length", "0")
        self.end_headers()


class _SmtpSink(socketserver.StreamRequestHandler):
    """A tiny real SMTP server: enough of RFC 5321 (and AUTH PLAIN) for smtplib's login and send_message."""
    messages = []
    auth = []

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
            if verb == "EHLO":
                self.wfile.write(b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "AUTH":
                _SmtpSink.auth.append(line)
                self.wfile.write(b"235 ok\r\n")
            elif verb == "STARTTLS":
                self.wfile.write(b"454 TLS not available\r\n")
            elif verb == "DATA":
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
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _Recorder.received = []
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSink)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    _SmtpSink.messages = []
    _SmtpSink.auth = []
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


# ------------------------------------------------------------------ validation before anything is sent


@pytest.mark.parametrize("url, scheme", [
    ("file:///tmp/x?token=" + TOKEN, "file"),
    ("ftp://u:" + TOKEN + "@example.com/x", "ftp"),
    ("hooks.slack.com/services/" + TOKEN, "(none)"),
    ("javascript:alert(1)", "javascript"),
])
def test_unsupported_url_scheme_rejected_without_the_url(url, scheme):
    for kind in ("webhook", "slack"):
        with pytest.raises(NotifyError) as err:
            validate_channels([{"type": kind, "name": "ops", "url": url}])
        message = str(err.value)
        assert message == ("channel ops: url scheme %r is not supported for type %s: use http or https "
                           "(a file outbox is type file with a path)" % (scheme, kind))
        assert TOKEN not in message and "\n" not in message


def test_url_without_host_rejected():
    with pytest.raises(NotifyError, match="has no host"):
        validate_channels([{"type": "webhook", "url": "https:///only-a-path"}])


@pytest.mark.parametrize("timeout", [0, -1, -0.5, float("nan"), True, "10"])
def test_timeout_must_be_positive(timeout):
    with pytest.raises(NotifyError, match=r"timeout .* is not allowed: use a number of seconds > 0"):
        validate_timeout(timeout)
    with pytest.raises(NotifyError):
        send_all([], "s", "b", timeout=timeout)


def test_timeout_message_names_the_value():
    with pytest.raises(NotifyError, match=r"^timeout -1 is not allowed"):
        validate_timeout(-1)
    assert validate_timeout(0.5) == 0.5


def test_smtp_password_without_tls_refused():
    channel = {"type": "email", "name": "mail", "to": ["a@example.com"], "smtp_host": "127.0.0.1",
               "smtp_user": "bot", "smtp_password": PASSWORD}
    with pytest.raises(NotifyError) as err:
        validate_channels([channel])
    assert "refusing to send the SMTP password without TLS" in str(err.value) and PASSWORD not in str(err.value)
    for extra in ({"starttls": True}, {"smtps": True}, {"allow_plaintext_auth": True}):
        assert validate_channels([dict(channel, **extra)])[0]["name"] == "mail"
    with pytest.raises(NotifyError, match="mutually exclusive"):
        validate_channels([dict(channel, starttls=True, smtps=True)])
    with pytest.raises(NotifyError, match="smtp_password needs smtp_user"):
        validate_channels([dict(channel, smtp_user=None, starttls=True)])


def test_duplicate_names_and_file_with_url_rejected(tmp_path):
    with pytest.raises(NotifyError, match="used twice"):
        validate_channels([{"type": "file", "name": "a", "path": "x"}, {"type": "file", "name": "a", "path": "y"}])
    with pytest.raises(NotifyError, match="type file takes a path, not a url"):
        validate_channels([{"type": "file", "path": str(tmp_path / "o"), "url": "file:///tmp/o"}])


# ------------------------------------------------------------------ sending: honest results, no secrets


def test_plaintext_auth_when_allowed(smtp_server):
    channels = validate_channels([{"type": "email", "to": ["a@example.com"], "smtp_host": "127.0.0.1",
                                   "smtp_port": smtp_server, "smtp_user": "bot", "smtp_password": PASSWORD,
                                   "allow_plaintext_auth": True}])
    result = send_all(channels, "s", "b", timeout=5)[0]
    assert result == dict(result, ok=True, sent=True, detail="sent to 1 recipient(s)")
    assert _SmtpSink.auth and _SmtpSink.auth[0].startswith("AUTH PLAIN")


def test_starttls_not_offered_fails_before_the_password_is_sent(smtp_server):
    channels = validate_channels([{"type": "email", "to": ["a@example.com"], "smtp_host": "127.0.0.1",
                                   "smtp_port": smtp_server, "smtp_user": "bot", "smtp_password": PASSWORD,
                                   "starttls": True}])
    result = send_all(channels, "s", "b", timeout=5)[0]
    assert result["ok"] is False and result["sent"] is False
    assert "STARTTLS" in result["detail"] and PASSWORD not in result["detail"]
    assert _SmtpSink.auth == [] and _SmtpSink.messages == []


def test_failure_details_are_redacted(http_server):
    port = http_server.rsplit(":", 1)[1]
    channels = validate_channels([
        {"type": "webhook", "name": "a", "url": "http://bot:%s@127.0.0.1:1/x?token=%s" % (TOKEN, TOKEN)},
        {"type": "slack", "name": "b", "url": "http://127.0.0.1:%s/broken/services/%s" % (port, TOKEN),
         "headers": {"Authorization": "Bearer " + TOKEN}},
    ])
    results = send_all(channels, "s", "b", open_url=_raising_open_url(open_url), timeout=2)
    assert [r["ok"] for r in results] == [False, False] and [r["sent"] for r in results] == [False, False]
    for result in results:
        assert TOKEN not in result["detail"], result


def _raising_open_url(real):
    """open_url whose errors repeat the URL and headers, as some HTTP stacks do: the detail must still be clean."""
    def wrapped(url, headers=None, **kwargs):
        try:
            return real(url, headers=headers, **kwargs)
        except Exception as exc:
            raise RuntimeError("%s for %s with %s" % (exc, url, headers))
    return wrapped


def test_redirect_is_not_delivery(http_server):
    channels = validate_channels([{"type": "webhook", "url": http_server + "/moved"}])
    result = send_all(channels, "s", "b", open_url=open_url, timeout=2)[0]
    assert result["ok"] is False and result["sent"] is False and "302" in result["detail"]


# ------------------------------------------------------------------ real TLS: STARTTLS and SMTPS


class _TlsSmtpSink(socketserver.StreamRequestHandler):
    """SMTP with real STARTTLS (or TLS from the first byte for SMTPS); records whether AUTH came over TLS."""
    context = None
    implicit = False
    auth = []

    def setup(self):
        if _TlsSmtpSink.implicit:
            self.request = _TlsSmtpSink.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def _start_tls(self):
        self.wfile.flush()
        self.request = _TlsSmtpSink.context.wrap_socket(self.request, server_side=True)
        self.connection = self.request
        self.rfile = self.request.makefile("rb")
        self.wfile = self.request.makefile("wb", buffering=0)

    def handle(self):
        self.wfile.write(b"220 tls sink\r\n")
        data_mode = False
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            if data_mode:
                if line == ".":
                    data_mode = False
                    self.wfile.write(b"250 queued\r\n")
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-tls sink\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")
            elif verb == "STARTTLS":
                self.wfile.write(b"220 go ahead\r\n")
                self._start_tls()
            elif verb == "AUTH":
                _TlsSmtpSink.auth.append(isinstance(self.request, ssl.SSLSocket))
                self.wfile.write(b"235 ok\r\n")
            elif verb == "DATA":
                data_mode = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def tls_smtp(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    _TlsSmtpSink.context, _TlsSmtpSink.auth = context, []
    servers = []

    def start(implicit):
        _TlsSmtpSink.implicit = implicit
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TlsSmtpSink)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server.server_address[1]
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_password_travels_over_tls(tls_smtp, mode):
    port = tls_smtp(implicit=(mode == "smtps"))
    channel = {"type": "email", "to": ["a@example.com"], "smtp_host": "127.0.0.1", "smtp_port": port,
               "smtp_user": "bot", "smtp_password": PASSWORD, mode: True}
    # the self-signed certificate is refused by default ...
    refused = send_all(validate_channels([dict(channel)]), "s", "b", timeout=5)[0]
    assert refused["ok"] is False and refused["sent"] is False and "CERTIFICATE_VERIFY_FAILED" in refused["detail"]
    assert _TlsSmtpSink.auth == []
    # ... and accepted when certificate checks are off; AUTH happens inside TLS
    result = send_all(validate_channels([dict(channel, validate_certs=False)]), "s", "b", timeout=5)[0]
    assert result == dict(result, ok=True, sent=True), result
    assert _TlsSmtpSink.auth == [True]
