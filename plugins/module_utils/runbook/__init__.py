# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The troubleshooting runbooks' logic: what the role meshos.release.runbook gathers is judged here.

probe.py    runs ON an instance's host (module runbook_collect): log tails, process, CPU/memory, disk, ready URL
assess.py   per step: the gathered facts -> a record for the report + findings (severity, step, target, message)
decide.py   the decisions: stuck or not, which resolution, the recommended commands, escalation, the result status
kube.py     the Kubernetes runbooks' reads and classification (module runbook_kube)
"""
