# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/deploy.yml on platform kubernetes, on the local control plane: the guarded path (lock, audit log,
approvals, release state) around the Deployment controller's rolling update.

The test builds its own inventory: the environment group ``k8sdeploy`` has one host carrying ``release_platform:
kubernetes`` and ``release_platform_options`` (kubeconfig, namespace, deployment), the play runs on ``lab_lb`` =
localhost. A rolling deploy of 2.0.0 (platform from the inventory) completes and is recorded with "not measured" and
the gates that do not apply; a faulty 3.0.0 (``-e platform=kubernetes -e platform_options='{...}'`` with the pod label
that the kwok stage pod-never-ready keeps unready) is reported STUCK, rolled back to 2.0.0 automatically, and the play
fails naming the cause; then playbooks/rollback.yml returns it to the named 1.0.0. Blue-green (``web-blue`` /
``web-green`` behind the Service ``web``): a deploy switches to green, a never-ready 3.0.0 is stopped before the
switch and rolled back (traffic stayed on green). Canary (``store`` and ``store-canary``, 25 -> 50 -> 100 by replica ratio): a deploy
promotes, a crash-looping 3.0.0 is aborted (all traffic back on the 4 stable replicas) and the play fails naming it.

Uses the plane that MESHOS_K8S_KUBECONFIG names (the k8s stage of scripts/test.sh), else starts one on base 27060
(ports 27061-27066). Skipped, with the reason, when the binaries are not built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from _plane import MISSING, MISSING_REASON, REPO_ROOT, SHARED, plane_kubeconfig, wait_until

PORT_BASE = 27060
NAMESPACE = "meshos-k8s-deploy"
ENV = "k8sdeploy"
WAIT = 90

kubernetes = pytest.importorskip("kubernetes", reason="the `kubernetes` Python client is not installed")

pytestmark = pytest.mark.skipif(bool(MISSING) and not SHARED, reason=MISSING_REASON)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    yield from plane_kubeconfig(tmp_path_factory, PORT_BASE, "k8s-deploy")


@pytest.fixture(scope="module")
def cluster(kubeconfig):
    """Namespace + a 3-replica Deployment of meshapp 1.0.0 (progressDeadlineSeconds 10, maxSurge 1, maxUnavailable 0)."""
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
    counts = {}
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=meshapp").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready and pod.metadata.deletion_timestamp is None:
            image = pod.spec.containers[0].image
            counts[image] = counts.get(image, 0) + 1
    return counts


@pytest.fixture(scope="module")
def work(kubeconfig, tmp_path_factory):
    """The inventory (environment k8sdeploy on platform kubernetes) and where the audit log and state go."""
    root = tmp_path_factory.mktemp("k8s-deploy-work")
    options = {"kubeconfig": kubeconfig, "namespace": NAMESPACE, "deployment": "meshapp", "interval": 0.5,
               "rollout_timeout": WAIT}
    inventory = {
        "all": {"children": {
            "lab_lb": {"hosts": {"localhost": {"ansible_connection": "local",
                                               "ansible_python_interpreter": sys.executable}}},
            ENV: {"hosts": {"k8s-meshapp": {"release_platform": "kubernetes",
                                            "release_platform_options": options}}},
        }}}
    (root / "inventory.json").write_text(json.dumps(inventory))
    return {"root": root, "inventory": root / "inventory.json", "options": options,
            "audit": root / "release" / "audit.jsonl", "state_root": root / "release" / "state"}


def deploy(work, version, *extra):
    return playbook(work, "deploy.yml", "-e", "version=%s" % version, *extra)


def playbook(work, name, *extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".build" / "collections"),
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    cmd = ["ansible-playbook", "-i", str(work["inventory"]), str(REPO_ROOT / "playbooks" / name),
           "-e", "env=%s" % ENV, "-e", "audit_log=%s" % work["audit"],
           "-e", "release_state_root=%s" % work["state_root"], "-e", "state_dir=%s" % (work["root"] / "state"),
           *extra]
    started = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    return out, time.monotonic() - started


def audit(work):
    return [json.loads(line) for line in work["audit"].read_text().splitlines() if line.strip()]


def state(work):
    return json.loads((work["state_root"] / ("%s.json" % ENV)).read_text())


def test_rolling_then_faulty_template_rolled_back(cluster, work):
    core, apps = cluster
    # platform and options from the environment's inventory host
    ok, took = deploy(work, "2.0.0")
    assert ok.returncode == 0, ok.stdout[-4000:] + ok.stderr[-2000:]
    print("deploy.yml rolling 1.0.0 -> 2.0.0 on kubernetes: %.1fs" % took)
    wait_until(lambda: ready_images(core) == {"meshapp:2.0.0": 3}, "3 Ready pods of 2.0.0 and nothing else")
    done = [e for e in audit(work) if e.get("action") == "deploy" and e.get("result") == "success"]
    assert len(done) == 1, audit(work)
    details = done[0]["details"]
    assert details["platform"] == "kubernetes" and details["versions"] == {"meshapp": "2.0.0"}
    assert details["from_version"] == "1.0.0"
    # nothing measured, and said so: no made-up numbers
    assert details["measured"]["source"] is None and "not measured" in details["measured"]["reason"]
    assert "requests" not in details["measured"] and "downtime_seconds" not in details["measured"]
    assert set(details["not_applicable"]) == {"batch_gate", "watch", "measure"}
    current = state(work)
    assert current["current_version"] == "2.0.0" and current["in_progress"] is None

    # a faulty pod template, platform and options on the command line: STUCK, rolled back, the play fails naming it
    faulty = dict(work["options"], pod_labels={"meshos.test/fault": "never-ready"})
    bad, took = deploy(work, "3.0.0", "-e", "platform=kubernetes", "-e", "platform_options=%s" % json.dumps(faulty, separators=(",", ":")))
    print("deploy.yml faulty 3.0.0 on kubernetes, failed and rolled back: %.1fs" % took)
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0, text[-4000:]
    failure_line = [line for line in text.splitlines() if "failed: " in line and "rolled back to" in line]
    assert failure_line, text[-4000:]
    print(failure_line[0].strip())
    assert "STUCK" in failure_line[0] and "ProgressDeadlineExceeded" in failure_line[0]
    assert "rolled back to 2.0.0" in failure_line[0]
    template = apps.read_namespaced_deployment("meshapp", NAMESPACE).spec.template
    assert template.spec.containers[0].image == "meshapp:2.0.0"
    assert "meshos.test/fault" not in (template.metadata.labels or {})
    wait_until(lambda: ready_images(core) == {"meshapp:2.0.0": 3}, "only 2.0.0 pods after the automatic rollback")

    entries = audit(work)
    failed = [e for e in entries if e.get("action") == "deploy" and e.get("result") == "failure"]
    assert len(failed) == 1 and "STUCK" in failed[0]["details"]["reason"]
    assert failed[0]["details"]["measured"]["source"] is None
    back = [e for e in entries if e.get("action") == "rollback" and e["details"].get("automatic")]
    assert len(back) == 1 and back[0]["result"] == "success" and back[0]["details"]["to_version"] == "2.0.0"
    after = state(work)
    assert after["last_result"] == "rolled_back" and after["current_version"] == "2.0.0"
    assert after["rolled_back_version"] == "3.0.0" and after["in_progress"] is None
    assert not after.get("lock"), after

    # an operator's rollback through playbooks/rollback.yml, to the named 1.0.0 (verify_backup first)
    back_out, took = playbook(work, "rollback.yml", "-e", "version=1.0.0")
    assert back_out.returncode == 0, back_out.stdout[-4000:] + back_out.stderr[-2000:]
    print("rollback.yml to 1.0.0 on kubernetes: %.1fs" % took)
    wait_until(lambda: ready_images(core) == {"meshapp:1.0.0": 3}, "only 1.0.0 pods after rollback.yml")
    manual = [e for e in audit(work) if e.get("action") == "rollback" and e.get("result") == "success"
              and not e["details"].get("automatic")]
    assert len(manual) == 1 and manual[0]["details"]["versions"] == {"meshapp": "1.0.0"}
    assert state(work)["current_version"] == "1.0.0"


def test_unknown_strategy_and_bad_options_refused(cluster, work):
    apps = cluster[1]
    before = apps.read_namespaced_deployment("meshapp", NAMESPACE).metadata.generation
    out = deploy(work, "4.0.0", "-e", "strategy=recreate")[0]
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "deploy_strategy in rolling/blue-green/canary (got recreate)" in text, text[-3000:]
    assert apps.read_namespaced_deployment("meshapp", NAMESPACE).metadata.generation == before
    # key=value JSON with spaces is cut at the first space by Ansible: refused with how to write it, nothing run
    out = deploy(work, "4.0.0", "-e", 'platform_options={"namespace": "%s"}' % NAMESPACE)[0]
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "invalid platform_options" in text and "without spaces" in text, text[-3000:]
    assert apps.read_namespaced_deployment("meshapp", NAMESPACE).metadata.generation == before


def make_app(apps, core, name, app, replicas, color=None):
    """Deployment NAME (pods app=APP [+ color], meshapp 1.0.0, progressDeadlineSeconds 10) and the Service APP."""
    k = kubernetes.client
    labels = {"app": app}
    if color:
        labels["meshos.release/color"] = color
    version = {"meshos.release/version": "1.0.0"}
    apps.create_namespaced_deployment(NAMESPACE, k.V1Deployment(
        metadata=k.V1ObjectMeta(name=name, labels=labels),
        spec=k.V1DeploymentSpec(
            replicas=replicas, progress_deadline_seconds=10, selector=k.V1LabelSelector(match_labels=labels),
            strategy=k.V1DeploymentStrategy(type="RollingUpdate", rolling_update=k.V1RollingUpdateDeployment(
                max_surge=1, max_unavailable=0)),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=dict(labels, **version), annotations=version),
                spec=k.V1PodSpec(containers=[k.V1Container(name="app", image="meshapp:1.0.0")])))))
    core.create_namespaced_service(NAMESPACE, k.V1Service(
        metadata=k.V1ObjectMeta(name=app),
        spec=k.V1ServiceSpec(selector=labels, ports=[k.V1ServicePort(port=80, target_port=8080)])))


def app_images(core, app):
    counts = {}
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="app=%s" % app).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if ready and pod.metadata.deletion_timestamp is None:
            key = "%s %s" % ((pod.metadata.labels or {}).get("meshos.release/color") or "-", pod.spec.containers[0].image)
            counts[key] = counts.get(key, 0) + 1
    return counts


def options_for(work, deployment, **extra):
    return "platform_options=%s" % json.dumps(dict(work["options"], deployment=deployment, **extra),
                                              separators=(",", ":"))


def failure_of(out):
    text = out.stdout + out.stderr
    lines = [line for line in text.splitlines() if "failed: " in line and "rolled back to" in line]
    assert out.returncode != 0 and lines, text[-4000:]
    return lines[0].strip()


def test_blue_green_playbook_switch_back_and_faulty_color(cluster, work):
    core, apps = cluster
    make_app(apps, core, "web-blue", "web", 2, color="blue")
    wait_until(lambda: app_images(core, "web") == {"blue meshapp:1.0.0": 2}, "2 ready blue web pods")
    common = ("-e", "platform=kubernetes", "-e", "strategy=blue-green")

    ok, took = deploy(work, "2.0.0", *common, "-e", options_for(work, "web"))
    assert ok.returncode == 0, ok.stdout[-4000:] + ok.stderr[-2000:]
    print("deploy.yml blue-green 1.0.0 -> 2.0.0 on kubernetes: %.1fs" % took)
    assert core.read_namespaced_service("web", NAMESPACE).spec.selector["meshos.release/color"] == "green"
    done = [e for e in audit(work) if e.get("action") == "deploy" and e.get("result") == "success"
            and e.get("strategy") == "blue-green"]
    assert len(done) == 1 and done[0]["details"]["versions"] == {"web": "2.0.0"}

    # a faulty 3.0.0 into the idle blue: STUCK before the switch, rolled back (traffic never left green); the
    # switch back itself is tested through the modules (test_k8s_strategies.py), one playbook run less here
    bad, took = deploy(work, "3.0.0", *common, "-e", options_for(
        work, "web", pod_labels={"meshos.test/fault": "never-ready"}))
    line = failure_of(bad)
    print("deploy.yml faulty blue-green 3.0.0, failed and rolled back: %.1fs: %s" % (took, line))
    assert "STUCK" in line and "traffic stayed on green" in line and "rolled back to 2.0.0" in line
    assert core.read_namespaced_service("web", NAMESPACE).spec.selector["meshos.release/color"] == "green"
    assert apps.read_namespaced_deployment("web-blue", NAMESPACE).spec.replicas == 0
    wait_until(lambda: app_images(core, "web") == {"green meshapp:2.0.0": 2}, "only the green pods")


def test_canary_playbook_promotes_then_aborts_faulty_canary(cluster, work):
    core, apps = cluster
    make_app(apps, core, "store", "store", 4)
    wait_until(lambda: app_images(core, "store") == {"- meshapp:1.0.0": 4}, "4 ready store pods")
    common = ("-e", "platform=kubernetes", "-e", "strategy=canary", "-e", "initial_traffic=25",
              "-e", '{"steps": [50, 100]}')

    ok, took = deploy(work, "2.0.0", *common, "-e", options_for(work, "store"))
    assert ok.returncode == 0, ok.stdout[-4000:] + ok.stderr[-2000:]
    print("deploy.yml canary 25 -> 50 -> 100 of 2.0.0 on kubernetes: %.1fs" % took)
    wait_until(lambda: app_images(core, "store") == {"- meshapp:2.0.0": 4}, "4 ready store pods of 2.0.0")
    done = [e for e in audit(work) if e.get("action") == "deploy" and e.get("result") == "success"
            and e.get("strategy") == "canary"]
    assert len(done) == 1 and done[0]["details"]["versions"] == {"store": "2.0.0"}

    bad, took = deploy(work, "3.0.0", *common, "-e", options_for(
        work, "store", pod_labels={"meshos.test/fault": "crash-loop"}))
    line = failure_of(bad)
    print("deploy.yml faulty canary 3.0.0, aborted and rolled back: %.1fs: %s" % (took, line))
    assert "canary of 3.0.0 stopped" in line and "CrashLoopBackOff" in line and "rolled back to 2.0.0" in line
    assert not apps.list_namespaced_deployment(NAMESPACE, field_selector="metadata.name=store-canary").items
    assert apps.read_namespaced_deployment("store", NAMESPACE).spec.replicas == 4
    wait_until(lambda: app_images(core, "store") == {"- meshapp:2.0.0": 4}, "only the 4 stable pods")
