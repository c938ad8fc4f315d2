# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""netfleet: the lab as a fleet of SSH hosts (standard library only, Python 3.9+, run as root).

Each app host is a Linux network namespace ``PREFIX-NAME`` with its own address on a bridge:

    bridge PREFIX-br0   SUBNET.1/24 in the root namespace = the balancer address (HAProxy, Prometheus,
                        Alertmanager listen there)
    host appI           namespace PREFIX-appI, veth PREFIX-appI (root side, on the bridge) <-> eth0 (inside),
                        address SUBNET.(10+I)/24, lo up, default route via SUBNET.1
                        sshd on SUBNET.(10+I):22 (own host key, key auth only, root by key)
                        meshapp on 0.0.0.0:APP_PORT inside the namespace (= SUBNET.(10+I):APP_PORT)

Namespaces separate the network only: all hosts share the filesystem. Each host gets its own area
``ROOT/hosts/NAME/`` (its "disk"): ``ssh/`` (host key, sshd_config), ``run/`` and ``log/`` (pid files, logs),
``hosts/NAME/releases/VERSION`` + ``hosts/NAME/current`` (the release root, labctl.py's layout) and
``bin/meshctl`` (the host's control command, reached over SSH). Controller side: ``ROOT/ssh/id_ed25519`` (client
key, the only key every sshd accepts), ``ROOT/ssh/known_hosts`` (every host key), ``ROOT/fleet.json`` (what ``up``
made; ``down`` removes exactly that).

Where network namespaces are not allowed (not root, or ``ip netns add`` fails) the fleet falls back to one sshd per
loopback address 127.0.0.(10+I) (port 22 as root, else 2222) and meshapp on APP_PORT_BASE+I (0.0.0.0): the output
says ``"mode": "loopback"`` and why.

    netfleet.py [--root ROOT] up [--hosts N] [--prefix P] [--subnet A.B.C] [--mode auto|netns|loopback]
                                 [--app-version V | --no-app] [--app-port 8080] [--loopback-port-base 27240]
    netfleet.py [--root ROOT] down
    netfleet.py [--root ROOT] status
    netfleet.py [--root ROOT] fault NAME link-down|sshd-stop|disk-full|clear
    netfleet.py host --area AREA --name NAME --port PORT [--python PY] start|stop|restart|status|install ...
                 (runs ON a host: what bin/meshctl calls; wraps labctl.py's CLI)

Every command prints one JSON object on stdout; on error ``{"changed": false, "failed": true, "msg": ...}``, the same
one-line message on stderr, exit 1.
"""

import argparse
import concurrent.futures
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEFAULT_ROOT = os.environ.get("MESHOS_FLEET_ROOT", "/tmp/meshos-fleet")
HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")
SUBNET_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
NAME_RE = re.compile(r"^app([1-9][0-9]{0,2})$")
FAULTS = ("link-down", "sshd-stop", "disk-full", "clear")
MAX_HOSTS = 200  # addresses .11 .. .210 of the /24
DISK_FULL_SIZE = "2m"
SSHD = "/usr/sbin/sshd"
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class FleetError(Exception):
    """A one-line, user-facing error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FleetError("%s: %s (see %s --help)" % (self.prog, message, self.prog))


# ---------------------------------------------------------------- helpers

def _run(argv, check=True, timeout=30):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise FleetError("command not found: %s (install iproute2 / openssh-server / util-linux)" % argv[0])
    except subprocess.TimeoutExpired:
        raise FleetError("%s did not finish within %ss" % (" ".join(argv), timeout))
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip().replace("\n", " ")
        raise FleetError("%s failed (exit %d): %s" % (" ".join(argv), proc.returncode, err))
    return proc


def _write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FleetError("cannot read %s: %s" % (path, exc))


def _read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [p.decode(errors="replace") for p in handle.read().split(b"\0")[:-1]]
    except OSError:
        return []


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            data = handle.read()
        return data[data.rindex(")") + 2] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


def _wait(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def _port_open(host, port, timeout=0.3):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def _locked(root):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".fleet.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- fleet layout

class Fleet:
    """The persisted description of one fleet (ROOT/fleet.json) plus the operations on it."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.state_path = os.path.join(self.root, "fleet.json")
        self.state = _read_json(self.state_path)

    # -- paths
    def area(self, name):
        return os.path.join(self.root, "hosts", name)

    def save(self):
        _write(self.state_path, json.dumps(self.state, indent=1, sort_keys=True) + "\n")

    @property
    def client_key(self):
        return os.path.join(self.root, "ssh", "id_ed25519")

    @property
    def known_hosts(self):
        return os.path.join(self.root, "ssh", "known_hosts")

    def host(self, name):
        for host in (self.state or {}).get("hosts", []):
            if host["name"] == name:
                return host
        names = ", ".join(h["name"] for h in (self.state or {}).get("hosts", [])) or "none: run up first"
        raise FleetError("unknown host %r in fleet %s: hosts are %s" % (name, self.root, names))

    def release_root(self, name):
        return os.path.join(self.area(name), "hosts", name)

    def meshctl(self, name):
        return os.path.join(self.area(name), "bin", "meshctl")

    def in_host(self, host, argv):
        """argv run inside host's network namespace (nsenter keeps the root mount namespace: one filesystem)."""
        if self.state["mode"] == "netns":
            return ["nsenter", "--net=/run/netns/%s" % host["netns"], "--"] + list(argv)
        return list(argv)


def _check_prefix(prefix):
    if not PREFIX_RE.match(prefix or ""):
        raise FleetError("invalid --prefix %r: 1-6 lowercase letters/digits starting with a letter "
                         "(interface names are PREFIX-appN, at most 15 characters)" % prefix)
    return prefix


def _check_subnet(subnet):
    match = SUBNET_RE.match(subnet or "")
    if not match or any(int(part) > 255 for part in match.groups()):
        raise FleetError("invalid --subnet %r: expected the first three octets of a /24, like 10.77.0" % subnet)
    net = ipaddress.ip_network(subnet + ".0/24")
    if not net.is_private or net.is_loopback:
        raise FleetError("invalid --subnet %r: use a private range (10.x, 172.16-31.x, 192.168.x)" % subnet)
    return subnet


def _netns_available(prefix):
    """(True, '') when this process may create network namespaces, else (False, reason)."""
    if os.geteuid() != 0:
        return False, "not root (euid %d): network namespaces need root" % os.geteuid()
    if not shutil.which("ip") or not shutil.which("nsenter"):
        return False, "iproute2 (ip) or util-linux (nsenter) missing"
    probe = "%s-probe%d" % (prefix, os.getpid() % 10000)
    proc = _run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        return False, "ip netns add failed: %s" % proc.stderr.decode(errors="replace").strip()
    _run(["ip", "netns", "delete", probe], check=False)
    return True, ""


def _netns_list():
    proc = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in proc.stdout.decode().splitlines() if line.strip()]


def _link_exists(name, netns=None):
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return _run(argv, check=False).returncode == 0


# ---------------------------------------------------------------- up

def _keygen(path, comment):
    if os.path.exists(path) and os.path.exists(path + ".pub"):
        return False
    for stale in (path, path + ".pub"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
    return True


def _sshd_config(fleet, host):
    area = fleet.area(host["name"])
    return "\n".join([
        "# sshd of fleet host %s (netfleet.py up): key auth only, root by key, own host key." % host["name"],
        "ListenAddress %s:%d" % (host["address"], host["ssh_port"]),
        "HostKey %s" % os.path.join(area, "ssh", "ssh_host_ed25519_key"),
        "PidFile %s" % os.path.join(area, "run", "sshd.pid"),
        "AuthorizedKeysFile %s" % (fleet.client_key + ".pub"),
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        # the fleet root may live under /tmp (mode 1777), which StrictModes rejects; the key files are 0600/0644
        "StrictModes no",
        "MaxStartups 100:30:200",
        "MaxSessions 50",
        "ClientAliveInterval 5",
        "ClientAliveCountMax 3",
        "Subsystem sftp internal-sftp",
        "AcceptEnv LANG LC_*",
        "",
    ])


def _sshd_pid(fleet, host):
    """The pid of host's sshd when that exact daemon (our config file) runs, else None."""
    config = os.path.join(fleet.area(host["name"]), "ssh", "sshd_config")
    pid = _read_pid(os.path.join(fleet.area(host["name"]), "run", "sshd.pid"))
    # sshd rewrites its title to one string ("sshd: /usr/sbin/sshd -f CONFIG ... [listener]")
    if pid and _alive(pid) and config in " ".join(_cmdline(pid)).split():
        return pid
    return None


def _start_sshd(fleet, host):
    if _sshd_pid(fleet, host):
        return False
    area = fleet.area(host["name"])
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory (Debian path)
    config = os.path.join(area, "ssh", "sshd_config")
    log = os.path.join(area, "log", "sshd.log")
    _run(fleet.in_host(host, [SSHD, "-f", config, "-E", log]))
    # the namespace's address is reachable from the root namespace unless its link is cut on purpose
    reachable = not host.get("faults", {}).get("link-down")
    if not _wait(lambda: _sshd_pid(fleet, host) and (not reachable or _port_open(host["address"], host["ssh_port"])),
                 10.0):
        raise FleetError("sshd of %s does not run or listen on %s:%d after 10s (see %s)"
                         % (host["name"], host["address"], host["ssh_port"], log))
    return True


def _stop_pid(pid, timeout=5.0, sig=signal.SIGTERM):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not _wait(lambda: not _alive(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), 3.0)


def _sshd_sessions(pid, netns=None):
    """Pids of the per-connection sshd processes of a host: under listener pid, or (netns mode) any sshd in the
    host's namespace. A stopped sshd ends its sessions too: otherwise an Ansible ControlPersist master would keep
    a stopped host reachable."""
    children, found = {}, []
    ns_inode = None
    if netns:
        with contextlib.suppress(OSError):
            ns_inode = os.stat("/run/netns/%s" % netns).st_ino
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    data = handle.read()
                children.setdefault(int(data[data.rindex(")") + 2:].split()[1]), []).append(int(entry))
                if ns_inode and int(entry) != pid and os.stat("/proc/%s/ns/net" % entry).st_ino == ns_inode \
                        and " ".join(_cmdline(int(entry))).startswith("sshd"):
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        cmd = " ".join(_cmdline(child))
        if cmd.startswith("sshd") and child not in found:
            found.append(child)
            todo.extend(children.get(child, []))
    return found


def _stop_sshd(fleet, host):
    pid = _sshd_pid(fleet, host)
    sessions = _sshd_sessions(pid or -1, host.get("netns") if fleet.state["mode"] == "netns" else None)
    if not pid and not sessions:
        return False
    for one in ([pid] if pid else []) + sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(one, signal.SIGCONT)  # a link-down fault in loopback mode stops them
    if pid:
        _stop_pid(pid)
    for one in sessions:
        _stop_pid(one, 2.0)
    return True


def _meshctl_script(fleet, host):
    return "\n".join([
        "#!/bin/sh",
        "# Control command of fleet host %s (netfleet.py up): start|stop|restart|status|install ..." % host["name"],
        "# Run it on the host (over SSH): it manages this host's meshapp through labctl.py.",
        'exec %s %s host --area %s --name %s --port %d --python %s "$@"' % (
            HOST_PYTHON, os.path.join(fleet.root, "bin", "netfleet.py"), fleet.area(host["name"]), host["name"],
            host["app_port"], HOST_PYTHON),
        "",
    ])


def _prepare_host_files(fleet, host):
    area = fleet.area(host["name"])
    for sub in ("ssh", "run", "log", "bin", os.path.join("hosts", host["name"], "releases")):
        os.makedirs(os.path.join(area, sub), exist_ok=True)
    changed = _keygen(os.path.join(area, "ssh", "ssh_host_ed25519_key"), "host %s" % host["name"])
    _write(os.path.join(area, "ssh", "sshd_config"), _sshd_config(fleet, host), 0o600)
    _write(fleet.meshctl(host["name"]), _meshctl_script(fleet, host), 0o755)
    return changed


def _setup_bridge(fleet):
    state = fleet.state
    bridge, balancer = state["bridge"], state["balancer_address"]
    changed = False
    if not _link_exists(bridge):
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        changed = True
    state.setdefault("created", {})["bridge"] = True
    fleet.save()
    addrs = _run(["ip", "-o", "-4", "addr", "show", "dev", bridge]).stdout.decode()
    if (" %s/24 " % balancer) not in addrs:
        _run(["ip", "addr", "add", balancer + "/24", "dev", bridge])
        changed = True
    _run(["ip", "link", "set", bridge, "up"])
    return changed


def _setup_host_net(fleet, host):
    ns, veth = host["netns"], host["veth"]
    changed = False
    if ns not in _netns_list():
        _run(["ip", "netns", "add", ns])
        changed = True
    host["created_netns"] = True
    if not _link_exists(veth):
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        changed = True
    host["created_veth"] = True
    _run(["ip", "link", "set", veth, "master", fleet.state["bridge"]])
    if not host.get("faults", {}).get("link-down"):
        _run(["ip", "link", "set", veth, "up"])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    addrs = _run(["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"]).stdout.decode()
    if (" %s/24 " % host["address"]) not in addrs:
        _run(["ip", "-n", ns, "addr", "add", host["address"] + "/24", "dev", "eth0"])
        changed = True
    _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    _run(["ip", "-n", ns, "route", "replace", "default", "via", fleet.state["balancer_address"]])
    return changed


def _known_hosts(fleet):
    lines = []
    for host in fleet.state["hosts"]:
        with open(os.path.join(fleet.area(host["name"]), "ssh", "ssh_host_ed25519_key.pub")) as handle:
            keytype, key = handle.read().split()[:2]
        pattern = host["address"] if host["ssh_port"] == 22 else "[%s]:%d" % (host["address"], host["ssh_port"])
        lines.append("%s %s %s" % (pattern, keytype, key))
    _write(fleet.known_hosts, "\n".join(lines) + "\n")


def _labctl_json(host, argv, what):
    """Run one labctl.py command; its `changed`, or a FleetError naming the host."""
    proc = _run(argv, check=False, timeout=120)
    try:
        result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"failed": True, "msg": proc.stderr.decode(errors="replace").strip()}
    if proc.returncode != 0 or result.get("failed"):
        raise FleetError("host %s: labctl %s failed: %s" % (host["name"], what, result.get("msg")))
    return bool(result.get("changed"))


def _inventory(fleet):
    state = fleet.state
    ssh_args = ("-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o ConnectTimeout=5 "
                "-o ServerAliveInterval=2 -o ServerAliveCountMax=3" % fleet.known_hosts)
    hosts = {}
    for host in state["hosts"]:
        base = "http://%s:%d" % (host["address"], host["app_port"])
        hosts[host["name"]] = {
            "ansible_host": host["address"],
            "ansible_port": host["ssh_port"],
            "meshapp_port": host["app_port"],
            "meshapp_url": base,
            "release_root": fleet.release_root(host["name"]),
            "ready_url": "http://127.0.0.1:%d/ready" % host["app_port"],
            "restart_command": "%s restart --wait-ready 30" % fleet.meshctl(host["name"]),
            "haproxy_server_name": host["name"],
            "meshctl": fleet.meshctl(host["name"]),
        }
    return {"all": {"children": {
        "fleet_app": {"hosts": hosts, "vars": {
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": fleet.client_key,
            "ansible_ssh_common_args": ssh_args,
            "ansible_python_interpreter": HOST_PYTHON,
            # one SSH round trip per task instead of three (root needs no sudo, so no requiretty concern)
            "ansible_pipelining": True,
        }},
        "fleet_lb": {"hosts": {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "balancer_address": state["balancer_address"],
        }}},
    }, "vars": {"fleet_root": fleet.root, "fleet_mode": state["mode"]}}}


def _summary(fleet, changed, **extra):
    state = fleet.state
    out = {"changed": changed, "root": fleet.root, "mode": state["mode"], "bridge": state.get("bridge"),
           "balancer_address": state["balancer_address"], "client_key": fleet.client_key,
           "known_hosts": fleet.known_hosts,
           "hosts": [{"name": h["name"], "address": h["address"], "ssh_port": h["ssh_port"],
                      "app_port": h["app_port"], "netns": h.get("netns"), "area": fleet.area(h["name"]),
                      "release_root": fleet.release_root(h["name"]), "meshctl": fleet.meshctl(h["name"]),
                      "faults": sorted(h.get("faults", {}))} for h in state["hosts"]],
           "inventory": _inventory(fleet)}
    if state.get("fallback_reason"):
        out["fallback_reason"] = state["fallback_reason"]
    out.update(extra)
    return out


def _new_state(args, mode, reason):
    subnet = args.subnet if mode == "netns" else "127.0.0"
    hosts = []
    for index in range(1, args.hosts + 1):
        name = "app%d" % index
        host = {"name": name, "address": "%s.%d" % (subnet, 10 + index), "faults": {}}
        if mode == "netns":
            host.update(netns="%s-%s" % (args.prefix, name), veth="%s-%s" % (args.prefix, name), ssh_port=22,
                        app_port=args.app_port)
        else:
            host.update(ssh_port=22 if os.geteuid() == 0 else 2222, app_port=args.loopback_port_base + index)
        hosts.append(host)
    return {"version": 1, "mode": mode, "fallback_reason": reason, "prefix": args.prefix, "subnet": subnet,
            "bridge": "%s-br0" % args.prefix if mode == "netns" else None,
            "balancer_address": "%s.1" % subnet if mode == "netns" else "127.0.0.1",
            "app_version": args.app_version, "created": {}, "hosts": hosts}


def cmd_up(args):
    if not 1 <= args.hosts <= MAX_HOSTS:
        raise FleetError("invalid --hosts %r: expected 1-%d" % (args.hosts, MAX_HOSTS))
    _check_prefix(args.prefix)
    _check_subnet(args.subnet)
    if not 1 <= args.app_port <= 65535:
        raise FleetError("invalid --app-port %r: expected 1-65535" % args.app_port)
    if not 1024 <= args.loopback_port_base <= 65535 - args.hosts:
        raise FleetError("invalid --loopback-port-base %r: expected 1024-%d"
                         % (args.loopback_port_base, 65535 - args.hosts))
    if args.app_version and not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+$", args.app_version):
        raise FleetError("invalid --app-version %r: expected a version like 5.0.0" % args.app_version)
    for tool in ("ssh-keygen", SSHD):
        if not shutil.which(tool):
            raise FleetError("%s not found: install openssh-server (scripts/bootstrap.sh does)" % tool)
    started = time.monotonic()
    fleet = Fleet(args.root)
    with _locked(fleet.root):
        fleet.state = _read_json(fleet.state_path)
        if fleet.state:
            if len(fleet.state["hosts"]) != args.hosts or fleet.state["prefix"] != args.prefix:
                raise FleetError("fleet %s already has %d hosts with prefix %s: run down first"
                                 % (fleet.root, len(fleet.state["hosts"]), fleet.state["prefix"]))
        else:
            mode, reason = args.mode, ""
            if mode in ("auto", "netns"):
                ok, reason = _netns_available(args.prefix)
                if not ok and mode == "netns":
                    raise FleetError("network namespaces not available: %s" % reason)
                mode = "netns" if ok else "loopback"
            else:
                reason = "--mode loopback requested"
            if mode == "netns":
                clash = [n for n in _netns_list() if n.startswith(args.prefix + "-")]
                if clash or _link_exists("%s-br0" % args.prefix):
                    raise FleetError("prefix %s is in use by another fleet (%s): run down on that fleet's root or "
                                     "choose another --prefix" % (args.prefix, ", ".join(clash) or args.prefix + "-br0"))
            fleet.state = _new_state(args, mode, reason)
            os.makedirs(fleet.root, mode=0o700, exist_ok=True)
            fleet.save()
        changed = _up(fleet, args)
    return _summary(fleet, changed, seconds=round(time.monotonic() - started, 3),
                    phases=fleet.state.get("last_up_phases", {}))


def _up(fleet, args):
    state = fleet.state
    changed = False
    mark = time.monotonic()
    phases = state["last_up_phases"] = {}
    bindir = os.path.join(fleet.root, "bin")
    os.makedirs(bindir, exist_ok=True)
    for source in ("netfleet.py", "labctl.py", "meshapp.py"):  # the hosts' installed tools (same for all)
        shutil.copy2(os.path.join(HERE, source), os.path.join(bindir, source))
    changed = _keygen(fleet.client_key, "meshos fleet controller") or changed
    for host in state["hosts"]:
        changed = _prepare_host_files(fleet, host) or changed
    _known_hosts(fleet)
    phases["keys_and_files"], mark = round(time.monotonic() - mark, 3), time.monotonic()
    if state["mode"] == "netns":
        changed = _setup_bridge(fleet) or changed
        for host in state["hosts"]:
            changed = _setup_host_net(fleet, host) or changed
            fleet.save()
    phases["network"], mark = round(time.monotonic() - mark, 3), time.monotonic()
    artifact = None
    if state.get("app_version"):
        built = json.loads(_run([sys.executable, os.path.join(bindir, "labctl.py"), "artifact", state["app_version"],
                                 "--out", os.path.join(fleet.root, "artifacts")]).stdout.decode())
        artifact = built["path"]

    def one(host):
        did = False if "sshd-stop" in host.get("faults", {}) else _start_sshd(fleet, host)
        if _meshapp_pid(fleet, host) and os.path.islink(os.path.join(fleet.release_root(host["name"]), "current")):
            return did  # already running (labctl's pid file): a repeated up leaves it alone
        if artifact and not host.get("faults"):
            # what `meshctl install` + `meshctl start` do on the host, minus two interpreter starts per host
            area, labctl = fleet.area(host["name"]), os.path.join(bindir, "labctl.py")
            did = _labctl_json(host, [HOST_PYTHON, labctl, "--root", area, "install", host["name"],
                                      state["app_version"], "--artifact", artifact, "--activate-if-unset"], "install") or did
            argv = _app_argv(area, host["name"], host["app_port"], HOST_PYTHON)
            did = _labctl_json(host, fleet.in_host(host, [HOST_PYTHON, labctl, "--root", area, "proc-start",
                                                          host["name"], "--port", str(host["app_port"]), "--"] + argv), "proc-start")
            url = "http://%s:%d/ready" % (host["address"], host["app_port"])
            if not _wait(lambda: _http_status(url) == 200, 30.0, 0.1):
                raise FleetError("host %s: meshapp is not ready: GET %s did not return 200 within 30s"
                                 % (host["name"], url))
        return did

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, state["hosts"]))
    phases["sshd_and_app"] = round(time.monotonic() - mark, 3)
    fleet.save()
    return changed or any(results)


# ---------------------------------------------------------------- down

def _umount_disk_full(fleet, host):
    target = os.path.join(fleet.release_root(host["name"]), "releases")
    fault = host.get("faults", {}).get("disk-full")
    if not fault:
        return False
    while _is_mountpoint(target):
        _run(["umount", target])
    host["faults"].pop("disk-full", None)
    return True


def _is_mountpoint(path):
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == real for line in handle)


def cmd_down(args):
    started = time.monotonic()
    fleet = Fleet(args.root)
    removed = []
    with _locked(fleet.root):
        fleet.state = _read_json(fleet.state_path)
        if not fleet.state:
            return {"changed": False, "root": fleet.root, "removed": [], "msg": "no fleet at %s" % fleet.root}
        state = fleet.state

        def stop(host):
            out = []
            with contextlib.suppress(ProcessLookupError, FleetError):
                for pid in host.get("faults", {}).get("link-down", {}).get("stopped_pids", []):
                    os.kill(pid, signal.SIGCONT)
            if os.path.exists(fleet.meshctl(host["name"])):
                labctl = os.path.join(fleet.root, "bin", "labctl.py")
                result = _run([sys.executable, labctl, "--root", fleet.area(host["name"]), "stop-all"], check=False)
                with contextlib.suppress(ValueError, IndexError):
                    if json.loads(result.stdout.decode().splitlines()[-1]).get("changed"):
                        out.append("meshapp " + host["name"])
            if _stop_sshd(fleet, host):
                out.append("sshd " + host["name"])
            if _umount_disk_full(fleet, host):
                out.append("tmpfs " + host["name"])
            return out

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            for out in pool.map(stop, state["hosts"]):
                removed.extend(out)
        if state["mode"] == "netns":
            present = set(_netns_list())
            links = _run(["ip", "-o", "link", "show"]).stdout.decode()
            links = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line}
            batch = []  # one `ip -batch` for all: two processes per host are slow on a loaded machine
            for host in state["hosts"]:
                if host.get("created_veth") and host["veth"] in links:
                    batch.append("link delete %s" % host["veth"])
                    removed.append("veth " + host["veth"])
                if host.get("created_netns") and host["netns"] in present:
                    batch.append("netns delete %s" % host["netns"])
                    removed.append("netns " + host["netns"])
            if state.get("created", {}).get("bridge") and state["bridge"] in links:
                batch.append("link delete %s" % state["bridge"])
                removed.append("bridge " + state["bridge"])
            if batch:
                proc = subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(batch) + "\n",
                                      capture_output=True, text=True, timeout=60, check=False)
                left = [n for n in _netns_list() if n in {h.get("netns") for h in state["hosts"]}]
                if proc.returncode != 0 or left:
                    raise FleetError("ip -batch could not remove everything (%s): %s; run down again"
                                     % (", ".join(left) or "links", proc.stderr.strip().replace("\n", " ")))
        os.unlink(fleet.state_path)
    # keys, logs and release areas stay under ROOT (remove ROOT to forget them); the next up reuses the keys
    return {"changed": True, "root": fleet.root, "removed": removed,
            "seconds": round(time.monotonic() - started, 3)}


# ---------------------------------------------------------------- status

def _http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec - lab addresses only
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def cmd_status(args):
    fleet = Fleet(args.root)
    if not fleet.state:
        return {"changed": False, "root": fleet.root, "up": False, "hosts": []}
    out = _summary(fleet, False, up=True)
    present = set(_netns_list()) if fleet.state["mode"] == "netns" else set()

    def probe(host):
        item = {"name": host["name"], "sshd_pid": _sshd_pid(fleet, host),
                "ssh_open": _port_open(host["address"], host["ssh_port"], 0.5),
                "health": _http_status("http://%s:%d/health" % (host["address"], host["app_port"]), 1.0),
                "faults": sorted(host.get("faults", {}))}
        if fleet.state["mode"] == "netns":
            item["netns"] = host["netns"] in present
        return item

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        out["hosts"] = list(pool.map(probe, fleet.state["hosts"]))
    return out


# ---------------------------------------------------------------- faults

def _meshapp_pid(fleet, host):
    """The pid of host's meshapp (labctl's pid file) when that process still runs meshapp.py, else None."""
    pid = _read_pid(os.path.join(fleet.area(host["name"]), "run", host["name"] + ".pid"))
    if pid and _alive(pid) and any(arg.endswith("/meshapp.py") for arg in _cmdline(pid)):
        return pid
    return None


def _fault_link_down(fleet, host):
    if fleet.state["mode"] == "netns":
        _run(["ip", "link", "set", host["veth"], "down"])
        return {}
    # loopback mode has no link to cut: freeze the host's processes so connections hang like a pulled cable
    pids = [pid for pid in (_sshd_pid(fleet, host), _meshapp_pid(fleet, host)) if pid and _alive(pid)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return {"stopped_pids": pids}


def _fault_disk_full(fleet, host):
    target = os.path.join(fleet.release_root(host["name"]), "releases")
    os.makedirs(target, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".disk-full-", dir=fleet.area(host["name"]))
    try:
        _run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % DISK_FULL_SIZE, "meshos-disk-full", staging])
        try:
            # keep what the releases dir held (the active release stays runnable), then fill the rest
            for entry in os.listdir(target):
                src = os.path.join(target, entry)
                if os.path.isdir(src) and not os.path.islink(src):
                    shutil.copytree(src, os.path.join(staging, entry), symlinks=True)
            with open(os.path.join(staging, ".fill"), "wb") as handle:
                chunk = b"\0" * 65536
                with contextlib.suppress(OSError):
                    while True:
                        handle.write(chunk)
                        handle.flush()
            _run(["mount", "--bind", staging, target])
        finally:
            _run(["umount", staging], check=False)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(staging)
    return {"mount": target, "size": DISK_FULL_SIZE}


def _clear(fleet, host):
    faults = host.get("faults", {})
    cleared = sorted(faults)
    if "link-down" in faults:
        if fleet.state["mode"] == "netns":
            _run(["ip", "link", "set", host["veth"], "up"])
        for pid in faults["link-down"].get("stopped_pids", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    if "disk-full" in faults:
        _umount_disk_full(fleet, host)
    host["faults"] = {}
    if "sshd-stop" in faults:
        _start_sshd(fleet, host)
    return cleared


def cmd_fault(args):
    if args.kind not in FAULTS:
        raise FleetError("invalid fault %r: expected one of %s" % (args.kind, ", ".join(FAULTS)))
    fleet = Fleet(args.root)
    with _locked(fleet.root):
        fleet.state = _read_json(fleet.state_path)
        if not fleet.state:
            raise FleetError("no fleet at %s: run up first" % fleet.root)
        host = fleet.host(args.name)
        faults = host.setdefault("faults", {})
        if args.kind == "clear":
            cleared = _clear(fleet, host)
            fleet.save()
            return {"changed": bool(cleared), "name": host["name"], "cleared": cleared, "faults": []}
        if args.kind in faults:
            return {"changed": False, "name": host["name"], "fault": args.kind, "faults": sorted(faults)}
        if args.kind == "link-down":
            detail = _fault_link_down(fleet, host)
        elif args.kind == "sshd-stop":
            _stop_sshd(fleet, host)
            detail = {}
        else:
            detail = _fault_disk_full(fleet, host)
        faults[args.kind] = dict(detail, since=time.time())
        fleet.save()
        return {"changed": True, "name": host["name"], "fault": args.kind, "faults": sorted(faults), "detail": detail}


# ---------------------------------------------------------------- host side (bin/meshctl)

def _labctl(args, *argv):
    labctl = os.path.join(HERE, "labctl.py")
    proc = _run([args.python, labctl, "--root", args.area] + list(argv), check=False, timeout=120)
    try:
        result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        stderr = proc.stderr.decode(errors="replace").strip()
        raise FleetError("labctl %s: no result (exit %d): %s" % (argv[0], proc.returncode, stderr))
    if proc.returncode != 0 or result.get("failed"):
        raise FleetError(result.get("msg") or "labctl %s failed" % argv[0])
    return result


def _app_argv(area, name, port, python):
    current = os.path.join(area, "hosts", name, "current")
    script = os.path.join(current, "meshapp.py")
    if not os.path.exists(script):
        raise FleetError("host %s has no current release: %s is missing (meshctl install VERSION --artifact PATH "
                         "--activate)" % (name, script))
    # 0.0.0.0 inside the namespace = this host's address + its loopback (labctl checks the port on 127.0.0.1)
    return [python, script, "--host", "0.0.0.0", "--port", str(port), "--instance", name,  # nosec
            "--release-dir", current]


def _wait_ready(args):
    if not args.wait_ready:
        return None
    url = "http://127.0.0.1:%d/ready" % args.port
    if not _wait(lambda: _http_status(url) == 200, args.wait_ready, 0.1):
        raise FleetError("%s is not ready: GET %s did not return 200 within %ss" % (args.name, url, args.wait_ready))
    return True


def cmd_host(args):
    if not NAME_RE.match(args.name or "") and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", args.name or ""):
        raise FleetError("invalid --name %r" % args.name)
    action = args.action
    if action in ("start", "restart", "stop", "status"):
        extra = _Parser(prog="meshctl %s" % action)
        if action in ("start", "restart"):
            extra.add_argument("--wait-ready", type=float, metavar="SECONDS")
        args.wait_ready = getattr(extra.parse_args(args.rest), "wait_ready", None)
    if action == "start":
        result = _labctl(args, "proc-start", args.name, "--port", str(args.port), "--",
                         *_app_argv(args.area, args.name, args.port, args.python))
    elif action == "restart":
        old = _read_pid(os.path.join(args.area, "run", args.name + ".pid"))
        result = _labctl(args, "proc-reload", args.name, "--port", str(args.port), "--",
                         *_app_argv(args.area, args.name, args.port, args.python))
        result["old_pid"] = old if old and old != result.get("pid") else None
    elif action == "stop":
        return _labctl(args, "proc-stop", args.name)
    elif action == "install":
        if len(args.rest) < 1:
            raise FleetError("install needs VERSION --artifact PATH [--checksum SHA256] [--activate|--activate-if-unset]")
        return _labctl(args, "install", args.name, *args.rest)
    else:
        status = _labctl(args, "status")
        current = os.path.join(args.area, "hosts", args.name, "current")
        proc = [p for p in status["processes"] if p["name"] == args.name]
        return {"changed": False, "name": args.name, "port": args.port,
                "current": os.path.basename(os.readlink(current)) if os.path.islink(current) else None,
                "running": bool(proc and proc[0]["alive"]), "pid": proc[0]["pid"] if proc else None,
                "ready": _http_status("http://127.0.0.1:%d/ready" % args.port) == 200}
    result["ready"] = _wait_ready(args)
    return result


# ---------------------------------------------------------------- CLI

def _parser():
    parser = _Parser(prog="netfleet.py", description="meshos lab fleet of SSH hosts (network namespaces)")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="fleet root (default %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    cmd = sub.add_parser("up", help="create (or repair) the fleet; idempotent")
    cmd.set_defaults(func=cmd_up)
    cmd.add_argument("--hosts", type=int, default=3)
    cmd.add_argument("--prefix", default="msh", help="names: PREFIX-br0, PREFIX-appN (default %(default)s)")
    cmd.add_argument("--subnet", default="10.77.0", help="the /24 as A.B.C (default %(default)s)")
    cmd.add_argument("--mode", choices=("auto", "netns", "loopback"), default="auto")
    cmd.add_argument("--app-version", default="5.0.0", help="release installed and started on every host")
    cmd.add_argument("--no-app", dest="app_version", action="store_const", const="", help="start no meshapp")
    cmd.add_argument("--app-port", type=int, default=8080, help="meshapp port in each namespace")
    cmd.add_argument("--loopback-port-base", type=int, default=27240,
                     help="loopback mode: meshapp of appN on BASE+N (default %(default)s)")
    cmd = sub.add_parser("down", help="remove exactly what up made; idempotent")
    cmd.set_defaults(func=cmd_down)
    cmd = sub.add_parser("status", help="hosts, addresses, sshd and meshapp health, faults")
    cmd.set_defaults(func=cmd_status)
    cmd = sub.add_parser("fault", help="inject or clear a fault on one host")
    cmd.set_defaults(func=cmd_fault)
    cmd.add_argument("name")
    cmd.add_argument("kind", help="|".join(FAULTS))
    cmd = sub.add_parser("host", help="on a fleet host: manage its meshapp through labctl.py (bin/meshctl)")
    cmd.set_defaults(func=cmd_host)
    cmd.add_argument("--area", required=True, help="the host's area (labctl root)")
    cmd.add_argument("--name", required=True)
    cmd.add_argument("--port", type=int, required=True)
    cmd.add_argument("--python", default=HOST_PYTHON)
    cmd.add_argument("action", choices=("start", "stop", "restart", "status", "install"),
                     help="start|restart [--wait-ready S], stop, status, install VERSION --artifact PATH [...]")
    cmd.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
        args.root = os.path.abspath(args.root)
        result = args.func(args)
    except FleetError as exc:
        msg = str(exc).replace("\n", " ")
        sys.stdout.write(json.dumps({"changed": False, "failed": True, "msg": msg}) + "\n")
        sys.stderr.write("netfleet: error: %s\n" % msg)
        return 1
    except OSError as exc:
        msg = "%s: %s" % (getattr(exc, "filename", None) or "os error", exc.strerror or exc)
        sys.stdout.write(json.dumps({"changed": False, "failed": True, "msg": msg}) + "\n")
        sys.stderr.write("netfleet: error: %s\n" % msg)
        return 1
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
