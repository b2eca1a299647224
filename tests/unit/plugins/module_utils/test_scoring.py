"""Thresholds, verdicts with reasons, and the weighted load score."""
from __future__ import annotations

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import scoring

DEFAULTS = scoring.merge_thresholds(None)


def test_defaults_match_the_documented_levels():
    assert DEFAULTS["cpu"] == {"warn": 85, "crit": 95}
    assert DEFAULTS["load"] == {"warn": 1.5, "crit": 3}
    assert DEFAULTS["swap"] == {"warn": 50, "crit": 80}


def test_partial_override_keeps_the_other_level():
    merged = scoring.merge_thresholds({"disk": {"warn": 70}})
    assert merged["disk"] == {"warn": 70.0, "crit": 95}
    assert scoring.DEFAULT_THRESHOLDS["disk"]["warn"] == 85  # defaults untouched


@pytest.mark.parametrize("overrides, message", [
    ({"gpu": {"warn": 1}}, "thresholds: unknown metric 'gpu'"),
    ({"cpu": {"high": 1}}, "thresholds.cpu: unknown level 'high'"),
    ({"cpu": {"warn": "lots"}}, "thresholds.cpu.warn: must be a number from 0 to 100"),
    ({"cpu": {"warn": True}}, "thresholds.cpu.warn: must be a number from 0 to 100"),
    ({"cpu": {"warn": 99}}, "thresholds.cpu.warn (99) must be below thresholds.cpu.crit (95)"),
    ({"cpu": 90}, "thresholds.cpu must be a dict"),
])
def test_bad_thresholds_name_the_key(overrides, message):
    with pytest.raises(ValueError) as error:
        scoring.merge_thresholds(overrides)
    assert message in str(error.value)


@pytest.mark.parametrize("overrides, message", [
    ({"disk": 1}, "weights: unknown key 'disk'"),
    ({"cpu": -1}, "weights.cpu: must be a number from 0 to 100, got -1"),
    ({"cpu": 0, "memory": 0, "disk_io": 0, "network": 0}, "at least one weight"),
])
def test_bad_weights(overrides, message):
    with pytest.raises(ValueError) as error:
        scoring.merge_weights(overrides)
    assert message in str(error.value)


HEALTHY = {"cpu": {"percent": 12.0, "iowait": 1.0}, "load": {"per_core_5": 0.2}, "memory": {"percent": 40.0},
           "swap": {"total": 0, "percent": 0.0}, "disks": [{"mount": "/", "percent": 50.0, "inodes_percent": 3.0}],
           "units": {"error": "systemd is not the init system"}}


def test_healthy_host_is_ok():
    assert scoring.evaluate(HEALTHY, DEFAULTS) == ("ok", [])


def test_reasons_name_metric_value_and_level_most_severe_first():
    resources = dict(HEALTHY, cpu={"percent": 88.0, "iowait": 45.0},
                     disks=[{"mount": "/", "percent": 50.0, "inodes_percent": 3.0},
                            {"mount": "/var", "percent": 97.5, "inodes_percent": 90.0},
                            {"mount": "/mnt/nfs", "error": "no answer to statvfs within 2.0s"}],
                     units={"failed_count": 1, "failed": [{"unit": "nginx.service"}]})
    verdict, reasons = scoring.evaluate(resources, DEFAULTS)
    assert verdict == "crit"
    # iowait overshoots crit by 12.5 %, /var by 2.6 %: the bigger overshoot first
    assert reasons[:2] == ["iowait 45% >= crit 40%", "disk /var 97.5% >= crit 95%"]
    assert set(reasons[2:]) == {"cpu 88% >= warn 85%", "inodes /var 90% >= warn 85%",
                                "disk /mnt/nfs: no answer to statvfs within 2.0s", "1 failed unit: nginx.service"}


def test_swap_ignored_without_swap_and_load_per_core_unitless():
    resources = dict(HEALTHY, swap={"total": 0, "percent": 100.0}, load={"per_core_5": 3.2})
    assert scoring.evaluate(resources, DEFAULTS) == ("crit", ["load per core (5 min) 3.2 >= crit 3"])


def test_cgroup_memory_against_its_limit():
    resources = dict(HEALTHY, cgroup={"memory_percent": 91.0})
    assert scoring.evaluate(resources, DEFAULTS) == ("warn", ["cgroup memory 91% >= warn 85%"])


def test_many_failed_units_are_abbreviated():
    units = [{"unit": "u%d.service" % i} for i in range(5)]
    verdict, reasons = scoring.evaluate(dict(HEALTHY, units={"failed": units}), DEFAULTS)
    assert (verdict, reasons) == ("warn", ["5 failed units: u0.service, u1.service, u2.service, ..."])


def test_load_score_weights_and_rescaling():
    weights = scoring.merge_weights(None)
    resources = {"cpu": {"percent": 50.0}, "memory": {"percent": 20.0},
                 "io": [{"busy_percent": 10.0}, {"busy_percent": 90.0}], "network": [{"util_percent": None}]}
    # network unmeasured: (0.4*50 + 0.3*20 + 0.2*90) / 0.9
    assert scoring.load_score(resources, weights) == round((20 + 6 + 18) / 0.9)
    assert scoring.load_score({"cpu": {"percent": 250.0}}, weights) == 100
    assert scoring.load_score({}, weights) is None
    assert scoring.load_score({"cpu": {"percent": 80.0}, "memory": {"percent": 0.0}},
                              scoring.merge_weights({"memory": 0})) == 80


def test_small_levels_are_not_rounded_to_zero():
    resources = dict(HEALTHY, memory={"percent": 0.0042})
    assert scoring.evaluate(resources, scoring.merge_thresholds({"memory": {"warn": 0.001, "crit": 0.002}}))[1] == [
        "memory 0.0042% >= crit 0.002%"]


def test_worst_verdict():
    assert scoring.worst_verdict(["ok", "crit", "warn"]) == "crit"
    assert scoring.worst_verdict([]) == "ok"


PROBE_DOWN = {"results": [{"name": "api", "ok": False, "state": "down", "error_kind": "refused"}]}


@pytest.mark.parametrize("kwargs, verdict, reasons", [
    ({}, "ok", []),
    ({"resources": {"verdict": "ok", "reasons": []}}, "ok", []),
    ({"resources": {"verdict": "warn", "reasons": ["cpu 90% >= warn 85%"]}}, "warn", ["cpu 90% >= warn 85%"]),
    # a crit verdict without reasons still says why, and stays crit
    ({"resources": {"verdict": "crit"}}, "crit", ["host_resources verdict crit"]),
    ({"resources": {"verdict": "ok", "reasons": []}, "probes": PROBE_DOWN}, "crit", ["probe api down (refused)"]),
    ({"logs": [{"rules": {"oom": {"count": 1, "severity": "critical"}}},
               {"rules": [{"name": "slow", "count": 2, "severity": "warning"}]}]},
     "crit", ["log rule oom: 1 critical match", "log rule slow: 2 warning matches"]),
    ({"error": "no data", "task_errors": ["probe failed: x"]}, "crit", ["no data", "probe failed: x"]),
    ({"resources": {"verdict": "warn", "reasons": ["cpu 90% >= warn 85%"]}, "probes": PROBE_DOWN},
     "crit", ["probe api down (refused)", "cpu 90% >= warn 85%"]),
])
def test_host_verdict_merges_every_source(kwargs, verdict, reasons):
    assert scoring.host_verdict(**kwargs) == {"verdict": verdict, "reasons": reasons}


def test_host_verdict_rejects_an_unknown_resources_verdict():
    with pytest.raises(ValueError, match="fleet_resources.verdict must be ok, warn or crit"):
        scoring.host_verdict({"verdict": "bad"})
