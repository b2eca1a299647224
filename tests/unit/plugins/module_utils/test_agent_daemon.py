# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent as a real process: /metrics, promtool, the textfile, SIGHUP reload, SIGTERM, adaptive sampling."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import shutil
import signal
import subprocess
import time

import pytest

from ansible_collections.fleetops.health.tests.unit.agent_process import AgentProcess, parse_metrics

CONTRACT_NAMES = (
    "fleetops_cpu_usage_ratio", "fleetops_memory_usage_ratio", "fleetops_swap_usage_ratio", "fleetops_load1",
    "fleetops_load5", "fleetops_load15", "fleetops_disk_usage_ratio", "fleetops_disk_inode_usage_ratio",
    "fleetops_host_verdict_level", "fleetops_host_score", "fleetops_agent_samples_total",
    "fleetops_agent_sample_duration_seconds_count", "fleetops_agent_sample_interval_seconds",
    "fleetops_agent_spool_messages", "fleetops_agent_history_bytes", "fleetops_agent_heartbeat_timestamp_seconds",
    "process_resident_memory_bytes", "process_cpu_seconds_total",
)


def promtool_check(text):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool is missing; run tests/tooling/system_deps.sh (Debian package prometheus)")
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode("utf-8"), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def test_metrics_follow_the_contract_and_pass_promtool(tmp_path):
    textfile = tmp_path / "fleetops_agent.prom"
    with AgentProcess(tmp_path, textfile_path=str(textfile)) as agent:
        agent.wait_for(lambda: (agent.value("fleetops_agent_samples_total") or 0) >= 2)
        text = agent.metrics()
        names = set(name for name, _labels in parse_metrics(text))
        assert set(CONTRACT_NAMES) <= names, set(CONTRACT_NAMES) - names
        assert "_created" not in text
        ratio = agent.value("fleetops_disk_usage_ratio", mountpoint="/")
        assert ratio is not None and 0 < ratio < 1
        rc, output = promtool_check(text)
        assert rc == 0, output
        assert textfile.exists()
        rc, output = promtool_check(textfile.read_text())
        assert rc == 0, output
        heartbeat = tmp_path / "state" / "heartbeat"
        assert time.time() - heartbeat.stat().st_mtime < 5


def test_sigterm_exits_cleanly_within_two_seconds(tmp_path):
    with AgentProcess(tmp_path, interval=30) as agent:
        took = agent.stop()
        assert agent.proc.returncode == 0, agent.read_log()
        assert took < 2.0, took


def test_sighup_applies_a_good_config_and_keeps_the_old_one_on_error(tmp_path):
    with AgentProcess(tmp_path, interval=1, adaptive_interval=0.25) as agent:
        assert agent.value("fleetops_agent_sample_interval_seconds") == 1.0
        agent.write_config(dict(agent.config, interval=2))
        agent.proc.send_signal(signal.SIGHUP)
        assert agent.wait_for(lambda: agent.value("fleetops_agent_sample_interval_seconds") == 2.0, timeout=8)
        agent.write_config(dict(agent.config, interval=120))   # out of range
        agent.proc.send_signal(signal.SIGHUP)
        assert agent.wait_for(lambda: "reload refused" in agent.read_log(), timeout=5), agent.read_log()
        assert "interval: must be a number from 0.1 to 60, got 120" in agent.read_log()
        agent.write_config("{not json")
        agent.proc.send_signal(signal.SIGHUP)
        assert agent.wait_for(lambda: "not valid JSON" in agent.read_log(), timeout=5), agent.read_log()
        time.sleep(2.5)
        assert agent.proc.poll() is None
        assert agent.value("fleetops_agent_sample_interval_seconds") == 2.0


def test_a_bad_config_at_start_exits_2_and_names_the_option(tmp_path):
    agent = AgentProcess(tmp_path, rules=[{"name": "x", "figure": "cpuu", "above": 5}])
    with pytest.raises(AssertionError) as failure:
        agent.start(timeout=10)
    assert agent.proc.returncode == 2
    assert "rules[0].figure: unknown figure 'cpuu'" in str(failure.value)


def _hold_memory(size, ready, release):
    # MAP_POPULATE faults every page in one call: the jump lands within a sample or two, not spread thin.
    block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0x8000))
    ready.set()
    release.wait(30)
    block.close()


def test_a_sudden_memory_jump_tightens_sampling_then_it_relaxes(tmp_path):
    """Watched memory jumps by more than the step: the interval drops to adaptive_interval for adaptive_hold."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    size = min(int(total * 0.06), 3 << 30)   # 6 points of memory within about a second, step 2
    with AgentProcess(tmp_path, interval=1, adaptive_interval=0.25, adaptive_step=2, adaptive_hold=5,
                      adaptive_watch=["memory"]) as agent:
        # Settled first: another process's memory may have moved at our start.
        assert agent.wait_for(lambda: agent.value("fleetops_agent_sample_interval_seconds") == 1.0, timeout=8)
        ready, release = multiprocessing.Event(), multiprocessing.Event()
        holder = multiprocessing.Process(target=_hold_memory, args=(size, ready, release))
        holder.start()
        try:
            assert ready.wait(30)
            assert agent.wait_for(lambda: agent.value("fleetops_agent_sample_interval_seconds") == 0.25, timeout=10)
            before = agent.value("fleetops_agent_samples_total")
            time.sleep(2.0)
            # About eight samples in two seconds while tight; relaxed it would be two. A loaded machine
            # stretches each sample, so ask for more than the relaxed count, not for all eight.
            assert agent.value("fleetops_agent_samples_total") - before >= 4
        finally:
            release.set()
            holder.join(10)
        # The drop back is a jump too (it re-arms the hold); after it the interval relaxes.
        assert agent.wait_for(lambda: agent.value("fleetops_agent_sample_interval_seconds") == 1.0, timeout=12)


def _burn(stop):
    while not stop.is_set():
        sum(range(10000))


def test_a_cpu_burner_tightens_sampling_then_it_relaxes(tmp_path):
    with AgentProcess(tmp_path, interval=1, adaptive_interval=0.25, adaptive_step=30, adaptive_hold=2,
                      adaptive_watch=["cpu"]) as agent:
        time.sleep(2.5)
        idle = agent.value("fleetops_cpu_usage_ratio")
        if idle is None or idle > 0.4:
            pytest.skip("this machine is %s busy already; a CPU burner cannot make a jump above the step" % idle)
        stop = multiprocessing.Event()
        burners = [multiprocessing.Process(target=_burn, args=(stop,)) for _core in range(os.cpu_count() or 1)]
        for burner in burners:
            burner.start()
        try:
            assert agent.wait_for(lambda: agent.value("fleetops_agent_sample_interval_seconds") == 0.25, timeout=6)
        finally:
            stop.set()
            for burner in burners:
                burner.join(10)
        assert agent.wait_for(lambda: agent.value("fleetops_agent_sample_interval_seconds") == 1.0, timeout=12)
