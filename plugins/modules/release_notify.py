#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_notify
short_description: Send release communication to webhooks, Slack-compatible webhooks, email and file outboxes
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Sends one message (subject and body, usually rendered from the changelog) to every configured channel.
  - A channel that fails is reported in RV(results) and RV(failed_channels) and never counts as sent; the task fails
    only when a channel marked O(channels[].required) fails, so a release whose stage requires "communication sent"
    stops, and others go on.
  - Every channel is validated before anything is sent. Secrets (O(channels[].url), O(channels[].headers),
    O(channels[].smtp_password)) are C(no_log) options, and every message and result detail has credentials in URLs
    masked, so they appear neither in the task output at any verbosity nor in the injected invocation.
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.attributes.action_group
attributes:
  check_mode:
    support: full
    details: Nothing is sent in check mode; the channels are validated and reported.
  diff_mode:
    support: none
options:
  channels:
    description:
      - The channels. A generic O(channels[].type=webhook) receives JSON with C(subject), C(body) and the O(payload)
        fields, a Slack-compatible one a JSON object with a single C(text) field; O(channels[].type=email) sends
        mail over SMTP; O(channels[].type=file) appends one JSON line per message to an outbox file.
    type: list
    elements: dict
    required: true
    suboptions:
      type:
        description: The kind of channel.
        type: str
        required: true
        choices: [webhook, slack, email, file]
      name:
        description: Name used in RV(results) and RV(failed_channels); defaults to C(<type>-<index>). Unique.
        type: str
      required:
        description: Whether a failure of this channel fails the task.
        type: bool
        default: false
      url:
        description:
          - Webhook URL (O(channels[].type=webhook) and O(channels[].type=slack), required there); only V(http)
            and V(https) are accepted.
          - Treated as a secret (Slack webhook paths and C(?token=) queries are credentials) and never logged.
        type: str
      headers:
        description:
          - Extra HTTP headers for webhooks, for example C(Authorization). Values are treated as secrets.
        type: dict
      validate_certs:
        description: Verify TLS certificates (webhooks over https, SMTP with STARTTLS or SMTPS).
        type: bool
        default: true
      to:
        description: Recipients (O(channels[].type=email), required there).
        type: list
        elements: str
      smtp_host:
        description: SMTP server (O(channels[].type=email), required there).
        type: str
      smtp_port:
        description: SMTP port; defaults to 465 with O(channels[].smtps), otherwise 25.
        type: int
      from:
        description: Sender address; defaults to C(meshos-release@localhost).
        type: str
      starttls:
        description: Upgrade the SMTP connection with STARTTLS before logging in or sending.
        type: bool
        default: false
      smtps:
        description: Use TLS from the first byte (SMTPS, usually port 465). Mutually exclusive with O(channels[].starttls).
        type: bool
        default: false
      smtp_user:
        description:
          - SMTP user name for AUTH. Authentication requires O(channels[].starttls) or O(channels[].smtps) unless
            O(channels[].allow_plaintext_auth=true).
        type: str
      smtp_password:
        description: SMTP password. Never logged.
        type: str
      allow_plaintext_auth:
        description:
          - Allow sending O(channels[].smtp_password) over an unencrypted connection. Only for a trusted relay on the
            same host; without it, authentication without TLS is refused before anything is sent.
        type: bool
        default: false
      path:
        description: Outbox file (O(channels[].type=file), required there); its directory is created if missing.
        type: path
  subject:
    description: Message subject.
    type: str
    required: true
  body:
    description: Message body (Markdown).
    type: str
    required: true
  payload:
    description: Extra fields for generic webhooks and file outboxes, for example C(version), C(environment), C(audience).
    type: dict
    default: {}
  timeout:
    description: Seconds before a webhook or SMTP connection gives up; must be greater than 0.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Announce the release
  meshos.release.release_notify:
    subject: "Autonomous Mesh OS v5.1.0 Released"
    body: "{{ lookup('ansible.builtin.file', 'announcement-5.1.0.md') }}"
    payload:
      version: 5.1.0
      audience: customers
    channels:
      - type: slack
        url: "{{ vault_slack_webhook_url }}"
      - type: webhook
        url: https://hooks.example.com/releases
        headers:
          Authorization: "Bearer {{ vault_release_hook_token }}"
        required: true
      - type: email
        to: [support@example.com]
        smtp_host: smtp.example.com
        smtp_port: 587
        starttls: true
        smtp_user: release-bot
        smtp_password: "{{ vault_smtp_password }}"
      - type: file
        path: /var/log/meshos/notifications.jsonl
"""

RETURN = r"""
results:
  description: One entry per channel; C(detail) has every credential masked.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "slack-0", "type": "slack", "required": false, "ok": true, "sent": true, "detail": "HTTP 200"}]
sent:
  description: Number of channels the message was delivered to.
  returned: always
  type: int
  sample: 2
failed_channels:
  description: Names of the channels that failed (a key of its own, so Ansible's C(failed) keeps its meaning).
  returned: always
  type: list
  elements: str
  sample: ["email-2"]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils._notify import (
    NotifyError,
    channel_secrets,
    send_all,
    validate_channels,
    validate_timeout,
)
from ansible_collections.meshos.release.plugins.module_utils._redact import redact_secrets

CHANNEL_OPTIONS = {
    "type": dict(type="str", required=True, choices=["webhook", "slack", "email", "file"]),
    "name": dict(type="str"),
    "required": dict(type="bool", default=False),
    "url": dict(type="str", no_log=True),
    "headers": dict(type="dict", no_log=True),
    "validate_certs": dict(type="bool", default=True),
    "to": dict(type="list", elements="str"),
    "smtp_host": dict(type="str"),
    "smtp_port": dict(type="int"),
    "from": dict(type="str"),
    "starttls": dict(type="bool", default=False),
    "smtps": dict(type="bool", default=False),
    "smtp_user": dict(type="str"),
    "smtp_password": dict(type="str", no_log=True),
    "allow_plaintext_auth": dict(type="bool", default=False),
    "path": dict(type="path"),
}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            channels=dict(type="list", elements="dict", required=True, options=CHANNEL_OPTIONS,
                          required_if=[("type", "webhook", ("url",)), ("type", "slack", ("url",)),
                                       ("type", "email", ("to", "smtp_host")), ("type", "file", ("path",))],
                          mutually_exclusive=[("starttls", "smtps")]),
            subject=dict(type="str", required=True),
            body=dict(type="str", required=True),
            payload=dict(type="dict", default={}),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    secrets = [s for channel in params["channels"] for s in channel_secrets(channel)]
    try:
        validate_timeout(params["timeout"])
        channels = validate_channels(params["channels"])
    except NotifyError as exc:
        module.fail_json(msg=redact_secrets(str(exc), secrets))
    try:
        results = send_all(channels, params["subject"], params["body"], params["payload"], open_url=open_url,
                           timeout=params["timeout"], dry_run=module.check_mode)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg=redact_secrets("notification failed: %s" % exc, secrets),
                         exception=redact_secrets(traceback.format_exc(), secrets))
    failed = [result["name"] for result in results if not result["ok"]]
    sent = sum(1 for result in results if result.get("ok") and result.get("sent"))
    required_failed = [result["name"] for result in results if not result["ok"] and result["required"]]
    output = dict(changed=sent > 0, results=results, sent=sent, failed_channels=failed)
    if required_failed:
        details = "; ".join("%s: %s" % (r["name"], r["detail"]) for r in results if r["name"] in required_failed)
        module.fail_json(msg=redact_secrets("required notification channel(s) failed: %s" % details, secrets),
                         **output)
    if failed:
        module.warn(redact_secrets("notification channel(s) failed (not required): %s" % "; ".join(
            "%s: %s" % (r["name"], r["detail"]) for r in results if not r["ok"]), secrets))
    module.exit_json(**output)


if __name__ == "__main__":
    main()
