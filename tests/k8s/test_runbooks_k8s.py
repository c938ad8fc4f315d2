# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The troubleshooting runbooks on platform kubernetes (playbooks/runbooks/*.yml -> role tasks k8s_*), on the local
control plane.

A 3-replica Deployment of meshapp 1.0.0 (progressDeadlineSeconds 10, requests 100m / 64Mi) is rolled, outside the
collection, to 2.0.0 with the pod label the kwok stage pod-never-ready keeps unready: the rollout stalls and the
controller marks it ProgressDeadlineExceeded. deployment_stuck reports it STUCK with its cause (readiness_failing),
the new pods, the requests against the nodes' allocatable, and changes nothing; with runbook_resolve=true it cancels
and rolls back to the previous revision through the guarded rollback (lock, audit log). Then a template whose requests
fit no node (cpu 64 per pod, nodes of 32): the cause is insufficient_resources, from the FailedScheduling events and
the measured capacity. On that template rollback_failed verifies the previous revision (1.0.0) as the target, and
health_checks_failing with runbook_resolve=true deletes the unschedulable pod, finds its replacement unhealthy with no
room to scale up, and rolls back (the restarts audited, the rollback guarded).

Uses the plane that MESHOS_K8S_KUBECONFIG names (the k8s stage of scripts/test.sh), else starts one on base 28200
(ports 28201-28206). Skipped, with the reason, when the binaries are not built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from _plane import MISSING, MISSING_REASON, REPO_ROOT, SHARED, plane_kubeconfig, wait_until

PORT_BASE = 28200
NAMESPACE = "meshos-k8s-runbooks"
ENV = "k8srunbook"

kubernetes = pytest.importorskip("kubernetes", reason="the `kubernetes` Python client is not installed")

pytestmark = pytest.mark.skipif(bool(MISSING) and not SHARED, reason=MISSING_REASON)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    yield from plane_kubeconfig(tmp_path_factory, PORT_BASE, "k8s-runbooks")


def _template(k, version, fault=None, cpu="100m"):
    labels = {"app": "meshapp", "meshos.release/version": version}
    if fault:
        labels["meshos.test/fault"] = fault
    return k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(labels=labels, annotations={"meshos.release/version": version}),
        spec=k.V1PodSpec(containers=[k.V1Container(
            name="app", image="meshapp:%s" % version,
            resources=k.V1ResourceRequirements(requests={"cpu": cpu, "memory": "64Mi"}))]))


@pytest.fixture(scope="module")
def cluster(kubeconfig):
    k = kubernetes.client
    api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    core, apps = k.CoreV1Api(api), k.AppsV1Api(api)
    core.create_namespace(k.V1Namespace(metadata=k.V1ObjectMeta(name=NAMESPACE)))
    wait_until(lambda: core.list_namespaced_service_account(NAMESPACE).items, "default ServiceAccount")
    apps.create_namespaced_deployment(NAMESPACE, k.V1Deployment(
        metadata=k.V1ObjectMeta(name="meshapp", labels={"app": "meshapp"}),
        spec=k.V1DeploymentSpec(
            replicas=3, progress_deadline_seconds=10, revision_history_limit=10,
            selector=k.V1LabelSelector(match_labels={"app": "meshapp"}),
            strategy=k.V1DeploymentStrategy(type="RollingUpdate", rolling_update=k.V1RollingUpdateDeployment(
                max_surge=1, max_unavailable=0)),
            template=_template(k, "1.0.0"))))
    wait_until(lambda: ready_images(core) == {"meshapp:1.0.0": 3}, "3 Ready pods of 1.0.0")
    yield core, apps
    core.delete_namespace(NAMESPACE)
    api.close()


def ready_images(core):
    counts = {}
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=meshapp").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready and pod.metadata.deletion_timestamp is None:
            counts[pod.spec.containers[0].image] = counts.get(pod.spec.containers[0].image, 0) + 1
    return counts


def progress_deadline_exceeded(apps):
    dep = apps.read_namespaced_deployment("meshapp", NAMESPACE)
    return [c for c in dep.status.conditions or [] if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"]


def roll_outside(apps, template):
    """A rollout made without the collection (kubectl, another pipeline): the runbook finds it as it is."""
    apps.patch_namespaced_deployment("meshapp", NAMESPACE, {"spec": {"template": kubernetes.client.ApiClient()
                                                                     .sanitize_for_serialization(template)}})


@pytest.fixture(scope="module")
def work(kubeconfig, tmp_path_factory):
    root = tmp_path_factory.mktemp("k8s-runbooks-work")
    options = {"kubeconfig": kubeconfig, "namespace": NAMESPACE, "deployment": "meshapp", "interval": 0.5,
               "rollout_timeout": 90}
    inventory = {"all": {"children": {
        "lab_lb": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
        ENV: {"hosts": {"k8s-meshapp": {"release_platform": "kubernetes", "release_platform_options": options}}},
    }}}
    (root / "inventory.json").write_text(json.dumps(inventory))
    return {"root": root, "inventory": root / "inventory.json", "audit": root / "release" / "audit.jsonl",
            "reports": root / "reports"}


def runbook(work, name, *extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".build" / "collections"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    cmd = ["ansible-playbook", "-i", str(work["inventory"]), str(REPO_ROOT / "playbooks" / "runbooks" / ("%s.yml" % name)),
           "-e", "env=%s" % ENV, "-e", "audit_log=%s" % work["audit"],
           "-e", "release_state_root=%s" % (work["root"] / "release" / "state"),
           "-e", "state_dir=%s" % (work["root"] / "state"), "-e", "runbook_report_dir=%s" % work["reports"], *extra]
    started = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    found = sorted((p for p in work["reports"].glob("%s-%s-*.md" % (name, ENV)) if p.stat().st_mtime >= started - 1),
                   key=lambda p: p.stat().st_mtime) if work["reports"].is_dir() else []
    assert found, "no report written:\n" + out.stdout[-4000:] + out.stderr[-2000:]
    return out, found[-1].read_text()


def test_stuck_rollout_diagnosed_with_its_cause_then_rolled_back(cluster, work):
    core, apps = cluster
    k = kubernetes.client
    roll_outside(apps, _template(k, "2.0.0", fault="never-ready"))
    wait_until(lambda: progress_deadline_exceeded(apps), "ProgressDeadlineExceeded on the 2.0.0 rollout", timeout=120)

    out, report = runbook(work, "deployment_stuck")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "rollout to 2.0.0 is STUCK (ProgressDeadlineExceeded)" in report, report
    assert "| critical | cause | - | cause: readiness_failing" in report, report
    assert "Running but not Ready" in report and "No action taken." in report
    assert "Result: **problems_found**" in report and "-e runbook_resolve=true" in report
    # the pods table and the capacity are what the API said: 3 kwok nodes of 32 cpu, 100m requested per pod
    assert "## Pods of %s/meshapp" % NAMESPACE in report and "| NO |" in report
    details = json.loads(report.split("## Kubernetes\n\n```json\n", 1)[1].split("\n```", 1)[0])
    capacity = details["capacity"]
    assert capacity["nodes"] >= 1 and capacity["pod_requests"] == {"cpu": 0.1, "memory": 64 * 2 ** 20}
    assert capacity["allocatable"]["cpu"] == 32.0 * capacity["nodes"]
    assert capacity["more_pods_fit"] > 0
    assert all(log["error"] for log in details["logs"].values()), details["logs"]  # kwok has no kubelet logs
    # read only: still the faulty template
    assert apps.read_namespaced_deployment("meshapp", NAMESPACE).spec.template.metadata.labels.get(
        "meshos.test/fault") == "never-ready"

    out, report = runbook(work, "deployment_stuck", "-e", "runbook_resolve=true")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "| rollback | %s/meshapp | complete" % NAMESPACE in report, report
    assert "Result: **resolved**" in report
    template = apps.read_namespaced_deployment("meshapp", NAMESPACE).spec.template
    assert template.spec.containers[0].image == "meshapp:1.0.0"
    assert "meshos.test/fault" not in (template.metadata.labels or {})
    wait_until(lambda: ready_images(core) == {"meshapp:1.0.0": 3}, "only 1.0.0 pods after the runbook's rollback")
    entries = [json.loads(line) for line in work["audit"].read_text().splitlines() if line.strip()]
    rollback = [e for e in entries if e["action"] == "rollback" and e["result"] == "success"]
    assert rollback and rollback[-1]["environment"] == ENV, entries[-3:]


def test_requests_that_fit_no_node_are_classified_insufficient_resources(cluster, work):
    core, apps = cluster
    roll_outside(apps, _template(kubernetes.client, "2.1.0", cpu="64"))
    wait_until(lambda: progress_deadline_exceeded(apps), "ProgressDeadlineExceeded on the 2.1.0 rollout", timeout=120)
    out, report = runbook(work, "deployment_stuck")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "| critical | cause | - | cause: insufficient_resources" in report, report
    assert "Insufficient cpu" in report, report
    details = json.loads(report.split("## Kubernetes\n\n```json\n", 1)[1].split("\n```", 1)[0])
    assert details["capacity"]["more_pods_fit"] == 0 and details["capacity"]["pod_requests"]["cpu"] == 64.0
    assert ready_images(core) == {"meshapp:1.0.0": 3}  # the old pods keep serving (maxUnavailable 0)


def test_rollback_failed_verifies_the_previous_revision(cluster, work):
    # still on the 2.1.0 template that fits no node: the previous revision (1.0.0) is the rollback target
    out, report = runbook(work, "rollback_failed")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "| info | backup | meshapp | rollback target 1.0.0 is intact" in report, report
    assert "runbook_resolve=true   # manual rollback to 1.0.0" in report and "No action taken." in report
    assert "escalate now" not in report and "## Emergency contacts" in report


def test_health_checks_failing_restarts_then_rolls_back_when_nothing_heals(cluster, work):
    core, apps = cluster
    out, report = runbook(work, "health_checks_failing", "-e", "runbook_resolve=true",
                          "-e", "runbook_restart_wait_seconds=5")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    # the Pending 2.1.0 pod is deleted, its replacement cannot be scheduled either, no room to scale: roll back
    assert "| restart | meshapp | deleted meshapp-" in report and "STILL UNHEALTHY" in report, report
    assert "| rollback | %s/meshapp | complete" % NAMESPACE in report, report
    assert "Result: **resolved**" in report
    assert apps.read_namespaced_deployment("meshapp", NAMESPACE).spec.template.spec.containers[0].image == "meshapp:1.0.0"
    wait_until(lambda: ready_images(core) == {"meshapp:1.0.0": 3}, "only 1.0.0 pods after the health runbook")
    entries = [json.loads(line) for line in work["audit"].read_text().splitlines() if line.strip()]
    restarts = [e for e in entries if e["action"] == "restart"]
    assert [e["result"] for e in restarts] == ["started", "failure"], restarts
    assert restarts[-1]["details"]["next"] == "rollback"
