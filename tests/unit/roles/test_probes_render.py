# -*- coding: utf-8 -*-
"""The probes role's preflight and unit templates through ansible-playbook: what systemd reads.

The lab's molecule scenario runs the timers for real; here the rendered units must pass systemd-analyze
verify, carry the hardening and the schedule, and bad checks must fail preflight naming the check and field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, COLLECTION_ROOT, ansible_env

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
RUNNER = "%s/roles/probes/files/fleetops-probe-check" % COLLECTION_ROOT
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's own checks
      ansible.builtin.include_role:
        name: fleetops.health.probes
        tasks_from: preflight
        public: true
    - name: Render the units as configure.yml does
      ansible.builtin.template:
        src: "%(root)s/roles/probes/templates/check.{{ item.1 }}.j2"
        dest: "%(out)s/fleetops-probe-{{ item.0.name }}.{{ item.1 }}"
        mode: "0644"
      loop: "{{ __probes_configs | product(['service', 'timer']) | list }}"
      vars:
        check: "{{ item.0 }}"
        __probes_runner: "%(runner)s"
"""
CHECKS = {
    "probes_checks": [
        {"name": "web", "url": "http://127.0.0.1/", "service": "nginx.service", "restart": {"max_restarts": 2},
         "interval": 10, "timeout": 3, "unhealthy_threshold": 2},
        {"name": "db", "tcp": "127.0.0.1:5432", "interval": 60},
    ],
    "probes_log_rules": [
        {"name": "nginx-errors", "paths": ["/var/log/nginx/error.log"],
         "rules": [{"name": "crit", "keywords": ["[crit]", "[emerg]"], "severity": "critical"}]},
    ],
}


def render(tmp_path, variables):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "render.yml").write_text(PLAYBOOK % {"root": COLLECTION_ROOT, "out": out, "runner": RUNNER})
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
                           "-e", "@%s" % (tmp_path / "vars.json"), str(tmp_path / "render.yml")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, env=ansible_env(), timeout=180,
                          cwd=str(tmp_path), check=False)
    return proc, out


def settings(text):
    found = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_units_carry_the_schedule_the_hardening_and_the_right_user(tmp_path):
    proc, out = render(tmp_path, CHECKS)
    assert proc.returncode == 0, proc.stdout
    web, db, log = (settings((out / ("fleetops-probe-%s.service" % n)).read_text()) for n in ("web", "db", "nginx-errors"))
    assert "User" not in web, "a check that restarts its service runs as root"
    assert web["ReadWritePaths"] == ['"/var/lib/fleetops/probes/web" "/var/lib/prometheus/node-exporter" '
                                     '"/var/lib/fleetops/remediate"']
    assert web["TimeoutStartSec"] == ["93"]  # 3 s probe + 60 s room + 30 s verify_timeout
    assert db["User"] == ["fleetops-probe"] and db["ReadWritePaths"] == [
        '"/var/lib/fleetops/probes/db" "/var/lib/prometheus/node-exporter"']
    assert log["SupplementaryGroups"] == ["adm"] and "SupplementaryGroups" not in db
    for unit in (web, db, log):
        assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
        assert unit["Type"] == ["oneshot"] and unit["MemoryMax"] == ["64M"]
    assert web["ExecStart"] == ['/usr/bin/python3 "%s" "/etc/fleetops/probes/web.json"' % RUNNER]
    timer = settings((out / "fleetops-probe-web.timer").read_text())
    assert (timer["OnUnitActiveSec"], timer["OnBootSec"], timer["OnActiveSec"], timer["RandomizedDelaySec"]) == (
        ["10"], ["10"], ["10"], ["5"])
    assert settings((out / "fleetops-probe-db.timer").read_text())["OnUnitActiveSec"] == ["60"]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_reads_the_units_without_complaint(tmp_path):
    proc, out = render(tmp_path, CHECKS)
    assert proc.returncode == 0, proc.stdout
    units = sorted(str(p) for p in out.iterdir())
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no"] + units, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=60, check=False)
    complaints = [line for line in done.stdout.splitlines()
                  if "fleetops-probe" in line and "network-online.target" not in line]
    assert complaints == [], done.stdout


@pytest.mark.parametrize("variables, words", [
    ({"probes_checks": [{"name": "web", "url": "ftp://x/"}]}, "probes_checks[web]: target 'web': url"),
    ({"probes_checks": [{"name": "a", "tcp": "h:1"}], "probes_log_rules": [
        {"name": "a", "paths": ["/x"], "rules": [{"name": "r", "keywords": ["x"]}]}]}, "the name appears twice"),
    ({"probes_checks": [{"name": "web", "url": "http://x/", "restart": True}]}, "probes_checks[web].restart: needs service"),
    ({"probes_notify": {"platform": "slack"}}, "probes_notify: give at least platform and url"),
    ({"probes_state_dir": "relative"}, "must be absolute paths"),
])
def test_bad_input_fails_preflight_naming_the_field(tmp_path, variables, words):
    proc, _out = render(tmp_path, variables)
    assert proc.returncode != 0 and words in proc.stdout, proc.stdout
