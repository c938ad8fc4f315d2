# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The O(monitoring_auth) option of the modules that read Prometheus and Alertmanager
    (plugins/module_utils/_monitoring.py)."""

    DOCUMENTATION = r"""
options:
  monitoring_auth:
    description:
      - How to authenticate to Prometheus and Alertmanager when they sit behind an authenticating proxy or serve
        TLS with a private CA. One setting for both.
      - A bearer token and basic auth exclude each other; either can go with a client certificate.
      - Credentials are refused over plain C(http://) unless O(monitoring_auth.allow_plaintext=true).
      - A wrong or missing credential is answered by the server with HTTP 401 or 403; the checks reading that source
        are then inconclusive (fail closed), naming the URL and the HTTP status.
      - The token and the password are C(no_log), so they appear neither in the task output at any verbosity nor in
        the returned invocation.
    type: dict
    suboptions:
      bearer_token:
        description: "Token sent as C(Authorization: Bearer <token>) with every request."
        type: str
      username:
        description: User name for HTTP basic auth, sent with the first request (no wait for a challenge).
        type: str
      password:
        description: Password for HTTP basic auth; required with O(monitoring_auth.username).
        type: str
      client_cert:
        description: PEM client certificate (mutual TLS); may also contain the key.
        type: path
      client_key:
        description: PEM private key of O(monitoring_auth.client_cert) when it is a separate file.
        type: path
      ca_path:
        description: PEM CA bundle that verifies the servers' certificates (instead of the system trust store).
        type: path
      validate_certs:
        description:
          - Verify the servers' TLS certificates. Defaults to the module's O(validate_certs).
          - Leave it on; a private CA belongs in O(monitoring_auth.ca_path).
        type: bool
      allow_plaintext:
        description: Send the credentials over plain C(http://) too (a proxy on the loopback interface).
        type: bool
        default: false
"""
