# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The option groups of plugins/module_utils/platform/options.py, one section per dict."""

    # ROLLOUT_OPTIONS: the operation (state file, timeouts, batching, measurement) and the backend choice
    DOCUMENTATION = r"""
options:
  platform:
    description:
      - The backend that runs the instances and routes their traffic. Only C(hosts) exists today, instances with
        release directories and a restart command (O(targets)) whose traffic goes through HAProxy (O(haproxy_socket)).
    type: str
    default: hosts
  environment:
    description:
      - Environment name, for example C(production). Selects the state file C(<state_dir>/<environment>.json).
    type: str
    required: true
  state_dir:
    description:
      - Directory of the per-environment JSON state files (written atomically; a re-run resumes from them).
    type: path
    required: true
  drain_timeout:
    description: Seconds to wait for a drained server's sessions to end before failing.
    type: float
    default: 30.0
  ready_timeout:
    description: Seconds to wait for readiness (C(ready_url) 200, then HAProxy reporting the server UP).
    type: float
    default: 30.0
  interval:
    description: Polling interval in seconds.
    type: float
    default: 0.2
  batch_size:
    description: Hosts per rolling batch, a count (C(2)) or a percentage (C(25%)).
    type: str
    default: "1"
  default_weight:
    description: HAProxy weight restored after a canary on servers whose weight was not recorded at its start.
    type: int
    default: 100
  measure_interval:
    description:
      - Seconds between two C(show stat) samples while the operation runs. A live backend with no ready server
        between two samples counts as downtime for that interval (the resolution of the downtime in RV(traffic)).
    type: float
    default: 0.25
"""

    # HAPROXY_OPTIONS: the HAProxy runtime API
    HAPROXY = r"""
options:
  haproxy_socket:
    description:
      - HAProxy runtime API unix socket (C(stats socket ...)); changing servers, weights or the route map needs
        C(level admin).
    type: path
    required: true
"""

    # HOSTS_OPTIONS: the hosts backend (instances with release directories behind HAProxy backends)
    HOSTS = r"""
options:
  backend:
    description:
      - HAProxy backend of targets that have no O(targets[].color) and no O(targets[].backend).
    type: str
    default: be_app
  route_map:
    description:
      - HAProxy map file whose key C(active) names the backend the frontend routes to (C(be_app), C(be_blue),
        C(be_green)). Required for blue-green.
    type: path
  targets:
    description:
      - The fleet. Paths and commands are used on the machine running the module (the HAProxy host, or shared
        storage); for remote hosts run per-host tasks with C(delegate_to).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Instance name (letters, digits, C(_), C(.), C(-)).
        type: str
        required: true
      server:
        description: HAProxy server name; defaults to O(targets[].name).
        type: str
      backend:
        description: HAProxy backend; defaults to C(be_<color>) for colored targets, else O(backend).
        type: str
      color:
        description: C(blue) or C(green) for blue-green.
        type: str
        choices: [blue, green]
      release_root:
        description: Absolute directory holding C(releases/<version>/) and the C(current) symlink.
        type: str
        required: true
      restart_command:
        description:
          - Command (no shell) restarting the instance on the new C(current); placeholders C({name}), C({host}),
            C({version}), C({port}), C({release_root}).
        type: str
        required: true
      ready_url:
        description: URL answering 200 when the instance is ready.
        type: str
        required: true
      status_url:
        description: Optional URL returning JSON with C(version), used to detect an instance still running an old version.
        type: str
      weight:
        description: Unused per-target weight hint (1-256); O(default_weight) is what is restored.
        type: int
      host:
        description: Value for the C({host}) placeholder.
        type: str
      port:
        description: Value for the C({port}) placeholder.
        type: int
  haproxy_frontends:
    description:
      - HAProxy frontends whose C(req_tot) and C(hrsp_5xx) counters measure the requests and failed requests in
        RV(traffic). Default is every HTTP frontend except those whose name starts with C(stats).
    type: list
    elements: str
"""
