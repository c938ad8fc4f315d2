# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kubernetes state backend on the local control plane: the Lease lock, the state ConfigMap, the audit trail.

Every "runner" here is a separate process running a module as Ansible runs it (``python -m <module> args.json``), so
what one runner writes another one reads only through the API server: the lock taken by one is refused to the other
naming its holder, a stale lock (its pid dead on this host) is only broken with force, state set by one is read by
the other, and two runners appending to the audit log at the same time leave one unbroken chain.

Ports 27081-27086 (base 27080, inside the 27000-27099 range of docs/design.md), or the plane that
MESHOS_K8S_KUBECONFIG names (the k8s stage of scripts/test.sh starts one for all its tests). Skipped, with the reason,
when the binaries are not built (`scripts/k8s_controlplane.sh build`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from _plane import MISSING, MISSING_REASON, REPO_ROOT, SHARED, plane_kubeconfig, wait_until

PORT_BASE = 27080
NAMESPACE = "meshos-state-backend"

kubernetes = pytest.importorskip("kubernetes", reason="the `kubernetes` Python client is not installed")

pytestmark = pytest.mark.skipif(bool(MISSING) and not SHARED, reason=MISSING_REASON)

COLLECTIONS = REPO_ROOT / ".build" / "collections"
MODULES = "ansible_collections.meshos.release.plugins.modules."
KEY = "k8s-state-backend-test-key-0123456789"


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    yield from plane_kubeconfig(tmp_path_factory, PORT_BASE, "state-backend")


@pytest.fixture(scope="module")
def api(kubeconfig):
    """(core, coordination) API objects, with the test's namespace created."""
    k = kubernetes.client
    client = kubernetes.config.new_client_from_config(config_file=kubeconfig)
    core, coordination = k.CoreV1Api(client), k.CoordinationV1Api(client)
    core.create_namespace(k.V1Namespace(metadata=k.V1ObjectMeta(name=NAMESPACE)))
    wait_until(lambda: core.read_namespace(NAMESPACE).status.phase == "Active", "namespace active")
    yield core, coordination
    core.delete_namespace(NAMESPACE)


@pytest.fixture
def runner(kubeconfig, tmp_path):
    """run(module, args): the module in a process of its own, as Ansible runs it; its JSON result."""
    counter = [0]

    def run(module, args, check_mode=False):
        counter[0] += 1
        args = dict({"state_backend": "kubernetes", "kubeconfig": kubeconfig, "namespace": NAMESPACE}, **args)
        if check_mode:
            args["_ansible_check_mode"] = True
        path = tmp_path / ("args-%d-%d.json" % (os.getpid(), counter[0]))
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
        proc = subprocess.run([sys.executable, "-m", MODULES + module, str(path)], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert proc.stdout.strip(), "no result from %s: %s" % (module, proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return run


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_a_lease_every_runner_sees(api, runner):
    _core, coordination = api
    env = {"environment": "lockenv"}
    taken = runner("release_state", dict(env, operation="lock", holder="alice/5.1.0", pid=os.getpid(), ttl=3600,
                                         reason="deploy 5.1.0"))
    assert taken["changed"] is True and taken["lock"]["holder"] == "alice/5.1.0", taken
    lease = coordination.read_namespaced_lease("meshos-lock-lockenv", NAMESPACE)
    assert lease.spec.holder_identity == "alice/5.1.0" and lease.spec.lease_duration_seconds == 3600
    assert lease.spec.acquire_time is not None and lease.spec.renew_time is not None
    # the same holder again: nothing changes
    assert runner("release_state", dict(env, operation="lock", holder="alice/5.1.0", pid=os.getpid()))["changed"] \
        is False
    # another runner is refused, naming the holder; a live lock is not broken even with force
    refused = runner("release_state", dict(env, operation="lock", holder="bob/5.2.0"))
    assert refused.get("failed") is True and refused["locked"] is True
    assert "environment lockenv is locked by alice/5.1.0 since" in refused["msg"]
    forced = runner("release_state", dict(env, operation="lock", holder="bob/5.2.0", force=True))
    assert forced.get("failed") is True and "locked by alice/5.1.0" in forced["msg"]
    assert runner("release_state", dict(env, operation="unlock", holder="bob/5.2.0", force=True)).get("failed")
    # what a third runner reads: the lock, not stale
    seen = runner("release_state", env)
    assert seen["lock"]["holder"] == "alice/5.1.0" and seen["stale"] is None and seen["lock"]["reason"] == \
        "deploy 5.1.0"
    released = runner("release_state", dict(env, operation="unlock", holder="alice/5.1.0"))
    assert released["changed"] is True and released["lock"] is None
    with pytest.raises(kubernetes.client.rest.ApiException):
        coordination.read_namespaced_lease("meshos-lock-lockenv", NAMESPACE)


def test_stale_lease_is_broken_only_with_force(api, runner):
    _core, coordination = api
    env = {"environment": "staleenv"}
    dead = _dead_pid()
    assert runner("release_state", dict(env, operation="lock", holder="killed-run", pid=dead))["changed"] is True
    refused = runner("release_state", dict(env, operation="lock", holder="next-run", pid=os.getpid()))
    assert refused.get("failed") is True
    assert "locked by killed-run" in refused["msg"] and "stale (pid %d is not running" % dead in refused["msg"]
    assert "take it over with force" in refused["msg"]
    checked = runner("release_state", dict(env, operation="lock", holder="next-run", pid=os.getpid(), force=True),
                     check_mode=True)
    assert checked["changed"] is True
    assert coordination.read_namespaced_lease("meshos-lock-staleenv", NAMESPACE).spec.holder_identity == "killed-run"
    broken = runner("release_state", dict(env, operation="lock", holder="next-run", pid=os.getpid(), force=True))
    assert broken["changed"] is True and broken["lock"]["broke"]["holder"] == "killed-run"
    assert coordination.read_namespaced_lease("meshos-lock-staleenv", NAMESPACE).spec.holder_identity == "next-run"


def test_two_runners_racing_for_the_lock_one_wins(api, runner):
    env = {"environment": "raceenv"}

    def take(name):
        return runner("release_state", dict(env, operation="lock", holder=name, pid=os.getpid()))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(take, ["runner-a", "runner-b"]))
    winners = [r for r in results if r.get("changed")]
    losers = [r for r in results if r.get("failed")]
    assert len(winners) == 1 and len(losers) == 1, results
    assert "locked by %s" % winners[0]["lock"]["holder"] in losers[0]["msg"]


def test_state_round_trip_between_runners(api, runner):
    core, _coordination = api
    env = {"environment": "Prod_EU"}  # not a DNS label: the object name gets a hash suffix, the data keeps the name
    values = {"current_version": "5.1.0", "previous_version": "5.0.1", "strategy": "rolling", "step": "done"}
    checked = runner("release_state", dict(env, operation="set", values=values), check_mode=True)
    assert checked["changed"] is True and checked["state"]["current_version"] == "5.1.0"
    assert runner("release_state", env)["state"] == {}
    done = runner("release_state", dict(env, operation="set", values=values))
    assert done["changed"] is True
    assert runner("release_state", dict(env, operation="set", values=values))["changed"] is False
    got = runner("release_state", env)
    assert got["state"]["previous_version"] == "5.0.1" and got["state"]["environment"] == "Prod_EU"
    maps = core.list_namespaced_config_map(NAMESPACE, label_selector="app.kubernetes.io/part-of=meshos-release").items
    state_map = [m for m in maps if m.metadata.name.startswith("meshos-state-prod-eu-")]
    assert len(state_map) == 1 and json.loads(state_map[0].data["release"])["current_version"] == "5.1.0"


def test_operation_section_shares_the_object_without_clobbering(api, kubeconfig):
    from ansible_collections.meshos.release.plugins.module_utils.state.backend import build_backend
    from ansible_collections.meshos.release.plugins.module_utils.state.store import StateStore
    params = {"state_backend": "kubernetes", "kubeconfig": kubeconfig, "namespace": NAMESPACE}
    release = StateStore(build_backend(params, None), "opsenv")
    release.set({"current_version": "1.0.0"})
    rollout = StateStore(build_backend(params, None), "opsenv")
    rollout.begin("deploy", "rolling", "2.0.0", [], {})
    release.set({"current_version": "2.0.0", "previous_version": "1.0.0"})  # between two saves of the rollout
    rollout.finish("complete", {"versions": {"a": "2.0.0"}})
    later = StateStore(build_backend(params, None), "opsenv")
    assert later.get()["previous_version"] == "1.0.0"
    assert later.data["last_operation"]["status"] == "complete" and len(later.data["history"]) == 1
    assert later.path == "configmap %s/meshos-state-opsenv key operation" % NAMESPACE


def _append(runner, number, log="deploys", **extra):
    return runner("audit_log", dict({"path": "/nowhere/%s.jsonl" % log, "actor": "runner-%d" % (number % 2),
                                     "action": "deploy", "version": "5.%d.0" % number, "environment": "prod",
                                     "result": "success"}, **extra))


def test_audit_trail_two_runners_one_chain(api, runner):
    core, _coordination = api
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda n: _append(runner, n), range(8)))
    assert all(r.get("changed") for r in results), [r.get("msg") for r in results]
    assert sorted(r["entry"]["seq"] for r in results) == list(range(1, 9))
    verified = runner("audit_log", {"path": "deploys.jsonl", "state": "verify"})
    assert verified["valid"] is True and verified["count"] == 8, verified
    queried = runner("audit_log", {"path": "deploys.jsonl", "state": "query", "version": "5.3.0"})
    assert queried["count"] == 1 and queried["entries"][0]["actor"] == "runner-1"
    # entries are immutable objects: the API server refuses an edit
    name = "meshos-audit-deploys-00000003"
    with pytest.raises(kubernetes.client.rest.ApiException) as refused:
        core.patch_namespaced_config_map(name, NAMESPACE, {"data": {"entry": "{}"}})
    assert refused.value.status == 422
    # an entry deleted off the end is caught by the head
    core.delete_namespaced_config_map("meshos-audit-deploys-00000008", NAMESPACE)
    broken = runner("audit_log", {"path": "deploys.jsonl", "state": "verify"})
    assert broken.get("failed") is True and broken["first_bad_line"] == 8 and "cut off the end" in broken["msg"]
    refused_append = _append(runner, 9)
    assert refused_append.get("failed") is True and "refusing to extend a damaged log" in refused_append["msg"]


def test_keyed_audit_trail_in_the_cluster(api, runner):
    first = _append(runner, 1, log="keyed", hmac_key=KEY)
    assert first.get("changed") and first["entry"]["mac"]
    verified = runner("audit_log", {"path": "keyed", "state": "verify", "hmac_key": KEY})
    assert verified["valid"] is True and verified["authenticated"] is True
    without = runner("audit_log", {"path": "keyed", "state": "verify"})
    assert without.get("failed") is True and "no key is configured" in without["msg"]


def test_api_errors_are_one_line(runner, tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a kubeconfig")
    failed = runner("release_state", {"environment": "prod", "kubeconfig": str(bad)})
    assert failed.get("failed") is True and "\n" not in failed["msg"]
    assert "cannot load the Kubernetes configuration" in failed["msg"]
    missing_ns = runner("release_state", {"environment": "prod", "namespace": "no-such-namespace", "operation": "set",
                                          "values": {"a": 1}})
    assert missing_ns.get("failed") is True and "\n" not in missing_ns["msg"]
    assert "404" in missing_ns["msg"] and "no-such-namespace" in missing_ns["msg"]


def test_rollout_module_keeps_its_operation_in_the_cluster(api, kubeconfig, runner, tmp_path):
    """rollback mode=status (platform kubernetes, state_backend kubernetes) reads the operation section another
    runner wrote into the cluster; its state_dir is not used."""
    from ansible_collections.meshos.release.plugins.module_utils.state.backend import build_backend
    from ansible_collections.meshos.release.plugins.module_utils.state.store import StateStore
    k = kubernetes.client
    apps = k.AppsV1Api(kubernetes.config.new_client_from_config(config_file=kubeconfig))
    labels = {"app": "statusapp"}
    apps.create_namespaced_deployment(NAMESPACE, k.V1Deployment(
        metadata=k.V1ObjectMeta(name="statusapp", labels=labels),
        spec=k.V1DeploymentSpec(replicas=0, selector=k.V1LabelSelector(match_labels=labels),
                                template=k.V1PodTemplateSpec(
                                    metadata=k.V1ObjectMeta(labels=dict(labels, **{"meshos.release/version": "4.2.0"})),
                                    spec=k.V1PodSpec(containers=[k.V1Container(name="app", image="meshapp:4.2.0")])))))
    params = {"state_backend": "kubernetes", "kubeconfig": kubeconfig, "namespace": NAMESPACE}
    record = StateStore(build_backend(params, None), "statusenv")
    record.begin("deploy", "rolling", "4.2.0", [], {})
    record.finish("complete", {"versions": {}})
    unused = tmp_path / "unused"
    status = runner("rollback", {"mode": "status", "platform": "kubernetes", "deployment": "statusapp",
                                 "environment": "statusenv", "state_dir": str(unused)})
    assert status.get("failed") is not True, status.get("msg")
    assert status["state_file"] == "configmap %s/meshos-state-statusenv key operation" % NAMESPACE
    assert status["last_operation"]["version"] == "4.2.0" and status["last_operation"]["status"] == "complete"
    assert not unused.exists()
