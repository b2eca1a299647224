"""Testinfra checks after remediate converged: what a person would check by hand on each host."""
from __future__ import annotations

import json

BUDGET_FILE = "/var/lib/fleetops/remediate/budgets.json"


def test_nginx_is_active_again(host):
    assert host.service("nginx.service").is_running


def test_nginx_answers_on_loopback(host):
    status = host.check_output("curl --silent --max-time 5 --output /dev/null --write-out %{http_code} http://127.0.0.1/")
    assert status == "200"


def test_the_restart_is_recorded_as_verified(host):
    budget = host.file(BUDGET_FILE)
    assert budget.is_file
    nginx = json.loads(budget.content_string)["services"]["nginx"]
    assert nginx["last_result"]["result"] == "verified", nginx
    assert nginx["state"] == "up"
    # One restart, by the first converge; the idempotence run must not have spent another.
    assert len(nginx["attempts"]) == 1, nginx["attempts"]
