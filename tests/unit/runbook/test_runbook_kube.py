# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes runbooks' classification (plugins/module_utils/runbook/kube.py) on plain API dicts."""

import pytest

from ansible_collections.meshos.release.plugins.module_utils.runbook import kube
from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import RunbookError


def pod(name, phase="Running", ready=True, waiting=None, restarts=0, node="n1", cpu="100m"):
    return {"metadata": {"name": name, "labels": {"pod-template-hash": "new"}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "resources": {"requests": {"cpu": cpu,
                                                                                                 "memory": "64Mi"}}}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"restartCount": restarts,
                                              "state": {"waiting": {"reason": waiting}} if waiting else {}}]}}


NODE = {"metadata": {"name": "n1"}, "spec": {}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}}
TEMPLATE = {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}}]}}


def test_quantities():
    assert kube.quantity("250m") == 0.25 and kube.quantity("1Gi") == 2 ** 30 and kube.quantity("2") == 2.0
    assert kube.quantity("1k") == 1000.0
    with pytest.raises(RunbookError, match="invalid Kubernetes quantity 'lots'"):
        kube.quantity("lots")


def test_capacity_counts_what_fits_after_the_scheduled_pods():
    room = kube.capacity([NODE], [pod("a"), pod("b", phase="Succeeded"), pod("c", node="elsewhere")], TEMPLATE)
    assert room["requested"]["cpu"] == pytest.approx(0.1) and room["free"]["cpu"] == pytest.approx(1.9)
    assert room["more_pods_fit"] == 3  # cpu 1.9 / 0.5; memory (1Gi - 64Mi) / 128Mi = 7
    assert kube.capacity([NODE], [], {"spec": {"containers": [{"name": "app"}]}})["more_pods_fit"] is None


@pytest.mark.parametrize("pods, events, cause", [
    ([pod("p", ready=False, waiting="ImagePullBackOff")], [], "image_pull"),
    ([pod("p", ready=False, waiting="CrashLoopBackOff", restarts=4)], [], "crash_loop"),
    ([pod("p", ready=False, restarts=2)], [], "crash_loop"),
    ([pod("p", phase="Pending", ready=False)],
     [{"reason": "FailedScheduling", "object": "Pod/p", "message": "0/3 nodes are available: 3 Insufficient cpu."}],
     "insufficient_resources"),
    ([pod("p", phase="Pending", ready=False)],
     [{"reason": "FailedScheduling", "object": "Pod/p", "message": "0/3 nodes are available: 3 node(s) had untolerated taint"}],
     "unschedulable"),
    ([pod("p", ready=False)], [], "readiness_failing"),
    ([], [], "unknown"),
])
def test_classify(pods, events, cause):
    room = kube.capacity([NODE], pods, TEMPLATE)
    assert kube.classify({"status": {}}, pods, events, room)[0] == cause


def test_unhealthy_pods():
    assert kube.unhealthy(pod("a")) is None
    assert kube.unhealthy(pod("b", ready=False, waiting="CrashLoopBackOff")) == "CrashLoopBackOff"
    assert kube.unhealthy(pod("c", ready=False)) == "Running, not ready"
    assert kube.unhealthy(pod("d", restarts=3)) == "3 restarts"


def test_diagnose_a_stuck_rollout():
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3,
                      "availableReplicas": 3, "conditions": [{"type": "Progressing", "status": "False",
                                                              "reason": "ProgressDeadlineExceeded", "message": "x"}]}}
    bad = pod("new-1", ready=False)
    snap = {"namespace": "ns", "name": "meshapp", "deployment": dep, "revision": "2", "version": "2.0.0",
            "pods": [pod("old-1"), bad], "new_pods": [bad],
            "events": [{"type": "Warning", "reason": "Unhealthy", "object": "Pod/new-1", "message": "Readiness probe failed"}],
            "logs": {"new-1": {"lines": [], "error": "Bad Request"}}, "capacity": kube.capacity([NODE], [bad], TEMPLATE)}
    result = kube.diagnose(snap)
    assert result["stuck"] and not result["complete"] and result["cause"] == "readiness_failing"
    assert result["unhealthy_pods"] == ["new-1"]
    messages = [f["message"] for f in result["findings"]]
    assert messages[0].startswith("deployment ns/meshapp rollout to 2.0.0 is STUCK (ProgressDeadlineExceeded)")
    assert any(m.startswith("cause: readiness_failing") for m in messages)
    assert "Unhealthy Pod/new-1 (x1): Readiness probe failed" in messages


def test_a_pod_larger_than_any_node_fits_nowhere_even_when_the_sum_would_hold_it():
    nodes = [dict(NODE, metadata={"name": "n%d" % i}) for i in range(3)]  # 3 x 2 cpu
    big = {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "3"}}}]}}
    room = kube.capacity(nodes, [], big)
    assert room["allocatable"]["cpu"] == 6.0 and room["more_pods_fit"] == 0
