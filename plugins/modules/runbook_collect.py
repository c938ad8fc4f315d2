#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runbook_collect
short_description: Read the diagnostics of the instances on the host it runs on (logs, process, CPU, memory, disk)
version_added: 0.1.0
author: meshos release engineering (@meshos)
description:
  - Runs on an instance's host (the role C(meshos.release.runbook) delegates it to each app host of an SSH fleet) and
    reads there, per instance, the tail of its log file, its process (pid file and C(/proc)), CPU and resident memory,
    the disk holding its release root and, optionally, its ready URL from the host itself; plus the host's memory
    and network interfaces.
  - Read only. Linux (C(/proc)).
extends_documentation_fragment:
  - meshos.release.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
options:
  instances:
    description:
      - The instances on this host, each a dict with C(name) (required, unique); C(log_file) (its log, the last
        O(log_lines) lines are read; default O(log_dir)/NAME.log); C(pid_file) (the process is alive when that pid runs
        and is not a zombie; default O(pid_dir)/NAME.pid); C(release_root) (the disk holding it is measured);
        C(ready_url) (GET from this host with O(check_ready)). Other keys (a target of
        M(meshos.release.rollout_strategy)) are ignored.
    type: list
    elements: dict
    required: true
  log_dir:
    description: Directory of the log files C(NAME.log) of instances without C(log_file); empty reads no logs for them.
    type: str
    default: ""
  pid_dir:
    description: Directory of the pid files C(NAME.pid) of instances without C(pid_file); empty checks no process for them.
    type: str
    default: ""
  check_ready:
    description: GET each instance's C(ready_url) from this host (on an instance's own host, C(http://127.0.0.1:PORT/ready)).
    type: bool
    default: false
  label:
    description: The name this host goes by in the report (the inventory name); default its hostname.
    type: str
  remote:
    description: True when the host is an instance's own host (an SSH fleet), so the report names it per finding.
    type: bool
    default: false
  log_lines:
    description: Lines of each log tail.
    type: int
    default: 20
  cpu_sample_seconds:
    description: Seconds between the two CPU samples of the processes.
    type: float
    default: 0
  http_timeout:
    description: Seconds to wait for a ready URL.
    type: float
    default: 3
seealso:
  - module: meshos.release.runbook_diagnose
"""

EXAMPLES = r"""
- name: Read the diagnostics on each app host
  meshos.release.runbook_collect:
    label: "{{ item.host }}"
    remote: true
    instances:
      - name: app1
        log_file: /srv/meshapp/log/app1.log
        pid_file: /srv/meshapp/run/app1.pid
        release_root: /srv/meshapp/hosts/app1
        ready_url: http://127.0.0.1:8080/ready
  delegate_to: "{{ item.host }}"
  loop: "{{ runbook_instance_hosts }}"
"""

RETURN = r"""
label:
  description: The host's label.
  returned: success
  type: str
remote:
  description: O(remote).
  returned: success
  type: bool
host:
  description: The host's own facts.
  returned: success
  type: dict
  sample: {hostname: app1, memory: {total_bytes: 8262037504, available_bytes: 5135093760, available_percent: 62.2},
           interfaces: [eth0, lo]}
instances:
  description:
    - Per instance name, C(log) (path, exists, lines), C(process) (pid_file, managed, pid, alive), C(resources)
      (pid, cpu_percent, rss_bytes, memory_percent; null when not running), C(disk) (filesystem, mount, size_bytes,
      free_bytes, free_percent, or error), C(ready) (url, status, ok, error).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError, one_line
from ansible_collections.meshos.release.plugins.module_utils.runbook.probe import collect


def main():
    module = AnsibleModule(argument_spec=dict(
        instances=dict(type="list", elements="dict", required=True),
        log_dir=dict(type="str", default=""), pid_dir=dict(type="str", default=""),
        check_ready=dict(type="bool", default=False),
        label=dict(type="str"), remote=dict(type="bool", default=False),
        log_lines=dict(type="int", default=20), cpu_sample_seconds=dict(type="float", default=0),
        http_timeout=dict(type="float", default=3),
    ), supports_check_mode=True)
    p = module.params
    try:
        found = collect(p["instances"], p["log_lines"], p["cpu_sample_seconds"], p["http_timeout"],
                        log_dir=p["log_dir"], pid_dir=p["pid_dir"], check_ready=p["check_ready"])
    except MeshosError as exc:
        module.fail_json(msg=one_line(exc))
    module.exit_json(changed=False, label=p["label"] or found["host"]["hostname"], remote=p["remote"], **found)


if __name__ == "__main__":
    main()
