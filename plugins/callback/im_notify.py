# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: im_notify
type: notification
short_description: Send a run summary to WeCom, DingTalk, Feishu/Lark, Slack, Teams, Telegram or a webhook
version_added: 0.1.0
description:
  - At the end of a playbook, sends one message with the per-host ok, changed, failed and unreachable counts,
    the first failed task of each failing host, and the verdict counts (ok, warn, crit) of the hosts that
    returned C(fleet_resources), C(fleet_probes) or C(fleet_logs) facts, judged as the sweep's report judges
    them (a probe target down or a critical log rule is C(crit)).
  - Uses the same adapters, signing, retries and spool as the M(fleetops.health.im_notify) module.
  - Enable it with C(callbacks_enabled = fleetops.health.im_notify) in ansible.cfg or
    C(ANSIBLE_CALLBACKS_ENABLED=fleetops.health.im_notify). In AWX, set the environment variables on the
    job template or a credential type.
  - Options come from C([callback_im_notify]) in ansible.cfg, C(FLEETOPS_IM_*) environment variables, or
    C(fleetops_im_*) variables. The variables are read when each play starts, from the play's vars and extra
    vars (an AWX job template's extra variables work; inventory host and group vars do not).
  - A delivery problem is shown as a warning; it never fails the run.
author:
  - fleetops.health contributors (@fleetops)
requirements:
  - enable in configuration
options:
  platform:
    description: The kind of endpoint O(url) points at.
    type: str
    choices: [wecom, dingtalk, feishu, lark, slack, teams, telegram, webhook]
    env:
      - name: FLEETOPS_IM_PLATFORM
    ini:
      - section: callback_im_notify
        key: platform
    vars:
      - name: fleetops_im_platform
  url:
    description: The full webhook URL. Without it the callback disables itself with a warning.
    type: str
    env:
      - name: FLEETOPS_IM_URL
    ini:
      - section: callback_im_notify
        key: url
    vars:
      - name: fleetops_im_url
  secret:
    description: The signing secret for DingTalk, Feishu/Lark or a webhook's HMAC header.
    type: str
    env:
      - name: FLEETOPS_IM_SECRET
    ini:
      - section: callback_im_notify
        key: secret
    vars:
      - name: fleetops_im_secret
  chat_id:
    description: The Telegram chat.
    type: str
    env:
      - name: FLEETOPS_IM_CHAT_ID
    ini:
      - section: callback_im_notify
        key: chat_id
    vars:
      - name: fleetops_im_chat_id
  send_on:
    description:
      - V(failure) sends only when a host failed or was unreachable, or a host's verdict is C(crit).
      - V(always) sends after every playbook.
    type: str
    choices: [failure, always]
    default: failure
    env:
      - name: FLEETOPS_IM_SEND_ON
    ini:
      - section: callback_im_notify
        key: send_on
    vars:
      - name: fleetops_im_send_on
  title:
    description: The heading of the summary; C({playbook}) is replaced by the playbook's file name.
    type: str
    default: "Ansible run {playbook}"
    env:
      - name: FLEETOPS_IM_TITLE
    ini:
      - section: callback_im_notify
        key: title
    vars:
      - name: fleetops_im_title
  mention_user_ids:
    description: Platform user ids to mention when the summary reports a failure.
    type: list
    elements: str
    default: []
    env:
      - name: FLEETOPS_IM_MENTION_USER_IDS
    ini:
      - section: callback_im_notify
        key: mention_user_ids
    vars:
      - name: fleetops_im_mention_user_ids
  timeout:
    description: Seconds to wait for each HTTP answer, above 0 and at most 600.
    type: float
    default: 10
    env:
      - name: FLEETOPS_IM_TIMEOUT
    ini:
      - section: callback_im_notify
        key: timeout
  retries:
    description: Retries of a retryable failure, 0 to 20, with exponential backoff from one second.
    type: int
    default: 3
    env:
      - name: FLEETOPS_IM_RETRIES
    ini:
      - section: callback_im_notify
        key: retries
  validate_certs:
    description: Verify the TLS certificate of O(url).
    type: bool
    default: true
    env:
      - name: FLEETOPS_IM_VALIDATE_CERTS
    ini:
      - section: callback_im_notify
        key: validate_certs
  spool_dir:
    description:
      - A directory on the control node for summaries that could not be delivered; the next run sends them
        first. Unset, an undelivered summary is only reported as a warning (AWX runs each job in a fresh
        container, where a local spool would not survive).
    type: path
    env:
      - name: FLEETOPS_IM_SPOOL_DIR
    ini:
      - section: callback_im_notify
        key: spool_dir
"""

import os
import time

from ansible.plugins.callback import CallbackBase
from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import ConfigError, Notification
from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import DeliveryError, notifier_for
from ansible_collections.fleetops.health.plugins.module_utils.redaction import scrub
from ansible_collections.fleetops.health.plugins.module_utils.scoring import host_verdict
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError

MAX_HOST_LINES = 40
VERDICT_LEVELS = ("crit", "warn", "ok")


# The modules whose failure means a host could not be judged: in the sweep's report each is a crit reason.
FLEET_CHECK_ACTIONS = ("host_resources", "probe", "log_scan")


def new_observation():
    """What a run has seen of one host: the latest fleet_resources, probe results by target, every fleet_logs."""
    return {"resources": None, "probes": {}, "logs": [], "task_errors": []}


def observe(observation, facts):
    """Fold one task's ``ansible_facts`` into ``observation``; a later probe of a target replaces the earlier one."""
    if isinstance(facts.get("fleet_resources"), dict):
        observation["resources"] = facts["fleet_resources"]
    probes = facts.get("fleet_probes")
    if isinstance(probes, dict):
        for result in probes.get("results") or []:
            observation["probes"][result.get("name", "?")] = result
    if isinstance(facts.get("fleet_logs"), dict):
        observation["logs"].append(facts["fleet_logs"])
    return observation


def verdict_of(observation):
    """The host's ok/warn/crit by ``scoring.host_verdict``, or None when the run saw no fleet facts of it."""
    if not (observation["resources"] or observation["probes"] or observation["logs"] or observation["task_errors"]):
        return None
    return host_verdict(observation["resources"], {"results": list(observation["probes"].values())},
                        observation["logs"], task_errors=observation["task_errors"])["verdict"]


def build_summary(playbook, host_stats, verdicts, first_failures, duration):
    """Return ``(severity, lines, is_failure)`` for a run.

    ``host_stats`` maps host to the dict of ``AggregateStats.summarize``; ``verdicts`` maps host to
    ok/warn/crit; ``first_failures`` maps host to a one-line description of its first failed task.
    """
    failed = sorted(h for h, s in host_stats.items() if s.get("failures"))
    unreachable = sorted(h for h, s in host_stats.items() if s.get("unreachable"))
    verdict_counts = {}
    for host, level in verdicts.items():
        verdict_counts.setdefault(level, []).append(host)
    totals = {key: sum(s.get(key, 0) for s in host_stats.values()) for key in ("ok", "changed", "failures", "unreachable")}
    lines = ["%s: %d host(s) in %ds" % (playbook, len(host_stats), duration),
             "totals: ok=%(ok)d changed=%(changed)d failed=%(failures)d unreachable=%(unreachable)d" % totals]
    if failed:
        lines.append("failed: %s" % ", ".join(failed))
    if unreachable:
        lines.append("unreachable: %s" % ", ".join(unreachable))
    if verdicts:
        ordered = [level for level in VERDICT_LEVELS if level in verdict_counts] + \
            sorted(level for level in verdict_counts if level not in VERDICT_LEVELS)
        lines.append("verdicts: " + " ".join("%s=%d" % (level, len(verdict_counts[level])) for level in ordered))
        for level in ("crit", "warn"):
            if level in verdict_counts:
                lines.append("%s: %s" % (level, ", ".join(sorted(verdict_counts[level]))))
    for host in failed:
        if host in first_failures:
            lines.append("%s: %s" % (host, first_failures[host]))
    hosts = sorted(host_stats)
    for host in hosts[:MAX_HOST_LINES]:
        stats = host_stats[host]
        lines.append("  %s ok=%d changed=%d failed=%d unreachable=%d%s" % (
            host, stats.get("ok", 0), stats.get("changed", 0), stats.get("failures", 0), stats.get("unreachable", 0),
            " verdict=%s" % verdicts[host] if host in verdicts else ""))
    if len(hosts) > MAX_HOST_LINES:
        lines.append("  ... and %d more host(s)" % (len(hosts) - MAX_HOST_LINES))
    is_failure = bool(failed or unreachable or "crit" in verdict_counts)
    if is_failure:
        severity = "critical"
    elif "warn" in verdict_counts:
        severity = "warning"
    else:
        severity = "info"
    return severity, lines, is_failure


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "fleetops.health.im_notify"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self.playbook_name = "playbook"
        self.started = time.time()
        self.observations = {}
        self.first_failures = {}

    def v2_playbook_on_start(self, playbook):
        self.playbook_name = os.path.basename(playbook._file_name)
        self.started = time.time()

    def v2_playbook_on_play_start(self, play):
        # Options may come from play or inventory vars (fleetops_im_*); they are read once the play is known.
        try:
            variables = play.get_variable_manager().get_vars(play=play)
            from ansible.template import Templar
            templar = Templar(loader=play._loader, variables=variables)
            chosen = {k: templar.template(v) for k, v in variables.items() if k.startswith("fleetops_im_")}
        except Exception as exc:  # the summary must never break a run
            self._display.warning("fleetops.health.im_notify: could not read fleetops_im_* variables (%s)" % type(exc).__name__)
            return
        if chosen:
            self.set_options(var_options=chosen)

    def _observation(self, result):
        return self.observations.setdefault(result._host.get_name(), new_observation())

    def v2_runner_on_ok(self, result):
        # A looped task reports its items' facts inside ``results``.
        for one in [result._result] + list(result._result.get("results") or []):
            if isinstance(one, dict) and isinstance(one.get("ansible_facts"), dict):
                observe(self._observation(result), one["ansible_facts"])

    def v2_runner_on_failed(self, result, ignore_errors=False):
        host = result._host.get_name()
        action = str(result._task.action).rsplit(".", 1)[-1]
        if ignore_errors and action in FLEET_CHECK_ACTIONS:
            # The sweep goes on past a check that could not run; its report calls the host crit, and so do we.
            self._observation(result)["task_errors"].append("%s failed" % action)
        if ignore_errors or host in self.first_failures:
            return
        message = str(result._result.get("msg", "")).splitlines()[0:1]
        self.first_failures[host] = "task %r failed%s" % (result._task.get_name(), ": " + message[0][:200] if message else "")

    def v2_runner_on_unreachable(self, result):
        self.first_failures.setdefault(result._host.get_name(), "unreachable")

    def v2_playbook_on_stats(self, stats):
        host_stats = {host: stats.summarize(host) for host in stats.processed}
        verdicts = {}
        for host, observation in self.observations.items():
            try:
                level = verdict_of(observation)
            except ValueError as exc:  # a hand-made fleet_resources fact; the summary must still go out
                self._display.warning("fleetops.health.im_notify: no verdict for %s: %s" % (host, exc))
                continue
            if level:
                verdicts[host] = level
        severity, lines, is_failure = build_summary(self.playbook_name, host_stats, verdicts,
                                                    self.first_failures, time.time() - self.started)
        if self.get_option("send_on") == "failure" and not is_failure:
            return
        if not self.get_option("url") or not self.get_option("platform"):
            self._display.warning("fleetops.health.im_notify: set platform and url (FLEETOPS_IM_PLATFORM, "
                                  "FLEETOPS_IM_URL or [callback_im_notify]); no summary sent")
            return
        title = self.get_option("title").replace("{playbook}", self.playbook_name)
        mentions = {"user_ids": self.get_option("mention_user_ids") if is_failure else []}
        try:
            notification = Notification("\n".join(lines), title, "text", severity, mentions, self.get_option("chat_id"))
            notifier = self._notifier(notification)
            result = notifier.run(notification, flush=notifier.spool is not None)
        except (ConfigError, DeliveryError, StateDirError, OSError) as exc:
            self._display.warning("fleetops.health.im_notify: run summary not sent: %s" % scrub(exc))
            return
        except Exception as exc:  # pylint: disable=broad-except
            # The summary must never break a run nor print a traceback; the text may quote the URL: masked.
            self._display.warning("fleetops.health.im_notify: run summary not sent: internal error %s: %s"
                                  % (type(exc).__name__, scrub(exc)))
            return
        for warning in notifier.warnings:
            self._display.warning("fleetops.health.im_notify: %s" % warning)
        if result["delivered"]:
            self._display.display("fleetops.health.im_notify: run summary sent to %s" % result["target"])

    def _notifier(self, notification):
        spool_dir = self.get_option("spool_dir")
        notifier = notifier_for(
            self.get_option("platform"), self.get_option("url"), self.get_option("secret"), self.get_option("chat_id"),
            timeout=self.get_option("timeout"), retries=self.get_option("retries"),
            validate_certs=self.get_option("validate_certs"), spool_dir=spool_dir,
            on_undelivered="spool" if spool_dir else "fail", spool_option="spool_dir (callback_im_notify)")
        for warning in notifier.adapter.validate(notifier.target, notification, None):
            self._display.warning("fleetops.health.im_notify: %s" % warning)
        return notifier
