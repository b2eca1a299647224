# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped Prometheus rules and example configs, checked by Prometheus' and Alertmanager's own tools."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
PROMETHEUS_DIR = os.path.join(ROOT, "extensions", "prometheus")
RULES = os.path.join(PROMETHEUS_DIR, "fleetops-rules.yml")
RULE_TESTS = os.path.join(PROMETHEUS_DIR, "tests", "fleetops-rules.test.yml")
CONTRACT_ALERTS = {"FleetopsHostDown", "FleetopsProbeDown", "FleetopsServiceFailed", "FleetopsDiskAboveBaseline"}


def tool(name):
    found = shutil.which(name)
    assert found, "%s is missing: run 'make system-deps' (tests/tooling/system_deps.sh installs it)" % name
    return found


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_rules():
    assert "SUCCESS" in run([tool("promtool"), "check", "rules", RULES])


def test_promtool_unit_tests_cover_every_rule():
    assert "SUCCESS" in run([tool("promtool"), "test", "rules", RULE_TESTS])
    with open(RULES) as handle:
        alerts = {rule["alert"] for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]}
    with open(RULE_TESTS) as handle:
        tested = {case["alertname"] for test in yaml.safe_load(handle)["tests"] for case in test["alert_rule_test"]
                  if case.get("exp_alerts")}
    assert CONTRACT_ALERTS <= alerts
    assert alerts == tested, "rules without a firing promtool test: %s" % sorted(alerts - tested)


def test_the_example_prometheus_config_is_valid():
    assert "SUCCESS" in run([tool("promtool"), "check", "config", "--syntax-only",
                             os.path.join(PROMETHEUS_DIR, "examples", "prometheus.yml")])


def test_the_example_alertmanager_config_is_valid_and_sends_a_bearer_token():
    config = os.path.join(PROMETHEUS_DIR, "examples", "alertmanager.yml")
    assert "SUCCESS" in run([tool("amtool"), "check-config", config])
    with open(config) as handle:
        receivers = {receiver["name"]: receiver for receiver in yaml.safe_load(handle)["receivers"]}
    webhook = receivers["fleet-remediation"]["webhook_configs"][0]
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    assert webhook["url"].endswith("/alerts")


@pytest.mark.parametrize("broken, expected", [
    ("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up ==\n", "parse error"),
])
def test_promtool_rejects_a_broken_rule(tmp_path, broken, expected):
    """The checker really checks (so the passing checks above mean something)."""
    path = tmp_path / "broken.yml"
    path.write_text(broken)
    done = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0 and expected in (done.stdout + done.stderr)
