"""The probe module run by ansible-playbook on localhost against loopback endpoints, state file included."""
import http.server
import json
import socket
import threading
import time

import pytest

from ansible_collections.fleetops.health.plugins.modules import probe
from ansible_collections.fleetops.health.tests.unit.playbook_runner import run_module, run_playbook


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    probe_targets:
      - {name: web, url: "http://127.0.0.1:%(web_port)d/"}
      - {name: gone, tcp: "127.0.0.1:%(closed_port)d"}
    state_file: "%(state_file)s"
  tasks:
    - name: Three runs with a state file
      fleetops.health.probe:
        targets: "{{ probe_targets }}"
        state_file: "{{ state_file }}"
        unhealthy_threshold: 2
        http_engine: "{{ item.engine }}"
        event_loop: "{{ item.loop }}"
      loop:
        - {engine: aiohttp, loop: uvloop}
        - {engine: stdlib, loop: asyncio}
        - {engine: aiohttp, loop: asyncio}
      register: runs

    - name: A check-mode run reports a transition without recording it
      fleetops.health.probe:
        targets: [{name: web, url: "http://127.0.0.1:%(closed_port)d/"}]
        state_file: "{{ state_file }}"
        unhealthy_threshold: 1
      check_mode: true
      register: checked

    - name: A corrupt state file is moved aside with a warning and the run goes on
      fleetops.health.probe:
        targets: "{{ probe_targets }}"
        state_file: "%(corrupt_state_file)s"
      register: corrupt

    - name: An unknown option in a target
      fleetops.health.probe:
        targets: [{name: web, url: "http://127.0.0.1:1/", timout: 3}]
      register: bad_target
      ignore_errors: true

    - name: fail_on_down fails but still returns the facts
      fleetops.health.probe:
        targets: "{{ probe_targets }}"
        fail_on_down: true
        defaults: {headers: {Authorization: "Bearer hush-hush"}}
      register: failing
      ignore_errors: true

    - name: Save what was seen
      ansible.builtin.copy:
        content: "{{ {'runs': runs.results, 'checked': checked, 'bad_target': bad_target, 'failing': failing, 'corrupt': corrupt} | to_json }}"
        dest: "%(output)s"
        mode: "0600"
"""


class OkHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def playbook_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("probe_play")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OkHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    paths = dict(web_port=server.server_address[1], closed_port=closed_port,
                 state_file=str(workdir / "state" / "probe_state.json"), output=str(workdir / "seen.json"),
                 corrupt_state_file=str(workdir / "corrupt.json"))
    (workdir / "corrupt.json").write_text("{half a state")
    (workdir / "play.yml").write_text(PLAYBOOK % paths)
    completed = run_playbook(workdir / "play.yml", timeout=120)
    server.shutdown()
    assert completed.returncode == 0, completed.stdout
    with open(paths["output"]) as handle:
        seen = json.load(handle)
    with open(paths["state_file"]) as handle:
        seen["state_file"] = json.load(handle)
    seen["stdout"] = completed.stdout
    return seen


def by_name(task_result):
    return dict((r["name"], r) for r in task_result["ansible_facts"]["fleet_probes"]["results"])


def test_thresholds_across_runs(playbook_run):
    runs = [by_name(run) for run in playbook_run["runs"]]
    assert [(run["gone"]["state"], run["gone"]["transition"], run["gone"]["consecutive_fail"]) for run in runs] == [
        ("up", None, 1), ("down", "failed", 2), ("down", None, 3)]
    assert [(run["web"]["ok"], run["web"]["state"], run["web"]["code"]) for run in runs] == [(True, "up", 200)] * 3
    assert [(run["ansible_facts"]["fleet_probes"]["engine"], run["ansible_facts"]["fleet_probes"]["event_loop"])
            for run in playbook_run["runs"]] == [("aiohttp", "uvloop"), ("stdlib", "asyncio"), ("aiohttp", "asyncio")]
    assert not any(run["changed"] for run in playbook_run["runs"])


def test_facts_shape(playbook_run):
    facts = playbook_run["runs"][0]["ansible_facts"]["fleet_probes"]
    assert set(facts) == {"engine", "event_loop", "results", "summary"}
    assert set(facts["results"][0]) == {"name", "kind", "ok", "state", "transition", "consecutive_ok",
                                        "consecutive_fail", "code", "latency_ms", "cert_days_left", "error", "error_kind"}
    summary = facts["summary"]
    assert (summary["total"], summary["up"], summary["down"]) == (2, 2, 0)
    assert summary["duration_ms"] >= summary["p95_latency_ms"]


def test_check_mode_reports_but_does_not_write(playbook_run):
    checked = by_name(playbook_run["checked"])["web"]
    assert (checked["state"], checked["transition"], checked["error_kind"]) == ("down", "failed", "refused")
    recorded = playbook_run["state_file"]["targets"]["web"]
    assert (recorded["state"], recorded["consecutive_ok"]) == ("up", 3)


def test_corrupt_state_file_warns_and_continues(playbook_run):
    corrupt = playbook_run["corrupt"]
    assert not corrupt.get("failed") and by_name(corrupt)["web"]["ok"]
    assert any("was corrupt" in warning and "moved it to" in warning for warning in corrupt["warnings"])
    aside = corrupt["warnings"][0].rsplit("moved it to ", 1)[1].split(" ")[0]
    with open(aside) as handle:
        assert handle.read() == "{half a state"


def test_unknown_option_names_the_target(playbook_run):
    assert playbook_run["bad_target"]["failed"]
    assert playbook_run["bad_target"]["msg"].startswith("probe: target 'web': unknown option timout")


def test_fail_on_down_returns_facts_and_hides_credentials(playbook_run):
    failing = playbook_run["failing"]
    assert failing["failed"] and failing["msg"] == "targets down: gone"
    assert by_name(failing)["gone"]["error_kind"] == "refused"
    assert "hush-hush" not in json.dumps(failing)


def test_documented_return_matches_the_facts(playbook_run):
    """RETURN documents exactly the keys the module returns."""
    import yaml
    documented = yaml.safe_load(probe.RETURN)["ansible_facts"]["contains"]["fleet_probes"]["contains"]
    facts = playbook_run["runs"][0]["ansible_facts"]["fleet_probes"]
    assert set(documented) == set(facts)
    assert set(documented["results"]["contains"]) == set(facts["results"][0])
    assert set(documented["summary"]["contains"]) == set(facts["summary"])


class DelayHandler(http.server.BaseHTTPRequestHandler):
    """GET /<ms> answers after that many milliseconds."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(int(self.path.strip("/")) / 1000.0)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_summary_percentiles_come_from_the_targets_latencies():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DelayHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    delays_ms = [0, 20, 40, 60, 80, 100, 120, 140, 160, 400]
    targets = [{"name": "d%d" % delay, "url": "http://127.0.0.1:%d/%d" % (server.server_address[1], delay)}
               for delay in delays_ms]
    try:
        run = run_module("probe", {"targets": targets, "http_engine": "stdlib"})
    finally:
        server.shutdown()
    assert not run.failed, run.output
    facts = run.result["ansible_facts"]["fleet_probes"]
    latencies = sorted(result["latency_ms"] for result in facts["results"])
    assert all(result["ok"] for result in facts["results"])
    summary = facts["summary"]
    # Nearest rank over 10 values: P50 is the 5th, P95 the 10th.
    assert (summary["p50_latency_ms"], summary["p95_latency_ms"]) == (latencies[4], latencies[9])
    assert 80 <= summary["p50_latency_ms"] < 160 <= 400 <= summary["p95_latency_ms"]
