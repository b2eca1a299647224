"""fleet_report_merge: slice reports of one sweep make the report one unsliced sweep makes."""
from __future__ import annotations

import json

import pytest

from ansible_collections.fleetops.health.plugins.filter import fleet
from ansible_collections.fleetops.health.tests.unit.plugins.filter.test_fleet import HOSTVARS

SLICES = [["web1", "gone"], ["db1"], ["web2", "api1"]]


def slice_reports():
    reports = []
    for index, hosts in enumerate(SLICES):
        report = fleet.fleet_report(HOSTVARS, hosts, generated_at="t%d" % index)
        report["slice"] = "s%d" % index
        # through JSON, as the merge reads the slices' files
        reports.append(json.loads(json.dumps(report)))
    return reports


def test_merged_slices_equal_the_unsliced_report():
    whole = json.loads(json.dumps(fleet.fleet_report(HOSTVARS, list(HOSTVARS), generated_at="t9")))
    merged = fleet.fleet_report_merge(slice_reports(), "t9")
    slices = merged.pop("slices")
    assert merged == whole
    assert merged["counts"] == {"ok": 2, "warn": 1, "crit": 2} and merged["verdict"] == "crit"
    assert [row["host"] for row in merged["hosts"]] == ["db1", "gone", "api1", "web2", "web1"]
    assert slices == [{"slice": "s0", "generated_at": "t0", "total": 2, "verdict": "crit"},
                      {"slice": "s1", "generated_at": "t1", "total": 1, "verdict": "crit"},
                      {"slice": "s2", "generated_at": "t2", "total": 2, "verdict": "warn"}]


def test_worst_verdict_and_time_stamp_come_from_all_slices():
    reports = slice_reports()
    merged = fleet.fleet_report_merge([reports[2], reports[0]])
    assert merged["verdict"] == "crit" and merged["total"] == 4 and merged["generated_at"] == "t2"
    only_ok = fleet.fleet_report_merge([fleet.fleet_report(HOSTVARS, ["web1"]), fleet.fleet_report(HOSTVARS, ["web2"])])
    assert only_ok["verdict"] == "ok" and only_ok["counts"] == {"ok": 2, "warn": 0, "crit": 0}


def test_a_host_in_two_slices_is_an_error_naming_it():
    reports = slice_reports()
    with pytest.raises(ValueError, match="host db1 is in slice s1 and in slice s1bis"):
        fleet.fleet_report_merge(reports + [dict(reports[1], slice="s1bis")])


@pytest.mark.parametrize("reports, message", [
    ([], "non-empty list of slice reports"),
    ("report.json", "non-empty list of slice reports"),
    ([{"total": 1}], "report 0 is not a fleet report"),
])
def test_bad_input_is_named(reports, message):
    with pytest.raises(ValueError, match=message):
        fleet.fleet_report_merge(reports)
