# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Baselines end to end: a history the test writes (the agent's format), host_resources run as Ansible runs
it, and the sweep's report naming the dynamic reason and the dynamic thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import baseline
from ansible_collections.fleetops.health.plugins.module_utils.history import History
from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, ansible_env, run_module

WEEK = 7 * 86400


def root_disk_percent():
    st = os.statvfs("/")
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return 100.0 * used / (used + st.f_bavail * st.f_frsize)


def write_last_weeks_hour(path, disk_mean, minutes=60):
    """This hour of the week, a week ago: ``minutes`` samples of disk:/ around ``disk_mean`` (and cpu)."""
    start = int(time.time() // 3600) * 3600 - WEEK
    store = History(str(path))
    samples = [(start + 60 * i, {"disk:/": disk_mean + (0.2 if i % 2 else -0.2), "cpu": 1.0})
               for i in range(minutes)]
    store.record_many(samples + [(start + 3600, {})])
    store.close()


@pytest.fixture
def disk_now():
    percent = root_disk_percent()
    if percent < baseline.FLOORS["percent"] + 1:
        pytest.skip("/ is %.1f%% used, under the baseline floor: nothing to judge" % percent)
    return percent


def test_host_resources_gives_the_dynamic_reason(tmp_path, disk_now):
    path = tmp_path / "history.db"
    write_last_weeks_hour(path, disk_now / 3)
    result = run_module("host_resources", {"window": 0, "subset": ["disk", "memory"], "history_path": str(path),
                                           "thresholds": {"disk": {"warn": 99.8, "crit": 99.9}}})
    assert not result.failed, result.output
    facts = result.result["ansible_facts"]["fleet_resources"]
    slot = baseline.slot_label(time.time())
    [reason] = [r for r in facts["reasons"] if r.startswith("disk / ")]
    assert reason.endswith("> baseline %s%% \u00d7 1.5 (%s, 7-day)" % (("%.1f" % (disk_now / 3)).rstrip("0").rstrip("."), slot))
    assert facts["verdict"] == "warn"
    assert facts["baselines"]["disk:/"]["basis"] == "%s, 7-day" % slot
    assert facts["baselines"]["memory"]["missing"].startswith("not enough history for memory: 0 min")


def test_host_resources_without_history_or_with_too_little_stays_static(tmp_path, disk_now):
    result = run_module("host_resources", {"window": 0, "subset": ["disk"], "history_path": str(tmp_path / "none.db")})
    assert "baselines" not in result.result["ansible_facts"]["fleet_resources"]
    path = tmp_path / "short.db"
    write_last_weeks_hour(path, disk_now / 3, minutes=10)
    facts = run_module("host_resources", {"window": 0, "subset": ["disk"], "history_path": str(path),
                                          "thresholds": {"disk": {"warn": 99.8, "crit": 99.9}}}
                       ).result["ansible_facts"]["fleet_resources"]
    assert not [r for r in facts["reasons"] if "baseline" in r]
    assert "10 min" in facts["baselines"]["disk:/"]["missing"]


def test_a_bad_baseline_option_is_named(tmp_path):
    result = run_module("host_resources", {"window": 0, "subset": ["memory"], "baseline": {"factor": 0.5}})
    assert result.failed
    assert "baseline.factor: must be a number above 1 and at most 100, got 0.5" in result.result["msg"]


INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
    sweep_window: 0
    sweep_subset: [memory, disk]
    sweep_history_path: %(history)s
    sweep_thresholds:
      memory: {warn: 99.8, crit: 99.9}
      disk: {warn: 99.8, crit: 99.9}
  hosts:
    web-01: {}
"""


def test_the_sweep_report_shows_the_baseline_reason_and_the_dynamic_threshold(tmp_path, disk_now):
    path = tmp_path / "history.db"
    write_last_weeks_hour(path, disk_now / 3)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(INVENTORY % {"python": sys.executable, "history": path})
    report_dir = tmp_path / "report"
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "fleetops.health.sweep",
                           "-e", "sweep_report_dir=%s" % report_dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, env=ansible_env(), timeout=180, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(str(report_dir / "fleet-report.json")) as handle:
        report = json.load(handle)
    [row] = [h for h in report["hosts"] if h["host"] == "web-01"]
    slot = baseline.slot_label(time.time())
    assert row["verdict"] == "warn"
    assert any(r.startswith("disk / ") and r.endswith("(%s, 7-day)" % slot) for r in row["reasons"]), row["reasons"]
    assert row["dynamic_thresholds"] == [{"figure": "disk /", "threshold": pytest.approx(disk_now / 2, abs=0.05),
                                          "basis": "%s, 7-day" % slot}]
    html = (report_dir / "fleet-report.html").read_text()
    assert "dynamic: disk /" in html and "%s, 7-day" % slot in html
