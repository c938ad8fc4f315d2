# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes backend: one Deployment is the fleet; its controller runs the rolling update (Python 3.9+).

``kube_api.KubeClient`` is the only code that talks to the API and returns plain API dicts; ``DeploymentRollout`` (a
``NativeRollout``) works on those dicts only, so unit tests hand it a fake API object.

- rolling: one strategic-merge patch sets the container image and the ``meshos.release/version`` label and annotation
  on the pod template; the Deployment controller replaces the pods (honouring maxSurge/maxUnavailable) and the wait
  reads the Deployment's own status. ``ProgressDeadlineExceeded`` or the wait's timeout is a STUCK error naming the
  conditions and the new ReplicaSet's pod states.
- rollback: the ReplicaSets owned by the Deployment are its revisions; the target's pod template (previous revision,
  or the newest one carrying the named version) is written back as the Deployment's template, as ``kubectl rollout
  undo`` does.

Blue-green and canary are ``k8s_bluegreen.py`` / ``k8s_canary.py`` (Service selectors, replica ratios, router
weights), bundled with this rolling update by ``k8s_native.KubernetesNative``; ``KubernetesRouter`` declares no
per-target capability (the strategies move traffic through Kubernetes objects, not target by target).
"""

from __future__ import annotations

import copy
import time
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    Fleet,
    NativeRollout,
    NotFoundError,
    NotSupported,
    StuckError,
    Target,
    TrafficRouter,
    VersionNotInstalledError,
)

from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import (
    HASH_LABEL,
    LABEL_VALUE_RE,
    NAME_RE,
    REVISION_KEY,
    VERSION_KEY,
    _condition_text,
    _conditions,
    _get,
    _pod_state,
    _pod_text,
    _replica_counts,
    rollout_complete,
    template_version,
)


class DeploymentRollout(NativeRollout):
    """Rolling update and rollback of one Deployment, read back from the controller's status."""

    strategies = frozenset(["rolling"])

    def __init__(self, api: t.Any, namespace: str, deployment: str, container: t.Optional[str] = None,
                 image: t.Optional[str] = None, pod_labels: t.Optional[t.Dict[str, str]] = None,
                 timeout: float = 600.0, interval: float = 1.0, sleep: t.Callable[[float], None] = time.sleep,
                 clock: t.Callable[[], float] = time.monotonic) -> None:
        for what, value in (("namespace", namespace), ("deployment", deployment)):
            if not isinstance(value, str) or not NAME_RE.match(value):
                raise ConfigError("invalid %s %r: expected a Kubernetes name (lowercase letters, digits, '-', '.')"
                                  % (what, value))
        if image is not None and "{version}" not in image:
            raise ConfigError("invalid image %r: expected a reference with a {version} placeholder, for example "
                              "registry.example.com/meshapp:{version}" % (image,))
        labels = dict(pod_labels or {})
        for key, value in labels.items():
            if key == VERSION_KEY or not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
                raise ConfigError("invalid pod_labels entry %r=%r: a label value of at most 63 letters, digits, '-', "
                                  "'_', '.' (and not %s, which is set from the version)" % (key, value, VERSION_KEY))
        if timeout <= 0:
            raise ConfigError("invalid rollout_timeout %r: expected seconds > 0" % (timeout,))
        self.api = api
        self.namespace = namespace
        self.name = deployment
        self.container = container
        self.image = image
        self.pod_labels = labels
        self.timeout = timeout
        self.interval = interval
        self.sleep = sleep
        self.clock = clock

    @property
    def ref(self) -> str:
        return "deployment %s/%s" % (self.namespace, self.name)

    # -- reading
    def read(self) -> t.Dict[str, t.Any]:
        return self.api.read_deployment(self.namespace, self.name)

    def container_name(self, dep: t.Dict[str, t.Any]) -> str:
        names = [c.get("name") for c in _get(dep, "spec", "template", "spec", "containers", default=[])]
        if self.container:
            if self.container not in names:
                raise NotFoundError("%s has no container %r (containers: %s)"
                                    % (self.ref, self.container, ", ".join(names) or "none"))
            return self.container
        if len(names) != 1:
            raise ConfigError("%s has %d containers (%s): set container to the one that carries the release"
                              % (self.ref, len(names), ", ".join(names)))
        return names[0]

    def _image_of(self, template: t.Dict[str, t.Any], container: str) -> str:
        for item in _get(template, "spec", "containers", default=[]):
            if item.get("name") == container:
                return item.get("image") or ""
        return ""

    def image_for(self, version: str, current_image: str) -> str:
        """The configured image template, else the current image's repository with the version as tag."""
        if self.image:
            return self.image.replace("{version}", version)
        repo = current_image.split("@", 1)[0]
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]
        if not repo:
            raise ConfigError("%s: the container has no image to derive %s from; set image" % (self.ref, version))
        return "%s:%s" % (repo, version)

    def revisions(self, dep: t.Dict[str, t.Any]) -> t.List[t.Dict[str, t.Any]]:
        """The ReplicaSets the Deployment owns, oldest revision first: revision, version, image, replicas, template."""
        labels = _get(dep, "spec", "selector", "matchLabels", default={})
        selector = ",".join("%s=%s" % kv for kv in sorted(labels.items()))
        uid = _get(dep, "metadata", "uid")
        container = self.container_name(dep)
        result = []
        for rs in self.api.list_replica_sets(self.namespace, selector):
            owners = _get(rs, "metadata", "ownerReferences", default=[])
            if uid and not [o for o in owners if o.get("uid") == uid]:
                continue
            template = _get(rs, "spec", "template", default={})
            result.append({"name": _get(rs, "metadata", "name"),
                           "revision": int(_get(rs, "metadata", "annotations", REVISION_KEY, default=0) or 0),
                           "version": template_version(template, container),
                           "image": self._image_of(template, container),
                           "replicas": int(_get(rs, "spec", "replicas", default=0)),
                           "ready": int(_get(rs, "status", "readyReplicas", default=0)),
                           "hash": _get(rs, "metadata", "labels", HASH_LABEL), "template": template})
        return sorted(result, key=lambda r: r["revision"])

    def _current_revision(self, dep: t.Dict[str, t.Any]) -> int:
        return int(_get(dep, "metadata", "annotations", REVISION_KEY, default=0) or 0)

    def _pods_of(self, rs: t.Optional[t.Dict[str, t.Any]]) -> t.List[t.Dict[str, t.Any]]:
        if not rs or not rs.get("hash"):
            return []
        pods = self.api.list_pods(self.namespace, "%s=%s" % (HASH_LABEL, rs["hash"]))
        return [_pod_state(p) for p in pods]

    def _summary(self, dep: t.Dict[str, t.Any]) -> t.Dict[str, t.Any]:
        container = self.container_name(dep)
        template = _get(dep, "spec", "template", default={})
        return {"deployment": "%s/%s" % (self.namespace, self.name), "version": template_version(template, container),
                "image": self._image_of(template, container), "revision": self._current_revision(dep),
                "replicas": _replica_counts(dep), "conditions": _conditions(dep)}

    # -- waiting
    def wait(self, version: str) -> t.Dict[str, t.Any]:
        """Until the controller reports the rollout complete; StuckError on ProgressDeadlineExceeded or the timeout."""
        deadline = self.clock() + self.timeout
        while True:
            dep = self.read()
            observed = int(_get(dep, "status", "observedGeneration", default=0)) >= \
                int(_get(dep, "metadata", "generation", default=0))
            if observed:
                if rollout_complete(dep):
                    return dep
                stuck = [c for c in _conditions(dep) if c["type"] == "Progressing" and c["status"] == "False"
                         and c["reason"] == "ProgressDeadlineExceeded"]
                if stuck:
                    raise self._stuck(dep, version, "ProgressDeadlineExceeded (progressDeadlineSeconds %s)"
                                      % _get(dep, "spec", "progressDeadlineSeconds", default="?"))
            if self.clock() >= deadline:
                raise self._stuck(dep, version, "not complete within rollout_timeout %ss" % self.timeout)
            self.sleep(self.interval)

    def _stuck(self, dep: t.Dict[str, t.Any], version: str, cause: str) -> StuckError:
        current = self._current_revision(dep)
        new_rs = [r for r in self.revisions(dep) if r["revision"] == current]
        pods = self._pods_of(new_rs[0] if new_rs else None)
        n = _replica_counts(dep)
        err = StuckError(
            "%s rollout to %s is STUCK: %s; conditions: %s; replicas: %d desired, %d updated, %d ready, %d available; "
            "new ReplicaSet %s pods: %s"
            % (self.ref, version, cause, _condition_text(_conditions(dep)), n["desired"], n["updated"], n["ready"],
               n["available"], new_rs[0]["name"] if new_rs else "(none)",
               ", ".join(_pod_text(p) for p in pods) or "none"))
        err.details = dict(self._summary(dep), cause=cause, new_replica_set=new_rs[0]["name"] if new_rs else None,
                           pods=pods)
        return err

    # -- NativeRollout
    def rolling(self, version: str, check_mode: bool = False) -> t.Dict[str, t.Any]:
        dep = self.read()
        container = self.container_name(dep)
        template = _get(dep, "spec", "template", default={})
        before = {"version": template_version(template, container), "image": self._image_of(template, container)}
        image = self.image_for(version, before["image"])
        if not LABEL_VALUE_RE.match(version):
            raise ConfigError("version %r cannot be a label value (at most 63 letters, digits, '-', '_', '.')"
                              % (version,))
        labels = dict(self.pod_labels)
        labels[VERSION_KEY] = version
        current_labels = _get(template, "metadata", "labels", default={})
        up_to_date = (before["image"] == image and _get(template, "metadata", "annotations", VERSION_KEY) == version
                      and all(current_labels.get(k) == v for k, v in labels.items()))
        after = {"version": version, "image": image}
        diff = {"before": dict(before, deployment=self.ref), "after": dict(after, deployment=self.ref)}
        steps = []  # type: t.List[t.Dict[str, t.Any]]
        if check_mode:
            plan = [] if up_to_date else [{"target": self.name, "action": "patch_template", "version": version,
                                           "image": image, "from_version": before["version"]}]
            return {"changed": bool(plan), "status": "complete" if up_to_date else "planned", "plan": plan,
                    "steps": [], "diff": diff, "versions": {self.name: before["version"]}}
        if not up_to_date:
            body = {"metadata": {"annotations": {VERSION_KEY: version}},
                    "spec": {"template": {"metadata": {"labels": labels, "annotations": {VERSION_KEY: version}},
                                          "spec": {"containers": [{"name": container, "image": image}]}}}}
            self.api.patch_deployment(self.namespace, self.name, body)
            steps.append({"target": self.name, "action": "patch_template", "version": version, "image": image,
                          "from_version": before["version"], "changed": True})
        started = self.clock()
        dep = self.wait(version)
        steps.append({"target": self.name, "action": "wait_rollout", "changed": False,
                      "seconds": round(self.clock() - started, 3)})
        return dict(self._summary(dep), changed=not up_to_date, status="complete", plan=[], steps=steps, diff=diff,
                    versions={self.name: version}, from_version=before["version"])

    def rollback_target(self, dep: t.Dict[str, t.Any], version: t.Optional[str]) -> t.Dict[str, t.Any]:
        """The revision to return to: the newest carrying VERSION, else the newest older than the current one."""
        revs = self.revisions(dep)
        current = self._current_revision(dep)
        listing = ", ".join("%s (revision %d)" % (r["version"], r["revision"]) for r in reversed(revs)) or "none"
        if version:
            found = [r for r in revs if r["version"] == version]
            if not found:
                raise VersionNotInstalledError("%s has no revision carrying version %s (available: %s)"
                                               % (self.ref, version, listing))
            return found[-1]
        cur = [r for r in revs if r["revision"] == current]
        cur_version = cur[0]["version"] if cur else None
        older = [r for r in revs if r["revision"] < current and r["version"] != cur_version]
        if not older:
            raise VersionNotInstalledError("%s has no revision before revision %d (%s) to roll back to (available: %s)"
                                           % (self.ref, current, cur_version, listing))
        return older[-1]

    def rollback(self, version: t.Optional[str], check_mode: bool = False) -> t.Dict[str, t.Any]:
        dep = self.read()
        container = self.container_name(dep)
        before_version = template_version(_get(dep, "spec", "template", default={}), container)
        target = self.rollback_target(dep, version)
        template = copy.deepcopy(target["template"])
        (_get(template, "metadata", "labels", default={}) or {}).pop(HASH_LABEL, None)
        same = target["revision"] == self._current_revision(dep)
        diff = {"before": {"deployment": self.ref, "version": before_version,
                           "revision": self._current_revision(dep)},
                "after": {"deployment": self.ref, "version": target["version"], "revision": target["revision"]}}
        if check_mode:
            plan = [] if same else [{"target": self.name, "action": "restore_template", "revision": target["revision"],
                                     "version": target["version"], "from_version": before_version}]
            return {"changed": bool(plan), "status": "complete" if same else "planned", "plan": plan, "steps": [],
                    "diff": diff, "versions": {self.name: before_version}, "to_revision": target["revision"]}
        steps = []
        if not same:
            # what `kubectl rollout undo` does: the old ReplicaSet's template becomes the Deployment's template
            self.api.patch_deployment(self.namespace, self.name,
                                      [{"op": "replace", "path": "/spec/template", "value": template}], json_patch=True)
            steps.append({"target": self.name, "action": "restore_template", "revision": target["revision"],
                          "version": target["version"], "from_version": before_version, "changed": True})
        started = self.clock()
        dep = self.wait(target["version"] or "revision %d" % target["revision"])
        steps.append({"target": self.name, "action": "wait_rollout", "changed": False,
                      "seconds": round(self.clock() - started, 3)})
        return dict(self._summary(dep), changed=not same, status="complete", plan=[], steps=steps, diff=diff,
                    versions={self.name: target["version"]}, from_version=before_version,
                    to_revision=target["revision"])

    def status(self) -> t.Dict[str, t.Any]:
        dep = self.read()
        summary = self._summary(dep)
        revs = [dict((k, r[k]) for k in ("revision", "version", "image", "replicas", "ready", "name"))
                for r in self.revisions(dep)]
        problems = []
        if not rollout_complete(dep):
            n = summary["replicas"]
            problems.append("%s rollout not complete: %d desired, %d updated, %d ready, %d available; %s"
                            % (self.ref, n["desired"], n["updated"], n["ready"], n["available"],
                               _condition_text(summary["conditions"])))
        return dict(summary, changed=False, revisions=revs, versions={self.name: summary["version"]},
                    mixed_versions=len([r for r in revs if r["replicas"]]) > 1, healthy=not problems,
                    problems=problems)

    def verify_backup(self, version: t.Optional[str]) -> t.Dict[str, t.Any]:
        dep = self.read()
        try:
            target = self.rollback_target(dep, version)
        except VersionNotInstalledError as exc:
            return {"changed": False, "ok": False, "targets": {self.name: {"ok": False, "problems": [str(exc)]}}}
        problems = [] if target["image"] else ["revision %d has no image for the release container"
                                               % target["revision"]]
        return {"changed": False, "ok": not problems,
                "targets": {self.name: {"ok": not problems, "problems": problems, "version": target["version"],
                                        "revision": target["revision"], "image": target["image"],
                                        "replica_set": target["name"]}}}


class KubernetesFleet(Fleet):
    """The app as the fleet's single target (named after ``rollout``); LIVE gives the Deployment serving users (the
    active color's under blue-green). Per-target install/activate are the controller's job."""

    def __init__(self, rollout: DeploymentRollout, live: t.Optional[t.Callable[[], DeploymentRollout]] = None) -> None:
        self.rollout = rollout
        self.live = live or (lambda: rollout)

    def instances(self) -> t.List[Target]:
        return [Target(self.rollout.name, backend=self.rollout.namespace, extra={"kind": "Deployment"})]

    def current_version(self, target: Target) -> t.Optional[str]:
        live = self.live()
        dep = live.read()
        return template_version(_get(dep, "spec", "template", default={}), live.container_name(dep))

    def installed_versions(self, target: Target) -> t.List[str]:
        """Versions of the revisions the Deployment keeps (revisionHistoryLimit), oldest revision first."""
        live = self.live()
        return [str(r["version"]) for r in live.revisions(live.read())]

    def wait_ready(self, target: Target, timeout: float) -> None:
        self.live().wait(str(self.current_version(target)))


class KubernetesRouter(TrafficRouter):
    """No per-target capability: Services send traffic to Ready pods; blue-green and canary move it through Service
    selectors, replica ratios and router objects (``k8s_native.KubernetesNative``), not target by target."""

    capabilities = frozenset()

    def __init__(self, rollout: DeploymentRollout, live: t.Optional[t.Callable[[], DeploymentRollout]] = None) -> None:
        self.rollout = rollout
        self.live = live or (lambda: rollout)

    def check(self) -> None:
        self.live().read()

    def refresh(self, targets: t.List[Target]) -> None:
        dep = self.live().read()
        for target in targets:
            target.state = "ready" if rollout_complete(dep) else "down"
            target.weight = _replica_counts(dep)["ready"]

    def _unsupported(self, what: str) -> NotSupported:
        return NotSupported("platform kubernetes cannot %s: the Service routes to Ready pods, per-target traffic "
                            "control is not implemented" % what)

    def drain(self, target: Target, timeout: float) -> bool:
        raise self._unsupported("drain a target")

    def enable(self, target: Target) -> bool:
        raise self._unsupported("enable a target")

    def disable(self, target: Target) -> bool:
        raise self._unsupported("disable a target")
