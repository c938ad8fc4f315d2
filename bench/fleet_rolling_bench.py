# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rolling deploy across a namespace fleet: meshos deploy.yml vs the canonical serial play; a host cut off mid-rollout.

Brings up the lab fleet (playbooks/lab/fleet_lab_up.yml: --hosts namespace hosts with sshd and meshapp 5.0.0, prefix
``wbn``, 10.81.1.0/24, one HAProxy on 127.0.0.1:28050, stats 28051) for environment ``staging``, then with continuous
traffic through HAProxy (failed requests counted):

1. ``playbooks/deploy.yml`` rolling, batch 25 %, to 5.1.0 (its batch gates as short as allowed, no watch);
2. ``bench/serial/serial_rolling.yml``: a ``serial: 25%`` play whose pre_tasks take the server out of HAProxy
   (delegate_to the balancer), which installs 5.2.0 the same way (copy + unpack, switch ``current``, restart, wait
   ready) and whose post_tasks put it back;
3. ``deploy.yml`` rolling to 5.3.0 again, and once its first batch switched, one host of a later batch is cut off
   (link down): the time from the cut until HAProxy has the host out and every other server UP (traffic fully back),
   and until the playbook ended (failed and rolled back).

Prints one JSON line with the measured seconds and the ratio serial / meshos. Not part of ``make test``.

    . scripts/env.sh && python3 bench/fleet_rolling_bench.py [--hosts 20] [--json out.json]    # several minutes
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NETFLEET = os.path.join(REPO, "roles", "lab", "files", "netfleet.py")
LABCTL = os.path.join(REPO, "roles", "lab", "files", "labctl.py")
PREFIX, SUBNET, PORT_BASE, ENV = "wbn", "10.81.1", 28050, "staging"


def playbook(inventory, path, extra, check=True):
    argv = ["ansible-playbook", "-i", inventory, os.path.join(REPO, path), "-e", json.dumps(extra)]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False, timeout=3600)
    seconds = time.monotonic() - start
    if check and proc.returncode != 0:
        sys.exit("%s failed (rc %d):\n%s" % (path, proc.returncode, (proc.stdout + proc.stderr)[-4000:]))
    return proc, seconds


def show_stat(sock):
    import socket
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock)
    conn.sendall(b"show stat\n")
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.close()
    lines = data.decode().splitlines()
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:] if line.strip()]


def servers(sock):
    return dict((r["svname"], r["status"]) for r in show_stat(sock)
                if r["pxname"] == "be_app" and r["svname"] not in ("FRONTEND", "BACKEND"))


class Load:
    """Continuous traffic through the balancer: 4 keep-alive clients; failed requests with their times."""

    def __init__(self, port, threads=4):
        self.port, self.threads = port, threads
        self.ok, self.failures = 0, []
        self._stop, self._lock, self._workers = threading.Event(), threading.Lock(), []

    def _worker(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                good = resp.status == 200
            except (OSError, http.client.HTTPException):
                good = False
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append(time.monotonic())
            self._stop.wait(0.02)

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


def current(host):
    return os.path.basename(os.readlink(os.path.join(host["release_root"], "current")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, default=5, help="hosts of one batch changed at once by deploy.yml")
    parser.add_argument("--root", help="fleet root (default: a new temporary directory, removed afterwards)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the namespace fleet needs root")
    import yaml

    root = args.root or tempfile.mkdtemp(prefix="wbn-bench-")
    inventory = os.path.join(root, "lab-inventory.yml")
    results = {"hosts": args.hosts, "batch": "25%"}
    try:
        start = time.monotonic()
        playbook(inventory, "playbooks/lab/fleet_lab_up.yml", {
            "fleet_root": root, "fleet_prefix": PREFIX, "fleet_subnet": SUBNET, "fleet_mode": "netns",
            "fleet_lab_layout": {ENV: args.hosts}, "fleet_lab_port_base": PORT_BASE, "fleet_lab_ha_environments": [],
            "fleet_lab_monitoring_environment": "none"})
        playbook(inventory, "playbooks/lab_up.yml", {})
        results["fleet_up_seconds"] = round(time.monotonic() - start, 1)
        with open(inventory) as handle:
            hosts = yaml.safe_load(handle)["all"]["children"][ENV]["hosts"]
        sock = os.path.join(root, "lab-%s" % ENV, "haproxy", "admin.sock")
        artifacts = os.path.join(root, "artifacts")
        for version in ("5.1.0", "5.2.0", "5.3.0"):
            subprocess.run([sys.executable, LABCTL, "artifact", version, "--out", artifacts], check=True,
                           capture_output=True, timeout=60)

        def artifact(version):
            return os.path.join(artifacts, "meshapp-%s.tar.gz" % version)

        # forks 5: the hosts of a batch at once, as Ansible's default forks do for the serial play
        fast = {"env": ENV, "strategy": "rolling", "batch_size": "25%", "gate_duration": 1, "gate_window": 1,
                "gate_interval": 1, "watch_seconds": 0, "platform_options": {"forks": args.forks}}

        with Load(PORT_BASE) as load:
            dummy, seconds = playbook(inventory, "playbooks/deploy.yml",
                                      dict(fast, version="5.1.0", artifact=artifact("5.1.0")))
        assert set(current(h) for h in hosts.values()) == {"5.1.0"}
        results["meshos_seconds"] = round(seconds, 1)
        results["meshos_failed_requests"] = len(load.failures)
        results["meshos_requests"] = load.ok + len(load.failures)

        with Load(PORT_BASE) as load:
            dummy, seconds = playbook(inventory, "bench/serial/serial_rolling.yml", {
                "env": ENV, "version": "5.2.0", "artifact": artifact("5.2.0"), "haproxy_socket": sock,
                "batch": "25%"})
        assert set(current(h) for h in hosts.values()) == {"5.2.0"}
        results["serial_seconds"] = round(seconds, 1)
        results["serial_failed_requests"] = len(load.failures)
        results["serial_requests"] = load.ok + len(load.failures)
        results["ratio_serial_to_meshos"] = round(results["serial_seconds"] / results["meshos_seconds"], 2)

        # a host of the last batch is cut off once the first batch switched
        names = sorted(hosts, key=lambda n: int("".join(c for c in n if c.isdigit()) or 0))
        first, victim = names[0], names[-1]
        cut = {}

        def cut_when_first_switched():
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if current(hosts[first]) == "5.3.0":
                    cut["at"] = time.monotonic()
                    subprocess.run([sys.executable, NETFLEET, "--root", root, "fault", victim, "link-down"],
                                   check=True, capture_output=True, timeout=60)
                    cut["done"] = time.monotonic()
                    back = None
                    while time.monotonic() < deadline and not cut.get("stop"):
                        states = servers(sock)
                        others_up = all(st.startswith("UP") for name, st in states.items()
                                        if name != victim and not st.startswith("MAINT"))
                        if not states[victim].startswith("UP") and others_up:
                            back = back or time.monotonic()
                        else:
                            back = None
                        if back and time.monotonic() - back > 2:
                            break
                        time.sleep(0.05)
                    cut["back"] = back
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=cut_when_first_switched, daemon=True)
        watcher.start()
        with Load(PORT_BASE) as load:
            proc, seconds = playbook(inventory, "playbooks/deploy.yml",
                                     dict(fast, version="5.3.0", artifact=artifact("5.3.0")), check=False)
            ended = time.monotonic()
        cut["stop"] = True
        watcher.join(10)
        if "at" not in cut:
            sys.exit("the first host never switched to 5.3.0:\n%s" % (proc.stdout + proc.stderr)[-3000:])
        results["cut_host"] = victim
        results["cut_deploy_rc"] = proc.returncode
        results["cut_to_out_of_rotation_seconds"] = round(cut["back"] - cut["at"], 2) if cut.get("back") else None
        results["cut_to_playbook_end_seconds"] = round(ended - cut["at"], 1)
        results["cut_failed_requests"] = len(load.failures)
        results["cut_failed_requests_after_back"] = (len([f for f in load.failures if f > cut["back"]])
                                                     if cut.get("back") else None)
        results["cut_versions_after"] = dict((n, current(hosts[n])) for n in names)
        subprocess.run([sys.executable, NETFLEET, "--root", root, "fault", victim, "clear"], capture_output=True,
                       timeout=60, check=False)
    finally:
        if os.path.exists(inventory):
            subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO, "playbooks", "lab_down.yml")],
                           capture_output=True, cwd=REPO, check=False, timeout=600)
        subprocess.run([sys.executable, NETFLEET, "--root", root, "down"], capture_output=True, check=False,
                       timeout=600)
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, sort_keys=True))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
