# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fan-out benchmark: meshos.release.health_gate vs ansible.builtin.uri in a loop, side by side in one run.

    . scripts/env.sh && python3 bench/health_gate_bench.py [--count 1000] [--uri-subset 100]

One asyncio process serves COUNT health endpoints on 127.0.0.2, ports 20000.. (the health_gate port range of
docs/design.md, on a second loopback address so it never collides with the integration tests on 127.0.0.1).
Measured, each with ansible-playbook on localhost (connection local):
  - health_gate checking all COUNT endpoints (task wall time = playbook time minus an empty playbook's time,
    and the gate's own ``elapsed``);
  - ansible.builtin.uri looping over the first URI_SUBSET endpoints, scaled linearly to COUNT (the uri loop
    costs about the same per item, and running 1,000 items takes minutes);
  - the in-process poller alone (fetch_many), median of 5 runs.
Prints a JSON line with the numbers and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
BODY = b'{"status": "ok"}'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % len(BODY)) + BODY


async def _handle(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(host, base, count):
    servers = [await asyncio.start_server(_handle, host, base + i, backlog=64, reuse_address=True)
               for i in range(count)]
    sys.stdout.write("serving %d ports\n" % len(servers))
    sys.stdout.flush()
    await asyncio.Event().wait()


def serve(host, base, count):
    try:
        asyncio.run(_serve(host, base, count))
    except KeyboardInterrupt:
        pass


def wait_port(host, port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("bench server did not come up on %s:%d" % (host, port))


def playbook(workdir, name, tasks):
    path = os.path.join(workdir, name + ".yml")
    with open(path, "w") as handle:
        handle.write("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                     "    - name: Start clock\n      ansible.builtin.set_fact:\n"
                     "        bench_t0: '{{ now().timestamp() }}'\n" + tasks
                     + "    - name: Stop clock\n      ansible.builtin.copy:\n"
                     "        content: '{{ now().timestamp() - (bench_t0 | float) }}'\n"
                     "        dest: %s/%s.time\n        mode: '0644'\n" % (workdir, name))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".build", "collections"))
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
                         cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit("%s failed:\n%s%s" % (name, run.stdout[-3000:], run.stderr[-3000:]))
    with open(os.path.join(workdir, name + ".time")) as handle:
        return float(handle.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve"])
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--base-port", type=int, default=20000)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--uri-subset", type=int, default=100)
    args = parser.parse_args()
    if args.count > 1000:
        raise SystemExit("--count: %d is above 1000 (the health_gate port range has 1000 ports)" % args.count)
    if args.mode == "serve":
        serve(args.host, args.base_port, args.count)
        return 0

    sys.path.insert(0, os.path.join(ROOT, ".build", "collections"))
    from ansible_collections.meshos.release.plugins.module_utils.gate.sources import fetch_many

    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", "--host", args.host,
                               "--base-port", str(args.base_port), "--count", str(args.count)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(args.host, args.base_port + args.count - 1)
        urls = ["http://%s:%d" % (args.host, args.base_port + i) for i in range(args.count)]
        health = [u + "/health" for u in urls]
        poll_times = []
        for _run in range(5):
            start = time.monotonic()
            answers = fetch_many(health, timeout=5)
            poll_times.append(time.monotonic() - start)
            bad = [u for u, a in answers.items() if a["status"] != 200]
            if bad:
                raise SystemExit("poller: %d endpoints failed, e.g. %s: %s" % (len(bad), bad[0], answers[bad[0]]))
        with tempfile.TemporaryDirectory(prefix="hg-bench-") as workdir:
            empty = playbook(workdir, "empty", "    - name: Nothing\n      ansible.builtin.meta: noop\n")
            gate_args = {"targets": urls, "checks": ["agents_unhealthy"]}
            gate_tasks = ("    - name: Gate\n      meshos.release.health_gate: %s\n      register: bench_gate\n"
                          "    - name: Save\n      ansible.builtin.copy:\n        content: '{{ bench_gate | to_json }}'\n"
                          "        dest: %s/gate.json\n        mode: '0644'\n" % (json.dumps(gate_args), workdir))
            gate_wall = playbook(workdir, "gate", gate_tasks)
            with open(os.path.join(workdir, "gate.json")) as handle:
                gate_result = json.load(handle)
            subset = urls[:args.uri_subset]
            uri_tasks = ("    - name: Check every endpoint the usual way\n      ansible.builtin.uri:\n"
                         "        url: '{{ item }}/health'\n        status_code: 200\n      loop: %s\n"
                         % json.dumps(subset))
            uri_wall = playbook(workdir, "uri", uri_tasks)
        gate_task = max(gate_wall - empty, 1e-3)
        uri_per_item = (uri_wall - empty) / len(subset)
        uri_scaled = uri_per_item * args.count
        report = {
            "endpoints": args.count,
            "poller_median_s": round(statistics.median(poll_times), 3),
            "poller_runs_s": [round(t, 3) for t in poll_times],
            "health_gate_verdict": gate_result.get("verdict"),
            "health_gate_module_elapsed_s": gate_result.get("elapsed"),
            "health_gate_task_s": round(gate_task, 3),
            "empty_playbook_s": round(empty, 3),
            "uri_subset": len(subset),
            "uri_subset_task_s": round(uri_wall - empty, 3),
            "uri_per_endpoint_s": round(uri_per_item, 4),
            "uri_scaled_to_all_s": round(uri_scaled, 1),
            "ratio_uri_vs_health_gate_task": round(uri_scaled / gate_task, 1),
        }
        print(json.dumps(report))
        values = (args.count, gate_task, gate_result.get("elapsed") or 0, uri_wall - empty, len(subset), args.count,
                  uri_scaled, uri_scaled / gate_task)
        print("health_gate checked %d endpoints in %.3f s (task) / %.3f s (gate); uri loop: %.1f s for %d, scaled to "
              "%d: %.1f s; ratio %.0fx" % values)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
