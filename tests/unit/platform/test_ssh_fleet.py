# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH fleet's client without hosts: argv, errors, the order of the install steps, the factory.

The contract suite (test_backend_contract.py, ``ssh``) and tests/integration/test_ssh_fleet.py run it against real
sshd hosts; here the ssh/scp runner is replaced so every error path is checked quickly. The remote side
(``ssh_remote.main``) runs in-process where a result is needed: the same code the hosts run.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re

import pytest

from ansible_collections.meshos.release.plugins.module_utils.platform import ssh_remote
from ansible_collections.meshos.release.plugins.module_utils.platform.base import (
    ChecksumError,
    CommandError,
    ConfigError,
    InstallError,
    PlatformTimeoutError,
    VersionNotInstalledError,
)
from ansible_collections.meshos.release.plugins.module_utils.platform.factory import build_platform
from ansible_collections.meshos.release.plugins.module_utils.platform.ssh_fleet import (
    HostUnreachableError,
    SshFleet,
    parse_ssh_targets,
)


def _spec(tmp_path, **more):
    key = tmp_path / "id"
    key.write_text("k")
    spec = {"name": "app1", "release_root": str(tmp_path / "app1"), "restart_command": "meshctl restart {version}",
            "ready_url": "http://127.0.0.1:8080/ready", "ssh_host": "10.79.0.11", "ssh_user": "root",
            "ssh_private_key_file": str(key), "ssh_common_args": "-o ConnectTimeout=30 -o StrictHostKeyChecking=yes"}
    spec.update(more)
    return spec


class Runner:
    """Records argv; answers from a list of (rc, out, err) or runs the remote side in-process for python calls."""

    def __init__(self, answers=None, remote=False):
        self.calls = []
        self.answers = list(answers or [])
        self.remote = remote

    def __call__(self, argv, data, timeout):
        self.calls.append((argv, data, timeout))
        if self.answers:
            return self.answers.pop(0)
        if self.remote and data and "ssh_remote.main(" in data:
            request = re.search(r"ssh_remote\.main\((.*)\)\)\s*$", data.strip(), re.S).group(1)
            return 0, ssh_remote.main(ast.literal_eval(request)) + "\n", ""
        return 0, "", ""


def _fleet(tmp_path, runner, **spec):
    return SshFleet(parse_ssh_targets([_spec(tmp_path, **spec)]), connect_timeout=4, command_timeout=50,
                    control_persist=0, run=runner)


def test_every_call_is_batch_mode_with_a_bounded_connect_first(tmp_path):
    runner = Runner([(0, "releases/5.0.0\n", "")])
    fleet = _fleet(tmp_path, runner)
    target = fleet.instances()[0]
    assert fleet.current_version(target) == "5.0.0"
    argv, _data, timeout = runner.calls[0]
    assert argv[0] == "ssh" and argv[1:5] == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=4"]
    # ssh keeps an option's first value: ours precede the inventory's ConnectTimeout=30
    assert argv.index("ConnectTimeout=4") < argv.index("ConnectTimeout=30")
    assert ["-i", str(tmp_path / "id")] == argv[argv.index("-i"):argv.index("-i") + 2]
    assert argv[-3:-1] == ["--", "root@10.79.0.11"] and argv[-1].startswith("readlink -- ")
    assert 0 < timeout <= 20


def test_an_unreachable_host_is_one_line_naming_host_and_operation(tmp_path):
    fleet = _fleet(tmp_path, Runner([(255, "", "ssh: connect to host 10.79.0.11 port 22: Connection timed out\n")]))
    with pytest.raises(HostUnreachableError) as exc:
        fleet.installed_versions(fleet.instances()[0])
    msg = str(exc.value)
    assert "\n" not in msg and "host app1 (root@10.79.0.11)" in msg and "list releases" in msg
    assert "Connection timed out" in msg
    fleet = _fleet(tmp_path, Runner([(-1, "", "no answer within 50s")]))
    with pytest.raises(HostUnreachableError, match="no answer within"):
        fleet.restart(fleet.instances()[0], "5.1.0")


def test_restart_runs_the_command_quoted_on_the_host_and_names_a_failure(tmp_path):
    runner = Runner([(0, "", ""), (3, "", "boom\nlast words\n")])
    fleet = _fleet(tmp_path, runner, restart_command="svc restart 'my app' {version}")
    target = fleet.instances()[0]
    fleet.restart(target, "5.1.0")
    assert runner.calls[0][0][-1] == "svc restart 'my app' 5.1.0"
    with pytest.raises(CommandError) as exc:
        fleet.restart(target, "5.1.0")
    assert "host app1" in str(exc.value) and "exit 3" in str(exc.value) and "last words" in str(exc.value)


def test_install_checks_the_checksum_before_touching_the_host(tmp_path):
    artifact = tmp_path / "a.tar.gz"
    artifact.write_bytes(b"not really")
    runner = Runner()
    fleet = _fleet(tmp_path, runner)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fleet.install(fleet.instances()[0], "5.1.0", str(artifact), "0" * 64)
    with pytest.raises(ConfigError, match="invalid checksum"):
        fleet.install(fleet.instances()[0], "5.1.0", str(artifact), "abc")
    with pytest.raises(ConfigError, match="version"):
        fleet.install(fleet.instances()[0], "5.1", str(artifact))
    assert runner.calls == []


def test_install_copies_then_checks_on_the_host_and_is_idempotent(tmp_path):
    import io
    import tarfile
    artifact = tmp_path / "meshapp-5.1.0.tar.gz"
    with tarfile.open(str(artifact), "w:gz") as tar:
        data = b'{"version": "5.1.0"}'
        info = tarfile.TarInfo("release.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    runner = Runner(remote=True)
    fleet = _fleet(tmp_path, runner)
    target = fleet.instances()[0]

    def copy(argv, data, timeout):  # scp, done locally
        if argv[0] == "scp":
            dest = argv[-1].split(":", 1)[1]
            with open(argv[-2], "rb") as src, open(dest, "wb") as out:
                out.write(src.read())
            runner.calls.append((argv, data, timeout))
            return 0, "", ""
        return runner(argv, data, timeout)

    fleet._run = copy
    assert fleet.install(target, "5.1.0", str(artifact)) is True
    kinds = [c[0][0] for c in runner.calls]
    assert kinds == ["ssh", "scp", "ssh"]  # stage, copy, install
    scp = runner.calls[1][0]
    assert scp[1:6] == ["-q", "-o", "BatchMode=yes", "-o", "ConnectTimeout=4"] and "-P" in scp
    manifest = json.loads((tmp_path / "app1" / "releases" / "5.1.0" / ".meshos-manifest.json").read_text())
    assert manifest["artifact_sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert not list((tmp_path / "app1" / "releases").glob(".incoming-*"))
    runner.calls[:] = []
    assert fleet.install(target, "5.1.0", str(artifact)) is False
    assert [c[0][0] for c in runner.calls] == ["ssh"]  # already there: no copy
    assert fleet.verify(target, "5.1.0")["ok"] is True
    with pytest.raises(VersionNotInstalledError, match="5.9.0"):
        fleet.activate(target, "5.9.0")


def test_a_failed_copy_is_an_install_error_naming_the_host_and_leaves_nothing(tmp_path):
    artifact = tmp_path / "meshapp-5.1.0.tar.gz"
    artifact.write_bytes(b"x")
    runner = Runner(remote=True)
    fleet = _fleet(tmp_path, runner)

    def run(argv, data, timeout):
        if argv[0] == "scp":
            dest = argv[-1].split(":", 1)[1]
            open(dest, "wb").close()
            return 1, "", "scp: write: No space left on device\n"
        return runner(argv, data, timeout)

    fleet._run = run
    with pytest.raises(InstallError) as exc:
        fleet.install(fleet.instances()[0], "5.1.0", str(artifact))
    assert "host app1" in str(exc.value) and "No space left on device" in str(exc.value)
    assert not list((tmp_path / "app1" / "releases").glob(".incoming-*"))


def test_remote_errors_come_back_as_their_type(tmp_path):
    fleet = _fleet(tmp_path, Runner(remote=True))
    with pytest.raises(PlatformTimeoutError) as exc:
        fleet.wait_ready(fleet.instances()[0], 0.0)
    assert str(exc.value).startswith("host app1 (root@10.79.0.11): wait for http://127.0.0.1:8080/ready")
    fleet = _fleet(tmp_path, Runner([(127, "", "sh: 1: python3: not found\n")]))
    with pytest.raises(CommandError, match="python3: not found"):
        fleet.verify(fleet.instances()[0], "5.0.0")


@pytest.mark.parametrize("bad,needle", [
    ({"ssh_host": "-oProxyCommand=sh"}, "ssh_host '-oProxyCommand=sh' is invalid"),
    ({"ssh_host": None}, "ssh_host None is invalid"),
    ({"ssh_port": 0}, "ssh_port 0 is invalid"),
    ({"ssh_user": "-l"}, "ssh_user '-l' is invalid"),
    ({"ssh_known_hosts_file": "/nonexistent"}, "ssh_known_hosts_file '/nonexistent'"),
    ({"ssh_common_args": "-o 'unclosed"}, "ssh_common_args"),
    ({"release_root": "relative"}, "must be an absolute path"),
])
def test_bad_targets_fail_closed(tmp_path, bad, needle):
    with pytest.raises(ConfigError) as exc:
        parse_ssh_targets([_spec(tmp_path, **bad)])
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_the_factory_builds_it_and_checks_its_options(tmp_path, monkeypatch):
    from ansible_collections.meshos.release.plugins.module_utils.platform import factory
    monkeypatch.setattr(factory, "_haproxy_router", lambda params: type("R", (), {"max_weight": lambda self: 256})())
    params = {"platform": "ssh", "targets": [_spec(tmp_path)], "backend": "be_app", "interval": 0.2,
              "ready_timeout": 30.0, "ssh_connect_timeout": 5.0, "ssh_command_timeout": 120.0,
              "ssh_remote_python": "python3", "ssh_control_persist": 30.0}
    platform = build_platform(params)
    assert isinstance(platform.fleet, SshFleet) and platform.fleet.connect_timeout == 5.0
    for key, value, needle in (("ssh_connect_timeout", 0.0, "invalid ssh_connect_timeout 0.0"),
                               ("ssh_control_persist", -1.0, "invalid ssh_control_persist -1.0"),
                               ("ssh_remote_python", "python3; rm", "invalid ssh_remote_python")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            build_platform(dict(params, **{key: value}))
    with pytest.raises(ConfigError, match="expected one of hosts, kubernetes, ssh"):
        build_platform(dict(params, platform="k8s"))
