# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate the probes role's checks on the controller and turn them into the runner's configs."""

from __future__ import annotations

# The filter's documentation is its sidecar, plugins/filter/probes_check_configs.yml.

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
