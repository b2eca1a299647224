"""playbooks/chaos.yml's refuse and disk_fill faults on a lab host: each is seen, and each is undone.

The refuse fault keeps nginx's process alive and its unit active while port 80 refuses; remediate's probe
sees `refused`, restarts nginx and verifies it, and the drill prints the time that took. disk_fill fills
the lab host's own 64 MB /dev/shm (never the VM's disk) until host_resources reports it.
"""
from __future__ import annotations

import json
import threading
import time

CHAOS = "playbooks/chaos.yml"
REMEDIATE = "playbooks/remediate.yml"
NGINX = {"name": "nginx", "unit": "nginx.service", "probe": {"url": "http://127.0.0.1/", "expect_status": [200]}}
SITE = "/etc/nginx/sites-enabled/default"
ASIDE_DIR = "/var/lib/fleetops/chaos"
CHAOS_POLL = 1
# What separates the drill's clock from the test's: an ansible task round trip.
RTO_MARGIN = 3
RESTART_SEC = 3
RESTART_DROPIN_DIR = "/run/systemd/system/nginx.service.d"


def sh(lab, host, script):
    completed = lab.exec(host, "sh", "-c", script)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def curl_exit_code(lab, host):
    """curl's exit code for nginx on the host: 0 answered, 7 connection refused."""
    return lab.exec(host, "curl", "-s", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1/").returncode


def drill_lines(result):
    return next(iter(result.task_results(
        "fleetops.health.chaos : Print the time to recovery per fault (the detection time for disk_fill)").values()))["msg"]


def config_back_on_disk(lab, host):
    """Nothing is kept aside: the drill's original config is in its place."""
    return lab.exec(host, "sh", "-c", f'[ -z "$(ls -A {ASIDE_DIR} 2>/dev/null)" ]').returncode == 0


def assert_site_as_found(lab, host):
    assert sh(lab, host, f"readlink {SITE}") == "/etc/nginx/sites-available/default"
    assert sh(lab, host, f"ls -A {ASIDE_DIR}") == ""
    assert curl_exit_code(lab, host) == 0


def fresh_nginx(lab, host):
    sh(lab, host, "rm -rf /var/lib/fleetops/remediate; systemctl reset-failed; systemctl restart nginx")
    return sh(lab, host, "systemctl show --property=MainPID --value nginx")


def test_a_refused_port_is_seen_by_remediate_which_restarts_and_verifies_it(lab, run_playbook):
    host = lab.hosts[0]
    pid_before = fresh_nginx(lab, host)
    drill = {}
    drill_started = time.monotonic()
    thread = threading.Thread(target=lambda: drill.update(result=run_playbook(
        CHAOS, inventory=lab.inventory,
        extravars={"chaos_hosts": host, "chaos_faults": ["refuse"], "chaos_timeout": 90, "chaos_settle": 0,
                   "chaos_poll": CHAOS_POLL})))
    thread.start()
    try:
        # Injected: the port refuses and the drill has put the original config back on disk, so a restart
        # is the repair.
        deadline = time.monotonic() + 30
        while curl_exit_code(lab, host) != 7 or not config_back_on_disk(lab, host):
            assert time.monotonic() < deadline, "port 80 never refused, or the config never came back"
            time.sleep(0.3)
        seen_refusing = time.monotonic()
        assert sh(lab, host, f"readlink {SITE}") == "/etc/nginx/sites-available/default"
        # The fault is the port only: the same process is running and systemd sees nothing wrong.
        assert sh(lab, host, "systemctl is-active nginx") == "active"
        assert sh(lab, host, "systemctl show --property=MainPID --value nginx") == pid_before

        remediation_started = time.monotonic()
        remediated = run_playbook(REMEDIATE, limit=[host], extravars={
            "remediate_services": [NGINX], "remediate_probe_unhealthy_threshold": 1,
            "remediate_verify_interval": 1, "remediate_notify": False})
        remediation_ended = time.monotonic()
        assert remediated.ok, remediated.failure_summary()
    finally:
        thread.join(timeout=120)

    plan = " ".join(remediated.task_results("fleetops.health.remediate : Show the plan (in check mode this is all that happens)")[host]["msg"])
    assert "restart nginx (nginx.service) because probe http://127.0.0.1/ is down after 1 failed runs: connection refused" in plan
    assert "unit nginx.service" not in plan
    record = json.loads(sh(lab, host, "cat /var/lib/fleetops/remediate/budgets.json"))["services"]["nginx"]
    assert record["last_result"]["result"] == "verified"
    assert sh(lab, host, "systemctl show --property=MainPID --value nginx") != pid_before

    result = drill["result"]
    assert result.ok, result.failure_summary()
    name, fault, rto = the_drill_line(result)
    assert (name, fault) == (host, "refuse")
    # The port refused from before the test saw it until remediation restarted nginx, and the drill sees the
    # answer within one poll of remediation's end.
    assert remediation_started - seen_refusing <= rto <= remediation_ended - drill_started + CHAOS_POLL + RTO_MARGIN
    assert_site_as_found(lab, host)


def the_drill_line(result):
    (line,) = drill_lines(result)
    name, fault, rto = line.split()
    return name, fault, float(rto)


def test_kill9_is_repaired_by_systemds_restart_within_restart_sec(lab, run_playbook):
    host = lab.hosts[0]
    fresh_nginx(lab, host)
    sh(lab, host, f"mkdir -p {RESTART_DROPIN_DIR}; printf '[Service]\\nRestart=always\\nRestartSec={RESTART_SEC}\\n' "
                  f"> {RESTART_DROPIN_DIR}/chaos-restart.conf; systemctl daemon-reload; systemctl restart nginx")
    try:
        pid_before = sh(lab, host, "systemctl show --property=MainPID --value nginx")
        result = run_playbook(CHAOS, extravars={"chaos_hosts": host, "chaos_faults": ["kill9"], "chaos_timeout": 30,
                                                "chaos_settle": 0, "chaos_poll": CHAOS_POLL})
        assert result.ok, result.failure_summary()
        name, fault, rto = the_drill_line(result)
        assert (name, fault) == (host, "kill9")
        # systemd restarts RestartSec after the kill; the drill sees it at its next poll.
        assert RESTART_SEC <= rto <= RESTART_SEC + CHAOS_POLL + RTO_MARGIN, rto
        assert sh(lab, host, "systemctl show --property=MainPID --value nginx") != pid_before
    finally:
        sh(lab, host, f"rm -rf {RESTART_DROPIN_DIR}; systemctl daemon-reload; systemctl reset-failed; "
                      "systemctl restart nginx")


def test_a_stopped_service_is_brought_back_by_remediation_runs_within_two_periods(lab, run_playbook):
    # Remediation runs back to back, as a schedule with a period of one run would: the run under way when
    # nginx stops may miss it, the next one repairs it, so the RTO is at most two runs and a poll.
    host = lab.hosts[1]
    fresh_nginx(lab, host)
    stop_loop = threading.Event()
    durations = []

    def remediate_loop():
        while not stop_loop.is_set():
            started = time.monotonic()
            remediated = run_playbook(REMEDIATE, limit=[host], extravars={
                "remediate_services": [NGINX], "remediate_verify_interval": 1, "remediate_notify": False})
            assert remediated.ok, remediated.failure_summary()
            durations.append(time.monotonic() - started)

    loop = threading.Thread(target=remediate_loop)
    loop.start()
    try:
        result = run_playbook(CHAOS, extravars={"chaos_hosts": host, "chaos_faults": ["stop"], "chaos_timeout": 120,
                                                "chaos_settle": 0, "chaos_poll": CHAOS_POLL})
    finally:
        stop_loop.set()
        loop.join(timeout=180)
    assert result.ok, result.failure_summary()
    name, fault, rto = the_drill_line(result)
    assert (name, fault) == (host, "stop")
    assert rto <= 2 * max(durations) + CHAOS_POLL + RTO_MARGIN, (rto, durations)
    record = json.loads(sh(lab, host, "cat /var/lib/fleetops/remediate/budgets.json"))["services"]["nginx"]
    assert record["last_result"]["result"] == "verified"


def test_a_refused_port_that_nothing_repairs_fails_the_drill_and_is_undone(lab, run_playbook):
    host = lab.hosts[1]
    fresh_nginx(lab, host)
    result = run_playbook(CHAOS, extravars={"chaos_hosts": host, "chaos_faults": ["refuse"], "chaos_timeout": 2,
                                            "chaos_settle": 0})
    assert not result.ok
    failure = result.failure_summary()
    assert "refuse on " + host + " failed at 'Wait until the service answers again'" in failure
    assert "Connection refused" in failure and "within chaos_timeout=2 s" in failure
    assert_site_as_found(lab, host)


def test_a_tmpfs_the_sweep_does_not_measure_is_refused_before_writing(lab, run_playbook):
    """The drill measures what the sweep measures: by default no tmpfs, so a /dev/shm fill would go unseen."""
    host = lab.hosts[2]
    result = run_playbook(CHAOS, extravars={"chaos_hosts": host, "chaos_faults": ["disk_fill"],
                                            "chaos_disk_path": "/dev/shm", "chaos_settle": 0})
    assert not result.ok
    assert "not a mount point the sweep measures" in result.failure_summary()
    assert sh(lab, host, "ls -A /dev/shm") == ""


def test_a_disk_filled_to_the_threshold_is_reported_by_host_resources_and_emptied(lab, run_playbook):
    host = lab.hosts[2]
    # tmpfs counts for the drill only as it would for the sweep: with sweep_exclude_fstypes set to include it.
    result = run_playbook(CHAOS, extravars={"chaos_hosts": host, "chaos_faults": ["disk_fill"],
                                            "chaos_disk_path": "/dev/shm", "chaos_disk_threshold": 90,
                                            "chaos_settle": 0, "sweep_exclude_fstypes": []})
    assert result.ok, result.failure_summary()
    seen = result.task_results("fleetops.health.chaos : Wait until host_resources reports the disk at the threshold")[host]
    facts = seen["ansible_facts"]["fleet_resources"]
    (shm,) = [disk for disk in facts["disks"] if disk["mount"] == "/dev/shm"]
    assert 90 <= shm["percent"] < 95
    assert facts["verdict"] in ("warn", "crit") and any("/dev/shm" in reason for reason in facts["reasons"])
    (line,) = drill_lines(result)
    assert line.startswith(f"{host} disk_fill detected in ") and "/dev/shm at 9" in line
    # The drill removed its file.
    assert sh(lab, host, "ls -A /dev/shm") == ""
    assert sh(lab, host, "df --output=pcent /dev/shm | tail -1").strip() == "0%"


def test_a_disk_fill_larger_than_allowed_is_refused_before_writing(lab, run_playbook):
    host = lab.hosts[2]
    result = run_playbook(CHAOS, extravars={"chaos_hosts": host, "chaos_faults": ["disk_fill"],
                                            "chaos_disk_path": "/dev/shm", "chaos_disk_max_fill": 1048576 * 8,
                                            "chaos_settle": 0, "sweep_exclude_fstypes": []})
    assert not result.ok
    assert "more than chaos_disk_max_fill=8388608" in result.failure_summary()
    assert sh(lab, host, "ls -A /dev/shm") == ""
