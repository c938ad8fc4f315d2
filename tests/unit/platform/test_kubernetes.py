# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kubernetes backend over a fake API object (plain API dicts, as KubeClient returns them).

The fake keeps one Deployment and its ReplicaSets; ``controller`` is what the test lets the Deployment controller do
on each wait round (the wait's sleep drives it, the clock is fake). The real controller is exercised in
tests/k8s/test_kubernetes_backend.py.
"""

from __future__ import annotations

import copy

import pytest

from ansible_collections.meshos.release.plugins.module_utils.platform import factory
from ansible_collections.meshos.release.plugins.module_utils.platform import kube_api
from ansible_collections.meshos.release.plugins.module_utils.platform import kubernetes as kube
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    NotFoundError,
    NotSupported,
    PlatformError,
    StuckError,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.rollout import runner as runner_mod
from ansible_collections.meshos.release.plugins.module_utils.rollout.common import RolloutFailed


def template(version, image=None, extra_labels=None):
    labels = {"app": "meshapp", kube.VERSION_KEY: version}
    labels.update(extra_labels or {})
    return {"metadata": {"labels": labels, "annotations": {kube.VERSION_KEY: version}},
            "spec": {"containers": [{"name": "app", "image": image or "registry:5000/meshapp:%s" % version}]}}


class FakeApi:
    """One Deployment ``meshapp`` (uid d1) with ReplicaSets per revision; records patches."""

    def __init__(self, versions=("1.0.0", "2.0.0")):
        self.patches = []
        self.sets = []
        self.pods = {}
        for rev, version in enumerate(versions, 1):
            self._add_set(rev, template(version), 3 if rev == len(versions) else 0)
        self.dep = {"metadata": {"name": "meshapp", "uid": "d1", "generation": 1,
                                 "annotations": {kube.REVISION_KEY: str(len(versions))}},
                    "spec": {"replicas": 3, "progressDeadlineSeconds": 10,
                             "selector": {"matchLabels": {"app": "meshapp"}},
                             "template": copy.deepcopy(template(versions[-1]))},
                    "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                               "availableReplicas": 3,
                               "conditions": [{"type": "Available", "status": "True",
                                               "reason": "MinimumReplicasAvailable"},
                                              {"type": "Progressing", "status": "True",
                                               "reason": "NewReplicaSetAvailable"}]}}
        self.controller = self.complete  # what happens on each wait round

    def _add_set(self, rev, tpl, replicas):
        tpl = copy.deepcopy(tpl)
        tpl["metadata"]["labels"][kube.HASH_LABEL] = "h%d" % rev
        self.sets.append({"metadata": {"name": "meshapp-h%d" % rev, "labels": dict(tpl["metadata"]["labels"]),
                                       "annotations": {kube.REVISION_KEY: str(rev)},
                                       "ownerReferences": [{"uid": "d1"}]},
                          "spec": {"replicas": replicas, "template": tpl}, "status": {"readyReplicas": replicas}})

    # -- the KubeClient interface
    def read_service(self, namespace, name):
        # no Service: the app runs neither blue-green nor a canary (k8s_native.KubernetesNative.mode)
        raise NotFoundError("Kubernetes API error on read service %s/%s: 404 Not Found" % (namespace, name))

    def read_deployment(self, namespace, name):
        if name != "meshapp":
            raise NotFoundError("Kubernetes API error on read deployment %s/%s: 404 Not Found" % (namespace, name))
        return copy.deepcopy(self.dep)

    def patch_deployment(self, namespace, name, body, json_patch=False):
        self.patches.append((body, json_patch))
        if json_patch:
            self.dep["spec"]["template"] = copy.deepcopy(body[0]["value"])
        else:
            tpl = self.dep["spec"]["template"]
            tpl["metadata"]["labels"].update(body["spec"]["template"]["metadata"]["labels"])
            tpl["metadata"]["annotations"].update(body["spec"]["template"]["metadata"]["annotations"])
            tpl["spec"]["containers"][0]["image"] = body["spec"]["template"]["spec"]["containers"][0]["image"]
        self.dep["metadata"]["generation"] += 1
        rev = max(int(s["metadata"]["annotations"][kube.REVISION_KEY]) for s in self.sets) + 1
        self._add_set(rev, self.dep["spec"]["template"], 0)
        self.dep["metadata"]["annotations"][kube.REVISION_KEY] = str(rev)
        self.dep["status"]["updatedReplicas"] = 0
        return copy.deepcopy(self.dep)

    def list_replica_sets(self, namespace, selector):
        assert selector == "app=meshapp"
        return copy.deepcopy(self.sets)

    def list_pods(self, namespace, selector):
        if selector == "app=meshapp" and selector not in self.pods:
            # the app's pods (kube_api.pod_readiness): the ready replicas of the current revision's ReplicaSet
            rev = self.dep["metadata"]["annotations"][kube.REVISION_KEY]
            return [{"metadata": {"name": "meshapp-h%s-%d" % (rev, i), "labels": {kube.HASH_LABEL: "h%s" % rev}},
                     "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
                    for i in range(int(self.dep["status"].get("readyReplicas") or 0))]
        return copy.deepcopy(self.pods.get(selector, []))

    # -- controller behaviours
    def complete(self):
        st = self.dep["status"]
        st.update(observedGeneration=self.dep["metadata"]["generation"], updatedReplicas=3, readyReplicas=3,
                  availableReplicas=3, replicas=3)
        st["conditions"][1].update(status="True", reason="NewReplicaSetAvailable")

    def deadline_exceeded(self):
        st = self.dep["status"]
        st.update(observedGeneration=self.dep["metadata"]["generation"], updatedReplicas=1, readyReplicas=3,
                  availableReplicas=3, replicas=4)
        st["conditions"][1].update(status="False", reason="ProgressDeadlineExceeded",
                                   message='ReplicaSet "meshapp-h3" has timed out progressing.')
        self.pods["pod-template-hash=h3"] = [{
            "metadata": {"name": "meshapp-h3-x1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]

    def never(self):
        self.dep["status"]["observedGeneration"] = self.dep["metadata"]["generation"]


class Clock:
    def __init__(self, api):
        self.now = 0.0
        self.api = api
        self.sleeps = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        self.api.controller()


def rollout(api, **kw):
    clock = Clock(api)
    kw.setdefault("timeout", 60.0)
    ro = kube.DeploymentRollout(api, "prod", "meshapp", sleep=clock.sleep, clock=clock, interval=1.0, **kw)
    ro.fake_clock = clock
    return ro


def test_rolling_patches_image_version_label_and_annotation_then_waits_for_the_controller():
    api = FakeApi()
    ro = rollout(api)
    result = ro.rolling("3.0.0")
    body, json_patch = api.patches[0]
    assert not json_patch
    tpl = body["spec"]["template"]
    assert tpl["spec"]["containers"] == [{"name": "app", "image": "registry:5000/meshapp:3.0.0"}]
    assert tpl["metadata"]["labels"] == {kube.VERSION_KEY: "3.0.0"}
    assert tpl["metadata"]["annotations"] == {kube.VERSION_KEY: "3.0.0"}
    assert result["changed"] is True and result["status"] == "complete"
    assert result["versions"] == {"meshapp": "3.0.0"} and result["from_version"] == "2.0.0"
    assert result["revision"] == 3 and result["replicas"]["available"] == 3
    assert ro.fake_clock.sleeps == 1  # the first read saw generation 2 not yet observed


def test_rolling_again_changes_nothing():
    api = FakeApi()
    ro = rollout(api)
    result = ro.rolling("2.0.0")
    assert result["changed"] is False and api.patches == []


def test_check_mode_plans_without_patching():
    api = FakeApi()
    ro = rollout(api)
    result = ro.rolling("3.0.0", check_mode=True)
    assert result["changed"] is True and api.patches == []
    assert result["plan"][0]["action"] == "patch_template"
    assert result["diff"]["before"]["version"] == "2.0.0" and result["diff"]["after"]["image"].endswith(":3.0.0")


def test_progress_deadline_exceeded_is_stuck_with_conditions_and_pod_states():
    api = FakeApi()
    api.controller = api.deadline_exceeded
    ro = rollout(api)
    with pytest.raises(StuckError) as err:
        ro.rolling("3.0.0")
    msg = str(err.value)
    assert "\n" not in msg
    assert "deployment prod/meshapp rollout to 3.0.0 is STUCK: ProgressDeadlineExceeded" in msg
    assert "Progressing=False ProgressDeadlineExceeded" in msg
    assert "new ReplicaSet meshapp-h3 pods: meshapp-h3-x1 Running not ready CrashLoopBackOff 4 restarts" in msg
    assert err.value.details["pods"][0]["waiting"] == ["CrashLoopBackOff"]


def test_the_wait_timeout_is_stuck_too():
    api = FakeApi()
    api.controller = api.never
    ro = rollout(api, timeout=5.0)
    with pytest.raises(StuckError, match="not complete within rollout_timeout 5.0s"):
        ro.rolling("3.0.0")
    assert ro.fake_clock.now == 5.0


def test_rollback_restores_the_previous_revision_template():
    api = FakeApi(("1.0.0", "2.0.0", "3.0.0"))
    ro = rollout(api)
    result = ro.rollback(None)
    patch, json_patch = api.patches[0]
    assert json_patch and patch[0]["op"] == "replace" and patch[0]["path"] == "/spec/template"
    assert patch[0]["value"]["spec"]["containers"][0]["image"] == "registry:5000/meshapp:2.0.0"
    assert kube.HASH_LABEL not in patch[0]["value"]["metadata"]["labels"]
    assert result["versions"] == {"meshapp": "2.0.0"} and result["to_revision"] == 2 and result["changed"]


def test_rollback_to_a_named_version_and_to_an_absent_one():
    api = FakeApi(("1.0.0", "2.0.0", "3.0.0"))
    ro = rollout(api)
    with pytest.raises(VersionNotInstalledError) as err:
        ro.rollback("9.9.9")
    assert str(err.value) == ("deployment prod/meshapp has no revision carrying version 9.9.9 (available: "
                              "3.0.0 (revision 3), 2.0.0 (revision 2), 1.0.0 (revision 1))")
    assert api.patches == []
    result = ro.rollback("1.0.0")
    assert result["versions"] == {"meshapp": "1.0.0"} and result["to_revision"] == 1


def test_rollback_without_an_older_revision_fails_closed():
    api = FakeApi(("1.0.0",))
    ro = rollout(api)
    with pytest.raises(VersionNotInstalledError, match=r"no revision before revision 1 \(1.0.0\)"):
        ro.rollback(None)


def test_status_and_verify_backup():
    api = FakeApi(("1.0.0", "2.0.0"))
    ro = rollout(api)
    status = ro.status()
    assert status["healthy"] and status["version"] == "2.0.0"
    assert [(r["revision"], r["version"]) for r in status["revisions"]] == [(1, "1.0.0"), (2, "2.0.0")]
    backup = ro.verify_backup(None)
    assert backup["ok"] and backup["targets"]["meshapp"]["revision"] == 1


@pytest.mark.parametrize("kw, message", [
    (dict(image="registry/meshapp:latest"), "invalid image 'registry/meshapp:latest': expected a reference with a "
                                            "{version} placeholder"),
    (dict(pod_labels={"a": "not ok!"}), "invalid pod_labels entry 'a'='not ok!'"),
    (dict(timeout=0), "invalid rollout_timeout 0"),
])
def test_bad_options_fail_before_any_call(kw, message):
    with pytest.raises(ConfigError) as err:
        rollout(None, **kw)
    assert str(err.value).startswith(message)


def test_image_template_and_container_choice():
    api = FakeApi()
    api.dep["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    ro = rollout(api)
    with pytest.raises(ConfigError, match=r"has 2 containers \(app, sidecar\): set container"):
        ro.rolling("3.0.0")
    ro = rollout(api, container="web")
    with pytest.raises(NotFoundError, match=r"has no container 'web' \(containers: app, sidecar\)"):
        ro.rolling("3.0.0")
    ro = rollout(api, container="app", image="ghcr.io/meshos/meshapp:v{version}")
    ro.rolling("3.0.0")
    assert api.patches[0][0]["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/meshos/meshapp:v3.0.0"


def test_api_exceptions_become_one_line_errors():
    exc = kube_api.ApiException(status=403, reason="Forbidden")
    exc.body = '{"kind":"Status","message":"deployments.apps \\"x\\" is forbidden: User \\"dev\\" cannot patch"}'
    err = kube_api._api_error("patch deployment prod/x", exc)
    assert isinstance(err, kube_api.ApiError) and not isinstance(err, NotFoundError)
    assert str(err) == ('Kubernetes API error on patch deployment prod/x: 403 Forbidden: deployments.apps "x" is '
                        'forbidden: User "dev" cannot patch')
    assert isinstance(kube_api._api_error("read", kube_api.ApiException(status=404, reason="Not Found")), NotFoundError)


def test_router_declares_no_capability_and_refuses_traffic_calls():
    api = FakeApi()
    ro = rollout(api)
    router = kube.KubernetesRouter(ro)
    fleet = kube.KubernetesFleet(ro)
    assert router.capabilities == frozenset() and ro.strategies == frozenset(["rolling"])
    target = fleet.instances()[0]
    router.refresh([target])
    assert (target.state, target.weight) == ("ready", 3)
    assert fleet.current_version(target) == "2.0.0" and fleet.installed_versions(target) == ["1.0.0", "2.0.0"]
    for call in (lambda: router.drain(target, 1), lambda: router.enable(target), lambda: router.set_weight(target, 1),
                 lambda: router.switch_traffic("blue"), lambda: fleet.install(target, "3.0.0")):
        with pytest.raises(NotSupported):
            call()


# ---------------------------------------------------------------------------- factory and runner

def params(tmp_path, **kw):
    base = dict(platform="kubernetes", environment="prod", state_dir=str(tmp_path), drain_timeout=30.0,
                ready_timeout=30.0, interval=0.2, batch_size="1", default_weight=100, measure_interval=0.25,
                kubeconfig=None, context=None, in_cluster=False, namespace="prod", deployment="meshapp",
                container=None, image=None, pod_labels=None, rollout_timeout=60.0, version=None, strategy="rolling")
    base.update(kw)
    return base


@pytest.fixture()
def fake_cluster(monkeypatch):
    api = FakeApi(("1.0.0", "2.0.0"))
    clock = Clock(api)
    built = []

    def client(**kw):
        built.append(kw)
        return api

    monkeypatch.setattr(kube_api, "KubeClient", client)
    # the factory passes timeout and interval; the sleep and clock defaults become the fake ones
    monkeypatch.setattr(kube.DeploymentRollout.__init__, "__defaults__",
                        (None, None, None, 600.0, 1.0, clock.sleep, clock))
    return api, built


def test_factory_builds_one_client_per_run(tmp_path, fake_cluster):
    api, built = fake_cluster
    platform = factory.build_platform(params(tmp_path, kubeconfig="/k/config", context="lab"))
    assert built == [{"kubeconfig": "/k/config", "context": "lab", "in_cluster": False}]
    assert platform.native.api is api
    assert platform.fleet.rollout is platform.native.rolling_rollout is platform.router.rollout


@pytest.mark.parametrize("kw, need_color, message", [
    (dict(deployment=None), False, "platform kubernetes needs deployment"),
    (dict(canary_router="gateway"), False, "canary_router gateway needs canary_httproute"),
    (dict(platform="nomad"), False, "invalid platform 'nomad': expected one of hosts, kubernetes"),
])
def test_factory_refuses(tmp_path, fake_cluster, kw, need_color, message):
    with pytest.raises(ConfigError) as err:
        factory.build_platform(params(tmp_path, **kw), need_color=need_color)
    assert str(err.value).startswith(message)


def test_missing_library_is_reported_with_missing_required_lib(tmp_path, monkeypatch):
    monkeypatch.setattr(kube_api, "HAS_KUBERNETES", False)
    with pytest.raises(ConfigError, match="Failed to import the required Python library \\(kubernetes\\)"):
        factory.build_platform(params(tmp_path))


def test_runner_records_the_operation_and_refuses_an_artifact(tmp_path, fake_cluster):
    api = fake_cluster[0]
    runner = runner_mod.build_runner(params(tmp_path, version="3.0.0"), False)
    with pytest.raises(ConfigError, match="artifact /a.tgz is for platform hosts"):
        runner.rolling("3.0.0", "/a.tgz")
    assert api.patches == []
    result = runner.rolling("3.0.0", None, None, "1", 0, 5)
    assert result["versions"] == {"meshapp": "3.0.0"} and result["strategy"] == "rolling"
    assert runner.store.data["deployed_version"] == "3.0.0" and runner.store.data["previous_version"] == "2.0.0"

    api.controller = api.deadline_exceeded
    runner = runner_mod.build_runner(params(tmp_path, version="4.0.0"), False)
    with pytest.raises(RolloutFailed) as err:
        runner.rolling("4.0.0", None, None, "1", 0, 5)
    assert "STUCK" in str(err.value) and err.value.result["stuck"]["cause"].startswith("ProgressDeadlineExceeded")
    assert runner.store.data["last_operation"]["status"] == "failed"

    api.controller = api.complete
    runner = runner_mod.build_runner(params(tmp_path, strategy=None), False)
    back = runner.rollback(None, None)
    assert back["versions"] == {"meshapp": "3.0.0"} and "rollback_seconds" in back
    status = runner_mod.status(runner.p, runner.store)
    assert status["healthy"] and status["last_operation"]["kind"] == "rollback"


def test_a_refused_rollback_records_nothing(tmp_path, fake_cluster):
    runner = runner_mod.build_runner(params(tmp_path, strategy=None), False)
    with pytest.raises(PlatformError, match="no revision carrying version 7.0.0"):
        runner.rollback(None, "7.0.0")
    assert fake_cluster[0].patches == []
    assert "operation" not in runner.store.data


def _pod(name, hash_, ready=True, restarts=0, waiting=None, terminating=False):
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
              "containerStatuses": [{"restartCount": restarts,
                                     "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}]}
    meta = {"name": name, "labels": {kube.HASH_LABEL: hash_}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": status}


def test_pod_readiness_counts_restarts_crash_loops_and_missing_pods_as_unhealthy():
    from ansible_collections.meshos.release.plugins.module_utils.gate import sources

    api = FakeApi()
    api.pods["app=meshapp"] = [
        _pod("ok", "h2"), _pod("restarted", "h2", restarts=2),
        _pod("crashing", "h2", ready=False, restarts=5, waiting="CrashLoopBackOff"),
        _pod("gone", "h2", terminating=True),
        _pod("canary", "other-owner"),  # a pod of a Deployment beside it (same labels, ReplicaSet not owned)
    ]
    agents = sources.kubernetes_agents(api, "mesh", "Deployment", "meshapp")
    assert (agents["desired"], agents["pods"], agents["ready"]) == (3, 3, 2)
    assert agents["unhealthy"] == 2 and agents["unhealthy_ratio"] == round(2 / 3.0, 4)
    assert [p.split()[0] for p in agents["unhealthy_pods"]] == ["restarted", "crashing"]
    assert "CrashLoopBackOff" in agents["unhealthy_pods"][1]
    assert sources.kubernetes_agents(api, "mesh", "Deployment", "meshapp", max_restarts=2)["unhealthy"] == 1
    api.pods["app=meshapp"] = [_pod("ok", "h2")]
    assert sources.kubernetes_agents(api, "mesh", "Deployment", "meshapp")["unhealthy"] == 2  # two missing
    with pytest.raises(sources.SourceError, match="kubernetes Deployment mesh/absent unreadable: .*404"):
        sources.kubernetes_agents(api, "mesh", "Deployment", "absent")
    with pytest.raises(sources.SourceError, match="invalid kind 'StatefulSet': expected Deployment or DaemonSet"):
        sources.kubernetes_agents(api, "mesh", "StatefulSet", "meshapp")
