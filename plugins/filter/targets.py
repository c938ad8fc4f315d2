# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters on fleet targets (the C(targets) of rollout_strategy): the base URLs the health gate judges."""

from __future__ import annotations

from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError


def base_urls(targets):
    """``scheme://host:port`` of every target's ``ready_url``, in order (the health gate adds its own paths)."""
    if not isinstance(targets, list):
        raise AnsibleFilterError("base_urls expects a list of targets, got %s" % type(targets).__name__)
    out = []
    for target in targets:
        url = target.get("ready_url") if isinstance(target, dict) else None
        name = target.get("name", "?") if isinstance(target, dict) else repr(target)
        if not isinstance(url, str) or not url:
            raise AnsibleFilterError("base_urls: target %s has no ready_url" % name)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AnsibleFilterError("base_urls: target %s has ready_url %r: expected http(s)://host[:port]/path"
                                     % (name, url))
        out.append("%s://%s" % (parts.scheme, parts.netloc))
    return out


class FilterModule:
    def filters(self):
        return {"base_urls": base_urls}
