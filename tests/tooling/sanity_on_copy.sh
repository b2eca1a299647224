#!/usr/bin/env bash
# ansible-test sanity on a copy of the working tree outside this git checkout: inside it, ansible-test
# would take the installed tree under the ignored .cache for ignored files and skip every target.
# The sanity layer of `make test` runs it on the whole tree; paths check only those files:
#   tests/tooling/sanity_on_copy.sh plugins/modules/probe.py plugins/module_utils/probe_engine.py
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/fleetops/health"
mkdir -p "$tree"
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$tree"
# shellcheck source=tests/tooling/python_versions.sh
. "$root/tests/tooling/python_versions.sh"
# ansible-test --venv downloads a get-pip script from a host out of reach here and in CI: give it an
# offline stand-in, named after the pip that ansible-core 2.19's ansible-test pins.
install -D -m 0644 "$root/tests/tooling/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_24_2.py"
cd "$tree"
# SANITY_PYTHON picks one Python (default 3.11); SANITY_PYTHON=all runs on every Python ansible-test finds.
python_args=(--python "${SANITY_PYTHON:-3.11}")
[ "${SANITY_PYTHON:-}" = all ] && python_args=()
"$root/.venv/bin/ansible-test" sanity --venv "${python_args[@]}" --color no "$@"
