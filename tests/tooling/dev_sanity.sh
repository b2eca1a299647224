#!/usr/bin/env bash
# ansible-test sanity on a private copy of the working tree, for a quick check of some files:
#   tests/tooling/dev_sanity.sh plugins/modules/probe.py plugins/module_utils/probe_engine.py
# The sanity layer of `make test` runs it on the whole tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/fleetops/health"
mkdir -p "$tree"
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$tree"
for version in /root/.pyenv/versions/3.*/bin; do [ -d "$version" ] && PATH="$version:$PATH"; done
install -D -m 0644 "$root/tests/tooling/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_24_2.py"
cd "$tree"
# SANITY_PYTHON picks one Python (default 3.11); SANITY_PYTHON=all runs on every Python ansible-test finds.
python_args=(--python "${SANITY_PYTHON:-3.11}")
[ "${SANITY_PYTHON:-}" = all ] && python_args=()
"$root/.venv/bin/ansible-test" sanity --venv "${python_args[@]}" --color no "$@"
