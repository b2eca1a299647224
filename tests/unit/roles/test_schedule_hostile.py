# -*- coding: utf-8 -*-
"""The schedule role against hostile values: its preflight and templates run through ansible-playbook.

AWX surveys pass schedule_* values from people who are not operators: a value must never add a line
or a word to the units, and what cannot be written safely fails preflight naming the variable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, COLLECTION_ROOT, ansible_env

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's own checks
      ansible.builtin.include_role:
        name: fleetops.health.schedule
        tasks_from: preflight
        public: true
    - name: Render the units and the environment file as install.yml does
      ansible.builtin.template:
        src: "%(root)s/roles/schedule/templates/schedule.{{ item }}.j2"
        dest: "%(out)s/fleetops-hostile.{{ item }}"
        mode: "0600"
      loop: [service, timer, env]
"""


def render(tmp_path, variables):
    out = tmp_path / "out"
    out.mkdir()
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK % {"root": COLLECTION_ROOT, "out": out})
    extra = tmp_path / "vars.json"
    base = {"schedule_name": "hostile", "schedule_ansible_playbook": ANSIBLE_PLAYBOOK}
    base.update(variables)
    extra.write_text(json.dumps(base))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
                           "-e", "@%s" % extra, str(playbook)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, env=ansible_env(), timeout=180, cwd=str(tmp_path), check=False)
    return proc, out


def line_of(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


HOSTILE_BUT_EXPRESSIBLE = {
    "schedule_lock_file": "/tmp/x y';touch /tmp/pwned;'\"%n$HOME.lock",
    "schedule_playbook_args": ["-e", "pct=50%", "-e", "a=$HOME \"q\" \\back"],
    "schedule_environment": {"MSG": "say \"hi\" 100% \\ $x"},
    "schedule_secret_environment": {"TOKEN": "a\"b$c`d\\e f", "OTHER": "plain"},
    "schedule_playbook": "fleetops.health.sweep",
    "schedule_on_calendar": "*:0/5",
}


def test_hostile_values_are_quoted_for_systemd(tmp_path):
    proc, out = render(tmp_path, HOSTILE_BUT_EXPRESSIBLE)
    assert proc.returncode == 0, proc.stdout
    service = (out / "fleetops-hostile.service").read_text()
    lock = '"/tmp/x y\';touch /tmp/pwned;\'\\"%%n$$HOME.lock"'
    assert line_of(service, "ExecStart=") == [
        'ExecStart=/usr/bin/flock --nonblock --conflict-exit-code 75 %s "%s" -i "/etc/ansible/hosts" '
        '"fleetops.health.sweep" "-e" "pct=50%%%%" "-e" "a=$$HOME \\"q\\" \\\\back"' % (lock, ANSIBLE_PLAYBOOK)]
    # the lock file is an argument of the script, never part of its text
    assert line_of(service, "ExecStopPost=") == [
        "ExecStopPost=/bin/sh -c '[ \"$$EXIT_STATUS\" != 75 ] || echo \"skipped: a previous run still holds $$1\"' "
        "fleetops-schedule %s" % lock]
    assert line_of(service, 'Environment="MSG') == ['Environment="MSG=say \\"hi\\" 100%% \\\\ $x"']
    env = (out / "fleetops-hostile.env").read_text()
    assignments = [line for line in env.splitlines() if line and not line.startswith("#")]
    assert assignments == ['OTHER="plain"', 'TOKEN="a\\"b\\$c\\`d\\\\e f"']
    if SYSTEMD_ANALYZE:
        verify = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(out / "fleetops-hostile.service")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        assert verify.returncode == 0 and "Unbalanced" not in verify.stdout and "specifier" not in verify.stdout, verify.stdout


@pytest.mark.parametrize("variables, message", [
    ({"schedule_secret_environment": {"TOKEN": "x\nLD_PRELOAD=/tmp/evil.so"}},
     "schedule_secret_environment.TOKEN: the value holds a line break"),
    ({"schedule_environment": {"BAD NAME": "x"}}, "schedule_environment: 'BAD NAME' is not an environment variable name"),
    ({"schedule_lock_file": "/tmp/a.lock\nExecStartPre=/tmp/evil"}, "schedule_lock_file: holds a line break"),
    ({"schedule_playbook_args": ["-e", "x=1\nExecStartPre=/tmp/evil"]}, "schedule_playbook_args[1]: holds a line break"),
    ({"schedule_memory_max": "1G\nExecStartPre=/tmp/evil"}, "schedule_memory_max: holds a line break"),
    ({"schedule_on_calendar": "daily\r\nOnBootSec=1"}, "schedule_on_calendar: holds a line break"),
    ({"schedule_lock_file": "relative.lock"}, "schedule_lock_file, schedule_working_directory and schedule_ansible_playbook must be absolute"),
    ({"schedule_cpu_quota": "100% ; evil"}, "schedule_cpu_quota a percentage"),
], ids=["secret-env-newline", "env-name", "lock-newline", "args-newline", "memory-newline", "calendar-crlf",
        "relative-lock", "cpu-quota"])
def test_values_no_unit_can_carry_fail_preflight(tmp_path, variables, message):
    proc, out = render(tmp_path, variables)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout
    assert "LD_PRELOAD=/tmp/evil.so" not in proc.stdout  # a secret's value is never echoed
    assert not list(out.iterdir())  # nothing rendered
