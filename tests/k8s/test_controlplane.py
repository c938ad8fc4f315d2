# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local Kubernetes control plane (scripts/k8s_controlplane.sh) runs the real Deployment controller.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok built from their Go modules run on 127.0.0.1
(ports MESHOS_K8S_PORT_BASE+1..+6; this test uses base 27020, inside the 27000-27099 range of docs/design.md, so a
developer's plane on the default 27000 does not collide). A 3-replica Deployment made with the official `kubernetes`
client becomes Ready on kwok's fake nodes, an image change rolls out to completion as the controller reports it, and
`down` stops every process `up` started.

The tests that need the plane are skipped, with the reason, when the binaries are not built (`scripts/k8s_controlplane.sh build`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _plane import COMPONENTS, MISSING, MISSING_REASON, port_busy, run_script, wait_until

PORT_BASE = 27020
NAMESPACE = "meshos-k8s-test"

kubernetes = pytest.importorskip("kubernetes", reason="the `kubernetes` Python client is not installed")

needs_binaries = pytest.mark.skipif(bool(MISSING), reason=MISSING_REASON)


def _script(*args: str, timeout: float = 200):
    return run_script(PORT_BASE, *args, timeout=timeout)


def _pid_alive(pid: int) -> bool:
    """Running, not a zombie: an exited orphan may wait a while for its reaper."""
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """An up control plane in a tmp dir: (dir, pids by component); always brought down at the end."""
    busy = [p for p in range(PORT_BASE + 1, PORT_BASE + 7) if port_busy(p)]
    if busy:
        pytest.fail("ports %s on 127.0.0.1 are in use (this test's slice of 27000-27099)" % busy)
    run_dir = tmp_path_factory.mktemp("k8s-plane")
    up = _script("up", str(run_dir))
    try:
        assert up.returncode == 0, "up failed:\n%s\n%s" % (up.stdout, up.stderr)
        assert up.stdout.strip().endswith("export KUBECONFIG=%s/kubeconfig" % run_dir)
        pids = {c: int((run_dir / "pids" / ("%s.pid" % c)).read_text()) for c in COMPONENTS}
        yield run_dir, pids
    finally:
        down = _script("down", str(run_dir), timeout=60)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def api(plane):
    run_dir = plane[0]
    client = kubernetes.config.new_client_from_config(config_file=str(run_dir / "kubeconfig"))
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE)))
    # The namespace's default ServiceAccount comes from the controller-manager; pods are refused until it exists.
    wait_until(lambda: core.list_namespaced_service_account(NAMESPACE).items, "default ServiceAccount in the namespace")
    yield core, kubernetes.client.AppsV1Api(client)
    client.close()


def deployment(image: str):
    k = kubernetes.client
    labels = {"app": "meshapp"}
    return k.V1Deployment(
        metadata=k.V1ObjectMeta(name="meshapp", labels=labels),
        spec=k.V1DeploymentSpec(
            replicas=3,
            selector=k.V1LabelSelector(match_labels=labels),
            strategy=k.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=labels),
                spec=k.V1PodSpec(containers=[k.V1Container(name="app", image=image)]),
            ),
        ),
    )


def ready_pods(core, image: str) -> list[str]:
    """Names of the meshapp pods running `image` whose Ready condition is True (and not being deleted)."""
    names = []
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=meshapp").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready and pod.metadata.deletion_timestamp is None and pod.spec.containers[0].image == image:
            names.append(pod.metadata.name)
    return names


def rollout_complete(apps, image: str):
    """The Deployment controller's own verdict: observed the latest generation, all replicas updated and available."""
    dep = apps.read_namespaced_deployment("meshapp", NAMESPACE)
    st = dep.status
    done = (
        (st.observed_generation or 0) >= dep.metadata.generation
        and dep.spec.template.spec.containers[0].image == image
        and st.updated_replicas == 3
        and st.replicas == 3
        and st.available_replicas == 3
        and not st.unavailable_replicas
    )
    return dep if done else None


def test_env_prints_kubeconfig_export(tmp_path):
    out = _script("env", str(tmp_path))
    assert out.returncode == 0
    assert out.stdout.strip() == "export KUBECONFIG=%s/kubeconfig" % tmp_path


def test_bad_subcommand_fails_closed():
    out = _script("upp")
    assert out.returncode != 0
    assert "unknown subcommand 'upp'" in out.stderr


@needs_binaries
def test_nodes_are_kwok_and_ready(api):
    core = api[0]
    nodes = core.list_node().items
    assert len(nodes) == 3
    for node in nodes:
        assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
        assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]


@needs_binaries
def test_deployment_ready_then_image_rollout(api):
    core, apps = api
    apps.create_namespaced_deployment(NAMESPACE, deployment("meshapp:1.0.0"))

    pods = wait_until(lambda: len(ready_pods(core, "meshapp:1.0.0")) == 3 and ready_pods(core, "meshapp:1.0.0"),
                      "3 Ready pods of meshapp:1.0.0")
    assert len(pods) == 3
    dep = wait_until(lambda: rollout_complete(apps, "meshapp:1.0.0"), "the first rollout to complete")
    assert dep.status.ready_replicas == 3
    first_generation = dep.metadata.generation

    apps.patch_namespaced_deployment(
        "meshapp", NAMESPACE,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "meshapp:1.1.0"}]}}}},
    )
    dep = wait_until(lambda: rollout_complete(apps, "meshapp:1.1.0"), "the image rollout to complete")
    assert dep.metadata.generation > first_generation
    assert dep.status.observed_generation == dep.metadata.generation
    progressing = [c for c in dep.status.conditions if c.type == "Progressing"]
    assert progressing and progressing[0].reason == "NewReplicaSetAvailable"

    # The old pods are gone (kwok finishes their deletion) and the new ones are Ready on the fake nodes.
    def only_new_pods_ready():
        if len(core.list_namespaced_pod(NAMESPACE, label_selector="app=meshapp").items) != 3:
            return None
        names = ready_pods(core, "meshapp:1.1.0")
        return sorted(names) if len(names) == 3 else None

    new_pods = wait_until(only_new_pods_ready, "exactly 3 pods, all meshapp:1.1.0 and Ready")
    assert len(new_pods) == 3 and not set(new_pods) & set(pods)
    # Two ReplicaSets: the new one holds all replicas, the old one is scaled to 0 (kept for rollback).
    sets = apps.list_namespaced_replica_set(NAMESPACE, label_selector="app=meshapp").items
    by_image = {rs.spec.template.spec.containers[0].image: rs for rs in sets}
    assert set(by_image) == {"meshapp:1.0.0", "meshapp:1.1.0"}
    assert by_image["meshapp:1.1.0"].status.ready_replicas == 3
    assert by_image["meshapp:1.0.0"].spec.replicas == 0


@needs_binaries
def test_down_stops_exactly_what_up_started(plane, api):
    run_dir, pids = plane
    assert all(_pid_alive(pid) for pid in pids.values()), pids
    down = _script("down", str(run_dir), timeout=60)
    assert down.returncode == 0, down.stderr
    assert "stopped %d process(es)" % len(COMPONENTS) in down.stderr
    assert not [c for c, pid in pids.items() if _pid_alive(pid)]
    assert not list((run_dir / "pids").glob("*.pid"))
    assert not [p for p in range(PORT_BASE + 1, PORT_BASE + 7) if port_busy(p)]
