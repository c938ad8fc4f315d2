# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What community.general.haproxy does for the canonical serial play (the bench has no community.general).

    haproxy_server.py SOCKET BACKEND SERVER disabled|enabled [--timeout 30]

disabled: drain, wait until the server has no session, then maint (``state: disabled, drain: true, wait: true``).
enabled: ready, then wait until the health check reports it UP (``state: enabled, wait: true``).
"""

import argparse
import socket
import sys
import time


def command(path, cmd):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    sock.sendall((cmd + "\n").encode())
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
    sock.close()
    return b"".join(chunks).decode()


def server_row(path, backend, server):
    lines = command(path, "show stat").splitlines()
    header = lines[0][2:].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    sys.exit("server %s/%s not found" % (backend, server))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("backend")
    parser.add_argument("server")
    parser.add_argument("state", choices=["disabled", "enabled"])
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    name = "%s/%s" % (args.backend, args.server)
    if args.state == "disabled":
        command(args.socket, "set server %s state drain" % name)
        while int(server_row(args.socket, args.backend, args.server)["scur"] or 0) > 0:
            if time.monotonic() > deadline:
                sys.exit("%s still has sessions" % name)
            time.sleep(0.1)
        command(args.socket, "set server %s state maint" % name)
    else:
        command(args.socket, "set server %s state ready" % name)
        while not server_row(args.socket, args.backend, args.server)["status"].startswith("UP"):
            if time.monotonic() > deadline:
                sys.exit("%s not UP" % name)
            time.sleep(0.1)


if __name__ == "__main__":
    main()
