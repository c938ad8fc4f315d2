# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Authentication to the monitoring APIs (Prometheus, Alertmanager): the ``monitoring_auth`` option.

One dictionary (documented once in ``doc_fragments/monitoring.py``) turns into the keyword arguments of
``ansible.module_utils.urls.open_url``: a bearer token header, HTTP basic auth, a client certificate and key, a CA
bundle and ``validate_certs``. Credentials never go over plain ``http://`` unless ``allow_plaintext`` says so, and
no message here ever contains a secret value. Standard library only (runs on the managed host).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils._redact import redact_url

AUTH_KEYS = ("bearer_token", "username", "password", "client_cert", "client_key", "ca_path", "validate_certs",
             "allow_plaintext")
SECRET_KEYS = ("bearer_token", "password")
FILE_KEYS = ("client_cert", "client_key", "ca_path")


class MonitoringAuthError(MeshosError):
    """Bad ``monitoring_auth``; one line naming the option (never a secret value) and what is allowed."""


def _given(value):
    # roles pass "" for "not set"
    return value is not None and value != ""


def normalize_auth(auth, validate_certs=True):
    """The validated ``monitoring_auth`` with every key present; ``validate_certs`` (the module's own option) is the
    default of ``monitoring_auth.validate_certs``. Raises MonitoringAuthError."""
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise MonitoringAuthError("monitoring_auth must be a dictionary with %s, got a %s"
                                  % (", ".join(AUTH_KEYS), type(auth).__name__))
    unknown = sorted(str(k) for k in auth if k not in AUTH_KEYS)
    if unknown:
        raise MonitoringAuthError("monitoring_auth key %s is not allowed: use %s" % (", ".join(unknown), ", ".join(AUTH_KEYS)))
    out = dict((key, auth.get(key) if _given(auth.get(key)) else None) for key in AUTH_KEYS)
    for key in ("bearer_token", "username", "password", "client_cert", "client_key", "ca_path"):
        if out[key] is not None and not isinstance(out[key], str):
            raise MonitoringAuthError("monitoring_auth.%s must be a string" % key)
    for key in ("validate_certs", "allow_plaintext"):
        if out[key] is not None and not isinstance(out[key], bool):
            raise MonitoringAuthError("monitoring_auth.%s %r is not allowed: use true or false" % (key, out[key]))
    if out["bearer_token"] is not None and out["username"] is not None:
        raise MonitoringAuthError("monitoring_auth sets both bearer_token and username: use one (a bearer token or "
                                  "basic auth)")
    if out["password"] is not None and out["username"] is None:
        raise MonitoringAuthError("monitoring_auth.password is set without username: basic auth needs both")
    if out["username"] is not None and out["password"] is None:
        raise MonitoringAuthError("monitoring_auth.username is set without password: basic auth needs both")
    if out["bearer_token"] is not None:
        # a token read from a file often ends with a newline; only a line break inside it is an error
        out["bearer_token"] = out["bearer_token"].strip()
    for key in SECRET_KEYS + ("username",):
        # a line break in a header value would start a new header (request smuggling); name the key, not the value
        if out[key] is not None and ("\n" in out[key] or "\r" in out[key]):
            raise MonitoringAuthError("monitoring_auth.%s contains a line break: not allowed in an HTTP header" % key)
    if out["bearer_token"] is not None and not out["bearer_token"]:
        raise MonitoringAuthError("monitoring_auth.bearer_token is blank: give the token or leave it out")
    if out["client_key"] is not None and out["client_cert"] is None:
        raise MonitoringAuthError("monitoring_auth.client_key is set without client_cert: give both")
    for key in FILE_KEYS:
        if out[key] is not None:
            out[key] = os.path.expanduser(out[key])
            if not os.path.isfile(out[key]) or not os.access(out[key], os.R_OK):
                raise MonitoringAuthError("monitoring_auth.%s %s is not a readable file" % (key, out[key]))
    if out["validate_certs"] is None:
        out["validate_certs"] = bool(validate_certs)
    out["allow_plaintext"] = bool(out["allow_plaintext"])
    return out


def has_credentials(auth):
    """Whether the (normalized) auth sends a secret: a token, a password or a client key."""
    return bool(auth) and any(auth.get(k) is not None for k in ("bearer_token", "username", "client_cert"))


def check_url(auth, url, option):
    """Refuse credentials over plain http:// (they would cross the network readable) unless allow_plaintext."""
    if not url or not has_credentials(auth) or auth.get("allow_plaintext"):
        return
    if urlsplit(url).scheme == "http":
        raise MonitoringAuthError("%s %s is plain http:// but monitoring_auth sends credentials: use https:// or set "
                                  "monitoring_auth.allow_plaintext=true (for a loopback proxy)" % (option, redact_url(url)))


def request_options(auth, validate_certs=True):
    """Keyword arguments of ``open_url`` (headers, url_username, url_password, force_basic_auth, client_cert,
    client_key, ca_path, validate_certs) for a normalized auth; without auth only ``validate_certs``."""
    if not auth:
        return {"headers": {}, "validate_certs": validate_certs}
    options = {"headers": {}, "validate_certs": auth["validate_certs"]}
    if auth.get("bearer_token") is not None:
        options["headers"]["Authorization"] = "Bearer " + auth["bearer_token"]
    if auth.get("username") is not None:
        # send the credentials at once: waiting for a 401 challenge costs a round trip and some proxies never send one
        options.update(url_username=auth["username"], url_password=auth["password"], force_basic_auth=True)
    for key in FILE_KEYS:
        if auth.get(key) is not None:
            options[key] = auth[key]
    return options


def monitoring_auth_option():
    """The ``monitoring_auth`` argument spec entry (documented by the doc fragment meshos.release.monitoring)."""
    return dict(type="dict", options=dict(
        bearer_token=dict(type="str", no_log=True),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        client_cert=dict(type="path"),
        client_key=dict(type="path", no_log=False),
        ca_path=dict(type="path"),
        validate_certs=dict(type="bool"),
        allow_plaintext=dict(type="bool", default=False),
    ), mutually_exclusive=[("bearer_token", "username")], required_together=[("username", "password")],
        required_by={"client_key": "client_cert"})
