#!/usr/bin/env bash
# Run the whole test suite, stage by stage, and print a one-line summary per stage.
#   scripts/test.sh                 all stages
#   scripts/test.sh sanity units    only the named stages
# Stages: build (with galaxy-importer) sanity units lint integration molecule k8s. Exit status is non-zero when any stage
# fails. With k8s in the run, the control plane's Go build (scripts/k8s_controlplane.sh build, ~19 CPU-minutes cold,
# under a second when .build/k8s/bin is current) starts in the background first, at nice 19, so it overlaps the other
# stages; the k8s stage waits for it.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

all_stages=(build sanity units lint integration molecule k8s)
if [ "$#" -gt 0 ]; then stages=("$@"); else stages=("${all_stages[@]}"); fi
for stage in "${stages[@]}"; do
  [[ " ${all_stages[*]} " == *" $stage "* ]] || { echo "test.sh: unknown stage '$stage': use ${all_stages[*]}" >&2; exit 2; }
done
# ansible-test resolves real paths and, inside a git work tree, only sees files git does not ignore: the copy must
# live OUTSIDE this repository. One copy per checkout; MESHOS_ANSIBLE_TEST_DIR lets parallel runs use others.
checkout_id=$(printf '%s' "$root" | cksum | cut -d' ' -f1)
ansible_test_root="${MESHOS_ANSIBLE_TEST_DIR:-${TMPDIR:-/tmp}/meshos-ansible-test-$checkout_id}/ansible_collections/meshos/release"
summary=()
failed=0
k8s_build_log="$root/.build/k8s/build.log"
k8s_build_pid=

# The control plane's build, in the background from the start when the run includes the k8s stage.
if [[ " ${stages[*]} " == *" k8s "* ]]; then
  mkdir -p "$root/.build/k8s"
  ( start=$(date +%s)
    nice -n 19 bash "$root/scripts/k8s_controlplane.sh" build
    rc=$?
    echo "k8s build: exit $rc after $(( $(date +%s) - start ))s"
    exit "$rc" ) >"$k8s_build_log" 2>&1 </dev/null &
  k8s_build_pid=$!
fi

copy_for_ansible_test() {
  # ansible-test resolves real paths, so it needs a real copy at ansible_collections/meshos/release
  mkdir -p "$ansible_test_root"
  rsync -a --delete --exclude .venv --exclude .build --exclude .git --exclude .lab --exclude tests/output \
    --exclude collections --exclude bench/output --exclude '__pycache__' --exclude .pytest_cache \
    --exclude '*.tar.gz' "$root/" "$ansible_test_root/"
}

stage_build() {
  shopt -s nullglob
  local out="$root/.build/dist" check="$root/.build/install-check"
  rm -rf "$out" "$check" && mkdir -p "$out" "$check"
  ansible-galaxy collection build --force --output-path "$out" "$root" \
    && ansible-galaxy collection install --force -p "$check" "$out"/meshos-release-*.tar.gz \
    && for module in "$root"/plugins/modules/*.py; do
         name=$(basename "$module" .py)
         ANSIBLE_COLLECTIONS_PATH="$check" ansible-doc "meshos.release.$name" >/dev/null || return 1
       done \
    && ANSIBLE_COLLECTIONS_PATH="$check" ansible-doc -t role -l meshos.release >/dev/null \
    && bash "$root/scripts/galaxy_importer.sh"
}

stage_sanity() {
  copy_for_ansible_test
  mkdir -p "$root/.build"
  local log="$root/.build/sanity.log"
  (cd "$ansible_test_root" && ansible-test sanity --venv --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
     --color no) 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # a copy that ansible-test cannot see passes with "All targets skipped": that is a failure, not a pass
  if grep -q "All targets skipped" "$log"; then echo "sanity: ansible-test saw no files in $ansible_test_root"; return 1; fi
  return "$rc"
}

stage_units() {
  copy_for_ansible_test
  # awx.awx beside the copy (ansible_collections/awx/awx) so tests/unit/test_awx_configure.py checks its real modules
  if [ -d "$root/.build/collections/ansible_collections/awx/awx" ]; then
    mkdir -p "$ansible_test_root/../../awx"
    rsync -a --delete "$root/.build/collections/ansible_collections/awx/awx/" "$ansible_test_root/../../awx/awx/"
  fi
  (cd "$ansible_test_root" && ansible-test units --venv --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
     --requirements --color no)
}

stage_lint() {
  ansible-lint --offline --profile production
}

stage_integration() {
  local suites=(tests/integration)
  # the kill-and-rerun suite (issue: fail closed) runs with the integration tests when present
  [ -d tests/reliability ] && suites+=(tests/reliability)
  python -m pytest -p no:cacheprovider "${suites[@]}" -ra -s
  local rc=$?
  # pytest's 5 means "no tests collected": only acceptable before any integration test exists
  if [ "$rc" -eq 5 ] && [ -z "$(find tests/integration -name 'test_*.py' -print -quit)" ]; then
    echo "integration: no integration tests yet"; return 0
  fi
  return "$rc"
}

stage_molecule() {
  (cd "$root" && molecule test -s default)
}

stage_k8s() {
  # the build started at the top of this script: wait for it, fail with its log's tail if it failed
  local rc run_dir="$root/.build/k8s/ci" port_base=${MESHOS_K8S_CI_PORT_BASE:-27060}
  wait "$k8s_build_pid"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "k8s: the control plane build failed (exit $rc); last lines of $k8s_build_log:"
    tail -n 30 "$k8s_build_log"
    return 1
  fi
  grep -E 'up to date|built in|build done|k8s build:' "$k8s_build_log"
  # One plane for the tests that take MESHOS_K8S_KUBECONFIG (each in its own namespace); the tests of the plane itself
  # (up/down) start their own on their own ports. Down in every case, and only what this `up` started (its pid files).
  if ! MESHOS_K8S_PORT_BASE=$port_base bash scripts/k8s_controlplane.sh up "$run_dir"; then
    MESHOS_K8S_PORT_BASE=$port_base bash scripts/k8s_controlplane.sh down "$run_dir"
    return 1
  fi
  # the backend test imports the modules: the collection from .build/collections (meshos.release -> this checkout)
  MESHOS_K8S_KUBECONFIG="$run_dir/kubeconfig" PYTHONPATH="$root/.build/collections${PYTHONPATH:+:$PYTHONPATH}" \
    python -m pytest -p no:cacheprovider tests/k8s -ra
  rc=$?
  MESHOS_K8S_PORT_BASE=$port_base bash scripts/k8s_controlplane.sh down "$run_dir" || rc=1
  return "$rc"
}

for stage in "${stages[@]}"; do
  start=$(date +%s)
  echo "=== stage $stage ==="
  if "stage_$stage"; then result=ok; else result=FAILED; failed=1; fi
  summary+=("$(printf 'stage %-12s %-6s %4ss' "$stage" "$result" "$(( $(date +%s) - start ))")")
  echo "=== stage $stage: $result ==="
done

echo
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit "$failed"
