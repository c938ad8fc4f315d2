# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release manifests: ``release-<version>.json`` with artifact checksums, signed and verified with ``ssh-keygen -Y``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from ansible_collections.meshos.release.plugins.module_utils import _fsutil
from ansible_collections.meshos.release.plugins.module_utils._fsutil import sha256_file
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError

NAMESPACE = "meshos-release"
# fields that do not make two manifests of the same release different (re-runs stay idempotent)
VOLATILE = ("date",)


class ManifestError(MeshosError):
    """A manifest that cannot be built, read or trusted; the message is one line."""


def artifact_entries(paths):
    entries = []
    for path in paths or []:
        if not os.path.isfile(path):
            raise ManifestError("artifact %s does not exist or is not a regular file" % path)
        entries.append({"name": os.path.basename(path), "path": path, "sha256": sha256_file(path),
                        "size": os.path.getsize(path)})
    return entries


def manifest_name(version):
    return "release-%s.json" % version


def dumps(manifest):
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def same_release(old, new):
    strip = [{k: v for k, v in m.items() if k not in VOLATILE} for m in (old, new)]
    return strip[0] == strip[1]


def load(path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        data = json.loads(raw.decode("utf-8"))
    except (IOError, OSError) as exc:
        raise ManifestError("cannot read manifest %s: %s" % (path, exc.strerror or exc))
    except ValueError as exc:
        raise ManifestError("manifest %s is not valid JSON: %s" % (path, exc))
    if not isinstance(data, dict) or "version" not in data:
        raise ManifestError("manifest %s has no version field" % path)
    return raw, data


def write_atomic(path, content):
    _fsutil.write_atomic(path, content, mode=0o644)


def sign(run, key, content):
    """Detached ssh signature (armored text) of ``content`` made with the private ``key``."""
    if not os.path.isfile(key):
        raise ManifestError("signing_key %s does not exist" % key)
    rc, out, err = run(["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE, "-f", key, "-"], data=content)
    if rc != 0 or "BEGIN SSH SIGNATURE" not in out:
        detail = ((err or out).strip().splitlines() or ["rc=%d" % rc])[-1]
        raise ManifestError("ssh-keygen -Y sign with %s failed: %s" % (key, detail))
    return out


def public_key_of(run, key):
    """The public key (one line of text) of the private ssh ``key``; fails for a key that is not a usable private key
    without a passphrase prompt (``-P ""``: never waits for a terminal)."""
    if not os.path.isfile(key):
        raise ManifestError("signing_key %s does not exist" % key)
    rc, out, err = run(["ssh-keygen", "-y", "-P", "", "-f", key])
    pub = (out or "").strip()
    if rc != 0 or not pub.startswith(("ssh-", "ecdsa-", "sk-")):
        detail = ((err or out or "").strip().splitlines() or ["rc=%d" % rc])[-1]
        raise ManifestError("signing_key %s is not a usable ssh private key (%s): give a key without a passphrase, "
                            "or set public_key" % (key, detail))
    return pub.splitlines()[0]


def verify_signature(run, content, signature_path, identity, public_key=None, allowed_signers=None,
                     public_key_text=None):
    if not os.path.isfile(signature_path):
        raise ManifestError("signature %s is missing" % signature_path)
    tmpdir = None
    try:
        if allowed_signers is None:
            if public_key_text is not None:
                pub = public_key_text.strip()
            else:
                try:
                    with open(public_key) as handle:
                        pub = handle.read().strip()
                except (IOError, OSError) as exc:
                    raise ManifestError("cannot read public_key %s: %s" % (public_key, exc.strerror or exc))
            if not pub:
                raise ManifestError("public_key %s is empty" % (public_key or "(derived)"))
            tmpdir = tempfile.mkdtemp(prefix="meshos-allowed-signers-")
            allowed_signers = os.path.join(tmpdir, "allowed_signers")
            with open(allowed_signers, "w") as handle:
                handle.write('%s namespaces="%s" %s\n' % (identity, NAMESPACE, pub.splitlines()[0]))
        rc, out, err = run(["ssh-keygen", "-Y", "verify", "-f", allowed_signers, "-I", identity, "-n", NAMESPACE,
                            "-s", signature_path], data=content)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    if rc != 0:
        detail = ((err or out).strip().splitlines() or ["rc=%d" % rc])[-1]
        raise ManifestError("signature %s does not verify for %s: %s" % (signature_path, identity, detail))


def verify(run, manifest_path, public_key=None, allowed_signers=None, identity=NAMESPACE, artifact_dir=None):
    """Check a manifest's signature (when a key is given) and every artifact checksum; raise on any mismatch."""
    raw, data = load(manifest_path)
    signature_verified = False
    if public_key or allowed_signers:
        verify_signature(run, raw, manifest_path + ".sig", identity, public_key, allowed_signers)
        signature_verified = True
    checked = []
    for entry in data.get("artifacts") or []:
        if not isinstance(entry, dict) or not entry.get("sha256") or not (entry.get("name") or entry.get("path")):
            raise ManifestError("manifest %s has a malformed artifacts entry: %r" % (manifest_path, entry))
        path = os.path.join(artifact_dir, entry.get("name") or os.path.basename(entry["path"])) if artifact_dir else entry.get("path")
        if not path or not os.path.isfile(path):
            raise ManifestError("artifact %s listed in %s is missing" % (path, manifest_path))
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ManifestError("artifact %s sha256 %s does not match the manifest's %s" % (path, actual, entry["sha256"]))
        checked.append({"name": entry.get("name"), "path": path, "sha256": actual})
    return {"manifest": data, "signature_verified": signature_verified, "artifacts": checked}
