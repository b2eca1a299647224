"""The schedule role in check mode on a machine where its timer was never installed: it reports what it would
do and fails nowhere, although systemd knows no such unit (this test machine has no systemd at all)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, ansible_env

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: fleetops.health.schedule
"""


def test_a_first_run_in_check_mode_reports_the_install_and_writes_nothing(tmp_path):
    name = "checkmode-" + uuid.uuid4().hex[:8]
    playbook = tmp_path / "schedule.yml"
    playbook.write_text(PLAYBOOK)
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"schedule_name": name, "schedule_ansible_playbook": ANSIBLE_PLAYBOOK,
                                     "schedule_secret_environment": {"FLEETOPS_IM_URL": "http://im.invalid/hook"}}))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "--check",
                           "-e", "ansible_python_interpreter=" + sys.executable, "-e", "@%s" % variables, str(playbook)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=ansible_env(),
                          timeout=180, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout
    assert "changed: [localhost] => (item=timer)" in proc.stdout
    for path in ("/etc/systemd/system/fleetops-%s.timer" % name, "/etc/systemd/system/fleetops-%s.service" % name,
                 "/etc/fleetops/schedule-%s.env" % name):
        assert not os.path.exists(path)
