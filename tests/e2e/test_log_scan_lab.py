"""fleetops.health.log_scan on a lab host: offsets kept on the host across runs, and logrotate there.

The lab image has no logrotate; the test installs Debian's package into the host (the .deb files from this
machine's apt cache, or `apt-get download`, then dpkg -i: about 2 s). Where neither works, the rename
rotation is done by hand (mv + a new file, which is what logrotate's `create` mode does) and the
copytruncate step is skipped.
"""
from __future__ import annotations

import glob
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import lab as host_lab  # noqa: E402  pylint: disable=wrong-import-position
from helpers_tasks import module_result, run_tasks  # noqa: E402  pylint: disable=wrong-import-position

LOG_DIR = "/var/log/e2e-app"
LOG = f"{LOG_DIR}/app.log"
STATE_DIR = "/var/lib/fleetops/e2e-log-scan"
LOGROTATE_PACKAGES = ("logrotate", "libpopt0")
RULES = [
    {"name": "errors", "keywords": ["ERROR"], "severity": "critical"},
    {"name": "timeouts", "pattern": r"timed out after \d+ ms", "severity": "warning"},
]
LOGROTATE_CONF = """{log} {{
    rotate 5
    missingok
    {mode}
}}
"""


def debian_packages(directory: Path) -> list:
    """The .deb files of LOGROTATE_PACKAGES: from the apt cache, else downloaded into ``directory``."""
    cached = [sorted(glob.glob(f"/var/cache/apt/archives/{name}_*.deb")) for name in LOGROTATE_PACKAGES]
    if all(cached):
        return [found[-1] for found in cached]
    subprocess.run(["apt-get", "download", *LOGROTATE_PACKAGES], cwd=directory, capture_output=True, timeout=60,
                   check=False)
    return sorted(str(path) for path in directory.glob("*.deb"))


@pytest.fixture(scope="module")
def log_host(lab):
    """(host, has_logrotate): the lab host of these tests, with logrotate installed when it could be."""
    host = lab.hosts[-1]
    if lab.exec(host, "sh", "-c", "command -v logrotate").returncode == 0:
        return host, True
    with tempfile.TemporaryDirectory() as scratch:
        debs = debian_packages(Path(scratch))
        if len(debs) == len(LOGROTATE_PACKAGES):
            lab.exec(host, "mkdir", "-p", "/tmp/e2e-debs")
            for deb in debs:
                copied = host_lab.podman("cp", deb, f"{host}:/tmp/e2e-debs/", check=False)
                assert copied.returncode == 0, copied.stderr
            lab.exec(host, "sh", "-c", "dpkg -i /tmp/e2e-debs/*.deb && systemctl disable --now logrotate.timer; "
                                       "rm -rf /tmp/e2e-debs", timeout=120)
    return host, lab.exec(host, "sh", "-c", "command -v logrotate").returncode == 0


@pytest.fixture
def app_log(lab, log_host):
    """A fresh log directory and no saved offsets on the host; removed afterwards."""
    host, _has_logrotate = log_host
    reset = lab.exec(host, "sh", "-c", f"rm -rf {LOG_DIR} {STATE_DIR} && mkdir -p {LOG_DIR}")
    assert reset.returncode == 0, reset.stderr
    yield host
    lab.exec(host, "rm", "-rf", LOG_DIR, STATE_DIR)


def on_host(lab, host, script):
    done = lab.exec(host, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    return done.stdout


def append(lab, host, *lines, newline=True):
    text = "\n".join(lines) + ("\n" if newline else "")
    on_host(lab, host, f"printf %s {shell_quote(text)} >> {LOG}")


def shell_quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def rotate(lab, host, mode, has_logrotate):
    """Rotate app.log on the host with logrotate in ``mode`` (create or copytruncate)."""
    if not has_logrotate:
        assert mode == "create"
        on_host(lab, host, f"mv {LOG} {LOG}.1 && : > {LOG}")
        return
    conf = LOGROTATE_CONF.format(log=LOG, mode=mode)
    on_host(lab, host, f"printf %s {shell_quote(conf)} > {LOG_DIR}/logrotate.conf && "
                       f"logrotate --force --state {LOG_DIR}/logrotate.state {LOG_DIR}/logrotate.conf")


def scan(lab, run_playbook, tmp_path, host, check=False, **extra):
    """One log_scan run on the host; returns (module result, fleet_logs)."""
    args = {"paths": [f"{LOG_DIR}/*.log"], "rules": RULES, "state_dir": STATE_DIR, "start_at": "beginning"}
    args.update(extra)
    result = run_tasks(run_playbook, tmp_path, host, [("scan the logs", "fleetops.health.log_scan", args)],
                       check=check)
    outcome = module_result(result, "scan the logs", host)
    return outcome, outcome["ansible_facts"]["fleet_logs"]


def counts(logs):
    return {name: rule["count"] for name, rule in logs["rules"].items()}


def events(logs):
    return {entry["path"]: entry["events"] for entry in logs["files"]}


def test_offsets_on_the_host_across_runs_and_logrotate(lab, run_playbook, tmp_path, log_host, app_log):
    host, has_logrotate = log_host
    append(lab, host, "09:00 INFO started", "09:01 ERROR db connection lost", "09:02 WARN upstream timed out after 300 ms")

    outcome, logs = scan(lab, run_playbook, tmp_path, host)
    assert counts(logs) == {"errors": 1, "timeouts": 1}
    assert logs["highest_severity"] == "critical" and outcome["changed"] is True
    assert logs["rules"]["errors"]["samples"] == ["09:01 ERROR db connection lost"]
    assert lab.exec(host, "test", "-s", f"{STATE_DIR}/offsets.json").returncode == 0

    outcome, logs = scan(lab, run_playbook, tmp_path, host)
    assert counts(logs) == {"errors": 0, "timeouts": 0} and outcome["changed"] is False

    # Lines before the rotation, the rotation, lines after it, and a last line not finished yet.
    append(lab, host, "09:10 ERROR disk full", "09:11 INFO retry", "09:12 ERROR disk still full")
    rotate(lab, host, "create", has_logrotate)
    append(lab, host, "09:20 INFO reopened", "09:21 WARN db timed out after 5000 ms", "09:22 ERROR after rotation")
    append(lab, host, "09:23 ERROR half writ", newline=False)

    outcome, logs = scan(lab, run_playbook, tmp_path, host)
    assert counts(logs) == {"errors": 3, "timeouts": 1}
    assert logs["rules"]["errors"]["samples"] == ["09:10 ERROR disk full", "09:12 ERROR disk still full",
                                                  "09:22 ERROR after rotation"]
    assert "rotated" in events(logs)[LOG] and outcome["changed"] is True

    # The unfinished line is counted once, when complete; then copytruncate.
    append(lab, host, "ten", "09:30 ERROR before copytruncate")
    if not has_logrotate:
        pytest.skip("logrotate could not be installed on the lab host: copytruncate not exercised")
    rotate(lab, host, "copytruncate", has_logrotate)
    append(lab, host, "09:40 ERROR after copytruncate")

    outcome, logs = scan(lab, run_playbook, tmp_path, host)
    assert counts(logs) == {"errors": 3, "timeouts": 0}
    assert logs["rules"]["errors"]["samples"] == ["09:23 ERROR half written", "09:30 ERROR before copytruncate",
                                                  "09:40 ERROR after copytruncate"]
    assert "truncated" in events(logs)[LOG]

    outcome, logs = scan(lab, run_playbook, tmp_path, host)
    assert logs["total_matches"] == 0 and outcome["changed"] is False


def test_check_mode_scans_without_moving_the_offsets(lab, run_playbook, tmp_path, log_host, app_log):
    host = app_log
    append(lab, host, "10:00 INFO up")
    scan(lab, run_playbook, tmp_path, host)
    saved = on_host(lab, host, f"cat {STATE_DIR}/offsets.json")
    append(lab, host, "10:01 ERROR one", "10:02 ERROR two")

    outcome, logs = scan(lab, run_playbook, tmp_path, host, check=True)
    assert counts(logs)["errors"] == 2
    assert on_host(lab, host, f"cat {STATE_DIR}/offsets.json") == saved

    outcome, logs = scan(lab, run_playbook, tmp_path, host)
    assert counts(logs)["errors"] == 2 and outcome["changed"] is True
