# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import socket
import threading

import pytest

from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient, HAProxyError
from ansible_collections.meshos.release.plugins.module_utils.platform.base import ConfigError, NotFoundError

STAT = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
        "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,"
        "rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,"
        "hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,"
        "last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,"
        "check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr\n"
        "be_app,app1,0,0,2,5,,9,,,,,,,,,,UP,100" + "," * 53 + "127.0.0.1:1\n"
        "be_app,app2,0,0,0,5,,9,,,,,,,,,,DRAIN,50" + "," * 53 + "127.0.0.1:2\n"
        "be_app,BACKEND,0,0,2,5,,9,,,,,,,,,,UP,150" + "," * 53 + "\n\n")


class FakeHAProxy:
    def __init__(self, path, answers):
        self.path = path
        self.answers = answers
        self.received = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            cmd = conn.recv(4096).decode().strip()
            self.received.append(cmd)
            answer = next((a for prefix, a in self.answers if cmd.startswith(prefix)), "Unknown command.\n")
            conn.sendall(answer.encode())
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def fake(tmp_path):
    path = os.path.join(str(tmp_path), "s.sock")
    server = FakeHAProxy(path, [("show stat", STAT), ("show info", "Name: HAProxy\n"),
                                ("set server be_app/app1", "\n"), ("set weight be_app/app1", ""),
                                ("set server be_app/nope", "No such server.\n"),
                                ("show map", "0x55 active be_blue\n"), ("set map", "")])
    yield server
    server.close()


def test_show_stat_and_servers(fake):
    client = HAProxyClient(fake.path)
    servers = client.servers("be_app")
    assert dict((k, servers["app1"][k]) for k in ("state", "status", "weight", "sessions")) == {
        "state": "ready", "status": "UP", "weight": 100, "sessions": 2}
    assert servers["app2"]["state"] == "drain"
    with pytest.raises(NotFoundError, match="backend 'be_x' not found"):
        client.servers("be_x")
    with pytest.raises(NotFoundError, match="server 'zz' not found"):
        client.server("be_app", "zz")


def test_commands(fake):
    client = HAProxyClient(fake.path)
    client.set_server_state("be_app", "app1", "drain")
    client.set_weight("be_app", "app1", 10)
    assert client.show_map("/m") == {"active": "be_blue"}
    client.set_map("/m", "active", "be_green")
    assert fake.received[-1] == "set map /m active be_green"
    with pytest.raises(NotFoundError, match="No such server"):
        client.set_server_state("be_app", "nope", "ready")
    with pytest.raises(ConfigError, match="invalid HAProxy weight"):
        client.set_weight("be_app", "app1", 300)
    with pytest.raises(ConfigError, match="state"):
        client.set_server_state("be_app", "app1", "sleepy")
    with pytest.raises(ConfigError, match="refusing"):
        client.command("show stat; shutdown")


def test_missing_socket(tmp_path):
    client = HAProxyClient(str(tmp_path / "none.sock"))
    with pytest.raises(HAProxyError, match="does not exist"):
        client.check()
    with pytest.raises(HAProxyError, match="does not exist"):
        client.show_stat()


def test_permission_denied(tmp_path, monkeypatch):
    def deny(self, path):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(socket.socket, "connect", deny)
    with pytest.raises(HAProxyError, match="permission denied"):
        HAProxyClient(str(tmp_path / "s.sock")).show_stat()


# ---------------------------------------------------------------------------- TrafficMeter

from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import TrafficMeter  # noqa: E402


class _StatClient:
    """show_stat() answers from a list of snapshots (one per call); an Exception item is raised."""

    socket_path = "/run/test.sock"
    timeout = 1.0

    def __init__(self, snaps):
        self.snaps = list(snaps)

    def show_stat(self):
        snap = self.snaps.pop(0) if len(self.snaps) > 1 else self.snaps[0]
        if isinstance(snap, Exception):
            raise snap
        return snap


def _snap(req, fe5xx, up, econ=0, be5xx=0):
    rows = [{"pxname": "fe_main", "svname": "FRONTEND", "req_tot": str(req), "hrsp_5xx": str(fe5xx), "mode": "http"},
            {"pxname": "stats", "svname": "FRONTEND", "req_tot": "999", "hrsp_5xx": "9", "mode": "http"},
            {"pxname": "be_app", "svname": "BACKEND", "hrsp_5xx": str(be5xx), "econ": str(econ), "eresp": "0",
             "wretr": "1", "wredis": "0", "status": "UP"}]
    for i, state in enumerate(up):
        rows.append({"pxname": "be_app", "svname": "app%d" % (i + 1), "status": state, "weight": "100"})
    return rows


def test_traffic_meter_counts_requests_failures_and_downtime():
    clock = iter([0.0, 1.0, 2.0, 3.5, 5.0]).__next__
    client = _StatClient([_snap(100, 0, ["UP", "UP"]), _snap(150, 2, ["DOWN", "MAINT"]),
                          _snap(200, 5, ["UP", "DOWN"]), _snap(260, 5, ["DRAIN", "UP"]), _snap(300, 5, ["UP", "UP"])])
    meter = TrafficMeter(client, lambda: ["be_app"], clock=clock, thread=False).start()
    for dummy in range(3):
        meter.sample()
    measured = meter.stop()
    assert measured["source"] == "haproxy:/run/test.sock"
    assert measured["requests"] == 200 and measured["failed_requests"] == 5
    assert measured["frontends"] == ["fe_main"]  # the stats frontend is not the service
    # no ready server from t=1.0 (sample 2) until the next sample at t=2.0
    assert measured["downtime_seconds"] == 1.0 and measured["window_seconds"] == 5.0 and measured["samples"] == 5


def test_traffic_meter_says_why_when_it_cannot_measure():
    client = _StatClient([HAProxyError("HAProxy admin socket /x does not exist")])
    measured = TrafficMeter(client, lambda: ["be_app"], thread=False).start().stop()
    assert measured["source"] is None and "does not exist" in measured["reason"]
    assert "downtime_seconds" not in measured
    # a reload resets the counters: refuse to report a negative or made-up difference
    client = _StatClient([_snap(100, 0, ["UP"]), _snap(5, 0, ["UP"])])
    measured = TrafficMeter(client, lambda: ["be_app"], thread=False).start().stop()
    assert measured["source"] is None and "backwards" in measured["reason"]


def test_traffic_meter_named_frontend_and_thread(tmp_path):
    client = _StatClient([_snap(10, 0, ["UP"]), _snap(20, 1, ["UP"])])
    with pytest.raises(HAProxyError, match="fe_other"):
        TrafficMeter(client, lambda: ["be_app"], frontends=["fe_other"], thread=False)._read()
    client = _StatClient([_snap(10, 0, ["UP"]), _snap(20, 1, ["UP"])])
    meter = TrafficMeter(client, lambda: ["be_app"], frontends=["fe_main"], interval=0.01).start()
    measured = meter.stop()
    assert measured["requests"] == 10 and measured["failed_requests"] == 1 and measured["downtime_seconds"] == 0.0
