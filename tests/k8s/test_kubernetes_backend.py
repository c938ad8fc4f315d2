# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kubernetes backend on the local control plane (real Deployment controller, kwok nodes).

Through the modules (run in-process with tests/unit/plugins/modules/module_runner.py): a 3-replica Deployment rolled
from 1.0.0 to 2.0.0 by ``rollout_strategy``; a faulty 3.0.0 (pod label ``meshos.test/fault: never-ready``, which the
kwok stage tests/k8s/kwok/stages/pod-never-ready.yaml keeps unready) reported STUCK once the Deployment's 10 s
progressDeadlineSeconds passes, while the 2.0.0 pods keep serving; ``rollback`` back to 2.0.0 (previous revision),
then to the named 1.0.0, and a named version that does not exist refused with the list of what does. Then the same
modules through ``ansible-playbook`` (AnsiballZ, as a play runs them): a rolling deploy of 4.0.0 and its status.

Ports 27041-27046 (base 27040, inside the 27000-27099 range of docs/design.md), or the plane that
MESHOS_K8S_KUBECONFIG names (the k8s stage of scripts/test.sh starts one for all its tests). Skipped, with the reason,
when the binaries are not built (`scripts/k8s_controlplane.sh build`).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from _plane import MISSING, MISSING_REASON, REPO_ROOT, SHARED, plane_kubeconfig, wait_until

PORT_BASE = 27040
NAMESPACE = "meshos-k8s-backend"
WAIT = 90

kubernetes = pytest.importorskip("kubernetes", reason="the `kubernetes` Python client is not installed")

from ansible_collections.meshos.release.plugins.modules import rollback as rollback_module  # noqa: E402
from ansible_collections.meshos.release.plugins.modules import rollout_strategy  # noqa: E402
from ansible_collections.meshos.release.tests.unit.plugins.modules.module_runner import run_module  # noqa: E402

pytestmark = pytest.mark.skipif(bool(MISSING) and not SHARED, reason=MISSING_REASON)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    yield from plane_kubeconfig(tmp_path_factory, PORT_BASE, "k8s-backend")


@pytest.fixture(scope="module")
def cluster(kubeconfig):
    """The namespace and a 3-replica Deployment of meshapp 1.0.0 (progressDeadlineSeconds 10, maxSurge 1,
    maxUnavailable 0); (core, apps) API objects."""
    k = kubernetes.client
    api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    core, apps = k.CoreV1Api(api), k.AppsV1Api(api)
    core.create_namespace(k.V1Namespace(metadata=k.V1ObjectMeta(name=NAMESPACE)))
    wait_until(lambda: core.list_namespaced_service_account(NAMESPACE).items, "default ServiceAccount")
    labels = {"app": "meshapp"}
    version = {"meshos.release/version": "1.0.0"}
    apps.create_namespaced_deployment(NAMESPACE, k.V1Deployment(
        metadata=k.V1ObjectMeta(name="meshapp", labels=labels),
        spec=k.V1DeploymentSpec(
            replicas=3, progress_deadline_seconds=10, revision_history_limit=10,
            selector=k.V1LabelSelector(match_labels=labels),
            strategy=k.V1DeploymentStrategy(type="RollingUpdate", rolling_update=k.V1RollingUpdateDeployment(
                max_surge=1, max_unavailable=0)),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=dict(labels, **version), annotations=version),
                spec=k.V1PodSpec(containers=[k.V1Container(name="app", image="meshapp:1.0.0")])))))
    yield core, apps
    api.close()


def ready_images(core):
    """{image: number of Ready, not terminating meshapp pods}."""
    counts = {}
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=meshapp").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready and pod.metadata.deletion_timestamp is None:
            image = pod.spec.containers[0].image
            counts[image] = counts.get(image, 0) + 1
    return counts


@pytest.fixture()
def args(kubeconfig, tmp_path_factory):
    state_dir = tmp_path_factory.getbasetemp() / "k8s-state"
    state_dir.mkdir(exist_ok=True)
    return dict(platform="kubernetes", environment="k8s", state_dir=str(state_dir), kubeconfig=kubeconfig,
                namespace=NAMESPACE, deployment="meshapp", interval=0.5, rollout_timeout=WAIT)


def test_rolling_stuck_and_rollbacks(cluster, args):
    core, apps = cluster
    # the first rollout (1.0.0) completes: the module has nothing to patch and only waits for the controller
    first = run_module(rollout_strategy, dict(args, version="1.0.0"))
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] is False and first["versions"] == {"meshapp": "1.0.0"}

    started = time.monotonic()
    deploy = run_module(rollout_strategy, dict(args, version="2.0.0"))
    assert not deploy.get("failed"), deploy.get("msg")
    assert deploy["changed"] is True and deploy["status"] == "complete"
    assert deploy["versions"] == {"meshapp": "2.0.0"} and deploy["image"] == "meshapp:2.0.0"
    assert deploy["replicas"]["ready"] == deploy["replicas"]["available"] == deploy["replicas"]["updated"] == 3
    assert deploy["diff"]["before"]["version"] == "1.0.0"
    print("rolling 1.0.0 -> 2.0.0 on 3 replicas: %.1fs" % (time.monotonic() - started))
    wait_until(lambda: ready_images(core) == {"meshapp:2.0.0": 3}, "3 Ready pods of 2.0.0 and nothing else")

    # check mode plans and changes nothing
    plan = run_module(rollout_strategy, dict(args, version="3.0.0", _ansible_check_mode=True))
    assert plan["changed"] is True and plan["plan"][0]["action"] == "patch_template"
    assert apps.read_namespaced_deployment("meshapp", NAMESPACE).spec.template.spec.containers[0].image == \
        "meshapp:2.0.0"

    # a faulty 3.0.0: its pods never become ready; the controller's progress deadline ends the wait
    started = time.monotonic()
    stuck = run_module(rollout_strategy, dict(args, version="3.0.0", pod_labels={"meshos.test/fault": "never-ready"}))
    took = time.monotonic() - started
    print("faulty 3.0.0 reported STUCK after %.1fs: %s" % (took, stuck.get("msg")))
    assert stuck.get("failed"), stuck
    assert "STUCK" in stuck["msg"] and "ProgressDeadlineExceeded" in stuck["msg"], stuck["msg"]
    assert "not ready" in stuck["msg"]
    assert stuck["stuck"]["pods"] and not [p for p in stuck["stuck"]["pods"] if p["ready"]]
    assert took < WAIT
    # maxUnavailable 0: the 2.0.0 pods kept serving all along
    assert ready_images(core).get("meshapp:2.0.0") == 3

    status = run_module(rollback_module, dict(args, mode="status"))
    assert status["healthy"] is False and status["version"] == "3.0.0"

    started = time.monotonic()
    back = run_module(rollback_module, dict(args))
    assert not back.get("failed"), back.get("msg")
    print("rollback to the previous revision (2.0.0): %.1fs" % (time.monotonic() - started))
    assert back["changed"] is True and back["versions"] == {"meshapp": "2.0.0"}
    assert back["image"] == "meshapp:2.0.0" and back["rollback_seconds"] > 0
    wait_until(lambda: ready_images(core) == {"meshapp:2.0.0": 3}, "only 2.0.0 pods after the rollback")
    template = apps.read_namespaced_deployment("meshapp", NAMESPACE).spec.template
    assert "meshos.test/fault" not in template.metadata.labels

    named = run_module(rollback_module, dict(args, version="1.0.0"))
    assert not named.get("failed"), named.get("msg")
    assert named["versions"] == {"meshapp": "1.0.0"} and named["image"] == "meshapp:1.0.0"
    wait_until(lambda: ready_images(core) == {"meshapp:1.0.0": 3}, "only 1.0.0 pods after the named rollback")

    absent = run_module(rollback_module, dict(args, version="9.9.9"))
    assert absent.get("failed")
    assert "no revision carrying version 9.9.9" in absent["msg"]
    assert "2.0.0 (revision" in absent["msg"] and "3.0.0 (revision" in absent["msg"]

    status = run_module(rollback_module, dict(args, mode="status"))
    assert status["healthy"] is True, status["problems"]
    assert status["version"] == "1.0.0"
    assert sorted(r["version"] for r in status["revisions"]) == ["1.0.0", "2.0.0", "3.0.0"]
    assert status["last_operation"]["kind"] == "rollback"


def test_bad_canary_router_fails_before_any_change(cluster, args):
    apps = cluster[1]
    before = apps.read_namespaced_deployment("meshapp", NAMESPACE).metadata.generation
    out = run_module(rollout_strategy, dict(args, version="4.0.0", strategy="canary", canary_router="gateway"))
    assert out.get("failed") and "canary_router gateway needs canary_httproute" in out["msg"]
    assert apps.read_namespaced_deployment("meshapp", NAMESPACE).metadata.generation == before
    assert not apps.list_namespaced_deployment(NAMESPACE, field_selector="metadata.name=meshapp-canary").items


def test_unknown_deployment_is_one_line(cluster, args):
    out = run_module(rollout_strategy, dict(args, version="4.0.0", deployment="nope"))
    assert out.get("failed") and "\n" not in out["msg"]
    assert "deployment %s/nope" % NAMESPACE in out["msg"] and "404" in out["msg"]


def test_through_ansible_playbook(cluster, args, tmp_path):
    """The same module as a play runs it (AnsiballZ on the venv's Python): a rolling deploy of 4.0.0, then status."""
    core = cluster[0]
    playbook = tmp_path / "deploy.yml"
    playbook.write_text("""---
- name: Deploy on Kubernetes
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Rolling deploy of 4.0.0
      meshos.release.rollout_strategy:
        platform: kubernetes
        environment: {environment}
        state_dir: {state_dir}
        kubeconfig: {kubeconfig}
        namespace: {namespace}
        deployment: meshapp
        version: 4.0.0
        interval: 0.5
      register: deploy
    - name: Read the status
      meshos.release.rollback:
        platform: kubernetes
        mode: status
        environment: {environment}
        state_dir: {state_dir}
        kubeconfig: {kubeconfig}
        namespace: {namespace}
        deployment: meshapp
      register: status
    - name: Check what the controller reports
      ansible.builtin.assert:
        that:
          - deploy.changed
          - deploy.versions.meshapp == '4.0.0'
          - status.healthy
          - status.version == '4.0.0'
""".format(**args))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".build" / "collections"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    out = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], env=env, capture_output=True,
                         text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    wait_until(lambda: ready_images(core) == {"meshapp:4.0.0": 3}, "only 4.0.0 pods after the play")
