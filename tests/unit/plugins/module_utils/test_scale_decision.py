"""Scale decisions: streaks over runs, bounds, cooldowns, and each provider's plan (kubernetes included)."""
import pytest

from ansible_collections.fleetops.health.plugins.module_utils.scale_decision import (
    ScaleInputError,
    ScalePolicy,
    average_score,
    decide,
    provider_plan,
)


def policy(**overrides):
    values = dict(scale_out_above=80, scale_in_below=20, consecutive=3, step=1, min_count=1, max_count=4,
                  cooldown_out=300, cooldown_in=1800)
    values.update(overrides)
    return ScalePolicy(**values)


def runs(sequence, current=2, start=1000.0, every=60.0, **overrides):
    """Feed one score list per run through decide, carrying state and count; return every decision."""
    state, decisions, now = {}, [], start
    for scores in sequence:
        decision, state = decide(state, scores, current, policy(**overrides), now)
        decisions.append(decision)
        current = decision["target"]
        now += every
    return decisions


def test_average_ignores_hosts_without_a_score():
    assert average_score([90, None, 70]) == 80
    assert average_score([None]) is None


def test_scales_out_after_k_consecutive_high_runs_only():
    decisions = runs([[90, 85], [95, 90], [91, 88]])
    assert [d["action"] for d in decisions] == ["hold", "hold", "scale_out"]
    assert decisions[-1]["target"] == 3
    assert "above 80 for 3 runs" in decisions[-1]["reason"]


def test_a_dip_resets_the_streak():
    decisions = runs([[90], [90], [50], [90], [90]])
    assert all(d["action"] == "hold" for d in decisions)
    assert decisions[-1]["high_streak"] == 2


def test_cooldown_holds_the_next_scale_out_and_says_how_long():
    decisions = runs([[90]] * 6, every=60)
    assert [d["action"] for d in decisions] == ["hold", "hold", "scale_out", "hold", "hold", "hold"]
    # The streak restarts after an action: three more high runs, and then the 300 s cooldown still has 120 s.
    assert "cooldown 300s" in decisions[5]["reason"] and decisions[5]["cooldown_left"] == 120


def test_scale_in_is_symmetric_with_its_longer_cooldown():
    decisions = runs([[10]] * 6, current=3, every=500)
    assert [d["action"] for d in decisions] == ["hold", "hold", "scale_in", "hold", "hold", "hold"]
    assert decisions[2]["target"] == 2
    assert "cooldown 1800s" in decisions[5]["reason"] and decisions[5]["cooldown_left"] == 300


def test_bounds_clip_the_step_and_hold_at_the_edge():
    decisions = runs([[99]] * 3, current=4)
    assert decisions[-1]["action"] == "hold" and "already at max_count 4" in decisions[-1]["reason"]
    clipped = runs([[99]] * 3, current=3, step=5)
    assert clipped[-1]["target"] == 4


def test_a_count_outside_the_bounds_is_corrected_at_once():
    decision = runs([[50]], current=0)[0]
    assert (decision["action"], decision["target"]) == ("scale_out", 1)
    decision = runs([[50]], current=7)[0]
    assert (decision["action"], decision["target"]) == ("scale_in", 4)


def test_no_scores_keep_the_streak_and_hold():
    state = {"high_streak": 2, "low_streak": 0}
    decision, new_state = decide(state, [None, None], 2, policy(), 5000.0)
    assert decision["action"] == "hold" and "no host" in decision["reason"]
    assert new_state["high_streak"] == 2


@pytest.mark.parametrize("overrides, message", [
    ({"scale_in_below": 90}, "flap"),
    ({"consecutive": 0}, "consecutive"),
    ({"step": 0}, "step"),
    ({"min_count": 5}, "min_count"),
    ({"cooldown_in": -1}, "cooldown"),
])
def test_bad_policies_name_the_value(overrides, message):
    with pytest.raises(ScaleInputError, match=message):
        policy(**overrides)


def test_systemd_instances_plan_starts_and_stops_numbered_instances():
    out = provider_plan("systemd_instances", {"current": 2, "target": 4}, unit_template="worker")
    assert out == {"start": ["worker@3.service", "worker@4.service"], "stop": []}
    back = provider_plan("systemd_instances", {"current": 4, "target": 3}, unit_template="worker")
    assert back == {"start": [], "stop": ["worker@4.service"]}
    with pytest.raises(ScaleInputError, match="unit_template"):
        provider_plan("systemd_instances", {"current": 1, "target": 2}, unit_template="worker@")


def test_standby_pool_activates_idle_hosts_and_returns_the_last_activated_first():
    active = ["web-1", "web-2", "spare-1"]
    out = provider_plan("standby_pool", {"current": 3, "target": 4}, active, ["spare-1", "spare-2", "spare-3"])
    assert out["activate"] == ["spare-2"] and out["members"] == ["web-1", "web-2", "spare-1", "spare-2"]
    back = provider_plan("standby_pool", {"current": 4, "target": 2}, active + ["spare-2"], ["spare-1", "spare-2"])
    assert back["deactivate"] == ["spare-2", "spare-1"] and back["members"] == ["web-1", "web-2"]
    with pytest.raises(ScaleInputError, match="only 1 standby"):
        provider_plan("standby_pool", {"current": 3, "target": 5}, active, ["spare-1", "spare-2"])


def test_kubernetes_decision_path_ends_in_k8s_scale_arguments():
    decisions = runs([[92, 95, 88]] * 3, current=2, max_count=6, step=2)
    plan = provider_plan("kubernetes", decisions[-1], kubernetes_resource={
        "kind": "Deployment", "name": "api", "namespace": "shop"})
    assert plan == {"k8s_scale": {"kind": "Deployment", "name": "api", "namespace": "shop", "replicas": 4,
                                  "current_replicas": 2, "wait": True}}
    with pytest.raises(ScaleInputError, match="kubernetes_resource"):
        provider_plan("kubernetes", decisions[-1], kubernetes_resource={"kind": "Deployment"})


def test_unknown_provider_is_named():
    with pytest.raises(ScaleInputError, match="provider"):
        provider_plan("ec2", {"current": 1, "target": 2})
