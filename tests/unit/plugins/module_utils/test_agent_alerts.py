# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local alert rules: the engine on its own, then the agent process against a loopback IM receiver."""

from __future__ import annotations

import os
import signal
import time

from ansible_collections.fleetops.health.plugins.module_utils.agent_alerts import AlertEngine
from ansible_collections.fleetops.health.tests.unit.agent_process import AgentProcess
from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver

RULE = {"name": "cpu_busy", "figure": "cpu", "above": 80.0, "for": 10, "severity": "warning"}


def test_a_rule_fires_after_its_duration_once_and_resolves_once():
    engine = AlertEngine([RULE])
    assert engine.evaluate({"cpu": 90.0}, {}, now=0) == []
    assert engine.evaluate({"cpu": 95.0}, {}, now=5) == []
    [down] = engine.evaluate({"cpu": 91.0}, {}, now=10)
    assert (down.kind, down.value, down.threshold, down.since) == ("down", 91.0, 80.0, 0)
    assert engine.evaluate({"cpu": 99.0}, {}, now=11) == []
    assert engine.firing() == ["cpu_busy"]
    [up] = engine.evaluate({"cpu": 20.0}, {}, now=12)
    assert up.kind == "up" and engine.firing() == []
    assert engine.evaluate({"cpu": 20.0}, {}, now=13) == []


def test_a_dip_restarts_the_duration():
    engine = AlertEngine([RULE])
    engine.evaluate({"cpu": 90.0}, {}, now=0)
    engine.evaluate({"cpu": 10.0}, {}, now=5)
    assert engine.evaluate({"cpu": 90.0}, {}, now=10) == []
    assert len(engine.evaluate({"cpu": 90.0}, {}, now=20)) == 1


def test_a_baseline_rule_waits_for_a_baseline_and_names_it():
    rule = dict(RULE, above="baseline", **{"for": 0})
    engine = AlertEngine([rule])
    assert engine.evaluate({"cpu": 99.0}, {"cpu": {"missing": "not enough history"}}, now=0) == []
    baselines = {"cpu": {"threshold": 57.0, "slot": "Tue 14h", "days": 7}}
    [down] = engine.evaluate({"cpu": 71.0}, baselines, now=1)
    assert down.threshold == 57.0 and down.basis == "baseline Tue 14h, 7-day"
    assert "cpu 71.0% > 57.0% (baseline Tue 14h, 7-day)" in down.notification("web1").message


def test_a_reload_keeps_the_state_of_rules_it_keeps():
    engine = AlertEngine([RULE])
    engine.evaluate({"cpu": 90.0}, {}, now=0)
    engine.evaluate({"cpu": 90.0}, {}, now=10)
    engine.configure([RULE, dict(RULE, name="other")])
    assert engine.firing() == ["cpu_busy"]
    assert [t.kind for t in engine.evaluate({"cpu": 1.0}, {}, now=11)] == ["up"]


def _texts(receiver):
    return [message["text"] for message in receiver.messages]


def test_receiver_outage_spools_then_each_notice_is_delivered_once_in_order(tmp_path):
    """DOWN while the receiver is down: spooled. It comes back: delivered once. The rule clears: UP follows."""
    receiver = IMReceiver("slack").start()
    url = receiver.url
    receiver.go_down()
    rule = {"name": "memory_used", "figure": "memory", "above": 0, "for": 0, "severity": "critical"}
    im = {"platform": "slack", "url": url, "timeout": 2, "retries": 0}
    with AgentProcess(tmp_path, rules=[rule], im=im) as agent:
        assert agent.wait_for(lambda: agent.value("fleetops_alert_firing", rule="memory_used") == 1.0)
        assert agent.wait_for(lambda: (agent.value("fleetops_agent_spool_messages") or 0) >= 1, timeout=15), \
            agent.read_log()
        spool = os.path.join(agent.config["state_dir"], "spool", "queue")
        [entry] = os.listdir(spool)
        with open(os.path.join(spool, entry)) as handle:
            assert url.rsplit("/", 1)[1] not in handle.read()   # the webhook token never reaches the disk
        receiver.come_back()
        assert len(receiver.wait_for(1, timeout=20)) == 1, agent.read_log()
        assert "DOWN" in _texts(receiver)[0] and "memory_used" in _texts(receiver)[0]
        assert agent.wait_for(lambda: agent.value("fleetops_agent_spool_messages") == 0.0, timeout=10)
        # The rule clears (a reload raises its threshold): one resolved notice.
        agent.write_config(dict(agent.config, rules=[dict(rule, above=100)]))
        agent.proc.send_signal(signal.SIGHUP)
        assert len(receiver.wait_for(2, timeout=15)) == 2, agent.read_log()
        assert "UP" in _texts(receiver)[1] and "RESOLVED" in _texts(receiver)[1]
        assert agent.wait_for(lambda: agent.value("fleetops_alert_firing", rule="memory_used") is None)
        time.sleep(6)   # past a flush period: nothing is sent twice
        assert len(receiver.messages) == 2
        assert url.rsplit("/", 1)[1] not in agent.read_log()
    receiver.stop()


def test_two_notices_spooled_in_an_outage_arrive_in_their_order(tmp_path):
    receiver = IMReceiver("slack").start()
    receiver.go_down()
    rule = {"name": "memory_used", "figure": "memory", "above": 0, "for": 0}
    im = {"platform": "slack", "url": receiver.url, "timeout": 2, "retries": 0}
    with AgentProcess(tmp_path, rules=[rule], im=im) as agent:
        assert agent.wait_for(lambda: (agent.value("fleetops_agent_spool_messages") or 0) >= 1, timeout=15)
        agent.write_config(dict(agent.config, rules=[dict(rule, above=100)]))
        agent.proc.send_signal(signal.SIGHUP)
        assert agent.wait_for(lambda: (agent.value("fleetops_agent_spool_messages") or 0) >= 2, timeout=15), \
            agent.read_log()
        receiver.come_back()
        assert len(receiver.wait_for(2, timeout=20)) == 2
        texts = _texts(receiver)
        assert "DOWN" in texts[0] and "UP" in texts[1]
        time.sleep(6)
        assert len(receiver.messages) == 2
    receiver.stop()


def test_the_heartbeat_is_pushed(tmp_path):
    with IMReceiver("webhook") as receiver:
        with AgentProcess(tmp_path, heartbeat_url=receiver.url, heartbeat_push_interval=1) as agent:
            messages = receiver.wait_for(2, timeout=10)
            assert len(messages) >= 2, agent.read_log()
            assert messages[0]["host"] and messages[0]["time"] > time.time() - 60
