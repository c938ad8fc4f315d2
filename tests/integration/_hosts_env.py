# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A mini environment for the rollout tests and the zero-downtime bench (no lab role needed).

Real processes on 127.0.0.1 in one port range: meshapp instances managed by roles/lab/files/labctl.py (which is also
the targets' restart_command), and a real HAProxy following docs/design.md (fe_main with route.map, be_app, be_blue,
be_green, admin socket). ``stop()`` runs ``labctl stop-all``: exactly the processes started here.
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABCTL = os.path.join(REPO, "roles", "lab", "files", "labctl.py")
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from ansible_collections.meshos.release.plugins.module_utils.platform.releases import install_release, switch_current  # noqa: E402

HAPROXY_CFG = """global
    stats socket {sock} mode 600 level admin
    stats timeout 30s
    hard-stop-after 10s
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 5s
    option http-server-close
    option redispatch 1
    retries 3
    retry-on all-retryable-errors
frontend fe_main
    bind 127.0.0.1:{fe_port}
    use_backend %[str(active),map({map},be_app)]
    default_backend be_app
{backends}
"""


def _backend(name, servers):
    lines = ["backend %s" % name, "    balance roundrobin", "    option httpchk GET /ready",
             "    default-server inter 500ms fall 2 rise 1 weight 100"]
    for server, port in servers:
        lines.append("    server %s 127.0.0.1:%d check" % (server, port))
    return "\n".join(lines) + "\n"


class Env:
    def __init__(self, root, port_base, app=4, blue=2, green=2, versions=("5.0.0", "5.1.0"), initial="5.0.0",
                 restart_wait=15):
        self.root = root
        self.lab = os.path.join(root, "lab")
        self.state_dir = os.path.join(root, "state")
        self.artifacts = os.path.join(root, "artifacts")
        self.fe_port = port_base
        self.sock = os.path.join(root, "haproxy", "admin.sock")
        self.map = os.path.join(root, "haproxy", "route.map")
        self.groups = {"be_app": [], "be_blue": [], "be_green": []}
        port = port_base + 1
        for backend, prefix, count in (("be_app", "app", app), ("be_blue", "blue", blue), ("be_green", "green", green)):
            for i in range(1, count + 1):
                self.groups[backend].append(("%s%d" % (prefix, i), port))
                port += 1
        self.versions = versions
        self.initial = initial
        self.restart_wait = restart_wait
        self.checksums = {}

    def labctl(self, *args):
        proc = subprocess.run([sys.executable, LABCTL, "--root", self.lab] + list(args), capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError("labctl %s failed: %s %s" % (" ".join(args), proc.stdout, proc.stderr))
        return json.loads(proc.stdout)

    def start(self, route="be_app", green_version=None):
        os.makedirs(os.path.dirname(self.sock), exist_ok=True)
        for version in self.versions:
            out = self.labctl("artifact", version, "--out", self.artifacts)
            self.checksums[version] = out["sha256"]
        for backend, servers in self.groups.items():
            for name, port in servers:
                version = green_version if (green_version and backend == "be_green") else self.initial
                root = os.path.join(self.lab, "hosts", name)
                install_release(root, version, self.artifact(version))
                switch_current(root, version)
                self.labctl("instance-start", name, "--port", str(port), "--wait-ready", "15")
        with open(self.map, "w") as handle:
            handle.write("active %s\n" % route)
        backends = "".join(_backend(b, s) for b, s in self.groups.items())
        cfg = os.path.join(self.root, "haproxy", "haproxy.cfg")
        with open(cfg, "w") as handle:
            handle.write(HAPROXY_CFG.format(sock=self.sock, fe_port=self.fe_port, map=self.map, backends=backends))
        self.labctl("proc-start", "haproxy", "--port", str(self.fe_port), "--", "haproxy", "-db", "-f", cfg)
        deadline = time.time() + 20
        while time.time() < deadline and not self.all_up():
            time.sleep(0.2)
        if not self.all_up():
            raise RuntimeError("HAProxy servers not UP in time")
        return self

    def all_up(self):
        try:
            out = _show_stat(self.sock)
        except (OSError, IndexError):
            return False
        rows = [r for r in out if r.get("svname") not in ("FRONTEND", "BACKEND")]
        return bool(rows) and all(r.get("status", "").startswith("UP") for r in rows)

    def stop(self):
        subprocess.run([sys.executable, LABCTL, "--root", self.lab, "stop-all"], capture_output=True, check=False)

    def artifact(self, version):
        return os.path.join(self.artifacts, "meshapp-%s.tar.gz" % version)

    def targets(self, backends=("be_app",)):
        out = []
        for backend in backends:
            for name, port in self.groups[backend]:
                target = {"name": name, "release_root": os.path.join(self.lab, "hosts", name),
                          "restart_command": "%s %s --root %s instance-restart {name} --wait-ready %s"
                          % (sys.executable, LABCTL, self.lab, self.restart_wait),
                          "ready_url": "http://127.0.0.1:%d/ready" % port,
                          "status_url": "http://127.0.0.1:%d/status" % port}
                if backend != "be_app":
                    target["color"] = backend[3:]
                out.append(target)
        return out

    def extra_vars(self, backends=("be_app",), **more):
        data = {"deploy_hosts": "localhost", "env": "itest", "state_dir": self.state_dir, "haproxy_socket": self.sock,
                "route_map": self.map, "targets": self.targets(backends),
                # this test's own audit log, state and lock (not the lab's shared /tmp/meshos-lab/release), no
                # Alertmanager (none runs here), and a short fleet watch after each deploy
                "release_work_dir": os.path.join(os.path.dirname(self.state_dir), "release"),
                "gate_alertmanager_url": "", "watch_seconds": 3}
        data.update(more)
        return data


def _show_stat(sock_path):
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(3)
    sock.connect(sock_path)
    sock.sendall(b"show stat\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    lines = data.decode().splitlines()
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:] if line.strip()]


def run_command(argv):
    """The restart runner for in-process use (the modules pass AnsibleModule.run_command)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def run_playbook(playbook, extra, check=False):
    """ansible-playbook with the given extra vars (a dict); returns the CompletedProcess."""
    path = os.path.join(extra["state_dir"], ".extra-%d.json" % time.monotonic_ns())
    os.makedirs(extra["state_dir"], exist_ok=True)
    with open(path, "w") as handle:
        json.dump(extra, handle)
    argv = ["ansible-playbook", "-i", "localhost,", "-c", "local", os.path.join(REPO, "playbooks", playbook),
            "-e", "@" + path]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=REPO)


class Load:
    """Continuous traffic from N threads with keep-alive connections; records (t, ok, latency, version)."""

    def __init__(self, port, threads=8, pause=0.0):
        self.port = port
        self.threads = threads
        self.pause = pause  # seconds between two requests of a thread (keeps the CPU for the code under test)
        self.samples = []
        self.errors = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = []

    def _worker(self):
        conn = None
        local = []
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                version = resp.getheader("X-Meshapp-Version")
                if not ok:
                    self.errors.append("HTTP %d" % resp.status)
            except (OSError, http.client.HTTPException) as exc:
                ok, version = False, None
                self.errors.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
            local.append((start, ok, time.monotonic() - start, version))
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()
        with self._lock:
            self.samples.extend(local)

    def __enter__(self):
        for dummy in range(self.threads):
            worker = threading.Thread(target=self._worker, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for worker in self._workers:
            worker.join(15)
        self.samples.sort()

    def stats(self, since=None, until=None):
        rows = [s for s in self.samples if (since is None or s[0] >= since) and (until is None or s[0] < until)]
        lat = sorted(s[2] for s in rows)
        p95 = lat[int(0.95 * (len(lat) - 1))] if lat else 0.0
        return {"requests": len(rows), "failures": sum(1 for s in rows if not s[1]), "p95_ms": round(p95 * 1000, 2)}

    def time_to_all(self, version, since):
        """Seconds from ``since`` until every later response came from ``version`` (None if never)."""
        last_other = None
        for start, ok, _lat, ver in self.samples:
            if start >= since and ver != version:
                last_other = start
        later = [s for s in self.samples if s[0] >= since]
        if not later:
            return None
        return round(((last_other if last_other is not None else since) - since), 3)


def set_route(sock_path, map_path, backend):
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    sock.sendall(("set map %s active %s\n" % (map_path, backend)).encode())
    sock.recv(4096)
    sock.close()
    with open(map_path, "w") as handle:
        handle.write("active %s\n" % backend)


def servers(sock_path, backend):
    """name -> (status, weight) of a backend's servers, from HAProxy itself."""
    return dict((r["svname"], (r["status"], int(r["weight"]))) for r in _show_stat(sock_path)
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND"))


def weights(sock_path, backend):
    return dict((r["svname"], int(r["weight"])) for r in _show_stat(sock_path)
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND"))


def run_module(module, args, check=False):
    """ansible localhost -m meshos.release.MODULE with JSON args; returns (rc, result dict) via the tree callback."""
    import shutil
    import tempfile
    tree = tempfile.mkdtemp(prefix="tree-")
    argv = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "meshos.release." + module,
            "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree",
               ANSIBLE_CALLBACK_TREE_DIR=tree)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=REPO)
        try:
            with open(os.path.join(tree, "localhost")) as handle:
                result = json.load(handle)
        except (OSError, ValueError):
            result = {"msg": proc.stdout + proc.stderr}
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return proc.returncode, result


def module_args(env, backends=("be_app",), **more):
    args = {"environment": "itest", "state_dir": env.state_dir, "haproxy_socket": env.sock, "route_map": env.map,
            "targets": env.targets(backends)}
    args.update(more)
    return args


def call_module(module, args, check=False):
    """The module's main() in this process (same code path as ``ansible -m``, without the seconds of ansible start-up
    that a loaded CI machine adds per call); returns (rc, result dict)."""
    import contextlib
    import importlib
    import io
    from ansible.module_utils.testing import patch_module_args
    mod = importlib.import_module("ansible_collections.meshos.release.plugins.modules." + module)
    data = dict(args)
    if check:
        data["_ansible_check_mode"] = True
    out = io.StringIO()
    rc = 0
    with patch_module_args(data), contextlib.redirect_stdout(out):
        try:
            mod.main()
        except SystemExit as exc:
            rc = exc.code or 0
    return rc, json.loads(out.getvalue())
