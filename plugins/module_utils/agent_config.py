# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's configuration: one JSON document (written by the agent role), checked whole before use.

``load_config(path)`` returns an ``AgentConfig`` or raises ``AgentConfigError`` naming the option and the fix,
so that a reload (SIGHUP) with a bad file keeps the running configuration. Option names are the role's
variables without the ``agent_`` prefix.
"""

from __future__ import annotations

import json
import re

from ansible_collections.fleetops.health.plugins.module_utils import scoring
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

# Figures a rule, the adaptive watch or a baseline may name. ``disk:<mount>``, ``inodes:<mount>``,
# ``net_rx:<iface>`` and ``net_tx:<iface>`` name one mount or interface.
PLAIN_FIGURES = ("cpu", "iowait", "memory", "swap", "load1", "load5", "load15")
KEYED_FIGURES = ("disk", "inodes", "net_rx", "net_tx")
SEVERITIES = ("warning", "critical")
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

DEFAULTS = {
    "interval": 1.0,
    "slow_interval": 30.0,
    "adaptive_watch": ["cpu", "memory", "load1"],
    "adaptive_step": 20.0,
    "adaptive_interval": 0.25,
    "adaptive_hold": 30.0,
    "listen_address": "127.0.0.1",
    "listen_port": 9906,
    "tls_cert_file": None,
    "tls_key_file": None,
    "basic_auth_user": None,
    "basic_auth_password_sha256": None,
    "textfile_path": None,
    "state_dir": "/var/lib/fleetops/agent",
    "raw_retention": 86400,
    "minute_retention": 8 * 86400,
    "hour_retention": 90 * 86400,
    "history_max_bytes": 128 * 1024 * 1024,
    "baseline_weeks": 1,
    "baseline_factor": 1.5,
    "baseline_sigma": 3.0,
    "baseline_min_minutes": 30,
    "thresholds": {},
    "weights": {},
    "rules": [],
    "im": None,
    "heartbeat_url": None,
    "heartbeat_push_interval": 60.0,
    "notify_up_down": True,
}

IM_KEYS = ("platform", "url", "secret", "chat_id", "signature_header", "timeout", "retries", "validate_certs")


class AgentConfigError(ValueError):
    """The configuration cannot be used; the message names the option and how to fix it."""


def _number(document, name, minimum, maximum, integer=False, min_exclusive=False):
    try:
        return check_number(document[name], name, minimum, maximum, integer=integer, min_exclusive=min_exclusive)
    except OptionError as exc:
        raise AgentConfigError(str(exc))


def check_figure(name, option):
    """A figure name as rules and the adaptive watch use it; raise naming ``option`` otherwise."""
    if not isinstance(name, str):
        raise AgentConfigError("%s: must be a figure name, got %r" % (option, name))
    if name in PLAIN_FIGURES:
        return name
    kind, _sep, key = name.partition(":")
    if kind in KEYED_FIGURES and key:
        return name
    raise AgentConfigError("%s: unknown figure %r; use one of %s, or %s followed by :<mount or interface> "
                           "(disk:/var)" % (option, name, ", ".join(PLAIN_FIGURES), ", ".join(KEYED_FIGURES)))


def _rule(index, rule):
    where = "rules[%d]" % index
    if not isinstance(rule, dict):
        raise AgentConfigError("%s: must be a dict with name, figure and above, got %r" % (where, rule))
    unknown = sorted(set(rule) - set(("name", "figure", "above", "for", "severity")))
    if unknown:
        raise AgentConfigError("%s: unknown key(s) %s; use name, figure, above, for, severity" % (where, ", ".join(unknown)))
    name = rule.get("name")
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        raise AgentConfigError("%s.name: must be a short identifier (letters, digits, _ . -), got %r" % (where, name))
    figure = check_figure(rule.get("figure"), "%s.figure" % where)
    above = rule.get("above")
    if above != "baseline":
        try:
            above = check_number(above, "%s.above" % where)
        except OptionError as exc:
            raise AgentConfigError("%s (or the word baseline)" % exc)
    try:
        duration = check_number(rule.get("for", 0), "%s.for" % where, 0, 86400)
    except OptionError as exc:
        raise AgentConfigError(str(exc))
    severity = rule.get("severity", "warning")
    if severity not in SEVERITIES:
        raise AgentConfigError("%s.severity: must be one of %s, got %r" % (where, ", ".join(SEVERITIES), severity))
    return {"name": name, "figure": figure, "above": above, "for": duration, "severity": severity}


def _im(document):
    im = document.get("im")
    if im in (None, {}):
        return None
    if not isinstance(im, dict) or not im.get("platform") or not im.get("url"):
        raise AgentConfigError("im: must be a dict with at least platform and url (or null to send nothing)")
    unknown = sorted(set(im) - set(IM_KEYS))
    if unknown:
        raise AgentConfigError("im: unknown key(s) %s; use %s" % (", ".join(unknown), ", ".join(IM_KEYS)))
    return dict(im)


class AgentConfig(object):
    """The checked options as attributes (``config.interval`` ...)."""

    def __init__(self, document):
        if not isinstance(document, dict):
            raise AgentConfigError("the configuration must be a JSON object, got %s" % type(document).__name__)
        unknown = sorted(set(document) - set(DEFAULTS))
        if unknown:
            raise AgentConfigError("unknown option(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(DEFAULTS))))
        merged = dict(DEFAULTS)
        merged.update((key, value) for key, value in document.items() if value is not None or key in ("im",))
        self.interval = _number(merged, "interval", 0.1, 60)
        self.slow_interval = _number(merged, "slow_interval", 1, 3600)
        self.adaptive_step = _number(merged, "adaptive_step", 0, 1000, min_exclusive=True)
        self.adaptive_interval = _number(merged, "adaptive_interval", 0.1, 60)
        if self.adaptive_interval > self.interval:
            raise AgentConfigError("adaptive_interval (%s) must not be above interval (%s): it is the tighter one"
                                   % (self.adaptive_interval, self.interval))
        self.adaptive_hold = _number(merged, "adaptive_hold", 0, 3600)
        watch = merged["adaptive_watch"]
        if not isinstance(watch, list):
            raise AgentConfigError("adaptive_watch: must be a list of figure names, got %r" % (watch,))
        self.adaptive_watch = [check_figure(name, "adaptive_watch") for name in watch]
        self.listen_address = str(merged["listen_address"])
        self.listen_port = _number(merged, "listen_port", 0, 65535, integer=True)
        self.tls_cert_file = merged["tls_cert_file"]
        self.tls_key_file = merged["tls_key_file"]
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise AgentConfigError("tls_cert_file and tls_key_file: give both for TLS, or neither")
        self.basic_auth_user = merged["basic_auth_user"]
        self.basic_auth_password_sha256 = merged["basic_auth_password_sha256"]
        if bool(self.basic_auth_user) != bool(self.basic_auth_password_sha256):
            raise AgentConfigError("basic_auth_user and basic_auth_password_sha256: give both for basic auth, or neither")
        if self.basic_auth_password_sha256 and not re.match(r"^[0-9a-f]{64}$", str(self.basic_auth_password_sha256)):
            raise AgentConfigError("basic_auth_password_sha256: must be 64 lowercase hex digits (the role hashes "
                                   "agent_basic_auth_password for you)")
        self.textfile_path = merged["textfile_path"]
        if self.textfile_path and not str(self.textfile_path).endswith(".prom"):
            raise AgentConfigError("textfile_path: must end in .prom (node_exporter's textfile collector reads only "
                                   "those), got %r" % self.textfile_path)
        self.state_dir = str(merged["state_dir"])
        self.raw_retention = _number(merged, "raw_retention", 60, 90 * 86400, integer=True)
        self.minute_retention = _number(merged, "minute_retention", 3600, 400 * 86400, integer=True)
        self.hour_retention = _number(merged, "hour_retention", 86400, 3 * 366 * 86400, integer=True)
        self.history_max_bytes = _number(merged, "history_max_bytes", 1024 * 1024, 1 << 40, integer=True)
        self.baseline_weeks = _number(merged, "baseline_weeks", 1, 12, integer=True)
        self.baseline_factor = _number(merged, "baseline_factor", 1, 100, min_exclusive=True)
        self.baseline_sigma = _number(merged, "baseline_sigma", 0, 100, min_exclusive=True)
        self.baseline_min_minutes = _number(merged, "baseline_min_minutes", 1, 60, integer=True)
        try:
            self.thresholds = scoring.merge_thresholds(merged["thresholds"])
            self.weights = scoring.merge_weights(merged["weights"])
        except ValueError as exc:
            raise AgentConfigError(str(exc))
        if not isinstance(merged["rules"], list):
            raise AgentConfigError("rules: must be a list of rules, got %r" % (merged["rules"],))
        self.rules = [_rule(index, rule) for index, rule in enumerate(merged["rules"])]
        names = [rule["name"] for rule in self.rules]
        duplicates = sorted(set(name for name in names if names.count(name) > 1))
        if duplicates:
            raise AgentConfigError("rules: each name once; repeated: %s" % ", ".join(duplicates))
        self.im = _im(merged)
        self.heartbeat_url = merged["heartbeat_url"]
        if self.heartbeat_url and not re.match(r"^https?://", str(self.heartbeat_url)):
            raise AgentConfigError("heartbeat_url: must be an http:// or https:// URL")
        self.heartbeat_push_interval = _number(merged, "heartbeat_push_interval", 1, 86400)
        self.notify_up_down = bool(merged["notify_up_down"])


def load_config(path):
    """Read and check ``path``; any problem raises AgentConfigError with the file's name in the message."""
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (IOError, OSError) as exc:
        raise AgentConfigError("%s: cannot read the configuration (%s)" % (path, exc.strerror or exc))
    except ValueError as exc:
        raise AgentConfigError("%s: not valid JSON (%s)" % (path, exc))
    try:
        return AgentConfig(document)
    except AgentConfigError as exc:
        raise AgentConfigError("%s: %s" % (path, exc))
