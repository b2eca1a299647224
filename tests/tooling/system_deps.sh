#!/usr/bin/env bash
# Debian packages the host lab and the tests need; installs only what is missing, then proves that every
# command the tests call on this machine is there (tests/unit/tooling/test_system_deps.py keeps the
# table below complete: it fails when test code calls a command the table does not name).
set -euo pipefail
# command:package for each command the tests, the lab and the benchmarks run on this machine.
commands=(
  podman:podman runc:runc /usr/lib/podman/netavark:netavark /usr/lib/podman/aardvark-dns:aardvark-dns
  debootstrap:debootstrap newuidmap:uidmap slirp4netns:slirp4netns logrotate:logrotate fusermount:fuse3
  /usr/lib/x86_64-linux-gnu/libfuse.so.2:libfuse2 chromium:chromium nginx:nginx-light ssh:openssh-client
  ssh-keygen:openssh-client shellcheck:shellcheck systemd-analyze:systemd
  promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager
  prometheus-alertmanager:prometheus-alertmanager java:openjdk-17-jre-headless
  /usr/bin/prometheus-node-exporter:prometheus-node-exporter openssl:openssl
  /usr/lib/python3/dist-packages/psutil:python3-psutil /usr/lib/python3/dist-packages/requests:python3-requests
  /usr/lib/python3/dist-packages/prometheus_client:python3-prometheus-client
)
packages=()
for entry in "${commands[@]}"; do packages+=("${entry#*:}"); done
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages: ${missing[*]}; run 'sudo apt-get install ${missing[*]}'" >&2
    exit 1
  fi
  echo "system-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for entry in "${commands[@]}"; do
  command=${entry%%:*}
  if [[ $command == /* ]]; then [ -e "$command" ] && continue; else command -v "$command" >/dev/null && continue; fi
  echo "system-deps: $command is still missing after installing ${entry#*:}; run 'apt-get install --reinstall ${entry#*:}'" >&2
  exit 1
done
# nginx from the package starts a server on :80 that the tests do not want.
if systemctl is-active --quiet nginx 2>/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
# The packaged Prometheus and Alertmanager (and node_exporter, a dependency) start services; the closed-loop
# test runs its own as plain processes on ports it picks.
for unit in prometheus prometheus-alertmanager prometheus-node-exporter; do
  if systemctl is-active --quiet "$unit" 2>/dev/null; then systemctl disable --now "$unit" >/dev/null 2>&1 || true; fi
done
