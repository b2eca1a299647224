"""fleetops.health.host_resources and the fleet sweep on lab hosts (systemd as PID 1, podman cgroups).

The cgroup test sets limits on a running host with `podman update` (the lab API starts hosts without
limits) and checks that the module reports what podman set; the limits are lifted again afterwards.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import lab as host_lab  # noqa: E402  pylint: disable=wrong-import-position
from helpers_tasks import module_result, run_tasks  # noqa: E402  pylint: disable=wrong-import-position

SECTIONS = ("cpu", "load", "memory", "swap", "disks", "io", "network", "processes", "cgroup", "units",
            "uptime", "score", "verdict", "reasons")
BROKEN_UNIT = "fleetops-e2e-broken.service"
BROKEN_UNIT_FILE = """[Unit]
Description=fleetops e2e: a service that fails at once
[Service]
Type=oneshot
ExecStart=/bin/false
"""
MEMORY_LIMIT = 384 * 2 ** 20
CPU_LIMIT = 1.5


def resources(result, host):
    outcome = module_result(result, "measure", host)
    assert outcome["changed"] is False
    return outcome["ansible_facts"]["fleet_resources"]


@pytest.fixture
def broken_unit(lab):
    """A failed systemd unit on the second lab host; removed afterwards."""
    host = lab.hosts[1]
    install = lab.exec(host, "sh", "-c", f"cat > /etc/systemd/system/{BROKEN_UNIT} <<'EOF'\n{BROKEN_UNIT_FILE}EOF\n"
                                         f"systemctl daemon-reload; systemctl start {BROKEN_UNIT}; "
                                         f"systemctl is-failed {BROKEN_UNIT}")
    assert install.stdout.strip() == "failed", install.stdout + install.stderr
    yield host
    lab.exec(host, "sh", "-c", f"rm -f /etc/systemd/system/{BROKEN_UNIT}; systemctl daemon-reload; "
                               f"systemctl reset-failed {BROKEN_UNIT}")


@pytest.fixture
def limited_host(lab):
    """The last lab host with a memory and a CPU limit set by podman; the limits are lifted afterwards."""
    host = lab.hosts[-1]
    host_lab.podman("update", "--memory", str(MEMORY_LIMIT), "--cpus", str(CPU_LIMIT), host)
    yield host
    lift_limits(host)


def lift_limits(host):
    """podman 4 cannot unset a limit (`update --memory` takes no -1), so write the container's cgroup files."""
    path = host_lab.podman("inspect", "--format", "{{.State.CgroupPath}}", host).stdout.strip()
    cgroup_v1 = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    if cgroup_v1.is_dir():
        writes = [(cgroup_v1 / "memory.memsw.limit_in_bytes", "-1"), (cgroup_v1 / "memory.limit_in_bytes", "-1"),
                  (Path("/sys/fs/cgroup/cpu") / path.lstrip("/") / "cpu.cfs_quota_us", "-1")]
    else:
        unified = Path("/sys/fs/cgroup") / path.lstrip("/")
        writes = [(unified / "memory.max", "max"), (unified / "cpu.max", "max")]
    for control, value in writes:
        if control.exists():
            control.write_text(value)


def test_facts_on_every_lab_host(lab, run_playbook, tmp_path):
    result = run_tasks(run_playbook, tmp_path, lab.hosts,
                       [("measure", "fleetops.health.host_resources", {"window": 0.3, "top": 3})])

    for host in lab.hosts:
        facts = resources(result, host)
        assert set(SECTIONS) <= set(facts), sorted(facts)
        assert facts["verdict"] in ("ok", "warn", "crit")
        assert facts["cpu"]["cores"] >= 1 and 0 <= facts["cpu"]["percent"] <= 100
        assert facts["memory"]["total"] > facts["memory"]["available"] > 0
        assert facts["disks"] and all("mount" in disk for disk in facts["disks"])
        assert any(entry.get("interface") == "eth0" for entry in facts["network"])
        assert 0 < len(facts["processes"]["top_memory"]) <= 3
        assert "systemd" in {process["name"] for process in facts["processes"]["top_memory"]}
        # systemd is PID 1 on lab hosts, so units are read, not an error entry.
        assert facts["units"]["failed_count"] == len(facts["units"]["failed"])
        assert facts["cgroup"]["version"] in (1, 2) and facts["cgroup"]["memory_usage"] > 0
        # The host sees podman's default pids limit on its own cgroup.
        assert facts["cgroup"]["pids_limit"] == pids_limit_set_by_podman(host)


def test_disks_are_filesystems_not_files_bind_mounted_by_podman(lab, run_playbook, tmp_path):
    """podman bind-mounts single files (/etc/resolv.conf, /etc/hosts ...) from the machine's disk into every
    container; such a file is not a filesystem an operator can act on, and a disk named /etc/resolv.conf in
    the sweep's WORST DISK column sends on-call to the wrong place."""
    host = lab.hosts[0]
    result = run_tasks(run_playbook, tmp_path, host,
                       [("measure", "fleetops.health.host_resources", {"window": 0, "subset": ["disk"]})])

    mounts = [disk["mount"] for disk in resources(result, host)["disks"]]
    files = [mount for mount in mounts if lab.exec(host, "test", "-f", mount).returncode == 0]
    assert files == [], f"disks lists file bind mounts {files} (all disks: {mounts})"


def pids_limit_set_by_podman(host):
    inspected = json.loads(host_lab.podman("inspect", "--format", "json", host).stdout)[0]
    return inspected["HostConfig"]["PidsLimit"] or None


@pytest.fixture
def busy_host(lab):
    """(host, burner pid): a CPU burner and a file writer running on the first lab host for at most 60 s."""
    host = lab.hosts[0]
    started = lab.exec(host, "sh", "-c", """
        systemd-run --quiet --unit e2e-burner --property RuntimeMaxSec=60 sh -c 'while :; do :; done'
        systemd-run --quiet --unit e2e-writer --property RuntimeMaxSec=60 sh -c \
            'while :; do dd if=/dev/zero of=/var/tmp/e2e-io bs=1M count=16 conv=fsync status=none; done'
        systemctl show --property MainPID --value e2e-burner""")
    assert started.returncode == 0, started.stderr
    yield host, int(started.stdout.split()[-1])
    lab.exec(host, "sh", "-c", "systemctl stop e2e-burner e2e-writer; rm -f /var/tmp/e2e-io")


def test_a_cpu_burner_tops_the_list_and_written_bytes_show_as_io(lab, run_playbook, tmp_path, busy_host):
    host, burner = busy_host
    result = run_tasks(run_playbook, tmp_path, host, [("measure", "fleetops.health.host_resources",
                                                       {"window": 1.0, "subset": ["cpu", "io", "processes"]})])

    facts = resources(result, host)
    top_cpu = {process["pid"]: process for process in facts["processes"]["top_cpu"]}
    assert burner in top_cpu, facts["processes"]["top_cpu"]
    # Its share depends on how busy the machine is (65 % of a core when idle, a few % under load average 15);
    # every other process on the host is idle, so the burner makes the top list, above 0.
    assert top_cpu[burner]["name"] == "sh" and top_cpu[burner]["cpu_percent"] > 1
    assert facts["cpu"]["percent"] > 0
    # The writer fsyncs 16 MiB at a time; the device under the host's filesystem sees it.
    assert max(device["write_bps"] for device in facts["io"]) > 2 ** 20, facts["io"]


def test_cgroup_shows_the_limits_podman_set(lab, run_playbook, tmp_path, limited_host):
    result = run_tasks(run_playbook, tmp_path, limited_host,
                       [("measure", "fleetops.health.host_resources", {"window": 0, "subset": ["cgroup", "memory"]})])

    facts = resources(result, limited_host)
    cgroup = facts["cgroup"]
    assert cgroup["memory_limit"] == MEMORY_LIMIT
    assert cgroup["cpu_quota_cores"] == CPU_LIMIT
    assert 0 < cgroup["memory_usage"] < MEMORY_LIMIT
    assert cgroup["memory_percent"] == pytest.approx(100.0 * cgroup["memory_usage"] / MEMORY_LIMIT, abs=0.1)
    # memory (the machine as psutil sees it) is not the container's limit.
    assert facts["memory"]["total"] > MEMORY_LIMIT


def test_a_failed_unit_shows_in_units_and_reasons(lab, run_playbook, tmp_path, broken_unit):
    result = run_tasks(run_playbook, tmp_path, broken_unit,
                       [("measure", "fleetops.health.host_resources", {"window": 0, "subset": ["units"]})])

    facts = resources(result, broken_unit)
    failed = {unit["unit"]: unit for unit in facts["units"]["failed"]}
    assert failed[BROKEN_UNIT]["active"] == "failed"
    assert failed[BROKEN_UNIT]["description"] == "fleetops e2e: a service that fails at once"
    assert facts["verdict"] in ("warn", "crit")
    assert any(BROKEN_UNIT in reason for reason in facts["reasons"]), facts["reasons"]


@pytest.fixture(params=[True, False], ids=["facts_injected", "injection_off"])
def inject_facts(request, monkeypatch):
    """The sweep runs with facts injected as top-level variables and with that injection off (deprecated in 2.20)."""
    monkeypatch.setenv("ANSIBLE_INJECT_FACT_VARS", "true" if request.param else "false")
    return request.param


def test_sweep_reports_every_lab_host(lab, run_playbook, tmp_path, broken_unit, inject_facts):
    report_dir = tmp_path / "report"

    result = run_playbook("fleetops.health.sweep", extravars={"sweep_report_dir": str(report_dir)})

    assert result.ok, result.failure_summary()
    report = json.loads((report_dir / "fleet-report.json").read_text())
    assert sorted(row["host"] for row in report["hosts"]) == sorted(lab.hosts)
    assert report["total"] == len(lab.hosts) and report["unreachable"] == 0
    assert all(row["reachable"] and row["verdict"] in ("ok", "warn", "crit") for row in report["hosts"])
    assert sum(report["counts"].values()) == len(lab.hosts)
    broken = next(row for row in report["hosts"] if row["host"] == broken_unit)
    assert any(BROKEN_UNIT in reason for reason in broken["reasons"]), broken["reasons"]
    html = (report_dir / "fleet-report.html").read_text()
    assert all(host in html for host in lab.hosts) and BROKEN_UNIT in html
    summary = result.task_results("fleetops.health.sweep : Show the fleet summary")
    table = next(iter(summary.values()))["msg"]
    assert all(host in table for host in lab.hosts)


def test_sweep_verdicts_take_the_probes_and_log_rules_of_an_earlier_play(lab, run_playbook, tmp_path, inject_facts):
    """probe and log_scan facts gathered before the sweep (same run) become reasons in the report."""
    prober, server, logger = lab.hosts[0], lab.hosts[1], lab.hosts[2]
    log_dir = "/var/log/e2e-sweep"
    assert lab.exec(logger, "sh", "-c", f"rm -rf {log_dir} /var/lib/fleetops/e2e-sweep-logs; mkdir -p {log_dir}; "
                                        f"printf 'ok\\nERROR disk gone\\nERROR disk still gone\\n' > {log_dir}/app.log"
                    ).returncode == 0
    report_dir = tmp_path / "report"
    playbook = tmp_path / "checks-then-sweep.yml"
    playbook.write_text(json.dumps([
        {"name": "Probe a closed port on another host", "hosts": prober, "gather_facts": False, "tasks": [
            {"name": "probe", "fleetops.health.probe": {"targets": [{"name": "db", "tcp": f"{server}:5432"}]}}]},
        {"name": "Scan a log", "hosts": logger, "gather_facts": False, "tasks": [
            {"name": "scan", "fleetops.health.log_scan": {
                "paths": [f"{log_dir}/app.log"], "start_at": "beginning", "state_dir": "/var/lib/fleetops/e2e-sweep-logs",
                "rules": [{"name": "errors", "keywords": ["ERROR"], "severity": "critical"}]}}]},
        {"import_playbook": "fleetops.health.sweep"},
    ]))

    try:
        result = run_playbook(playbook, extravars={"sweep_report_dir": str(report_dir)})
    finally:
        lab.exec(logger, "rm", "-rf", log_dir, "/var/lib/fleetops/e2e-sweep-logs")

    assert result.ok, result.failure_summary()
    rows = {row["host"]: row for row in json.loads((report_dir / "fleet-report.json").read_text())["hosts"]}
    assert sorted(rows) == sorted(lab.hosts)
    assert rows[prober]["verdict"] == "crit" and "probe db down (refused)" in rows[prober]["reasons"]
    assert rows[logger]["verdict"] == "crit" and "log rule errors: 2 critical matches" in rows[logger]["reasons"]
    assert not any(reason.startswith(("probe ", "log rule ")) for reason in rows[server]["reasons"])
    html = (report_dir / "fleet-report.html").read_text()
    assert "probe db down (refused)" in html and "log rule errors: 2 critical matches" in html


def test_network_rate_shows_a_transfer_of_known_pace(lab, run_playbook, tmp_path):
    # The first host's nginx sends at a fixed pace (limit_rate: the sender must pace, because a receiver that
    # reads slowly still lets megabytes through into its socket buffers at once). nginx lets each request
    # start with one second's worth at once (its budget is rate x (seconds since the start + 1)), so a new
    # download inside the measured window adds a burst: a CI run saw 1.41x the pace that way with 16 MiB
    # files. The second host therefore makes one long download of a sparse file far larger than the test
    # needs, started before the measurement and killed after it. host_resources on the first host then sees
    # that pace as eth0's tx rate (TCP and HTTP overhead add a few percent, hence the margin).
    sender, receiver = lab.hosts[:2]
    pace = 4 * 2 ** 20  # bytes per second: nginx's limit_rate 4m
    site = "server { listen 8081; root /var/www/html; limit_rate 4m; }"
    assert lab.exec(sender, "sh", "-c", f"truncate -s {pace * 300} /var/www/html/rate.bin && "
                                        f"echo '{site}' > /etc/nginx/conf.d/rate.conf && "
                                        "systemctl restart nginx").returncode == 0
    url = f"http://{lab.addresses[sender]}:8081/rate.bin"
    downloads = {}
    download = threading.Thread(target=lambda: downloads.update(curl=lab.exec(
        receiver, "curl", "-sS", "-o", "/dev/null", "--max-time", "240", url, timeout=300)))
    try:
        download.start()
        time.sleep(1)
        result = run_tasks(run_playbook, tmp_path, [sender], [
            ("measure", "fleetops.health.host_resources", {"window": 2, "subset": ["network"]})])
        interfaces = {entry["interface"]: entry for entry in resources(result, sender)["network"]}
    finally:
        lab.exec(receiver, "pkill", "-x", "curl")
        download.join(timeout=60)
        lab.exec(sender, "sh", "-c", "rm -f /var/www/html/rate.bin /etc/nginx/conf.d/rate.conf; systemctl stop nginx")
    eth0 = interfaces["eth0"]
    # curl, killed, prints nothing: what it saw is there only when it failed on its own.
    assert 0.8 * pace <= eth0["tx_bps"] <= 1.25 * pace, (eth0, downloads)
    # The other direction carries only the acknowledgements.
    assert eth0["rx_bps"] < 0.1 * pace, eth0
