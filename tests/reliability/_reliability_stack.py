# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kill-and-rerun suite's stack (imported by the tests): a real lab (the lab role: HAProxy, meshapp app1..app4, blue1/green1) on ports
25000-25099, brought up once per module, plus helpers to start deploy.yml without waiting and kill it.

Ports: HAProxy 25000, app1..app4 25001-25004, stats 25010, blue1 25021, green1 25022 (Prometheus 25030 and
Alertmanager 25031 are configured but not started: the gates read the targets' /metrics).

The integration helpers (tests/integration/conftest.py, _hosts_env.py) are imported, not copied. The integration
conftest is loaded under its own module name, so that tests/integration's own `from conftest import ...` still gets that
conftest when both suites run in one pytest session.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
sys.path.insert(0, str(INTEGRATION))

# re-exported for the tests (Load); importing it also puts .build/collections on sys.path
import _hosts_env as hosts_env  # noqa: E402  # pylint: disable=unused-import


def _load_integration_conftest():
    spec = importlib.util.spec_from_file_location("meshos_integration_conftest", INTEGRATION / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


itc = _load_integration_conftest()

from ansible_collections.meshos.release.plugins.module_utils._audit import AuditLog  # noqa: E402

BASE = 25000
APP = [("app%d" % i, BASE + i) for i in range(1, 5)]
COLORS = [("blue1", BASE + 21, "blue"), ("green1", BASE + 22, "green")]
STATS, PROMETHEUS, ALERTMANAGER = BASE + 10, BASE + 30, BASE + 31
ENV_APP, ENV_BG = "rl", "rlbg"
INITIAL = "5.0.0"

# One row per kill: (case, strategy, kill second (after start / into the rollout), task running at the kill, rerun result,
# failed/requests, audit ok, what the kill left behind)
RESULTS: list = []


class Stack:
    """The lab plus what the kill tests need: a deploy started in its own process group, HAProxy state, audit log."""

    def __init__(self, root):
        self.root = Path(root)
        self.lab_root = self.root / "lab"
        self.inventory = self.root / "inventory.yml"
        self.artifacts = self.lab_root / "artifacts"
        self.socket = self.lab_root / "haproxy" / "admin.sock"
        self.route_map = self.lab_root / "haproxy" / "route.map"
        # write_env_inventory puts release_work_dir beside the inventory
        self.release_dir = self.root / "release"
        self.audit = self.release_dir / "audit.jsonl"
        self.extra = itc.lab_vars(self.lab_root, BASE, BASE, STATS, PROMETHEUS, ALERTMANAGER, len(APP))
        self.extra.update({"lab_stacks": [], "lab_prometheus_enabled": False, "lab_alertmanager_enabled": False,
                           "lab_haproxy_blue_servers": [{"name": "blue1", "port": COLORS[0][1]}],
                           "lab_haproxy_green_servers": [{"name": "green1", "port": COLORS[1][1]}]})
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # -- playbooks
    def argv(self, playbook, extra):
        exe = shutil.which("ansible-playbook", path=itc.ansible_env()["PATH"]) or "ansible-playbook"
        return [exe, "-i", str(self.inventory), str(itc.REPO_ROOT / "playbooks" / playbook), "-e", json.dumps(extra)]

    def playbook(self, name, extra=None, check=True, timeout=300):
        return itc.run_playbook("playbooks/" + name, extra or {}, check=check, inventory=self.inventory,
                                timeout=timeout)

    def start(self, playbook, extra, log_name):
        """Start ansible-playbook without waiting, in its own session (process group) so that a kill reaches the
        playbook, its forked workers, the module running and the command that module runs; output to a log file.
        The lab's instances run in sessions of their own (labctl), so they survive the kill as real hosts would."""
        log_path = self.logs / log_name
        handle = open(log_path, "w")
        # unbuffered: the log must hold every line written before the kill (it names the task that was running)
        env = dict(itc.ansible_env(), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(self.argv(playbook, extra), stdout=handle, stderr=subprocess.STDOUT,
                                env=env, cwd=str(itc.REPO_ROOT), start_new_session=True)
        handle.close()
        return proc, log_path

    @staticmethod
    def wait_for_line(proc, log_path, marker, timeout=180.0):
        """Seconds until `marker` shows up in the log (the playbook reached that task); fails when the playbook
        ends first or the timeout passes."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if marker in log_path.read_text(errors="replace"):
                return time.monotonic() - start
            if proc.poll() is not None:
                pytest.fail("the playbook ended (rc %s) before %r:\n%s"
                            % (proc.returncode, marker, log_path.read_text(errors="replace")[-3000:]))
            time.sleep(0.05)
        pytest.fail("the playbook did not reach %r within %ss" % (marker, timeout))

    @staticmethod
    def kill(proc, timeout=15.0):
        """SIGKILL the whole process group; returns True when the playbook was still running at the kill."""
        running = proc.poll() is None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)
        # nothing of the group may survive (zombies reaped by init do not count)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        return running

    # -- the lab
    def artifact(self, version):
        return itc.run_labctl(None, "artifact", version, "--out", self.artifacts)["path"]

    def versions(self, instances):
        out = {}
        for item in instances:
            try:
                status, body = itc.http_get("http://127.0.0.1:%d/status" % item[1])
            except OSError as exc:
                out[item[0]] = "DOWN(%s)" % exc.__class__.__name__
                continue
            out[item[0]] = json.loads(body)["version"] if status == 200 else "DOWN(%d)" % status
        return out

    def frontend_version(self):
        status, body = itc.http_get("http://127.0.0.1:%d/status" % BASE)
        return json.loads(body)["version"] if status == 200 else "HTTP %d" % status

    def servers(self, backend):
        """server -> (status, weight) of one HAProxy backend, from HAProxy itself."""
        rows = itc.haproxy_command(self.socket, "show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(",")))
            if cells.get("pxname") == backend and cells.get("svname") not in ("FRONTEND", "BACKEND", None, ""):
                out[cells["svname"]] = (cells["status"], int(cells["weight"]))
        return out

    def describe(self, instances):
        """What a kill left behind, in one line: versions per instance count, servers not UP or off their weight."""
        counts = {}
        for version in self.versions(instances).values():
            counts[version] = counts.get(version, 0) + 1
        parts = ["%dx%s" % (n, v) for v, n in sorted(counts.items())]
        for backend in ("be_app", "be_blue", "be_green"):
            servers = self.servers(backend)
            names = [item[0] for item in instances]
            weights = set(w for name, (_st, w) in servers.items() if name in names)
            for name, (status, weight) in sorted(servers.items()):
                if name in names and (status != "UP" or len(weights) > 1):
                    parts.append("%s %s w%d" % (name, status, weight))
        route = self.route_map.read_text().split()[-1] if self.route_map.exists() else "?"
        return " ".join(parts) + (" route " + route if len(instances) == 2 else "")

    def keep_log(self, name, text):
        (self.logs / name).write_text(text)

    def route(self, backend):
        itc.haproxy_command(self.socket, "set map %s active %s" % (self.route_map, backend))
        self.route_map.write_text("active %s\n" % backend)

    def fleet_state(self, env):
        path = self.lab_root / "state" / ("%s.json" % env)
        return json.loads(path.read_text()) if path.exists() else {}

    def lock_path(self, env):
        return self.release_dir / "state" / ("%s.lock" % env)

    def release_state(self, env):
        path = self.release_dir / "state" / ("%s.json" % env)
        return json.loads(path.read_text()) if path.exists() else {}

    def audit_verify(self):
        return AuditLog(str(self.audit)).verify()

    def audit_entries(self):
        return AuditLog(str(self.audit)).entries() if self.audit.exists() else []


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    wanted = [BASE, STATS] + [p for _n, p in APP] + [p for _n, p, _c in COLORS]
    busy = [port for port in wanted if not itc.port_is_free(port)]
    if busy:
        pytest.fail("ports already in use on 127.0.0.1: %s" % busy)
    lab = Stack(tmp_path_factory.mktemp("reliability"))
    itc.write_env_inventory(str(lab.inventory), {ENV_APP: (lab.lab_root, APP), ENV_BG: (lab.lab_root, COLORS)})
    try:
        lab.playbook("lab_up.yml", lab.extra)
        initial = lab.artifacts / ("meshapp-%s.tar.gz" % INITIAL)
        for name, port, _color in COLORS:  # the lab role renders the colored servers but does not run them
            itc.run_labctl(lab.lab_root, "install", name, INITIAL, "--artifact", initial, "--activate")
            itc.run_labctl(lab.lab_root, "instance-start", name, "--port", port, "--wait-ready", 15)
        itc.wait_for(lambda: all(s[0] == "UP" for s in lab.servers("be_blue").values())
                     and all(s[0] == "UP" for s in lab.servers("be_green").values()), 30, what="blue1/green1 UP")
        yield lab
    finally:
        itc.stop_lab(lab.lab_root, lab.extra)
        print(summary_table())


def summary_table():
    if not RESULTS:
        return "\nreliability: no kill recorded"
    lines = ["", "reliability: SIGKILL of ansible-playbook (process group) under traffic, then rerun with "
             "force_unlock=true (seed %s)" % seed()]
    fmt = "%-17s %-10s %-10s %-52s %-23s %-14s %-6s %s"
    lines.append(fmt % ("case", "strategy", "kill s", "task running at the kill", "rerun", "failed/reqs", "audit",
                        "left by the kill"))
    lines.append("(kill s: seconds after ansible-playbook started / after the anchor task began: the strategy's first "
                 "fleet change, for blue-green's 2nd kill the switch)")
    for row in RESULTS:
        lines.append(fmt % (row[:3] + (row[3].replace("meshos.release.deploy : ", "")[:52],) + row[4:]))
    total_failed = sum(int(row[5].split("/")[0]) for row in RESULTS)
    total_requests = sum(int(row[5].split("/")[1]) for row in RESULTS)
    converged = sum(1 for row in RESULTS if row[4].startswith("rc 0 converged"))
    lines.append("kills: %d, reruns converged: %d, failed requests: %d of %d, audit verified: %d"
                 % (len(RESULTS), converged, total_failed, total_requests,
                    sum(1 for row in RESULTS if row[6] == "ok")))
    return "\n".join(lines)


def seed():
    return int(os.environ.get("RELIABILITY_SEED", "16"))
