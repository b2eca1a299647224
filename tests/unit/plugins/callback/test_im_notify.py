# -*- coding: utf-8 -*-
"""The im_notify callback: the summary it builds, and real playbook runs posting to a contract receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.fleetops.health.plugins.callback.im_notify import build_summary, new_observation, observe, verdict_of
from ansible_collections.fleetops.health.tests.unit.conftest import COLLECTION_ROOT
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver
from ansible_collections.fleetops.health.tests.unit.playbook_runner import collections_path


def stats(ok=0, changed=0, failures=0, unreachable=0):
    return {"ok": ok, "changed": changed, "failures": failures, "unreachable": unreachable, "skipped": 0}


PROBE_DOWN = {"fleet_probes": {"results": [{"name": "api", "ok": False, "state": "down", "error_kind": "refused"}]}}
PROBE_UP = {"fleet_probes": {"results": [{"name": "api", "ok": True, "state": "up"}]}}


@pytest.mark.parametrize("facts_seen,expected", [
    ([{"fleet_resources": {"verdict": "crit", "reasons": ["disk / 99% >= crit 95%"]}}], "crit"),
    ([{"fleet_resources": {"verdict": "warn", "reasons": ["cpu 90% >= warn 85%"]}}], "warn"),
    ([{"fleet_resources": {"verdict": "ok", "reasons": []}}], "ok"),
    # host_resources says ok, but a probe target is down: crit, as in the sweep's report
    ([{"fleet_resources": {"verdict": "ok", "reasons": []}}, PROBE_DOWN], "crit"),
    ([PROBE_DOWN], "crit"),
    # a later probe of the same target (remediate's verification) replaces the earlier one
    ([PROBE_DOWN, PROBE_UP], "ok"),
    ([{"fleet_logs": {"rules": {"oom": {"count": 1, "severity": "critical"}}}}], "crit"),
    ([{"fleet_logs": {"rules": {"slow": {"count": 2, "severity": "warning"}}}}, {"fleet_logs": {"rules": {}}}], "warn"),
    ([{"cpu": 1}], None),
    ([], None),
])
def test_verdict_of_merges_everything_seen_of_a_host(facts_seen, expected):
    observation = new_observation()
    for facts in facts_seen:
        observe(observation, facts)
    assert verdict_of(observation) == expected


def test_a_check_that_could_not_run_is_crit():
    observation = new_observation()
    observation["task_errors"].append("probe failed")
    assert verdict_of(observation) == "crit"


def test_summary_counts_hosts_failures_and_verdicts():
    severity, lines, is_failure = build_summary(
        "sweep.yml", {"web1": stats(ok=3), "web2": stats(ok=2, changed=1), "db1": stats(ok=1, failures=1),
                      "cache1": stats(unreachable=1)},
        {"web1": "ok", "web2": "warn", "db1": "crit"}, {"db1": "task 'restart' failed: timeout"}, 12.4)
    assert (severity, is_failure) == ("critical", True)
    assert lines[:2] == ["sweep.yml: 4 host(s) in 12s", "totals: ok=6 changed=1 failed=1 unreachable=1"]
    assert "failed: db1" in lines and "unreachable: cache1" in lines
    assert "verdicts: crit=1 warn=1 ok=1" in lines and "crit: db1" in lines and "warn: web2" in lines
    assert "db1: task 'restart' failed: timeout" in lines
    assert "  web2 ok=2 changed=1 failed=0 unreachable=0 verdict=warn" in lines


@pytest.mark.parametrize("verdicts,expected", [({}, ("info", False)), ({"a": "warn"}, ("warning", False)),
                                               ({"a": "crit"}, ("critical", True))])
def test_severity_follows_the_verdicts_when_nothing_failed(verdicts, expected):
    severity, _lines, is_failure = build_summary("p.yml", {"a": stats(ok=1)}, verdicts, {}, 1)
    assert (severity, is_failure) == expected


def test_many_hosts_are_listed_up_to_a_limit():
    _severity, lines, _failure = build_summary("p.yml", {"h%03d" % i: stats(ok=1) for i in range(100)}, {}, {}, 1)
    assert lines[-1] == "  ... and 60 more host(s)"


PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: The sweep's facts
      ansible.builtin.set_fact:
        fleet_resources:
          verdict: "{{ 'ok' if all_ok | bool else {'web1': 'ok', 'web2': 'warn', 'db1': 'crit'}[inventory_hostname] }}"
          reasons: "{{ [] if all_ok | bool or inventory_hostname == 'web1' else ['memory 99% >= ' ~ inventory_hostname] }}"
    - name: Something breaks on db1
      ansible.builtin.fail:
        msg: disk /var is full
      when: inventory_hostname == 'db1' and break_db1 | bool
"""


def run_playbook(tmp_path, env_options, extra_vars=None, break_db1=True, all_ok=False, verbosity=()):
    (tmp_path / "play.yml").write_text(textwrap.dedent(PLAYBOOK))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("web1\nweb2\ndb1\n\n[all:vars]\nansible_connection=local\nansible_python_interpreter=%s\n"
                         % sys.executable)
    extra_vars = dict(extra_vars or {}, break_db1=break_db1, all_ok=all_ok)
    env = dict(os.environ,
               ANSIBLE_CONFIG=os.path.join(COLLECTION_ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([os.path.join(COLLECTION_ROOT, ".cache", "dev-collections"),
                                                         os.path.join(COLLECTION_ROOT, ".cache", "collections")]),
               ANSIBLE_CALLBACKS_ENABLED="fleetops.health.im_notify", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_NOCOLOR="1")
    env.update(env_options)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
               "-e", json.dumps(extra_vars), str(tmp_path / "play.yml")] + list(verbosity)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr


def test_failed_run_sends_a_signed_summary_and_keeps_the_secret_out(tmp_path):
    secret = "SECcallback-0123456789"
    with IMReceiver("dingtalk", secret=secret) as receiver:
        rc, output = run_playbook(tmp_path, {"FLEETOPS_IM_PLATFORM": "dingtalk", "FLEETOPS_IM_URL": receiver.url,
                                             "FLEETOPS_IM_SECRET": secret, "FLEETOPS_IM_MENTION_USER_IDS": "oncall1"},
                                  verbosity=["-vvv"])
        messages = receiver.wait_for(1)
    assert rc == 2  # db1 failed; the callback does not change the run's result
    assert len(messages) == 1, output[-2000:]
    text = messages[0]["text"]["content"]
    assert text.startswith("[CRITICAL] Ansible run play.yml")
    assert "totals: ok=" in text and "failed: db1" in text and "verdicts: crit=1 warn=1 ok=1" in text
    assert "db1: task 'Something breaks on db1' failed: disk /var is full" in text
    assert messages[0]["at"]["atUserIds"] == ["oncall1"] and "@oncall1" in text
    assert "run summary sent to dingtalk http://127.0.0.1" in output
    assert secret not in output and receiver.token not in output


def test_send_on_failure_is_quiet_for_a_healthy_run_and_speaks_for_a_crit_verdict(tmp_path):
    options = {"FLEETOPS_IM_PLATFORM": "slack", "FLEETOPS_IM_SEND_ON": "failure"}
    with IMReceiver("slack") as receiver:
        (tmp_path / "healthy").mkdir()
        rc, _output = run_playbook(tmp_path / "healthy", dict(options, FLEETOPS_IM_URL=receiver.url),
                                   break_db1=False, all_ok=True)
        assert rc == 0 and receiver.requests == []
        (tmp_path / "crit").mkdir()
        rc, _output = run_playbook(tmp_path / "crit", dict(options, FLEETOPS_IM_URL=receiver.url), break_db1=False)
        messages = receiver.wait_for(1)
    assert rc == 0 and len(messages) == 1
    assert messages[0]["text"].startswith(":red_circle: [CRITICAL]") and "crit: db1" in messages[0]["text"]


def test_configured_through_vars_and_sent_always(tmp_path):
    with IMReceiver("feishu") as receiver:
        rc, output = run_playbook(tmp_path, {}, break_db1=False, extra_vars={
            "fleetops_im_platform": "feishu", "fleetops_im_url": receiver.url, "fleetops_im_send_on": "always",
            "fleetops_im_title": "nightly {playbook}"})
        messages = receiver.wait_for(1)
    assert rc == 0 and len(messages) == 1, output[-2000:]
    assert messages[0]["content"]["text"].startswith("[CRITICAL] nightly play.yml")


def test_undeliverable_summary_is_a_warning_not_a_failed_run(tmp_path):
    receiver = IMReceiver("teams").start()
    receiver.stop()
    rc, output = run_playbook(tmp_path, {"FLEETOPS_IM_PLATFORM": "teams", "FLEETOPS_IM_URL": receiver.url,
                                         "FLEETOPS_IM_RETRIES": "0"}, break_db1=False)
    assert rc == 0
    assert "run summary not sent" in output and "Connection refused" in output
    assert receiver.token not in output


def test_callback_spool_keeps_an_undelivered_summary_for_the_next_run(tmp_path):
    receiver = IMReceiver("wecom").start()
    receiver.go_down()
    options = {"FLEETOPS_IM_PLATFORM": "wecom", "FLEETOPS_IM_URL": receiver.url, "FLEETOPS_IM_RETRIES": "0",
               "FLEETOPS_IM_SPOOL_DIR": str(tmp_path / "spool")}
    try:
        (tmp_path / "first").mkdir()
        rc, output = run_playbook(tmp_path / "first", options, break_db1=False)
        assert rc == 0 and "message spooled in" in output
        receiver.come_back()
        (tmp_path / "second").mkdir()
        rc, output = run_playbook(tmp_path / "second", options, break_db1=False)
        messages = receiver.wait_for(2)
    finally:
        receiver.stop()
    assert rc == 0 and len(messages) == 2, output[-2000:]
    assert os.listdir(str(tmp_path / "spool" / "queue")) == []
    spooled_then_sent = [m["text"]["content"] for m in messages]
    assert all(text.startswith("[CRITICAL] Ansible run play.yml") for text in spooled_then_sent)


PROBE_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: host_resources finds nothing wrong
      ansible.builtin.set_fact:
        fleet_resources: {verdict: ok, reasons: []}
    - name: The real probe module finds the endpoint down
      fleetops.health.probe:
        targets: [{name: api, tcp: "127.0.0.1:%(port)d"}]
        state_file: "%(tmp)s/probe.json"
        unhealthy_threshold: 1
"""


def test_send_on_failure_speaks_for_a_probe_down_host_like_the_report(tmp_path):
    """The report calls a host with a down probe crit (test_fleet); the callback must send for it too."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (tmp_path / "play.yml").write_text(PROBE_PLAYBOOK % {"port": port, "tmp": tmp_path})
    (tmp_path / "hosts.ini").write_text("web1 ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    with IMReceiver("slack") as receiver:
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(COLLECTION_ROOT, "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(collections_path()),
                   ANSIBLE_CALLBACKS_ENABLED="fleetops.health.im_notify", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
                   ANSIBLE_NOCOLOR="1", FLEETOPS_IM_PLATFORM="slack", FLEETOPS_IM_SEND_ON="failure",
                   FLEETOPS_IM_URL=receiver.url)
        done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                               str(tmp_path / "hosts.ini"), str(tmp_path / "play.yml")],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        messages = receiver.wait_for(1)
    assert done.returncode == 0, done.stdout[-2000:]
    assert len(messages) == 1, done.stdout[-2000:]
    assert messages[0]["text"].startswith(":red_circle: [CRITICAL]") and "crit: web1" in messages[0]["text"]
