"""fleetops.health.remediate on lab hosts: what the docs promise and the role now delivers.

- a probe-down host is crit in remediate's plan, as in the sweep's report and the im_notify callback;
- each phase tag runs alone;
- verification counts only probes made after the restart;
- a batch that does not recover stops the run (max_fail_percentage);
- messages spooled on a host while the IM service was down go out on the next run, each once.
"""
from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from im_receivers import IMReceiver  # noqa: E402  pylint: disable=wrong-import-position
from remediate_lab import BUDGET_FILE, CRASHY_UNIT, NGINX, PLAYBOOK, STATE_DIRS  # noqa: E402  pylint: disable=C0413

SECRET = "SECe2e-behaviours-5e2a9c1f"
pytestmark = pytest.mark.lab_hosts(3)

RESTART_TASK = "Restart or start the services the plan names"
PLAN_TASK = "Show the plan (in check mode this is all that happens)"
VERIFY_TASK = "Probe each restarted service until it is healthy or its verify_timeout has passed"


def extravars(services, **extra):
    values = {"remediate_services": services, "remediate_verify_interval": 1, "remediate_serial": 3,
              "remediate_notify": False}
    values.update(extra)
    return values


def results_of(result, task_name):
    """{host: result} of a role task over every batch of a serial play."""
    merged = {}
    for play in (result.output or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"] == "fleetops.health.remediate : " + task_name:
                merged.update(task["hosts"])
    return merged


def sh(lab, host, script):
    done = lab.exec(host, "sh", "-c", script, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def fresh_hosts(lab):
    for host in lab.hosts:
        sh(lab, host, f"rm -rf {STATE_DIRS}; systemctl reset-failed; systemctl start nginx")
    return lab.hosts


def test_a_probe_down_host_is_crit_in_the_plan_and_the_plan_tag_runs_alone(lab, fresh_hosts, run_playbook):
    """--tags remediate_plan detects and plans (preflight always runs), acts on nothing; the verdict is crit."""
    host = fresh_hosts[0]
    closed = dict(NGINX, probe={"tcp": "127.0.0.1:8099", "timeout": 0.5})
    result = run_playbook(PLAYBOOK, limit=[host], extravars=extravars([closed], remediate_probe_unhealthy_threshold=1),
                          options=["--tags", "remediate_plan"])
    assert result.ok, result.failure_summary()
    lines = results_of(result, PLAN_TASK)[host]["msg"]
    assert lines[0].startswith("host verdict crit: probe nginx down (refused)"), lines
    assert any(line.startswith("restart nginx (nginx.service) because probe 127.0.0.1:8099 is down") for line in lines)
    # planned, not done: nothing restarted, nothing recorded as an attempt
    assert not results_of(result, RESTART_TASK)
    record = json.loads(sh(lab, host, f"cat {BUDGET_FILE}"))["services"]["nginx"]
    assert record.get("attempts", []) == [] and record["state"] == "down"


@pytest.mark.parametrize("tag", ["remediate_detect", "remediate_verify", "remediate_record", "remediate_notify"])
def test_each_phase_tag_runs_alone(lab, fresh_hosts, run_playbook, tag):
    host = fresh_hosts[1]
    sh(lab, host, "systemctl kill --signal=KILL nginx")
    try:
        result = run_playbook(PLAYBOOK, limit=[host], extravars=extravars([NGINX]), options=["--tags", tag])
        assert result.ok, result.failure_summary()
        # only the whole path acts
        assert not results_of(result, RESTART_TASK)
        assert sh(lab, host, "systemctl is-active nginx || true") == "failed"
    finally:
        sh(lab, host, "systemctl reset-failed; systemctl start nginx")


def test_verification_counts_only_probes_made_after_the_restart(lab, fresh_hosts, run_playbook):
    """A log rule restarts nginx while its probe is up: verification still needs its own good probes."""
    host = fresh_hosts[2]
    log = "/var/log/fleetops-e2e-verify.log"
    sh(lab, host, f"echo started > {log}")
    watched = dict(NGINX, log_paths=[log], log_rules=[{"name": "fatal", "keywords": ["FATAL"], "severity": "critical"}])
    settings = extravars([watched], remediate_probe_healthy_threshold=3)
    # Two runs with the probe up: the probe state holds several good probes in a row before the restart.
    for _run in range(2):
        first = run_playbook(PLAYBOOK, limit=[host], extravars=settings)
        assert first.ok, first.failure_summary()
    state = json.loads(sh(lab, host, "cat /var/lib/fleetops/remediate/probe_state.json"))
    assert state["targets"]["nginx"]["consecutive_ok"] >= 2, state
    pid_before = sh(lab, host, "systemctl show -p MainPID --value nginx")

    sh(lab, host, f"echo 'FATAL: worker lost its upstream' >> {log}")
    result = run_playbook(PLAYBOOK, limit=[host], extravars=settings)

    assert result.ok, result.failure_summary()
    assert sh(lab, host, "systemctl show -p MainPID --value nginx") != pid_before
    verify = results_of(result, VERIFY_TASK)[host]["results"][0]
    # three good probes after the restart, however many came before it
    assert verify["attempts"] >= 3, verify
    record = json.loads(sh(lab, host, f"cat {BUDGET_FILE}"))["services"]["nginx"]
    assert record["last_result"]["result"] == "verified"


def install_crashy(lab, host):
    unit_b64 = base64.b64encode(CRASHY_UNIT.encode()).decode()
    sh(lab, host, f"echo {unit_b64} | base64 -d > /etc/systemd/system/crashy.service && systemctl daemon-reload "
                  "&& systemctl start crashy")


def test_a_batch_that_does_not_recover_stops_the_run(lab, fresh_hosts, run_playbook):
    first, second = fresh_hosts[:2]
    crashy = {"name": "crashy", "unit": "crashy.service", "probe": {"tcp": "127.0.0.1:8099", "timeout": 0.5},
              "policy": {"max_restarts": 3, "window": "1h", "backoff": 0, "verify_timeout": 3}}
    try:
        for host in (first, second):
            install_crashy(lab, host)
        time.sleep(1.5)
        result = run_playbook(PLAYBOOK, limit=[first, second],
                              extravars=extravars([crashy], remediate_serial=1))
        assert not result.ok
        assert "did not recover" in result.failure_summary(), result.failure_summary()
        restarted = results_of(result, RESTART_TASK)
        # the first batch failed to recover: the second host was never touched
        assert list(restarted) in ([first], [second]), restarted
        untouched = second if first in restarted else first
        assert lab.exec(untouched, "test", "-e", BUDGET_FILE).returncode == 1
        failed = next(iter(restarted))
        record = json.loads(sh(lab, failed, f"cat {BUDGET_FILE}"))["services"]["crashy"]
        # recorded before the host failed
        assert record["last_result"]["result"] == "failed_verify" and len(record["attempts"]) == 1
    finally:
        for host in (first, second):
            sh(lab, host, "systemctl stop crashy; rm -f /etc/systemd/system/crashy.service; systemctl daemon-reload; "
                          "systemctl reset-failed")


def test_messages_spooled_while_the_receiver_was_down_are_delivered_once(lab, fresh_hosts, run_playbook, monkeypatch):
    host = fresh_hosts[0]
    receiver = IMReceiver("dingtalk", host="0.0.0.0", secret=SECRET).start()
    monkeypatch.setenv("FLEETOPS_IM_URL", receiver.url_for("host.containers.internal"))
    monkeypatch.setenv("FLEETOPS_IM_SECRET", SECRET)
    settings = extravars([NGINX], remediate_notify=True, remediate_notify_platform="dingtalk",
                         remediate_notify_retries=0, remediate_notify_timeout=3)
    try:
        receiver.go_down()
        sh(lab, host, "systemctl kill --signal=KILL nginx")
        down_run = run_playbook(PLAYBOOK, limit=[host], extravars=settings)
        assert down_run.ok, down_run.failure_summary()
        assert sh(lab, host, "systemctl is-active nginx") == "active"
        spooled = sh(lab, host, "ls /var/lib/fleetops/im_spool/queue | wc -l")
        assert int(spooled) >= 1  # the action's message (and the run summary, sent from this host)

        receiver.come_back()
        up_run = run_playbook(PLAYBOOK, limit=[host], extravars=settings)
        assert up_run.ok, up_run.failure_summary()
        delivered = receiver.wait_for(int(spooled), timeout=20)
        again = run_playbook(PLAYBOOK, limit=[host], extravars=settings)
        assert again.ok, again.failure_summary()
        time.sleep(1)
    finally:
        receiver.stop()
    texts = [message["text"]["content"] for message in receiver.messages]
    assert len(delivered) == int(spooled) and len(texts) == int(spooled), texts
    assert len([text for text in texts if "fixed it" in text]) == 1, texts
    assert sh(lab, host, "ls /var/lib/fleetops/im_spool/queue | wc -l") == "0"
    assert SECRET not in down_run.stdout + up_run.stdout
