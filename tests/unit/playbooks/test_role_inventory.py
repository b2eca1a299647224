"""The sweep, scale and chaos playbooks are thin wrappers over roles, so an inventory group variable reaches
every knob (play ``vars:`` would beat it), and the sweep resends what im_notify spooled on a host.

Each test runs the collection playbook for real with ansible-playbook on local-connection hosts.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver
from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, ansible_env, run_module


def play(tmp_path, playbook, inventory, *extra, check=False):
    inventory_file = tmp_path / "inventory.yml"
    inventory_file.write_text(inventory % {"python": sys.executable})
    command = [ANSIBLE_PLAYBOOK, "-i", str(inventory_file), playbook] + list(extra)
    if check:
        command.append("--check")
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=ansible_env(), timeout=180, cwd=str(tmp_path), check=False)


# ------------------------------------------------------------------------------------------------ sweep

SWEEP_INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
    sweep_window: 0
    sweep_subset: [memory]
  children:
    web:
      vars:
        # Group variables that play vars used to shadow: the report's mode and the gate.
        sweep_report_mode: "0640"
        sweep_fail_on: crit
        sweep_thresholds: {memory: {warn: 0.001, crit: 0.002}}
      hosts:
        web-01: {}
"""


def test_sweep_takes_its_report_mode_and_gate_from_a_group_variable(tmp_path):
    proc = play(tmp_path, "fleetops.health.sweep", SWEEP_INVENTORY, "-e", "sweep_report_dir=%s" % (tmp_path / "report"))
    # every host uses some memory: the group's thresholds make web-01 crit, and the group's gate fails the play
    assert proc.returncode != 0, proc.stdout
    assert "sweep_fail_on=crit: 1 host(s) at crit or worse: web-01" in proc.stdout
    report = tmp_path / "report" / "fleet-report.json"
    assert stat.S_IMODE(os.stat(str(report)).st_mode) == 0o640
    assert json.loads(report.read_text())["hosts"][0]["verdict"] == "crit"


SPOOL_INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
    sweep_window: 0
    sweep_subset: [memory]
    sweep_im_platform: webhook
    sweep_im_url: "%(url)s"
    sweep_im_spool_dir: "%(spool)s"
    sweep_im_retries: 0
    sweep_im_timeout: 2
  hosts:
    node-01: {}
"""


def test_the_sweep_resends_a_spooled_message_exactly_once_when_the_receiver_is_back(tmp_path):
    spool = tmp_path / "spool"
    receiver = IMReceiver("webhook").start()
    receiver.go_down()
    spooled = run_module("im_notify", {"platform": "webhook", "url": receiver.url, "msg": "nginx down on node-01",
                                       "retries": 0, "timeout": 2, "spool_dir": str(spool)})
    assert (spooled.result.get("delivered"), spooled.result.get("spooled")) == (False, True), spooled.output
    inventory = SPOOL_INVENTORY.replace("%(url)s", receiver.url).replace("%(spool)s", str(spool))
    sweep_args = ("fleetops.health.sweep", inventory, "-e", "sweep_report_dir=%s" % (tmp_path / "report"))
    try:
        down = play(tmp_path, *sweep_args)
        assert down.returncode == 0, down.stdout
        assert "node-01: 0 spooled message(s) resent, 1 still spooled" in down.stdout
        assert receiver.messages == []

        receiver.come_back()
        back = play(tmp_path, *sweep_args)
        assert back.returncode == 0, back.stdout
        assert "node-01: 1 spooled message(s) resent, 0 still spooled" in back.stdout
        again = play(tmp_path, *sweep_args)
        assert again.returncode == 0, again.stdout
    finally:
        receiver.stop()
    assert len(receiver.messages) == 1
    assert "nginx down on node-01" in json.dumps(receiver.messages[0])
    assert receiver.token not in back.stdout + again.stdout


# ------------------------------------------------------------------------------------------------ scale

SCALE_INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
  children:
    scale:
      vars:
        scale_provider: kubernetes
        scale_kubernetes_resource: {kind: Deployment, name: api, namespace: shop}
        scale_kubernetes_replicas: 2
        scale_score_overrides: {api-01: 90}
%(policy)s
      hosts:
        api-01: {}
"""


def test_scale_decides_with_the_policy_of_the_group_variables(tmp_path):
    # Check mode: the decision reads the (absent) streaks and writes nothing; the kubernetes action is skipped.
    policy = "        scale_policy: {scale_out_above: 50, consecutive: 1, max_count: 5, cooldown_out: 0}"
    with_policy = play(tmp_path, "fleetops.health.scale", SCALE_INVENTORY.replace("%(policy)s", policy), check=True)
    assert with_policy.returncode == 0, with_policy.stdout
    assert "scale_out 2 -> 3" in with_policy.stdout

    # Without it, scale_decision's default policy asks for three high runs in a row first.
    without = play(tmp_path, "fleetops.health.scale", SCALE_INVENTORY.replace("%(policy)s", ""), check=True)
    assert without.returncode == 0, without.stdout
    assert "hold 2 -> 2" in without.stdout


# ------------------------------------------------------------------------------------------------ chaos

CHAOS_INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
  children:
    chaos:
      vars:
        # A play var before the role: the drill probed http://127.0.0.1/ whatever the group said.
        chaos_probe_url: "%(url)s"
        chaos_faults: [kill9]
      hosts:
        staging-01: {}
"""


class _Answers200(BaseHTTPRequestHandler):
    paths = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_chaos_checks_the_service_at_the_probe_url_of_the_group_variables(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Answers200)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    url = "http://127.0.0.1:%d/drill-health" % server.server_address[1]
    try:
        # Check mode injects nothing; the pre-drill check still asks the service.
        proc = play(tmp_path, "fleetops.health.chaos", CHAOS_INVENTORY.replace("%(url)s", url), check=True)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stdout
    assert _Answers200.paths == ["/drill-health"]
