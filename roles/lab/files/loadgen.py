"""loadgen: steady synthetic user traffic for the lab, so gates see real request rates and errors.

Sends about --rps requests per second to --url from a few keep-alive connections and stops by itself after
--duration seconds (the lab restarts it on the next lab_up). Every 10 s it logs sent / ok / failed counts.
Standard library only.
"""

import argparse
import http.client
import signal
import sys
import threading
import time
from urllib.parse import urlsplit


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = self.ok = self.failed = 0

    def add(self, ok):
        with self.lock:
            self.sent += 1
            if ok:
                self.ok += 1
            else:
                self.failed += 1


def worker(url, interval, deadline, stop, counters):
    parts = urlsplit(url)
    conn = None
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=5)
            conn.request("GET", parts.path or "/")
            response = conn.getresponse()
            response.read()
            counters.add(200 <= response.status < 400)
        except (OSError, http.client.HTTPException):
            counters.add(False)
            if conn is not None:
                conn.close()
            conn = None
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    if conn is not None:
        conn.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--duration", type=float, default=7200.0, help="seconds before stopping by itself")
    args = parser.parse_args(argv)
    if args.rps <= 0 or args.connections <= 0:
        sys.stderr.write("loadgen: --rps and --connections must be positive\n")
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counters = Counters()
    deadline = time.monotonic() + args.duration
    interval = args.connections / args.rps
    threads = [threading.Thread(target=worker, args=(args.url, interval, deadline, stop, counters), daemon=True)
               for _index in range(args.connections)]
    for thread in threads:
        thread.start()
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(10)
        sys.stdout.write("loadgen %s sent=%d ok=%d failed=%d\n" % (args.url, counters.sent, counters.ok, counters.failed))
        sys.stdout.flush()
    stop.set()
    for thread in threads:
        thread.join(timeout=6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
