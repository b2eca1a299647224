"""The sweep under job slicing: an inventory split into slices with --limit, as AWX splits it, one sweep per
slice, playbooks/report_merge.yml over their reports, compared with one unsliced sweep of the same hosts."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, ansible_env
from ansible_collections.fleetops.health.tests.unit.playbooks.test_sweep import INVENTORY

# test_sweep's fleet: web-01 and web-02 ok, db-01 crit by its own levels, cache-01 unreachable (crit).
SLICES = {"s1": "web-01,db-01", "s2": "web-02", "s3": "cache-01"}


def playbook(tmp_path, name, *extra):
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory.yml"), name] + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=ansible_env(),
                          timeout=180, cwd=str(tmp_path), check=False)


def comparable(report):
    """What must not depend on slicing: the counts, the verdicts and the ranking (numbers are measured anew)."""
    return {"total": report["total"], "counts": report["counts"], "verdict": report["verdict"],
            "unreachable": report["unreachable"], "thresholds": report["thresholds"],
            "hosts": [(row["host"], row["verdict"], row["reachable"]) for row in report["hosts"]]}


def test_three_slice_reports_merge_into_the_unsliced_report(tmp_path):
    (tmp_path / "inventory.yml").write_text(INVENTORY % {"python": sys.executable})
    sliced = tmp_path / "sliced"
    for name, hosts in SLICES.items():
        proc = playbook(tmp_path, "fleetops.health.sweep", "--limit", hosts, "-e", "sweep_report_dir=%s" % sliced,
                        "-e", "sweep_report_slice=%s" % name)
        assert proc.returncode == 0, proc.stdout
        assert "fleet report: %s/slice-%s/fleet-report.html" % (sliced, name) in proc.stdout
        report = json.loads((sliced / ("slice-" + name) / "fleet-report.json").read_text())
        assert report["slice"] == name and [row["host"] for row in report["hosts"]] != []
    html_of_slice = (sliced / "slice-s1" / "fleet-report.html").read_text()
    assert "in slice s1" in html_of_slice

    merge = playbook(tmp_path, "fleetops.health.report_merge", "-e", "sweep_report_dir=%s" % sliced,
                     "-e", "sweep_fail_on=crit")
    # The gate sees the whole fleet: db-01 and cache-01 are crit, in two different slices.
    assert merge.returncode == 2, merge.stdout
    assert "2 host(s) at crit or worse: cache-01, db-01" in merge.stdout or \
        "2 host(s) at crit or worse: db-01, cache-01" in merge.stdout, merge.stdout
    assert "fleet CRIT: 4 hosts, 2 crit, 0 warn, 2 ok, 1 without facts" in merge.stdout
    merged = json.loads((sliced / "fleet-report.json").read_text())
    assert [entry["slice"] for entry in merged["slices"]] == ["s1", "s2", "s3"]
    assert [entry["verdict"] for entry in merged["slices"]] == ["crit", "ok", "crit"]
    merged_html = (sliced / "fleet-report.html").read_text()
    assert "in 3 slices (s1, s2, s3)" in merged_html and merged_html.count('class="host') >= 4

    whole = tmp_path / "whole"
    proc = playbook(tmp_path, "fleetops.health.sweep", "-e", "sweep_report_dir=%s" % whole)
    assert proc.returncode == 0, proc.stdout
    # The sweep's fixed cost per host: the measure and one skipped include, whatever the inventory does not ask
    # for (every task a host runs or skips is a worker fork on the control node). The argument-spec check runs
    # once for the play, on the first host, not on web-02.
    assert re.search(r"web-02 +: ok=1 +changed=0 +unreachable=0 +failed=0 +skipped=1 ", proc.stdout), proc.stdout
    unsliced = json.loads((whole / "fleet-report.json").read_text())
    assert "slice" not in unsliced and not (whole / "slice-").exists()
    assert comparable(merged) == comparable(unsliced)
    assert merged["top_issues"] == unsliced["top_issues"]


def test_a_slice_name_that_is_not_a_plain_name_stops_the_sweep(tmp_path):
    (tmp_path / "inventory.yml").write_text(INVENTORY % {"python": sys.executable})
    proc = playbook(tmp_path, "fleetops.health.sweep", "--limit", "web-01", "-e", "sweep_report_dir=%s" % (tmp_path / "r"),
                    "-e", "sweep_report_slice=../escape")
    assert proc.returncode != 0
    assert "sweep_report_slice empty or a name of letters" in proc.stdout
    assert not (tmp_path / "escape").exists() and not (tmp_path / "r").exists()


def test_merge_without_slice_reports_says_what_to_run(tmp_path):
    (tmp_path / "inventory.yml").write_text(INVENTORY % {"python": sys.executable})
    proc = playbook(tmp_path, "fleetops.health.report_merge", "-e", "sweep_report_dir=%s" % (tmp_path / "empty"))
    assert proc.returncode != 0
    assert "no slice report under" in proc.stdout and "sweep_report_slice" in proc.stdout
