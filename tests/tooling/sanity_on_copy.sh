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
# ANSIBLE_TEST picks another ansible-test (the `newest` layer's); the default is the controller's.
ansible_test=${ANSIBLE_TEST:-$root/.venv/bin/ansible-test}
# ansible-test --venv downloads a get-pip script from a host out of reach here and in CI: give it an
# offline stand-in, named after the pip that this ansible-test pins for its venvs.
ansible_test_lib=$("$(dirname "$ansible_test")/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_version=$(grep -oE "pip='[0-9.]+'" "$ansible_test_lib/_internal/python_requirements.py" | head -n 1 | tr -dc '0-9.')
[ -n "$pip_version" ] || { echo "sanity: cannot tell which pip $ansible_test pins" >&2; exit 1; }
install -D -m 0644 "$root/tests/tooling/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
cd "$tree"
# SANITY_PYTHON picks one Python (default 3.11); SANITY_PYTHON=all runs on every Python ansible-test finds.
python_args=(--python "${SANITY_PYTHON:-3.11}")
[ "${SANITY_PYTHON:-}" = all ] && python_args=()
"$ansible_test" sanity --venv "${python_args[@]}" --color no "$@"
