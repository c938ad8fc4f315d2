# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets never leave the modules that use them (issue 9, "Secrets").

One ansible-playbook run at -vvv with ANSIBLE_INJECT_INVOCATION=true (tests/integration/secrets/notify_audit.yml)
sends through a real SMTP server (AUTH PLAIN, a small stdlib sink on 127.0.0.1) and a real HTTP server (Slack-style
webhook path token, ?token= query, Authorization header), fails a required webhook whose URL carries credentials,
is refused a file:// URL and an SMTP password without TLS, and appends an HMAC-keyed audit entry. The sinks prove the
secrets were really used; then every output (stdout, stderr, the Ansible log file, the audit log and head, the
outbox, the report, every other file the run wrote) is searched for each secret, also URL-encoded and base64.

Ports: 20900-20999 (the health_gate range in docs/design.md, its top end). Both servers run in this process and are
stopped by the fixtures.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import shutil
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO_ROOT / "tests" / "integration" / "secrets" / "notify_audit.yml"
PORTS = (20900, 20999)


class _SmtpSink(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 and RFC 4954 (AUTH PLAIN) for smtplib's login and send_message; records what it got."""
    auth = []
    messages = []

    def handle(self):
        self.wfile.write(b"220 sink ready\r\n")
        data_mode, lines = False, []
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if data_mode:
                if line == ".":
                    _SmtpSink.messages.append("\n".join(lines))
                    data_mode, lines = False, []
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line)
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "AUTH":
                _SmtpSink.auth.append(line)
                self.wfile.write(b"235 2.7.0 authenticated\r\n")
            elif verb == "DATA":
                data_mode = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


class _HookSink(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _HookSink.received.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                   "body": json.loads(body or b"{}")})
        self.send_response(500 if self.path.startswith("/broken") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


@pytest.fixture
def sinks(free_port):
    smtp_port, hook_port = free_port(*PORTS, count=2)
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    smtp = _serve(socketserver.ThreadingTCPServer(("127.0.0.1", smtp_port), _SmtpSink))
    HTTPServer.allow_reuse_address = True
    hook = _serve(HTTPServer(("127.0.0.1", hook_port), _HookSink))
    _SmtpSink.auth, _SmtpSink.messages, _HookSink.received = [], [], []
    try:
        yield {"smtp": smtp_port, "hook": hook_port}
    finally:
        for server in (smtp, hook):
            server.shutdown()
            server.server_close()


def _variants(secret):
    """The secret as it could leak: plain, URL-encoded, and inside base64 at each of the three alignments."""
    out = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    raw = secret.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        out.add(encoded[(shift * 4 + 2) // 3 + 1:-4] if len(encoded) > 12 else encoded)
    return {v for v in out if len(v) >= 8}


def test_no_secret_in_any_output(sinks, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    secret = {
        "secrets_smtp_password": "SmtpPw-" + secrets.token_hex(12),
        "secrets_slack_token": "SlackTok" + secrets.token_hex(12),
        "secrets_hook_token": "HookTok" + secrets.token_hex(12),
        "secrets_header_token": "HdrTok" + secrets.token_hex(12),
        "secrets_audit_key": "AuditKey-" + secrets.token_hex(16),
    }
    key_file = inputs / "audit.key"
    key_file.write_text(secret["secrets_audit_key"] + "\n")
    key_file.chmod(0o600)
    vars_file = inputs / "secrets.json"
    vars_file.write_text(json.dumps(dict(secret, secrets_smtp_port=sinks["smtp"], secrets_hook_port=sinks["hook"],
                                         secrets_work=str(work), secrets_key_file=str(key_file))))
    log_file = tmp_path / "ansible.log"
    env = dict(os.environ)
    env.update(ANSIBLE_INJECT_INVOCATION="true", ANSIBLE_LOG_PATH=str(log_file), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_KEEP_REMOTE_FILES="0")
    env.pop("MESHOS_AUDIT_HMAC_KEY", None)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO_ROOT / ".build" / "collections"))
    exe = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    proc = subprocess.run([exe, "-vvv", "-i", "localhost,", str(PLAYBOOK), "-e", "@" + str(vars_file)],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

    # the secrets were really used: the servers received them
    auth = base64.b64decode(_SmtpSink.auth[0].split()[-1]).decode()
    assert auth.split("\0")[1:] == ["release-bot", secret["secrets_smtp_password"]]
    paths = {r["path"] for r in _HookSink.received}
    assert "/services/T000/B000/" + secret["secrets_slack_token"] in paths
    assert "/hook?token=" + secret["secrets_hook_token"] in paths
    assert "Bearer " + secret["secrets_header_token"] in {r["authorization"] for r in _HookSink.received}
    assert len(_SmtpSink.messages) == 1

    report = json.loads((work / "report.json").read_text())
    assert report["notified"]["sent"] == 4 and report["notified"]["failed_channels"] == []
    assert "invocation" in report["notified"]  # the invocation was injected: it is part of what is searched
    # failed_when: false keeps the run going; the module's own verdict is in msg and the counts
    assert report["failed"]["msg"].startswith("required notification channel(s) failed: broken: ")
    assert report["failed"]["sent"] == 0
    assert report["failed"]["results"][0]["sent"] is False
    assert "url scheme 'file' is not supported" in report["scheme"]["msg"]
    assert "refusing to send the SMTP password without TLS" in report["plaintext"]["msg"]
    assert report["verified"]["authenticated"] is True
    assert report["unkeyed"]["valid"] is False and "cannot verify its authenticity" in report["unkeyed"]["msg"]
    assert "mac" in json.loads((work / "audit.jsonl").read_text().splitlines()[0])

    outputs = {"stdout": proc.stdout, "stderr": proc.stderr, "ansible.log": log_file.read_text()}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and inputs not in path.parents:
            outputs[str(path.relative_to(tmp_path))] = path.read_bytes().decode("utf-8", "replace")
    for name in ("work/audit.jsonl", "work/audit.jsonl.head", "work/outbox.jsonl", "work/report.json"):
        assert name in outputs, sorted(outputs)
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in proc.stdout  # -vvv printed the (masked) invocation
    leaks = []
    for option, value in secret.items():
        for variant in _variants(value):
            leaks.extend("%s in %s" % (option, where) for where, text in outputs.items() if variant in text)
    assert leaks == [], leaks


def test_variants_cover_base64_inside_longer_data():
    value = "SmtpPw-" + secrets.token_hex(12)
    for prefix in (b"", b"\0user\0", b"\0bot\0"):
        encoded = base64.b64encode(prefix + value.encode()).decode()
        assert any(v in encoded for v in _variants(value)), (prefix, encoded)
    assert binascii  # imported for clarity of intent: base64 is the SMTP AUTH encoding searched for
