"""Testinfra checks after schedule converged: what a person would check by hand on the control node."""
from __future__ import annotations

TIMER = "fleetops-sweep.timer"
SERVICE = "fleetops-sweep.service"
SERVICE_FILE = "/etc/systemd/system/fleetops-sweep.service"
ENV_FILE = "/etc/fleetops/schedule-sweep.env"
LOCK = "/run/lock/fleetops-sweep.lock"
RUNS = "/var/lib/schedule-molecule/runs"


def runs(host):
    record = host.file(RUNS)
    return record.content_string.splitlines() if record.exists else []


def test_timer_is_enabled_and_waiting(host):
    assert host.service(TIMER).is_enabled
    assert host.run(f"systemctl is-active {TIMER}").stdout.strip() == "active"
    assert host.check_output(f"systemctl show --property=NextElapseUSecRealtime --value {TIMER}")


def test_service_runs_the_playbook_under_flock(host):
    unit = host.file(SERVICE_FILE).content_string
    # Every word is double-quoted for systemd (the systemd_exec_arg filter).
    assert (
        'ExecStart=/usr/bin/flock --nonblock --conflict-exit-code 75 "' + LOCK + '"'
        + ' "/usr/local/bin/ansible-playbook" -i "/etc/fleetops/inventory.yml" "fleetops.health.sweep" "-e"'
        + ' "sweep_report=json"'
    ) in unit
    assert f"EnvironmentFile={ENV_FILE}" in unit
    assert "FLEETOPS_IM_SECRET" not in unit


def test_secret_environment_file_is_root_only(host):
    env = host.file(ENV_FILE)
    assert env.is_file
    assert env.mode == 0o600
    assert env.user == "root" and env.group == "root"
    assert 'FLEETOPS_IM_SECRET="molecule-not-a-secret"' in env.content_string.splitlines()


def test_a_run_gets_its_arguments_and_secrets(host):
    before = len(runs(host))
    host.run_expect([0], f"systemctl start {SERVICE}")
    after = runs(host)
    assert len(after) == before + 1
    assert after[-1] == ("args=-i /etc/fleetops/inventory.yml fleetops.health.sweep -e sweep_report=json "
                         "im_url=http://im.example.invalid/hook")
    assert host.check_output(f"systemctl show --property=Result --value {SERVICE}") == "success"


def test_a_run_that_finds_the_lock_held_is_skipped_not_failed(host):
    before = len(runs(host))
    # flock holds the lock while the service starts, as a still-running earlier run would.
    host.run_expect([0], f"flock {LOCK} systemctl start {SERVICE}")
    assert len(runs(host)) == before
    assert host.check_output(f"systemctl show --property=Result --value {SERVICE}") == "success"
    assert "skipped: a previous run still holds " + LOCK in host.check_output(
        f"journalctl --no-pager --unit {SERVICE} --lines 20")


def test_an_emptied_secret_environment_leaves_no_file_behind(host):
    # side_effect.yml installed the timer secrets-gone with a secret, then again without any.
    assert host.file("/etc/systemd/system/fleetops-secrets-gone.timer").exists
    assert not host.file("/etc/fleetops/schedule-secrets-gone.env").exists
    assert "EnvironmentFile" not in host.file("/etc/systemd/system/fleetops-secrets-gone.service").content_string
