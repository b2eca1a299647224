"""The collection's reference is generated from the plugins' and roles' own docs (make docs): every doc must
render, and every filter must have its own."""
from __future__ import annotations

import glob
import importlib
import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.fleetops.health.tests.unit.playbook_runner import COLLECTION_ROOT, ansible_env

FILTER_DIR = os.path.join(COLLECTION_ROOT, "plugins", "filter")
ANTSIBULL_DOCS = os.path.join(os.path.dirname(sys.executable), "antsibull-docs")


def exported_filters():
    names = []
    for path in sorted(glob.glob(os.path.join(FILTER_DIR, "*.py"))):
        module = importlib.import_module("ansible_collections.fleetops.health.plugins.filter." +
                                         os.path.basename(path)[:-3])
        names.extend(sorted(module.FilterModule().filters()))
    return names


@pytest.mark.parametrize("name", exported_filters())
def test_every_filter_has_its_own_doc(name):
    sidecar = os.path.join(FILTER_DIR, name + ".yml")
    assert os.path.exists(sidecar), "plugins/filter/%s.yml is missing: ansible-doc would show no text for %s" % (name, name)
    with open(sidecar) as handle:
        doc = yaml.safe_load(handle)
    assert doc["DOCUMENTATION"]["name"] == name
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}


@pytest.mark.skipif(not os.path.exists(ANTSIBULL_DOCS), reason="antsibull-docs is not in this venv (requirements/test.txt has it)")
def test_every_plugin_and_role_doc_renders():
    """What `make docs` renders: schema, markup and references to this collection's own plugins and options."""
    env = ansible_env(PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([ANTSIBULL_DOCS, "lint-collection-docs", "--plugin-docs", "--validate-collection-refs", "self",
                           "--skip-rstcheck", COLLECTION_ROOT],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout
