"""cgroup limits from captured v1/v2 layouts and the live hierarchy."""
from __future__ import annotations

import os

from ansible_collections.fleetops.health.plugins.module_utils import cgroup

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "host_resources")


def test_v1_captured_limits():
    result = cgroup.read_cgroup(os.path.join(FIXTURES, "cgroup_v1"))
    assert result == {"version": 1, "memory_limit": 536870912, "memory_usage": 638976,
                      "memory_percent": round(100.0 * 638976 / 536870912, 1), "cpu_quota_cores": 1.5,
                      "pids_limit": 256, "pids_current": 2}


def test_v1_unlimited_hybrid_with_comounted_cpu():
    result = cgroup.read_cgroup(os.path.join(FIXTURES, "cgroup_v1_unlimited"))
    assert result["version"] == 1
    assert result["memory_limit"] is None and result["memory_percent"] is None
    assert result["cpu_quota_cores"] is None
    assert result["memory_usage"] > 0


def test_v2_container_limits():
    result = cgroup.read_cgroup(os.path.join(FIXTURES, "cgroup_v2_container"))
    assert result == {"version": 2, "memory_limit": 536870912, "memory_usage": 402653184, "memory_percent": 75.0,
                      "cpu_quota_cores": 1.5, "pids_limit": None, "pids_current": 37}


def test_v2_true_root_has_no_limits():
    result = cgroup.read_cgroup(os.path.join(FIXTURES, "cgroup_v2_root"))
    assert result["version"] == 2
    assert all(result[key] is None for key in ("memory_limit", "memory_usage", "cpu_quota_cores", "pids_limit"))


def test_missing_hierarchy_is_error(tmp_path):
    assert cgroup.read_cgroup(str(tmp_path / "none")) == {"error": "no cgroup hierarchy found at %s" % (tmp_path / "none")}


def test_garbage_file_is_error_not_exception(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "memory.max").write_text("lots\n")
    assert "cannot read cgroup limits" in cgroup.read_cgroup(str(tmp_path))["error"]


def test_unreadable_file_is_error_not_unlimited(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "memory.max").mkdir()  # unreadable for root too
    assert "Is a directory" in cgroup.read_cgroup(str(tmp_path))["error"]


def test_live_hierarchy_reads():
    result = cgroup.read_cgroup()
    assert "error" not in result
    assert result["version"] in (1, 2)
