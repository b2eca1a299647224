"""Run ansible-playbook against this tree's collection, whether the tree is a checkout or the installed copy."""
import os
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


def run_playbook(playbook, *args, timeout=300):
    """ansible-playbook on localhost (local connection, this Python); stdout and stderr together as text."""
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)] + list(args),
                          cwd=COLLECTION_ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout, check=False)
