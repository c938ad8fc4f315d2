# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Release communication channels: generic JSON webhook, Slack-compatible webhook, email (SMTP) and file outbox.

A failed channel is reported, never raised, so the caller decides whether a notification is required.
"""

from __future__ import annotations

import json
import os
import smtplib
import time
from email.message import EmailMessage

CHANNEL_TYPES = ("webhook", "slack", "email", "file")


class NotifyError(Exception):
    """Bad channel configuration (raised before anything is sent)."""


def validate_channels(channels):
    """Check every channel before sending anything; return them with defaults filled in."""
    checked = []
    for index, channel in enumerate(channels):
        kind = channel.get("type")
        name = channel.get("name") or "%s-%d" % (kind, index)
        if kind not in CHANNEL_TYPES:
            raise NotifyError("channel %s: unknown type %r, allowed: %s" % (name, kind, ", ".join(CHANNEL_TYPES)))
        needed = {"webhook": "url", "slack": "url", "email": "to", "file": "path"}[kind]
        if not channel.get(needed):
            raise NotifyError("channel %s: type %s needs %r" % (name, kind, needed))
        if kind == "email" and not channel.get("smtp_host"):
            raise NotifyError("channel %s: type email needs 'smtp_host'" % name)
        checked.append(dict(channel, name=name, required=bool(channel.get("required", False))))
    return checked


def _webhook_body(kind, subject, body, payload):
    if kind == "slack":
        # Slack incoming webhooks (and Mattermost / Rocket.Chat) take a text field with mrkdwn
        return {"text": "*%s*\n%s" % (subject, body)}
    return dict(payload or {}, subject=subject, body=body)


def _send_webhook(channel, subject, body, payload, open_url, timeout):
    data = json.dumps(_webhook_body(channel["type"], subject, body, payload)).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    headers.update(channel.get("headers") or {})
    response = open_url(channel["url"], data=data, headers=headers, method="POST", timeout=timeout,
                        validate_certs=channel.get("validate_certs", True))
    return "HTTP %s" % response.getcode()


def _send_email(channel, subject, body, timeout):
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = channel.get("from") or "meshos-release@localhost"
    recipients = channel["to"] if isinstance(channel["to"], list) else [channel["to"]]
    message["To"] = ", ".join(recipients)
    message.set_content(body)
    with smtplib.SMTP(channel["smtp_host"], int(channel.get("smtp_port", 25)), timeout=timeout) as smtp:
        if channel.get("starttls"):
            smtp.starttls()
        if channel.get("smtp_user"):
            smtp.login(channel["smtp_user"], channel.get("smtp_password", ""))
        smtp.send_message(message)
    return "sent to %d recipient(s)" % len(recipients)


def _write_file(channel, subject, body, payload):
    """Append one JSON line to an outbox file (an audit-friendly channel, and the lab's default)."""
    path = channel["path"]
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    record = dict(payload or {}, subject=subject, body=body, ts=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    return "appended to %s" % path


def send_all(channels, subject, body, payload=None, open_url=None, timeout=10, dry_run=False):
    """Send to every channel; return one result dict per channel (ok, detail, required)."""
    results = []
    for channel in channels:
        result = {"name": channel["name"], "type": channel["type"], "required": channel["required"]}
        if dry_run:
            result.update(ok=True, sent=False, detail="check mode: not sent")
            results.append(result)
            continue
        try:
            if channel["type"] in ("webhook", "slack"):
                detail = _send_webhook(channel, subject, body, payload, open_url, timeout)
            elif channel["type"] == "email":
                detail = _send_email(channel, subject, body, timeout)
            else:
                detail = _write_file(channel, subject, body, payload)
            result.update(ok=True, sent=True, detail=detail)
        except Exception as exc:  # pylint: disable=broad-except  # any failure is reported per channel, not raised
            result.update(ok=False, sent=False, detail="%s: %s" % (type(exc).__name__, exc))
        results.append(result)
    return results
