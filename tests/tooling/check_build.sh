#!/usr/bin/env bash
# The built tarball installs cleanly and ansible-doc can show every module and plugin in it.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --force --output-path "$work" >/dev/null
tarball=$(ls "$work"/fleetops-health-*.tar.gz)
ANSIBLE_COLLECTIONS_PATH="$work/collections" ansible-galaxy collection install -p "$work/collections" "$tarball" >/dev/null
count=0
# A filter's doc is its .yml sidecar (one per filter, several filters per .py file); modules and callbacks
# carry theirs in the .py.
for kind_dir in modules callback filter; do
  suffix=.py; [ "$kind_dir" = filter ] && suffix=.yml
  for plugin in plugins/"$kind_dir"/*"$suffix"; do
    [ -f "$plugin" ] || continue
    name=$(basename "$plugin" "$suffix")
    kind=$kind_dir; [ "$kind" = modules ] && kind=module
    ANSIBLE_COLLECTIONS_PATH="$work/collections" ansible-doc -t "$kind" "fleetops.health.$name" >/dev/null
    count=$((count + 1))
  done
done
echo "build: $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB) installs; ansible-doc shows $count plugins"
