#!/usr/bin/env bash
# Runs the named test layers in order, prints a PASS/FAIL line and the time of each, then a summary.
# Every layer runs even when an earlier one failed, so one run shows every problem.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
bin="$root/.venv/bin"
collections="$root/.cache/collections"
installed="$collections/ansible_collections/fleetops/health"
export PATH="$bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$collections" ANSIBLE_CONFIG="$root/ansible.cfg"
# shellcheck source=tests/tooling/python_versions.sh
. "$root/tests/tooling/python_versions.sh"
PATH="$bin:$PATH"
mkdir -p tests/output

layer_unit() {
  # Run from the installed tree, as ansible-test units would see the collection.
  (cd "$installed" && PYTHONPATH="$collections" python -m pytest -q -p no:cacheprovider tests/unit)
}

layer_sanity() {
  tests/tooling/sanity_on_copy.sh || return 1
  # The compile test again for every Python that module code must support (3.8 and newer).
  SANITY_PYTHON=all tests/tooling/sanity_on_copy.sh --test compile || return 1
  tests/tooling/check_build.sh
}

# The newest ansible-core (requirements/newest.txt) on Python 3.12: unit tests and sanity again, so that
# what meta/runtime.yml declares (this and every version down to the controller's) is what is tested.
layer_newest() {
  local venv="$root/.venv-newest"
  command -v python3.12 >/dev/null || {
    echo "newest: python3.12 is missing (the newest ansible-core needs 3.12 or later): run 'pyenv install 3.12'"
    return 1
  }
  if [ ! -f "$venv/.stamp" ] || [ requirements/newest.txt -nt "$venv/.stamp" ]; then
    python3.12 -m venv "$venv" && "$venv/bin/python" -m pip install --quiet -r requirements/newest.txt \
      && touch "$venv/.stamp" || return 1
  fi
  "$venv/bin/ansible" --version | head -n 1
  (cd "$installed" && PATH="$venv/bin:$PATH" PYTHONPATH="$collections" "$venv/bin/python" -m pytest -q \
    -p no:cacheprovider tests/unit) || return 1
  ANSIBLE_TEST="$venv/bin/ansible-test" tests/tooling/sanity_on_copy.sh
}

layer_lint() {
  ansible-lint --offline
}

# The HTML reference (make docs) builds from the plugins' and roles' own docs, with a page for each of them.
layer_docs() {
  make --no-print-directory docs || return 1
  local html="$root/.cache/docsite/html" missing=0 path name
  for path in plugins/modules/*.py plugins/callback/*.py plugins/filter/*.yml roles/*/meta/argument_specs.yml; do
    case "$path" in
      plugins/modules/*) name="$(basename "$path" .py)_module" ;;
      plugins/callback/*) name="$(basename "$path" .py)_callback" ;;
      plugins/filter/*) name="$(basename "$path" .yml)_filter" ;;
      roles/*) name="$(basename "$(dirname "$(dirname "$path")")")_role" ;;
    esac
    [ -s "$html/$name.html" ] || { echo "docs: no page $name.html for $path"; missing=1; }
  done
  return "$missing"
}

layer_molecule() {
  local found=0 rc=0 scenario dir
  for scenario in roles/*/molecule/*/molecule.yml tests/lab/molecule/*/molecule.yml; do
    [ -f "$scenario" ] || continue
    dir=$(dirname "$(dirname "$(dirname "$scenario")")")
    name=$(basename "$(dirname "$scenario")")
    [ -n "${ROLE:-}" ] && [ "$(basename "$dir")" != "$ROLE" ] && continue
    [ -n "${SCENARIO:-}" ] && [ "$name" != "$SCENARIO" ] && continue
    found=1
    echo "--- molecule test -s $name in $dir"
    (cd "$dir" && molecule test -s "$name") || rc=1
  done
  [ "$found" = 1 ] || { echo "no molecule scenario matched"; return 1; }
  return "$rc"
}

layer_e2e() {
  python -m pytest -q -p no:cacheprovider tests/e2e ${K:+-k "$K"}
}

run_layer() {
  case "$1" in
    unit) layer_unit ;;
    sanity) layer_sanity ;;
    lint) layer_lint ;;
    newest) layer_newest ;;
    docs) layer_docs ;;
    molecule) layer_molecule ;;
    e2e) layer_e2e ;;
    *) echo "unknown layer $1 (known: unit sanity newest lint docs molecule e2e)"; return 2 ;;
  esac
}

declare -A results times
status=0
for layer in "$@"; do
  echo "=================== layer: $layer ==================="
  start=$(date +%s)
  if run_layer "$layer" 2>&1 | tee "tests/output/$layer.log"; then
    results[$layer]=PASS
  else
    results[$layer]=FAIL
    status=1
  fi
  times[$layer]=$(( $(date +%s) - start ))
  echo "layer $layer: ${results[$layer]} in ${times[$layer]}s (log: tests/output/$layer.log)"
done

echo "=================== summary ==================="
passed=0 failed=0
for layer in "$@"; do
  printf '%-10s %s %6ss\n' "$layer" "${results[$layer]}" "${times[$layer]}"
  if [ "${results[$layer]}" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "layers: $passed passed, $failed failed"
exit $status
