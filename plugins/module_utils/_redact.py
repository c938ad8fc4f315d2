# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Keep credentials out of every message, audit entry and report.

URLs are the usual leak: `https://user:token@prometheus/`, Slack webhook paths that *are* the token, `?token=` query
strings. Every error message that may carry a URL goes through `redact_text` before it leaves a module.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

MASK = "********"

# query parameters whose values are secrets, by name (case-insensitive)
_SECRET_PARAMS = re.compile(r"(?i)^(token|access_token|api[_-]?key|apikey|key|secret|password|passwd|pwd|sig|signature|auth)$")
# scheme://user[:password]@host: the userinfo part is replaced whole (a user name alone can be a token too)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
# Slack-style webhook paths carry the token as path segments after /services/
_SLACK_PATH = re.compile(r"(?i)(hooks\.slack\.com/services/)[^\s'\"]+")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:token|access_token|api[_-]?key|apikey|key|secret|password|passwd|pwd|sig|"
                           r"signature|auth)=)[^&\s'\"#]+")


def redact_url(url):
    """The URL with userinfo, secret query values and Slack webhook tokens masked; non-strings come back as they are."""
    if not isinstance(url, str):
        return url
    return redact_text(url)


def redact_text(text):
    """Mask every credential-bearing URL part inside free text (error messages, command output)."""
    if not isinstance(text, str) or not text:
        return text
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _SLACK_PATH.sub(lambda m: m.group(1) + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return text


def redact_secrets(text, secrets):
    """Replace each known secret value (passwords, tokens given as options) inside text."""
    if not isinstance(text, str):
        return text
    for secret in secrets or ():
        if isinstance(secret, str) and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return redact_text(text)


def is_secret_param(name):
    """True for a query parameter name that carries a secret."""
    return bool(_SECRET_PARAMS.match(name or ""))


def url_secrets(urls):
    """Credential parts of URLs (user info, secret query values), to mask wherever they would be returned."""
    secrets = set()
    for url in urls:
        if not isinstance(url, str) or "://" not in url:
            continue
        try:
            parts = urlsplit(url)
            if parts.username or parts.password:
                secrets.add(parts.netloc.rsplit("@", 1)[0])
            for value in (parts.username, parts.password):
                if value:
                    secrets.add(value)
            for key, value in parse_qsl(parts.query, keep_blank_values=False):
                if is_secret_param(key) and value:
                    secrets.add(value)
        except ValueError:
            continue
    # very short strings would mask unrelated text everywhere; the URL redaction covers them in messages
    return set(s for s in secrets if len(s) >= 4)
