# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""extensions/eda/rulebooks/remediate.yml run by the real ansible-rulebook (Java drools engine) with the real
fleetops.health.alertmanager source; alerts go in over HTTP, and a recording playbook stands in for
fleetops.health.remediate and writes down every run: its host, its limit and the trigger it was given."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
RULEBOOK = os.path.join(ROOT, "extensions", "eda", "rulebooks", "remediate.yml")
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
VENV_BIN = os.path.dirname(os.path.abspath(os.sys.executable))
# The venv's own tool (requirements/test.txt), not a system command.
RULEBOOK_BIN = os.path.join(VENV_BIN, "ansible-rulebook")
TOKEN = "rulebook-test-token-123"

pytestmark = pytest.mark.skipif(not os.access(RULEBOOK_BIN, os.X_OK) or shutil.which("java") is None,
                                reason="needs ansible-rulebook (requirements/test.txt) and Java 17 (make system-deps)")

RECORDING_PLAYBOOK = """
- name: Stand in for fleetops.health.remediate and write down the run
  hosts: all
  gather_facts: false
  tasks:
    - name: Note the start
      ansible.builtin.set_fact:
        started: "{{ now().timestamp() }}"
    - name: Take a while, as a real repair does
      ansible.builtin.pause:
        seconds: 4
    - name: Record this run
      ansible.builtin.copy:
        content: "{{ {'host': inventory_hostname, 'limit': ansible_limit | default(''),
                      'trigger': remediate_trigger, 'started': started | float,
                      'ended': now().timestamp()} | to_json }}"
        dest: "%(record_dir)s/{{ inventory_hostname }}-{{ 1000000 | random }}.json"
        mode: "0600"
      delegate_to: localhost
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alert(alertname, instance, service, fingerprint, status="firing", starts_at="2026-11-25T10:00:00.000Z"):
    labels = {"alertname": alertname, "service": service}
    if instance:
        labels["instance"] = instance
    return {"status": status, "labels": labels, "annotations": {}, "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint}


def payload(*alerts):
    return {"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": "fleet-remediation", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def records(record_dir):
    found = []
    for name in sorted(os.listdir(record_dir)):
        with open(os.path.join(record_dir, name)) as handle:
            found.append(json.load(handle))
    return found


def test_rulebook_routes_firing_alerts_to_one_throttled_run_per_host(tmp_path):
    record_dir = tmp_path / "runs"
    record_dir.mkdir()
    playbook = tmp_path / "record.yml"
    playbook.write_text(RECORDING_PLAYBOOK % {"record_dir": record_dir})
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    web-1: {ansible_connection: local}\n"
                         "    web-2: {ansible_connection: local}\n    web-3: {ansible_connection: local}\n")
    port = free_port()
    variables = tmp_path / "vars.yml"
    variables.write_text(json.dumps({
        "fleetops_eda_port": port,
        "fleetops_remediate_playbook": str(playbook),
        "fleetops_eda_host_map": {"10.0.0.2": "web-2"},
    }))
    env = dict(os.environ, FLEETOPS_EDA_TOKEN=TOKEN, ANSIBLE_COLLECTIONS_PATH=DEV_COLLECTIONS,
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""), PYTHONWARNINGS="ignore")
    env.pop("ANSIBLE_CONFIG", None)
    log_path = tmp_path / "rulebook.log"
    url = "http://127.0.0.1:%d/alerts" % port
    auth = {"Authorization": "Bearer " + TOKEN}
    with open(log_path, "w") as log:
        rulebook = subprocess.Popen([RULEBOOK_BIN, "-r", RULEBOOK, "-i", str(inventory), "--vars", str(variables)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while True:
            assert rulebook.poll() is None, log_path.read_text()
            try:
                requests.post(url, data=b"{", headers=auth, timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "the source never listened:\n" + log_path.read_text()
                time.sleep(0.5)

        def post(body, headers=None):
            return requests.post(url, json=body, headers=auth if headers is None else headers, timeout=10).status_code

        probe_down_web1 = payload(alert("FleetopsProbeDown", "web-1:9100", "nginx.service", "f1"))
        assert post(probe_down_web1, headers={}) == 401
        assert post(probe_down_web1) == 200
        assert post(probe_down_web1) == 200  # replayed: the source drops it
        # Another firing on web-1 within once_within: the per-host throttle holds it back.
        assert post(payload(alert("FleetopsServiceFailed", "web-1:9100", "api.service", "f2"))) == 200
        # web-2, named by an address the host map knows.
        assert post(payload(alert("FleetopsServiceFailed", "10.0.0.2:9100", "api.service", "f3"))) == 200
        # Nothing for: a resolve, an alert remediate does not handle, and an alert without a host.
        assert post(payload(alert("FleetopsProbeDown", "web-1:9100", "nginx.service", "f1", status="resolved"))) == 200
        assert post(payload(alert("FleetopsDiskAboveBaseline", "web-3:9100", "", "f4"))) == 200
        assert post(payload(alert("FleetopsProbeDown", "", "nginx.service", "f5"))) == 200

        deadline = time.monotonic() + 120
        while len(os.listdir(record_dir)) < 2 and time.monotonic() < deadline:
            assert rulebook.poll() is None, log_path.read_text()
            time.sleep(0.5)
        time.sleep(10)  # long enough for a wrongly started third run to finish writing
        runs = sorted(records(record_dir), key=lambda run: run["host"])
    finally:
        rulebook.terminate()
        try:
            rulebook.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rulebook.kill()
            rulebook.wait()
    output = log_path.read_text()
    assert [run["host"] for run in runs] == ["web-1", "web-2"], output
    assert [run["limit"] for run in runs] == ["web-1", "web-2"]
    assert runs[0]["trigger"] == {"alertname": "FleetopsProbeDown", "service": "nginx.service",
                                  "fingerprint": "f1", "starts_at": "2026-11-25T10:00:00.000Z"}
    assert runs[1]["trigger"]["service"] == "api.service"
    # The two hosts' runs overlap (execution_strategy: parallel): a repair never waits for another host's.
    assert runs[1]["started"] < runs[0]["ended"] and runs[0]["started"] < runs[1]["ended"], runs
    assert "resolved: FleetopsProbeDown on web-1, nothing to send" in output
    assert TOKEN not in output
