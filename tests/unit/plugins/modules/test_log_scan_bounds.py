"""log_scan ends in bounded time whatever the rules and the lines: a per-line rule timeout and a run budget.

Nested repetition such as ``(a+)+$`` backtracks for ever on a line of a's that ends otherwise; anyone who
can write a log line can send one. Each test runs the module as Ansible does and times the whole task.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.fleetops.health.tests.unit.playbook_runner import run_module

RUN_TIMEOUT = 60
ERRORS = {"name": "errors", "keywords": ["ERROR"], "severity": "critical"}


def scan(tmp_path, rules, env=None, **options):
    args = dict({"paths": [str(tmp_path / "app.log")], "rules": rules, "state_dir": str(tmp_path / "state"),
                 "start_at": "beginning"}, **options)
    try:
        run = run_module("log_scan", args, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("log_scan still running after %ss" % RUN_TIMEOUT)
    assert run.rc == 0, run.output
    return run, run.result["ansible_facts"]["fleet_logs"]


def baseline_seconds(tmp_path, env=None):
    """What one run costs on this machine now (starting Ansible and all), on a harmless log."""
    folder = tmp_path / "baseline"
    folder.mkdir()
    (folder / "app.log").write_text("ERROR fine\n")
    return scan(folder, [ERRORS], env=env)[0].elapsed


@pytest.fixture
def without_regex_module(tmp_path):
    """An environment in which ``import regex`` fails in the module's process, as on a host without python3-regex."""
    stub = tmp_path / "no-regex"
    stub.mkdir()
    (stub / "regex.py").write_text("raise ImportError('hidden for this test')\n")
    return {"PYTHONPATH": str(stub)}


def test_a_rule_that_backtracks_without_end_skips_that_line_and_the_scan_goes_on(tmp_path):
    pytest.importorskip("regex", reason="the per-line rule timeout needs the regex module (python3-regex)")
    hostile = "a" * 40 + "!\n"  # (a|aa)+$ backtracks without end on it, in re and in regex alike
    log = "ERROR before\n" + hostile + "ERROR after\naaaa\n"
    (tmp_path / "app.log").write_text(log)
    before = baseline_seconds(tmp_path)
    run, facts = scan(tmp_path, [ERRORS, {"name": "nested", "pattern": "(a|aa)+$"},
                                 {"name": "issue_11", "pattern": "(a+)+$"}])
    # the hostile line costs the rule one timeout on the chunk and one on the line itself
    assert run.elapsed < before + 2 * 1.5 + 1, run.elapsed
    assert facts["regex_engine"] == "regex"
    assert facts["rules"]["errors"]["count"] == 2
    assert facts["rules"]["nested"]["count"] == 1 and facts["rules"]["nested"]["samples"] == ["aaaa"]
    assert facts["rules"]["issue_11"]["count"] == 1
    assert facts["rule_timeouts"] == [{"rule": "nested", "path": str(tmp_path / "app.log"), "offset": len("ERROR before\n")}]
    assert facts["incomplete"] is False and facts["files"][0]["incomplete"] is False
    assert any("rule nested" in warning for warning in run.result.get("warnings", []))
    # the offset moved past the hostile line: the next run has nothing to do
    assert scan(tmp_path, [ERRORS, {"name": "nested", "pattern": "(a|aa)+$"}])[1]["rule_timeouts"] == []


def test_without_the_regex_module_re_is_bounded_too(tmp_path, without_regex_module):
    hostile = "a" * 40 + "b\n"  # the pattern from issue 11: (a+)+$ never returns on it with re
    (tmp_path / "app.log").write_text("ERROR before\n" + hostile + "ERROR after\n")
    before = baseline_seconds(tmp_path, env=without_regex_module)
    run, facts = scan(tmp_path, [ERRORS, {"name": "nested", "pattern": "(a+)+$"}], env=without_regex_module)
    assert facts["regex_engine"] == "re"
    assert run.elapsed < before + 2 * 1.0 + 1, run.elapsed
    assert facts["rules"]["errors"]["count"] == 2
    assert [(item["rule"], item["offset"]) for item in facts["rule_timeouts"]] == [("nested", len("ERROR before\n"))]


def test_the_time_budget_stops_at_a_line_boundary_and_the_next_run_goes_on(tmp_path, without_regex_module):
    """Hostile lines at one second each do not fit a 2 s budget: the run stops, saves, says so; the next goes on.

    Each run gets past at least one line, so no budget can stall every run at one hostile line.
    """
    lines = ["ERROR %d\n%s\n" % (index, "a" * 40 + "b") for index in range(3)]
    text = "".join(lines)
    (tmp_path / "app.log").write_text(text)
    rules = [ERRORS, {"name": "nested", "pattern": "(a+)+$"}]
    before = baseline_seconds(tmp_path, env=without_regex_module)
    run, facts = scan(tmp_path, rules, env=without_regex_module, time_budget=2)
    assert run.elapsed < before + 2 + 1, run.elapsed
    assert facts["incomplete"] is True and facts["files"][0]["incomplete"] is True
    assert facts["files"][0]["backlog_bytes"] > 0
    assert any("time_budget of 2.0s ran out" in warning for warning in run.result.get("warnings", []))
    state = json.loads((tmp_path / "state" / "offsets.json").read_text())
    (offset,) = [entry["offset"] for entry in state["files"].values()]
    assert 0 < offset < len(text) and text[:offset].endswith("\n")  # a line boundary, past the first line
    assert facts["files"][0]["backlog_bytes"] == len(text) - offset
    counted = facts["rules"]["errors"]["count"]
    assert counted == text[:offset].count("ERROR")
    # later runs go on from there and together count every line once
    for _run in range(len(lines) * 2):
        if not facts["incomplete"]:
            break
        run, facts = scan(tmp_path, rules, env=without_regex_module, time_budget=2)
        assert run.elapsed < before + 2 + 1, run.elapsed
        counted += facts["rules"]["errors"]["count"]
    assert counted == len(lines) and not facts["incomplete"]


@pytest.mark.parametrize("value", [0, 3601, "nan"])
def test_time_budget_out_of_range_is_refused_naming_the_option(tmp_path, value):
    (tmp_path / "app.log").write_text("")
    run = run_module("log_scan", {"paths": [str(tmp_path / "app.log")], "rules": [ERRORS],
                                  "state_dir": str(tmp_path / "state"), "time_budget": value}, timeout=RUN_TIMEOUT)
    assert run.failed and "time_budget: must be a number from 0.1 to 3600" in run.result.get("msg", ""), run.output
