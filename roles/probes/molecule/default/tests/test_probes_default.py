"""Testinfra after converge, idempotence and side_effect: what a person would check on each host.

Waits are bounded polls: the timers run on their own every 5 s (plus up to 1 s of random delay).
"""
from __future__ import annotations

import functools
import json
import re
import time

import pytest

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
STATE_DIR = "/var/lib/fleetops/probes"
RECEIVED = "/var/log/im-receiver.jsonl"
NUMBERS = "/tmp/probes-molecule-numbers.json"


def on(name):
    """Run the test on the lab host ``name`` only (molecule passes --hosts, which overrides testinfra_hosts)."""
    def decorate(test):
        @functools.wraps(test)
        def only_there(host, *args, **kwargs):
            if host.backend.get_hostname() != name:
                pytest.skip("runs on %s" % name)
            return test(host, *args, **kwargs)
        return only_there
    return decorate


def wait_for(predicate, timeout, step=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def metrics(host, check):
    found = {}
    path = "%s/fleetops_probes_%s.prom" % (TEXTFILE_DIR, check)
    if not host.file(path).exists:
        return found
    for line in host.file(path).content_string.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[re.sub(r"\{.*", "", series)] = float(value)
            found[series] = float(value)
    return found


def notices(host):
    if not host.file(RECEIVED).exists:
        return []
    return [json.loads(line) for line in host.file(RECEIVED).content_string.splitlines() if line.startswith("{")]


def record_number(name, value):
    try:
        with open(NUMBERS) as handle:
            numbers = json.load(handle)
    except (OSError, ValueError):
        numbers = {}
    numbers[name] = value
    with open(NUMBERS, "w") as handle:
        json.dump(numbers, handle, indent=1, sort_keys=True)


@on("probes-notify")
def test_timers_are_active_and_fire_on_their_own(host):
    for check in ("web", "ssh", "app-log"):
        assert host.service("fleetops-probe-%s.timer" % check).is_running
    first = metrics(host, "web")["fleetops_probe_last_run_timestamp_seconds"]
    later = wait_for(lambda: metrics(host, "web")["fleetops_probe_last_run_timestamp_seconds"] > first, 90)
    assert later, "the web check did not run again on its own within 90 s"


@on("probes-notify")
def test_textfile_values(host):
    web = metrics(host, "web")
    assert web['fleetops_probe_up{check="web",kind="http",service="nginx.service"}'] == 1
    assert web["fleetops_probe_healthy"] == 1 and web["fleetops_probe_consecutive_failures"] == 0
    assert 0 < web["fleetops_probe_latency_seconds"] < 2
    assert metrics(host, "ssh")['fleetops_probe_up{check="ssh",kind="tcp",service=""}'] == 1
    before = metrics(host, "app-log")['fleetops_log_rule_hits_total{rule="errors",path="/var/log/probes-molecule/app.log"}']
    host.run("printf 'ERROR one\\nERROR two\\n' >> /var/log/probes-molecule/app.log")
    series = 'fleetops_log_rule_hits_total{rule="errors",path="/var/log/probes-molecule/app.log"}'
    assert wait_for(lambda: metrics(host, "app-log").get(series) == before + 2, 90), metrics(host, "app-log")


@on("probes-notify")
def test_a_removed_check_is_gone_and_the_others_keep_running(host):
    for leftover in ("/etc/systemd/system/fleetops-probe-ssh-extra.timer", "/etc/systemd/system/fleetops-probe-ssh-extra.service",
                     "/etc/fleetops/probes/ssh-extra.json", STATE_DIR + "/ssh-extra",
                     TEXTFILE_DIR + "/fleetops_probes_ssh-extra.prom"):
        assert not host.file(leftover).exists, leftover
    assert host.service("fleetops-probe-ssh.timer").is_running
    assert STATE_DIR + "/ssh" in host.check_output("ls -d %s/ssh" % STATE_DIR)


@on("probes-notify")
def test_check_mode_left_nothing(host):
    for leftover in ("/etc/systemd/system/fleetops-probe-check-mode-only.timer", "/etc/fleetops/probes/check-mode-only.json",
                     STATE_DIR + "/check-mode-only"):
        assert not host.file(leftover).exists, leftover


@on("probes-notify")
def test_nginx_down_gives_one_failed_notice_and_up_one_recovered(host):
    def count(severity):
        ending = "check web failed" if severity == "critical" else "check web recovered"
        return len([m for m in notices(host) if m["severity"] == severity and m["title"].endswith(ending)])

    failed_before, recovered_before = count("critical"), count("resolved")
    host.run("systemctl stop nginx.service")
    try:
        # unhealthy_threshold 2 x interval 5 s, plus random delay, start-up and generous slack: on the shared
        # 2-core test machine one run takes 5-30 s of wall time.
        assert wait_for(lambda: count("critical") == failed_before + 1, 120), notices(host)
        time.sleep(20)  # more failed runs: still one notice
        assert count("critical") == failed_before + 1
        assert metrics(host, "web")["fleetops_probe_healthy"] == 0
    finally:
        host.run("systemctl start nginx.service")
    assert wait_for(lambda: count("resolved") == recovered_before + 1, 120), notices(host)
    time.sleep(20)
    assert (count("critical"), count("resolved")) == (failed_before + 1, recovered_before + 1)


@on("probes-notify")
def test_cost_of_one_run(host):
    show = host.check_output("systemctl show fleetops-probe-web.service -p CPUUsageNSec "
                             "-p ExecMainStartTimestampMonotonic -p ExecMainExitTimestampMonotonic")
    values = dict(line.split("=", 1) for line in show.splitlines())
    wall = (int(values["ExecMainExitTimestampMonotonic"]) - int(values["ExecMainStartTimestampMonotonic"])) / 1e6
    cpu = int(values["CPUUsageNSec"]) / 1e9 if values["CPUUsageNSec"].isdigit() else None
    record_number("one_run_wall_seconds", wall)
    record_number("one_run_cpu_seconds", cpu)
    assert 0 < wall < 60


@on("probes-restart")
def test_kill_9_nginx_is_restarted_by_the_timer_path_and_recorded(host):
    old_pid = host.check_output("systemctl show -p MainPID --value nginx.service")
    assert old_pid != "0"
    killed = time.monotonic()
    host.run("kill -9 %s" % old_pid)

    def restarted():
        pid = host.check_output("systemctl show -p MainPID --value nginx.service")
        return pid not in ("0", old_pid) and host.run("curl -fs -o /dev/null http://127.0.0.1/").rc == 0

    assert wait_for(restarted, 120), host.check_output("systemctl status nginx.service --no-pager || true")
    record_number("kill9_to_restart_seconds", round(time.monotonic() - killed, 1))
    budgets = json.loads(host.file("/var/lib/fleetops/remediate/budgets.json").content_string)
    nginx = budgets["services"]["nginx.service"]
    assert nginx["last_result"]["result"] == "verified" and len(nginx["attempts"]) >= 1


@on("probes-restart")
def test_a_crash_loop_gets_max_restarts_then_one_escalation(host):
    def escalations():
        return [m for m in notices(host) if m["title"].endswith("crashloop.service needs a human")]

    assert wait_for(lambda: len(escalations()) == 1, 180), notices(host)
    time.sleep(20)
    assert len(escalations()) == 1
    budgets = json.loads(host.file("/var/lib/fleetops/remediate/budgets.json").content_string)
    assert len(budgets["services"]["crashloop.service"]["attempts"]) == 2
    assert not host.service("crashloop.service").is_running


@on("probes-absent")
def test_probes_state_absent_removes_everything(host):
    assert host.run("systemctl list-unit-files 'fleetops-probe-*' --no-legend").stdout.strip() == ""
    for leftover in ("/etc/fleetops/probes", STATE_DIR, TEXTFILE_DIR + "/fleetops_probes_ssh.prom",
                     "/usr/lib/fleetops-health/fleetops-probe-check"):
        assert not host.file(leftover).exists, leftover
