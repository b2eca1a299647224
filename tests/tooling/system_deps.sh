#!/usr/bin/env bash
# Debian packages the host lab and the tests need; installs only what is missing.
set -euo pipefail
packages=(podman runc netavark aardvark-dns debootstrap uidmap slirp4netns logrotate fuse3 libfuse2 chromium nginx-light openssh-client shellcheck)
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
# nginx from the package starts a server on :80 that the tests do not want.
if systemctl is-active --quiet nginx 2>/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
