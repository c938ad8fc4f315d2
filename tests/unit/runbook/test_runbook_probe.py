# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What runbook_collect reads on a host (plugins/module_utils/runbook/probe.py), on real files and this process."""

import os

from ansible_collections.meshos.release.plugins.module_utils.runbook import probe


def test_collect_reads_log_tail_pid_disk_and_memory(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "log" / "app1.log").write_text("".join("line %d\n" % i for i in range(100)))
    (tmp_path / "run" / "app1.pid").write_text(str(os.getpid()))
    (tmp_path / "run" / "app2.pid").write_text("999999999")
    found = probe.collect([{"name": "app1", "release_root": str(tmp_path)}, {"name": "app2"}], log_lines=3,
                          log_dir=str(tmp_path / "log"), pid_dir=str(tmp_path / "run"))
    app1, app2 = found["instances"]["app1"], found["instances"]["app2"]
    assert app1["log"]["lines"] == ["line 97", "line 98", "line 99"]
    assert app1["process"] == {"pid_file": str(tmp_path / "run" / "app1.pid"), "managed": True,
                               "pid": os.getpid(), "alive": True}
    assert app1["resources"]["pid"] == os.getpid() and app1["resources"]["rss_bytes"] > 0
    assert app2["process"]["alive"] is False and app2["log"]["exists"] is False
    statvfs = os.statvfs(str(tmp_path))
    assert app1["disk"]["size_bytes"] == statvfs.f_blocks * statvfs.f_frsize and app1["disk"]["mount"]
    assert 0 < found["host"]["memory"]["available_percent"] <= 100 and "lo" in found["host"]["interfaces"]


def test_ready_url_without_answer_is_minus_one():
    found = probe.collect([{"name": "a", "ready_url": "http://127.0.0.1:1/ready"}], check_ready=True, http_timeout=1)
    ready = found["instances"]["a"]["ready"]
    assert ready["status"] == -1 and not ready["ok"] and ready["error"]
