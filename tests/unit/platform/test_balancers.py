# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BalancerSetRouter: every step on all balancers, a failed step undone on all (in-memory balancers)."""

from __future__ import annotations

import pytest

from ansible_collections.meshos.release.plugins.module_utils.platform.balancers import (
    BalancerSetRouter,
    summed_measurements,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    COLOR_ROUTE,
    WEIGHTS,
    ConfigError,
    NotFoundError,
    PlatformError,
    PlatformTimeoutError,
    Target,
    TrafficRouter,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.factory import build_platform
from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient


class Balancer(TrafficRouter):
    """One balancer's server table; REJECT names the commands it refuses (like HAProxy without level admin)."""

    capabilities = frozenset((WEIGHTS, COLOR_ROUTE))

    def __init__(self, servers=("app1", "app2"), sessions=0):
        self.servers = dict((s, {"state": "ready", "weight": 100, "sessions": sessions}) for s in servers)
        self.color = "blue"
        self.reject = set()
        self.log = []

    def _do(self, what):
        if what in self.reject:
            raise PlatformError("HAProxy refused %r: permission denied" % what)
        self.log.append(what)

    def check(self):
        self._do("check")

    def refresh(self, targets):
        for target in targets:
            if target.server not in self.servers:
                raise NotFoundError("server %r not found" % target.server)
            target.state = self.servers[target.server]["state"]
            target.weight = self.servers[target.server]["weight"]

    def _set(self, target, key, value):
        if self.servers[target.server][key] == value:
            return False
        self._do(key)
        self.servers[target.server][key] = value
        return True

    def drain(self, target, timeout):
        changed = self._set(target, "state", "drain")
        if self.servers[target.server]["sessions"]:
            if timeout <= 0:
                raise PlatformTimeoutError("%s still has sessions" % target.server)
            self.servers[target.server]["sessions"] = 0
        return changed

    def enable(self, target):
        return self._set(target, "state", "ready")

    def disable(self, target):
        return self._set(target, "state", "maint")

    def max_weight(self):
        return 256

    def set_weight(self, target, weight):
        return self._set(target, "weight", weight)

    def active_color(self):
        return self.color

    def switch_traffic(self, color):
        if self.color == color:
            return False
        self._do("switch")
        self.color = color
        return True


def pair(**kwargs):
    lb1, lb2 = Balancer(**kwargs), Balancer(**kwargs)
    return lb1, lb2, BalancerSetRouter([("lb1", lb1), ("lb2", lb2)])


def target(name="app1"):
    return Target(name, backend="be_app")


def table(balancer):
    return dict((name, (info["state"], info["weight"])) for name, info in balancer.servers.items())


def test_every_step_reaches_every_balancer():
    lb1, lb2, router = pair(sessions=2)
    assert router.drain(target(), 5) is True
    assert table(lb1) == table(lb2) == {"app1": ("drain", 100), "app2": ("ready", 100)}
    assert router.disable(target()) and router.set_weight(target(), 7)
    assert table(lb1) == table(lb2) == {"app1": ("maint", 7), "app2": ("ready", 100)}
    assert router.enable(target()) is True and router.enable(target()) is False
    assert router.switch_traffic("green") is True and lb1.color == lb2.color == "green"
    assert router.states([target(), target("app2")]) == {
        "lb1": {"app1": ("ready", 7), "app2": ("ready", 100)}, "lb2": {"app1": ("ready", 7), "app2": ("ready", 100)}}


def test_a_step_rejected_by_one_balancer_is_undone_on_all():
    lb1, lb2, router = pair()
    router.disable(target())
    lb2.reject.add("state")
    with pytest.raises(PlatformError) as err:
        router.enable(target())
    msg = str(err.value)
    assert msg.startswith("balancer lb2 failed to enable be_app/app1: HAProxy refused 'state'"), msg
    assert "undone on lb1, lb2, every balancer routes as before the step" in msg and "\n" not in msg
    assert table(lb1) == table(lb2) == {"app1": ("maint", 100), "app2": ("ready", 100)}


def test_a_rejected_weight_and_color_switch_are_undone():
    lb1, lb2, router = pair()
    lb2.reject.add("weight")
    with pytest.raises(PlatformError, match="balancer lb2 failed to set the weight 5 of be_app/app1"):
        router.set_weight(target(), 5)
    assert table(lb1) == table(lb2) == {"app1": ("ready", 100), "app2": ("ready", 100)}
    lb2.reject.add("switch")
    with pytest.raises(PlatformError, match="failed to switch traffic to green"):
        router.switch_traffic("green")
    assert lb1.color == lb2.color == "blue"


def test_an_undo_that_fails_too_is_named():
    lb1, lb2, router = pair()
    lb2.reject.add("state")
    router.balancers.reverse()  # lb2 first: the step fails there before any balancer changed
    with pytest.raises(PlatformError, match="undone on lb2, every balancer routes as before"):
        router.disable(target())
    router.balancers.reverse()
    real_set = lb1._set
    calls = []

    def once(tgt, key, value):
        calls.append(key)
        if len(calls) > 1:
            raise PlatformError("socket gone")
        return real_set(tgt, key, value)

    lb1._set = once  # lb1 applies the step, then stops answering: its undo fails
    with pytest.raises(PlatformError, match=r"NOT restored on lb1 \(socket gone\): check these balancers by hand"):
        router.disable(target())


class SlowToDrain(Balancer):
    def drain(self, target, timeout):
        self._set(target, "state", "drain")
        raise PlatformTimeoutError("%s still has 3 session(s)" % target.server)


def test_a_drain_that_times_out_on_one_balancer_fails_the_step():
    lb1, lb2 = Balancer(), SlowToDrain()
    router = BalancerSetRouter([("lb1", lb1), ("lb2", lb2)])
    with pytest.raises(PlatformTimeoutError, match="balancer lb2 failed to drain be_app/app1: app1 still has 3"):
        router.drain(target(), 1)
    # both balancers stop sending new requests (the wait failed, not the switch to draining)
    assert table(lb1)["app1"] == table(lb2)["app1"] == ("drain", 100)


def test_reads_check_and_not_found_name_the_balancer():
    lb1, lb2, router = pair()
    del lb2.servers["app2"]
    with pytest.raises(NotFoundError, match="balancer lb2: server 'app2' not found"):
        router.refresh([target(), target("app2")])
    lb2.reject.add("check")
    with pytest.raises(PlatformError, match="^balancer lb2: HAProxy refused 'check'"):
        router.check()
    assert router.capabilities == frozenset((WEIGHTS, COLOR_ROUTE)) and router.active_color() == "blue"


def test_a_set_needs_two_distinct_balancers():
    with pytest.raises(ConfigError, match="at least two balancers, got 1"):
        BalancerSetRouter([("lb1", Balancer())])
    with pytest.raises(ConfigError, match="duplicate balancer"):
        BalancerSetRouter([("lb1", Balancer()), ("lb1", Balancer())])


def test_measurements_are_summed_or_not_reported():
    one = {"source": "haproxy:/a", "frontends": ["fe"], "window_seconds": 2.0, "downtime_seconds": 0.0, "samples": 8,
           "sample_interval": 0.25, "requests": 10, "failed_requests": 1}
    two = dict(one, source="haproxy:/b", downtime_seconds=0.5, samples=7, requests=5, failed_requests=0)
    summed = summed_measurements([("/a", one), ("/b", two)])
    assert (summed["requests"], summed["failed_requests"], summed["downtime_seconds"], summed["samples"]) == (15, 1, 0.5, 7)
    assert summed["source"] == "haproxy:/a,haproxy:/b"
    assert summed_measurements([("/a", one), ("/b", {"source": None, "reason": "gone"})]) == {
        "source": None, "reason": "balancer /b: gone"}


def test_runtime_api_addresses():
    assert HAProxyClient("tcp://10.0.0.2:9999").tcp == ("10.0.0.2", 9999)
    assert HAProxyClient("/run/haproxy/admin.sock").tcp is None
    for bad in ("tcp://10.0.0.2", "tcp://:80", "tcp://h:99999", "relative.sock"):
        with pytest.raises(ConfigError, match="invalid HAProxy runtime API"):
            HAProxyClient(bad)


def test_the_factory_builds_a_set_from_haproxy_sockets():
    params = {"platform": "hosts", "haproxy_socket": "/a.sock", "haproxy_sockets": ["/a.sock", "tcp://lb2:9999"],
              "interval": 0.2, "default_weight": 100, "backend": "be_app", "ready_timeout": 5.0,
              "targets": [{"name": "app1", "release_root": "/r", "restart_command": "true",
                           "ready_url": "http://127.0.0.1:1/ready"}]}
    router = build_platform(params).router
    assert isinstance(router, BalancerSetRouter) and router.names() == ["/a.sock", "tcp://lb2:9999"]
    params["haproxy_sockets"] = ["lb2:9999"]
    with pytest.raises(ConfigError, match="invalid HAProxy runtime API 'lb2:9999'"):
        build_platform(params)
