# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Up/down state per probe target from consecutive counts, kept between runs in a JSON state file.

The rule: ``unhealthy_threshold`` consecutive failed runs mark an up target down (transition
``failed``); ``healthy_threshold`` consecutive good runs mark a down target up (``recovered``).

A target seen for the first time starts **up with both counts at 0**. It is therefore reported down
only after ``unhealthy_threshold`` failed runs, even when it never worked, and it then emits exactly one
``failed`` transition, which is what remediation listens for. Starting it down, or deciding from its
first run, would either never emit ``failed`` for an endpoint that was broken when it was added, or
emit one for a single blip. One run is one observation: the retries inside a run do not count extra.
"""

from __future__ import annotations

import os
import time

from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    LOCK_TIMEOUT,
    StateDir,
    StateSchema,
    count,
    locked_state,
    map_of,
    nullable,
    number,
    one_of,
    record,
    text,
)

STATE_VERSION = 1
UP = "up"
DOWN = "down"
FAILED = "failed"
RECOVERED = "recovered"

SCHEMA = StateSchema(
    STATE_VERSION,
    record(required={"targets": map_of(record(optional={
        "state": one_of(UP, DOWN), "consecutive_ok": count, "consecutive_fail": count,
        "endpoint": nullable(text), "changed_at": nullable(number)}))}),
    empty=lambda: {"targets": {}},
)


def fresh_entry():
    return dict(state=UP, consecutive_ok=0, consecutive_fail=0, endpoint=None, changed_at=None)


def advance(entry, ok, healthy_threshold, unhealthy_threshold, now):
    """Return ``(new_entry, transition)`` after one observation ``ok`` of a target."""
    entry = dict(entry)
    if ok:
        entry["consecutive_ok"] += 1
        entry["consecutive_fail"] = 0
    else:
        entry["consecutive_fail"] += 1
        entry["consecutive_ok"] = 0
    transition = None
    if entry["state"] == UP and entry["consecutive_fail"] >= unhealthy_threshold:
        entry["state"], transition = DOWN, FAILED
    elif entry["state"] == DOWN and entry["consecutive_ok"] >= healthy_threshold:
        entry["state"], transition = UP, RECOVERED
    if transition:
        entry["changed_at"] = now
    return entry, transition


def apply_without_state(results):
    """No state file: each result's state is simply its own outcome, with no transitions."""
    for result in results:
        result.update(state=UP if result["ok"] else DOWN, transition=None,
                      consecutive_ok=1 if result["ok"] else 0, consecutive_fail=0 if result["ok"] else 1)
    return results


class ProbeStateStore(object):
    """Owns one state file. ``preflight()`` before probing proves the folder usable; ``record(results,
    endpoints)`` after it reads, applies and writes the file under its lock (check mode: reads only).

    Entries of targets absent from this run are kept untouched, so several plays may share one file, and
    runs at the same moment lose nothing: each re-reads the file under the lock.
    """

    def __init__(self, path, healthy_threshold=2, unhealthy_threshold=3, check_mode=False, lock_timeout=LOCK_TIMEOUT):
        if healthy_threshold < 1 or unhealthy_threshold < 1:
            raise ValueError("healthy_threshold and unhealthy_threshold must be 1 or more")
        self.path = os.path.abspath(path)
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.check_mode = check_mode
        self.lock_timeout = lock_timeout

    def preflight(self):
        """Fail (StateDirError naming state_file) before the probes run when the state could not be kept."""
        with StateDir(os.path.dirname(self.path), "state_file", self.check_mode) as folder:
            fd = folder.open_file(os.path.basename(self.path))
            if fd is not None:
                os.close(fd)

    def record(self, results, endpoints):
        """Add state, transition and counts to each result (``endpoints`` maps name to endpoint) and keep them;
        returns the warnings (a corrupt file moved aside)."""
        with locked_state(self.path, "state_file", SCHEMA, self.check_mode, self.lock_timeout) as state:
            apply_to(state.data["targets"], results, endpoints, self.healthy_threshold, self.unhealthy_threshold)
            state.save()
            return state.warnings


def apply_to(targets, results, endpoints, healthy_threshold, unhealthy_threshold, now=None):
    """Advance ``targets`` (name -> entry) by one observation per result and copy the outcome into each result."""
    now = int(time.time()) if now is None else now
    for result in results:
        entry = targets.get(result["name"])
        if entry is None or entry.get("endpoint") != endpoints[result["name"]]:
            entry = dict(fresh_entry(), endpoint=endpoints[result["name"]])
        entry, transition = advance(dict(fresh_entry(), **entry), result["ok"], healthy_threshold, unhealthy_threshold,
                                    now)
        targets[result["name"]] = entry
        result.update(state=entry["state"], transition=transition, consecutive_ok=entry["consecutive_ok"],
                      consecutive_fail=entry["consecutive_fail"])
    return results
