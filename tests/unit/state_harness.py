"""Rigs for the state layer's process-level tests: many module tasks in one playbook, an unprivileged user,
hostile folders, and a digest of every byte under a folder."""
import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import ansible

from ansible_collections.fleetops.health.tests.unit import playbook_runner

RUNUSER = "/usr/sbin/runuser"
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY_UID = 65534


def run_tasks(tasks, timeout=600):
    """Run ``tasks`` (dicts with name, module, args and optionally check) as one play on localhost, each task in
    its own module process as Ansible runs it, failures ignored; returns {task name: its result}."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": task["name"], "fleetops.health." + task["module"]: task["args"],
         "check_mode": bool(task.get("check")), "ignore_errors": True} for task in tasks]}]
    handle, playbook = tempfile.mkstemp(prefix="state_tasks.", suffix=".yml")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(play, out)
        env = playbook_runner.ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                                          PYTHONWARNINGS="ignore")
        proc = subprocess.run([playbook_runner.ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
                               "-e", "ansible_python_interpreter=" + sys.executable, playbook],
                              cwd=playbook_runner.COLLECTION_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)
    finally:
        os.unlink(playbook)
    try:
        document = json.loads(proc.stdout)
        return dict((task["task"]["name"], task["hosts"]["localhost"]) for task in document["plays"][0]["tasks"])
    except (ValueError, KeyError, IndexError):
        raise AssertionError("ansible-playbook gave no JSON result:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-4000:]))


def run_module_process(module, args, check=False, timeout=120):
    """``playbook_runner.run_module_direct``, failing the test when the module printed no JSON; warnings as text."""
    result, returncode, output = playbook_runner.run_module_direct(module, args, check=check, timeout=timeout)
    if result is None:
        raise AssertionError("%s gave no JSON result (rc %d):\n%s" % (module, returncode, output[-8000:]))
    # Without the controller, warnings come as structured events; the controller would show their text.
    result["warnings"] = [warning["event"]["msg"] if isinstance(warning, dict) else warning
                          for warning in result.get("warnings", [])]
    return result


def run_module_processes(tasks):
    """``run_tasks`` for scenarios where the controller adds nothing: each task a module process, in order."""
    return dict((task["name"], run_module_process(task["module"], task["args"], task.get("check"))) for task in tasks)


def tree_digest(*roots):
    """Every entry under ``roots`` (not following symlinks): type, mode, owner and a hash of the content or the
    link target. Two digests are equal when not a byte, mode or name changed."""
    digest = {}
    for root in roots:
        for directory, dirnames, filenames in os.walk(str(root)):
            for name in dirnames + filenames + [""]:
                path = os.path.join(directory, name) if name else directory
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    content = "-> " + os.readlink(path)
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as handle:
                        content = hashlib.sha256(handle.read()).hexdigest()
                else:
                    content = None
                digest[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, content)
    return digest


def can_switch_user():
    return os.geteuid() == 0 and os.path.exists(RUNUSER) and os.path.exists(SYSTEM_PYTHON)


def unprivileged_uid():
    """The uid the unprivileged runs use: nobody when we are root, else ourselves."""
    return NOBODY_UID if os.geteuid() == 0 else os.geteuid()


def run_unprivileged(code, *args, timeout=120):
    """Run Python ``code`` as an unprivileged user (nobody via runuser when we are root, else as ourselves), with
    this collection and ansible importable; returns the CompletedProcess."""
    # <root>/ansible_collections/fleetops/health/tests/unit/playbook_runner.py -> <root>
    collections_root = os.path.abspath(os.path.join(os.path.dirname(playbook_runner.__file__), *[".."] * 5))
    site_packages = os.path.dirname(os.path.dirname(ansible.__file__))
    env = {"PYTHONPATH": os.pathsep.join([collections_root, site_packages]), "PATH": "/usr/bin:/bin",
           "PYTHONDONTWRITEBYTECODE": "1"}
    if os.geteuid() == 0:
        command = [RUNUSER, "-u", "nobody", "--", SYSTEM_PYTHON, "-c", code]
    else:
        command = [sys.executable, "-c", code]
    return subprocess.run(command + [str(arg) for arg in args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)


@contextlib.contextmanager
def shared_tmp(prefix="fleetops_state."):
    """A folder under /tmp that the unprivileged user can enter (pytest's tmp_path sits under a 0700 folder)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Hostile layouts. Each takes the folder that should hold the state and the file's name in it, and the path
# of a victim outside it that the module must never create or change.

def symlinked_lock(folder, name, lock_name, victim):
    os.makedirs(folder, mode=0o700)
    os.symlink(victim, os.path.join(folder, lock_name))


def symlinked_state(folder, name, lock_name, victim):
    os.makedirs(folder, mode=0o700)
    os.symlink(victim, os.path.join(folder, name))


def foreign_owner(folder, name, lock_name, victim):
    os.makedirs(folder, mode=0o700)
    os.chown(folder, NOBODY_UID, NOBODY_UID)


def world_writable(folder, name, lock_name, victim):
    os.makedirs(folder)
    os.chmod(folder, 0o777)


def symlinked_folder(folder, name, lock_name, victim):
    os.makedirs(victim, mode=0o700)
    os.symlink(victim, folder)


def file_for_folder(folder, name, lock_name, victim):
    with open(folder, "w") as handle:
        handle.write("not a folder\n")


def folder_for_file(folder, name, lock_name, victim):
    os.makedirs(os.path.join(folder, name), mode=0o700)


HOSTILE_LAYOUTS = {
    "symlinked_lock": (symlinked_lock, "symlink"),
    "symlinked_state": (symlinked_state, "symlink"),
    "symlinked_folder": (symlinked_folder, "symlink"),
    "foreign_owner": (foreign_owner, "owned by uid 65534"),
    "world_writable": (world_writable, "writable by group or others"),
    "file_for_folder": (file_for_folder, "not a folder"),
    "folder_for_file": (folder_for_file, "is a folder where a file should be"),
}
