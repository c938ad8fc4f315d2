#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: notify
short_description: Send release communication to webhooks, Slack-compatible webhooks, email and file outboxes
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Sends one message (subject and body, usually rendered from the changelog) to every configured channel.
  - A channel that fails is reported in RV(results) and RV(failed_channels); the task fails only when a channel marked
    C(required) fails, so a release whose stage requires "communication sent" stops, and others go on.
  - Every channel is validated before anything is sent.
extends_documentation_fragment:
  - meshos.release.attributes
attributes:
  check_mode:
    support: full
    details: Nothing is sent in check mode; the channels are validated and reported.
  diff_mode:
    support: none
options:
  channels:
    description:
      - The channels. Each is a dict with C(type) (V(webhook), V(slack), V(email) or V(file)), an optional C(name)
        and C(required) (bool, default false).
      - V(webhook) and V(slack) take C(url), optional C(headers) and C(validate_certs); a generic webhook receives
        JSON with C(subject), C(body) and the O(payload) fields, a Slack-compatible one a JSON object with a single
        C(text) field.
      - V(email) takes C(to) (string or list), C(smtp_host), optional C(smtp_port) (25), C(from), C(starttls),
        C(smtp_user), C(smtp_password).
      - V(file) takes C(path) and appends one JSON line per message (an outbox).
    type: list
    elements: dict
    required: true
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
    description: Seconds before a webhook or SMTP connection gives up.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Announce the release
  meshos.release.notify:
    subject: "Autonomous Mesh OS v5.1.0 Released"
    body: "{{ lookup('ansible.builtin.file', 'announcement-5.1.0.md') }}"
    payload:
      version: 5.1.0
      audience: customers
    channels:
      - type: slack
        url: "{{ slack_webhook_url }}"
      - type: webhook
        url: https://hooks.example.com/releases
        required: true
      - type: email
        to: [support@example.com]
        smtp_host: smtp.example.com
      - type: file
        path: /var/log/meshos/notifications.jsonl
"""

RETURN = r"""
results:
  description: One entry per channel.
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

from ansible_collections.meshos.release.plugins.module_utils._notify import NotifyError, send_all, validate_channels


def main():
    module = AnsibleModule(
        argument_spec=dict(
            channels=dict(type="list", elements="dict", required=True),
            subject=dict(type="str", required=True),
            body=dict(type="str", required=True),
            payload=dict(type="dict", default={}),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        channels = validate_channels(params["channels"])
    except NotifyError as exc:
        module.fail_json(msg=str(exc))
    try:
        results = send_all(channels, params["subject"], params["body"], params["payload"], open_url=open_url,
                           timeout=params["timeout"], dry_run=module.check_mode)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="notification failed: %s" % exc, exception=traceback.format_exc())
    failed = [result["name"] for result in results if not result["ok"]]
    sent = sum(1 for result in results if result.get("sent"))
    required_failed = [result["name"] for result in results if not result["ok"] and result["required"]]
    output = dict(changed=sent > 0, results=results, sent=sent, failed_channels=failed)
    if required_failed:
        details = "; ".join("%s: %s" % (r["name"], r["detail"]) for r in results if r["name"] in required_failed)
        module.fail_json(msg="required notification channel(s) failed: %s" % details, **output)
    if failed:
        module.warn("notification channel(s) failed (not required): %s" % ", ".join(failed))
    module.exit_json(**output)


if __name__ == "__main__":
    main()
