# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a runbook reads ON an instance's host (module runbook_collect; standard library only, Linux /proc).

On the hosts lab this runs on the balancer's machine (the instances live there); on an SSH fleet the role delegates
it to each app host, so the logs, processes, memory and disk are the host's own.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request

from ansible_collections.meshos.release.plugins.module_utils.runbook.findings import RunbookError, truncate


def tail(path, lines):
    """The last `lines` lines of a text file (read from the end, so a large log costs little)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        block, data = 8192, b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def proc_stat(pid):
    """(state, utime + stime ticks) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[11]) + int(fields[12])


def alive(pid):
    stat = proc_stat(pid) if pid else None
    return bool(stat) and stat[0] not in ("Z", "X")


def rss_bytes(pid):
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return 0


def meminfo(path="/proc/meminfo"):
    values = {}
    with open(path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2:
                values[parts[0].rstrip(":")] = int(parts[1])
    total = values.get("MemTotal", 0) * 1024
    available = values.get("MemAvailable", values.get("MemFree", 0)) * 1024
    return {"total_bytes": total, "available_bytes": available,
            "available_percent": round(100.0 * available / total, 1) if total else None}


def uptime():
    with open("/proc/uptime") as handle:
        return float(handle.read().split()[0])


def mount_of(path):
    """(mount point, filesystem source) holding path, from /proc/self/mounts (the last mount over a point wins)."""
    point = os.path.realpath(path)
    while not os.path.ismount(point):
        point = os.path.dirname(point)
    source = ""
    try:
        with open("/proc/self/mounts") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 1 and fields[1].replace("\\040", " ") == point:
                    source = fields[0]
    except OSError:
        pass
    return point, source


def disk(path):
    """df -P of path: size and free space (what an unprivileged user may use, as df's Available)."""
    try:
        stat = os.statvfs(path)
    except OSError as exc:
        return {"path": path, "error": "%s: %s" % (path, exc.strerror or exc)}
    mount, source = mount_of(path)
    size = stat.f_blocks * stat.f_frsize
    free = stat.f_bavail * stat.f_frsize
    return {"path": path, "filesystem": source, "mount": mount, "size_bytes": size, "free_bytes": free,
            "free_percent": round(100.0 * free / max(size, 1), 1)}


def http_status(url, timeout):
    """(status, error): the HTTP status of a GET (redirects not followed), -1 and the reason without an answer."""
    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return -1, truncate(str(getattr(exc, "reason", exc)), 160)


def collect(instances, log_lines=20, cpu_sample_seconds=0.0, http_timeout=3.0, log_dir="", pid_dir="",
            check_ready=False, sleep=time.sleep):
    """Read every instance's log tail, process, CPU / memory, disk and (optional) local ready URL on this host."""
    if log_lines < 1:
        raise RunbookError("log_lines must be > 0 (got %r)" % log_lines)
    names = [inst.get("name") for inst in instances]
    if not all(names) or len(set(names)) != len(names):
        raise RunbookError("instances need unique, non-empty names (got %s)" % names)
    out = {}
    for inst in instances:
        entry = {"name": inst["name"], "release_root": inst.get("release_root") or None}
        log_file = inst.get("log_file") or (os.path.join(log_dir, inst["name"] + ".log") if log_dir else "")
        if log_file:
            exists = os.path.isfile(log_file)
            entry["log"] = {"path": log_file, "exists": exists, "lines": tail(log_file, int(log_lines)) if exists else []}
        pid_file = inst.get("pid_file") or (os.path.join(pid_dir, inst["name"] + ".pid") if pid_dir else "")
        if pid_file:
            managed = os.path.exists(pid_file)
            pid = read_pid(pid_file) if managed else None
            entry["process"] = {"pid_file": pid_file, "managed": managed, "pid": pid, "alive": alive(pid) if managed else None}
        if inst.get("release_root"):
            # the releases land in <release_root>/releases (deploy_helper's layout): that is the disk that fills up
            releases = os.path.join(inst["release_root"], "releases")
            entry["disk"] = disk(releases if os.path.isdir(releases) else inst["release_root"])
        if check_ready and inst.get("ready_url"):
            status, error = http_status(inst["ready_url"], http_timeout)
            entry["ready"] = {"url": inst["ready_url"], "status": status, "ok": status == 200, "error": error}
        out[inst["name"]] = entry
    _sample_cpu(out, cpu_sample_seconds, sleep)
    return {"host": {"hostname": socket.gethostname(), "memory": meminfo(), "interfaces": interfaces()},
            "instances": out}


def _sample_cpu(out, seconds, sleep):
    """CPU % of every live process over `seconds` (one sample: 0 s gives the average since the last tick)."""
    pids = dict((name, e["process"]["pid"]) for name, e in out.items()
                if e.get("process", {}).get("alive"))
    first = dict((name, proc_stat(pid)) for name, pid in pids.items())
    up_first = uptime()
    if pids and seconds > 0:
        sleep(seconds)
    up_second = uptime()
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    total = meminfo()["total_bytes"]
    elapsed = max(up_second - up_first, 0.01)
    for name, pid in pids.items():
        second = proc_stat(pid)
        rss = rss_bytes(pid)
        if not first[name] or not second or rss is None:
            out[name]["resources"] = None
            continue
        cpu = 100.0 * (second[1] - first[name][1]) / ticks_per_second / elapsed
        out[name]["resources"] = {"pid": pid, "cpu_percent": round(cpu, 1), "rss_bytes": rss,
                                  "memory_percent": round(100.0 * rss / total, 2) if total else None}


def interfaces():
    """The network interfaces this host sees (a namespace host sees its own): names from /proc/net/dev."""
    try:
        with open("/proc/net/dev") as handle:
            return sorted(line.split(":", 1)[0].strip() for line in handle if ":" in line)
    except OSError:
        return []
