"""The restart budget: sliding window, backoff, escalation once per spent budget, transitions; real files, fake clock.

The last tests run the module through ansible itself (check mode, errors); they live here because test
files with one basename in two folders collide under pytest's default import mode.
"""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import restart_budget as restart_budget_utils
from ansible_collections.fleetops.health.plugins.module_utils.restart_budget import (
    BudgetInputError,
    Policy,
    RestartBudgetStore,
    parse_duration,
    run_operation,
)

DEFAULTS = {"max_restarts": 3, "window": "1h", "backoff": "0"}


class FakeClock(object):
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def run(state_dir, clock, action, services, defaults=None, save=True):
    """One module call: load, operate, save when changed; returns (results, store)."""
    store = RestartBudgetStore(str(state_dir), clock=clock, check_mode=not save)
    with store:
        results = run_operation(store, action, services, defaults or DEFAULTS)
    return results, store


@pytest.mark.parametrize("text, seconds", [(90, 90), ("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600),
                                           ("1d", 86400), ("1.5m", 90), (" 2 h ", 7200)])
def test_parse_duration_accepts_units(text, seconds):
    assert parse_duration(text, "window") == seconds


@pytest.mark.parametrize("text", ["", "1w", "ten", "-5", True, "5 minutes"])
def test_parse_duration_names_the_option(text):
    with pytest.raises(BudgetInputError, match="services\\[nginx\\].window"):
        parse_duration(text, "services[nginx].window")


def test_budget_is_spent_after_max_restarts_and_refills_as_the_window_passes(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 2, "window": "10m"}
    results = run(tmp_path, clock, "check", [policy])[0]
    assert results["nginx"]["allowed"] and results["nginx"]["budget_left"] == 2

    run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])
    clock.advance(60)
    run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])
    clock.advance(60)
    spent = run(tmp_path, clock, "check", [policy])[0]
    assert spent["nginx"]["allowed"] is False
    assert spent["nginx"]["blocked_by"] == "budget"
    assert spent["nginx"]["budget_left"] == 0
    # The first attempt (120 s ago) leaves the 600 s window in 480 s.
    assert spent["nginx"]["retry_after"] == 480

    clock.advance(479)
    assert run(tmp_path, clock, "check", [policy])[0]["nginx"]["allowed"] is False
    clock.advance(1)
    refilled = run(tmp_path, clock, "check", [policy])[0]
    assert refilled["nginx"]["allowed"] is True
    assert refilled["nginx"]["budget_left"] == 1
    assert refilled["nginx"]["attempts_in_window"] == 1


def test_backoff_blocks_until_it_has_elapsed_since_the_last_attempt(tmp_path, clock):
    policy = {"name": "api", "max_restarts": 5, "window": "1h", "backoff": "2m"}
    run(tmp_path, clock, "record", [dict(policy, result="verified")])
    clock.advance(30)
    status = run(tmp_path, clock, "check", [policy])[0]["api"]
    assert (status["allowed"], status["blocked_by"], status["retry_after"], status["budget_left"]) == (False, "backoff", 90, 4)
    clock.advance(90)
    assert run(tmp_path, clock, "check", [policy])[0]["api"]["allowed"] is True


def test_retry_after_is_the_later_of_backoff_and_refill(tmp_path, clock):
    policy = {"name": "api", "max_restarts": 1, "window": "100s", "backoff": "300s"}
    run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])
    status = run(tmp_path, clock, "check", [policy])[0]["api"]
    assert status["blocked_by"] == "budget"
    assert status["retry_after"] == 300


def test_zero_budget_never_allows_and_never_refills(tmp_path, clock):
    status = run(tmp_path, clock, "check", [{"name": "db", "max_restarts": 0}])[0]["db"]
    assert status["allowed"] is False and status["retry_after"] is None


def test_skips_do_not_use_budget(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 1}
    recorded = run(tmp_path, clock, "record", [dict(policy, result="skipped", reason="notify_only")])[0]["nginx"]
    assert recorded["budget_left"] == 1 and recorded["escalate"] is False
    assert recorded["last_result"]["result"] == "skipped"
    assert recorded["last_result"]["reason"] == "notify_only"


def test_escalates_once_when_the_last_restart_fails_then_not_again_while_spent(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 2, "window": "1h"}
    first = run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])[0]
    assert first["nginx"]["escalate"] is False
    clock.advance(60)
    second = run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])[0]
    assert second["nginx"]["escalate"] is True
    assert second["nginx"]["escalated_at"] == clock.now
    # Later runs can only skip; the human has been told already.
    for _attempt in range(3):
        clock.advance(60)
        skipped = run(tmp_path, clock, "record", [dict(policy, result="skipped")])[0]
        assert skipped["nginx"]["escalate"] is False


def test_a_skip_for_a_spent_budget_escalates_when_the_last_restart_had_verified(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 1}
    verified = run(tmp_path, clock, "record", [dict(policy, result="verified")])[0]["nginx"]
    assert verified["budget_left"] == 0 and verified["escalate"] is False
    clock.advance(120)
    skipped = run(tmp_path, clock, "record", [dict(policy, result="skipped", reason="budget spent")])[0]["nginx"]
    assert skipped["escalate"] is True


def test_a_new_episode_after_refill_escalates_again(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 1, "window": "10m", "backoff": "0"}
    assert run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])[0]["nginx"]["escalate"] is True
    clock.advance(600)
    assert run(tmp_path, clock, "check", [policy])[0]["nginx"]["allowed"] is True
    again = run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])[0]["nginx"]
    assert again["escalate"] is True


def test_a_skip_for_backoff_does_not_escalate(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 3, "backoff": "5m"}
    run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])
    clock.advance(10)
    assert run(tmp_path, clock, "record", [dict(policy, result="skipped")])[0]["nginx"]["escalate"] is False


def test_observe_reports_transitions_and_recovery_without_action(tmp_path, clock):
    first, store = run(tmp_path, clock, "observe", [{"name": "nginx", "state": "up"}])
    assert first["nginx"]["transition"] is None and first["nginx"]["previous_state"] is None
    assert store.changed

    clock.advance(10)
    same, store = run(tmp_path, clock, "observe", [{"name": "nginx", "state": "up"}])
    assert same["nginx"]["transition"] is None and store.changed is False

    clock.advance(10)
    down = run(tmp_path, clock, "observe", [{"name": "nginx", "state": "down"}])[0]["nginx"]
    assert down["transition"] == "failed" and down["previous_state"] == "up"

    clock.advance(42)
    up = run(tmp_path, clock, "observe", [{"name": "nginx", "state": "up"}])[0]["nginx"]
    assert up["transition"] == "recovered"
    assert up["down_for"] == 42
    assert up["recovered_without_action"] is True
    assert up["state_since"] == clock.now


def test_a_verified_restart_is_a_recovery_by_action(tmp_path, clock):
    run(tmp_path, clock, "observe", [{"name": "nginx", "state": "down"}])
    clock.advance(5.3)
    recorded = run(tmp_path, clock, "record", [{"name": "nginx", "result": "verified"}])[0]["nginx"]
    assert recorded["transition"] == "recovered"
    assert recorded["recovered_without_action"] is False
    assert recorded["down_for"] == 5.3
    assert recorded["state"] == "up"


def test_a_recovery_ends_the_escalation_episode(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 1, "window": "1h"}
    run(tmp_path, clock, "observe", [dict(policy, state="up")])
    clock.advance(1)
    assert run(tmp_path, clock, "record", [dict(policy, result="failed_verify")])[0]["nginx"]["escalate"] is True
    clock.advance(60)
    assert run(tmp_path, clock, "observe", [dict(policy, state="up")])[0]["nginx"]["escalated_at"] is None
    clock.advance(60)
    run(tmp_path, clock, "observe", [dict(policy, state="down")])
    # Still inside the window, the budget is spent: the new failure is a new episode for a human.
    assert run(tmp_path, clock, "record", [dict(policy, result="skipped")])[0]["nginx"]["escalate"] is True


def test_record_is_atomic_json_and_keeps_other_services(tmp_path, clock):
    run(tmp_path, clock, "observe", [{"name": "api", "state": "up"}])
    run(tmp_path, clock, "record", [{"name": "nginx", "result": "verified", "reason": "unit failed"}])
    with open(os.path.join(str(tmp_path), "budgets.json")) as handle:
        saved = json.load(handle)
    assert set(saved["services"]) == {"api", "nginx"}
    assert saved["services"]["nginx"]["last_result"]["reason"] == "unit failed"
    assert [name for name in os.listdir(str(tmp_path)) if name.endswith(".tmp")] == []


def test_attempts_outside_the_window_are_pruned_on_write(tmp_path, clock):
    policy = {"name": "nginx", "max_restarts": 5, "window": "10m"}
    run(tmp_path, clock, "record", [dict(policy, result="verified")])
    clock.advance(601)
    run(tmp_path, clock, "record", [dict(policy, result="verified")])
    with open(os.path.join(str(tmp_path), "budgets.json")) as handle:
        assert json.load(handle)["services"]["nginx"]["attempts"] == [clock.now]


def test_read_only_load_writes_nothing(tmp_path, clock):
    state_dir = tmp_path / "remediate"
    results, store = run(state_dir, clock, "record", [{"name": "nginx", "result": "failed_verify"}], save=False)
    assert store.changed is True
    assert results["nginx"]["budget_left"] == 2
    assert not state_dir.exists()


def test_read_only_load_leaves_a_corrupt_file_in_place(tmp_path, clock):
    path = tmp_path / "budgets.json"
    path.write_text("{not json")
    results, store = run(tmp_path, clock, "check", [{"name": "nginx"}], save=False)
    assert results["nginx"]["allowed"] is True
    assert "corrupt" in store.warnings[0]
    assert path.read_text() == "{not json"


def test_a_corrupt_file_is_moved_aside_with_a_warning(tmp_path, clock):
    (tmp_path / "budgets.json").write_text("[1, 2")
    store = run(tmp_path, clock, "observe", [{"name": "nginx", "state": "up"}])[1]
    assert "moved it to" in store.warnings[0]
    assert any(name.startswith("budgets.json.corrupt-") for name in os.listdir(str(tmp_path)))
    assert json.loads((tmp_path / "budgets.json").read_text())["services"]["nginx"]["state"] == "up"


@pytest.mark.parametrize("action, services, message", [
    ("check", [{"name": ""}], r"services\[0\].name"),
    ("check", [{"name": "a"}, {"name": "a"}], "appears twice"),
    ("record", [{"name": "a"}], r"services\[a\].result"),
    ("observe", [{"name": "a", "state": "sideways"}], r"services\[a\].state"),
    ("check", [{"name": "a", "max_restarts": -1}], r"services\[a\].max_restarts"),
    ("check", [{"name": "a", "window": "0"}], r"services\[a\].window"),
    ("restart", [{"name": "a"}], "action"),
])
def test_bad_input_names_the_field(tmp_path, clock, action, services, message):
    with pytest.raises(BudgetInputError, match=message):
        run(tmp_path, clock, action, services)


def test_policy_from_options_uses_seconds():
    policy = Policy.from_options("nginx", "4", "2h", "90s")
    assert (policy.max_restarts, policy.window, policy.backoff) == (4, 7200, 90)


# The module through ansible itself.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
# The directory that holds ansible_collections/fleetops/health as this test imported it: the dev symlink
# in a checkout, or the installed tree when `make unit` runs there.
COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(restart_budget_utils.__file__), *[".."] * 5))
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")


def ansible_module(args, check=False):
    env = dict(os.environ,
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT,
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    command = [ANSIBLE, "localhost", "-m", "fleetops.health.restart_budget", "-a", json.dumps(args)]
    if check:
        command.append("--check")
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    # "localhost | CHANGED => {...}" or "localhost | FAILED! => {...}": the result is the JSON after the arrow.
    status, result = completed.stdout.split("=>", 1)
    return dict(json.loads(result), failed="FAILED!" in status)


@pytest.mark.skipif(not os.path.exists(ANSIBLE), reason="ansible is not in the venv")
def test_check_mode_reports_the_change_and_writes_nothing(tmp_path):
    state_dir = tmp_path / "remediate"
    args = {"action": "record", "state_dir": str(state_dir), "max_restarts": 1,
            "services": [{"name": "nginx", "result": "failed_verify"}]}
    planned = ansible_module(args, check=True)
    assert planned["changed"] is True
    assert planned["escalations"] == ["nginx"]
    assert not state_dir.exists()

    done = ansible_module(args)
    assert done["changed"] is True and done["escalations"] == ["nginx"]
    assert json.loads((state_dir / "budgets.json").read_text())["services"]["nginx"]["state"] == "down"

    unchanged = ansible_module({"action": "observe", "state_dir": str(state_dir),
                                "services": [{"name": "nginx", "state": "down"}]})
    assert unchanged["changed"] is False and unchanged["went_down"] == []


@pytest.mark.skipif(not os.path.exists(ANSIBLE), reason="ansible is not in the venv")
def test_unwritable_state_dir_fails_naming_the_option(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ansible_module({"action": "check", "state_dir": str(blocker / "sub"), "services": [{"name": "nginx"}]})
    assert result["failed"] is True
    assert "state_dir" in result["msg"]
