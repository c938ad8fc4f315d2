#!/usr/bin/env bash
# Run the whole test suite, stage by stage, and print a one-line summary per stage.
#   scripts/test.sh                 all stages
#   scripts/test.sh sanity units    only the named stages
# Stages: build (with galaxy-importer) sanity units lint integration molecule. Exit status is non-zero when any stage fails.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/env.sh
. scripts/env.sh

all_stages=(build sanity units lint integration molecule)
if [ "$#" -gt 0 ]; then stages=("$@"); else stages=("${all_stages[@]}"); fi
# ansible-test resolves real paths and, inside a git work tree, only sees files git does not ignore: the copy must
# live OUTSIDE this repository. One copy per checkout; MESHOS_ANSIBLE_TEST_DIR lets parallel runs use others.
checkout_id=$(printf '%s' "$root" | cksum | cut -d' ' -f1)
ansible_test_root="${MESHOS_ANSIBLE_TEST_DIR:-${TMPDIR:-/tmp}/meshos-ansible-test-$checkout_id}/ansible_collections/meshos/release"
summary=()
failed=0

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
