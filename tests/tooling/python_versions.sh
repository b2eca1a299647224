# shellcheck shell=bash
# Sourced by the test tooling: puts every Python that module code must support (3.8 and newer) on PATH.
# pyenv's real interpreters, not its shims: ansible-test links the interpreter it finds on PATH.
# pyenv's root is $PYENV_ROOT, else ~/.pyenv of the passwd entry (CI runs with an empty $HOME).
pyenv_root=${PYENV_ROOT:-$(getent passwd "$(id -un)" | cut -d: -f6)/.pyenv}
for version in "$pyenv_root"/versions/3.*/bin; do [ -d "$version" ] && PATH="$version:$PATH"; done
export PATH
unset pyenv_root version
