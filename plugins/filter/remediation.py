# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remediate role's decisions as filters: thin calls of module_utils/remediation.py (docs: the .yml beside)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetops.health.plugins.filter.fleet import plain_data
from ansible_collections.fleetops.health.plugins.module_utils import remediation


def _call(function, *args):
    try:
        return function(*[plain_data(arg) for arg in args])
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def remediate_watch(services, policy_defaults, host_address="localhost"):
    return _call(remediation.watch_list, services, policy_defaults, host_address)


def remediate_detect(watched, unit_show, probes=None, log_scans=None, resources=None):
    return _call(remediation.detect, watched, unit_show, probes, log_scans, resources)


def remediate_plan(findings, budgets=None, observed=None, check_mode=False, verdict=None):
    return _call(remediation.plan, findings, budgets, observed, check_mode, verdict)


def remediate_probe_verified(probe_run, healthy_threshold):
    return _call(remediation.probe_verified, probe_run, healthy_threshold)


def remediate_judge(steps, restarts=None, verify_probes=None, unit_show_after="", healthy_threshold=2):
    return _call(remediation.judge, steps, restarts, verify_probes, unit_show_after, healthy_threshold)


def remediate_host_report(host, findings, outcomes, verdict=None, observed=None, recorded=None):
    return _call(remediation.host_report, host, findings, outcomes, verdict, observed, recorded)


class FilterModule(object):
    def filters(self):
        return {
            "remediate_watch": remediate_watch,
            "remediate_detect": remediate_detect,
            "remediate_plan": remediate_plan,
            "remediate_probe_verified": remediate_probe_verified,
            "remediate_judge": remediate_judge,
            "remediate_host_report": remediate_host_report,
        }
