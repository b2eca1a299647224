# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of one check of the probes role, as its systemd oneshot runs it on the host.

A check is a probe target (``probe``) or a set of log rules (``log``). A run observes once, with the very
code the modules use (probe_targets + probe_engine, log_scanner + log_offsets), advances the check's
up/down state through probe_state's thresholds, writes the check's node_exporter textfile, sends one IM
notice per transition (im_delivery over the requests transport, spooled when undelivered), and, when the
check has a ``restart`` action and is down, restarts its service within the restart budget that the
remediate role keeps (restart_budget), escalating once when the budget is spent.

``normalize_check`` is the controller's half: the role validates each check with it (ansible-core there)
and writes the result as the check's JSON config, which ``load_config`` reads back on the host without
ansible-core. Nothing here imports ``ansible.*``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import time

from ansible_collections.fleetops.health.plugins.module_utils import log_offsets, log_scanner
from ansible_collections.fleetops.health.plugins.module_utils.probe_state import FAILED, ProbeStateStore
from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import PER_TARGET_SPEC, TargetError, build_targets
from ansible_collections.fleetops.health.plugins.module_utils.restart_budget import (
    BudgetInputError,
    Policy,
    RestartBudgetStore,
)
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDir, StateSchema, count, locked_state, map_of, record
from ansible_collections.fleetops.health.plugins.module_utils.textfile import write_textfile

CONFIG_VERSION = 1
KINDS = ("probe", "log")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_.@\\-]*\.(service|socket|target|mount|timer)$")
SEVERITIES = ("info", "warning", "critical")
HITS_SCHEMA = StateSchema(1, record(required={"hits": map_of(count)}), empty=lambda: {"hits": {}})
SYSTEMCTL = "/bin/systemctl"


class CheckError(ValueError):
    """A check that cannot run as configured; the message names the check and the field."""


# --- the controller's half: validate and normalize --------------------------------------------------------

def normalize_check(raw, kind, defaults):
    """Return the check as its runner reads it, or raise CheckError naming the check and the field.

    ``raw`` is one item of probes_checks (kind probe) or probes_log_rules (kind log); ``defaults`` holds
    interval, timeout, initial_delay, healthy_threshold, unhealthy_threshold and the restart defaults.
    """
    if not isinstance(raw, dict):
        raise CheckError("%s: each item must be a dictionary, got %s" % (_list_name(kind), type(raw).__name__))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CheckError("%s: name %r must be 1-64 letters, digits, '_', '.' or '-' (it names the units)"
                         % (_list_name(kind), name))
    where = "%s[%s]" % (_list_name(kind), name)
    common = ("name", "interval", "timeout", "initial_delay", "healthy_threshold", "unhealthy_threshold", "service",
              "restart", "notify")
    check = {"version": CONFIG_VERSION, "name": name, "kind": kind}
    for field, minimum, maximum in (("interval", 1, 86400), ("timeout", 0.1, 3600), ("initial_delay", 0, 86400),
                                    ("healthy_threshold", 1, 1000), ("unhealthy_threshold", 1, 1000)):
        value = raw.get(field, defaults[field])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
            raise CheckError("%s.%s: %r must be a number from %s to %s" % (where, field, value, minimum, maximum))
        check[field] = int(value) if field != "timeout" else float(value)
    if check["timeout"] >= check["interval"]:
        raise CheckError("%s.timeout: %s must be shorter than interval %s, or runs would pile up"
                         % (where, check["timeout"], check["interval"]))
    service = raw.get("service") or ""
    if service and not UNIT_RE.match(service):
        raise CheckError("%s.service: %r is not a systemd unit name such as nginx.service" % (where, service))
    check["service"] = service
    check["notify"] = bool(raw.get("notify", True))
    check["restart"] = _normalize_restart(raw.get("restart"), defaults, service, where)
    if kind == "probe":
        target = dict((key, value) for key, value in raw.items() if key not in common)
        if "timeout" in target:
            raise CheckError("%s: timeout is the check's own field here" % where)
        try:
            targets, _secrets = build_targets([dict(target, name=name, timeout=check["timeout"])])
        except TargetError as exc:
            raise CheckError("%s: %s" % (where, exc))
        built = targets[0]
        # The options the check sets, normalized and typed: the host reads them back without
        # ArgumentSpecValidator. The probe's own timeout is the check's.
        options = dict((key, built.options[key]) for key in target if key in PER_TARGET_SPEC)
        options["timeout"] = check["timeout"]
        check["target"] = dict(options, name=name, **{built.kind: target[built.kind]})
    else:
        check["log"] = _normalize_log(raw, where, common)
    return check


def _list_name(kind):
    return "probes_checks" if kind == "probe" else "probes_log_rules"


def _normalize_restart(raw, defaults, service, where):
    if raw in (None, False):
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise CheckError("%s.restart: must be true, false or a dictionary of max_restarts, window, backoff, "
                         "verify_timeout" % where)
    if not service:
        raise CheckError("%s.restart: needs service, the unit to restart" % where)
    unknown = sorted(set(raw) - set(("max_restarts", "window", "backoff", "verify_timeout", "budget_name")))
    if unknown:
        raise CheckError("%s.restart: unknown option %s" % (where, ", ".join(unknown)))
    restart = dict(defaults["restart"], **raw)
    restart.setdefault("budget_name", service)
    try:
        Policy.from_options(restart["budget_name"], restart["max_restarts"], restart["window"], restart["backoff"])
    except BudgetInputError as exc:
        raise CheckError("%s.restart: %s" % (where, exc))
    verify = restart["verify_timeout"]
    if isinstance(verify, bool) or not isinstance(verify, (int, float)) or not 0 < verify <= 600:
        raise CheckError("%s.restart.verify_timeout: %r must be seconds from 1 to 600" % (where, verify))
    return restart


def _normalize_log(raw, where, common):
    allowed = set(common) | set(("paths", "rules", "start_at", "max_bytes", "notify_severity"))
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CheckError("%s: unknown option %s" % (where, ", ".join(unknown)))
    paths = raw.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise CheckError("%s.paths: give a list of absolute paths or globs" % where)
    rules = raw.get("rules")
    if not isinstance(rules, list):
        raise CheckError("%s.rules: give a list of rules in log_scan's form" % where)
    try:
        log_scanner.compile_rules(rules)
    except (log_scanner.RuleError, KeyError, TypeError, AttributeError) as exc:
        raise CheckError("%s.rules: %s" % (where, exc))
    start_at = raw.get("start_at", "end")
    if start_at not in ("end", "beginning"):
        raise CheckError("%s.start_at: %r must be end or beginning" % (where, start_at))
    notify_severity = raw.get("notify_severity", "critical")
    if notify_severity not in SEVERITIES:
        raise CheckError("%s.notify_severity: %r must be one of %s" % (where, notify_severity, ", ".join(SEVERITIES)))
    max_bytes = raw.get("max_bytes", 0)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise CheckError("%s.max_bytes: %r must be 0 (no limit) or more" % (where, max_bytes))
    return {"paths": list(paths), "rules": rules, "start_at": start_at, "max_bytes": max_bytes,
            "notify_severity": notify_severity}


# --- the host's half: one run ---------------------------------------------------------------------------

def load_config(path):
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CheckError("config %s: cannot read it (%s); converge the probes role again" % (path, exc))
    if not isinstance(config, dict) or config.get("version") != CONFIG_VERSION or config.get("kind") not in KINDS:
        raise CheckError("config %s: not a version %d probes check; converge the probes role again" % (path, CONFIG_VERSION))
    return config


def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


PROBE_METRICS = (
    ("fleetops_probe_up", "gauge", "1 when the last run of the probe succeeded"),
    ("fleetops_probe_healthy", "gauge", "1 while the probe is healthy after its healthy/unhealthy thresholds"),
    ("fleetops_probe_latency_seconds", "gauge", "Latency of the last run of the probe"),
    ("fleetops_probe_consecutive_failures", "gauge", "Failed runs of the probe in a row"),
    ("fleetops_probe_last_run_timestamp_seconds", "gauge", "When the probe last ran"),
)


def render_probe_metrics(name, kind, service, values):
    labels = 'check="%s",kind="%s",service="%s"' % (_escape_label(name), _escape_label(kind), _escape_label(service))
    lines = []
    for metric, metric_type, help_text in PROBE_METRICS:
        lines += ["# HELP %s %s" % (metric, help_text), "# TYPE %s %s" % (metric, metric_type),
                  "%s{%s} %s" % (metric, labels, _number(values[metric]))]
    return "\n".join(lines) + "\n"


def render_log_metrics(hits, path_label):
    lines = ["# HELP fleetops_log_rule_hits_total Log lines that matched the rule since the check was added",
             "# TYPE fleetops_log_rule_hits_total counter"]
    for rule in sorted(hits):
        lines.append('fleetops_log_rule_hits_total{rule="%s",path="%s"} %d'
                     % (_escape_label(rule), _escape_label(path_label), hits[rule]))
    return "\n".join(lines) + "\n"


def _number(value):
    if value is None:
        return "NaN"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(int(value))


def write_check_textfile(directory, check_name, text):
    """``<directory>/fleetops_probes_<check>.prom``: one file per check, because checks run as different users."""
    return write_textfile(os.path.join(directory, "fleetops_probes_%s.prom" % check_name), text)


def systemctl(*args, **kwargs):
    timeout = kwargs.get("timeout", 60)
    # The runner is a host program, not a module: there is no AnsibleModule.run_command to call.
    done = subprocess.run([kwargs.get("executable", SYSTEMCTL)] + list(args),  # pylint: disable=ansible-bad-function
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout,
                          check=False)
    return done.returncode, done.stdout.strip()


class CheckRunner(object):
    """Runs ``config`` once. ``notifier`` is an im_delivery Notifier (or None: no notices); ``run_command``
    is how the restart action calls systemctl (tests pass their own)."""

    def __init__(self, config, state_dir, textfile_dir, budget_dir=None, notifier=None, host=None,
                 run_command=systemctl, clock=time.time, sleep=time.sleep):
        self.config = config
        self.name = config["name"]
        self.state_dir = state_dir
        self.textfile_dir = textfile_dir
        self.budget_dir = budget_dir
        self.notifier = notifier
        self.host = host or socket.gethostname()
        self.run_command = run_command
        self.clock = clock
        self.sleep = sleep
        self.warnings = []

    def run(self):
        """Observe, record, publish, notify, act. Returns what happened (for the journal and the tests)."""
        folder = StateDir(self.state_dir, "state_dir")
        folder.open().close()  # fails naming state_dir before anything is observed
        if self.config["kind"] == "probe":
            report = self._run_probe()
        else:
            report = self._run_log()
        if report["transition"] and self.config["notify"]:
            report["notice"] = self._notify_transition(report)
        elif self.notifier is not None and self.notifier.spool is not None and self.notifier.spool.names():
            # Notices that could not be sent earlier go out with the next run, in order.
            report["flushed"] = self._send(None)
        if self.config["restart"] and report["state"] == "down":
            report["restart"] = self._restart(report)
        report["warnings"] = self.warnings
        return report

    # probes -----------------------------------------------------------------------------------------
    def _probe_once(self):
        from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ProbeEngine  # pylint: disable=import-outside-toplevel
        targets, _secrets = build_targets([self.config["target"]])
        # stdlib engine: one target needs no aiohttp, and its import would double the run's CPU time.
        results, warnings = ProbeEngine("stdlib", concurrency=1, deadline=self.config["timeout"] + 1).run(targets)
        self.warnings.extend(warnings)
        return targets[0], results[0]

    def _run_probe(self):
        target, result = self._probe_once()
        store = ProbeStateStore(os.path.join(self.state_dir, "probe_state.json"), self.config["healthy_threshold"],
                                self.config["unhealthy_threshold"])
        self.warnings.extend(store.record([result], {target.name: target.endpoint}))
        now = self.clock()
        values = {
            "fleetops_probe_up": 1 if result["ok"] else 0,
            "fleetops_probe_healthy": 1 if result["state"] == "up" else 0,
            "fleetops_probe_latency_seconds": None if result["latency_ms"] is None else result["latency_ms"] / 1000.0,
            "fleetops_probe_consecutive_failures": result["consecutive_fail"],
            "fleetops_probe_last_run_timestamp_seconds": now,
        }
        metrics = render_probe_metrics(self.name, result["kind"], self.config["service"], values)
        write_check_textfile(self.textfile_dir, self.name, metrics)
        return {"check": self.name, "ok": result["ok"], "state": result["state"], "transition": result["transition"],
                "error": result["error"], "latency_ms": result["latency_ms"], "metrics": values}

    # log rules --------------------------------------------------------------------------------------
    def _run_log(self):
        log = self.config["log"]
        rules = log_scanner.compile_rules(log["rules"])
        counter = log_scanner.RuleCounter(rules, samples=3, sample_max_len=300)
        store = log_offsets.OffsetStore(os.path.join(self.state_dir, "offsets"))
        with store:
            scan = log_scanner.LogScan(log["paths"], counter, store, log["start_at"], log["max_bytes"] or None,
                                       time_budget=max(1.0, self.config["timeout"] - 1))
            facts = scan.run()
            store.save()
        self.warnings.extend(scan.warnings + ([store.warning] if store.warning else []))
        with locked_state(os.path.join(self.state_dir, "hits.json"), "state_dir", HITS_SCHEMA) as hits_state:
            hits = hits_state.data["hits"]
            for rule, found in facts["rules"].items():
                hits[rule] = hits.get(rule, 0) + found["count"]
            hits = dict((rule.name, hits.get(rule.name, 0)) for rule in rules)
            hits_state.data["hits"] = hits
            hits_state.save()
        write_check_textfile(self.textfile_dir, self.name, render_log_metrics(hits, ",".join(log["paths"])))
        threshold = SEVERITIES.index(log["notify_severity"])
        alarming = dict((rule, found) for rule, found in facts["rules"].items()
                        if found["count"] and SEVERITIES.index(found["severity"]) >= threshold)
        result = {"name": self.name, "ok": not alarming}
        states = ProbeStateStore(os.path.join(self.state_dir, "probe_state.json"), self.config["healthy_threshold"],
                                 self.config["unhealthy_threshold"])
        self.warnings.extend(states.record([result], {self.name: "log:" + ",".join(log["paths"])}))
        error = None
        if alarming:
            error = "; ".join("%s: %d line(s), e.g. %s" % (rule, found["count"], (found["samples"] or [""])[0])
                              for rule, found in sorted(alarming.items()))
        return {"check": self.name, "ok": result["ok"], "state": result["state"], "transition": result["transition"],
                "error": error, "hits": hits}

    # notices ----------------------------------------------------------------------------------------
    def _send(self, notification):
        from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import DeliveryError  # pylint: disable=import-outside-toplevel
        try:
            result = self.notifier.run(notification, flush=self.notifier.spool is not None)
        except DeliveryError as exc:
            self.warnings.append("notice not sent: %s" % exc)
            return {"delivered": False, "error": str(exc)}
        finally:
            self.warnings.extend(self.notifier.warnings)
            del self.notifier.warnings[:]
        return result

    def _notice(self, severity, title, message):
        from ansible_collections.fleetops.health.plugins.module_utils.im_adapters import Notification  # pylint: disable=import-outside-toplevel
        return Notification(message, title=title, severity=severity)

    def _notify_transition(self, report):
        if self.notifier is None:
            return None
        service = " (service %s)" % self.config["service"] if self.config["service"] else ""
        if report["transition"] == FAILED:
            notification = self._notice("critical", "%s: check %s failed" % (self.host, self.name),
                                        "%s%s is down after %d failed run(s): %s"
                                        % (self.name, service, self.config["unhealthy_threshold"], report["error"]))
        else:
            notification = self._notice("resolved", "%s: check %s recovered" % (self.host, self.name),
                                        "%s%s is up again after %d good run(s)"
                                        % (self.name, service, self.config["healthy_threshold"]))
        return self._send(notification)

    # the restart action -----------------------------------------------------------------------------
    def _restart(self, report):
        restart = self.config["restart"]
        unit = self.config["service"]
        policy = Policy.from_options(restart["budget_name"], restart["max_restarts"], restart["window"],
                                     restart["backoff"])
        with RestartBudgetStore(self.budget_dir, clock=self.clock) as budget:
            status = budget.check(restart["budget_name"], policy)
            if not status["allowed"]:
                outcome = budget.record(restart["budget_name"], policy, "skipped",
                                        "probes: %s down, restart blocked by %s" % (self.name, status["blocked_by"]))
                acted = None
            else:
                acted = True
        if acted is None:
            if outcome["escalate"]:
                self._escalate(policy, report)
            return {"restarted": False, "blocked_by": status["blocked_by"], "escalated": outcome["escalate"]}
        self.run_command("reset-failed", unit)
        code, output = self.run_command("restart", unit)
        verified = code == 0 and self._verify(restart["verify_timeout"])
        result = "verified" if verified else "failed_verify"
        reason = "probes: %s down; systemctl restart %s %s" % (self.name, unit, "ok" if code == 0 else "failed: " + output[:200])
        with RestartBudgetStore(self.budget_dir, clock=self.clock) as budget:
            outcome = budget.record(restart["budget_name"], policy, result, reason)
        if outcome["escalate"]:
            self._escalate(policy, report)
        return {"restarted": code == 0, "verified": verified, "budget_left": outcome["budget_left"],
                "escalated": outcome["escalate"]}

    def _verify(self, verify_timeout):
        """The service is verified when its unit is active and (for a probe) the probe answers, within the timeout."""
        deadline = time.monotonic() + verify_timeout
        while True:
            code, _output = self.run_command("is-active", "--quiet", self.config["service"])
            if code == 0 and (self.config["kind"] != "probe" or self._probe_once()[1]["ok"]):
                return True
            if time.monotonic() >= deadline:
                return False
            self.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _escalate(self, policy, report):
        if self.notifier is None:
            return
        self._send(self._notice(
            "critical", "%s: %s needs a human" % (self.host, self.config["service"]),
            "check %s: %s stays down and its restart budget is spent (%d restart(s) in %ss); no more restarts until "
            "the window passes. Last error: %s" % (self.name, self.config["service"], policy.max_restarts,
                                                   int(policy.window), report.get("error"))))


# --- the entry point of the host script --------------------------------------------------------------------

def notifier_from(notify_path, spool_dir):
    """The Notifier of ``notify_path`` (the role's 0640 JSON with the IM target), over the requests transport."""
    if not notify_path or not os.path.exists(notify_path):
        return None
    from ansible_collections.fleetops.health.plugins.module_utils.im_delivery import notifier_for  # pylint: disable=import-outside-toplevel
    with open(notify_path) as handle:
        target = json.load(handle)
    return notifier_for(target["platform"], target["url"], target.get("secret"), target.get("chat_id"),
                        target.get("signature_header"), timeout=target.get("timeout", 5),
                        retries=target.get("retries", 1), retry_delay=target.get("retry_delay", 1),
                        retry_max_delay=10, validate_certs=target.get("validate_certs", True),
                        spool_dir=spool_dir, spool_option="probes_notify spool", transport="requests")


def main(argv):
    """``fleetops-probe-check <config.json>``: one run; one JSON line on stdout for the journal.

    Exit 0 when the run went through (whatever the check found), 2 when the check cannot run as configured
    (the unit then fails, which the agent's failed-unit metric shows).
    """
    from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError  # pylint: disable=import-outside-toplevel
    # One target runs on the stdlib engine; importing aiohttp (probe_engine tries it at import) would
    # cost this process about 0.3 s of CPU on every run. The runner is its own process, so say it is absent.
    sys.modules.setdefault("aiohttp", None)
    if len(argv) != 1:
        sys.stderr.write("usage: fleetops-probe-check <check config.json>\n")
        return 2
    try:
        config = load_config(argv[0])
        paths = config["paths"]
        notifier = notifier_from(paths.get("notify"), os.path.join(paths["state_dir"], "im_spool"))
        run_command = functools.partial(systemctl, executable=paths.get("systemctl", SYSTEMCTL))
        runner = CheckRunner(config, paths["state_dir"], paths["textfile_dir"], paths.get("budget_dir"), notifier,
                             run_command=run_command)
        report = runner.run()
    except (CheckError, StateDirError, TargetError, log_scanner.RuleError, KeyError, OSError) as exc:
        sys.stderr.write("fleetops-probe-check: %s\n" % (exc,))
        return 2
    sys.stdout.write(json.dumps(report, sort_keys=True, default=str) + "\n")
    return 0
