"""Run ansible-playbook against this tree's collection, whether the tree is a checkout or the installed copy."""
import os
import signal
import subprocess
import sys

import ansible_collections

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def collections_path():
    """Where this tree's collection was imported from (conftest.py set that up), then the vendored collections."""
    return [os.path.dirname(path) for path in ansible_collections.__path__] + [os.path.join(COLLECTION_ROOT, ".cache", "collections")]


def ansible_env(**extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(COLLECTION_ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(collections_path()),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.update(extra)
    return env


def run_bounded(command, timeout, **popen_args):
    """subprocess.run in a session of its own: at ``timeout`` the whole group is killed, the module process that
    Ansible started (or a helper process it left) included, then subprocess.TimeoutExpired is raised. Killing
    only the top process would leave a hung module running into later tests."""
    with subprocess.Popen(command, start_new_session=True, universal_newlines=True, **popen_args) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_playbook(playbook, *args, timeout=300):
    """ansible-playbook on localhost (local connection, this Python); stdout and stderr together as text."""
    return run_bounded([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
                        "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)] + list(args),
                       timeout, cwd=COLLECTION_ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


ANSIBLE_ADHOC = os.path.join(os.path.dirname(sys.executable), "ansible")


class ModuleRun(object):
    """One ``ansible localhost -m`` run: its exit code, wall time, the module's result and the raw output."""

    def __init__(self, rc, elapsed, result, output):
        self.rc = rc
        self.elapsed = elapsed
        self.result = result
        self.output = output

    @property
    def failed(self):
        return bool(self.result.get("failed")) or self.rc != 0


def run_module(module, args, check=False, timeout=120, env=None, verbosity=0):
    """Run ``fleetops.health.<module>`` as Ansible runs it (its own process on localhost) and time it.

    ``args`` is a dict sent as JSON. The result is the module's JSON result as the json callback reports it
    ({} when Ansible printed none). A run still going at ``timeout`` raises subprocess.TimeoutExpired.
    """
    import json
    import time

    command = [ANSIBLE_ADHOC, "localhost", "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + sys.executable,
               "-m", "fleetops.health." + module, "-a", json.dumps(args)]
    if check:
        command.append("--check")
    if verbosity:
        command.append("-" + "v" * verbosity)
    run_env = ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                          PYTHONWARNINGS="ignore")
    run_env.update(env or {})
    start = time.monotonic()
    proc = run_bounded(command, timeout, cwd=COLLECTION_ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - start
    result = {}
    # With -v and more, connection lines come before the json callback's document, which starts a line with "{".
    start = 0 if proc.stdout.startswith("{") else proc.stdout.find("\n{\n") + 1
    try:
        document = json.loads(proc.stdout[start:] if start else proc.stdout)
        result = document["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        pass
    return ModuleRun(proc.returncode, elapsed, result, proc.stdout + proc.stderr)


def run_module_direct(module, args, check=False, python=sys.executable, python_flags=(), pythonpath=None, timeout=120):
    """Run ``fleetops.health.<module>`` in a process of its own, as the AnsiballZ wrapper runs it on the host,
    without the controller's per-task cost. Returns ``(result, returncode, stderr)``; ``result`` is None when the
    module printed no JSON. ``python`` and ``pythonpath`` run it on another interpreter or without a library."""
    import json
    import tempfile

    document = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=bool(check))}
    handle, args_file = tempfile.mkstemp(prefix="module_args.", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(document, out)
        env = dict(os.environ, PYTHONWARNINGS="ignore",
                   PYTHONPATH=pythonpath or os.pathsep.join(collections_path() + [_ansible_parent()]))
        proc = run_bounded([python] + list(python_flags)
                           + ["-m", "ansible_collections.fleetops.health.plugins.modules." + module, args_file],
                           timeout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.unlink(args_file)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = None
    return result, proc.returncode, proc.stdout + proc.stderr


def _ansible_parent():
    """The folder that holds this Python's ansible package, for a module process started with another path."""
    import ansible

    return os.path.dirname(os.path.dirname(os.path.abspath(ansible.__file__)))
