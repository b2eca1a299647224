#!/usr/bin/env bash
# The built tarball installs cleanly and ansible-doc can show every module and plugin in it.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --force --output-path "$work" >/dev/null
tarball=$(ls "$work"/fleetops-health-*.tar.gz)
ANSIBLE_COLLECTIONS_PATH="$work/collections" ansible-galaxy collection install -p "$work/collections" "$tarball" >/dev/null
count=0
for kind_dir in modules callback filter; do
  for plugin in plugins/"$kind_dir"/*.py; do
    [ -f "$plugin" ] || continue
    name=$(basename "$plugin" .py)
    kind=$kind_dir; [ "$kind" = modules ] && kind=module
    ANSIBLE_COLLECTIONS_PATH="$work/collections" ansible-doc -t "$kind" "fleetops.health.$name" >/dev/null
    count=$((count + 1))
  done
done
echo "build: $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB) installs; ansible-doc shows $count plugins"
