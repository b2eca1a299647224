# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scale-out and scale-in decisions from a group's load scores, with streaks and cooldowns kept between runs.

A group scales out by ``step`` when its average score has stayed above ``scale_out_above`` for
``consecutive`` runs and the scale-out cooldown has passed; it scales in symmetrically below
``scale_in_below``, with its own (usually longer) cooldown. The count stays within ``min_count`` and
``max_count``. What a provider does with the target count is the provider's business; this module only
decides, and says why.
"""

from __future__ import annotations

import time

from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    LOCK_TIMEOUT,
    StateSchema,
    count,
    locked_state,
    map_of,
    nullable,
    number,
    one_of,
    record,
)

PROVIDERS = ("systemd_instances", "standby_pool", "kubernetes")
DECISIONS = ("scale_out", "scale_in", "hold")


class ScaleInputError(ValueError):
    """A policy value or an input is unusable; the message names it."""


class ScalePolicy(object):
    """Thresholds, streak length, step, bounds and cooldowns of one group."""

    def __init__(self, scale_out_above, scale_in_below, consecutive, step, min_count, max_count,
                 cooldown_out, cooldown_in):
        self.scale_out_above = float(scale_out_above)
        self.scale_in_below = float(scale_in_below)
        self.consecutive = int(consecutive)
        self.step = int(step)
        self.min_count = int(min_count)
        self.max_count = int(max_count)
        self.cooldown_out = float(cooldown_out)
        self.cooldown_in = float(cooldown_in)
        self.validate()

    def validate(self):
        if self.scale_in_below >= self.scale_out_above:
            raise ScaleInputError("scale_in_below (%g) must be lower than scale_out_above (%g), or the group would "
                                  "flap between the two" % (self.scale_in_below, self.scale_out_above))
        if self.consecutive < 1:
            raise ScaleInputError("consecutive must be 1 or more")
        if self.step < 1:
            raise ScaleInputError("step must be 1 or more")
        if not 0 <= self.min_count <= self.max_count:
            raise ScaleInputError("min_count (%d) and max_count (%d) must satisfy 0 <= min_count <= max_count"
                                  % (self.min_count, self.max_count))
        if self.cooldown_out < 0 or self.cooldown_in < 0:
            raise ScaleInputError("cooldown_out and cooldown_in must be 0 or more seconds")


def average_score(scores):
    """The group's mean score over the hosts that reported one; None when none did."""
    values = [float(score) for score in scores if score is not None]
    if not values:
        return None
    return round(sum(values) / len(values), 1)


def decide(state, scores, current, policy, now):
    """Return ``(decision, new_state)``.

    ``state`` is what the previous run stored (streak counts and the last action); ``decision`` is a dict
    with ``action`` (scale_out, scale_in or hold), ``current``, ``target``, ``average``, ``reason``,
    ``high_streak``, ``low_streak`` and ``cooldown_left``.
    """
    if current < 0:
        raise ScaleInputError("current: %d is negative" % current)
    average = average_score(scores)
    high = state.get("high_streak", 0)
    low = state.get("low_streak", 0)
    if average is None:
        # No score, no evidence: keep the streaks as they are rather than reset or extend them.
        pass
    elif average > policy.scale_out_above:
        high, low = high + 1, 0
    elif average < policy.scale_in_below:
        high, low = 0, low + 1
    else:
        high, low = 0, 0
    since_last = None if state.get("last_action_at") is None else now - state["last_action_at"]

    action, target, reason, cooldown_left = "hold", current, None, 0
    if current < policy.min_count:
        action, target = "scale_out", policy.min_count
        reason = "%d is below min_count %d" % (current, policy.min_count)
    elif current > policy.max_count:
        action, target = "scale_in", policy.max_count
        reason = "%d is above max_count %d" % (current, policy.max_count)
    elif average is None:
        reason = "no host of the group reported a score"
    elif high >= policy.consecutive:
        action, target, reason, cooldown_left = _step(
            "scale_out", current, min(current + policy.step, policy.max_count), policy.cooldown_out, since_last,
            "average score %g above %g for %d runs" % (average, policy.scale_out_above, high),
            "already at max_count %d" % policy.max_count)
    elif low >= policy.consecutive:
        action, target, reason, cooldown_left = _step(
            "scale_in", current, max(current - policy.step, policy.min_count), policy.cooldown_in, since_last,
            "average score %g below %g for %d runs" % (average, policy.scale_in_below, low),
            "already at min_count %d" % policy.min_count)
    else:
        reason = "average score %g; %d of %d runs above %g, %d below %g" % (
            average, high, policy.consecutive, policy.scale_out_above, low, policy.scale_in_below)

    new_state = {"high_streak": high, "low_streak": low,
                 "last_action": state.get("last_action"), "last_action_at": state.get("last_action_at")}
    if action != "hold":
        # A scaling action starts a new streak: the next one needs fresh evidence from the new size.
        new_state.update(high_streak=0, low_streak=0, last_action=action, last_action_at=now)
    decision = {"action": action, "current": current, "target": target, "average": average, "reason": reason,
                "high_streak": high, "low_streak": low, "cooldown_left": round(cooldown_left, 1)}
    return decision, new_state


def _step(action, current, target, cooldown, since_last, why, at_bound):
    if target == current:
        return "hold", current, "%s, but %s" % (why, at_bound), 0
    if since_last is not None and since_last < cooldown:
        left = cooldown - since_last
        return "hold", current, "%s, but the last scaling was %ds ago (cooldown %ds)" % (
            why, since_last, cooldown), left
    return action, target, why, 0


def provider_plan(provider, decision, current_members=None, standby_members=None, unit_template=None,
                  kubernetes_resource=None):
    """What the provider has to do to reach ``decision['target']``, as plain data for the playbook.

    systemd_instances: the instance units to start and to stop (``worker@1`` .. ``worker@N``).
    standby_pool: the idle standby hosts to activate and the activated ones to return (last in, first out),
    and the members the load balancer's upstream should list.
    kubernetes: the arguments of kubernetes.core.k8s_scale.
    """
    if provider not in PROVIDERS:
        raise ScaleInputError("provider: %r is not one of %s" % (provider, ", ".join(PROVIDERS)))
    current, target = decision["current"], decision["target"]
    if provider == "systemd_instances":
        if not unit_template or "@" in unit_template:
            raise ScaleInputError("unit_template: give the template's name without '@', e.g. worker for worker@.service")
        return {
            "start": ["%s@%d.service" % (unit_template, index) for index in range(current + 1, target + 1)],
            "stop": ["%s@%d.service" % (unit_template, index) for index in range(target + 1, current + 1)],
        }
    if provider == "standby_pool":
        active = list(current_members or [])
        pool = list(standby_members or [])
        idle = [host for host in pool if host not in active]
        if target - current > len(idle):
            raise ScaleInputError("standby_pool: %d more host(s) needed but only %d standby host(s) are idle"
                                  % (target - current, len(idle)))
        activate = idle[:max(target - current, 0)]
        # Only hosts that came from the pool go back to it, the most recently activated first.
        deactivate = [host for host in reversed(active) if host in pool][:max(current - target, 0)]
        members = [host for host in active if host not in deactivate] + activate
        return {"activate": activate, "deactivate": deactivate, "members": members}
    resource = dict(kubernetes_resource or {})
    if not resource.get("name") or not resource.get("kind"):
        raise ScaleInputError("kubernetes_resource: give at least kind and name (and namespace) of what to scale")
    resource.update(replicas=target, current_replicas=current, wait=True)
    return {"k8s_scale": resource}


STATE_VERSION = 1


def _unversioned_groups(document):
    """Before version 1 the file was ``{group: state}``; every value of such a file is a group's state."""
    return {"groups": document}


STATE_SCHEMA = StateSchema(
    STATE_VERSION,
    record(required={"groups": map_of(record(optional={
        "high_streak": count, "low_streak": count,
        "last_action": nullable(one_of("scale_out", "scale_in")), "last_action_at": nullable(number)}))}),
    empty=lambda: {"groups": {}},
    migrate=_unversioned_groups,
)


def decide_and_keep(state_file, group, scores, current, policy, check_mode=False, lock_timeout=LOCK_TIMEOUT,
                    clock=time.time):
    """``decide`` for ``group`` with its streaks read from and written back to ``state_file`` under its lock, so
    groups decided at the same moment all keep their streaks. Returns ``(decision, changed, warnings)``."""
    with locked_state(state_file, "state_file", STATE_SCHEMA, check_mode, lock_timeout) as state:
        groups = state.data["groups"]
        previous = groups.get(group, {})
        decision, new_state = decide(previous, scores, current, policy, clock())
        changed = new_state != previous
        if changed:
            groups[group] = new_state
        state.save()
        return decision, changed, state.warnings
