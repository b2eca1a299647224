"""Consecutive-count thresholds and transitions, over successive runs that go through the state file."""
import json
import os

import pytest

from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError
from ansible_collections.fleetops.health.plugins.module_utils.probe_state import (
    ProbeStateStore, advance, apply_without_state, fresh_entry)


def run_sequence(outcomes, healthy=2, unhealthy=3):
    entry, seen = fresh_entry(), []
    for ok in outcomes:
        entry, transition = advance(entry, ok, healthy, unhealthy, now=0)
        seen.append((entry["state"], transition))
    return seen


def test_new_target_starts_up_and_goes_down_after_threshold_failures():
    assert run_sequence([False, False, False, False]) == [
        ("up", None), ("up", None), ("down", "failed"), ("down", None)]


def test_down_target_recovers_after_healthy_threshold_successes():
    assert run_sequence([False] * 3 + [True, False, True, True, True])[3:] == [
        ("down", None), ("down", None), ("down", None), ("up", "recovered"), ("up", None)]


def test_flapping_below_threshold_never_goes_down():
    assert all(state == "up" and transition is None
               for state, transition in run_sequence([False, False, True, False, False, True, False]))


def test_threshold_of_one_follows_every_change():
    assert run_sequence([False, True, False], healthy=1, unhealthy=1) == [
        ("down", "failed"), ("up", "recovered"), ("down", "failed")]


def test_without_state_file_state_follows_ok():
    results = apply_without_state([dict(ok=True), dict(ok=False)])
    assert [(r["state"], r["transition"], r["consecutive_ok"], r["consecutive_fail"]) for r in results] == [
        ("up", None, 1, 0), ("down", None, 0, 1)]


def one_run(path, outcomes, endpoints=None, healthy=2, unhealthy=3, save=True):
    """One module run: record ``outcomes`` ({name: ok}) under the lock; ``save=False`` is check mode."""
    store = ProbeStateStore(str(path), healthy, unhealthy, check_mode=not save)
    results = [dict(name=name, ok=ok) for name, ok in outcomes.items()]
    warnings = store.record(results, endpoints or dict((name, "http://%s/" % name) for name in outcomes))
    assert len(warnings) <= 1
    return (dict((r["name"], (r["state"], r["transition"], r["consecutive_ok"], r["consecutive_fail"])) for r in results),
            warnings[0] if warnings else None)


def test_counts_persist_between_runs(tmp_path):
    path = tmp_path / "probe_state.json"
    runs = [one_run(path, {"api": False, "db": True})[0] for _run in range(3)]
    assert [run["api"] for run in runs] == [("up", None, 0, 1), ("up", None, 0, 2), ("down", "failed", 0, 3)]
    assert runs[-1]["db"] == ("up", None, 3, 0)
    assert [one_run(path, {"api": True})[0]["api"] for _run in range(2)] == [
        ("down", None, 1, 0), ("up", "recovered", 2, 0)]
    saved = json.loads(path.read_text())
    assert saved["version"] == 1 and set(saved["targets"]) == {"api", "db"}  # db kept though absent from the last runs
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_unsaved_run_reports_transition_but_leaves_file(tmp_path):
    path = tmp_path / "probe_state.json"
    for _run in range(2):
        one_run(path, {"api": False})
    before = path.read_bytes()
    assert one_run(path, {"api": False}, save=False)[0]["api"] == ("down", "failed", 0, 3)
    assert path.read_bytes() == before
    assert one_run(path, {"api": False})[0]["api"] == ("down", "failed", 0, 3)


def test_changed_endpoint_restarts_counts(tmp_path):
    path = tmp_path / "probe_state.json"
    for _run in range(2):
        one_run(path, {"api": False})
    moved = one_run(path, {"api": False}, endpoints={"api": "http://new-host/"})[0]["api"]
    assert moved == ("up", None, 0, 1)


@pytest.mark.parametrize("content, aside_prefix", [
    (b"{truncated", "probe_state.json.corrupt-"),
    (b'{"offsets": {"a": 1}}', "probe_state.json.corrupt-"),
])
def test_unreadable_state_is_moved_aside_with_warning_and_run_continues(tmp_path, content, aside_prefix):
    path = tmp_path / "probe_state.json"
    path.write_bytes(content)
    states, warning = one_run(path, {"api": False})
    assert states["api"] == ("up", None, 0, 1)
    assert "moved it to" in warning
    aside = [name for name in os.listdir(str(tmp_path)) if name.startswith(aside_prefix)]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == content
    assert json.loads(path.read_text())["targets"]["api"]["consecutive_fail"] == 1


def test_thresholds_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="healthy_threshold"):
        ProbeStateStore(str(tmp_path / "s.json"), 0, 3)


def test_a_folder_where_the_file_should_be_names_state_file(tmp_path):
    (tmp_path / "a_dir.json").mkdir()
    store = ProbeStateStore(str(tmp_path / "a_dir.json"))
    with pytest.raises(StateDirError, match="^state_file: .*a_dir.json is a folder where a file should be"):
        store.preflight()
    with pytest.raises(StateDirError, match="^state_file: .*a_dir.json is a folder where a file should be"):
        store.record([dict(name="api", ok=True)], {"api": "http://api/"})


def test_a_missing_folder_is_created_0700_and_not_in_check_mode(tmp_path):
    ProbeStateStore(str(tmp_path / "checked" / "probe_state.json"), check_mode=True).preflight()
    assert not (tmp_path / "checked").exists()
    one_run(tmp_path / "made" / "probe_state.json", {"api": True})
    assert oct((tmp_path / "made").stat().st_mode & 0o777) == oct(0o700)
