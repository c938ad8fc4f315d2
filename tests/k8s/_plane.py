# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Kubernetes tests share: the binaries, the control-plane script, one plane per test module, a waiter.

Each test module has its own port base inside 27000-27099 (docs/design.md); the k8s stage of scripts/test.sh starts one
plane and hands its kubeconfig over as MESHOS_K8S_KUBECONFIG, which the modules that only use a plane take instead of
starting their own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "k8s_controlplane.sh"
BIN = Path(os.environ.get("MESHOS_K8S_BIN", REPO_ROOT / ".build" / "k8s" / "bin"))
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SHARED = os.environ.get("MESHOS_K8S_KUBECONFIG")
MISSING = [c for c in COMPONENTS if not os.access(BIN / c, os.X_OK)]
MISSING_REASON = ("control-plane binaries not built (missing in %s: %s); run `scripts/k8s_controlplane.sh build`"
                  % (BIN, ", ".join(MISSING)))


def port_busy(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_script(port_base: int, *args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    """scripts/k8s_controlplane.sh ARGS with the plane's ports at port_base."""
    env = dict(os.environ, MESHOS_K8S_PORT_BASE=str(port_base), MESHOS_K8S_BIN=str(BIN))
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def plane_kubeconfig(tmp_path_factory, port_base: int, name: str):
    """Generator for a module fixture: the shared plane's kubeconfig, or a plane of its own brought up and down."""
    if SHARED:
        yield SHARED
        return
    busy = [p for p in range(port_base + 1, port_base + 7) if port_busy(p)]
    if busy:
        pytest.fail("ports %s on 127.0.0.1 are in use (this test's slice of 27000-27099)" % busy)
    run_dir = tmp_path_factory.mktemp(name)
    up = run_script(port_base, "up", str(run_dir))
    try:
        assert up.returncode == 0, "up failed:\n%s\n%s" % (up.stdout, up.stderr)
        yield str(run_dir / "kubeconfig")
    finally:
        down = run_script(port_base, "down", str(run_dir), timeout=60)
        assert down.returncode == 0, down.stderr


def wait_until(check, what: str, timeout: float = 90):
    """check() until it returns something true (returned), or fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))
