# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.meshos.release.plugins.module_utils.release import manifest as _manifest
from ansible_collections.meshos.release.plugins.module_utils.release.manifest import ManifestError


def _write(tmp_path, artifacts):
    path = tmp_path / "release-1.0.0.json"
    path.write_text(_manifest.dumps({"version": "1.0.0", "artifacts": artifacts}))
    return str(path)


def test_checksums_ok_and_tampered(tmp_path):
    art = tmp_path / "a.bin"
    art.write_bytes(b"abc")
    manifest = _write(tmp_path, _manifest.artifact_entries([str(art)]))
    checked = _manifest.verify(None, manifest)
    assert checked["signature_verified"] is False and checked["artifacts"][0]["name"] == "a.bin"
    art.write_bytes(b"abd")
    with pytest.raises(ManifestError, match="a.bin sha256 .* does not match"):
        _manifest.verify(None, manifest)


def test_artifact_dir_and_missing(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "a.bin").write_bytes(b"abc")
    manifest = _write(tmp_path, [{"name": "a.bin", "path": "/gone/a.bin",
                                  "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}])
    assert _manifest.verify(None, manifest, artifact_dir=str(other))["artifacts"][0]["path"] == str(other / "a.bin")
    with pytest.raises(ManifestError, match="artifact /gone/a.bin listed in .* is missing"):
        _manifest.verify(None, manifest)


def test_bad_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{nope")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        _manifest.verify(None, str(path))
    with pytest.raises(ManifestError, match="cannot read manifest"):
        _manifest.verify(None, str(tmp_path / "absent.json"))


def test_signature_calls_ssh_keygen(tmp_path):
    calls = []
    manifest = _write(tmp_path, [])
    (tmp_path / "release-1.0.0.json.sig").write_text("sig")
    pub = tmp_path / "k.pub"
    pub.write_text("ssh-ed25519 AAAAC3Nza test\n")

    def run(argv, cwd=None, data=None):
        calls.append(argv)
        with open(argv[argv.index("-f") + 1]) as handle:
            calls.append(handle.read())
        return (0, "Good", "") if len(calls) < 3 else (255, "", "Could not verify signature.")

    assert _manifest.verify(run, manifest, public_key=str(pub))["signature_verified"] is True
    assert calls[0][:3] == ["ssh-keygen", "-Y", "verify"] and "meshos-release" in calls[0]
    assert calls[1] == 'meshos-release namespaces="meshos-release" ssh-ed25519 AAAAC3Nza test\n'
    with pytest.raises(ManifestError, match="does not verify for meshos-release: Could not verify signature."):
        _manifest.verify(run, manifest, public_key=str(pub))


def test_missing_signature(tmp_path):
    manifest = _write(tmp_path, [])
    with pytest.raises(ManifestError, match="signature .*release-1.0.0.json.sig is missing"):
        _manifest.verify(None, manifest, public_key="/x.pub")


def test_same_release_ignores_date():
    assert _manifest.same_release({"version": "1", "date": "a"}, {"version": "1", "date": "b"})
    assert not _manifest.same_release({"version": "1"}, {"version": "2"})
    assert json.loads(_manifest.dumps({"b": 1, "a": 2})) == {"a": 2, "b": 1}
