#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_info
short_description: Read server states and health check results from the HAProxy runtime API
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Runs C(show stat) on the HAProxy runtime API (admin or stats unix socket) and returns, per server, the state
    (C(ready), C(drain), C(maint), C(down)), the raw status, weight, current sessions, the last health check result
    and the seconds since the last state change.
  - Read only. Used by the troubleshooting runbooks (role C(meshos.release.runbook)).
extends_documentation_fragment:
  - meshos.release.attributes
  - meshos.release.platform.haproxy
  - meshos.release.attributes.action_group
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
options:
  backends:
    description: Only servers of these backends; empty means every backend.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for HAProxy to answer.
    type: float
    default: 5.0
  counters:
    description:
      - Also return RV(proxies), the traffic counters of every frontend and backend, so a caller can read them before
        and after a change and work out what clients saw (role C(meshos.release.deploy), C(tasks_from=measure)).
    type: bool
    default: false
seealso:
  - module: meshos.release.rollback
"""

EXAMPLES = r"""
- name: Read the state of the servers of be_app
  meshos.release.haproxy_info:
    haproxy_socket: /tmp/meshos-lab/haproxy/admin.sock
    backends: [be_app]
  register: haproxy_servers
"""

RETURN = r"""
servers:
  description: One entry per server of the selected backends, in HAProxy order.
  returned: always
  type: list
  elements: dict
  contains:
    backend:
      description: Backend name.
      type: str
    server:
      description: Server name.
      type: str
    state:
      description: C(ready), C(drain), C(maint) or C(down).
      type: str
    status:
      description: Raw HAProxy status, for example C(UP), C(DOWN), C(DRAIN), C(MAINT), C(UP 1/2).
      type: str
    weight:
      description: Current weight.
      type: int
    sessions:
      description: Current sessions.
      type: int
    check_status:
      description: Result of the last health check, for example C(L7OK), C(L7STS), C(L4CON).
      type: str
    check_code:
      description: HTTP status of the last layer 7 health check, if any.
      type: str
    last_change_seconds:
      description: Seconds since the last state change.
      type: int
    address:
      description: Server address.
      type: str
  sample:
    - {backend: be_app, server: app1, state: down, status: DOWN, weight: 100, sessions: 0, check_status: L7STS,
       check_code: "503", last_change_seconds: 12, address: "127.0.0.1:18081"}
proxies:
  description:
    - With O(counters=true), one entry per frontend and backend (all of them, not only O(backends)), with HAProxy's
      cumulative counters. C(downtime) is HAProxy's own count of seconds the backend had no server up.
  returned: when counters is true
  type: list
  elements: dict
  contains:
    proxy:
      description: Frontend or backend name.
      type: str
    type:
      description: C(frontend) or C(backend).
      type: str
    req_tot:
      description: HTTP requests received (frontend) or sent to servers (backend).
      type: int
    hrsp_5xx:
      description: Responses with a 5xx status.
      type: int
    econ:
      description: Connection errors to servers (backend).
      type: int
    eresp:
      description: Response errors (backend).
      type: int
    downtime:
      description: Seconds the backend had no server up (backend).
      type: int
    status:
      description: Raw HAProxy status of the proxy.
      type: str
  sample:
    - {proxy: fe_main, type: frontend, req_tot: 5230, hrsp_5xx: 0, econ: 0, eresp: 0, downtime: 0, status: OPEN}
    - {proxy: be_app, type: backend, req_tot: 5230, hrsp_5xx: 0, econ: 0, eresp: 0, downtime: 0, status: UP}
backends:
  description: Per selected backend, its status and how many servers are up / total.
  returned: always
  type: dict
  sample: {be_app: {status: UP, servers: 4, up: 3, down: [app1]}}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient, _state_of
from ansible_collections.meshos.release.plugins.module_utils.platform.base import PlatformError
from ansible_collections.meshos.release.plugins.module_utils.platform.options import HAPROXY_OPTIONS, merged


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def summarize(rows, backends):
    """Shape ``show stat`` rows into (servers, backends) for the selected backends."""
    wanted = set(backends or [])
    known = set(row.get("pxname") for row in rows if row.get("svname") == "BACKEND")
    missing = sorted(wanted - known)
    if missing:
        raise PlatformError("HAProxy backend(s) %s not found (known: %s)"
                            % (", ".join(missing), ", ".join(sorted(known)) or "none"))
    servers = []
    summary = {}
    for row in rows:
        name = row.get("pxname")
        if wanted and name not in wanted:
            continue
        kind = row.get("svname")
        if kind == "FRONTEND":
            continue
        if kind == "BACKEND":
            summary.setdefault(name, {"servers": 0, "up": 0, "down": []})["status"] = row.get("status", "")
            continue
        state = _state_of(row.get("status", ""))
        servers.append({"backend": name, "server": kind, "state": state, "status": row.get("status", ""),
                        "weight": _int(row.get("weight")) or 0, "sessions": _int(row.get("scur")) or 0,
                        "check_status": row.get("check_status", ""), "check_code": row.get("check_code", ""),
                        "last_change_seconds": _int(row.get("lastchg")), "address": row.get("addr", "")})
        entry = summary.setdefault(name, {"servers": 0, "up": 0, "down": []})
        entry["servers"] += 1
        if state == "ready":
            entry["up"] += 1
        elif state == "down":
            entry["down"].append(kind)
    return servers, summary


def proxy_counters(rows):
    """The cumulative counters of every frontend and backend (missing or empty counters read as 0)."""
    proxies = []
    for row in rows:
        kind = row.get("svname")
        if kind not in ("FRONTEND", "BACKEND"):
            continue
        entry = {"proxy": row.get("pxname"), "type": kind.lower(), "status": row.get("status", "")}
        for counter in ("req_tot", "hrsp_5xx", "econ", "eresp", "downtime"):
            entry[counter] = _int(row.get(counter)) or 0
        proxies.append(entry)
    return proxies


def main():
    module = AnsibleModule(
        argument_spec=merged(HAPROXY_OPTIONS, dict(
            backends=dict(type="list", elements="str", default=[]),
            timeout=dict(type="float", default=5.0),
            counters=dict(type="bool", default=False),
        )),
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p["timeout"] <= 300:
        module.fail_json(msg="invalid timeout %r: expected seconds in (0, 300]" % (p["timeout"],))
    try:
        rows = HAProxyClient(p["haproxy_socket"], timeout=p["timeout"]).show_stat()
        servers, backends = summarize(rows, p["backends"])
    except PlatformError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    result = dict(changed=False, servers=servers, backends=backends)
    if p["counters"]:
        result["proxies"] = proxy_counters(rows)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
