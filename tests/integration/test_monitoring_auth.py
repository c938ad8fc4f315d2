# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""health_gate's monitoring_auth against a real Prometheus and Alertmanager behind authenticating HTTPS proxies.

The test makes its own CA (openssl), a server certificate for 127.0.0.1, a client certificate, and a second CA that
signed nothing here. Two proxies in this process forward to the real Prometheus (``/api/v1/...``) and Alertmanager
(``/api/v2/...``): one wants a bearer token, the other basic auth plus a client certificate (mutual TLS). One
ansible-playbook run at -vvv with ANSIBLE_INJECT_INVOCATION=true goes through every case; then the output and the
results are searched for every secret (also base64, as basic auth sends it).

Ports 20600-20699 (the health_gate range in docs/design.md), checked free first. Prometheus and Alertmanager are
stopped by the fixture, the proxies shut down.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = os.path.dirname(sys.executable)
TOKEN = "mon-token-7f3a9c1e5b"
WRONG_TOKEN = "mon-token-wrong-0d2e"
USER = "gate-reader"
PASSWORD = "mon-pass-4b8e2f6a"
WRONG_PASSWORD = "mon-pass-wrong-91c3"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory):
    """ca.pem (+ key), server.pem/.key for IP 127.0.0.1, client.pem/.key, and other-ca.pem (trusted by nobody)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs key usage and basic constraints
        openssl("req", "-x509", *ec, "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
                "-subj", "/CN=meshos monitoring test " + name, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    for name, usage, san in (("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"), ("client", "clientAuth", "")):
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=directory)
        (directory / (name + ".ext")).write_text(
            san + "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % usage)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=directory)


class Proxy(ThreadingHTTPServer):
    """HTTPS proxy that lets a request through to Prometheus or Alertmanager only with the expected Authorization."""
    daemon_threads = True

    def __init__(self, port, authorization, upstreams, pki, client_ca=False):
        super().__init__(("127.0.0.1", port), ProxyHandler)
        self.authorization = authorization
        self.upstreams = upstreams
        self.seen = []  # (path, status)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(str(pki / "ca.pem"))
        self.socket = context.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request, client_address):
        pass  # a refused handshake (no client certificate, untrusted CA) is part of the test


class ProxyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != self.server.authorization:
            self.server.seen.append((self.path, 401))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="monitoring"')
            self.send_header("Content-Length", "12")
            self.end_headers()
            self.wfile.write(b"unauthorized")
            return
        port = self.server.upstreams["alertmanager" if self.path.startswith("/api/v2/") else "prometheus"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in ("authorization", "host"))
        conn.request(self.command, self.path, body=body or None, headers=headers)
        answer = conn.getresponse()
        payload = answer.read()
        conn.close()
        self.server.seen.append((self.path, answer.status))
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _forward
    do_POST = _forward


def wait_http(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return response.read()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("%s not answering within %ss" % (url, timeout))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not shutil.which("prometheus") or not shutil.which("prometheus-alertmanager") or not shutil.which("openssl"):
        pytest.skip("prometheus, prometheus-alertmanager or openssl not installed")
    prom_port, am_port, bearer_port, basic_port = free_ports(20600, 20699, 4)
    tmp = tmp_path_factory.mktemp("monitoring-auth")
    make_pki(tmp)
    procs, servers = [], []
    try:
        (tmp / "am.yml").write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
        for name, argv in (
                ("alertmanager", ["prometheus-alertmanager", "--config.file", str(tmp / "am.yml"),
                                  "--storage.path", str(tmp / "am-data"), "--cluster.listen-address=",
                                  "--web.listen-address", "127.0.0.1:%d" % am_port]),
                ("prometheus", ["prometheus", "--config.file", str(tmp / "prom.yml"),
                                "--storage.tsdb.path", str(tmp / "prom-data"),
                                "--web.listen-address", "127.0.0.1:%d" % prom_port])):
            if name == "prometheus":
                # Prometheus scrapes itself as the "meshapp" job: agents_unhealthy = 1 - avg(up) has real data
                (tmp / "prom.yml").write_text(
                    "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meshapp\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % prom_port)
            with open(tmp / (name + ".log"), "wb") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                              cwd=str(tmp)))
        wait_http("http://127.0.0.1:%d/-/ready" % am_port)
        wait_http("http://127.0.0.1:%d/-/ready" % prom_port)
        deadline = time.monotonic() + 30
        while not json.loads(wait_http("http://127.0.0.1:%d/api/v1/query?query=up" % prom_port))["data"]["result"]:
            assert time.monotonic() < deadline, "prometheus scraped nothing within 30s"
            time.sleep(0.5)
        upstreams = {"prometheus": prom_port, "alertmanager": am_port}
        basic = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
        for port, authorization, client_ca in ((bearer_port, "Bearer " + TOKEN, False), (basic_port, basic, True)):
            server = Proxy(port, authorization, upstreams, tmp, client_ca=client_ca)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        yield {"tmp": tmp, "prom_port": prom_port, "bearer": servers[0], "basic": servers[1],
               "bearer_url": "https://127.0.0.1:%d" % bearer_port, "basic_url": "https://127.0.0.1:%d" % basic_port}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def gate_task(name, url, auth, **extra):
    args = dict(source="prometheus", agents_source="prometheus", prometheus_url=url, alertmanager_url=url,
                checks=["agents_unhealthy", "critical_alerts"], alerts_required=True, window="5s", timeout=5)
    if auth is not None:
        args["monitoring_auth"] = auth
    args.update(extra)
    keep = "{{ results | combine({'%s': r_%s}) }}" % (name, name)
    return [{"name": name, "meshos.release.health_gate": args, "register": "r_" + name, "ignore_errors": True},
            {"name": "Keep " + name, "ansible.builtin.set_fact": {"results": keep}}]


def test_monitoring_auth_end_to_end(stack, tmp_path):
    pki = stack["tmp"]
    ca, other_ca = str(pki / "ca.pem"), str(pki / "other-ca.pem")
    client = {"client_cert": str(pki / "client.pem"), "client_key": str(pki / "client.key")}
    bearer, basic = stack["bearer_url"], stack["basic_url"]
    tasks = [{"name": "Start", "ansible.builtin.set_fact": {"results": {}}}]
    tasks += gate_task("bearer_ok", bearer, {"bearer_token": TOKEN, "ca_path": ca})
    tasks += gate_task("bearer_wrong", bearer, {"bearer_token": WRONG_TOKEN, "ca_path": ca})
    tasks += gate_task("bearer_missing", bearer, {"ca_path": ca})
    tasks += gate_task("untrusted_ca", bearer, {"bearer_token": TOKEN})
    tasks += gate_task("other_ca", bearer, {"bearer_token": TOKEN, "ca_path": other_ca})
    tasks += gate_task("basic_mtls_ok", basic, dict(client, username=USER, password=PASSWORD, ca_path=ca))
    tasks += gate_task("basic_wrong", basic, dict(client, username=USER, password=WRONG_PASSWORD, ca_path=ca))
    tasks += gate_task("no_client_cert", basic, {"username": USER, "password": PASSWORD, "ca_path": ca})
    tasks += gate_task("plaintext", "http://127.0.0.1:%d" % stack["prom_port"], {"bearer_token": TOKEN},
                       checks=["agents_unhealthy"], alerts_required=False, alertmanager_url=None)
    tasks.append({"name": "Save", "ansible.builtin.copy": {"content": "{{ results | to_json }}",
                                                           "dest": str(tmp_path / "results.json"), "mode": "0600"}})
    playbook = tmp_path / "auth.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], indent=1))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO_ROOT / ".build" / "collections"))
    env.update(ANSIBLE_INJECT_INVOCATION="true", ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOG_PATH=str(tmp_path / "ansible.log"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"))
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-vvv", "-i", "localhost,", "-c", "local",
                          str(playbook)], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert run.returncode == 0 and (tmp_path / "results.json").exists(), run.stdout[-3000:] + run.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for name, result in sorted(results.items()):
        print("%s: %s" % (name, result.get("msg")))

    def failure(name):
        result = results[name]
        assert result.get("failed") is True, (name, result.get("msg"))
        assert "\n" not in result["msg"]
        return result["msg"]

    # the right token / basic auth + client certificate: the gate reads both sources and passes
    for name, proxy in (("bearer_ok", "bearer"), ("basic_mtls_ok", "basic")):
        result = results[name]
        assert not result.get("failed") and result["verdict"] == "pass", (name, result.get("msg"))
        statuses = dict((c["name"], c["status"]) for c in result["checks"])
        assert statuses["agents_unhealthy"] == statuses["critical_alerts"] == "pass", (name, statuses)
        forwarded = [path for path, status in stack[proxy].seen if status == 200]
        assert any(p.startswith("/api/v1/query") for p in forwarded) and any(p.startswith("/api/v2/alerts")
                                                                             for p in forwarded)
    # a wrong or missing credential: fails closed, one line naming the URL and the HTTP status
    for name, url in (("bearer_wrong", bearer), ("bearer_missing", bearer), ("basic_wrong", basic)):
        msg = failure(name)
        # inconclusive, and with alerts_required the unread Alertmanager makes it a fail: closed either way
        assert results[name]["verdict"] in ("inconclusive", "fail")
        assert "%s/api/v1/query?" % url in msg and "answered HTTP 401" in msg, (name, msg)
    # the CA is verified: the system trust store and another CA both refuse the proxy's certificate
    for name in ("untrusted_ca", "other_ca"):
        msg = failure(name)
        assert bearer in msg and "CERTIFICATE_VERIFY_FAILED" in msg, (name, msg)
    # the proxy wants a client certificate: without one the TLS handshake fails
    msg = failure("no_client_cert")
    assert basic in msg and "unreachable" in msg, msg
    # credentials over plain http are refused before anything is sent
    msg = failure("plaintext")
    assert msg.startswith("prometheus_url http://127.0.0.1:%d is plain http://" % stack["prom_port"]), msg
    # no secret anywhere: -vvv output (with the masked invocation), the log file, the results
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.stdout
    outputs = run.stdout + run.stderr + (tmp_path / "ansible.log").read_text() + json.dumps(results)
    for secret in (TOKEN, WRONG_TOKEN, PASSWORD, WRONG_PASSWORD):
        for variant in (secret, base64.b64encode(("%s:%s" % (USER, secret)).encode()).decode()):
            assert variant not in outputs, secret
