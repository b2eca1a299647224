"""Fleet report filters: verdict merge with probe and log_scan facts, rows, table, fail levels, sizes."""
from __future__ import annotations

import pytest

from ansible_collections.fleetops.health.plugins.filter import fleet

CRIT_DISK = {"verdict": "crit", "reasons": ["disk /var 97% >= crit 95%"], "score": 40,
             "cpu": {"percent": 20.0}, "memory": {"percent": 50.0}, "load": {"per_core_5": 0.4}, "uptime": 90061,
             "disks": [{"mount": "/", "percent": 40.0, "free": 10}, {"mount": "/var", "percent": 97.0, "free": 5},
                       {"mount": "/mnt/nfs", "error": "no answer"}]}
OK_HOST = {"verdict": "ok", "reasons": [], "score": 5, "cpu": {"percent": 3.0}, "memory": {"percent": 10.0},
           "disks": [{"mount": "/", "percent": 20.0, "free": 100}]}

# fleet_probes as the probe module returns it
PROBES_ONE_DOWN = {"results": [
    {"name": "api", "ok": True, "state": "up", "error_kind": None, "transition": None},
    {"name": "web", "ok": False, "state": "down", "error_kind": "timeout", "transition": "failed"},
    {"name": "db", "ok": False, "state": "up", "error_kind": "refused", "transition": None},
], "summary": {"total": 3, "up": 2, "down": 1}}
# fleet_logs as log_scan returns it: rules keyed by name
LOGS = {"rules": {"oom": {"count": 2, "severity": "critical", "samples": ["Out of memory"]},
                  "timeouts": {"count": 7, "severity": "warning", "samples": []},
                  "info": {"count": 40, "severity": "info", "samples": []},
                  "panic": {"count": 0, "severity": "critical", "samples": []}},
        "total_matches": 49, "highest_severity": "critical"}


@pytest.mark.parametrize("value, text", [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                         (5 * 1024 ** 3, "5.0 GiB"), (3 * 1024 ** 5, "3072.0 TiB")])
def test_human_bytes(value, text):
    assert fleet.human_bytes(value) == text


@pytest.mark.parametrize("seconds, text", [(None, None), (59, "0m"), (3725, "1h 2m"), (90061, "1d 1h")])
def test_human_duration(seconds, text):
    assert fleet.human_duration(seconds) == text


def test_verdict_from_resources_alone():
    assert fleet.fleet_host_verdict(OK_HOST) == {"verdict": "ok", "reasons": []}
    assert fleet.fleet_host_verdict(CRIT_DISK) == {"verdict": "crit", "reasons": ["disk /var 97% >= crit 95%"]}


def test_down_probe_is_crit_and_failing_probe_warns():
    verdict = fleet.fleet_host_verdict(OK_HOST, probes=PROBES_ONE_DOWN)
    assert verdict == {"verdict": "crit", "reasons": ["probe web down (timeout)", "probe db failing (refused), not down yet"]}


def test_probe_without_state_uses_ok():
    verdict = fleet.fleet_host_verdict(None, probes={"results": [{"name": "x", "ok": False, "error": "boom"}]})
    assert verdict == {"verdict": "crit", "reasons": ["probe x down (boom)"]}


def test_log_rules_critical_crit_warning_warn_info_and_zero_ignored():
    verdict = fleet.fleet_host_verdict(OK_HOST, logs=LOGS)
    assert verdict == {"verdict": "crit",
                       "reasons": ["log rule oom: 2 critical matches", "log rule timeouts: 7 warning matches"]}


def test_log_rules_as_list_and_warning_only():
    logs = {"rules": [{"name": "slow", "count": 1, "severity": "warning"}], "total_matches": 1}
    assert fleet.fleet_host_verdict(OK_HOST, logs=logs) == {"verdict": "warn", "reasons": ["log rule slow: 1 warning match"]}


def test_all_sources_merge_most_severe_first():
    warn_host = dict(OK_HOST, verdict="warn", reasons=["cpu 90% >= warn 85%"])
    verdict = fleet.fleet_host_verdict(warn_host, probes=PROBES_ONE_DOWN, logs=LOGS)
    assert verdict["verdict"] == "crit"
    assert verdict["reasons"] == ["probe web down (timeout)", "log rule oom: 2 critical matches", "cpu 90% >= warn 85%",
                                  "probe db failing (refused), not down yet", "log rule timeouts: 7 warning matches"]


def test_host_without_facts_is_crit_with_its_error():
    row = fleet.fleet_host_row("h1", None, result={"unreachable": True, "msg": "ssh: connect to host h1 port 22: refused"})
    assert (row["verdict"], row["reachable"]) == ("crit", False)
    assert row["top_reason"] == "unreachable: ssh: connect to host h1 port 22: refused"
    assert fleet.fleet_host_row("h2", None, result={"failed": True, "msg": "psutil"})["top_reason"] == "host_resources failed: psutil"
    assert "no result" in fleet.fleet_host_row("h3", None)["top_reason"]


def test_row_numbers_and_bar_levels_follow_thresholds():
    row = fleet.fleet_host_row("db1", CRIT_DISK, probes=PROBES_ONE_DOWN, logs=LOGS, thresholds={"memory": {"warn": 40}})
    assert row["worst_disk"] == {"mount": "/var", "percent": 97.0, "free": 5}
    assert row["uptime_text"] == "1d 1h" and row["load_per_core"] == 0.4
    assert [(gauge["label"], gauge["level"]) for gauge in row["bars"]] == [("CPU", "ok"), ("MEM", "warn"), ("DISK", "crit")]
    assert row["bars"][1]["warn"] == 40.0 and row["bars"][1]["crit"] == 95
    assert row["probes"] == {"total": 3, "up": 2, "down": 1}
    assert row["top_cpu"] == []  # no processes section in these facts
    assert row["logs"] == {"total_matches": 49, "highest_severity": "critical"}


def test_row_lists_the_three_busiest_processes():
    procs = [{"pid": pid, "name": "p%d" % pid, "cpu_percent": 90.0 - pid, "rss": 1} for pid in range(5)]
    row = fleet.fleet_host_row("h", dict(OK_HOST, processes={"top_cpu": procs}))
    assert row["top_cpu"] == [{"name": "p0", "pid": 0, "cpu_percent": 90.0}, {"name": "p1", "pid": 1, "cpu_percent": 89.0},
                              {"name": "p2", "pid": 2, "cpu_percent": 88.0}]


def registered(**facts):
    """A registered module result that returned ``facts``."""
    return {"changed": False, "failed": False, "ansible_facts": facts}


# As the sweep leaves them with INJECT_FACTS_AS_VARS off: registered results and ansible_facts, no top-level facts.
HOSTVARS = {
    "web1": {"sweep_resources_result": registered(fleet_resources=OK_HOST)},
    "web2": {"sweep_resources_result": registered(fleet_resources=dict(OK_HOST, score=30))},
    "db1": {"sweep_resources_result": registered(fleet_resources=CRIT_DISK), "sweep_thresholds": {"disk": {"warn": 98, "crit": 99}}},
    "gone": {"sweep_resources_result": {"unreachable": True, "msg": "timed out"}},
    # facts set by other tasks than the sweep's registered ones
    "api1": {"ansible_facts": {"fleet_resources": OK_HOST, "fleet_logs": {"rules": {"slow": {"count": 1, "severity": "warning"}}}}},
}


def test_report_sorts_counts_and_uses_each_hosts_thresholds():
    report = fleet.fleet_report(HOSTVARS, ["web1", "web2", "db1", "gone", "api1"], generated_at="t0")
    assert [row["host"] for row in report["hosts"]] == ["db1", "gone", "api1", "web2", "web1"]
    assert report["counts"] == {"ok": 2, "warn": 1, "crit": 2}
    assert report["unreachable"] == 1 and report["verdict"] == "crit" and report["total"] == 5
    assert report["top_issues"][0] == {"issue": "disk /var", "hosts": 1}
    db1 = report["hosts"][0]
    # db1's own levels (98/99) colour its disk bar: 97 % is ok there, though the module said crit
    assert db1["bars"][2]["level"] == "ok" and db1["verdict"] == "crit"
    assert db1["facts"]["resources"] == CRIT_DISK


@pytest.mark.parametrize("reason, issue", [
    ("disk /var 97% >= crit 95%", "disk /var"),
    ("load per core (5 min) 3.2 >= crit 3", "load per core (5 min)"),
    ("3 failed units: a.service, b.service, c.service", "failed units"),
    ("1 failed unit: a.service", "failed units"),
    ("disk /mnt/nfs: no answer to statvfs within 2.0s", "disk /mnt/nfs"),
    ("probe web down (timeout)", "probe web down"),
    ("log rule oom: 2 critical matches", "log rule oom"),
    ("unreachable: ssh: connect to host", "unreachable"),
])
def test_issue_of(reason, issue):
    assert fleet.issue_of(reason) == issue


def test_top_issues_count_hosts_not_reasons():
    rows = [{"reasons": ["cpu 99% >= crit 95%", "disk / 90% >= warn 85%"]}, {"reasons": ["cpu 96% >= crit 95%"]},
            {"reasons": []}]
    assert fleet.top_issues(rows) == [{"issue": "cpu", "hosts": 2}, {"issue": "disk /", "hosts": 1}]


def test_report_of_hosts_subset_only():
    report = fleet.fleet_report(HOSTVARS, ["web1"])
    assert [row["host"] for row in report["hosts"]] == ["web1"] and report["verdict"] == "ok"


@pytest.mark.parametrize("level, hosts", [("never", []), ("crit", ["db1", "gone"]), ("warn", ["db1", "gone", "api1"])])
def test_failing_hosts(level, hosts):
    report = fleet.fleet_report(HOSTVARS, list(HOSTVARS))
    assert fleet.fleet_failing_hosts(report, level) == hosts


def test_failing_hosts_rejects_unknown_level():
    with pytest.raises(ValueError, match="sweep_fail_on must be never, warn or crit"):
        fleet.fleet_failing_hosts({"hosts": []}, "critical")


def test_table_has_a_row_per_host_with_top_reason():
    table = fleet.fleet_table(fleet.fleet_report(HOSTVARS, list(HOSTVARS)))
    lines = table.splitlines()
    assert lines[0] == "fleet CRIT: 5 hosts, 2 crit, 1 warn, 2 ok, 1 without facts"
    assert lines[1].split() == ["HOST", "VERDICT", "SCORE", "CPU", "MEM", "WORST", "DISK", "TOP", "REASON"]
    assert lines[2].split()[:6] == ["db1", "CRIT", "40", "20%", "50%", "97%"]
    assert lines[2].endswith("disk /var 97% >= crit 95%")
    assert lines[3].startswith("gone ") and "unreachable: timed out" in lines[3]
    assert len(lines) == 7


def test_filters_are_registered():
    assert set(fleet.FilterModule().filters()) == {"fleet_report", "fleet_host_verdict", "fleet_table",
                                                   "fleet_failing_hosts", "human_bytes", "fleet_report_merge"}


@pytest.mark.parametrize("variables, verdict, reason", [
    # injected top-level facts alone are not read: INJECT_FACTS_AS_VARS=false has none, and the host has no data
    ({"fleet_resources": OK_HOST}, "crit", "no data: no result from host_resources (host skipped or not reached)"),
    ({"sweep_resources_result": {"changed": False, "failed": False}}, "crit",
     "no data: host_resources returned no fleet_resources"),
    ({"sweep_resources_result": registered(fleet_resources=OK_HOST)}, "ok", ""),
    ({"ansible_facts": {"fleet_resources": OK_HOST}}, "ok", ""),
    # a failed call this run is not covered by a fact cached from an earlier run
    ({"sweep_resources_result": {"failed": True, "msg": "boom"}, "ansible_facts": {"fleet_resources": OK_HOST}},
     "crit", "host_resources failed: boom"),
    # a skipped probe call falls back to ansible_facts; a registered one wins over them
    ({"sweep_resources_result": registered(fleet_resources=OK_HOST), "sweep_probe_result": {"skipped": True},
      "ansible_facts": {"fleet_probes": PROBES_ONE_DOWN}}, "crit", "probe web down (timeout)"),
    ({"sweep_resources_result": registered(fleet_resources=OK_HOST),
      "sweep_probe_result": registered(fleet_probes={"results": []}), "ansible_facts": {"fleet_probes": PROBES_ONE_DOWN}},
     "ok", ""),
])
def test_report_reads_registered_results_or_ansible_facts_never_injected_vars(variables, verdict, reason):
    row = fleet.fleet_report({"h": variables}, ["h"])["hosts"][0]
    assert (row["verdict"], row["top_reason"]) == (verdict, reason)
