# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Signal sources of the health gate (stdlib only, Python 3.9+, runs on managed hosts).

- ``fetch_many``: concurrent HTTP GET of many URLs. Plain ``http://`` goes through one selectors-based
  event loop (non-blocking sockets, no thread per request: 1,000 loopback endpoints well under a second);
  ``https://`` goes through a thread pool with certificate verification on by default.
- ``prometheus_query``: PromQL instant query over the HTTP API.
- ``alertmanager_alerts``: active, unsilenced, uninhibited alerts from the Alertmanager API v2.
- ``haproxy_show_stat``: ``show stat`` over the HAProxy runtime API (unix socket).
- ``kubernetes_agents``: the unhealthy agents of a Deployment or DaemonSet from its pods' readiness.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import selectors
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils.platform.base import PlatformError
from ansible_collections.meshos.release.plugins.module_utils.platform.haproxy import HAProxyClient
from ansible_collections.meshos.release.plugins.module_utils.platform.kube_api import pod_readiness
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError
from ansible_collections.meshos.release.plugins.module_utils._monitoring import request_options

try:
    from http.client import HTTPSConnection
except ImportError:  # pragma: no cover
    HTTPSConnection = None


class SourceError(MeshosError):
    """A signal source could not be read (unreachable, bad answer). One-line message."""


def _ssl_context(validate_certs):
    if validate_certs:
        return ssl.create_default_context()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _result(status=None, error=None, body=None, elapsed=0.0):
    return {"status": status, "error": error, "body": body, "elapsed": elapsed}


def _dechunk(data):
    out = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        size_text = data[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2
    return b"".join(out)


def _parse_response(raw):
    """(status, headers dict, body) from raw HTTP response bytes; status None when unparsable."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, b""
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None, {}, b""
    try:
        status = int(parts[1])
    except ValueError:
        return None, {}, b""
    headers = {}
    for line in lines[1:]:
        key, _sep, value = line.partition(b":")
        headers[key.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return status, headers, body


class _Conn:
    __slots__ = ("url", "sock", "request", "buf", "start", "deadline", "connected")

    def __init__(self, url, sock, request, start, deadline):
        self.url = url
        self.sock = sock
        self.request = request
        self.buf = bytearray()
        self.start = start
        self.deadline = deadline
        self.connected = False


def _response_complete(buf):
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = bytes(buf[:head_end]).lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            try:
                return len(buf) - head_end - 4 >= int(line.split(b":", 1)[1])
            except ValueError:
                return False
        if line.startswith(b"transfer-encoding:") and b"chunked" in line:
            return buf.endswith(b"0\r\n\r\n")
    return False


def _fetch_plain(urls, timeout, concurrency, want_body, clock=time.monotonic):
    """Event loop over non-blocking sockets for http:// URLs."""
    results = {}
    pending = list(reversed(urls))
    selector = selectors.DefaultSelector()
    addr_cache = {}
    active = 0

    def finish(conn, status=None, error=None):
        try:
            selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        elapsed = clock() - conn.start
        if error is not None:
            results[conn.url] = _result(error=error, elapsed=elapsed)
            return
        code, _headers, body = _parse_response(bytes(conn.buf))
        if code is None:
            results[conn.url] = _result(error="invalid HTTP response", elapsed=elapsed)
        else:
            results[conn.url] = _result(status=code, body=body if want_body else None, elapsed=elapsed)

    def start(url):
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        key = (host, port)
        if key not in addr_cache:
            try:
                addr_cache[key] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            except (socket.gaierror, UnicodeError) as exc:
                addr_cache[key] = exc
        info = addr_cache[key]
        now = clock()
        if isinstance(info, Exception):
            results[url] = _result(error="cannot resolve %s: %s" % (host, info))
            return False
        family, socktype, proto, _canon, sockaddr = info
        sock = socket.socket(family, socktype, proto)
        sock.setblocking(False)
        host_header = host if port == 80 else "%s:%d" % (host, port)
        if ":" in host and not host.startswith("["):
            host_header = "[%s]:%d" % (host, port)
        request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: meshos-health-gate\r\nAccept: */*\r\n"
                   "Connection: close\r\n\r\n" % (path, host_header)).encode("latin-1")
        conn = _Conn(url, sock, request, now, now + timeout)
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            sock.close()
            results[url] = _result(error="connect: %s" % errno.errorcode.get(err, err), elapsed=0.0)
            return False
        selector.register(sock, selectors.EVENT_WRITE, conn)
        return True

    while pending or active:
        while pending and active < concurrency:
            if start(pending.pop()):
                active += 1
        if not active:
            continue
        now = clock()
        nearest = min(key.data.deadline for key in selector.get_map().values())
        events = selector.select(max(0.0, min(nearest - now, 0.5)))
        for key, _mask in events:
            conn = key.data
            if not conn.connected:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(conn, error="connect: %s" % (errno.errorcode.get(err, err),))
                    active -= 1
                    continue
                try:
                    sent = conn.sock.send(conn.request)
                except OSError as exc:
                    finish(conn, error="send: %s" % exc)
                    active -= 1
                    continue
                conn.request = conn.request[sent:]
                if not conn.request:
                    conn.connected = True
                    selector.modify(conn.sock, selectors.EVENT_READ, conn)
                continue
            try:
                chunk = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                if conn.buf:
                    finish(conn)
                else:
                    finish(conn, error="recv: %s" % exc)
                active -= 1
                continue
            if chunk:
                conn.buf += chunk
                if not _response_complete(conn.buf):
                    continue
            finish(conn)
            active -= 1
        now = clock()
        for key in list(selector.get_map().values()):
            conn = key.data
            if now >= conn.deadline:
                finish(conn, error="timeout after %.1fs" % timeout)
                active -= 1
    selector.close()
    return results


def _fetch_tls(url, timeout, validate_certs, want_body, clock=time.monotonic):
    start = clock()
    parts = urlsplit(url)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    conn = HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=_ssl_context(validate_certs))
    try:
        conn.request("GET", path, headers={"User-Agent": "meshos-health-gate", "Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        return _result(status=response.status, body=body if want_body else None, elapsed=clock() - start)
    except (OSError, ssl.SSLError) as exc:
        return _result(error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__, elapsed=clock() - start)
    except Exception as exc:  # http.client.HTTPException and friends
        return _result(error="%s: %s" % (type(exc).__name__, exc), elapsed=clock() - start)
    finally:
        conn.close()


def fetch_many(urls, timeout=5.0, validate_certs=True, concurrency=256, want_body=False):
    """GET every URL concurrently. Returns {url: {status, error, body, elapsed}}."""
    urls = list(dict.fromkeys(urls))
    plain = [u for u in urls if urlsplit(u).scheme == "http"]
    tls = [u for u in urls if urlsplit(u).scheme == "https"]
    results = {}
    for url in urls:
        if url not in plain and url not in tls:
            results[url] = _result(error="unsupported URL scheme (use http:// or https://)")
    if tls:
        workers = max(1, min(concurrency, 64, len(tls)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = dict((url, pool.submit(_fetch_tls, url, timeout, validate_certs, want_body)) for url in tls)
            for url, future in futures.items():
                results[url] = future.result()
    if plain:
        results.update(_fetch_plain(plain, timeout, max(1, concurrency), want_body))
    return results


def http_json(url, timeout=5.0, validate_certs=True, method="GET", data=None, what="endpoint", auth=None):
    """GET/POST a JSON API; raises SourceError with a one-line message on any failure.

    ``auth`` is a normalized ``monitoring_auth`` (``_monitoring.normalize_auth``): bearer token, basic auth, client
    certificate, CA bundle; its ``validate_certs`` wins over the argument."""
    body = None
    options = request_options(auth, validate_certs)
    headers = options.pop("headers")
    headers.update({"Accept": "application/json", "User-Agent": "meshos-health-gate"})
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    try:
        response = open_url(url, data=body, headers=headers, method=method, timeout=timeout,
                            http_agent="meshos-health-gate", **options)
        payload = response.read()
        response.close()
    except HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace").replace("\n", " ")
        hint = " (credentials refused: check monitoring_auth)" if exc.code in (401, 403) else ""
        raise SourceError("%s %s answered HTTP %d: %s%s" % (what, url, exc.code, detail, hint))
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError("%s %s unreachable: %s" % (what, url, reason))
    try:
        return json.loads(payload.decode("utf-8")) if payload else None
    except ValueError:
        raise SourceError("%s %s answered something that is not JSON" % (what, url))


def prometheus_query(base_url, query, timeout=5.0, validate_certs=True, at=None, auth=None):
    """Instant query: list of (labels dict, float value). Raises SourceError when Prometheus fails."""
    params = {"query": query}
    if at is not None:
        params["time"] = "%.3f" % at
    url = base_url.rstrip("/") + "/api/v1/query?" + urlencode(params)
    answer = http_json(url, timeout=timeout, validate_certs=validate_certs, what="prometheus", auth=auth)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise SourceError("prometheus query %r failed: %s" % (query, error))
    data = answer.get("data") or {}
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        return [({}, float(result[1]))]
    out = []
    for item in result or []:
        try:
            out.append((item.get("metric") or {}, float(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def alertmanager_alerts(base_url, severities=None, matchers=None, timeout=5.0, validate_certs=True, auth=None):
    """Active alerts that are neither silenced nor inhibited, filtered by severity set and exact label matchers."""
    params = [("active", "true"), ("silenced", "false"), ("inhibited", "false"), ("unprocessed", "true")]
    for key, value in sorted((matchers or {}).items()):
        params.append(("filter", '%s="%s"' % (key, str(value).replace('"', '\\"'))))
    url = base_url.rstrip("/") + "/api/v2/alerts?" + urlencode(params)
    answer = http_json(url, timeout=timeout, validate_certs=validate_certs, what="alertmanager", auth=auth)
    if not isinstance(answer, list):
        raise SourceError("alertmanager %s answered something that is not a list of alerts" % base_url)
    wanted = set(severities or [])
    alerts = []
    for alert in answer:
        labels = alert.get("labels") or {}
        status = alert.get("status") or {}
        if status.get("state", "active") not in ("active", "unprocessed"):
            continue
        if status.get("silencedBy") or status.get("inhibitedBy"):
            continue
        if wanted and labels.get("severity") not in wanted:
            continue
        if any(labels.get(k) != str(v) for k, v in (matchers or {}).items()):
            continue
        alerts.append(labels)
    return alerts


def haproxy_command(socket_path, command, timeout=5.0):
    """Send one command to the HAProxy runtime API (``platform.haproxy.HAProxyClient``); return the answer text."""
    try:
        return HAProxyClient(socket_path, timeout=timeout).command(command)
    except PlatformError as exc:
        raise SourceError("haproxy runtime API %s unreachable: %s" % (socket_path, exc))


def haproxy_show_stat(socket_path, timeout=5.0):
    """Rows of ``show stat`` as dicts (pxname, svname, status, weight, ...)."""
    text = haproxy_command(socket_path, "show stat", timeout=timeout)
    if not text.startswith("# "):
        raise SourceError("haproxy runtime API %s: unexpected answer to 'show stat': %s"
                          % (socket_path, text.strip().splitlines()[0] if text.strip() else "empty"))
    reader = csv.DictReader(io.StringIO(text[2:]))
    return [dict(row) for row in reader if row.get("pxname")]


def kubernetes_agents(api, namespace, kind, name, max_restarts=0):
    """Options: API (a ``platform.kube_api.KubeClient``), NAMESPACE, KIND (Deployment or DaemonSet), NAME,
    MAX_RESTARTS (restarts a pod may have and still count as healthy, default 0). Returns desired, pods, ready,
    unhealthy (not Ready, CrashLoopBackOff, more restarts, or missing) and unhealthy_ratio (``kube_api.pod_readiness``)."""
    try:
        return pod_readiness(api, namespace, kind, name, max_restarts=max_restarts)
    except PlatformError as exc:
        raise SourceError("kubernetes %s %s/%s unreadable: %s" % (kind, namespace, name, exc))
