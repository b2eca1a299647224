# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's local alert rules and what it sends: DOWN (firing) and UP (resolved) notices through the
collection's IM adapters and spool, and the heartbeat push.

``AlertEngine`` is pure: figures and baselines in, transitions out. ``Outbox`` is a worker thread that owns
every HTTP call (a receiver that hangs never delays a sample): it sends through ``im_delivery.Notifier``
(retries, then the on-disk spool; the spool is flushed oldest first before anything new, each message
exactly once) over the requests transport, and pushes the heartbeat.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from ansible_collections.fleetops.health.plugins.module_utils import baseline as baseline_utils
from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import Notification

LOG = logging.getLogger("fleetops-agent")
SPOOL_DIR = "spool"
# A restarted agent finds its rules firing again: the dedupe window keeps that from a second DOWN notice.
DEDUPE_WINDOW = 300
FLUSH_EVERY = 5.0


class Transition(object):
    """A rule started firing (``down``) or stopped (``up``)."""

    def __init__(self, kind, rule, value, threshold, basis, since):
        self.kind = kind
        self.rule = rule
        self.value = value
        self.threshold = threshold
        self.basis = basis
        self.since = since

    def notification(self, host):
        figure = self.rule["figure"]
        percent = figure.partition(":")[0] in baseline_utils.PERCENT_KINDS
        unit = "%" if percent else ""
        if self.kind == "down":
            severity = self.rule["severity"]
            title = "DOWN %s: %s" % (host, self.rule["name"])
            message = "%s %.1f%s > %.1f%s (%s) for %ds" % (figure, self.value, unit, self.threshold, unit, self.basis,
                                                           self.rule["for"])
        else:
            severity = "resolved"
            title = "UP %s: %s" % (host, self.rule["name"])
            value = "no value" if self.value is None else "%.1f%s" % (self.value, unit)
            message = "%s back to %s after %ds" % (figure, value, max(0, int(time.time() - self.since)))
        return Notification(message, title=title, severity=severity)


class AlertEngine(object):
    """Rules against figures: ``above`` a number, or ``above: baseline`` (the figure's dynamic threshold),
    held for ``for`` seconds before it fires. A baseline rule with no baseline yet does not fire."""

    def __init__(self, rules):
        self.rules = []
        self.state = {}
        self.configure(rules)

    def configure(self, rules):
        """New rules; a rule kept by name keeps its state, so a reload neither re-fires nor forgets to resolve."""
        self.rules = list(rules)
        names = set(rule["name"] for rule in self.rules)
        self.state = dict((name, state) for name, state in self.state.items() if name in names)

    def firing(self):
        return sorted(name for name, state in self.state.items() if state.get("firing"))

    def evaluate(self, figures, baselines, now):
        transitions = []
        for rule in self.rules:
            state = self.state.setdefault(rule["name"], {"firing": False, "since": None})
            value = figures.get(rule["figure"])
            threshold, basis = self._threshold(rule, baselines)
            breached = value is not None and threshold is not None and value > threshold
            if breached:
                if state["since"] is None:
                    state["since"] = now
                if not state["firing"] and now - state["since"] >= rule["for"]:
                    state["firing"] = True
                    transitions.append(Transition("down", rule, value, threshold, basis, state["since"]))
            else:
                if state["firing"]:
                    transitions.append(Transition("up", rule, value, threshold, basis, state["since"]))
                state["firing"] = False
                state["since"] = None
        return transitions

    @staticmethod
    def _threshold(rule, baselines):
        if rule["above"] != "baseline":
            return rule["above"], "static"
        found = baselines.get(rule["figure"]) or {}
        if "threshold" not in found:
            return None, None
        return found["threshold"], "baseline %s, %d-day" % (found["slot"], found["days"])


class Outbox(object):
    """The sending thread: notices in order through one Notifier, spool flushes, heartbeat pushes."""

    def __init__(self, state_dir, im=None, heartbeat_url=None, heartbeat_every=60.0, host=None):
        self.state_dir = state_dir
        self.host = host or socket.gethostname()
        self.heartbeat_url = heartbeat_url
        self.heartbeat_every = heartbeat_every
        self.spooled = 0
        self._pending = []
        self._wake = threading.Condition()
        self._stopping = False
        self._last_push = None
        self.notifier = None
        if im:
            # Imported only when IM is configured: the sender, the spool and the state layer cost about a
            # megabyte of the agent's memory.
            from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import notifier_for  # pylint: disable=import-outside-toplevel
            self.notifier = notifier_for(
                im["platform"], im["url"], secret=im.get("secret"), chat_id=im.get("chat_id"),
                signature_header=im.get("signature_header"), timeout=im.get("timeout", 5),
                retries=im.get("retries", 1), retry_delay=0.5, retry_max_delay=5,
                validate_certs=im.get("validate_certs", True), spool_dir=os.path.join(state_dir, SPOOL_DIR),
                spool_option="state_dir", transport="requests")
        if self.notifier is not None and self.notifier.spool is not None:
            self.spooled = len(self.notifier.spool.names())   # left by the previous run: flushed first
        self._pusher = None
        if heartbeat_url:
            from ansible_collections.fleetops.health.plugins.module_utils.im_transport import transport_for  # pylint: disable=import-outside-toplevel
            self._pusher = transport_for("requests", 5)
        self.thread = threading.Thread(target=self._run, name="outbox")
        self.thread.daemon = True

    def start(self):
        self.thread.start()
        return self

    def send(self, transition):
        if self.notifier is None:
            return
        with self._wake:
            self._pending.append(transition)
            self._wake.notify()

    def stop(self, timeout=1.0):
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self.thread.join(timeout)

    def _run(self):
        last_flush = 0.0
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait(1.0)
                if self._stopping:
                    return
                batch, self._pending = self._pending, []
            for transition in batch:
                self._deliver(transition)
            now = time.monotonic()
            if self.notifier is not None and not batch and self.spooled and now - last_flush >= FLUSH_EVERY:
                self._deliver(None)
                last_flush = now
            self._push_heartbeat()

    def _deliver(self, transition):
        notifier = self.notifier
        notification = key = None
        if transition is not None:
            notification = transition.notification(self.host)
            key = "%s/%s" % (transition.rule["name"], transition.kind)
        from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import DeliveryError  # pylint: disable=import-outside-toplevel
        from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError  # pylint: disable=import-outside-toplevel
        try:
            result = notifier.run(notification, flush=True, dedupe_key=key, dedupe_window=DEDUPE_WINDOW if key else 0)
            self.spooled = result.get("spool_remaining", 0)
            if result.get("flushed"):
                LOG.info("im: sent %d spooled message(s)", result["flushed"])
        except (DeliveryError, StateDirError, OSError, ValueError) as exc:
            LOG.error("im: %s", exc)
        for warning in notifier.warnings:
            LOG.warning("im: %s", warning)
        del notifier.warnings[:]

    def _push_heartbeat(self):
        if self._pusher is None:
            return
        now = time.monotonic()
        if self._last_push is not None and now - self._last_push < self.heartbeat_every:
            return
        self._last_push = now
        body = json.dumps({"host": self.host, "time": time.time(), "spooled": self.spooled}).encode("utf-8")
        try:
            status, _headers, _answer = self._pusher(self.heartbeat_url, body, {"Content-Type": "application/json"})
            if status >= 400:
                LOG.warning("heartbeat_url: answered HTTP %s", status)
        except (OSError, ValueError) as exc:
            LOG.warning("heartbeat_url: no answer (%s)", exc)
