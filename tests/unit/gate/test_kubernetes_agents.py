# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""health_gate's agents_unhealthy check on a Kubernetes workload (agents_source: kubernetes): the ratio comes from the
pods kube_api.pod_readiness reads; an API that stops answering is inconclusive, never a pass. The real API server is
exercised by tests/k8s/test_k8s_strategies.py; here the pod reading is scripted and nothing waits."""

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils.gate.loop import run_gate
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import PolicyError
from ansible_collections.meshos.release.plugins.module_utils.gate.sources import SourceError
from ansible_collections.meshos.release.tests.unit.gate.test_health_gate_failclosed import FakeClock

WORKLOAD = {"kind": "Deployment", "name": "mesh-os", "namespace": "prod", "max_restarts": 0}


class Pods:
    """kubernetes_agents() answers from a list, one reading per call (the last one repeats)."""

    def __init__(self, readings):
        self.readings = list(readings)
        self.calls = 0

    def kubernetes_agents(self):
        reading = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        if isinstance(reading, Exception):
            raise reading
        return reading


def reading(desired, unhealthy, pods=None, names=()):
    pods = desired if pods is None else pods
    total = max(desired, pods)
    return {"kind": "Deployment", "name": "prod/mesh-os", "desired": desired, "pods": pods,
            "ready": pods - len(names), "unhealthy": unhealthy,
            "unhealthy_ratio": round(unhealthy / float(total), 4) if total else 0.0,
            "unhealthy_pods": list(names), "missing": max(desired - pods, 0)}


def agents(result):
    return dict((c["name"], c) for c in result["checks"])["agents_unhealthy"]


def gate(sources, **params):
    fake = FakeClock()
    params.setdefault("agents_source", "kubernetes")
    params.setdefault("agents_workload", dict(WORKLOAD))
    params.setdefault("checks", ["agents_unhealthy"])
    return run_gate(params, sources=sources, clock=fake.clock, sleep=fake.sleep)


def test_healthy_pods_pass_with_the_values_shown():
    result = gate(Pods([reading(10, 0)]))
    check = agents(result)
    assert result["verdict"] == "pass" and check["value"] == 0.0
    assert "0/10 pods unhealthy" in check["reason"] and "kubernetes Deployment prod/mesh-os" in check["source"]


def test_crash_looping_pods_over_ten_percent_fail():
    sick = ["mesh-os-1 CrashLoopBackOff restarts=4", "mesh-os-2 not Ready"]
    result = gate(Pods([reading(10, 2, names=sick)]))
    check = agents(result)
    assert result["verdict"] == "fail" and check["value"] == 0.2
    assert "2/10 pods unhealthy" in check["reason"] and "CrashLoopBackOff" in check["reason"]


def test_an_api_that_stops_answering_is_inconclusive():
    gone = SourceError("kubernetes Deployment prod/mesh-os unreadable: connection refused")
    result = gate(Pods([gone]), duration="4s", interval="2s")
    check = agents(result)
    assert result["verdict"] == "inconclusive" and check["status"] == "inconclusive"
    assert "connection refused" in check["reason"]


def test_without_a_workload_the_check_is_skipped_by_name():
    result = gate(Pods([reading(3, 0)]), agents_workload=None, on_inconclusive="pass")
    check = agents(result)
    assert check["status"] == "skipped" and "agents_source kubernetes needs agents_workload" in check["reason"]


@pytest.mark.parametrize("workload,msg", [({"kind": "StatefulSet", "name": "x"}, "agents_workload.kind"),
                                          ({"kind": "Deployment"}, "needs a name")])
def test_bad_workloads_are_refused_before_anything_is_read(workload, msg):
    pods = Pods([reading(3, 0)])
    with pytest.raises(PolicyError, match=msg):
        gate(pods, agents_workload=workload)
    assert pods.calls == 0
