# -*- coding: utf-8 -*-
"""The probes runner as systemd runs it: its host script as a real process, with ansible-core unimportable,
against a loopback HTTP endpoint and a loopback IM receiver. Thresholds, transitions, one notice per
transition, the textfile's values, the spool, the restart action within the budget, log rules."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from ansible_collections.fleetops.health.plugins.module_utils.probe_runner import CheckError, normalize_check
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver
from ansible_collections.fleetops.health.tests.unit.playbook_runner import COLLECTION_ROOT
from ansible_collections.fleetops.health.tests.unit.without_ansible import BLOCK_ANSIBLE

SCRIPT = os.path.join(COLLECTION_ROOT, "roles", "probes", "files", "fleetops-probe-check")
DEFAULTS = {"interval": 30, "timeout": 2, "initial_delay": 0, "healthy_threshold": 2, "unhealthy_threshold": 2,
            "restart": {"max_restarts": 2, "window": "1h", "backoff": 0, "verify_timeout": 1}}
# Runs the host script with ansible-core unimportable, as on a host that has only the runtime role's packages.
WITHOUT_ANSIBLE = BLOCK_ANSIBLE + textwrap.dedent("""
    import runpy
    script = sys.argv.pop(1)
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
""")


class Endpoint(object):
    """An HTTP endpoint that answers 200 while ``flag`` exists and 503 otherwise (a fake systemctl creates it)."""

    def __init__(self, flag):
        self.flag = flag
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                healthy = os.path.exists(endpoint.flag)
                self.send_response(200 if healthy else 503)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if healthy else b"no")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/health" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def healthy(self, value):
        if value:
            open(self.flag, "w").close()
        elif os.path.exists(self.flag):
            os.unlink(self.flag)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(tmp_path):
    served = Endpoint(str(tmp_path / "healthy.flag"))
    served.healthy(True)
    yield served
    served.close()


@pytest.fixture
def receiver():
    with IMReceiver("webhook") as rx:
        yield rx


def make_check(tmp_path, raw, kind="probe", receiver=None, systemctl=None):
    config = normalize_check(raw, kind, DEFAULTS)
    state_dir = tmp_path / "state" / raw["name"]
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir(exist_ok=True)
    config["paths"] = {"state_dir": str(state_dir), "textfile_dir": str(textfile_dir),
                       "budget_dir": str(tmp_path / "budgets"), "systemctl": systemctl or "/bin/false"}
    if receiver is not None:
        notify = tmp_path / "notify.json"
        notify.write_text(json.dumps({"platform": "webhook", "url": receiver.url, "timeout": 2, "retries": 0}))
        config["paths"]["notify"] = str(notify)
    path = tmp_path / ("%s.json" % raw["name"])
    path.write_text(json.dumps(config))
    return str(path)


def run_check(config_path):
    import ansible_collections
    env = dict(os.environ, FLEETOPS_HEALTH_PYTHONPATH=os.path.dirname(list(ansible_collections.__path__)[0]))
    done = subprocess.run([sys.executable, "-c", WITHOUT_ANSIBLE, SCRIPT, config_path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def metrics(tmp_path, name):
    values = {}
    for line in (tmp_path / "textfile" / ("fleetops_probes_%s.prom" % name)).read_text().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def series(metric, name, kind="http", service=""):
    return '%s{check="%s",kind="%s",service="%s"}' % (metric, name, kind, service)


def test_thresholds_transitions_one_notice_each_and_textfile_values(tmp_path, endpoint, receiver):
    config = make_check(tmp_path, {"name": "web", "url": endpoint.url, "service": "nginx.service"}, receiver=receiver)
    observed = []
    for healthy in (True, True, False, False, False, True, True, True):
        endpoint.healthy(healthy)
        report = run_check(config)
        values = metrics(tmp_path, "web")
        observed.append((report["ok"], report["state"], report["transition"],
                         values[series("fleetops_probe_up", "web", service="nginx.service")],
                         values[series("fleetops_probe_healthy", "web", service="nginx.service")],
                         values[series("fleetops_probe_consecutive_failures", "web", service="nginx.service")]))
    assert observed == [
        (True, "up", None, 1, 1, 0), (True, "up", None, 1, 1, 0),
        (False, "up", None, 0, 1, 1), (False, "down", "failed", 0, 0, 2), (False, "down", None, 0, 0, 3),
        (True, "down", None, 1, 0, 0), (True, "up", "recovered", 1, 1, 0), (True, "up", None, 1, 1, 0)]
    assert [(m["severity"], m["title"].split(": ", 1)[1]) for m in receiver.messages] == [
        ("critical", "check web failed"), ("resolved", "check web recovered")]
    assert "status 503" in receiver.messages[0]["message"] and "nginx.service" in receiver.messages[0]["message"]
    values = metrics(tmp_path, "web")
    assert 0 < values[series("fleetops_probe_latency_seconds", "web", service="nginx.service")] < 2
    assert values[series("fleetops_probe_last_run_timestamp_seconds", "web", service="nginx.service")] > 1.7e9
    textfile = tmp_path / "textfile" / "fleetops_probes_web.prom"
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert sorted(os.listdir(str(tmp_path / "textfile"))) == ["fleetops_probes_web.prom"]


def test_a_notice_the_receiver_missed_is_spooled_and_sent_by_the_next_run(tmp_path, endpoint, receiver):
    config = make_check(tmp_path, {"name": "api", "url": endpoint.url, "unhealthy_threshold": 1}, receiver=receiver)
    endpoint.healthy(False)
    receiver.go_down()
    report = run_check(config)
    assert report["transition"] == "failed" and report["notice"]["spooled"] is True
    receiver.come_back()
    report = run_check(config)
    assert report["transition"] is None and report["flushed"]["flushed"] == 1
    assert [m["severity"] for m in receiver.messages] == ["critical"]
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert receiver.token.encode() not in spooled


FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> %(log)s
case "$1" in
  restart) %(on_restart)s ;;
esac
exit 0
"""


def fake_systemctl(tmp_path, on_restart):
    path = tmp_path / "systemctl"
    path.write_text(FAKE_SYSTEMCTL % {"log": tmp_path / "systemctl.log", "on_restart": on_restart})
    path.chmod(0o755)
    return str(path)


def calls(tmp_path):
    log = tmp_path / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def test_restart_action_restarts_verifies_and_records_in_the_budget(tmp_path, endpoint, receiver):
    systemctl = fake_systemctl(tmp_path, "touch %s" % endpoint.flag)
    config = make_check(tmp_path, {"name": "web", "url": endpoint.url, "service": "nginx.service", "restart": True,
                                   "unhealthy_threshold": 1}, receiver=receiver, systemctl=systemctl)
    endpoint.healthy(False)
    report = run_check(config)
    assert report["restart"] == {"restarted": True, "verified": True, "budget_left": 1, "escalated": False}
    assert calls(tmp_path)[:2] == ["reset-failed nginx.service", "restart nginx.service"]
    budgets = json.loads((tmp_path / "budgets" / "budgets.json").read_text())
    entry = budgets["services"]["nginx.service"]
    assert len(entry["attempts"]) == 1 and entry["last_result"]["result"] == "verified"
    assert stat.S_IMODE((tmp_path / "budgets").stat().st_mode) == 0o700


def test_a_crash_loop_gets_max_restarts_then_one_escalation(tmp_path, endpoint, receiver):
    systemctl = fake_systemctl(tmp_path, "true")  # the restart "works" but the service keeps failing
    config = make_check(tmp_path, {"name": "web", "url": endpoint.url, "service": "nginx.service", "restart": True,
                                   "unhealthy_threshold": 1}, receiver=receiver, systemctl=systemctl)
    endpoint.healthy(False)
    restarts = [run_check(config)["restart"] for _run in range(4)]
    assert [r["restarted"] for r in restarts] == [True, True, False, False]
    assert [r["escalated"] for r in restarts] == [False, True, False, False]
    assert [r.get("blocked_by") for r in restarts[2:]] == ["budget", "budget"]
    assert [c for c in calls(tmp_path) if c.startswith("restart")] == ["restart nginx.service"] * 2
    titles = [m["title"].split(": ", 1)[1] for m in receiver.messages]
    assert titles == ["check web failed", "nginx.service needs a human"]


def test_log_rules_count_hits_in_the_textfile_and_notify_once(tmp_path, receiver):
    log = tmp_path / "app.log"
    log.write_text("old ERROR before the check existed\n")
    config = make_check(tmp_path, {"name": "app-log", "paths": [str(log)], "unhealthy_threshold": 1,
                                   "healthy_threshold": 1,
                                   "rules": [{"name": "errors", "keywords": ["ERROR"], "severity": "critical"},
                                             {"name": "slow", "pattern": "took [0-9]{4,}ms", "severity": "warning"}]},
                        kind="log", receiver=receiver)
    assert run_check(config)["hits"] == {"errors": 0, "slow": 0}  # starts at the end
    with open(str(log), "a") as handle:
        handle.write("ERROR db down\nrequest took 12000ms\nERROR db still down\n")
    report = run_check(config)
    assert (report["hits"], report["transition"]) == ({"errors": 2, "slow": 1}, "failed")
    with open(str(log), "a") as handle:
        handle.write("ERROR again\n")
    assert run_check(config)["transition"] is None
    report = run_check(config)
    assert (report["hits"], report["transition"]) == ({"errors": 3, "slow": 1}, "recovered")
    path_label = str(log)
    assert metrics(tmp_path, "app-log") == {
        'fleetops_log_rule_hits_total{rule="errors",path="%s"}' % path_label: 3,
        'fleetops_log_rule_hits_total{rule="slow",path="%s"}' % path_label: 1}
    assert [m["severity"] for m in receiver.messages] == ["critical", "resolved"]
    assert "ERROR db down" in receiver.messages[0]["message"]


@pytest.mark.parametrize("raw, kind, words", [
    ({"name": "bad name", "url": "http://x/"}, "probe", "name 'bad name' must be"),
    ({"name": "w", "url": "http://x/", "timeout": 40}, "probe", "probes_checks[w].timeout: 40.0 must be shorter than interval"),
    ({"name": "w", "url": "http://x/", "restart": True}, "probe", "probes_checks[w].restart: needs service"),
    ({"name": "w", "url": "http://x/", "service": "nginx"}, "probe", "is not a systemd unit name"),
    ({"name": "w", "tcp": "db:5432", "method": "POST"}, "probe", "applies to url targets only"),
    ({"name": "w", "url": "http://x/", "service": "a.service", "restart": {"max_restarts": -1}}, "probe", "negative"),
    ({"name": "l", "paths": ["rel.log"], "rules": []}, "log", "probes_log_rules[l].paths"),
    ({"name": "l", "paths": ["/x.log"], "rules": [{"name": "r"}]}, "log", "give either pattern or keywords"),
])
def test_bad_checks_fail_naming_the_check_and_field(raw, kind, words):
    with pytest.raises(CheckError) as caught:
        normalize_check(raw, kind, DEFAULTS)
    assert words in str(caught.value)


def test_a_tcp_check_keeps_only_its_own_options():
    config = normalize_check({"name": "db", "tcp": "127.0.0.1:5432", "retries": 1}, "probe", DEFAULTS)
    assert config["target"] == {"name": "db", "tcp": "127.0.0.1:5432", "retries": 1, "timeout": 2.0}
