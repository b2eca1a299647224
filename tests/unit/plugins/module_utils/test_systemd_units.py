"""Failed units: systemctl output parsing, a host without systemd, a systemctl that hangs or fails."""
from __future__ import annotations

import shutil
import subprocess
import time

from ansible_collections.fleetops.health.plugins.module_utils import systemd_units

# `systemctl list-units --state=failed --no-legend --plain` on systemd 252 (Debian 12)
OUTPUT_252 = (
    "nginx.service       loaded failed failed A high performance web server and a reverse proxy server\n"
    "logrotate.service   loaded failed failed Rotate log files\n"
)
# systemd 239-245 print the bullet column for failed units even with --plain
OUTPUT_OLD = "\u25cf app-worker@2.service loaded failed failed App worker 2\n"


def test_parse_failed_units():
    units = systemd_units.parse_failed_units(OUTPUT_252)
    assert units == [
        {"unit": "nginx.service", "load": "loaded", "active": "failed", "sub": "failed",
         "description": "A high performance web server and a reverse proxy server"},
        {"unit": "logrotate.service", "load": "loaded", "active": "failed", "sub": "failed", "description": "Rotate log files"},
    ]


def test_parse_bullet_column_and_empty():
    assert systemd_units.parse_failed_units(OUTPUT_OLD)[0]["unit"] == "app-worker@2.service"
    assert systemd_units.parse_failed_units("") == []


def _fake_systemctl(tmp_path, body):
    path = tmp_path / "systemctl"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_no_systemd_is_error_entry(tmp_path):
    result = systemd_units.failed_units(shutil.which("true"), 1, runtime_dir=str(tmp_path / "absent"))
    assert "systemd is not the init system" in result["error"]


def _pid1_is_systemd():
    with open("/proc/1/comm") as handle:
        return handle.read().strip() == "systemd"


def test_live_host_gives_the_answer_its_init_system_implies():
    # Whether systemd runs is read independently (PID 1's name), so each outcome is the only right one.
    result = systemd_units.failed_units(shutil.which("systemctl"), 5)
    if _pid1_is_systemd():
        listed = subprocess.run(["systemctl"] + systemd_units.SYSTEMCTL_FAILED_ARGS, capture_output=True, text=True,
                                check=True).stdout
        assert result == {"failed_count": len(listed.splitlines()), "failed": systemd_units.parse_failed_units(listed)}
    else:
        assert result == {"error": "systemd is not the init system here (/run/systemd/system is missing); "
                                   "failed units not checked"}


def test_systemctl_output_through_a_real_process(tmp_path):
    script = _fake_systemctl(tmp_path, "printf '%s'" % OUTPUT_252.replace("\n", "\\n"))
    result = systemd_units.failed_units(script, 2, runtime_dir=str(tmp_path))
    assert result["failed_count"] == 2 and result["failed"][0]["unit"] == "nginx.service"


def test_hanging_systemctl_costs_the_timeout(tmp_path):
    script = _fake_systemctl(tmp_path, "exec sleep 30")
    start = time.monotonic()
    result = systemd_units.failed_units(script, 0.3, runtime_dir=str(tmp_path))
    assert time.monotonic() - start < 2
    assert "did not answer within 0.3s" in result["error"]


def test_failing_systemctl_is_error(tmp_path):
    script = _fake_systemctl(tmp_path, "echo 'Failed to connect to bus' >&2; exit 1")
    assert systemd_units.failed_units(script, 2, runtime_dir=str(tmp_path)) == {
        "error": "systemctl exited 1: Failed to connect to bus"}
    assert "not found" in systemd_units.failed_units(None, 2, runtime_dir=str(tmp_path))["error"]
