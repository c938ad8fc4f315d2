# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/awx/configure.yml against the real awx.awx module documentation, and the workflow graph it creates.

ansible-lint's args rule does not see misspelled options here, so every awx.awx task's options (and the workflow nodes'
suboptions) are checked against the installed awx.awx collection's DOCUMENTATION (options, aliases, auth fragment).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGURE = ROOT / "playbooks" / "awx" / "configure.yml"


def _awx_dir():
    paths = os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".build" / "collections")).split(":")
    paths.append(str(ROOT / ".build" / "collections"))
    for base in paths:
        candidate = Path(base) / "ansible_collections" / "awx" / "awx"
        if (candidate / "plugins" / "modules").is_dir():
            return candidate
    return None


AWX = _awx_dir()
pytestmark = pytest.mark.skipif(AWX is None, reason="awx.awx not installed (scripts/bootstrap.sh extracts it)")


def _doc(module, path=None):
    tree = ast.parse((path or AWX / "plugins" / "modules" / ("%s.py" % module)).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    raise AssertionError("no DOCUMENTATION in awx.awx.%s" % module)


def _names(options):
    names = set(options)
    for spec in options.values():
        names.update(spec.get("aliases") or [])
    return names


def _tasks():
    play = yaml.safe_load(CONFIGURE.read_text())[0]
    return [(t["name"], k.split(".")[-1], v) for t in play["tasks"] for k, v in t.items() if k.startswith("awx.awx.")]


def test_every_awx_task_uses_documented_options():
    auth = _names(_doc("auth", AWX / "plugins" / "doc_fragments" / "auth.py")["options"])
    assert _tasks(), "no awx.awx task found"
    for name, module, args in _tasks():
        options = _doc(module)["options"]
        unknown = set(args) - _names(options) - auth
        assert not unknown, "%s: awx.awx.%s has no option %s" % (name, module, sorted(unknown))
        for key, value in args.items():
            choices = options.get(key, {}).get("choices")
            if choices and isinstance(value, str) and "{{" not in value:
                assert value in choices, "%s: %s=%r not in %s" % (name, key, value, choices)


def test_workflow_nodes_use_documented_suboptions():
    nodes_doc = _doc("workflow_job_template")["options"]["workflow_nodes"]["suboptions"]
    wf = [args for _n, module, args in _tasks() if module == "workflow_job_template"][0]
    for node in wf["workflow_nodes"]:
        assert not set(node) - set(nodes_doc), node
        assert not set(node["unified_job_template"]) - set(nodes_doc["unified_job_template"]["suboptions"]), node
        assert not set(node.get("related", {})) - set(nodes_doc["related"]["suboptions"]), node


def _graph():
    wf = [args for _n, module, args in _tasks() if module == "workflow_job_template"][0]
    nodes = {n["identifier"]: n for n in wf["workflow_nodes"]}
    edges = {(ident, kind, target["identifier"]) for ident, n in nodes.items()
             for kind, targets in n.get("related", {}).items() for target in targets}
    return nodes, edges


def test_graph_edges():
    nodes, edges = _graph()
    for ident, kind, target in edges:
        assert target in nodes, "%s %s -> unknown node %s" % (ident, kind, target)
    # failures of every deploy go to the notification job, never straight to a rollback
    for env in ("development", "staging", "production"):
        assert ("deploy-%s" % env, "failure_nodes", "after-failure-%s" % env) in edges
        assert nodes["after-failure-%s" % env]["unified_job_template"]["name"] == "meshos release - after failure"
    # only production's decision leads on, through the approval node, to the rollback
    assert {e for e in edges if e[0].startswith("after-failure-")} == {
        ("after-failure-production", "failure_nodes", "approve-rollback-production")}
    assert nodes["approve-rollback-production"]["unified_job_template"] == {
        "name": "roll back production?", "type": "workflow_approval", "timeout": "{{ awx_approval_timeout }}",
        "description": nodes["approve-rollback-production"]["unified_job_template"]["description"]}
    assert ("approve-rollback-production", "success_nodes", "rollback-production") in edges
    # no node passes a version to a rollback (it comes from the failed job's artifacts)
    for node in nodes.values():
        assert "version" not in (node.get("extra_data") or {}), node
    # the approval nodes' names are the evidence names' keys in the pipeline defaults
    defaults = yaml.safe_load((ROOT / "roles" / "pipeline" / "defaults" / "main.yml").read_text())
    grants = defaults["pipeline_awx_approval_grants"]
    assert nodes["approve-staging"]["unified_job_template"]["name"] in grants
    assert nodes["approve-production"]["unified_job_template"]["name"] in grants
    # nothing in the graph points at the survey-driven rollback template
    assert all(n["unified_job_template"]["name"] != "meshos release - rollback" for n in nodes.values())


def test_rollback_playbook_never_reads_the_survey_version():
    text = (ROOT / "playbooks" / "awx" / "rollback.yml").read_text()
    tasks = yaml.safe_load(text)[0]["tasks"]
    role_vars = [t for t in tasks if "ansible.builtin.include_role" in t][0]["vars"]
    assert role_vars["deploy_rollback_version"] == "{{ release_previous_version }}"
    assert role_vars["deploy_rollback_strategy"] == ""
