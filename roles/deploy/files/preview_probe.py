# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preview traffic for a blue-green idle color: GET each URL at a fixed rate for a bounded time.

The idle color receives no user traffic before the switch, so a gate on it would have no request to judge (and fails
closed). This sends the smoke traffic that a preview route would, straight to the idle instances, while the gate
watches their own metrics. Bounded in count and time; prints one JSON line with what it sent and what failed.

  preview_probe.py --seconds 5 --rate 10 [--path /] [--started-file F] [--stop-file F] URL [URL ...]
--started-file is written after the first round of requests, so the caller starts its gate once traffic flows;
--stop-file, once it exists, ends the probe before --seconds (the caller's gate is done).
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second per URL")
    parser.add_argument("--path", default="/")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--started-file", default="")
    parser.add_argument("--stop-file", default="")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 3600 or not 0 < args.rate <= 1000:
        parser.error("--seconds must be in (0, 3600] and --rate in (0, 1000]")
    sent = failed = 0
    deadline = time.monotonic() + args.seconds
    pause = 1.0 / args.rate
    while time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file)):
        started = time.monotonic()
        for base in args.urls:
            sent += 1
            try:
                with urllib.request.urlopen(base.rstrip("/") + args.path, timeout=args.timeout) as response:
                    response.read()
            except (urllib.error.URLError, OSError):
                failed += 1  # HTTPError is a URLError: a 5xx counts here too
        if args.started_file and sent == len(args.urls):
            with open(args.started_file, "w") as handle:
                handle.write("started\n")
        time.sleep(max(0.0, pause - (time.monotonic() - started)))
    print(json.dumps({"changed": False, "sent": sent, "failed": failed, "urls": args.urls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
