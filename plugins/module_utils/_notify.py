# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Release communication channels: generic JSON webhook, Slack-compatible webhook, email (SMTP) and file outbox.

Every channel is validated before anything is sent (a bad URL scheme, a password that would travel without TLS, a
non-positive timeout: ``NotifyError``, one line). A failed channel is reported, never raised, so the caller decides
whether a notification is required; a failed channel is never reported as sent. Every detail that leaves this module
goes through ``_redact`` (the channel's URL, password and header values masked, credentials in any URL masked).
"""

from __future__ import annotations

import json
import math
import os
import smtplib
import ssl
import time
from email.message import EmailMessage
from urllib.parse import urlsplit

from ansible_collections.meshos.release.plugins.module_utils._redact import redact_secrets, redact_text
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

CHANNEL_TYPES = ("webhook", "slack", "email", "file")
URL_SCHEMES = ("http", "https")


class NotifyError(MeshosError):
    """Bad channel configuration (raised before anything is sent); the message is one line without secrets."""


def channel_secrets(channel):
    """The values of a channel that must never appear in a message: URL, password, header values."""
    secrets = [channel.get("url"), channel.get("smtp_password")]
    secrets.extend((channel.get("headers") or {}).values())
    return [s for s in secrets if isinstance(s, str) and s]


def _redact(text, channel):
    return redact_secrets(redact_text(text), channel_secrets(channel))


def _bool(channel, key):
    value = channel.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise NotifyError("channel %s: %s must be true or false, got %r" % (channel.get("name"), key, value))
    return value


def validate_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise NotifyError("timeout %r is not allowed: use a number of seconds > 0" % (timeout,))
    return timeout


def _check_url(name, kind, url):
    if not isinstance(url, str):
        raise NotifyError("channel %s: url must be a string" % name)
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        scheme, host = "", None
    if scheme not in URL_SCHEMES:
        # the URL itself may carry a token: name only its scheme
        raise NotifyError("channel %s: url scheme %r is not supported for type %s: use %s (a file outbox is type "
                          "file with a path)" % (name, scheme or "(none)", kind, " or ".join(URL_SCHEMES)))
    if not host:
        raise NotifyError("channel %s: url %s has no host" % (name, redact_text(url)))


def validate_channels(channels):
    """Check every channel before sending anything; return them with defaults filled in."""
    if not isinstance(channels, list):
        raise NotifyError("channels must be a list of dictionaries, got %s" % type(channels).__name__)
    checked = []
    names = set()
    for index, channel in enumerate(channels):
        if not isinstance(channel, dict):
            raise NotifyError("channel %d must be a dictionary, got %s" % (index, type(channel).__name__))
        kind = channel.get("type")
        name = channel.get("name") or "%s-%d" % (kind, index)
        if kind not in CHANNEL_TYPES:
            raise NotifyError("channel %s: unknown type %r, allowed: %s" % (name, kind, ", ".join(CHANNEL_TYPES)))
        if name in names:
            raise NotifyError("channel name %r is used twice: names must be unique" % name)
        names.add(name)
        needed = {"webhook": "url", "slack": "url", "email": "to", "file": "path"}[kind]
        if not channel.get(needed):
            raise NotifyError("channel %s: type %s needs %r" % (name, kind, needed))
        channel = dict(channel, name=name, required=_bool(dict(channel, name=name), "required"))
        if kind in ("webhook", "slack"):
            _check_url(name, kind, channel["url"])
            headers = channel.get("headers") or {}
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise NotifyError("channel %s: headers must be a dictionary of strings" % name)
        elif kind == "email":
            _check_email(channel)
        elif channel.get("url"):
            raise NotifyError("channel %s: type file takes a path, not a url" % name)
        checked.append(channel)
    return checked


def _check_email(channel):
    name = channel["name"]
    if not channel.get("smtp_host"):
        raise NotifyError("channel %s: type email needs 'smtp_host'" % name)
    starttls, smtps = _bool(channel, "starttls"), _bool(channel, "smtps")
    if starttls and smtps:
        raise NotifyError("channel %s: starttls and smtps are mutually exclusive (smtps is TLS from the first byte, "
                          "starttls upgrades a plain connection)" % name)
    port = channel.get("smtp_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise NotifyError("channel %s: smtp_port %r is not allowed: use 1-65535" % (name, port))
    if channel.get("smtp_password") and not channel.get("smtp_user"):
        raise NotifyError("channel %s: smtp_password needs smtp_user" % name)
    if channel.get("smtp_user") and not (starttls or smtps) and not _bool(channel, "allow_plaintext_auth"):
        raise NotifyError("channel %s: refusing to send the SMTP password without TLS: set starttls: true or "
                          "smtps: true (allow_plaintext_auth: true only for a trusted local relay)" % name)


def _webhook_body(kind, subject, body, payload):
    if kind == "slack":
        # Slack incoming webhooks (and Mattermost / Rocket.Chat) take a text field with mrkdwn
        return {"text": "*%s*\n%s" % (subject, body)}
    return dict(payload or {}, subject=subject, body=body)


def _send_webhook(channel, subject, body, payload, open_url, timeout):
    data = json.dumps(_webhook_body(channel["type"], subject, body, payload)).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    headers.update(channel.get("headers") or {})
    validate_certs = channel.get("validate_certs")
    response = open_url(channel["url"], data=data, headers=headers, method="POST", timeout=timeout,
                        validate_certs=True if validate_certs is None else validate_certs, follow_redirects="none")
    code = response.getcode()
    if not 200 <= int(code) < 300:
        # a redirect or an unexpected status is no delivery
        raise RuntimeError("HTTP %s: not delivered" % code)
    return "HTTP %s" % code


def _tls_context(channel):
    context = ssl.create_default_context()
    if channel.get("validate_certs") is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _send_email(channel, subject, body, timeout):
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = channel.get("from") or "meshos-release@localhost"
    recipients = channel["to"] if isinstance(channel["to"], list) else [channel["to"]]
    message["To"] = ", ".join(recipients)
    message.set_content(body)
    smtps = bool(channel.get("smtps"))
    port = int(channel.get("smtp_port") or (465 if smtps else 25))
    if smtps:
        client = smtplib.SMTP_SSL(channel["smtp_host"], port, timeout=timeout, context=_tls_context(channel))
    else:
        client = smtplib.SMTP(channel["smtp_host"], port, timeout=timeout)
    with client as smtp:
        if channel.get("starttls"):
            smtp.starttls(context=_tls_context(channel))
        if channel.get("smtp_user"):
            smtp.login(channel["smtp_user"], channel.get("smtp_password") or "")
        refused = smtp.send_message(message)
    if refused:
        raise RuntimeError("delivered to %d of %d recipient(s) only; refused: %s"
                           % (len(recipients) - len(refused), len(recipients), ", ".join(sorted(refused))))
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
    """Send to every channel; return one result dict per channel (ok, sent, detail, required), details redacted."""
    validate_timeout(timeout)
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
            result.update(ok=True, sent=True, detail=_redact(detail, channel))
        except Exception as exc:  # pylint: disable=broad-except  # any failure is reported per channel, not raised
            result.update(ok=False, sent=False, detail=_redact("%s: %s" % (type(exc).__name__, exc), channel))
        results.append(result)
    return results
