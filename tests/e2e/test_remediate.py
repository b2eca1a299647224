"""fleetops.health.remediate on lab hosts: restart with verification, the restart budget, recoveries, check mode.

Notifications go, signed, to a DingTalk-contract receiver on this machine (tests/unit/im_receivers.py),
sent by the lab hosts themselves, with the URL and secret taken from the environment the way the AWX
credential type injects them.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from im_receivers import IMReceiver  # noqa: E402  pylint: disable=wrong-import-position
from remediate_lab import BUDGET_FILE, CRASHY_UNIT, NGINX, PLAYBOOK, STATE_DIRS  # noqa: E402  pylint: disable=C0413
import lab as host_lab  # noqa: E402  pylint: disable=wrong-import-position

SECRET = "SECe2e-remediate-0c1f3b7d9a"
pytestmark = pytest.mark.lab_hosts(3)


@pytest.fixture
def im(monkeypatch):
    """A signed DingTalk receiver reachable from lab hosts; URL and secret reach the play through the env."""
    with IMReceiver("dingtalk", host="0.0.0.0", secret=SECRET) as receiver:
        monkeypatch.setenv("FLEETOPS_IM_URL", receiver.url_for("host.containers.internal"))
        monkeypatch.setenv("FLEETOPS_IM_SECRET", SECRET)
        yield receiver


@pytest.fixture
def fresh_hosts(lab):
    """Every lab host with nginx running and no remediation state left by another test."""
    for host in lab.hosts:
        reset = lab.exec(host, "sh", "-c", f"rm -rf {STATE_DIRS}; systemctl reset-failed; systemctl start nginx")
        assert reset.returncode == 0, reset.stderr
    return lab.hosts


def remediate(run_playbook, hosts, services, check=False, recovers=True, **extra):
    """Run the playbook; a run with a restart that does not verify fails that host (``recovers=False``)."""
    extravars = {"remediate_services": services, "remediate_verify_interval": 1, "remediate_serial": 2,
                 "remediate_notify_platform": "dingtalk"}
    extravars.update(extra)
    result = run_playbook(PLAYBOOK, limit=hosts, extravars=extravars, check=check)
    if recovers:
        assert result.ok, result.failure_summary()
    else:
        assert not result.ok and "did not recover" in result.failure_summary(), result.failure_summary()
    assert SECRET not in result.stdout + result.stderr
    return result


def results_of(result, task_name):
    """{host: result} of a task over every batch of a serial play (task_results keeps only the last batch)."""
    merged = {}
    for play in (result.output or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"] == "fleetops.health.remediate : " + task_name:
                merged.update(task["hosts"])
    return merged


def texts(receiver):
    return [message["text"]["content"] for message in receiver.messages]


def settle(receiver, expected, timeout=10.0):
    """Wait for ``expected`` messages, then a moment more, so that a surplus would show."""
    receiver.wait_for(expected, timeout)
    time.sleep(0.5)
    return texts(receiver)


def host_output(lab, host, *command):
    completed = lab.exec(host, *command)
    return completed.stdout.strip()


def test_killed_nginx_is_restarted_verified_and_notified(lab, fresh_hosts, run_playbook, im):
    victim = fresh_hosts[0]
    lab.exec(victim, "systemctl", "kill", "--signal=KILL", "nginx")
    assert host_output(lab, victim, "systemctl", "is-active", "nginx") == "failed"

    result = remediate(run_playbook, fresh_hosts, [NGINX])

    assert host_output(lab, victim, "systemctl", "is-active", "nginx") == "active"
    restarted = results_of(result, "Restart or start the services the plan names")
    assert [item["item"]["name"] for item in restarted[victim]["results"]] == ["nginx"]
    assert all(restarted[host].get("skipped") for host in fresh_hosts[1:])

    messages = settle(im, 2)
    assert len(messages) == 2, messages
    action = [text for text in messages if "fixed it" in text]
    assert len(action) == 1 and victim in action[0]
    assert "unit nginx.service is failed" in action[0] and "verified" in action[0]
    summary = [text for text in messages if "remediation run" in text]
    assert len(summary) == 1 and "Restarted and verified: 1" in summary[0]

    record = json.loads(host_output(lab, victim, "cat", BUDGET_FILE))["services"]["nginx"]
    assert record["last_result"]["result"] == "verified"
    assert record["state"] == "up" and len(record["attempts"]) == 1


def test_a_service_that_keeps_crashing_spends_its_budget_and_escalates_once(lab, fresh_hosts, run_playbook, im):
    host = fresh_hosts[1]
    unit_b64 = base64.b64encode(CRASHY_UNIT.encode()).decode()
    install = lab.exec(host, "sh", "-c", f"echo {unit_b64} | base64 -d > /etc/systemd/system/crashy.service "
                       "&& systemctl daemon-reload && systemctl start crashy", timeout=30)
    assert install.returncode == 0, install.stderr
    crashy = {"name": "crashy", "unit": "crashy.service", "probe": {"tcp": "127.0.0.1:8099", "timeout": 0.5},
              "policy": {"max_restarts": 2, "window": "1h", "backoff": 0, "verify_timeout": 3}}
    try:
        time.sleep(1.5)
        first = remediate(run_playbook, [host], [crashy], recovers=False)
        # the host failed, so the run stopped before its final summary: one message, the failed restart
        messages = settle(im, 1)
        assert any("did not help" in text and "1 of 2 left" in text for text in messages), messages
        assert not any("needs a human" in text for text in messages)

        remediate(run_playbook, [host], [crashy], recovers=False)
        messages = settle(im, 3)
        escalations = [text for text in messages if "needs a human" in text]
        assert len(escalations) == 1, messages
        assert "A human is needed" in escalations[0] and "2 restarts" in escalations[0]

        third = remediate(run_playbook, [host], [crashy])
        restart_task = "Restart or start the services the plan names"
        assert results_of(first, restart_task)[host]["changed"] is True
        assert results_of(third, restart_task)[host].get("skipped") is True
        plan = results_of(third, "Show the plan (in check mode this is all that happens)")
        assert "restart budget is spent" in " ".join(plan[host]["msg"])
        time.sleep(1)
        assert len([text for text in texts(im) if "needs a human" in text]) == 1
    finally:
        lab.exec(host, "sh", "-c", "systemctl stop crashy; rm -f /etc/systemd/system/crashy.service; "
                 "systemctl daemon-reload; systemctl reset-failed")


def test_a_recovery_without_action_sends_a_resolved_notice(lab, fresh_hosts, run_playbook, im):
    host = fresh_hosts[2]
    watched = dict(NGINX, policy={"action": "notify_only"})
    lab.exec(host, "systemctl", "stop", "nginx")

    remediate(run_playbook, [host], [watched])
    messages = settle(im, 2)
    assert any("is down (notify only)" in text for text in messages), messages
    assert host_output(lab, host, "systemctl", "is-active", "nginx") == "inactive"

    lab.exec(host, "systemctl", "start", "nginx")
    remediate(run_playbook, [host], [watched])
    messages = settle(im, 4)
    resolved = [text for text in messages if "recovered" in text and "without any action" in text]
    assert len(resolved) == 1, messages
    assert host in resolved[0]


def test_a_critical_log_rule_restarts_a_service_that_looks_healthy(lab, fresh_hosts, run_playbook, im):
    host = fresh_hosts[0]
    log = "/var/log/fleetops-e2e-app.log"
    lab.exec(host, "sh", "-c", f"echo 'started' > {log}")
    watched = dict(NGINX, log_paths=[log], log_rules=[
        {"name": "fatal", "keywords": ["FATAL"], "severity": "critical"},
        {"name": "slow", "keywords": ["slow request"], "severity": "warning"}])
    first = remediate(run_playbook, [host], [watched])  # the first scan starts at the end of the log
    assert results_of(first, "Restart or start the services the plan names")[host].get("skipped") is True
    pid_before = host_output(lab, host, "systemctl", "show", "-p", "MainPID", "--value", "nginx")

    lab.exec(host, "sh", "-c", f"printf 'slow request\\nFATAL: worker lost its upstream\\n' >> {log}")
    second = remediate(run_playbook, [host], [watched])

    restarted = results_of(second, "Restart or start the services the plan names")[host]["results"]
    assert [item["item"]["method"] for item in restarted] == ["restart"]
    assert host_output(lab, host, "systemctl", "show", "-p", "MainPID", "--value", "nginx") != pid_before
    messages = settle(im, 2)
    action = [text for text in messages if "fixed it" in text]
    assert len(action) == 1 and "critical log rule fatal matched" in action[0] and "slow" not in action[0]
    third = remediate(run_playbook, [host], [watched])  # the offset moved on: the same line does not count twice
    assert results_of(third, "Restart or start the services the plan names")[host].get("skipped") is True


def test_check_mode_prints_the_plan_and_changes_nothing(lab, fresh_hosts, run_playbook, im):
    remediate(run_playbook, fresh_hosts, [NGINX])  # a first run, so that every host has a record
    settle(im, 0)
    im.reset()
    victim = fresh_hosts[0]
    lab.exec(victim, "systemctl", "kill", "--signal=KILL", "nginx")
    before = {host: host_output(lab, host, "sh", "-c", f"cat {BUDGET_FILE}; ls -l --time-style=+%s.%N {BUDGET_FILE}")
              for host in fresh_hosts}

    result = remediate(run_playbook, fresh_hosts, [NGINX], check=True)

    plan = results_of(result, "Show the plan (in check mode this is all that happens)")
    assert "reset-failed and start nginx" in " ".join(plan[victim]["msg"])
    assert host_output(lab, victim, "systemctl", "is-active", "nginx") == "failed"
    after = {host: host_output(lab, host, "sh", "-c", f"cat {BUDGET_FILE}; ls -l --time-style=+%s.%N {BUDGET_FILE}")
             for host in fresh_hosts}
    assert after == before
    time.sleep(1)
    assert im.messages == [] and im.requests == []


def test_the_schedule_timer_runs_the_playbook_under_a_lock_into_the_journal(lab, run_playbook):
    """roles/schedule on a lab host standing in for the control node; /bin/echo stands in for ansible-playbook."""
    host = lab.hosts[2]
    unit = "fleetops-e2e.service"
    schedule = {"schedule_hosts": host, "schedule_name": "e2e", "schedule_ansible_playbook": "/bin/echo",
                "schedule_playbook": "fleetops.health.remediate", "schedule_inventory": "/etc/fleetops/inventory.yml",
                "schedule_playbook_args": ["-e", "remediate_serial=2"], "schedule_on_calendar": "2099-01-01",
                "schedule_persistent": False, "schedule_secret_environment": {"FLEETOPS_IM_SECRET": SECRET}}
    installed = run_playbook("playbooks/schedule.yml", limit=[host], extravars=schedule)
    assert installed.ok, installed.failure_summary()
    assert SECRET not in installed.stdout
    assert host_output(lab, host, "systemctl", "is-active", "fleetops-e2e.timer") == "active"
    assert host_output(lab, host, "stat", "-c", "%a", "/etc/fleetops/schedule-e2e.env") == "600"
    try:
        assert lab.exec(host, "systemctl", "start", unit).returncode == 0
        journal = host_output(lab, host, "journalctl", "-o", "cat", "-u", unit, "--no-pager")
        assert "-i /etc/fleetops/inventory.yml fleetops.health.remediate -e remediate_serial=2" in journal

        # A run that finds the lock held (a run still going) exits at once, and that is no failure.
        lab.exec(host, "systemd-run", "--unit=e2e-hold-lock", "flock", "/run/lock/fleetops-e2e.lock", "sleep", "60")
        time.sleep(0.5)
        started = time.monotonic()
        assert lab.exec(host, "systemctl", "start", unit).returncode == 0
        assert time.monotonic() - started < 10
        journal = host_output(lab, host, "journalctl", "-o", "cat", "-u", unit, "--no-pager")
        assert journal.count("fleetops.health.remediate -e remediate_serial=2") == 1
        assert "skipped: a previous run still holds /run/lock/fleetops-e2e.lock" in journal
        assert host_output(lab, host, "systemctl", "show", "-p", "Result", "--value", unit) == "success"
    finally:
        lab.exec(host, "systemctl", "stop", "e2e-hold-lock")
        removed = run_playbook("playbooks/schedule.yml", limit=[host], extravars=dict(schedule, schedule_state="absent"))
    assert removed.ok, removed.failure_summary()
    assert lab.exec(host, "test", "-e", "/etc/systemd/system/fleetops-e2e.timer").returncode == 1


def test_remediate_runs_under_ansible_runner_the_engine_awx_uses(lab, fresh_hosts, tmp_path, monkeypatch):
    """The playbook as an AWX job runs it: through ansible-runner, with the IM target from the credential's env."""
    ansible_runner = pytest.importorskip("ansible_runner")
    repo = Path(__file__).resolve().parents[2]
    victim = fresh_hosts[1]
    lab.exec(victim, "systemctl", "kill", "--signal=KILL", "nginx")
    with IMReceiver("dingtalk", host="0.0.0.0", secret=SECRET) as receiver:
        envvars = {
            "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": os.environ.get("FLEETOPS_E2E_COLLECTIONS_PATH", str(repo / ".cache" / "collections")),
            "FLEETOPS_IM_PLATFORM": "dingtalk",
            "FLEETOPS_IM_URL": receiver.url_for("host.containers.internal"),
            "FLEETOPS_IM_SECRET": SECRET,
            # The venv's ansible-playbook, as an EE has its own first on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        }
        run = ansible_runner.run(
            private_data_dir=str(tmp_path), project_dir=str(repo), playbook=PLAYBOOK, inventory=str(lab.inventory),
            limit=",".join(fresh_hosts), envvars=envvars, quiet=True,
            extravars={"remediate_services": [NGINX], "remediate_verify_interval": 1})
        assert (run.status, run.rc) == ("successful", 0)
        assert host_output(lab, victim, "systemctl", "is-active", "nginx") == "active"
        messages = settle(receiver, 2)
    assert any("fixed it" in text and victim in text for text in messages), messages
    assert SECRET not in run.stdout.read()


# What ansible-core 2.19 imports, copied from this venv onto a lab host (same Debian 12, same CPython 3.11 ABI),
# so that the host can stand in for a control node without a package download at test time.
ANSIBLE_IMPORTS = ("ansible", "ansible_core", "jinja2", "markupsafe", "yaml", "_yaml", "cryptography", "cffi",
                   "_cffi_backend", "pycparser", "packaging", "resolvelib")
CONTROL_DIR = "/opt/fleetops-control"
ANSIBLE_PLAYBOOK_WRAPPER = f"""#!/bin/sh
export PYTHONPATH={CONTROL_DIR}/site ANSIBLE_COLLECTIONS_PATH={CONTROL_DIR}/collections
exec /usr/bin/python3 -c 'import sys; sys.argv[0] = "ansible-playbook"; from ansible.cli.playbook import main; main()' "$@"
"""


def make_control_node(lab, host, tmp_path):
    """Put ansible-core and the installed collection on ``host``; returns the path of its ansible-playbook."""
    import ansible

    site = Path(ansible.__file__).resolve().parents[1]
    staged = tmp_path / "control"
    for entry in site.iterdir():
        if entry.name.split("-")[0].split(".")[0].lower() in ANSIBLE_IMPORTS:
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, staged / "site" / entry.name)
    collection = Path(__file__).resolve().parents[2] / ".cache" / "collections" / "ansible_collections" / "fleetops"
    shutil.copytree(collection, staged / "collections" / "ansible_collections" / "fleetops", symlinks=True)
    (staged / "ansible-playbook").write_text(ANSIBLE_PLAYBOOK_WRAPPER)
    (staged / "ansible-playbook").chmod(0o755)
    (staged / "inventory.ini").write_text(f"{host} ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    assert lab.exec(host, "rm", "-rf", CONTROL_DIR).returncode == 0
    copied = host_lab.podman("cp", str(staged), f"{host}:{CONTROL_DIR}", check=False, timeout=120)
    assert copied.returncode == 0, copied.stderr
    return f"{CONTROL_DIR}/ansible-playbook"


def test_the_schedule_timer_runs_the_real_remediate_playbook_and_a_stopped_service_comes_back(
        lab, fresh_hosts, run_playbook, tmp_path):
    host = fresh_hosts[2]
    ansible_playbook = make_control_node(lab, host, tmp_path)
    version = lab.exec(host, ansible_playbook, "--version")
    assert version.returncode == 0 and "ansible-playbook [core 2." in version.stdout, version.stdout + version.stderr
    schedule = {"schedule_hosts": host, "schedule_name": "e2e-real", "schedule_ansible_playbook": ansible_playbook,
                "schedule_playbook": "fleetops.health.remediate", "schedule_inventory": f"{CONTROL_DIR}/inventory.ini",
                "schedule_playbook_args": ["-e", json.dumps({"remediate_services": [NGINX], "remediate_notify": False,
                                                             "remediate_verify_interval": 1})],
                "schedule_on_calendar": "*:*:0/15", "schedule_randomized_delay": 0, "schedule_persistent": False}
    installed = run_playbook("playbooks/schedule.yml", limit=[host], extravars=schedule)
    assert installed.ok, installed.failure_summary()
    try:
        assert lab.exec(host, "systemctl", "stop", "nginx").returncode == 0
        stopped_at = time.monotonic()
        # The timer fires every 15 s on its own; nothing here starts the service or the run.
        while host_output(lab, host, "systemctl", "is-active", "nginx") != "active":
            assert time.monotonic() - stopped_at < 90, host_output(
                lab, host, "journalctl", "-o", "cat", "-u", "fleetops-e2e-real.service", "--no-pager")
            time.sleep(1)
        deadline = time.monotonic() + 60
        while True:
            record = json.loads(host_output(lab, host, "sh", "-c", f"cat {BUDGET_FILE} 2>/dev/null || echo {{}}"))
            last = record.get("services", {}).get("nginx", {}).get("last_result", {})
            if last.get("result") == "verified" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert last.get("result") == "verified", record
        # The record is written before the run's last tasks (notify, the summary play): wait for its recap.
        deadline = time.monotonic() + 60
        while True:
            journal = host_output(lab, host, "journalctl", "-o", "cat", "-u", "fleetops-e2e-real.service", "--no-pager")
            if "PLAY RECAP" in journal or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "PLAY RECAP" in journal and "failed=0" in journal
    finally:
        removed = run_playbook("playbooks/schedule.yml", limit=[host], extravars=dict(schedule, schedule_state="absent"))
        lab.exec(host, "sh", "-c", f"rm -rf {CONTROL_DIR}; systemctl start nginx")
    assert removed.ok, removed.failure_summary()
