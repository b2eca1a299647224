"""The module run as Ansible runs it: a real process reading its arguments, printing its JSON result."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import sys

import ansible
import pytest
from ansible.module_utils.basic import _PY_MIN

import ansible_collections
from ansible_collections.fleetops.health.tests.unit.playbook_runner import run_module_direct

COLLECTIONS_DIR = os.path.dirname(os.path.abspath(list(ansible_collections.__path__)[0]))
# The oldest Python module code runs on: 3.8, or the oldest this ansible-core's module_utils accept on a
# target (2.21 needs 3.9). tests/tooling/python_versions.sh puts pyenv's interpreters on PATH.
OLDEST_TARGET = max((3, 8), _PY_MIN)


def _find_python(version):
    """A real interpreter of ``version`` (pyenv's shims only work where pyenv selected that version)."""
    name = "python%d.%d" % version
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".pyenv")
    installed = sorted(glob.glob(os.path.join(pyenv_root, "versions", "%d.%d.*" % version, "bin", name)))
    on_path = [path for path in [shutil.which(name)] if path and "/shims/" not in path]
    return (on_path + installed or [None])[0]


OLDEST_PYTHON = _find_python(OLDEST_TARGET)


def run_module(args, check=False, python=sys.executable, python_flags=(), pythonpath=None):
    result, rc, output = run_module_direct("host_resources", args, check=check, python=python, python_flags=python_flags,
                                           pythonpath=pythonpath, timeout=60)
    assert result is not None, output
    return result, rc


def test_defaults_return_every_default_section_and_never_change():
    result, rc = run_module({})
    assert rc == 0 and result["changed"] is False
    facts = result["ansible_facts"]["fleet_resources"]
    for key in ("cpu", "load", "memory", "swap", "disks", "io", "network", "processes", "cgroup", "units",
                "uptime", "score", "verdict", "reasons"):
        assert key in facts, key
    assert "connections" not in facts
    assert facts["window"] == 0.2


def _shape(value):
    """The keys of nested dicts and the types of leaves, so two runs' structures can be compared."""
    if isinstance(value, dict):
        return dict((key, _shape(item)) for key, item in value.items())
    return type(value).__name__


def test_check_mode_runs_the_same():
    # Measuring changes nothing, so check mode must measure exactly as a normal run does.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    args = {"subset": ["memory", "connections", "cpu"], "window": 0.1}
    try:
        normal, rc_normal = run_module(args)
        checked, rc_checked = run_module(args, check=True)
    finally:
        listener.close()
    assert rc_normal == rc_checked == 0
    assert normal["changed"] is checked["changed"] is False
    normal_facts = normal["ansible_facts"]["fleet_resources"]
    facts = checked["ansible_facts"]["fleet_resources"]
    assert _shape(facts) == _shape(normal_facts)
    assert facts["memory"]["total"] == normal_facts["memory"]["total"] > 0
    assert facts["connections"]["tcp_states"].get("listen", 0) >= 1
    assert facts["cpu"]["percent"] is not None


@pytest.mark.parametrize("args, message", [
    ({"subset": ["cpu", "gpu"]}, "value of subset must be one or more of"),
    ({"window": -1}, "host_resources: window: must be a number from 0 to 300, got -1.0"),
    ({"thresholds": {"disks": {"warn": 80}}}, "host_resources: thresholds: unknown metric 'disks'"),
    ({"thresholds": {"disk": {"warn": 99}}}, "host_resources: thresholds.disk.warn (99) must be below thresholds.disk.crit (95)"),
    ({"weights": {"io": 1}}, "host_resources: weights: unknown key 'io'"),
])
def test_bad_input_fails_naming_the_key(args, message):
    result, rc = run_module(args)
    assert rc == 1 and result["failed"] is True
    assert message in result["msg"]


def test_without_psutil_names_the_library_and_the_package(tmp_path):
    # -S leaves site-packages (and so psutil) out; ansible comes in alone through a symlink
    only_ansible = tmp_path / "lib"
    only_ansible.mkdir()
    (only_ansible / "ansible").symlink_to(os.path.dirname(os.path.abspath(ansible.__file__)))
    result, rc = run_module({}, python_flags=["-S"],
                            pythonpath=os.pathsep.join([COLLECTIONS_DIR, str(only_ansible)]))
    assert rc == 1
    assert "Failed to import the required Python library (psutil)" in result["msg"]
    assert "python3-psutil" in result["msg"]


def test_runs_on_the_oldest_target_python():
    wanted = "python%d.%d" % OLDEST_TARGET
    if not OLDEST_PYTHON:
        # A developer's machine may lack it; CI must not pass without running the module on it.
        if os.environ.get("CI"):
            pytest.fail("%s is not on PATH: module code promises it; run 'pyenv install %d.%d'" % ((wanted,) + OLDEST_TARGET))
        pytest.skip("no %s on PATH (tests/tooling/python_versions.sh adds pyenv's)" % wanted)
    # psutil's abi3 wheel loads on 3.8 and 3.9 too, so this is a full run of the module code on the oldest target
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(__import__("psutil").__file__)))
    result, rc = run_module({"window": 0.1}, python=OLDEST_PYTHON,
                            pythonpath=os.pathsep.join([COLLECTIONS_DIR, site_packages]))
    assert rc == 0, result
    assert result["ansible_facts"]["fleet_resources"]["cpu"]["percent"] is not None
