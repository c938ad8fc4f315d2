# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy runtime API client over the admin unix socket and its traffic meter (stdlib only, Python 3.9+).

One command per connection (non-interactive mode). Every failure is a one-line ``PlatformError`` subclass:
missing socket, permission denied, unknown backend/server/map, or a command HAProxy rejected.
"""

from __future__ import annotations

import errno
import os
import socket
import typing as t

from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ConfigError,
    NotFoundError,
    PlatformError,
)

SERVER_STATES = ("ready", "drain", "maint")
MAX_WEIGHT = 256


class HAProxyError(PlatformError):
    """The runtime API is unreachable or rejected a command."""


def _state_of(status: str) -> str:
    """ready/drain/maint/down from the ``status`` column of ``show stat``."""
    status = (status or "").upper()
    if status.startswith("MAINT"):
        return "maint"
    if status.startswith("DRAIN") or status.startswith("NOLB"):
        return "drain"
    if status.startswith("UP") or status == "NO CHECK":
        return "ready"
    return "down"


def tcp_address(address: str) -> t.Optional[t.Tuple[str, int]]:
    """(host, port) of a ``tcp://HOST:PORT`` runtime API address, None for a unix socket path; ConfigError else."""
    if not address.startswith("tcp://"):
        if not address.startswith("/"):
            raise ConfigError("invalid HAProxy runtime API %r: expected an absolute unix socket path or tcp://HOST:PORT"
                              % (address,))
        return None
    host, sep, port = address[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("invalid HAProxy runtime API %r: expected tcp://HOST:PORT (port 1-65535)" % (address,))
    return host, int(port)


class HAProxyClient:
    """Talks to ``stats socket ... level admin``: a unix socket path, or ``tcp://HOST:PORT`` (``ipv4@`` socket)."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.tcp = tcp_address(socket_path)

    # ------------------------------------------------------------------ transport
    def check(self) -> None:
        """Raise a clear error when the socket is missing or not accessible."""
        if self.tcp is None and not os.path.exists(self.socket_path):
            raise HAProxyError("HAProxy admin socket %s does not exist: is HAProxy running with "
                               "'stats socket %s level admin'?" % (self.socket_path, self.socket_path))
        self.command("show info")

    def command(self, cmd: str) -> str:
        if "\n" in cmd or ";" in cmd:
            raise ConfigError("refusing HAProxy command %r: newlines and ';' are not allowed" % cmd)
        if self.tcp is not None:
            sock = socket.socket(socket.AF_INET6 if ":" in self.tcp[0] else socket.AF_INET, socket.SOCK_STREAM)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.tcp or self.socket_path)
            except FileNotFoundError:
                raise HAProxyError("HAProxy admin socket %s does not exist: is HAProxy running with "
                                   "'stats socket %s level admin'?" % (self.socket_path, self.socket_path))
            except PermissionError:
                raise HAProxyError("permission denied on HAProxy admin socket %s: run as a user that may write to "
                                   "it (socket mode/owner)" % self.socket_path)
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED:
                    raise HAProxyError("HAProxy admin socket %s refuses connections: HAProxy is not running"
                                       % self.socket_path)
                raise HAProxyError("cannot connect to HAProxy admin socket %s: %s"
                                   % (self.socket_path, exc.strerror or exc))
            sock.sendall((cmd + "\n").encode())
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            raise HAProxyError("HAProxy admin socket %s did not answer %r within %ss"
                               % (self.socket_path, cmd, self.timeout))
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace")

    def _checked(self, cmd: str) -> str:
        """Run a mutating command; HAProxy answers nothing (or a blank line) on success."""
        out = self.command(cmd).strip()
        if not out:
            return out
        low = out.lower()
        if "permission denied" in low:
            raise HAProxyError("HAProxy refused %r: permission denied (the socket needs 'level admin')" % cmd)
        if "no such backend" in low or "no such server" in low or "unknown map" in low or "not found" in low:
            raise NotFoundError("HAProxy: %r failed: %s" % (cmd, out.splitlines()[0]))
        raise HAProxyError("HAProxy rejected %r: %s" % (cmd, " ".join(out.split())))

    # ------------------------------------------------------------------ reads
    def show_stat(self) -> t.List[t.Dict[str, str]]:
        out = self.command("show stat")
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines or not lines[0].startswith("# "):
            raise HAProxyError("unexpected answer to 'show stat' from %s: %s"
                               % (self.socket_path, (lines[0] if lines else "empty")[:200]))
        header = lines[0][2:].split(",")
        rows = []
        for line in lines[1:]:
            rows.append(dict(zip(header, line.split(","))))
        return rows

    def servers(self, backend: str) -> t.Dict[str, t.Dict[str, t.Any]]:
        """Servers of one backend: name -> {state, status, weight, sessions, address}."""
        found = False
        result = {}
        for row in self.show_stat():
            if row.get("pxname") != backend:
                continue
            found = True
            if row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            result[row["svname"]] = {
                "state": _state_of(row.get("status", "")),
                "status": row.get("status", ""),
                "weight": int(row.get("weight") or 0),
                "sessions": int(row.get("scur") or 0),
                "address": row.get("addr", ""),
            }
        if not found:
            raise NotFoundError("HAProxy backend %r not found (known: %s)" % (backend, ", ".join(self.backends())))
        return result

    def backends(self) -> t.List[str]:
        names = []
        for row in self.show_stat():
            if row.get("svname") == "BACKEND" and row.get("pxname") not in names:
                names.append(row["pxname"])
        return names

    def server(self, backend: str, server: str) -> t.Dict[str, t.Any]:
        servers = self.servers(backend)
        if server not in servers:
            raise NotFoundError("HAProxy server %r not found in backend %r (known: %s)"
                                % (server, backend, ", ".join(sorted(servers)) or "none"))
        return servers[server]

    def show_map(self, map_path: str) -> t.Dict[str, str]:
        out = self.command("show map %s" % map_path)
        entries = {}
        for line in out.splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3 and parts[0].startswith("0x"):
                entries[parts[1]] = parts[2]
            else:
                low = line.lower()
                if "unknown map" in low or "not found" in low or "missing" in low:
                    raise NotFoundError("HAProxy map %s not found: %s" % (map_path, line.strip()))
                raise HAProxyError("unexpected answer to 'show map %s': %s" % (map_path, line.strip()))
        return entries

    # ------------------------------------------------------------------ writes
    def set_server_state(self, backend: str, server: str, state: str) -> None:
        if state not in SERVER_STATES:
            raise ConfigError("invalid HAProxy server state %r: expected one of %s" % (state, ", ".join(SERVER_STATES)))
        self._checked("set server %s/%s state %s" % (backend, server, state))

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
            raise ConfigError("invalid HAProxy weight %r: expected an integer 0-%d" % (weight, MAX_WEIGHT))
        self._checked("set weight %s/%s %d" % (backend, server, weight))

    def set_map(self, map_path: str, key: str, value: str) -> None:
        self._checked("set map %s %s %s" % (map_path, key, value))


# ---------------------------------------------------------------------------- measured traffic

def _num(row: t.Dict[str, str], key: str) -> int:
    try:
        return int(row.get(key) or 0)
    except ValueError:
        return 0


class TrafficMeter:
    """Measures what clients saw during an operation from HAProxy's own counters (``show stat``).

    ``start()`` reads the counters and starts a sampler thread; every sample records whether each live backend had at
    least one server UP with a weight above 0. ``stop()`` takes a last sample and returns the ``measured`` dict:
    requests and 5xx answers of the frontends (delta of ``req_tot`` / ``hrsp_5xx``), backend connection/response errors,
    retries and redispatches, and ``downtime_seconds`` = time during which a live backend had no ready server
    (sample-and-hold between samples, so the resolution is ``interval``). When HAProxy cannot be read the result is
    ``{source: null, reason: ...}``: a number is never invented.
    """

    def __init__(self, client: HAProxyClient, live_backends: t.Callable[[], t.List[str]],
                 frontends: t.Optional[t.List[str]] = None, interval: float = 0.25,
                 clock: t.Optional[t.Callable[[], float]] = None, thread: bool = True) -> None:
        import time as _time
        self.client = client
        self.live_backends = live_backends
        self.frontends = list(frontends or [])
        self.interval = interval
        self.clock = clock or _time.monotonic
        self.use_thread = thread
        self.first = None  # type: t.Optional[t.Dict[str, t.Any]]
        self.last = None  # type: t.Optional[t.Dict[str, t.Any]]
        self.samples = 0
        self.downtime = 0.0
        self.error = None  # type: t.Optional[str]
        self._prev_at = None  # type: t.Optional[float]
        self._prev_down = False
        self._stopped = None  # type: t.Any
        self._thread = None  # type: t.Any
        self._lock = None  # type: t.Any
        self.result = None  # type: t.Optional[t.Dict[str, t.Any]]

    def _read(self) -> t.Dict[str, t.Any]:
        rows = self.client.show_stat()
        try:
            backends = list(self.live_backends())
        except PlatformError:
            backends = []
        counters = {"requests": 0, "failed_requests": 0, "backend_5xx": 0, "server_5xx": 0, "econ": 0, "eresp": 0,
                    "retries": 0, "redispatches": 0}
        frontends = []
        ready = dict((b, 0) for b in backends)
        for row in rows:
            px, sv = row.get("pxname", ""), row.get("svname", "")
            if sv == "FRONTEND" and (px in self.frontends if self.frontends else row.get("mode", "http") == "http"):
                if not self.frontends and px.startswith("stats"):
                    continue  # the stats page is not the service
                frontends.append(px)
                counters["requests"] += _num(row, "req_tot")
                counters["failed_requests"] += _num(row, "hrsp_5xx")
            elif px in ready and sv == "BACKEND":
                counters["backend_5xx"] += _num(row, "hrsp_5xx")
                counters["econ"] += _num(row, "econ")
                counters["eresp"] += _num(row, "eresp")
                counters["retries"] += _num(row, "wretr")
                counters["redispatches"] += _num(row, "wredis")
            elif px in ready:
                # per server: 5xx answers HAProxy may have retried elsewhere (the client then saw no error)
                counters["server_5xx"] += _num(row, "hrsp_5xx")
                if _state_of(row.get("status", "")) == "ready" and _num(row, "weight") > 0:
                    ready[px] += 1
        if self.frontends:
            missing = sorted(set(self.frontends) - set(frontends))
            if missing:
                raise HAProxyError("HAProxy frontend(s) %s not found" % ", ".join(missing))
        return {"at": self.clock(), "counters": counters, "frontends": sorted(set(frontends)), "ready": ready,
                "down": [b for b, n in ready.items() if n == 0]}

    def sample(self) -> None:
        """One sample; errors are kept (the result then says why it is not measured)."""
        try:
            snap = self._read()
        except PlatformError as exc:
            self.error = str(exc)
            return
        if self._prev_at is not None and self._prev_down:
            self.downtime += max(0.0, snap["at"] - self._prev_at)
        self._prev_at = snap["at"]
        self._prev_down = bool(snap["down"])
        if self.first is None:
            self.first = snap
        self.last = snap
        self.samples += 1

    def start(self) -> "TrafficMeter":
        import threading
        self.sample()
        if self.first is None or not self.use_thread:
            return self
        self._stopped = threading.Event()
        self._lock = threading.Lock()

        def loop() -> None:
            while not self._stopped.wait(self.interval):
                with self._lock:
                    self.sample()

        self._thread = threading.Thread(target=loop, name="haproxy-traffic-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> t.Dict[str, t.Any]:
        if self.result is not None:
            return self.result
        if self._thread is not None:
            self._stopped.set()
            self._thread.join(self.interval * 4 + self.client.timeout)
        if self.first is not None:
            self.sample()
        self.result = self.measured()
        return self.result

    def measured(self) -> t.Dict[str, t.Any]:
        source = "haproxy:%s" % self.client.socket_path
        if self.first is None or self.last is None:
            return {"source": None, "reason": "HAProxy counters could not be read: %s" % (self.error or "no sample")}
        if self.error and self.last is self.first:
            return {"source": None, "reason": "HAProxy counters could not be read during the operation: %s"
                    % self.error}
        delta = dict((k, self.last["counters"][k] - self.first["counters"][k]) for k in self.first["counters"])
        if any(v < 0 for v in delta.values()):
            # a reload/restart of HAProxy resets its counters: the difference means nothing
            return {"source": None, "reason": "HAProxy counters went backwards during the operation (HAProxy was "
                    "reloaded or restarted)"}
        result = {"source": source, "frontends": self.last["frontends"],
                  "window_seconds": round(self.last["at"] - self.first["at"], 3),
                  "downtime_seconds": round(self.downtime, 3), "samples": self.samples,
                  "sample_interval": self.interval}
        result.update(delta)
        if self.error:
            result["warning"] = "some samples failed: %s" % self.error
        return result
