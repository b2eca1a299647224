"""Proof that the host lab can carry e2e tests: systemd, Ansible over both inventories, webhooks out."""
from __future__ import annotations

from pathlib import Path

import pytest

PROOF = Path(__file__).resolve().parents[1] / "lab" / "proof"
pytestmark = pytest.mark.lab_hosts(2)


@pytest.fixture(scope="module")
def proof_hosts(lab, run_playbook):
    """Two lab hosts with the proof service and timer installed."""
    hosts = lab.hosts[:2]
    result = run_playbook(PROOF / "install.yml", limit=hosts)
    assert result.ok, result.failure_summary()
    return hosts


def per_host(result, task_name: str, key: str) -> dict:
    return {host: outcome[key] for host, outcome in result.task_results(task_name).items()}


def unit_status(result, task_name: str) -> dict:
    """{host: the unit's systemd properties} from an ansible.builtin.systemd_service task."""
    return per_host(result, task_name, "status")


def test_systemd_brings_the_service_back_after_kill_9(proof_hosts, run_playbook):
    result = run_playbook(PROOF / "kill_recover.yml", limit=proof_hosts)

    assert result.ok, result.failure_summary()
    killed = unit_status(result, "Read the main PID")
    recovered = unit_status(result, "Wait until systemd has started a new main process")
    for host in proof_hosts:
        assert recovered[host]["ActiveState"] == "active"
        assert recovered[host]["MainPID"] not in ("0", killed[host]["MainPID"])
        assert int(recovered[host]["NRestarts"]) == int(killed[host]["NRestarts"]) + 1


@pytest.mark.parametrize("inventory_kind", ["ssh", "podman"])
def test_restart_through_ansible_starts_a_new_process(proof_hosts, lab, run_playbook, inventory_kind):
    inventory = lab.ssh_inventory if inventory_kind == "ssh" else lab.podman_inventory
    result = run_playbook(PROOF / "restart.yml", inventory=inventory, limit=proof_hosts)

    assert result.ok, result.failure_summary()
    before = unit_status(result, "Read the main PID before the restart")
    after = unit_status(result, "Read the main PID after the restart")
    assert all(before[host]["MainPID"] != after[host]["MainPID"] for host in proof_hosts)
    assert all(result.stats[host]["changed"] == 1 for host in proof_hosts)


def test_the_timer_fires_on_its_own(proof_hosts, run_playbook):
    result = run_playbook(PROOF / "timer_ticks.yml", limit=proof_hosts, extravars={"lab_proof_ticks": 3})

    assert result.ok, result.failure_summary()
    ticks = per_host(result, "Wait for the ticks the timer's service writes", "stdout_lines")
    assert all(len(ticks[host]) >= 3 for host in proof_hosts)


def test_hosts_post_json_to_the_receiver(proof_hosts, run_playbook, receiver):
    result = run_playbook(PROOF / "post.yml", limit=proof_hosts, extravars={"receiver_url": receiver.url})

    assert result.ok, result.failure_summary()
    received = receiver.wait_for(len(proof_hosts))
    assert sorted(request.json["host"] for request in received) == sorted(proof_hosts)
    assert {(request.method, request.path) for request in received} == {("POST", "/lab-proof")}
    assert all(request.headers["Content-Type"] == "application/json" for request in received)


def test_a_scripted_error_reaches_the_host(proof_hosts, run_playbook, receiver):
    receiver.respond(status=503, body={"error": "overloaded"})

    result = run_playbook(PROOF / "post.yml", limit=proof_hosts[:1], extravars={"receiver_url": receiver.url})

    assert not result.ok
    assert result.stats[proof_hosts[0]]["failures"] == 1
    assert "503" in per_host(result, "POST with curl, as a host-side hook would", "stderr")[proof_hosts[0]]
