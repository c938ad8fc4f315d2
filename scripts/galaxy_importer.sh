#!/usr/bin/env bash
# Run galaxy-importer (the checks Galaxy runs on upload) on the collection tarball `ansible-galaxy collection build`
# makes from this tree. Exit non-zero on any error galaxy-importer reports, or on a warning unless
# MESHOS_GALAXY_IMPORTER_ALLOW_WARNINGS=1.
#   scripts/galaxy_importer.sh                  (CI: called by scripts/test.sh)
# galaxy-importer lives in its own venv (it pins ansible-core and ansible-lint): MESHOS_GALAXY_IMPORTER_VENV,
# default .build/galaxy-importer-venv, created on first use from PyPI. ansible-test runs elsewhere in CI (sanity), so
# the importer's container-based ansible-test is off; its ansible-lint pass too by default (CI's lint stage runs
# ansible-lint --profile production on the same files, and the importer kills it after a fixed 180 s, which a loaded
# 2-core runner exceeds): MESHOS_GALAXY_IMPORTER_LINT=1 turns it on.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MESHOS_GALAXY_IMPORTER_VENV:-$root/.build/galaxy-importer-venv}
version=${MESHOS_GALAXY_IMPORTER_VERSION:-0.4.44}
work=$root/.build/galaxy-importer
python=${MESHOS_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3

if ! "$venv/bin/python" -c 'import galaxy_importer' 2>/dev/null; then
  echo "galaxy_importer.sh: installing galaxy-importer $version into $venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "galaxy-importer==$version"
fi

rm -rf "$work"
mkdir -p "$work"
cat > "$work/galaxy-importer.cfg" <<CFG
[galaxy-importer]
LOG_LEVEL_MAIN = INFO
RUN_ANSIBLE_TEST = False
RUN_ANSIBLE_LINT = $([ "${MESHOS_GALAXY_IMPORTER_LINT:-0}" = 1 ] && echo True || echo False)
CHECK_CHANGELOG = True
CHECK_REQUIRED_TAGS = False
CFG

(cd "$root" && "$venv/bin/ansible-galaxy" collection build --force --output-path "$work" >/dev/null)
tarball=$(ls "$work"/*.tar.gz)
echo "galaxy_importer.sh: importing $(basename "$tarball")"

rc=0
# ansible-lint is looked up on PATH: the importer's own (pinned with it)
(cd "$work" && PATH="$venv/bin:$PATH" GALAXY_IMPORTER_CONFIG="$work/galaxy-importer.cfg" \
  "$venv/bin/python" -m galaxy_importer.main "$tarball") > "$work/import.log" 2>&1 || rc=$?
cat "$work/import.log"

if [ "$rc" -ne 0 ] || grep -qE '^(ERROR|CRITICAL)|ImporterError' "$work/import.log"; then
  echo "galaxy_importer.sh: galaxy-importer reported errors (rc $rc), see above" >&2
  exit 1
fi
# empty tests/sanity/ignore-2.N.txt files (kept empty on purpose) are reported with "0 statement(s)": not a finding
if grep '^WARNING' "$work/import.log" | grep -vq 'found ignore-2\.[0-9]*\.txt with 0 statement(s)' && [ "${MESHOS_GALAXY_IMPORTER_ALLOW_WARNINGS:-0}" != 1 ]; then
  echo "galaxy_importer.sh: galaxy-importer reported warnings (MESHOS_GALAXY_IMPORTER_ALLOW_WARNINGS=1 accepts them)" >&2
  exit 1
fi
echo "galaxy_importer.sh: $(basename "$tarball") passes galaxy-importer"
