# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restart budget kept on the host: attempts in a sliding window, last result and last known state per service.

One JSON file (``<state_dir>/budgets.json``) holds every service of the host, so one call reads and writes
it once. The budget is a circuit breaker: once ``max_restarts`` attempts fall inside ``window`` seconds,
no restart is allowed until the oldest one leaves the window. An escalation is due once per spent budget.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    LOCK_TIMEOUT,
    StateDir,
    StateFile,
    StateSchema,
    list_of,
    map_of,
    nullable,
    number,
    one_of,
    record,
    text,
)
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

STATE_FILE_NAME = "budgets.json"
STATE_VERSION = 1
ACTIONS = ("check", "record", "observe")
RESULTS = ("verified", "failed_verify", "skipped")
STATES = ("up", "down")

SCHEMA = StateSchema(
    STATE_VERSION,
    record(required={"services": map_of(record(optional={
        "attempts": list_of(number),
        "state": nullable(one_of(*STATES)),
        "state_since": nullable(number),
        "escalated_at": nullable(number),
        "last_result": nullable(record(required={"result": one_of(*RESULTS), "at": number},
                                       optional={"reason": nullable(text)})),
    }))}),
    empty=lambda: {"services": {}},
)
# A verification proves the state the service is in; a skip proves nothing.
STATE_AFTER_RESULT = {"verified": "up", "failed_verify": "down"}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# The documented ranges: a window or backoff of at most a year, at most 1000 restarts in a window.
MAX_DURATION = 365 * 86400
MAX_RESTARTS = 1000


class BudgetInputError(ValueError):
    """A service entry or option is malformed; the message names it and the fix."""


def parse_duration(value, option_name):
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"15m"``, ``"1h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise BudgetInputError("%s: %r is not a duration; use seconds or a number with s, m, h or d" % (option_name, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise BudgetInputError("%s: %r is not a duration; use seconds or a number with s, m, h or d (e.g. 15m)"
                                   % (option_name, value))
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise BudgetInputError("%s: %r is negative; use 0 or more seconds" % (option_name, value))
    try:
        # A 400-digit window is infinite as a float: refuse it here, not with an OverflowError later.
        return check_number(seconds, option_name, 0, MAX_DURATION)
    except OptionError:
        raise BudgetInputError("%s: %s is longer than the longest allowed, 365d (%d seconds)"
                               % (option_name, _shorten(value), MAX_DURATION))


def _shorten(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Policy(object):
    """How many restarts a service may have in a window, and the least gap between two of them."""

    def __init__(self, max_restarts, window, backoff):
        self.max_restarts = max_restarts
        self.window = window
        self.backoff = backoff

    @classmethod
    def from_options(cls, service_name, max_restarts, window, backoff):
        where = "services[%s]" % service_name
        try:
            max_restarts = int(max_restarts)
        except (TypeError, ValueError):
            raise BudgetInputError("%s.max_restarts: %r is not a whole number" % (where, max_restarts))
        if max_restarts < 0:
            raise BudgetInputError("%s.max_restarts: %d is negative; use 0 (never restart) or more" % (where, max_restarts))
        if max_restarts > MAX_RESTARTS:
            raise BudgetInputError("%s.max_restarts: %s is more than %d; a budget that large never stops a restart loop"
                                   % (where, _shorten(max_restarts), MAX_RESTARTS))
        window = parse_duration(window, where + ".window")
        if window <= 0:
            raise BudgetInputError("%s.window: must be longer than 0 seconds" % where)
        return cls(max_restarts, window, parse_duration(backoff, where + ".backoff"))


def _round(seconds):
    """Whole seconds stay ints; others keep one decimal, so facts stay small and stable."""
    value = round(seconds, 1)
    return int(value) if value == int(value) else value


def attempts_in_window(entry, policy, now):
    """The attempt timestamps that still count against the budget, oldest first."""
    return sorted(at for at in entry.get("attempts", []) if now - at < policy.window)


def budget_status(entry, policy, now):
    """Whether a restart is allowed now, how much budget is left and when the next one would be allowed."""
    attempts = attempts_in_window(entry, policy, now)
    budget_left = max(policy.max_restarts - len(attempts), 0)
    blocked_by = None
    retry_after = 0
    if attempts and now - attempts[-1] < policy.backoff:
        blocked_by = "backoff"
        retry_after = attempts[-1] + policy.backoff - now
    if budget_left == 0:
        blocked_by = "budget"
        if policy.max_restarts == 0:
            # A budget of zero never refills: this service is never restarted.
            retry_after = None
        else:
            # The budget refills when the attempt that used its last unit leaves the window.
            refill = attempts[len(attempts) - policy.max_restarts] + policy.window - now
            retry_after = max(refill, retry_after)
    return {
        "allowed": blocked_by is None,
        "blocked_by": blocked_by,
        "budget_left": budget_left,
        "max_restarts": policy.max_restarts,
        "window": _round(policy.window),
        "backoff": _round(policy.backoff),
        "attempts_in_window": len(attempts),
        "retry_after": None if retry_after is None else _round(retry_after),
    }


class RestartBudgetStore(object):
    """Owns ``<state_dir>/budgets.json``. ``with store:`` locks and loads it; the operations then work on what
    is on disk now, so a ``record`` never counts against a stale budget, and leaving the block saves once
    (atomically, and never in check mode) if anything changed. Runs at the same moment take turns."""

    def __init__(self, state_dir, clock=time.time, check_mode=False, lock_timeout=LOCK_TIMEOUT):
        self.state_dir = state_dir
        self.path = os.path.join(os.path.abspath(state_dir), STATE_FILE_NAME)
        self.clock = clock
        self.check_mode = check_mode
        self.lock_timeout = lock_timeout
        self.services = {}
        self.changed = False
        self.warnings = []
        self._state = None

    def __enter__(self):
        folder = StateDir(self.state_dir, "state_dir", self.check_mode)
        self._state = StateFile(folder, STATE_FILE_NAME, SCHEMA, lock_timeout=self.lock_timeout).open()
        self.warnings.extend(self._state.warnings)
        self.services = self._state.data["services"]
        return self

    def __exit__(self, exc_type, *exc_info):
        try:
            if exc_type is None:
                self._state.save()
        finally:
            self._state.__exit__(exc_type, *exc_info)
            self._state = None

    def _entry(self, name):
        return self.services.get(name, {})

    def _put(self, name, entry):
        if self.services.get(name) != entry:
            self.services[name] = entry
            self.changed = True

    def _describe(self, name, entry, policy, now):
        described = {
            "service": name,
            "state": entry.get("state"),
            "state_since": entry.get("state_since"),
            "last_result": entry.get("last_result"),
            "escalated_at": entry.get("escalated_at"),
        }
        if policy is not None:
            described.update(budget_status(entry, policy, now))
        return described

    def check(self, name, policy):
        now = self.clock()
        return self._describe(name, self._entry(name), policy, now)

    def record(self, name, policy, result, reason=None):
        """Store one remediation outcome; returns the budget after it and whether to escalate now."""
        now = self.clock()
        entry = dict(self._entry(name))
        attempts = attempts_in_window(entry, policy, now)
        if result != "skipped":
            # An attempt means the budget had room, so any earlier escalation belongs to a finished episode.
            attempts.append(now)
            entry.pop("escalated_at", None)
        entry["attempts"] = attempts
        entry["last_result"] = {"result": result, "at": now, "reason": reason}
        status = budget_status(entry, policy, now)
        spent = status["budget_left"] == 0
        # A human is needed when the last restart we could make failed, or when we had to skip
        # because restarts stopped helping; say it once per spent budget, not on every run.
        escalate = spent and result != "verified" and not entry.get("escalated_at")
        if escalate:
            entry["escalated_at"] = now
        elif not spent:
            entry.pop("escalated_at", None)
        transition = self._set_state(entry, STATE_AFTER_RESULT.get(result), now)
        self._put(name, entry)
        described = self._describe(name, entry, policy, now)
        described.update(transition)
        described["escalate"] = escalate
        return described

    def observe(self, name, state, policy=None):
        """Store the state seen now; report ``recovered`` (down to up) or ``failed`` (up to down)."""
        now = self.clock()
        entry = dict(self._entry(name))
        transition = self._set_state(entry, state, now)
        if transition["transition"] == "recovered":
            entry.pop("escalated_at", None)
        self._put(name, entry)
        described = self._describe(name, entry, policy, now)
        described.update(transition)
        return described

    @staticmethod
    def _set_state(entry, state, now):
        previous = entry.get("state")
        previous_since = entry.get("state_since")
        outcome = {"previous_state": previous, "transition": None, "down_for": None, "recovered_without_action": None}
        if state is None or state == previous:
            return outcome
        entry["state"] = state
        entry["state_since"] = now
        if previous is None:
            # A first sighting is no transition: we do not know what came before.
            return outcome
        if state == "up":
            outcome["transition"] = "recovered"
            outcome["down_for"] = _round(now - previous_since) if previous_since is not None else None
            acted = any(at >= (previous_since or 0) for at in entry.get("attempts", []))
            outcome["recovered_without_action"] = not acted
        else:
            outcome["transition"] = "failed"
        return outcome


def run_operation(store, action, services, defaults):
    """Apply ``action`` to every entry of ``services``; returns ``{name: result}`` in input order.

    ``defaults`` carries max_restarts, window and backoff for entries that do not set them.
    """
    if action not in ACTIONS:
        raise BudgetInputError("action: %r is not one of %s" % (action, ", ".join(ACTIONS)))
    seen = set()
    results = {}
    for index, item in enumerate(services):
        name = item.get("name")
        if not name:
            raise BudgetInputError("services[%d].name: every service needs a name" % index)
        if name in seen:
            raise BudgetInputError("services[%d].name: %s appears twice; give each service one entry" % (index, name))
        seen.add(name)
        policy = Policy.from_options(
            name,
            _pick(item, defaults, "max_restarts"),
            _pick(item, defaults, "window"),
            _pick(item, defaults, "backoff"),
        )
        if action == "check":
            results[name] = store.check(name, policy)
        elif action == "record":
            result = item.get("result")
            if result not in RESULTS:
                raise BudgetInputError("services[%s].result: %r must be one of %s with action=record"
                                       % (name, result, ", ".join(RESULTS)))
            results[name] = store.record(name, policy, result, item.get("reason"))
        else:
            state = item.get("state")
            if state not in STATES:
                raise BudgetInputError("services[%s].state: %r must be up or down with action=observe" % (name, state))
            results[name] = store.observe(name, state, policy)
    return results


def _pick(item, defaults, key):
    value = item.get(key)
    return defaults[key] if value is None else value
