# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""labctl: the lab's process manager and artifact tool (standard library only, Python 3.9+).

Every command prints one JSON object on stdout (``{"changed": bool, ...}``). On error it prints
``{"changed": false, "failed": true, "msg": ...}`` on stdout, the same one-line message on stderr,
and exits 1. Process files: ``ROOT/run/NAME.pid``, ``ROOT/run/NAME.json`` (argv, port), logs
``ROOT/log/NAME.log``. Only processes recorded there are ever signalled.

    labctl.py --root ROOT instance-start NAME --port PORT [--wait-ready S]
    labctl.py --root ROOT instance-stop NAME
    labctl.py --root ROOT instance-restart NAME [--wait-ready S]
    labctl.py --root ROOT proc-start NAME [--port P] -- ARGV...
    labctl.py --root ROOT proc-reload NAME [--pass-old-pid=FLAG] [--handover-arg=ARG]... [--port P] -- ARGV...
    labctl.py --root ROOT proc-stop NAME
    labctl.py --root ROOT status
    labctl.py --root ROOT stop-all
    labctl.py artifact VERSION --out DIR [--error-ratio R] [--latency-ms N] [--health-fail] [--crash-on-start]
                                         [--unready-after SECONDS]
    labctl.py --root ROOT install NAME VERSION --artifact TARBALL [--activate | --activate-if-unset]
"""

import argparse
import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

DEFAULT_ROOT = os.environ.get("MESHOS_LAB_ROOT", "/tmp/meshos-lab")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.+-]+)?$")
ARTIFACT_FILES = ("meshapp.py", "release.json")
STOP_TIMEOUT = 10.0
START_TIMEOUT = 15.0


class LabError(Exception):
    """A one-line, user-facing error."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one-line LabError instead of exiting."""

    def error(self, message):
        raise LabError("%s: %s (see %s --help)" % (self.prog, message, self.prog))


# ---------------------------------------------------------------- small helpers

def _check_name(name):
    if not NAME_RE.match(name or ""):
        raise LabError("invalid name %r: use letters, digits, '_', '.', '-' (max 64, not starting with a symbol)" % name)
    return name


def _check_version(version):
    if not VERSION_RE.match(version or ""):
        raise LabError("invalid version %r: expected semantic version like 5.1.0" % version)
    return version


def _check_port(port):
    if port is None or not 1 <= port <= 65535:
        raise LabError("invalid port %r: expected 1-65535" % port)
    return port


def _paths(root, name):
    return {
        "pid": os.path.join(root, "run", name + ".pid"),
        "spec": os.path.join(root, "run", name + ".json"),
        "log": os.path.join(root, "log", name + ".log"),
        "lock": os.path.join(root, "run", "." + name + ".lock"),
    }


def _write_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data if isinstance(data, bytes) else data.encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError("cannot read %s: %s" % (path, exc))


def _read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (FileNotFoundError, ValueError):
        return None


@contextlib.contextmanager
def _locked(root, name):
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    with open(_paths(root, name)["lock"], "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- process inspection

def _proc_state(pid):
    """Return the /proc state letter of pid, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            data = handle.read()
        return data[data.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid):
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _matches(pid, argv):
    """True when pid is alive and runs argv (argv[0] may differ: interpreters and shims re-exec)."""
    if not argv or not _alive(pid):
        return False
    cmdline = _cmdline(pid)
    if not cmdline:
        return False
    if len(argv) == 1:
        return os.path.basename(cmdline[0]) == os.path.basename(argv[0])
    return cmdline[1:] == list(argv[1:])


def _running_pid(root, name):
    """The recorded pid of name if that exact process is still running, else None."""
    paths = _paths(root, name)
    spec = _read_json(paths["spec"]) or {}
    pid = _read_pid(paths["pid"])
    if pid and _matches(pid, spec.get("started_argv") or spec.get("argv") or []):
        return pid
    return None


def _port_open(port, host="127.0.0.1", timeout=0.3):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec - loopback only
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _wait(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------- start / stop

def _spawn(root, name, argv, port, base_argv=None, cwd=None):
    paths = _paths(root, name)
    os.makedirs(os.path.dirname(paths["log"]), exist_ok=True)
    if port and _port_open(port):
        raise LabError("cannot start %s: port %d on 127.0.0.1 is already in use by another process" % (name, port))
    with open(paths["log"], "ab") as log:
        log.write(("--- %s labctl start: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), " ".join(argv))).encode())
        log.flush()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=cwd or root, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise LabError("cannot start %s: %s: %s" % (name, argv[0], exc.strerror or exc))
    spec = {"name": name, "argv": list(base_argv or argv), "started_argv": list(argv), "port": port,
            "pid": proc.pid, "started": time.time()}
    _write_atomic(paths["spec"], json.dumps(spec, indent=1, sort_keys=True) + "\n")
    _write_atomic(paths["pid"], "%d\n" % proc.pid)

    def up():
        if proc.poll() is not None:
            return True
        return _port_open(port) if port else True
    _wait(up, START_TIMEOUT if port else 0.3)
    code = proc.poll()
    if code is not None:
        _remove_pidfile(root, name)
        raise LabError("%s exited with code %d right after start (see %s)" % (name, code, paths["log"]))
    if port and not _port_open(port):
        raise LabError("%s (pid %d) does not listen on port %d after %ds (see %s)"
                       % (name, proc.pid, port, START_TIMEOUT, paths["log"]))
    return proc.pid


def _remove_pidfile(root, name):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_paths(root, name)["pid"])


def _terminate(pid, argv, timeout):
    """SIGTERM pid (only if it still runs argv), wait, SIGKILL after timeout. Returns True if it signalled."""
    if not _matches(pid, argv):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not _alive(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), 5.0)
    return True


def _stop(root, name, timeout=STOP_TIMEOUT):
    paths = _paths(root, name)
    spec = _read_json(paths["spec"]) or {}
    pid = _read_pid(paths["pid"])
    stopped = bool(pid) and _terminate(pid, spec.get("started_argv") or spec.get("argv") or [], timeout)
    _remove_pidfile(root, name)  # stale or stopped: the pid file no longer describes a live process
    return {"changed": stopped, "name": name, "pid": pid if stopped else None}


def _start(root, name, argv, port, wait_ready=None):
    pid = _running_pid(root, name)
    spec = _read_json(_paths(root, name)["spec"]) or {}
    if pid and spec.get("argv") == list(argv):
        changed = False
    else:
        if pid:
            _stop(root, name)
        pid = _spawn(root, name, argv, port)
        changed = True
    if wait_ready:
        _wait_ready(name, port, wait_ready)
    return {"changed": changed, "name": name, "pid": pid, "port": port}


def _wait_ready(name, port, timeout):
    url = "http://127.0.0.1:%d/ready" % port
    if not _wait(lambda: _http_status(url) == 200, timeout, 0.1):
        raise LabError("%s is not ready: GET %s did not return 200 within %ss" % (name, url, timeout))


# ---------------------------------------------------------------- commands

def _instance_argv(root, name, port, python):
    current = os.path.join(root, "hosts", name, "current")
    script = os.path.join(current, "meshapp.py")
    if not os.path.exists(script):
        raise LabError("instance %s has no current release: %s is missing (run install NAME VERSION --activate)"
                       % (name, script))
    return [python, script, "--port", str(port), "--instance", name, "--release-dir", current]


def cmd_instance_start(args):
    name, port = _check_name(args.name), _check_port(args.port)
    with _locked(args.root, name):
        return _start(args.root, name, _instance_argv(args.root, name, port, args.python), port, args.wait_ready)


def cmd_instance_stop(args):
    name = _check_name(args.name)
    with _locked(args.root, name):
        return _stop(args.root, name, args.timeout)


def cmd_instance_restart(args):
    name = _check_name(args.name)
    with _locked(args.root, name):
        spec = _read_json(_paths(args.root, name)["spec"])
        if not spec or not spec.get("port"):
            raise LabError("instance %s has no recorded port: start it once with instance-start %s --port PORT"
                           % (name, name))
        port = spec["port"]
        python = args.python or spec["argv"][0]
        argv = _instance_argv(args.root, name, port, python)
        stopped = _stop(args.root, name, args.timeout)
        pid = _spawn(args.root, name, argv, port)
        if args.wait_ready:
            _wait_ready(name, port, args.wait_ready)
        return {"changed": True, "name": name, "pid": pid, "port": port, "old_pid": stopped["pid"]}


def _proc_argv(argv):
    if not argv:
        raise LabError("missing command: use proc-start NAME [--port P] -- ARGV...")
    found = shutil.which(argv[0])
    if not found:
        raise LabError("command not found: %r" % argv[0])
    return [found] + list(argv[1:])


def cmd_proc_start(args):
    name = _check_name(args.name)
    port = _check_port(args.port) if args.port is not None else None
    with _locked(args.root, name):
        return _start(args.root, name, _proc_argv(args.argv), port)


def cmd_proc_reload(args):
    """Start a new generation of NAME; with --pass-old-pid=FLAG it gets `FLAG OLDPID` (haproxy -sf) and the old
    process is waited for (then killed after the bound), otherwise the old process is stopped first."""
    name = _check_name(args.name)
    port = _check_port(args.port) if args.port is not None else None
    argv = _proc_argv(args.argv)
    with _locked(args.root, name):
        spec = _read_json(_paths(args.root, name)["spec"]) or {}
        old = _running_pid(args.root, name)
        if not old:
            return dict(_start(args.root, name, argv, port), reloaded=False)
        if not args.pass_old_pid:
            _stop(args.root, name, args.timeout)
            return dict(_start(args.root, name, argv, port), reloaded=True)
        old_argv = spec.get("started_argv") or []
        extra = list(args.handover_arg or []) + [args.pass_old_pid, str(old)]
        pid = _spawn_handover(args.root, name, argv, port, extra)
        _terminate_after(old, old_argv, args.timeout)
        return {"changed": True, "name": name, "pid": pid, "port": port, "old_pid": old, "reloaded": True}


def _spawn_handover(root, name, argv, port, extra):
    """Like _spawn, but the port is legitimately held by the previous generation."""
    paths = _paths(root, name)
    with open(paths["log"], "ab") as log:
        log.write(("--- %s labctl reload: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                   " ".join(argv + extra))).encode())
        log.flush()
        proc = subprocess.Popen(argv + extra, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=root, start_new_session=True, close_fds=True)
    spec = {"name": name, "argv": list(argv), "started_argv": list(argv + extra), "port": port,
            "pid": proc.pid, "started": time.time()}
    time.sleep(0.3)
    if proc.poll() is not None:
        raise LabError("%s reload failed: new process exited with code %d (see %s)"
                       % (name, proc.returncode, paths["log"]))
    _write_atomic(paths["spec"], json.dumps(spec, indent=1, sort_keys=True) + "\n")
    _write_atomic(paths["pid"], "%d\n" % proc.pid)
    return proc.pid


def _terminate_after(pid, argv, timeout):
    """Wait for a soft-stopping previous generation to exit by itself, then terminate it."""
    if not _wait(lambda: not _alive(pid), timeout, 0.1):
        _terminate(pid, argv, 2.0)


def cmd_proc_stop(args):
    name = _check_name(args.name)
    with _locked(args.root, name):
        return _stop(args.root, name, args.timeout)


def _managed_names(root):
    run = os.path.join(root, "run")
    if not os.path.isdir(run):
        return []
    specs = []
    for entry in os.listdir(run):
        if entry.endswith(".json") and not entry.startswith("."):
            spec = _read_json(os.path.join(run, entry)) or {}
            specs.append((spec.get("started", 0), entry[:-5]))
    return [name for _started, name in sorted(specs)]


def cmd_status(args):
    processes = []
    for name in _managed_names(args.root):
        spec = _read_json(_paths(args.root, name)["spec"]) or {}
        pid = _read_pid(_paths(args.root, name)["pid"])
        processes.append({"name": name, "pid": pid, "alive": bool(pid) and _running_pid(args.root, name) == pid,
                          "port": spec.get("port"), "argv": spec.get("started_argv") or spec.get("argv")})
    return {"changed": False, "root": args.root, "processes": processes}


def cmd_stop_all(args):
    stopped = []
    for name in reversed(_managed_names(args.root)):  # reverse start order: Prometheus before Alertmanager
        with _locked(args.root, name):
            result = _stop(args.root, name, args.timeout)
        if result["changed"]:
            stopped.append({"name": name, "pid": result["pid"]})
    return {"changed": bool(stopped), "stopped": stopped}


# ---------------------------------------------------------------- artifacts and releases

def _tar_bytes(files):
    """A deterministic .tar.gz (fixed mtimes, owners, order) so the same release hashes the same."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def cmd_artifact(args):
    version = _check_version(args.version)
    if not 0.0 <= args.error_ratio <= 1.0:
        raise LabError("invalid --error-ratio %r: expected 0.0-1.0" % args.error_ratio)
    if args.latency_ms < 0:
        raise LabError("invalid --latency-ms %r: expected >= 0" % args.latency_ms)
    if not 0.0 <= args.unready_after <= 86400.0:  # also rejects nan
        raise LabError("invalid --unready-after %r: expected 0-86400 seconds (0: never)" % args.unready_after)
    source = args.source or os.path.join(os.path.dirname(os.path.abspath(__file__)), "meshapp.py")
    try:
        with open(source, "rb") as handle:
            app = handle.read()
    except OSError as exc:
        raise LabError("cannot read meshapp source %s: %s" % (source, exc.strerror or exc))
    release = {"version": version, "fault": {"error_ratio": args.error_ratio, "latency_ms": args.latency_ms,
                                             "health_fail": args.health_fail, "crash_on_start": args.crash_on_start}}
    if args.unready_after:  # only when set: artifacts without it stay byte-identical to earlier builds
        release["fault"]["unready_after"] = args.unready_after
    data = _tar_bytes({"meshapp.py": app, "release.json": (json.dumps(release, indent=1, sort_keys=True) + "\n").encode()})
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(os.path.abspath(args.out), "meshapp-%s.tar.gz" % version)
    changed = True
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        changed = handle.read() != data
    if changed:
        _write_atomic(path, data)
    return {"changed": changed, "path": path, "version": version, "sha256": hashlib.sha256(data).hexdigest(),
            "fault": release["fault"]}


def _read_artifact(path):
    try:
        with tarfile.open(path, "r:gz") as tar:
            files = {}
            for member in tar.getmembers():
                if member.name not in ARTIFACT_FILES or not member.isfile():
                    raise LabError("artifact %s holds unexpected member %r: only %s allowed"
                                   % (path, member.name, ", ".join(ARTIFACT_FILES)))
                files[member.name] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as exc:
        raise LabError("cannot read artifact %s: %s" % (path, exc))
    missing = [name for name in ARTIFACT_FILES if name not in files]
    if missing:
        raise LabError("artifact %s lacks %s" % (path, ", ".join(missing)))
    return files


def _same_files(directory, files):
    for name, data in files.items():
        try:
            with open(os.path.join(directory, name), "rb") as handle:
                if handle.read() != data:
                    return False
        except OSError:
            return False
    return True


def _switch_current(host_dir, version):
    """Atomically point host_dir/current at releases/VERSION. Returns True when it changed."""
    current = os.path.join(host_dir, "current")
    target = os.path.join("releases", version)
    if os.path.islink(current) and os.readlink(current) == target:
        return False
    tmp = os.path.join(host_dir, ".current-%d" % os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, current)
    return True


def cmd_install(args):
    name, version = _check_name(args.name), _check_version(args.version)
    if args.checksum:
        with open(args.artifact, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        if digest != args.checksum.lower().replace("sha256:", ""):
            raise LabError("checksum mismatch for %s: sha256 is %s, expected %s" % (args.artifact, digest, args.checksum))
    files = _read_artifact(args.artifact)
    try:
        meta = json.loads(files["release.json"].decode())
    except ValueError as exc:
        raise LabError("artifact %s has invalid release.json: %s" % (args.artifact, exc))
    if str(meta.get("version")) != version:
        raise LabError("artifact %s holds version %r, not %s" % (args.artifact, meta.get("version"), version))
    host_dir = os.path.join(args.root, "hosts", name)
    release_dir = os.path.join(host_dir, "releases", version)
    with _locked(args.root, name):
        changed = False
        if not (os.path.isdir(release_dir) and _same_files(release_dir, files)):
            os.makedirs(os.path.dirname(release_dir), exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".%s-" % version, dir=os.path.dirname(release_dir))
            for fname, data in files.items():
                with open(os.path.join(staging, fname), "wb") as handle:
                    handle.write(data)
            if os.path.isdir(release_dir):
                shutil.rmtree(release_dir)
            os.rename(staging, release_dir)
            changed = True
        activate = args.activate or (args.activate_if_unset and not os.path.lexists(os.path.join(host_dir, "current")))
        if activate:
            changed = _switch_current(host_dir, version) or changed
        current = os.path.join(host_dir, "current")
        active = os.path.basename(os.readlink(current)) if os.path.islink(current) else None
    return {"changed": changed, "name": name, "version": version, "release_dir": release_dir, "current": active}


# ---------------------------------------------------------------- CLI

def _parser():
    parser = _Parser(prog="labctl.py", description="meshos lab process manager")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="lab root (default %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, func, helptext):
        cmd = sub.add_parser(name, help=helptext)
        cmd.set_defaults(func=func)
        return cmd

    cmd = add("instance-start", cmd_instance_start, "start a meshapp instance (idempotent)")
    cmd.add_argument("name")
    cmd.add_argument("--port", type=int, required=True)
    cmd.add_argument("--python", default=sys.executable, help="interpreter for meshapp (default: this one)")
    cmd.add_argument("--wait-ready", type=float, metavar="SECONDS")
    for name, func in (("instance-stop", cmd_instance_stop), ("proc-stop", cmd_proc_stop)):
        cmd = add(name, func, "stop a managed process: SIGTERM, wait, SIGKILL after --timeout")
        cmd.add_argument("name")
        cmd.add_argument("--timeout", type=float, default=STOP_TIMEOUT)
    cmd = add("instance-restart", cmd_instance_restart, "stop + start an instance on its recorded port")
    cmd.add_argument("name")
    cmd.add_argument("--wait-ready", type=float, metavar="SECONDS")
    cmd.add_argument("--python", default=None, help="interpreter (default: the recorded one)")
    cmd.add_argument("--timeout", type=float, default=STOP_TIMEOUT)
    cmd = add("proc-start", cmd_proc_start, "start any process (idempotent): proc-start NAME -- ARGV...")
    cmd.add_argument("name")
    cmd.add_argument("--port", type=int, help="port it listens on: recorded, checked free, waited for")
    cmd = add("proc-reload", cmd_proc_reload, "replace a managed process by a new generation")
    cmd.add_argument("name")
    cmd.add_argument("--port", type=int)
    cmd.add_argument("--pass-old-pid", metavar="FLAG", help="give the new process `FLAG OLDPID` (haproxy: -sf)")
    cmd.add_argument("--handover-arg", action="append", metavar="ARG",
                     help="extra argument for the new generation only (repeatable; haproxy: -x SOCKET)")
    cmd.add_argument("--timeout", type=float, default=STOP_TIMEOUT)
    add("status", cmd_status, "every managed process: name, pid, alive, port")
    cmd = add("stop-all", cmd_stop_all, "stop exactly the processes labctl started")
    cmd.add_argument("--timeout", type=float, default=STOP_TIMEOUT)
    cmd = add("artifact", cmd_artifact, "build DIR/meshapp-VERSION.tar.gz")
    cmd.add_argument("version")
    cmd.add_argument("--out", required=True)
    cmd.add_argument("--error-ratio", type=float, default=0.0, help="share of requests to / answered 500 (0.0-1.0)")
    cmd.add_argument("--latency-ms", type=int, default=0, help="milliseconds added to every request to /")
    cmd.add_argument("--health-fail", action="store_true", help="/health answers 500 and /ready 503")
    cmd.add_argument("--crash-on-start", action="store_true", help="the instance exits at start (code 3)")
    cmd.add_argument("--unready-after", type=float, default=0.0, metavar="SECONDS",
                     help="SECONDS after start /ready (HAProxy's health check) answers 503 for good while /health "
                          "stays 200: the instance drops out as an agent (trigger '> 10 %% of agents down'); "
                          "0 (default): never")
    cmd.add_argument("--source", help="meshapp.py to package (default: the one next to labctl.py)")
    cmd = add("install", cmd_install, "unpack an artifact into hosts/NAME/releases/VERSION")
    cmd.add_argument("name")
    cmd.add_argument("version")
    cmd.add_argument("--artifact", required=True)
    cmd.add_argument("--checksum", help="expected sha256 of the artifact")
    group = cmd.add_mutually_exclusive_group()
    group.add_argument("--activate", action="store_true", help="switch current to VERSION")
    group.add_argument("--activate-if-unset", action="store_true", help="switch current only when there is none")
    return parser


def main(argv=None):
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:  # proc-start NAME [options] -- ARGV...: everything after -- is the command
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    try:
        args = parser.parse_args(argv)
        args.argv = command
        args.root = os.path.abspath(args.root)
        result = args.func(args)
    except LabError as exc:
        msg = str(exc).replace("\n", " ")
        sys.stdout.write(json.dumps({"changed": False, "failed": True, "msg": msg}) + "\n")
        sys.stderr.write("labctl: error: %s\n" % msg)
        return 1
    except OSError as exc:
        msg = "%s: %s" % (getattr(exc, "filename", None) or "os error", exc.strerror or exc)
        sys.stdout.write(json.dumps({"changed": False, "failed": True, "msg": msg}) + "\n")
        sys.stderr.write("labctl: error: %s\n" % msg)
        return 1
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
