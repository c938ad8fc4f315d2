# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures for the integration tests: real processes on 127.0.0.1, always stopped afterwards.

Fixtures
    repo_root       the collection root (Path)
    free_port       free_port(lo, hi, count=1) -> port (or list of ports) free on 127.0.0.1 within [lo, hi]
    labctl          run_labctl(root, *args, check=True) -> parsed JSON of one labctl.py call
    lab_processes   a LabProcesses in a fresh tmp root; every process it started is stopped at teardown
    run_playbook    run_playbook(playbook, extra_vars=None, check=True) -> PlaybookRun (rc, output, changed)
    lab             session-wide lab (lab_up.yml, test ports 18880.., tmp lab_root) torn down at the end

Keep to your port range from docs/design.md: the lab fixture owns 18880-18884, 18904, 19890, 19893 (not the lab's
defaults, so tests also pass while `make lab-up` has the default lab running).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LABCTL = REPO_ROOT / "roles" / "lab" / "files" / "labctl.py"
LAB_DEFAULT_PORTS = {"app_port_base": 18880, "haproxy": 18880, "stats": 18904, "prometheus": 19890, "alertmanager": 19893}
LAB_INSTANCES = 4


# ------------------------------------------------------------------ ports

def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port and it can be bound."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        if sock.connect_ex((host, port)) == 0:
            return False
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the servers do: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(lo: int, hi: int, count: int = 1) -> list[int]:
    """`count` free ports within [lo, hi] (inclusive); fails the test when the range is exhausted."""
    found = [port for port in range(lo, hi + 1) if port_is_free(port)][:count]
    if len(found) < count:
        pytest.fail("no %d free ports in %d-%d on 127.0.0.1" % (count, lo, hi))
    return found


@pytest.fixture
def free_port():
    """free_port(lo, hi, count=1): one free port (count=1) or a list of them, within your range."""
    def pick(lo: int, hi: int, count: int = 1):
        ports = free_ports(lo, hi, count)
        return ports[0] if count == 1 else ports
    return pick


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.25, what: str = "condition"):
    """Poll predicate() until truthy; returns its value or fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# ------------------------------------------------------------------ labctl

def run_labctl(root, *args, check: bool = True) -> dict:
    """Run labctl.py (--root root unless root is None) and return its JSON; check=True asserts rc 0."""
    argv = [sys.executable, str(LABCTL)] + (["--root", str(root)] if root is not None else []) + [str(a) for a in args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        pytest.fail("labctl %s failed (rc %d): %s" % (" ".join(map(str, args)), proc.returncode, proc.stderr.strip()))
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    result["_rc"], result["_stderr"] = proc.returncode, proc.stderr
    return result


@pytest.fixture
def labctl():
    """run_labctl(root, *args, check=True) -> dict (plus _rc and _stderr)."""
    return run_labctl


class LabProcesses:
    """Processes managed by labctl under one root; stop_all() stops exactly those."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.artifacts = self.root / "artifacts"

    def artifact(self, version: str, error_ratio: float = 0.0, latency_ms: int = 0, health_fail: bool = False,
                 crash_on_start: bool = False) -> dict:
        args = ["artifact", version, "--out", self.artifacts, "--error-ratio", error_ratio, "--latency-ms", latency_ms]
        args += (["--health-fail"] if health_fail else []) + (["--crash-on-start"] if crash_on_start else [])
        return run_labctl(None, *args)

    def install(self, name: str, version: str, artifact=None, activate: bool = True) -> dict:
        artifact = artifact or self.artifacts / ("meshapp-%s.tar.gz" % version)
        return run_labctl(self.root, "install", name, version, "--artifact", artifact, *(["--activate"] if activate else []))

    def instance_start(self, name: str, port: int, wait_ready: float = 15, check: bool = True) -> dict:
        return run_labctl(self.root, "instance-start", name, "--port", port, "--wait-ready", wait_ready, check=check)

    def instance_restart(self, name: str, wait_ready: float = 15, check: bool = True) -> dict:
        return run_labctl(self.root, "instance-restart", name, "--wait-ready", wait_ready, check=check)

    def instance_stop(self, name: str) -> dict:
        return run_labctl(self.root, "instance-stop", name)

    def proc_start(self, name: str, argv, port=None, check: bool = True) -> dict:
        return run_labctl(self.root, "proc-start", name, *(["--port", port] if port else []), "--", *argv, check=check)

    def proc_stop(self, name: str) -> dict:
        return run_labctl(self.root, "proc-stop", name)

    def status(self) -> dict:
        return run_labctl(self.root, "status")

    def pids(self) -> dict:
        """name -> pid for every process with a pid file."""
        run = self.root / "run"
        return {p.stem: int(p.read_text()) for p in run.glob("*.pid")} if run.is_dir() else {}

    def stop_all(self) -> dict:
        return run_labctl(self.root, "stop-all", check=False)


@pytest.fixture
def lab_processes(tmp_path):
    """A LabProcesses rooted in a fresh tmp dir; stop-all runs at teardown even when the test fails."""
    procs = LabProcesses(tmp_path / "lab")
    yield procs
    procs.stop_all()


def pid_alive(pid: int) -> bool:
    """True when pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# ------------------------------------------------------------------ playbooks

@dataclass
class PlaybookRun:
    rc: int
    output: str
    recap: dict = field(default_factory=dict)  # host -> {"ok": n, "changed": n, "failed": n, ...}

    @property
    def changed(self) -> int:
        return sum(host.get("changed", 0) for host in self.recap.values())


def _recap(output: str) -> dict:
    recap = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            recap[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return recap


def ansible_env() -> dict:
    """Environment for ansible-playbook: the venv on PATH and the collection on the collections path."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO_ROOT / ".build" / "collections"))
    env.setdefault("ANSIBLE_PYTHON_INTERPRETER", sys.executable)
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
    env.pop("ANSIBLE_INVENTORY", None)
    return env


def run_playbook(playbook, extra_vars: dict | None = None, check: bool = True,
                 inventory=REPO_ROOT / "inventories" / "lab", timeout: int = 600) -> PlaybookRun:
    """ansible-playbook -i inventory playbook -e JSON; check=True fails the test on rc != 0."""
    exe = shutil.which("ansible-playbook", path=ansible_env()["PATH"]) or "ansible-playbook"
    argv = [exe, "-i", str(inventory), str(REPO_ROOT / playbook)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), cwd=str(REPO_ROOT),
                          timeout=timeout, check=False)
    run = PlaybookRun(proc.returncode, proc.stdout + proc.stderr, _recap(proc.stdout))
    if check and proc.returncode != 0:
        pytest.fail("%s failed (rc %d):\n%s" % (playbook, proc.returncode, run.output[-4000:]))
    return run


@pytest.fixture(name="run_playbook")
def run_playbook_fixture():
    """run_playbook(playbook, extra_vars=None, check=True) -> PlaybookRun(rc, output, recap, changed)."""
    return run_playbook


# ------------------------------------------------------------------ the lab

@dataclass
class Lab:
    root: Path
    extra_vars: dict
    instances: list  # [(name, port)]
    haproxy_url: str
    stats_url: str
    prometheus_url: str
    alertmanager_url: str
    socket: Path
    labctl: Path
    up_run: PlaybookRun

    def pids(self) -> dict:
        """name -> pid for every process with a pid file under root/run."""
        return LabProcesses(self.root).pids()

    def prometheus_query(self, query: str) -> list:
        """Result vector of an instant query."""
        url = "%s/api/v1/query?%s" % (self.prometheus_url, urllib.parse.urlencode({"query": query}))
        status, body = http_get(url)
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def haproxy_command(self, command: str) -> str:
        """One command on the HAProxy runtime API (admin socket)."""
        return haproxy_command(self.socket, command)


def haproxy_command(sock_path, command: str) -> str:
    with closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        sock.settimeout(5)
        sock.connect(str(sock_path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode()


def write_env_inventory(path, environments: dict) -> None:
    """An inventory shaped like inventories/lab: lab_lb (localhost, where the playbooks run) and one group per
    environment. environments: group -> (lab_root, [(name, port) or (name, port, color)]); hosts are <group>-<name>.
    The playbooks derive targets, lab_root and the HAProxy socket from these groups (playbooks/vars/deploy_targets.yml)."""
    groups = {"lab_lb": {"hosts": {"localhost": None}}}
    for group, (root, instances) in environments.items():
        hosts = {}
        for instance in instances:
            host = {"lab_instance_name": instance[0], "lab_instance_port": instance[1]}
            if len(instance) > 2:
                host["lab_instance_color"] = instance[2]
            hosts["%s-%s" % (group, instance[0])] = host
        groups[group] = {"vars": {
            "lab_root": str(root),
            "lab_haproxy_socket": "{{ lab_root }}/haproxy/admin.sock",
            "lab_restart_command": "{{ ansible_playbook_python }} {{ lab_root }}/bin/labctl.py --root {{ lab_root }}"
                                   " instance-restart {name} --wait-ready 30"}, "hosts": hosts}
    # releases are signed, as in inventories/lab: production refuses an unsigned release
    key = os.path.join(os.path.dirname(os.path.abspath(path)), "release-signing")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshos-test", "-f", key], check=True)
    inventory = {"all": {"vars": {"ansible_connection": "local", "release_signing_key": key,
                                  "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                                  # the audit log and release state every entry point shares, kept beside the inventory
                                  "release_work_dir": os.path.join(os.path.dirname(os.path.abspath(path)), "release"),
                                  # the watch of the whole fleet after deploy.yml / a runbook's resumed deploy
                                  "release_deploy_watch_seconds": 3},
                         "children": groups}}
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle, sort_keys=False)


def lab_vars(root, app_port_base, haproxy, stats, prometheus, alertmanager, instances=LAB_INSTANCES) -> dict:
    """Extra vars for lab_up.yml / lab_down.yml."""
    return {"lab_root": str(root), "lab_app_port_base": app_port_base, "lab_haproxy_port": haproxy,
            "lab_stats_port": stats, "lab_prometheus_port": prometheus, "lab_alertmanager_port": alertmanager,
            "lab_instances": instances,
            # one stack on localhost, described by these extra vars, not the inventory's per-environment stacks
            "lab_up_hosts": "localhost",
            # tests count requests exactly: no synthetic traffic unless a test starts its own
            "lab_traffic_enabled": False}


def start_lab(root, ports: dict, instances: int = LAB_INSTANCES) -> Lab:
    """Run lab_up.yml in root with ports (keys of LAB_DEFAULT_PORTS); callers must call stop_lab()."""
    wanted = [ports["app_port_base"] + i for i in range(1, instances + 1)]
    wanted += [ports["haproxy"], ports["stats"], ports["prometheus"], ports["alertmanager"]]
    busy = [port for port in wanted if not port_is_free(port)]
    if busy:
        pytest.fail("lab ports already in use on 127.0.0.1: %s (is another lab running? make lab-down)" % busy)
    extra = lab_vars(root, ports["app_port_base"], ports["haproxy"], ports["stats"], ports["prometheus"],
                     ports["alertmanager"], instances)
    up = run_playbook("playbooks/lab_up.yml", extra)
    return Lab(root=Path(root), extra_vars=extra,
               instances=[("app%d" % i, ports["app_port_base"] + i) for i in range(1, instances + 1)],
               haproxy_url="http://127.0.0.1:%d" % ports["haproxy"],
               stats_url="http://127.0.0.1:%d/stats" % ports["stats"],
               prometheus_url="http://127.0.0.1:%d" % ports["prometheus"],
               alertmanager_url="http://127.0.0.1:%d" % ports["alertmanager"],
               socket=Path(root) / "haproxy" / "admin.sock", labctl=Path(root) / "bin" / "labctl.py", up_run=up)


def stop_lab(root, extra_vars: dict) -> PlaybookRun:
    """lab_down.yml, then labctl stop-all as a safety net (stops only pids labctl recorded)."""
    down = run_playbook("playbooks/lab_down.yml", dict(extra_vars, lab_root=str(root)), check=False)
    if (Path(root) / "run").is_dir():
        LabProcesses(root).stop_all()
    return down


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The lab on the test ports (HAProxy 18880, app1..4 on 18881-18884, Prometheus 19890, Alertmanager
    19893) in a tmp lab_root, brought up once per session by lab_up.yml and torn down by lab_down.yml."""
    root = tmp_path_factory.mktemp("meshos-lab")
    extra = lab_vars(root, **LAB_DEFAULT_PORTS)
    try:
        started = start_lab(root, LAB_DEFAULT_PORTS)
    except BaseException:
        stop_lab(root, extra)
        raise
    try:
        yield started
    finally:
        stop_lab(root, extra)
