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

from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError, atomic_write_json, load_json_state

STATE_VERSION = 1
UP = "up"
DOWN = "down"
FAILED = "failed"
RECOVERED = "recovered"


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
    """Owns one state file: ``load()``, ``apply(results, endpoints)``, then ``save()`` unless in check mode.

    Entries of targets absent from this run are kept untouched, so several plays may share one file.
    """

    def __init__(self, path, healthy_threshold=2, unhealthy_threshold=3):
        if healthy_threshold < 1 or unhealthy_threshold < 1:
            raise ValueError("healthy_threshold and unhealthy_threshold must be 1 or more")
        self.path = path
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.targets = {}

    def load(self):
        """Read the file; return a warning string when a corrupt file was moved aside, else None."""
        try:
            document, warning = load_json_state(self.path)
        except (IOError, OSError) as exc:
            raise StateDirError("state_file: cannot read %s (%s); check the path and its permissions" % (self.path, exc))
        targets = document.get("targets")
        if document and (document.get("version") != STATE_VERSION or not isinstance(targets, dict)):
            aside = "%s.unknown-%d" % (self.path, int(time.time()))
            os.rename(self.path, aside)
            warning = "state file %s is not a probe state file of version %d; moved it to %s and started afresh" % (
                self.path, STATE_VERSION, aside)
            targets = {}
        self.targets = dict((name, dict(fresh_entry(), **entry)) for name, entry in (targets or {}).items()
                            if isinstance(entry, dict))
        return warning

    def apply(self, results, endpoints):
        """Add state, transition and counts to each result; ``endpoints`` maps name to endpoint."""
        now = int(time.time())
        for result in results:
            entry = self.targets.get(result["name"])
            if entry is None or entry.get("endpoint") != endpoints[result["name"]]:
                entry = dict(fresh_entry(), endpoint=endpoints[result["name"]])
            entry, transition = advance(entry, result["ok"], self.healthy_threshold, self.unhealthy_threshold, now)
            self.targets[result["name"]] = entry
            result.update(state=entry["state"], transition=transition, consecutive_ok=entry["consecutive_ok"],
                          consecutive_fail=entry["consecutive_fail"])
        return results

    def save(self):
        try:
            atomic_write_json(self.path, dict(version=STATE_VERSION, targets=self.targets))
        except (IOError, OSError) as exc:
            raise StateDirError("state_file: cannot write %s (%s); check the path and its permissions" % (self.path, exc))
