# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the AWX workflow's failure edge (playbooks/awx/after_failure.yml) leads to, from the failed job's artifacts.

AWX passes a failed job's set_stats artifacts to the next node as extra vars; roles/pipeline/tasks/failed.yml records
release_changed, release_failed_stage, release_failed_version, release_previous_version and release_rollback_mode.
The survey's version must never matter (it is the release that just failed). No ports, no lab: the playbook only
notifies (file channel in the work dir) and decides.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_playbook

PLAYBOOK = "playbooks/awx/after_failure.yml"


def _outbox(work_dir):
    path = work_dir / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _run(tmp_path, **artifacts):
    work_dir = tmp_path / "release"
    work_dir.mkdir()
    extra = {"release_work_dir": str(work_dir), "release_hosts": "localhost",
             # what an AWX survey would also pass: the failed release itself, never a rollback target
             "version": "9.9.9", "strategy": "canary"}
    extra.update(artifacts)
    run = run_playbook(PLAYBOOK, extra, check=False, timeout=180)
    return run, _outbox(work_dir)


def test_nothing_changed_notifies_and_does_not_roll_back(tmp_path):
    run, outbox = _run(tmp_path, release_changed=False, release_failed_stage="staging",
                       release_failed_version="5.2.0", release_rollback_mode="automatic")
    assert run.rc == 0, run.output[-3000:]
    assert len(outbox) == 1, outbox
    text = json.dumps(outbox[0])
    assert "Nothing was changed" in text and '"rollback": "none"' in text and "9.9.9" not in text


def test_automatic_stage_was_already_rolled_back_by_the_pipeline(tmp_path):
    run, outbox = _run(tmp_path, release_changed=True, release_failed_stage="staging",
                       release_failed_version="5.2.0", release_previous_version="5.1.0",
                       release_rollback_mode="automatic")
    assert run.rc == 0, run.output[-3000:]
    text = json.dumps(outbox)
    assert "rolled back automatically" in text and '"rollback": "done"' in text
    # the edge must not roll back a second time: the playbook has no rollback task at all
    assert "rollback_strategy" not in run.output and "meshos.release.rollback" not in run.output


@pytest.mark.parametrize("previous", ["5.1.0", ""])
def test_production_after_a_change_asks_for_the_decision(tmp_path, previous):
    run, outbox = _run(tmp_path, release_changed=True, release_failed_stage="production",
                       release_failed_version="5.2.0", release_previous_version=previous,
                       release_rollback_mode="manual")
    # failing is how the workflow's failure edge reaches the approval node "roll back production?"
    assert run.rc != 0
    assert "rollback is a manual decision" in run.output
    want = previous or "the recorded previous version"
    assert want in run.output and "9.9.9" not in run.output.split("Ask for the rollback decision", 1)[-1]
    text = json.dumps(outbox)
    assert '"rollback": "decision"' in text and want in text
