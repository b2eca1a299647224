"""fleetops.health.probe on a lab host, probing nginx on another lab host across the lab network.

The prober keeps its state_file on itself; nginx is stopped and started on the other host between runs,
so the target goes down after unhealthy_threshold failed runs and comes back after healthy_threshold
good ones, with one `failed` and one `recovered` transition.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_tasks import module_result, run_tasks  # noqa: E402  pylint: disable=wrong-import-position

STATE_FILE = "/var/lib/fleetops/e2e-probe/state.json"
UNHEALTHY = 3
HEALTHY = 2


@pytest.fixture
def prober_and_server(lab):
    """(prober, server): nginx running on the server, no probe state on the prober; nginx stopped after."""
    prober, server = lab.hosts[0], lab.hosts[1]
    assert lab.exec(prober, "rm", "-rf", "/var/lib/fleetops/e2e-probe").returncode == 0
    started = lab.exec(server, "systemctl", "start", "nginx")
    assert started.returncode == 0, started.stderr
    yield prober, server
    lab.exec(server, "systemctl", "stop", "nginx")
    lab.exec(prober, "rm", "-rf", "/var/lib/fleetops/e2e-probe")


def probe_args(lab, server):
    """http by the server's container name (the lab network's DNS), tcp by its IP address."""
    return {
        "targets": [
            {"name": "web", "url": f"http://{server}/", "expect_status": [200]},
            {"name": "port80", "tcp": f"{lab.addresses[server]}:80"},
        ],
        "defaults": {"timeout": 3},
        "state_file": STATE_FILE,
        "unhealthy_threshold": UNHEALTHY,
        "healthy_threshold": HEALTHY,
    }


def probe_runs(run_playbook, tmp_path, prober, args, count):
    """``count`` probe runs in one playbook; the ``fleet_probes`` results of each run, by target name."""
    names = [f"probe run {index}" for index in range(1, count + 1)]
    result = run_tasks(run_playbook, tmp_path, prober, [(name, "fleetops.health.probe", args) for name in names])
    runs = []
    for name in names:
        outcome = module_result(result, name, prober)
        assert outcome["changed"] is False
        runs.append({target["name"]: target for target in outcome["ansible_facts"]["fleet_probes"]["results"]})
    return runs, module_result(result, names[-1], prober)["ansible_facts"]["fleet_probes"]


def test_probe_sees_nginx_on_another_host_go_down_and_recover(lab, run_playbook, tmp_path, prober_and_server):
    prober, server = prober_and_server
    args = probe_args(lab, server)

    (healthy,), facts = probe_runs(run_playbook, tmp_path, prober, args, 1)
    assert healthy["web"]["ok"] and healthy["web"]["code"] == 200 and healthy["web"]["latency_ms"] is not None
    assert healthy["port80"]["ok"] and healthy["port80"]["kind"] == "tcp"
    assert all(target["state"] == "up" and target["transition"] is None for target in healthy.values())
    assert facts["engine"] == "aiohttp"  # the lab image ships python3-aiohttp
    assert facts["summary"]["total"] == 2 and facts["summary"]["up"] == 2
    # The state lives on the probing host.
    assert lab.exec(prober, "test", "-s", STATE_FILE).returncode == 0
    assert lab.exec(server, "test", "-e", STATE_FILE).returncode != 0

    assert lab.exec(server, "systemctl", "stop", "nginx").returncode == 0
    failing, facts = probe_runs(run_playbook, tmp_path, prober, args, UNHEALTHY)
    for target in ("web", "port80"):
        assert [run[target]["ok"] for run in failing] == [False] * UNHEALTHY
        assert [run[target]["error_kind"] for run in failing] == ["refused"] * UNHEALTHY
        assert [run[target]["consecutive_fail"] for run in failing] == list(range(1, UNHEALTHY + 1))
        assert [run[target]["state"] for run in failing] == ["up"] * (UNHEALTHY - 1) + ["down"]
        assert [run[target]["transition"] for run in failing] == [None] * (UNHEALTHY - 1) + ["failed"]
    assert facts["summary"]["down"] == 2 and facts["summary"]["up"] == 0

    assert lab.exec(server, "systemctl", "start", "nginx").returncode == 0
    recovering, facts = probe_runs(run_playbook, tmp_path, prober, args, HEALTHY)
    for target in ("web", "port80"):
        assert [run[target]["ok"] for run in recovering] == [True] * HEALTHY
        assert [run[target]["consecutive_ok"] for run in recovering] == list(range(1, HEALTHY + 1))
        assert [run[target]["state"] for run in recovering] == ["down"] * (HEALTHY - 1) + ["up"]
        assert [run[target]["transition"] for run in recovering] == [None] * (HEALTHY - 1) + ["recovered"]
    assert recovering[-1]["web"]["code"] == 200
    assert facts["summary"]["up"] == 2


def test_check_mode_probes_but_leaves_the_state_file_alone(lab, run_playbook, tmp_path, prober_and_server):
    prober, server = prober_and_server
    args = probe_args(lab, server)
    run_tasks(run_playbook, tmp_path, prober, [("probe once", "fleetops.health.probe", args)])
    before = lab.exec(prober, "cat", STATE_FILE).stdout

    result = run_tasks(run_playbook, tmp_path, prober, [("probe in check mode", "fleetops.health.probe", args)],
                       check=True)

    results = module_result(result, "probe in check mode", prober)["ansible_facts"]["fleet_probes"]["results"]
    assert [target["ok"] for target in results] == [True, True]
    assert lab.exec(prober, "cat", STATE_FILE).stdout == before


@pytest.mark.parametrize("engine", ["aiohttp", "stdlib"])
def test_body_regex_matches_the_page_nginx_sends_gzip_compressed(lab, run_playbook, tmp_path, prober_and_server, engine):
    """Debian's nginx gzips text/html for clients that accept it; body_regex must see the page itself."""
    prober, server = prober_and_server
    args = {"http_engine": engine,
            "targets": [{"name": "welcome", "url": f"http://{server}/", "body_regex": "Welcome to nginx"}]}

    result = run_tasks(run_playbook, tmp_path, prober, [("probe the page", "fleetops.health.probe", args)])

    (welcome,) = module_result(result, "probe the page", prober)["ansible_facts"]["fleet_probes"]["results"]
    assert welcome["ok"], welcome["error"]
