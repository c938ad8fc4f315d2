# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ssh backend's namespace fleet outlives ansible-test's per-test forks: this process owns it and brings it down.

test_backend_contract.ssh_lab brings the fleet up in the first fork that needs it and records it in
/tmp/meshos-unit-fleets/<owner>/contract-up.json; the owner is this pytest process (the forks inherit MESHOS_UNIT_FLEET_OWNER).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FLEET_DIR = Path("/tmp/meshos-unit-fleets")
NETFLEET = Path(__file__).resolve().parents[3] / "roles" / "lab" / "files" / "netfleet.py"


def pytest_configure(config):
    # every pytest process that configures (the main one, each xdist worker) owns its own fleet; forks inherit this
    os.environ["MESHOS_UNIT_FLEET_OWNER"] = str(os.getpid())


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("MESHOS_UNIT_FLEET_OWNER") != str(os.getpid()):
        return  # a fork, or a fleet that belongs to another process
    root = FLEET_DIR / str(os.getpid())
    if (root / "contract-up.json").exists():
        subprocess.run([sys.executable, str(NETFLEET), "--root", str(root), "down"], capture_output=True, timeout=180,
                       check=False)
    shutil.rmtree(root, ignore_errors=True)
