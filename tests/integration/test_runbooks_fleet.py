# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbooks on an SSH fleet: diagnostics read on each app host over Ansible's connection, not on the balancer.

``playbooks/lab/fleet_lab_up.yml`` brings up 3 app hosts as network namespaces (prefix ``wrb``, 10.83.0.0/24; sshd and
meshapp 5.0.0 on each host's own address) and ``playbooks/lab_up.yml`` HAProxy on this machine (127.0.0.1:28260,
stats 28261; 28270-28271 reserved). The test adds the runbook's per-host variables of the fleet contract
(``runbook_log_file``, ``runbook_pid_file``: the host's own files) to the fleet's inventory. Faults: app2's releases
directory is a full tmpfs (netfleet ``disk-full``), app3's instance is killed. ``health_checks_failing.yml`` must name
both from the hosts' own data: the full disk of app2 (its tmpfs, on host app2), app3's dead process and its ready URL
refused on the host itself (127.0.0.1 inside app3's namespace), and each host's interfaces as seen there (a
namespace host sees only ``eth0`` and ``lo``). Ports 28260-28271 (docs/design.md). Needs root.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import port_is_free, run_playbook  # noqa: E402
from test_fleet_playbooks import netfleet  # noqa: E402

PREFIX, SUBNET, PORT_BASE = "wrb", "10.83.0", 28260
HOSTS = ("app1", "app2", "app3")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the namespace fleet needs root (ip netns, sshd on port 22)"),
    pytest.mark.skipif(not (shutil.which("ip") and os.path.exists("/usr/sbin/sshd") and shutil.which("ssh")
                            and shutil.which("haproxy")),
                       reason="needs iproute2, openssh-server/openssh-client and haproxy (scripts/bootstrap.sh)"),
]


def in_use():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in netns.splitlines() if line.startswith(PREFIX + "-")]


@pytest.fixture(scope="module", name="fleet")
def fleet_fixture(tmp_path_factory):
    if in_use():
        pytest.skip("a fleet with prefix %s exists already (%s): another run is using it" % (PREFIX, in_use()))
    busy = [p for p in (PORT_BASE, PORT_BASE + 1) if not port_is_free(p)]
    if busy:
        pytest.skip("ports %s are taken" % busy)
    root = tmp_path_factory.mktemp("wrb-fleet")
    inventory = root / "lab-inventory.yml"
    try:
        run_playbook("playbooks/lab/fleet_lab_up.yml", {
            "fleet_root": str(root), "fleet_prefix": PREFIX, "fleet_subnet": SUBNET, "fleet_mode": "netns",
            "fleet_lab_layout": {"development": len(HOSTS)}, "fleet_lab_port_base": PORT_BASE})
        run_playbook("playbooks/lab_up.yml", inventory=inventory)
        # the runbook's per-host variables of the fleet contract: where the instance's log and pid file are on its host
        # (netfleet's layout: the host's area holds log/, run/ and hosts/NAME, the release root)
        inv = yaml.safe_load(inventory.read_text())
        hosts = inv["all"]["children"]["development"]["hosts"]
        areas = dict((name, os.path.dirname(os.path.dirname(hosts[name]["release_root"]))) for name in HOSTS)
        for name in HOSTS:
            hosts[name]["runbook_log_file"] = os.path.join(areas[name], "log", name + ".log")
            hosts[name]["runbook_pid_file"] = os.path.join(areas[name], "run", name + ".pid")
        runbook_inventory = root / "runbook-inventory.yml"
        runbook_inventory.write_text(yaml.safe_dump(inv))
        yield {"root": root, "inventory": runbook_inventory, "areas": areas, "hosts": hosts}
    finally:
        if inventory.exists():
            run_playbook("playbooks/lab_down.yml", inventory=inventory, check=False)
        netfleet(root, "down")


def runbook(fleet, name, **extra):
    started = time.time()
    reports = fleet["root"] / "reports"
    extra = dict({"env": "development", "runbook_report_dir": str(reports), "runbook_cpu_sample_seconds": 0}, **extra)
    run = run_playbook("playbooks/runbooks/%s.yml" % name, extra, inventory=fleet["inventory"], timeout=600)
    found = sorted((p for p in reports.glob("%s-development-*.md" % name) if p.stat().st_mtime >= started - 1),
                   key=lambda p: p.stat().st_mtime) if reports.is_dir() else []
    assert found, "no report written:\n" + run.output[-3000:]
    return run, found[-1].read_text()


def details(report, section):
    return json.loads(report.split("## %s\n\n```json\n" % section, 1)[1].split("\n```", 1)[0])


def test_health_runbook_reads_each_app_host(fleet):
    assert netfleet(fleet["root"], "fault", "app2", "disk-full").get("faults") == ["disk-full"]
    with open(os.path.join(fleet["areas"]["app3"], "run", "app3.pid")) as handle:
        app3_pid = int(handle.read())
    os.kill(app3_pid, signal.SIGKILL)
    try:
        _run, report = runbook(fleet, "health_checks_failing")
    finally:
        netfleet(fleet["root"], "fault", "app2", "clear")

    resources = details(report, "Resources")
    # read on the hosts: each sees its own network namespace
    for name in HOSTS:
        assert resources["hosts"][name]["interfaces"] == ["eth0", "lo"], resources["hosts"]
    disk = [d for key, d in resources["disks"].items() if key.startswith("app2:")][0]
    assert disk["filesystem"] == "meshos-disk-full" and disk["free_percent"] < 10, disk
    assert disk["size_bytes"] == 2 * 2 ** 20  # netfleet's 2m tmpfs, measured on the host
    assert "| critical | resources | app2 | only " in report and "of host app2 (meshos-disk-full" in report
    assert "| critical | processes | app3 | app3 process is not running (pid file says %d)" % app3_pid in report
    assert "| critical | connectivity | app3 | on host app3: GET http://127.0.0.1:8080/ready gave no answer" in report
    assert "on host app1" not in report and "on host app2" not in report  # their instances answered on the host
    assert "| critical | health | app3 |" in report
    for name in HOSTS:
        assert "| %s | %s | " % (name, name) in report  # the Instances table names the host of each instance
    processes = details(report, "Processes")
    assert processes["app1"]["alive"] is True and processes["app3"]["alive"] is False
