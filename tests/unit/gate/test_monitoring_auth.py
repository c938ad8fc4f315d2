# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of monitoring_auth: validation, the open_url arguments it builds, and the requests the gate's
Prometheus and Alertmanager sources send with it (open_url replaced, no network)."""

from __future__ import annotations

import io
import json

import pytest

from ansible_collections.meshos.release.plugins.module_utils import _monitoring as monitoring
from ansible_collections.meshos.release.plugins.module_utils.gate import sources
from ansible_collections.meshos.release.plugins.module_utils.gate.loop import Gate, Sources
from ansible_collections.meshos.release.plugins.module_utils.gate.policy import PolicyError

TOKEN = "tok-Secret-123"
PASSWORD = "pw-Secret-456"


@pytest.fixture
def pem(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def test_request_options_bearer_basic_and_tls_files(pem):
    auth = monitoring.normalize_auth({"bearer_token": " %s\n" % TOKEN.strip(), "ca_path": str(pem / "ca.pem")}, True)
    assert monitoring.request_options(auth) == {
        "headers": {"Authorization": "Bearer " + TOKEN}, "validate_certs": True, "ca_path": str(pem / "ca.pem")}
    auth = monitoring.normalize_auth({"username": "gate", "password": PASSWORD, "client_cert": str(pem / "client.pem"),
                                      "client_key": str(pem / "client.key")}, validate_certs=False)
    assert monitoring.request_options(auth) == {
        "headers": {}, "validate_certs": False, "url_username": "gate", "url_password": PASSWORD,
        "force_basic_auth": True, "client_cert": str(pem / "client.pem"), "client_key": str(pem / "client.key")}
    # its own validate_certs wins over the module's; no auth keeps the module's
    auth = monitoring.normalize_auth({"validate_certs": True}, validate_certs=False)
    assert monitoring.request_options(auth)["validate_certs"] is True
    assert monitoring.request_options(None, validate_certs=False) == {"headers": {}, "validate_certs": False}
    # roles pass "" for unset keys
    assert monitoring.normalize_auth({"bearer_token": "", "username": "", "password": "", "ca_path": ""})["bearer_token"] \
        is None


@pytest.mark.parametrize("auth,match", [
    ({"bearer_token": TOKEN, "username": "u", "password": PASSWORD}, "both bearer_token and username"),
    ({"password": PASSWORD}, "password is set without username"),
    ({"username": "u"}, "username is set without password"),
    ({"client_key": "/etc/hosts"}, "client_key is set without client_cert"),
    ({"ca_path": "/nonexistent/ca.pem"}, "ca_path /nonexistent/ca.pem is not a readable file"),
    ({"bearer_token": TOKEN + "\r\nX-Evil: 1"}, "bearer_token contains a line break"),
    ({"bearer_token": "   "}, "bearer_token is blank"),
    ({"token": TOKEN}, "key token is not allowed"),
    ({"validate_certs": "no"}, "validate_certs 'no' is not allowed"),
    ("Bearer " + TOKEN, "must be a dictionary"),
])
def test_bad_auth_fails_with_one_line_and_no_secret(auth, match):
    with pytest.raises(monitoring.MonitoringAuthError) as err:
        monitoring.normalize_auth(auth)
    message = str(err.value)
    assert match in message and "\n" not in message
    assert TOKEN not in message and PASSWORD not in message


def test_credentials_never_over_plain_http():
    auth = monitoring.normalize_auth({"bearer_token": TOKEN})
    with pytest.raises(monitoring.MonitoringAuthError) as err:
        monitoring.check_url(auth, "http://prom:9090", "prometheus_url")
    assert str(err.value).startswith("prometheus_url http://prom:9090 is plain http://")
    monitoring.check_url(auth, "https://prom:9090", "prometheus_url")
    monitoring.check_url(monitoring.normalize_auth({"bearer_token": TOKEN, "allow_plaintext": True}),
                         "http://127.0.0.1:9090", "prometheus_url")
    monitoring.check_url(monitoring.normalize_auth({}), "http://prom:9090", "prometheus_url")  # nothing to protect
    # the gate refuses it before anything is polled, as a policy error (one line, fails the task)
    with pytest.raises(PolicyError) as err:
        Gate({"checks": ["critical_alerts"], "alertmanager_url": "http://am:9093", "monitoring_auth": {"bearer_token": TOKEN}})
    assert "alertmanager_url http://am:9093 is plain http://" in str(err.value)


class FakeResponse(io.BytesIO):
    pass


def capture_open_url(monkeypatch, body):
    calls = []

    def fake_open_url(url, **kwargs):
        calls.append(dict(kwargs, url=url))
        return FakeResponse(json.dumps(body).encode())
    monkeypatch.setattr(sources, "open_url", fake_open_url)
    return calls


def test_prometheus_and_alertmanager_requests_carry_the_auth(monkeypatch, pem):
    calls = capture_open_url(monkeypatch, {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [0, "1"]}]}})
    gate = Gate({"source": "prometheus", "prometheus_url": "https://prom:9090", "alertmanager_url": "https://am",
                 "checks": ["error_rate"], "validate_certs": False,
                 "monitoring_auth": {"bearer_token": TOKEN, "ca_path": str(pem / "ca.pem"), "validate_certs": True}})
    src = Sources(gate.p)
    assert src.prom("up") == [({}, 1.0)]
    call = calls[-1]
    assert call["url"] == "https://prom:9090/api/v1/query?query=up"
    assert call["headers"] == {"Authorization": "Bearer " + TOKEN, "Accept": "application/json",
                               "User-Agent": "meshos-health-gate"}
    assert call["validate_certs"] is True and call["ca_path"] == str(pem / "ca.pem") and "url_username" not in call
    calls = capture_open_url(monkeypatch, [])
    gate = Gate({"alertmanager_url": "https://am", "checks": ["critical_alerts"],
                 "monitoring_auth": {"username": "gate", "password": PASSWORD}})
    assert Sources(gate.p).alerts(["critical"], {}) == []
    call = calls[-1]
    assert call["url"].startswith("https://am/api/v2/alerts?active=true")
    assert call["url_username"] == "gate" and call["url_password"] == PASSWORD and call["force_basic_auth"] is True
    assert "Authorization" not in call["headers"] and call["validate_certs"] is True


def test_http_error_names_the_url_and_the_status(monkeypatch):
    def refused(url, **kwargs):
        raise sources.HTTPError(url, 401, "Unauthorized", {}, io.BytesIO(b"missing or wrong bearer token\n"))
    monkeypatch.setattr(sources, "open_url", refused)
    auth = monitoring.normalize_auth({"bearer_token": TOKEN})
    with pytest.raises(sources.SourceError) as err:
        sources.prometheus_query("https://prom:9090", "up", auth=auth)
    assert str(err.value) == ("prometheus https://prom:9090/api/v1/query?query=up answered HTTP 401: "
                              "missing or wrong bearer token  (credentials refused: check monitoring_auth)")
