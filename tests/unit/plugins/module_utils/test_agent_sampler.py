# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.fleetops.health.plugins.module_utils.agent_config import AgentConfig, AgentConfigError
from ansible_collections.fleetops.health.plugins.module_utils.agent_sampler import AdaptiveInterval, Sampler, figures_of


def test_interval_tightens_on_a_jump_and_relaxes_after_the_hold():
    interval = AdaptiveInterval(base=1.0, tight=0.25, step=20, hold=10, watch=["cpu"])
    assert interval.update({"cpu": 5.0}, now=0) == 1.0
    assert interval.update({"cpu": 20.0}, now=1) == 1.0        # 15 points: below the step
    assert interval.update({"cpu": 90.0}, now=2) == 0.25       # 70 points
    assert "cpu moved 20.0 -> 90.0" == interval.trigger
    assert interval.update({"cpu": 91.0}, now=11.9) == 0.25
    assert interval.update({"cpu": 92.0}, now=12.1) == 1.0
    assert interval.update({"memory": 99.0}, now=13) == 1.0    # not watched


def test_figures_cover_percents_loads_mounts_and_links():
    facts = {"cpu": {"percent": 50.0, "iowait": 1.0}, "memory": {"percent": 40.0}, "swap": {"total": 0, "percent": 0},
             "load": {"1": 0.5, "5": 0.4, "15": 0.3},
             "disks": [{"mount": "/", "percent": 71.0, "inodes_percent": 3.0}, {"mount": "/nfs", "error": "hung"}],
             "network": [{"interface": "eth0", "rx_bps": 10.0, "tx_bps": 20.0}]}
    assert figures_of(facts) == {"cpu": 50.0, "iowait": 1.0, "memory": 40.0, "load1": 0.5, "load5": 0.4,
                                 "load15": 0.3, "disk:/": 71.0, "inodes:/": 3.0, "net_rx:eth0": 10.0,
                                 "net_tx:eth0": 20.0}


def test_the_sampler_gives_rates_from_the_second_sample_and_reads_mounts_on_their_own_schedule():
    now = [0.0]
    sampler = Sampler(slow_interval=30, clock=lambda: now[0])
    first = sampler.sample()
    assert first["cpu"]["percent"] is None and first["network"] is None
    assert any(disk.get("mount") == "/" for disk in first["disks"])
    now[0] = 1.0
    second = sampler.sample()
    assert second["cpu"]["percent"] is not None and isinstance(second["network"], list)
    assert second["disks"] is first["disks"]   # carried, not read again
    now[0] = 31.0
    assert sampler.sample()["disks"] is not first["disks"]


@pytest.mark.parametrize("document, message", [
    ({"interval": 0}, "interval: must be a number from 0.1 to 60, got 0"),
    ({"interval": 1, "adaptive_interval": 2}, "adaptive_interval (2.0) must not be above interval (1.0)"),
    ({"adaptive_watch": ["cpu", "disk"]}, "adaptive_watch: unknown figure 'disk'"),
    ({"listen_port": 70000}, "listen_port: must be a whole number from 0 to 65535"),
    ({"tls_cert_file": "/x.pem"}, "tls_cert_file and tls_key_file: give both"),
    ({"basic_auth_user": "prom", "basic_auth_password_sha256": "secret"}, "basic_auth_password_sha256: must be 64"),
    ({"textfile_path": "/var/lib/x.txt"}, "textfile_path: must end in .prom"),
    ({"thresholds": {"cpu": {"warn": 99, "crit": 90}}}, "thresholds.cpu.warn (99) must be below thresholds.cpu.crit"),
    ({"rules": [{"name": "a", "figure": "cpu"}]}, "rules[0].above: required"),
    ({"rules": [{"name": "a", "figure": "cpu", "above": 1}, {"name": "a", "figure": "memory", "above": 2}]},
     "rules: each name once; repeated: a"),
    ({"rules": [{"name": "a", "figure": "cpu", "above": 1, "severity": "page"}]}, "rules[0].severity: must be one of"),
    ({"im": {"platform": "slack"}}, "im: must be a dict with at least platform and url"),
    ({"intervall": 1}, "unknown option(s) intervall"),
    ({"baseline_weeks": 13}, "baseline_weeks: must be a whole number from 1 to 12"),
])
def test_bad_options_are_named(document, message):
    with pytest.raises(AgentConfigError) as failure:
        AgentConfig(document)
    assert message in str(failure.value)


def test_defaults_are_usable():
    config = AgentConfig({})
    assert (config.interval, config.listen_address, config.listen_port) == (1.0, "127.0.0.1", 9906)
    assert config.rules == [] and config.im is None
    rule = AgentConfig({"rules": [{"name": "root_full", "figure": "disk:/", "above": "baseline", "for": 60}]}).rules[0]
    assert rule == {"name": "root_full", "figure": "disk:/", "above": "baseline", "for": 60.0, "severity": "warning"}
