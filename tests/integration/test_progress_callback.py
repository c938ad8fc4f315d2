# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress callback beside machine-readable output: with ``-o`` (the oneline stdout callback) every result is
still one line of its own, and the heartbeat lines are separate lines that start with ``[progress]``. No ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ansible_env


def test_oneline_output_stays_one_line_per_result_beside_the_heartbeat():
    env = dict(ansible_env(), ANSIBLE_CALLBACKS_ENABLED="meshos.release.progress", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               MESHOS_PROGRESS_HEARTBEAT="1")
    exe = os.path.join(os.path.dirname(sys.executable), "ansible")
    proc = subprocess.run([exe, "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.command",
                           "-a", "sleep 3", "-o"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    results = [line for line in lines if not line.startswith("[progress] ")]
    assert len(results) == 1 and re.match(r"^localhost \| CHANGED \| rc=0 \|", results[0]), lines
    beats = [line for line in lines if line.startswith("[progress] ")]
    assert beats and all(re.match(r"^\[progress\] localhost \| \S.* \| running \d+ s", b) for b in beats), lines
