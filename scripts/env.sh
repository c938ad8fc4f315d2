# shellcheck shell=bash
# Source this to use the bootstrapped environment: the venv's ansible and the collection on the collections path.
__meshos_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$__meshos_root/.venv/bin:$PATH"
# Go for the k8s test stage's control plane build, where the official installer puts it
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="$PATH:/usr/local/go/bin"; fi
export ANSIBLE_COLLECTIONS_PATH="$__meshos_root/.build/collections"
export ANSIBLE_ROLES_PATH="$__meshos_root/roles"
export ANSIBLE_INVENTORY="$__meshos_root/inventories/lab"
export ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-1}"
export ANSIBLE_FORCE_COLOR=0
export ANSIBLE_HOST_KEY_CHECKING=False
# live progress beside the normal output (a heartbeat line per running task, gate tables): plugins/callback/progress.py
export ANSIBLE_CALLBACKS_ENABLED="${ANSIBLE_CALLBACKS_ENABLED:-meshos.release.progress}"
export ANSIBLE_PYTHON_INTERPRETER="${ANSIBLE_PYTHON_INTERPRETER:-$__meshos_root/.venv/bin/python}"
unset __meshos_root
