# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's main loop: sample, judge, publish to /metrics and the textfile, keep history, run the local
alert rules, touch the heartbeat; SIGHUP reloads the configuration, SIGTERM stops within a second.

Run on the host by the agent role's unit through ``fleetops-agent --config /etc/fleetops/agent.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import threading
import time

from ansible_collections.fleetops.health.plugins.module_utils import baseline, scoring
from ansible_collections.fleetops.health.plugins.module_utils.agent_alerts import AlertEngine, Outbox
from ansible_collections.fleetops.health.plugins.module_utils.agent_config import AgentConfigError, load_config
from ansible_collections.fleetops.health.plugins.module_utils.agent_metrics import (
    AgentMetrics,
    MetricsServer,
    Snapshot,
)
from ansible_collections.fleetops.health.plugins.module_utils.agent_sampler import AdaptiveInterval, Sampler, figures_of
from ansible_collections.fleetops.health.plugins.module_utils.history import History, HistoryError, history_bytes
from ansible_collections.fleetops.health.plugins.module_utils.textfile import write_textfile

LOG = logging.getLogger("fleetops-agent")
HEARTBEAT_FILE = "heartbeat"
HISTORY_FILE = "history.db"
# Baselines change with the hour of the week; recomputing them once a minute is plenty.
BASELINE_REFRESH = 60.0


class Agent(object):
    """One agent process. ``run()`` loops until ``stop()``; ``run_once()`` is one sample, for tests."""

    def __init__(self, config_path, clock=time.time, monotonic=time.monotonic):
        self.config_path = config_path
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = AgentMetrics()
        self.server = None
        self.config = None
        self._stop = threading.Event()
        self._reload_requested = False
        self._stopping = False
        self.last_heartbeat = None
        self.history = None
        self.alerts = AlertEngine([])
        self.outbox = None
        self.baselines = {}
        self._baselines_at = None
        self._history_failing = False
        self._apply(load_config(config_path))

    # ------------------------------------------------------------ configuration

    def _apply(self, config):
        """Build what ``config`` needs; on any error the caller keeps the previous configuration."""
        previous = self.config
        sampler = Sampler(config.slow_interval, systemctl_path=shutil.which("systemctl"))
        interval = AdaptiveInterval(config.interval, config.adaptive_interval, config.adaptive_step,
                                    config.adaptive_hold, config.adaptive_watch)
        os.makedirs(config.state_dir, exist_ok=True)
        history = self.history
        history_path = os.path.join(config.state_dir, HISTORY_FILE)
        if history is None or history.path != history_path:
            history = History(history_path)
        history.raw_retention, history.minute_retention = config.raw_retention, config.minute_retention
        history.hour_retention, history.max_bytes = config.hour_retention, config.history_max_bytes
        server = self.server
        listen_changed = previous is None or any(
            getattr(previous, name) != getattr(config, name) for name in (
                "listen_address", "listen_port", "tls_cert_file", "tls_key_file", "basic_auth_user",
                "basic_auth_password_sha256"))
        if listen_changed:
            if server is not None:
                server.stop()  # the new one may want the same port
            try:
                server = self._serve(config)
            except (OSError, ValueError) as exc:
                if previous is not None:
                    self.server = self._serve(previous)
                raise AgentConfigError("listen_address/listen_port/tls: cannot serve /metrics on %s:%s (%s)"
                                       % (config.listen_address, config.listen_port, exc))
            LOG.info("serving /metrics on %s:%d%s", config.listen_address, server.port,
                     " (TLS)" if config.tls_cert_file else "")
        outbox = self.outbox
        outbox_changed = previous is None or any(getattr(previous, name) != getattr(config, name) for name in (
            "im", "heartbeat_url", "heartbeat_push_interval", "state_dir"))
        if outbox_changed:
            try:
                outbox = Outbox(config.state_dir, config.im, config.heartbeat_url, config.heartbeat_push_interval)
            except Exception as exc:  # pylint: disable=broad-except
                # The adapters' ConfigError, or StateDirError from the spool (imported only with IM configured).
                # The IM options carry secrets: those messages never echo them.
                raise AgentConfigError("im: %s" % exc)
            if self.outbox is not None:
                self.outbox.stop()
            outbox.start()
        self.outbox = outbox
        self.alerts.configure(config.rules)
        self.server = server
        if self.history is not None and self.history is not history:
            self.history.close()
        self.history = history
        self._baselines_at = None
        self.sampler = sampler
        self.interval = interval
        self.config = config

    def _serve(self, config):
        return MetricsServer(self.metrics, config.listen_address, config.listen_port, config.tls_cert_file,
                             config.tls_key_file, config.basic_auth_user, config.basic_auth_password_sha256).start()

    def request_reload(self, *_args):
        self._reload_requested = True
        self._stop.set()  # wake the wait; run() tells a reload from a stop

    def stop(self, *_args):
        self._reload_requested = False
        self._stopping = True
        self._stop.set()

    def reload(self):
        """Apply the file again; a bad file keeps the running configuration and says why."""
        try:
            config = load_config(self.config_path)
            self._apply(config)
        except (AgentConfigError, HistoryError, OSError) as exc:
            LOG.error("reload refused, keeping the running configuration: %s", exc)
            return False
        LOG.info("configuration reloaded from %s", self.config_path)
        return True

    # ------------------------------------------------------------ one sample

    def refresh_baselines(self, now, figures):
        """Hour-of-week baselines for the judged figures, recomputed once a minute."""
        monotonic = self.monotonic()
        if self._baselines_at is not None and monotonic - self._baselines_at < BASELINE_REFRESH:
            return self.baselines
        config = self.config
        wanted = [name for name in figures if name.partition(":")[0] in baseline.JUDGED_KINDS]
        try:
            self.baselines = baseline.hour_of_week_baselines(
                self.history, now, config.baseline_weeks, config.baseline_factor, config.baseline_sigma,
                config.baseline_min_minutes, figures=wanted)
        except Exception as exc:  # pylint: disable=broad-except
            LOG.warning("baselines: cannot read the history (%s); judging with static thresholds only", exc)
            self.baselines = {}
        self._baselines_at = monotonic
        return self.baselines

    def judge(self, facts, figures, now):
        """The host verdict: the static thresholds (scoring), then the baselines (the baseline hook)."""
        verdict, reasons = scoring.evaluate(facts, self.config.thresholds)
        baselines = self.refresh_baselines(now, figures)
        verdict, reasons, _dynamic = baseline.apply_baselines(figures, verdict, reasons, baselines)
        return verdict, reasons, scoring.load_score(facts, self.config.weights), baselines

    def record(self, now, figures):
        try:
            self.history.record(now, figures)
            if self._history_failing:
                LOG.info("history: writing again to %s", self.history.path)
            self._history_failing = False
        except HistoryError as exc:
            if not self._history_failing:   # say it once, not every second
                LOG.error("history: %s", exc)
            self._history_failing = True

    def run_once(self):
        """Take one sample and publish it; return the wait before the next one."""
        started = self.monotonic()
        facts = self.sampler.sample()
        now = self.clock()
        figures = figures_of(facts)
        verdict, _reasons, score, baselines = self.judge(facts, figures, now)
        wait = self.interval.update(figures, self.monotonic())
        self.record(now, figures)
        for transition in self.alerts.evaluate(figures, baselines, now):
            LOG.warning("alert %s %s: %s %s (threshold %s)", transition.rule["name"],
                        "firing" if transition.kind == "down" else "resolved", transition.rule["figure"],
                        transition.value, transition.threshold)
            if transition.kind == "down" or self.config.notify_up_down:
                self.outbox.send(transition)
        self.touch_heartbeat(now)
        snapshot = Snapshot(facts, verdict, score, baselines, firing=self.alerts.firing(), interval=wait,
                            spool_messages=self.outbox.spooled, heartbeat=self.last_heartbeat,
                            history_bytes=history_bytes(self.history.path))
        self.metrics.publish(snapshot)
        self.metrics.samples.inc()
        self.metrics.sample_duration.observe(self.monotonic() - started)
        if self.config.textfile_path:
            try:
                write_textfile(self.config.textfile_path, self.metrics.render())
            except OSError as exc:
                LOG.warning("textfile_path: cannot write %s (%s)", self.config.textfile_path, exc.strerror or exc)
        return wait

    def touch_heartbeat(self, now):
        path = os.path.join(self.config.state_dir, HEARTBEAT_FILE)
        try:
            with open(path, "a"):
                os.utime(path, (now, now))
            self.last_heartbeat = now
        except OSError as exc:
            LOG.warning("heartbeat: cannot touch %s (%s)", path, exc.strerror or exc)

    # ------------------------------------------------------------ the loop

    def run(self):
        while not self._stopping:
            due = self.monotonic() + self.run_once()
            while not self._stopping:
                remaining = due - self.monotonic()
                if remaining <= 0:
                    break
                self._stop.wait(remaining)
                self._stop.clear()
                if self._reload_requested:
                    self._reload_requested = False
                    self.reload()
        self.close()

    def close(self):
        if self.outbox is not None:
            self.outbox.stop()
            self.outbox = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.history is not None:
            self.history.close()
            self.history = None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fleetops-agent", description="fleetops.health monitoring agent")
    parser.add_argument("--config", default="/etc/fleetops/agent.json")
    parser.add_argument("--check-config", action="store_true", help="check the configuration and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.check_config:
        try:
            load_config(args.config)
        except AgentConfigError as exc:
            LOG.error("%s", exc)
            return 2
        return 0
    try:
        agent = Agent(args.config)
    except (AgentConfigError, HistoryError, ImportError, OSError) as exc:
        LOG.error("cannot start: %s", exc)
        return 2
    signal.signal(signal.SIGHUP, agent.request_reload)
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    agent.run()
    LOG.info("stopped")
    return 0
