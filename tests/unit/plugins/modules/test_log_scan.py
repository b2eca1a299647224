"""The log_scan module run by ansible-playbook on localhost: facts, changed, check mode and state_dir errors."""
import json
import os

import pytest

from ansible_collections.fleetops.health.tests.unit.playbook_runner import run_playbook


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    log_rules:
      - {name: errors, keywords: [ERROR, Exception], severity: critical}
      - {name: slow, pattern: 'took \\d{4,}ms', exclude: healthcheck, ignore_case: true, severity: info}
    scan_paths: ["%(log)s", "%(logs)s/*.log", "%(logs)s/missing.log"]
  tasks:
    - name: First run starts at the end of existing files
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: "{{ log_rules }}"
        state_dir: "%(state_dir)s"
      register: first

    - name: New lines arrive, one still unfinished
      ansible.builtin.shell: |
        printf 'ERROR one\\nTook 12000ms\\nhealthcheck took 5000ms\\njava.lang.Exception: ERROR boom\\nERROR unfini' >> %(log)s

    - name: Check mode sees the new lines but does not keep the offsets
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: "{{ log_rules }}"
        state_dir: "%(state_dir)s"
      check_mode: true
      register: checked

    - name: The real run sees the same lines
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: "{{ log_rules }}"
        state_dir: "%(state_dir)s"
        samples: 1
        sample_max_len: 8
      register: second

    - name: Nothing new
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: "{{ log_rules }}"
        state_dir: "%(state_dir)s"
      register: idle

    - name: A state_dir that cannot be written
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: "{{ log_rules }}"
        state_dir: "%(unwritable)s"
      register: unwritable
      ignore_errors: true

    - name: A bad regular expression
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: [{name: broken, pattern: "(unclosed"}]
        state_dir: "%(state_dir)s"
      register: bad_rule
      ignore_errors: true

    - name: Both pattern and keywords
      fleetops.health.log_scan:
        paths: "{{ scan_paths }}"
        rules: [{name: both, pattern: x, keywords: [y]}]
        state_dir: "%(state_dir)s"
      register: both
      ignore_errors: true

    - name: Save what was seen
      ansible.builtin.copy:
        content: "{{ {'first': first, 'checked': checked, 'second': second, 'idle': idle, 'unwritable': unwritable,
                      'bad_rule': bad_rule, 'both': both} | to_json }}"
        dest: "%(output)s"
"""


def run_scans(tmp_path, unwritable):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    log.write_text("ERROR from before the first run\n")
    output = tmp_path / "output.json"
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(PLAYBOOK % {"log": log, "logs": logs, "state_dir": tmp_path / "state",
                                    "unwritable": unwritable, "output": output})
    result = run_playbook(playbook)
    assert result.returncode == 0, result.stdout[-3000:]
    return str(log), json.loads(output.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("log_scan_playbook")
    (tmp_path / "plainfile").write_text("")
    return run_scans(tmp_path, tmp_path / "plainfile" / "state")


def test_first_run_reports_the_file_as_new_and_counts_nothing_old(runs):
    log, results = runs
    facts = results["first"]["ansible_facts"]["fleet_logs"]
    assert results["first"]["changed"] is True
    assert facts["total_matches"] == 0 and facts["highest_severity"] == "none"
    by_path = dict((item["path"], item) for item in facts["files"])
    assert by_path[log] == {"path": log, "bytes_scanned": 0, "backlog_bytes": 0, "events": ["new"], "error": None,
                            "incomplete": False}
    assert by_path[os.path.join(os.path.dirname(log), "missing.log")]["events"] == ["missing"]
    assert len(facts["files"]) == 2  # the glob's match is the same file, listed once


def test_new_complete_lines_are_counted_once_per_rule_and_line(runs):
    _log, results = runs
    for name in ("checked", "second"):
        facts = results[name]["ansible_facts"]["fleet_logs"]
        assert facts["rules"]["errors"]["count"] == 2, name  # the unfinished line waits
        assert facts["rules"]["slow"]["count"] == 1, name
        assert (facts["total_matches"], facts["highest_severity"]) == (3, "critical")
        assert results[name]["changed"] is True
    second = results["second"]["ansible_facts"]["fleet_logs"]["rules"]
    assert second["errors"] == {"count": 2, "severity": "critical", "samples": ["ERROR on"]}
    assert results["checked"]["ansible_facts"]["fleet_logs"]["rules"]["errors"]["samples"] == [
        "ERROR one", "java.lang.Exception: ERROR boom"]


def test_an_idle_run_is_not_changed(runs):
    _log, results = runs
    assert results["idle"]["changed"] is False
    assert results["idle"]["ansible_facts"]["fleet_logs"]["total_matches"] == 0


def test_errors_name_the_option_to_fix(runs):
    _log, results = runs
    assert results["unwritable"]["failed"] is True
    assert results["unwritable"]["msg"].startswith("state_dir: cannot create ")
    assert results["bad_rule"]["msg"].startswith("rules: rules[0] (broken).pattern: invalid regular expression")
    assert "mutually exclusive" in results["both"]["msg"] and "pattern|keywords" in results["both"]["msg"]
