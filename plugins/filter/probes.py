# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate the probes role's checks on the controller and turn them into the runner's configs."""

from __future__ import annotations

DOCUMENTATION = r"""
name: probes_check_configs
short_description: Validate probes_checks and probes_log_rules into the probes runner's check configs
version_added: 0.1.0
description:
  - Takes C(probes_checks) (targets in fleetops.health.probe's form plus the check fields) and returns one
    config per check and per item of C(log_rules) (rules in fleetops.health.log_scan's form), validated with
    the same module_utils the modules use, every option typed, so the host runs them without ansible-core.
  - A bad item fails with a message that names the list, the check and the field.
author: fleetops.health contributors
options:
  _input:
    description: probes_checks.
    type: list
    elements: dict
    required: true
  log_rules:
    description: probes_log_rules.
    type: list
    elements: dict
    required: true
  defaults:
    description: interval, timeout, initial_delay, healthy_threshold, unhealthy_threshold and restart (a dict).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The checks as the runner reads them
  ansible.builtin.set_fact:
    configs: "{{ probes_checks | fleetops.health.probes_check_configs(probes_log_rules, defaults) }}"
"""

RETURN = r"""
_value:
  description: One dict per check (name, kind, interval, timeout, target or log, restart, ...).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetops.health.plugins.module_utils.probe_runner import CheckError, normalize_check


def probes_check_configs(checks, log_rules, defaults):
    configs, seen = [], set()
    for kind, items in (("probe", checks or []), ("log", log_rules or [])):
        if not isinstance(items, list):
            raise AnsibleFilterError("%s: must be a list" % ("probes_checks" if kind == "probe" else "probes_log_rules"))
        for raw in items:
            try:
                config = normalize_check(raw, kind, defaults)
            except CheckError as exc:
                raise AnsibleFilterError(str(exc))
            if config["name"] in seen:
                raise AnsibleFilterError("check %s: the name appears twice in probes_checks and probes_log_rules; "
                                         "each check needs its own name (it names its units)" % config["name"])
            seen.add(config["name"])
            configs.append(config)
    return configs


class FilterModule(object):
    def filters(self):
        return {"probes_check_configs": probes_check_configs}
