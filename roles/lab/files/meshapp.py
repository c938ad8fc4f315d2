"""meshapp: the lab's demo service.

One process = one instance. It serves the seed's health endpoints and Prometheus
metrics, and behaves according to the fault profile of the release it runs, so
tests can prove that gates and rollbacks react to real misbehaviour.

The release is a directory holding ``release.json``::

    {"version": "5.1.0", "fault": {"error_ratio": 0.1, "latency_ms": 200,
                                   "health_fail": false, "crash_on_start": false,
                                   "unready_after": 20}}

Faults: ``error_ratio`` (share of ``/`` answered 500), ``latency_ms`` (added to every ``/``), ``health_fail``
(``/health`` 500 and ``/ready`` 503), ``crash_on_start`` (exit 3 before listening) and ``unready_after`` (seconds
after start: ``/ready`` then answers 503 for good while ``/health`` keeps answering 200). ``/ready`` is the path
HAProxy health-checks (roles/lab/templates/haproxy.cfg.j2), so ``unready_after`` makes the instance drop out of
the load balancer as an agent while its own health check stays green: only a fleet-wide "> 10 % of agents
unhealthy" check (HAProxy server states) sees it, not a per-instance /health probe. 0 or absent: never.

Only the standard library is used: this file runs on managed hosts as-is.
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEFAULT_FAULT = {"error_ratio": 0.0, "latency_ms": 0, "health_fail": False, "crash_on_start": False,
                 "unready_after": 0}


class Metrics:
    """Request counter by code and one latency histogram, guarded by a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}  # (path, code) -> count
        self.bucket_counts = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, path, code, seconds):
        with self.lock:
            key = (path, str(code))
            self.requests[key] = self.requests.get(key, 0) + 1
            if seconds is None:
                return
            self.count += 1
            self.total += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[i] += 1

    def exposition(self, app):
        lines = [
            "# HELP meshapp_requests_total Requests served, by path and status code.",
            "# TYPE meshapp_requests_total counter",
        ]
        with self.lock:
            for (path, code), value in sorted(self.requests.items()):
                lines.append('meshapp_requests_total{path="%s",code="%s"} %d' % (path, code, value))
            lines += [
                "# HELP meshapp_request_duration_seconds Latency of traffic requests (path /).",
                "# TYPE meshapp_request_duration_seconds histogram",
            ]
            for bound, value in zip(BUCKETS, self.bucket_counts):
                lines.append('meshapp_request_duration_seconds_bucket{le="%s"} %d' % (bound, value))
            lines.append('meshapp_request_duration_seconds_bucket{le="+Inf"} %d' % self.count)
            lines.append("meshapp_request_duration_seconds_sum %.6f" % self.total)
            lines.append("meshapp_request_duration_seconds_count %d" % self.count)
        lines += [
            "# HELP meshapp_build_info Version of the running release.",
            "# TYPE meshapp_build_info gauge",
            'meshapp_build_info{version="%s",instance="%s"} 1' % (app.version, app.instance),
            "# HELP meshapp_up_seconds Seconds since the instance started.",
            "# TYPE meshapp_up_seconds gauge",
            "meshapp_up_seconds %.3f" % (time.time() - app.started),
            "# HELP process_cpu_seconds_total CPU time of this process.",
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total %.3f" % sum(os.times()[:2]),
            "# HELP process_resident_memory_bytes Resident memory of this process.",
            "# TYPE process_resident_memory_bytes gauge",
            "process_resident_memory_bytes %d" % _rss_bytes(),
        ]
        return "\n".join(lines) + "\n"


def _rss_bytes():
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class App:
    def __init__(self, instance, release_dir):
        self.instance = instance
        self.release_dir = os.path.realpath(release_dir)
        meta = {}
        path = os.path.join(self.release_dir, "release.json")
        if os.path.exists(path):
            with open(path) as handle:
                meta = json.load(handle)
        self.version = str(meta.get("version") or os.path.basename(self.release_dir))
        self.fault = dict(DEFAULT_FAULT, **(meta.get("fault") or {}))
        self.started = time.time()
        self.ready = False
        self.metrics = Metrics()

    def dropped_out(self):
        """True once the unready_after fault has taken this instance out (for good: a real agent that lost its
        registration does not come back by itself)."""
        after = float(self.fault["unready_after"] or 0)
        return after > 0 and time.time() - self.started >= after


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "meshapp"
    app = None  # set by main()

    def log_message(self, fmt, *args):  # keep logs quiet: traffic would flood them
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Meshapp-Version", self.app.version)
        self.send_header("X-Meshapp-Instance", self.app.instance)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        app = self.app
        path = self.path.split("?", 1)[0]
        start = time.monotonic()
        if path == "/metrics":
            self._send(200, app.metrics.exposition(app), "text/plain; version=0.0.4")
            return
        if path == "/health":
            code = 500 if app.fault["health_fail"] else 200
            self._send(code, json.dumps({"status": "fail" if code == 500 else "ok", "version": app.version}))
        elif path == "/ready":
            ok = app.ready and not app.fault["health_fail"] and not app.dropped_out()
            code = 200 if ok else 503
            self._send(code, json.dumps({"ready": ok}))
        elif path == "/status":
            code = 200
            self._send(code, json.dumps({
                "version": app.version, "instance": app.instance, "pid": os.getpid(),
                "uptime_seconds": round(time.time() - app.started, 3),
                "ready": app.ready and not app.dropped_out(),
                "release_dir": app.release_dir, "fault": app.fault,
            }))
        elif path == "/":
            if app.fault["latency_ms"]:
                time.sleep(app.fault["latency_ms"] / 1000.0)
            code = 500 if random.random() < app.fault["error_ratio"] else 200
            if code == 500:
                self._send(code, json.dumps({"error": "injected fault", "version": app.version}))
            else:
                self._send(code, json.dumps({"hello": "mesh", "version": app.version, "instance": app.instance}))
        else:
            code = 404
            self._send(code, json.dumps({"error": "not found"}))
        # only traffic requests feed the latency histogram; probes are counted, not timed
        app.metrics.observe(path, code, time.monotonic() - start if path == "/" else None)


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request, client_address):
        # HAProxy's health checks and clients that hang up reset the connection: normal, not worth a traceback
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--instance", default="meshapp")
    parser.add_argument("--release-dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="directory with release.json (default: this file's directory)")
    parser.add_argument("--ready-delay", type=float, default=0.2,
                        help="seconds before /ready turns 200, like a real warm-up")
    args = parser.parse_args(argv)

    app = App(args.instance, args.release_dir)
    if app.fault["crash_on_start"]:
        sys.stderr.write("meshapp %s: crash_on_start fault set, exiting\n" % app.version)
        return 3
    Handler.app = app
    server = Server((args.host, args.port), Handler)

    def mark_ready():
        app.ready = True
    threading.Timer(args.ready_delay, mark_ready).start()

    def stop(signum, frame):  # graceful: finish in-flight requests, then exit
        app.ready = False
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("meshapp %s instance %s listening on %s:%d\n" % (app.version, app.instance, args.host, args.port))
    sys.stdout.flush()
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
