# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Zero-downtime benchmark for the hosts-behind-HAProxy backend (ports 21500-21599).

Builds the mini environment of tests/integration/_hosts_env.py (4 app + 2 blue + 2 green meshapp instances, a real
HAProxy), runs continuous traffic through the frontend and drives the strategies in-process (module_utils, no Ansible
start-up in the timings). Prints requests, failures and P95 before vs during each phase, and the time from rollback
start to 100 % of traffic on the old version, and next to the load generator's own counts what HAProxy measured
(``traffic.measured`` of the strategies: requests, failed requests, downtime with no ready server).

    . scripts/env.sh && python3 bench/zero_downtime_bench.py [--threads 8] [--json out.json]
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

import _hosts_env as h  # noqa: E402

from ansible_collections.meshos.release.plugins.module_utils.rollout.runner import (  # noqa: E402
    build_runner, common_argument_spec, measured_run)


def _params(env, backends):
    params = dict((k, v.get("default")) for k, v in common_argument_spec().items())
    params.update(h.module_args(env, backends))
    return params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--port-base", type=int, default=21500)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="meshos-zd-bench-")
    env = h.Env(root, args.port_base)
    results = []
    try:
        env.start()
        app, colors = ("be_app",), ("be_blue", "be_green")

        def phase(name, route, backends, action, old_version=None):
            if route:
                h.set_route(env.sock, env.map, route)
            params = _params(env, backends)
            runner = build_runner(params, False, need_color=backends == colors, run_command=h.run_command)
            with h.Load(env.fe_port, args.threads) as load:
                time.sleep(2.0)
                t0 = time.monotonic()
                out = measured_run(runner, params, lambda: action(runner))
                t1 = time.monotonic()
                time.sleep(1.0)
            row = {"phase": name, "before": load.stats(None, t0), "during": load.stats(t0, t1),
                   "seconds": round(t1 - t0, 3), "status": out.get("status"), "haproxy": out["traffic"]["measured"]}
            if old_version:
                row["to_100pct_old_s"] = load.time_to_all(old_version, t0)
            results.append(row)
            return out

        art = env.artifact("5.1.0")
        phase("rolling deploy 4 hosts", "be_app", app, lambda r: r.rolling("5.1.0", art, env.checksums["5.1.0"]))
        phase("rolling rollback 4 hosts", None, app, lambda r: r.rollback("rolling", "5.0.0"), "5.0.0")
        phase("canary start 5%", "be_app", app, lambda r: r.canary("start", "5.1.0", art, initial_traffic=5))
        phase("canary abort", None, app, lambda r: r.canary("abort", None), "5.0.0")
        phase("blue-green deploy", "be_blue", colors, lambda r: r.blue_green("5.1.0", art))
        phase("blue-green rollback", None, colors, lambda r: r.rollback("blue-green", None), "5.0.0")
    finally:
        env.stop()
    header = ("phase", "req.before", "fail", "p95.ms", "req.during", "fail", "p95.ms", "secs", "to100%old",
              "hap.req", "hap.fail", "hap.down.s")
    print("%-26s %9s %6s %8s %9s %6s %8s %8s %10s %8s %8s %10s" % header)
    for row in results:
        hap = row["haproxy"]
        print("%-26s %9d %6d %8.2f %9d %6d %8.2f %8.3f %10s %8s %8s %10s" % (
            row["phase"], row["before"]["requests"], row["before"]["failures"], row["before"]["p95_ms"],
            row["during"]["requests"], row["during"]["failures"], row["during"]["p95_ms"], row["seconds"],
            row.get("to_100pct_old_s", "-"), hap.get("requests", "n/a"), hap.get("failed_requests", "n/a"),
            hap.get("downtime_seconds", hap.get("reason", "n/a"))))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    failures = sum(r["during"]["failures"] + r["before"]["failures"] for r in results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
