"""Testinfra checks after the agent converged: what a person would check by hand, then a kill -9, a real
Prometheus scrape from the control side, and agent_state: absent (last, it removes the agent)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "..", "tests", "unit"))
from im_receivers import IMReceiver  # noqa: E402  pylint: disable=wrong-import-position

UNIT = "fleetops-agent.service"
PORT = 9906
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def show(host, prop):
    return host.check_output("systemctl show --property=%s --value %s" % (prop, UNIT))


def metrics(host):
    return host.check_output("curl -fsS --max-time 5 http://127.0.0.1:%d/metrics" % PORT)


def wait_active(host, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run("systemctl is-active %s" % UNIT).stdout.strip() == "active":
            return True
        time.sleep(0.5)
    return False


def test_the_unit_is_active_hardened_and_capped(host):
    assert host.service(UNIT).is_enabled
    assert wait_active(host)
    assert show(host, "MemoryMax") == str(256 * 1024 * 1024)
    assert show(host, "CPUQuotaPerSecUSec") == "500ms"
    assert show(host, "TasksMax") == "32"
    assert show(host, "User") == "fleetops-agent"
    assert show(host, "NoNewPrivileges") == "yes"
    assert show(host, "ProtectSystem") == "strict"
    assert show(host, "ProtectHome") == "yes"
    assert show(host, "PrivateTmp") == "yes"
    assert show(host, "Restart") == "on-failure"
    assert show(host, "ReadWritePaths") == "/var/lib/fleetops/agent"
    pid = show(host, "MainPID")
    assert host.check_output("ps -o user= -p %s" % pid) == "fleetops-agent"


def test_the_configuration_is_not_world_readable(host):
    config = host.file("/etc/fleetops-agent/agent.json")
    assert config.user == "root" and config.group == "fleetops-agent" and config.mode == 0o640
    assert json.loads(config.content_string)["listen_address"] == "0.0.0.0"


def test_metrics_answer_and_pass_promtool(host):
    text = metrics(host)
    assert "fleetops_cpu_usage_ratio" in text and 'fleetops_disk_usage_ratio{mountpoint="/"}' in text
    assert "process_resident_memory_bytes" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing on the control side: tests/tooling/system_deps.sh"
    # check_output strips the last newline; the text format needs it.
    proc = subprocess.run([promtool, "check", "metrics"], input=(text + "\n").encode(), capture_output=True, timeout=30,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_history_and_heartbeat_are_written(host):
    assert host.file("/var/lib/fleetops/agent/history.db").exists
    age = float(host.check_output("echo $(( $(date +%s) - $(stat -c %Y /var/lib/fleetops/agent/heartbeat) ))"))
    assert age < 10


def test_kill_9_is_restarted(host):
    before = show(host, "MainPID")
    host.run_expect([0], "kill -9 %s" % before)
    deadline = time.monotonic() + 30
    after = before
    while time.monotonic() < deadline:
        after = show(host, "MainPID")
        if after not in ("0", before) and host.run("systemctl is-active %s" % UNIT).stdout.strip() == "active":
            break
        time.sleep(0.5)
    assert after not in ("0", before)
    assert show(host, "NRestarts") != "0"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and host.run("curl -fsS --max-time 2 http://127.0.0.1:%d/metrics" % PORT).rc:
        time.sleep(0.5)
    assert "fleetops_agent_samples_total" in metrics(host)


def _address(host):
    """The lab host's address as the control side reaches it (the inventory's ansible_host)."""
    try:
        return host.ansible.get_variables()["ansible_host"]
    except Exception:  # pylint: disable=broad-except
        return host.backend.get_hostname()


def test_a_real_prometheus_scrapes_the_agent(host, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing on the control side: tests/tooling/system_deps.sh"
    target = "%s:%d" % (_address(host), PORT)
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: fleetops_agent\n"
                      "    static_configs: [{targets: ['%s']}]\n" % target)
    with socket_port() as port:
        proc = subprocess.Popen([prometheus, "--config.file", str(config), "--storage.tsdb.path", str(tmp_path / "data"),
                                 "--web.listen-address", "127.0.0.1:%d" % port],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            result = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=up" % port, timeout=2) as answer:
                        result = json.load(answer)["data"]["result"]
                    if result and result[0]["value"][1] == "1":
                        break
                except OSError:
                    pass
                time.sleep(1)
            assert result and result[0]["metric"]["instance"] == target and result[0]["value"][1] == "1", result
        finally:
            proc.terminate()
            proc.wait(10)


# The address lab hosts use for the machine running the tests (podman puts it in their /etc/hosts).
HOST_ADDRESS_FROM_LAB = "host.containers.internal"
EDIT_CONFIG = """python3 - <<'EOF'
import json
path = "/etc/fleetops-agent/agent.json"
with open(path) as handle:
    config = json.load(handle)
config.update(json.loads(%r))
with open(path, "w") as handle:
    json.dump(config, handle)
EOF"""


def reconfigure(host, **changes):
    host.run_expect([0], EDIT_CONFIG % json.dumps(changes))
    host.run_expect([0], "systemctl reload %s" % UNIT)


def spooled(host):
    return int(host.check_output("ls /var/lib/fleetops/agent/spool/queue 2>/dev/null | grep -c json || true") or 0)


def test_receiver_outage_spools_then_delivers_once_then_resolves(host):
    receiver = IMReceiver("slack", host="0.0.0.0").start()
    url = receiver.url_for(HOST_ADDRESS_FROM_LAB)
    receiver.go_down()
    rule = {"name": "memory_used", "figure": "memory", "above": 0, "for": 0, "severity": "critical"}
    try:
        reconfigure(host, im={"platform": "slack", "url": url, "timeout": 2, "retries": 0}, rules=[rule])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and spooled(host) < 1:
            time.sleep(0.5)
        assert spooled(host) == 1
        receiver.come_back()
        assert len(receiver.wait_for(1, timeout=30)) == 1
        assert "DOWN" in receiver.messages[0]["text"] and "memory_used" in receiver.messages[0]["text"]
        reconfigure(host, rules=[dict(rule, above=100)])
        assert len(receiver.wait_for(2, timeout=30)) == 2
        assert "UP" in receiver.messages[1]["text"]
        time.sleep(7)   # past a flush period: nothing twice
        assert len(receiver.messages) == 2 and spooled(host) == 0
    finally:
        receiver.stop()


class socket_port(object):
    def __enter__(self):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc_info):
        return False


def test_zz_absent_leaves_nothing(host):
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("run by molecule verify (MOLECULE_INVENTORY_FILE names the inventory)")
    # Only this host: the other hosts' checks run after this one.
    proc = subprocess.run(["ansible-playbook", "-i", inventory, "--limit", host.backend.get_hostname(),
                           os.path.join(SCENARIO_DIR, "absent.yml")],
                          capture_output=True, timeout=300, cwd=SCENARIO_DIR, check=False)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:]
    for path in ("/etc/systemd/system/fleetops-agent.service", "/usr/local/lib/fleetops_agent.py",
                 "/etc/fleetops-agent", "/var/lib/fleetops/agent"):
        assert not host.file(path).exists, path
    assert host.run("getent passwd fleetops-agent").rc == 2
    assert host.run("getent group fleetops-agent").rc == 2
    assert host.run("systemctl is-active %s" % UNIT).stdout.strip() in ("inactive", "unknown")
    assert host.run("curl -fsS --max-time 2 http://127.0.0.1:%d/metrics" % PORT).rc != 0
