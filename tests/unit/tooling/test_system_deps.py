"""Every command the tests, the lab and the benchmarks run on this machine is installed by system_deps.sh.

A fresh Debian 12 machine has only its essential packages; a command the tests call that system_deps.sh
neither installs nor checks would pass on a developer's machine and fail on a new one.
"""
from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SYSTEM_DEPS = os.path.join(ROOT, "tests", "tooling", "system_deps.sh")
SCANNED = ("tests", "bench", ".config")
# Essential in Debian 12 (coreutils, util-linux, mount, tar, grep, dpkg, apt, bash, systemd's tools where
# the machine boots with it), or not a Debian package at all (pyenv's interpreters, the venv's tools).
BASE_COMMANDS = {"sh", "bash", "true", "false", "sleep", "tar", "grep", "df", "mount", "umount", "chroot",
                 "runuser", "apt-get", "dpkg-query", "systemctl", "getent", "python3", "python3.8", "chromium-browser"}
PATTERNS = (
    re.compile(r"shutil\.which\(\s*[\"']([^\"']+)[\"']"),
    re.compile(r"(?:subprocess\.(?:run|Popen|check_output|check_call|call)|run_checked)\(\s*\[\s*[\"']([^\"']+)[\"']"),
    re.compile(r"[\"']/usr/s?bin/([A-Za-z0-9_.+-]+)[\"']"),
)


def declared_commands():
    text = open(SYSTEM_DEPS).read()
    table = re.search(r"^commands=\((.*?)^\)", text, re.S | re.M).group(1)
    return dict(entry.split(":", 1) for entry in table.split())


def called_commands():
    called = {}
    for top in SCANNED:
        for directory, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                with open(path, errors="replace") as handle:
                    source = handle.read()
                for pattern in PATTERNS:
                    for match in pattern.finditer(source):
                        if "%" not in match.group(1):  # a name built at run time, e.g. python%d.%d
                            called.setdefault(os.path.basename(match.group(1)), os.path.relpath(path, ROOT))
    return called


def test_the_table_is_what_the_script_installs_and_checks():
    declared = declared_commands()
    assert {"podman", "/usr/lib/podman/aardvark-dns", "debootstrap", "logrotate"} <= set(declared)
    assert declared["/usr/lib/podman/aardvark-dns"] == "aardvark-dns"


def test_every_command_the_tests_call_is_declared():
    declared = set(os.path.basename(command) for command in declared_commands())
    undeclared = dict((command, where) for command, where in called_commands().items()
                      if command not in declared and command not in BASE_COMMANDS)
    assert not undeclared, ("commands the tests call that tests/tooling/system_deps.sh does not install: %s"
                            % ", ".join("%s (%s)" % item for item in sorted(undeclared.items())))


@pytest.mark.parametrize("command, package", sorted(declared_commands().items()))
def test_each_declared_command_is_on_this_machine(command, package):
    found = os.path.exists(command) if command.startswith("/") else any(
        os.access(os.path.join(directory, command), os.X_OK) for directory in os.environ["PATH"].split(os.pathsep)
        + ["/usr/sbin", "/sbin"])
    assert found, "%s is missing: run 'make system-deps' (apt-get install %s)" % (command, package)
