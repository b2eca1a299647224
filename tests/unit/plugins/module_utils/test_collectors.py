"""Collectors: /proc parsers on captured and live files, rate math on real psutil counters."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

import psutil
import pytest

from ansible_collections.fleetops.health.plugins.module_utils import collectors

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "host_resources")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def fixture_text(*parts):
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return handle.read()


def fixture_bytes(*parts):
    with open(os.path.join(FIXTURES, *parts), "rb") as handle:
        return handle.read()


# ---------------------------------------------------------------- /proc/<pid>/stat

def test_pid_stat_name_with_parenthesis_and_space():
    assert collectors.parse_pid_stat(fixture_bytes("proc", "2922", "stat"))[:2] == ("we) (ird", "S")


def test_pid_stat_zombie_and_busy_process():
    assert collectors.parse_pid_stat(fixture_bytes("proc", "2912", "stat"))[1] == "Z"
    name, state, ticks, start, rss = collectors.parse_pid_stat(fixture_bytes("proc", "2951", "stat"))
    # the burner had run 1 s at 100 % of a core when captured
    assert (name, state) == ("python3", "R")
    assert ticks >= CLK_TCK * 0.8 and start > 0 and rss > 0


def test_process_table_on_captured_tree_counts_zombies():
    table = collectors.read_process_table(os.path.join(FIXTURES, "proc"))
    summary = collectors.summarize_processes(None, table, 0.0, 3, CLK_TCK, PAGE)
    assert summary["total"] == 5
    assert summary["zombies"] == 1
    assert summary["running"] == 2
    assert summary["top_cpu"] is None
    assert [row["rss"] for row in summary["top_memory"]] == sorted((row["rss"] for row in summary["top_memory"]), reverse=True)
    assert len(summary["top_memory"]) == 3


def test_process_cpu_percent_from_two_samples_and_pid_reuse():
    before = {(10, 100): (10, "busy", "R", 1000, 5), (11, 100): (11, "idle", "S", 50, 9)}
    # pid 11 was replaced by a new process (new start time): its ticks count from zero, not from 50
    after = {(10, 100): (10, "busy", "R", 1000 + CLK_TCK // 2, 5), (11, 200): (11, "new", "S", 2, 1)}
    summary = collectors.summarize_processes(before, after, 0.5, 5, CLK_TCK, PAGE)
    top = summary["top_cpu"]
    assert top[0]["name"] == "busy" and top[0]["cpu_percent"] == pytest.approx(100.0, abs=1)
    assert top[1]["name"] == "new" and top[1]["cpu_percent"] == pytest.approx(100.0 * 2 / CLK_TCK / 0.5, abs=0.1)
    assert summary["top_memory"][0] == {"pid": 10, "name": "busy", "cpu_percent": top[0]["cpu_percent"], "rss": 5 * PAGE}


def test_live_process_table_sees_this_process():
    table = collectors.read_process_table()
    mine = [entry for entry in table.values() if entry[0] == os.getpid()]
    assert len(mine) == 1 and mine[0][4] * PAGE > 1024 * 1024


# ---------------------------------------------------------------- /proc/net

def test_sockstat_captured():
    sections = collectors.parse_sockstat(fixture_text("proc_net", "sockstat"))
    assert set(sections["TCP"]) >= {"inuse", "orphan", "tw", "alloc", "mem"}
    assert "sockets" in sections and sections["UDP"]["inuse"] >= 0


def test_tcp_states_captured_and_live_listener():
    captured = collectors.count_tcp_states(fixture_text("proc_net", "tcp"))
    assert captured.get("listen", 0) >= 1 and all(not state[0].isdigit() for state in captured)
    import socket
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        live = collectors.read_connections()
        assert live["tcp_states"]["listen"] >= 1
        assert live["tcp_inuse"] >= 1
        assert set(live) == {"tcp_inuse", "tcp_orphan", "tcp_time_wait", "udp_inuse", "tcp_states"}
    finally:
        server.close()


def test_connections_without_ipv6_files(tmp_path):
    for name in ("sockstat", "tcp"):
        (tmp_path / name).write_text(fixture_text("proc_net", name))
    result = collectors.read_connections(str(tmp_path))
    assert result["tcp_states"] == collectors.count_tcp_states(fixture_text("proc_net", "tcp"))


# ---------------------------------------------------------------- rate math

CpuTimes = collections.namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_cpu_percentages_split():
    before = CpuTimes(100, 0, 50, 800, 10, 0, 0, 0, 0, 0)
    after = CpuTimes(150, 10, 70, 900, 60, 5, 5, 0, 40, 0)
    # delta: user 50 nice 10 system 20 idle 100 iowait 50 irq 5 softirq 5 -> total 240 (guest is in user)
    result = collectors.cpu_percentages(before, after, 2)
    assert result == {"cores": 2, "percent": round(100 - 100 * 150 / 240.0, 1), "user": 25.0,
                      "system": round(100 * 30 / 240.0, 1), "iowait": round(100 * 50 / 240.0, 1), "steal": 0.0}


def test_cpu_percentages_no_time_passed():
    sample = CpuTimes(1, 0, 1, 1, 0, 0, 0, 0, 0, 0)
    assert collectors.cpu_percentages(sample, sample, 4)["percent"] == 0.0


def test_cpu_percentages_live_burner_raises_cpu():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.1)
        before = psutil.cpu_times()
        time.sleep(0.4)
        result = collectors.cpu_percentages(before, psutil.cpu_times(), psutil.cpu_count())
    finally:
        burner.kill()
        burner.wait()
    # one busy core out of N
    assert result["percent"] >= 100.0 / psutil.cpu_count() * 0.6
    assert result["user"] > 0


DiskIO = collections.namedtuple("DiskIO", "read_count write_count read_bytes write_bytes busy_time")
NetIO = collections.namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")


def test_io_rates_whole_disks_only_and_busy_capped():
    before = {"sda": DiskIO(0, 0, 0, 0, 0), "sda1": DiskIO(0, 0, 0, 0, 0)}
    after = {"sda": DiskIO(20, 40, 4096, 8192, 600), "sda1": DiskIO(20, 40, 4096, 8192, 600)}
    result = collectors.io_rates(before, after, 0.5, whole_disks={"sda"})
    assert result == [{"device": "sda", "read_bps": 8192.0, "write_bps": 16384.0, "read_iops": 40.0,
                       "write_iops": 80.0, "busy_percent": 100.0}]


def test_network_rates_skip_loopback_and_use_link_speed():
    before = {"lo": NetIO(0, 0, 0, 0, 0, 0, 0, 0), "eth0": NetIO(0, 0, 0, 0, 0, 0, 0, 0)}
    after = {"lo": NetIO(9, 9, 9, 9, 0, 0, 0, 0), "eth0": NetIO(1250000, 250000, 100, 50, 1, 1, 0, 2)}
    result = collectors.network_rates(before, after, 1.0, {"eth0": 100})
    assert result == [{"interface": "eth0", "rx_bps": 250000.0, "tx_bps": 1250000.0, "rx_pps": 50.0, "tx_pps": 100.0,
                       "errors_ps": 2.0, "drops_ps": 2.0, "util_percent": 10.0}]


def test_network_rates_leave_out_interfaces_that_are_down():
    sample = {"eth0": NetIO(0, 0, 0, 0, 0, 0, 0, 0), "veth9": NetIO(0, 0, 0, 0, 0, 0, 0, 0)}
    assert [nic["interface"] for nic in collectors.network_rates(sample, sample, 1.0, up={"eth0"})] == ["eth0"]


def test_counter_reset_never_gives_negative_rates():
    before = {"eth0": NetIO(500, 500, 5, 5, 0, 0, 0, 0)}
    after = {"eth0": NetIO(10, 10, 1, 1, 0, 0, 0, 0)}
    assert collectors.network_rates(before, after, 1.0)[0]["rx_bps"] == 0.0


def test_whole_disk_names_live():
    names = collectors.whole_disk_names()
    assert names and not any(name.startswith("loop") for name in names)
    assert collectors.whole_disk_names("/nonexistent") is None


# ---------------------------------------------------------------- the whole snapshot

def test_collect_live_default_shape_and_compact():
    facts = collectors.HostResources(window=0.1).collect()
    assert set(facts) >= {"cpu", "load", "memory", "swap", "disks", "io", "network", "processes", "cgroup", "units",
                          "uptime", "score", "verdict", "reasons"}
    assert "connections" not in facts
    assert facts["verdict"] in ("ok", "warn", "crit")
    assert 0 <= facts["score"] <= 100
    assert facts["memory"]["total"] == psutil.virtual_memory().total
    assert any(disk.get("mount") == "/" for disk in facts["disks"])
    assert len(facts["processes"]["top_cpu"]) == 5
    # compact: no raw counters anywhere
    import json
    text = json.dumps(facts)
    assert "bytes_sent" not in text and "read_count" not in text and len(text) < 8000


def test_collect_window_zero_skips_rates():
    facts = collectors.HostResources(window=0, subset=["cpu", "io", "network", "processes"]).collect()
    assert facts["cpu"]["percent"] is None
    assert facts["io"] is None and facts["network"] is None
    assert facts["processes"]["top_cpu"] is None and facts["processes"]["top_memory"]


def test_collect_takes_the_window_and_little_more():
    start = time.monotonic()
    collectors.HostResources(window=0.3).collect()
    elapsed = time.monotonic() - start
    # generous upper bound: the test machine is shared; test_mounts proves the overlap with a slow mount
    assert 0.3 <= elapsed < 1.0


def test_missing_proc_file_becomes_error_entry(tmp_path):
    # a /proc without mounts, net files or pids (as in some sandboxes): sections error, the call does not fail
    facts = collectors.HostResources(window=0.05, subset=["disk", "connections", "memory", "processes", "cpu"],
                                     proc_root=str(tmp_path / "proc")).collect()
    assert facts["disks"][0]["error"].startswith("disks:")
    assert "error" in facts["connections"]
    assert facts["processes"]["error"].startswith("processes: [Errno 2] No such file or directory")
    assert facts["memory"]["total"] > 0 and facts["cpu"]["percent"] is not None
    # an unreadable section is not a finding about the host
    assert not [reason for reason in facts["reasons"] if reason.startswith(("disk", "processes", "connections"))]


@pytest.mark.parametrize("kwargs, named", [
    ({"subset": ["cpu", "gpu"]}, "subset: unknown name(s) gpu"),
    ({"window": -0.5}, "window must be 0 or more"),
    ({"top": -1}, "top must be 0 or more"),
    ({"mount_timeout": 0}, "mount_timeout must be above 0"),
    ({"thresholds": {"cpux": {"warn": 1}}}, "thresholds: unknown metric 'cpux'"),
    ({"weights": {"gpu": 1}}, "weights: unknown key 'gpu'"),
])
def test_bad_options_name_the_key(kwargs, named):
    with pytest.raises(collectors.CollectorError) as error:
        collectors.HostResources(**kwargs)
    assert named in str(error.value)
