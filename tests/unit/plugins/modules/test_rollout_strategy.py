# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.meshos.release.plugins.modules import rollback, rollout_strategy


def _args(tmp_path, **extra):
    args = {"environment": "prod", "state_dir": str(tmp_path / "state"), "haproxy_socket": str(tmp_path / "none.sock"),
            "targets": [{"name": "app1", "release_root": str(tmp_path / "app1"), "restart_command": "true",
                         "ready_url": "http://127.0.0.1:1/ready"}]}
    args.update(extra)
    return args


def _run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module.main()
    out = json.loads(capsys.readouterr().out)
    return exc.value.code, out


@pytest.mark.parametrize("extra,needle", [
    ({"version": "5.1.0"}, "does not exist"),
    ({"version": "5.1.0", "strategy": "canary", "initial_traffic": 0}, "initial_traffic"),
    ({"version": "5.1.0", "strategy": "canary", "steps": [50, 10, 100]}, "not increasing"),
    ({"version": "5.1.0", "strategy": "blue-green"}, "no color"),
    ({"version": "5.1.0", "batch_size": "x"}, "batch_size"),
    ({"version": "5.1.0", "drain_timeout": 0}, "drain_timeout"),
    ({}, "version is required"),
])
def test_rollout_strategy_bad_input(tmp_path, capsys, extra, needle):
    code, out = _run(rollout_strategy, _args(tmp_path, **extra), capsys)
    assert code == 1 and out["failed"] and needle in out["msg"] and "\n" not in out["msg"]
    assert not (tmp_path / "state").exists()


def test_rollback_missing_socket(tmp_path, capsys):
    code, out = _run(rollback, _args(tmp_path, version="5.0.0"), capsys)
    assert code == 1 and "does not exist" in out["msg"]


@pytest.mark.parametrize("module", [rollout_strategy, rollback])
@pytest.mark.parametrize("version", ["5.1", "5.2.0\n", "5" * 300, "5.1.0;rm -rf /"])
def test_bad_versions_fail_in_one_line_before_anything(tmp_path, capsys, module, version):
    code, out = _run(module, _args(tmp_path, version=version), capsys)
    assert code == 1 and "semantic version" in out["msg"] and "\n" not in out["msg"].strip()
    assert "Errno" not in out["msg"] and len(out["msg"]) < 300
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("extra,needle", [
    ({"version": "5.1.0", "public_key": "/k.pub"}, "manifest"),
    ({"version": "5.1.0", "phase": "prepare"}, "phase prepare is for strategy blue-green"),
    ({"version": "5.1.0", "measure_interval": 0}, "measure_interval"),
])
def test_rollout_strategy_new_options_are_checked(tmp_path, capsys, extra, needle):
    code, out = _run(rollout_strategy, _args(tmp_path, **extra), capsys)
    assert code == 1 and needle in out["msg"], out["msg"]
