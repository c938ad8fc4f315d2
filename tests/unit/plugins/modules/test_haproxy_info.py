# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of haproxy_info: show stat over a real unix socket served by a thread, errors as one line."""

from __future__ import annotations

import os
import socket
import tempfile
import threading

import pytest

from ansible_collections.meshos.release.plugins.modules import haproxy_info
from ansible_collections.meshos.release.tests.unit.plugins.modules.module_runner import run_module

HEADER = "# pxname,svname,qcur,scur,weight,status,lastchg,check_status,check_code,addr,"
STAT = "\n".join([
    HEADER,
    "fe_main,FRONTEND,,3,,OPEN,,,,,",
    "be_app,app1,0,0,100,DOWN,12,L7STS,503,127.0.0.1:24081,",
    "be_app,app2,0,2,100,UP,300,L7OK,200,127.0.0.1:24082,",
    "be_app,app3,0,0,100,DRAIN,40,L7OK,200,127.0.0.1:24083,",
    "be_app,app4,0,0,0,MAINT,5,,,127.0.0.1:24084,",
    "be_app,BACKEND,0,2,200,UP,300,,,,",
    "be_blue,BACKEND,0,0,0,DOWN,300,,,,",
    "",
])


@pytest.fixture
def stat_socket():
    directory = tempfile.mkdtemp(prefix="hi-")
    path = os.path.join(directory, "admin.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(5)
    commands = []

    def serve():
        while True:
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            with conn:
                commands.append(conn.recv(4096).decode().strip())
                conn.sendall(STAT.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, commands
    server.close()
    os.unlink(path)
    os.rmdir(directory)


def run(args):
    return run_module(haproxy_info, args)


def test_servers_of_one_backend(stat_socket):
    path, commands = stat_socket
    out = run({"haproxy_socket": path, "backends": ["be_app"]})
    assert not out.get("failed") and out["changed"] is False
    assert commands == ["show stat"]
    by_name = dict((s["server"], s) for s in out["servers"])
    assert [s["server"] for s in out["servers"]] == ["app1", "app2", "app3", "app4"]
    assert by_name["app1"]["state"] == "down" and by_name["app1"]["check_status"] == "L7STS"
    assert by_name["app1"]["check_code"] == "503" and by_name["app1"]["last_change_seconds"] == 12
    assert by_name["app2"]["state"] == "ready" and by_name["app2"]["sessions"] == 2
    assert by_name["app3"]["state"] == "drain" and by_name["app4"]["state"] == "maint"
    assert out["backends"] == {"be_app": {"status": "UP", "servers": 4, "up": 1, "down": ["app1"]}}


def test_all_backends(stat_socket):
    out = run({"haproxy_socket": stat_socket[0]})
    assert set(out["backends"]) == {"be_app", "be_blue"}
    assert out["backends"]["be_blue"] == {"status": "DOWN", "servers": 0, "up": 0, "down": []}


def test_unknown_backend_is_one_line(stat_socket):
    out = run({"haproxy_socket": stat_socket[0], "backends": ["be_nope"]})
    assert out["failed"] and out["msg"] == "HAProxy backend(s) be_nope not found (known: be_app, be_blue)"


def test_missing_socket_is_one_line(tmp_path):
    out = run({"haproxy_socket": str(tmp_path / "none.sock")})
    assert out["failed"] and "does not exist" in out["msg"] and "\n" not in out["msg"]


def test_bad_timeout(tmp_path):
    out = run({"haproxy_socket": str(tmp_path / "x.sock"), "timeout": 0})
    assert out["failed"] and out["msg"] == "invalid timeout 0.0: expected seconds in (0, 300]"


def test_proxy_counters_reads_frontends_and_backends_only():
    rows = [
        {"pxname": "fe_main", "svname": "FRONTEND", "status": "OPEN", "req_tot": "120", "hrsp_5xx": "3"},
        {"pxname": "be_app", "svname": "app1", "status": "UP", "req_tot": "60", "hrsp_5xx": "1"},
        {"pxname": "be_app", "svname": "BACKEND", "status": "UP", "req_tot": "118", "hrsp_5xx": "3",
         "econ": "", "eresp": "2", "downtime": "7"},
    ]
    assert haproxy_info.proxy_counters(rows) == [
        {"proxy": "fe_main", "type": "frontend", "status": "OPEN", "req_tot": 120, "hrsp_5xx": 3, "econ": 0,
         "eresp": 0, "downtime": 0},
        {"proxy": "be_app", "type": "backend", "status": "UP", "req_tot": 118, "hrsp_5xx": 3, "econ": 0,
         "eresp": 2, "downtime": 7},
    ]
