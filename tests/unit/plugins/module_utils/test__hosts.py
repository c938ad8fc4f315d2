# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from ansible_collections.meshos.release.plugins.module_utils._hosts import (
    install_release,
    parse_targets,
    prune_releases,
    sha256_file,
    sort_versions,
    switch_current,
    verify_release,
)
from ansible_collections.meshos.release.plugins.module_utils.platform import (
    ChecksumError,
    ConfigError,
    VersionNotInstalledError,
)


def _artifact(path, version, extra=None):
    files = {"meshapp.py": b"print('hi')\n", "release.json": json.dumps({"version": version}).encode()}
    files.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_install_verify_and_idempotence(tmp_path):
    art = _artifact(tmp_path / "a.tar.gz", "5.1.0")
    root = str(tmp_path / "host")
    assert install_release(root, "5.1.0", art, "sha256:" + sha256_file(art)) is True
    assert install_release(root, "5.1.0", art) is False
    assert verify_release(root, "5.1.0")["ok"] is True
    with open(os.path.join(root, "releases", "5.1.0", "meshapp.py"), "a") as handle:
        handle.write("#")
    report = verify_release(root, "5.1.0")
    assert report["ok"] is False and "meshapp.py" in report["problems"][0]
    assert install_release(root, "5.1.0", art) is True  # repaired
    assert verify_release(root, "5.1.0")["ok"] is True


def test_install_rejects_bad_checksum_and_unsafe_members(tmp_path):
    art = _artifact(tmp_path / "a.tar.gz", "5.1.0")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        install_release(str(tmp_path / "h"), "5.1.0", art, "0" * 64)
    with pytest.raises(ConfigError, match="invalid checksum"):
        install_release(str(tmp_path / "h"), "5.1.0", art, "xyz")
    bad = _artifact(tmp_path / "b.tar.gz", "5.1.0", {"../evil": b"x"})
    with pytest.raises(ChecksumError, match="unsafe member"):
        install_release(str(tmp_path / "h"), "5.1.0", bad)
    assert not os.path.exists(str(tmp_path / "evil"))
    assert not os.path.isdir(str(tmp_path / "h" / "releases" / "5.1.0"))


def test_missing_version_without_artifact(tmp_path):
    with pytest.raises(VersionNotInstalledError, match="not installed"):
        install_release(str(tmp_path), "5.1.0")


def test_switch_current_is_atomic_and_idempotent(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "releases", "1.0.0"))
    os.makedirs(os.path.join(root, "releases", "2.0.0"))
    assert switch_current(root, "1.0.0") is True
    assert switch_current(root, "1.0.0") is False
    assert switch_current(root, "2.0.0") is True
    assert os.readlink(os.path.join(root, "current")) == os.path.join("releases", "2.0.0")
    assert not [n for n in os.listdir(root) if n.startswith(".current")]


def test_prune_keeps_current_and_previous(tmp_path):
    root = str(tmp_path)
    for version in ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "10.0.0"):
        os.makedirs(os.path.join(root, "releases", version))
    switch_current(root, "1.1.0")
    removed = prune_releases(root, 2)
    assert removed == ["1.2.0"]  # 2.0.0/10.0.0 newest, 1.1.0 current, 1.0.0 previous
    assert sort_versions(os.listdir(os.path.join(root, "releases"))) == ["1.0.0", "1.1.0", "2.0.0", "10.0.0"]
    with pytest.raises(ConfigError, match="keep_releases"):
        prune_releases(root, 1)


def test_parse_targets_errors():
    good = {"name": "app1", "release_root": "/srv/app1", "restart_command": "restart {name}", "ready_url": "http://x/ready"}
    assert parse_targets([good])[0].backend == "be_app"
    assert parse_targets([dict(good, color="green")], need_color=True)[0].backend == "be_green"
    for bad, msg in [([], "non-empty"), ([dict(good, name="a b")], "name"), ([good, good], "duplicated"),
                     ([dict(good, release_root="rel")], "absolute"), ([dict(good, color="red")], "color"),
                     ([good], "no color"), ([dict(good, restart_command="x {nope}")], "restart_command"),
                     ([dict(good, weight=0)], "weight")]:
        with pytest.raises(ConfigError, match=msg):
            parse_targets(bad, need_color=(msg == "no color"))
