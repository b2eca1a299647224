"""Make a checkout importable as ansible_collections.fleetops.health, as ansible-test units sees it."""
import os
import sys

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _collections_dir():
    parent = os.path.dirname(COLLECTION_ROOT)
    if parent.endswith(os.path.join("ansible_collections", "fleetops")):
        return os.path.dirname(os.path.dirname(parent))
    # A plain checkout: expose it through a symlink under .cache/dev-collections.
    base = os.path.join(COLLECTION_ROOT, ".cache", "dev-collections")
    link = os.path.join(base, "ansible_collections", "fleetops", "health")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(COLLECTION_ROOT, link)
        except FileExistsError:
            pass
    return base


sys.path.insert(0, _collections_dir())

import pytest  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.fleetops.health.tests.unit import playbook_runner  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def ansible_env():
    """Environment for running ansible/ansible-playbook against this collection, wherever the tree lives."""
    return playbook_runner.ansible_env(PYTHONWARNINGS="ignore")
