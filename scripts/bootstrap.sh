#!/usr/bin/env bash
# Bootstrap a development / CI environment for meshos.release.
#  - picks the newest working Python >= 3.12 (python3.13, python3.12, pyenv installs), else python3 with ansible-core 2.19
#  - creates .venv and installs the pinned Python dependencies
#  - installs system packages (haproxy, prometheus, alertmanager, git, wrk, chromium for the report test) with
#    apt-get when root on Debian/Ubuntu, otherwise prints the exact command to run
#  - makes the collection importable: .build/collections/ansible_collections/meshos/release -> repo (symlink, for
#    playbooks and molecule) and a copy under .build/ansible-test/ for ansible-test, which resolves real paths
# Safe to run repeatedly: a stamp file skips pip when the requirements did not change.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv"
say() { printf 'bootstrap: %s\n' "$*"; }

python_works() { "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }

pick_python() {
  local candidate
  for candidate in python3.13 python3.12 \
      "$HOME"/.pyenv/versions/3.13*/bin/python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
      /usr/bin/python3.13 /usr/bin/python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 && python_works "$candidate" \
        && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
      command -v "$candidate"
      return
    fi
  done
  echo python3
}

install_system_packages() {
  local wanted=(haproxy prometheus prometheus-alertmanager git wrk openssh-client openssh-server iproute2 curl rsync openssl
    chromium)
  local missing=() pkg
  for pkg in "${wanted[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "system packages present"
    return
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the packages from trying to start system services: the lab starts its own processes
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  else
    say "missing system packages: ${missing[*]}"
    say "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  fi
}

setup_venv() {
  local python reqs stamp
  python=$(pick_python)
  if "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
    reqs=requirements-dev.txt
  else
    reqs=requirements-dev-py311.txt
    say "note: no Python >= 3.12 found; using $("$python" --version 2>&1) with ansible-core 2.19"
  fi
  if [ -x "$venv/bin/python" ] && ! python_works "$venv/bin/python"; then
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating .venv with $("$python" --version 2>&1) ($python)"
    "$python" -m venv "$venv"
  fi
  stamp="$venv/.requirements.sha256"
  if [ "$(sha256sum "$reqs" requirements.txt | sha256sum)" != "$(cat "$stamp" 2>/dev/null)" ]; then
    say "installing Python dependencies from $reqs"
    # pip's notes about this machine's optional local indexes are noise: keep real errors only
    "$venv/bin/python" -m pip install -q --upgrade pip 2> >(grep -v 'is ignored' >&2)
    "$venv/bin/python" -m pip install -q -r "$reqs" -r requirements.txt 2> >(grep -v 'is ignored' >&2)
    sha256sum "$reqs" requirements.txt | sha256sum > "$stamp"
  else
    say "Python dependencies up to date ($reqs)"
  fi
}

link_collection() {
  local link_parent="$root/.build/collections/ansible_collections/meshos"
  mkdir -p "$link_parent"
  ln -sfn "$root" "$link_parent/release"
  say "collection linked at .build/collections/ansible_collections/meshos/release"
}

# awx.awx's real module specs for lint and tests/unit/test_awx_configure.py: the ansible package on PyPI bundled it
# up to 12.x (newer ones do not) and Galaxy is not reachable, so it is unpacked from that wheel once
install_awx_collection() {
  local target="$root/.build/collections/ansible_collections/awx/awx"
  [ -d "$target" ] && return 0
  mkdir -p "$root/.build/wheels"
  "$venv/bin/python" -m pip download -q --no-deps ansible==12.3.0 -d "$root/.build/wheels" 2> >(grep -v 'is ignored' >&2)
  "$venv/bin/python" - "$root/.build/wheels/ansible-12.3.0-py3-none-any.whl" "$root/.build/collections" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extractall(sys.argv[2], [n for n in wheel.namelist() if n.startswith("ansible_collections/awx/awx/")])
PY
  say "awx.awx unpacked into .build/collections (from ansible 12.3.0)"
}

# Go builds the Kubernetes control plane of the k8s test stage (scripts/k8s_controlplane.sh build; the `kubernetes`
# Python client is in the pip requirements). Not a Debian package here: Debian's golang is older than the go.mod needs.
check_go() {
  if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then
    say "go present ($(PATH="$PATH:/usr/local/go/bin" go version | cut -d' ' -f3))"
  else
    say "go is missing: the k8s test stage needs it (https://go.dev/doc/install, into /usr/local/go)"
  fi
}

install_system_packages
check_go
setup_venv
link_collection
install_awx_collection
shared_tools="$root/../shared/tools/install_ansible_test_pip.sh"
if [ -f "$shared_tools" ]; then
  sh "$shared_tools" >/dev/null
  say "ansible-test offline pip bootstrap installed"
fi
say "done: source scripts/env.sh to use the environment"
