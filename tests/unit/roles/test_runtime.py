# -*- coding: utf-8 -*-
"""The runtime role through ansible-playbook on this machine, into a temporary prefix.

It must ship every module_utils file with the __init__.py files so that a host program imports them without
ansible-core, change nothing the second time, write nothing in check mode, remove files that left the
collection, and remove everything with runtime_state: absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, COLLECTION_ROOT, ansible_env
from ansible_collections.fleetops.health.tests.unit.without_ansible import BLOCK_ANSIBLE

MODULE_UTILS = sorted(name for name in os.listdir(os.path.join(COLLECTION_ROOT, "plugins", "module_utils"))
                      if name.endswith(".py"))
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: fleetops.health.runtime
"""
# What the probes runner and the agent import, with ansible-core made unimportable.
HOST_PROGRAM = BLOCK_ANSIBLE + textwrap.dedent("""
    sys.path.insert(0, sys.argv[1])
    import importlib
    for name in sys.argv[2:]:
        module = importlib.import_module("ansible_collections.fleetops.health.plugins.module_utils." + name)
        assert module.__file__.startswith(sys.argv[1]), module.__file__
    print("imported", len(sys.argv) - 2)
""")
HOST_SIDE = ["state_file", "probe_engine", "probe_targets", "probe_state", "log_scanner", "log_offsets",
             "restart_budget", "im_adapters", "im_delivery", "im_transport", "redaction", "validation", "collectors",
             "cgroup", "mounts", "scoring", "systemd_units"]


def converge(tmp_path, prefix, *args, **variables):
    extra = {"runtime_python_prefix": str(prefix), "runtime_packages": ["python3"]}
    extra.update(variables)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
                           "-e", "@%s" % (tmp_path / "vars.json"), str(tmp_path / "play.yml")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default"), timeout=300, cwd=str(tmp_path), check=False)
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost ")]
    return proc, recap[-1] if recap else ""


def files_under(folder):
    found = []
    for root, _dirs, names in os.walk(str(folder)):
        found.extend(os.path.relpath(os.path.join(root, n), str(folder)) for n in names)
    return sorted(found)


def test_ships_module_utils_idempotently_and_host_programs_import_them_without_ansible(tmp_path):
    prefix = tmp_path / "prefix"
    proc, recap = converge(tmp_path, prefix, "--check")
    assert proc.returncode == 0, proc.stdout
    assert "changed=0" not in recap and not prefix.exists(), "check mode wrote to the host"

    proc, recap = converge(tmp_path, prefix)
    assert proc.returncode == 0, proc.stdout
    package = prefix / "ansible_collections" / "fleetops" / "health" / "plugins" / "module_utils"
    assert sorted(n for n in os.listdir(str(package)) if n.endswith(".py")) == sorted(MODULE_UTILS + ["__init__.py"])
    for level in (prefix / "ansible_collections", package.parent, package.parent.parent, package.parent.parent.parent):
        assert (level / "__init__.py").is_file()
    assert (package / "__pycache__").is_dir(), "the handler byte-compiles the module_utils"
    with open(os.path.join(COLLECTION_ROOT, "plugins", "module_utils", "probe_engine.py"), "rb") as source:
        assert (package / "probe_engine.py").read_bytes() == source.read()

    done = subprocess.run([sys.executable, "-c", HOST_PROGRAM, str(prefix)] + HOST_SIDE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "imported %d" % len(HOST_SIDE), done.stdout

    proc, recap = converge(tmp_path, prefix)
    assert proc.returncode == 0 and "changed=0" in recap, recap

    # A file that left the collection goes; a changed one is replaced.
    (package / "retired_helper.py").write_text("x = 1\n")
    (package / "scoring.py").write_text("tampered = True\n")
    proc, recap = converge(tmp_path, prefix)
    assert proc.returncode == 0 and "changed=0" not in recap, proc.stdout
    assert not (package / "retired_helper.py").exists()
    assert "tampered" not in (package / "scoring.py").read_text()

    before = files_under(prefix)
    proc, recap = converge(tmp_path, prefix, "--check", runtime_state="absent")
    assert proc.returncode == 0 and "changed=0" not in recap and files_under(prefix) == before
    proc, recap = converge(tmp_path, prefix, runtime_state="absent")
    assert proc.returncode == 0 and not prefix.exists(), proc.stdout
    proc, recap = converge(tmp_path, prefix, runtime_state="absent")
    assert proc.returncode == 0 and "changed=0" in recap


@pytest.mark.parametrize("variables, words", [
    ({"runtime_python_prefix": "relative/dir"}, "runtime_python_prefix must be an absolute path"),
    ({"runtime_python_prefix": "/usr/lib/python3/dist-packages"}, "not a shared folder"),
    ({"runtime_extra_packages": ["python3-foo; rm -rf /"]}, "runtime_extra_packages hold Debian package names"),
])
def test_bad_input_fails_preflight_naming_the_variable(tmp_path, variables, words):
    variables.setdefault("runtime_python_prefix", str(tmp_path / "prefix"))
    proc, _recap = converge(tmp_path, variables.pop("runtime_python_prefix"), **variables)
    assert proc.returncode != 0 and words in proc.stdout, proc.stdout
    assert not (tmp_path / "prefix").exists()
