# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the sweep's per-host facts into the fleet report: verdicts, rows, table, sizes."""

from __future__ import annotations

# Each filter's documentation is a sidecar next to this file, plugins/filter/<filter>.yml, so that
# `ansible-doc -t filter fleetops.health.<filter>` shows that filter's own text.

import re

from ansible_collections.fleetops.health.plugins.module_utils.redaction import mask_data
from ansible_collections.fleetops.health.plugins.module_utils.scoring import (
    VERDICT_RANK,
    host_verdict,
    merge_thresholds,
    worst_verdict,
)


def human_bytes(value):
    """1536 -> '1.5 KiB'; ``None`` -> '-'."""
    if value is None:
        return "-"
    size = float(value)
    if abs(size) < 1024:
        return "%d B" % size
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024.0
        if abs(size) < 1024:
            break
    return "%.1f %s" % (size, unit)


def fleet_host_verdict(resources, probes=None, logs=None, error=None, task_errors=None):
    """One host's verdict and reasons from all its facts: the collection's one verdict, ``scoring.host_verdict``."""
    return host_verdict(resources, probes, logs, error, task_errors)


def human_duration(seconds):
    """3725 -> '1h 2m'; the two largest units are enough to tell a fresh reboot from a long uptime."""
    if seconds is None:
        return None
    minutes = int(seconds) // 60
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return "%dd %dh" % (days, hours)
    if hours:
        return "%dh %dm" % (hours, minutes)
    return "%dm" % minutes


def _level(value, levels):
    if value is None:
        return "none"
    if value >= levels["crit"]:
        return "crit"
    if value >= levels["warn"]:
        return "warn"
    return "ok"


def _worst_disk(resources):
    disks = [disk for disk in resources.get("disks") or [] if disk.get("percent") is not None]
    if not disks:
        return None
    worst = max(disks, key=lambda disk: disk["percent"])
    return {"mount": worst["mount"], "percent": worst["percent"], "free": worst.get("free")}


def _task_failure(module, result):
    """``<module> failed: <msg>`` for a registered result that failed, else None."""
    if result and result.get("failed"):
        return "%s failed: %s" % (module, str(result.get("msg", "")).strip()[:300])
    return None


def _host_error(result):
    """Why a host has no fleet_resources, from its registered host_resources result: never nothing."""
    if not result:
        return "no data: no result from host_resources (host skipped or not reached)"
    if result.get("unreachable"):
        return "unreachable: %s" % str(result.get("msg", "")).strip()[:300]
    return _task_failure("host_resources", result) or "no data: host_resources returned no fleet_resources"


def host_fact(variables, name, result_name):
    """This run's ``name`` fact of a host: from its registered result ``result_name``, else its ``ansible_facts``.

    Neither depends on INJECT_FACTS_AS_VARS. A registered result wins, so a failed call is never covered by
    a fact cached from an earlier run; a host that registered nothing (another playbook) falls back to
    ``ansible_facts``.
    """
    result = variables.get(result_name)
    if isinstance(result, dict) or hasattr(result, "items"):
        if result.get("ansible_facts"):
            return plain_data((result.get("ansible_facts") or {}).get(name))
        if not result.get("skipped"):
            return None
    return plain_data((variables.get("ansible_facts") or {}).get(name))


def _dynamic_thresholds(resources):
    """``[{"figure", "threshold", "basis"}]`` for the figures judged against the agent's baselines (host_resources'
    ``baselines``); the report shows which thresholds were dynamic."""
    found = resources.get("baselines") or {}
    return [{"figure": figure.replace(":", " "), "threshold": entry["threshold"], "basis": entry.get("basis")}
            for figure, entry in sorted(found.items()) if isinstance(entry, dict) and "threshold" in entry]


def fleet_host_row(host, resources, probes=None, logs=None, result=None, thresholds=None, task_errors=None):
    """The report row of one host: verdict, reasons and the numbers the summary and the bars show."""
    levels = merge_thresholds(thresholds)
    resources = dict(resources) if resources else None
    error = None if resources else _host_error(result)
    verdict = host_verdict(resources, probes, logs, error, task_errors)
    row = {
        "host": host,
        "reachable": resources is not None,
        "verdict": verdict["verdict"],
        "reasons": verdict["reasons"],
        "top_reason": verdict["reasons"][0] if verdict["reasons"] else "",
        "score": None, "cpu_percent": None, "memory_percent": None, "worst_disk": None,
        "load_per_core": None, "uptime": None, "uptime_text": None, "top_cpu": [], "dynamic_thresholds": [],
        "probes": (probes or {}).get("summary"),
        "logs": None,
    }
    if logs:
        row["logs"] = {"total_matches": logs.get("total_matches", 0), "highest_severity": logs.get("highest_severity")}
    if resources:
        row.update({
            "score": resources.get("score"),
            "cpu_percent": (resources.get("cpu") or {}).get("percent"),
            "memory_percent": (resources.get("memory") or {}).get("percent"),
            "worst_disk": _worst_disk(resources),
            "load_per_core": (resources.get("load") or {}).get("per_core_5"),
            "uptime": resources.get("uptime"),
            "uptime_text": human_duration(resources.get("uptime")),
            "top_cpu": [{"name": proc["name"], "pid": proc["pid"], "cpu_percent": proc["cpu_percent"]}
                        for proc in ((resources.get("processes") or {}).get("top_cpu") or [])[:3]],
            "dynamic_thresholds": _dynamic_thresholds(resources),
        })
    row["bars"] = [
        {"label": "CPU", "value": row["cpu_percent"], "level": _level(row["cpu_percent"], levels["cpu"]),
         "warn": levels["cpu"]["warn"], "crit": levels["cpu"]["crit"]},
        {"label": "MEM", "value": row["memory_percent"], "level": _level(row["memory_percent"], levels["memory"]),
         "warn": levels["memory"]["warn"], "crit": levels["memory"]["crit"]},
        {"label": "DISK", "value": row["worst_disk"]["percent"] if row["worst_disk"] else None,
         "level": _level(row["worst_disk"]["percent"] if row["worst_disk"] else None, levels["disk"]),
         "warn": levels["disk"]["warn"], "crit": levels["disk"]["crit"]},
    ]
    return row


def plain_data(value):
    """Copy Ansible's lazy, templated containers (hostvars, registered results) into plain dicts and lists,
    for JSON and for the module_utils code the filters call."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return dict((str(key), plain_data(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [plain_data(item) for item in value]
    return value


def issue_of(reason):
    """What a reason is about, without its numbers: 'disk /var 97% >= crit 95%' -> 'disk /var'."""
    if " >= " in reason:
        return reason.split(" >= ")[0].rsplit(" ", 1)[0]
    if re.match(r"\d+ failed units?:", reason):
        return "failed units"
    if ": " in reason:
        return reason.split(": ")[0]
    return re.sub(r" \(.*\)$", "", reason)


def top_issues(rows, limit=6):
    """The issues most hosts share, as ``[{issue, hosts}]``: tells a fleet-wide problem from a single host's."""
    counts = {}
    for row in rows:
        for issue in set(issue_of(reason) for reason in row["reasons"]):
            counts[issue] = counts.get(issue, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [{"issue": issue, "hosts": count} for issue, count in ranked]


def without_log_samples(logs):
    """``logs`` with every rule's sample lines removed; counts and severities stay."""
    if not logs:
        return logs
    logs = dict(logs)
    rules = logs.get("rules")
    if isinstance(rules, dict):
        logs["rules"] = dict((name, dict((k, v) for k, v in rule.items() if k != "samples") if isinstance(rule, dict) else rule)
                             for name, rule in rules.items())
    elif isinstance(rules, list):
        logs["rules"] = [dict((k, v) for k, v in rule.items() if k != "samples") if isinstance(rule, dict) else rule
                         for rule in rules]
    return logs


def fleet_report(hostvars, hosts, thresholds=None, generated_at="", log_samples=True):
    """The whole report: counts per verdict and one row per host, most severe first.

    ``hostvars`` is Ansible's hostvars (or any mapping of host to its variables). Each host's facts
    ``fleet_resources``, ``fleet_probes`` and ``fleet_logs`` are read from its registered results
    ``sweep_resources_result``, ``sweep_probe_result`` and ``sweep_logs_result``, else from its
    ``ansible_facts``: never from injected top-level variables, which INJECT_FACTS_AS_VARS=false removes.
    A host without fleet_resources and without an error is crit "no data". The report's text is masked
    (``mask_data``): it is written to files that outlive the run. ``log_samples=False`` keeps matched log
    lines out of it.
    """
    rows = []
    for host in hosts:
        variables = hostvars[host]
        resources = host_fact(variables, "fleet_resources", "sweep_resources_result")
        probes = host_fact(variables, "fleet_probes", "sweep_probe_result")
        logs = host_fact(variables, "fleet_logs", "sweep_logs_result")
        if not log_samples:
            logs = without_log_samples(logs)
        # The host's own levels, as host_resources used them, colour its bars.
        host_thresholds = plain_data(variables.get("sweep_thresholds")) or thresholds
        # The registered results are only asked how their task ended: no second deep copy of the facts they
        # carry out of hostvars' lazy containers (host_fact copied them once).
        task_errors = [_task_failure("probe", variables.get("sweep_probe_result")),
                       _task_failure("log_scan", variables.get("sweep_logs_result"))]
        row = fleet_host_row(host, resources, probes, logs, variables.get("sweep_resources_result"), host_thresholds,
                             [task_error for task_error in task_errors if task_error])
        row["facts"] = {"resources": resources, "probes": probes, "logs": logs}
        rows.append(row)
    return _fleet_summary(rows, thresholds, generated_at)


def _fleet_summary(rows, thresholds, generated_at):
    """The report around ``rows``: ranked, counted and masked; fleet_report and fleet_report_merge share it."""
    rows.sort(key=lambda row: (-VERDICT_RANK[row["verdict"]], -(row["score"] or 0), row["host"]))
    counts = dict((verdict, 0) for verdict in VERDICT_RANK)
    for row in rows:
        counts[row["verdict"]] += 1
    return mask_data({
        "generated_at": generated_at,
        "thresholds": merge_thresholds(thresholds),
        "total": len(rows),
        "counts": counts,
        "unreachable": sum(1 for row in rows if not row["reachable"]),
        "verdict": worst_verdict(row["verdict"] for row in rows),
        "top_issues": top_issues(rows),
        "hosts": rows,
    })


def fleet_report_merge(reports, generated_at=""):
    """One fleet report from the reports of a sweep's slices (AWX job slicing): their rows ranked and counted again.

    A host in two slices is an error (slices split one inventory). The levels are the first slice's: the
    slices of one job template share them. ``generated_at`` defaults to the latest slice's.
    """
    if not isinstance(reports, (list, tuple)) or not reports:
        raise ValueError("fleet_report_merge: give a non-empty list of slice reports (fleet-report.json of each slice)")
    rows, seen, slices = [], {}, []
    for index, report in enumerate(reports):
        if not isinstance(report, dict) or not isinstance(report.get("hosts"), list):
            raise ValueError("fleet_report_merge: report %d is not a fleet report (no hosts list)" % index)
        name = str(report.get("slice") or index)
        for row in report["hosts"]:
            if row["host"] in seen:
                raise ValueError("fleet_report_merge: host %s is in slice %s and in slice %s; merge the reports of "
                                 "one sliced sweep only" % (row["host"], seen[row["host"]], name))
            seen[row["host"]] = name
            rows.append(dict(row))
        slices.append({"slice": name, "generated_at": report.get("generated_at", ""), "total": len(report["hosts"]),
                       "verdict": worst_verdict(row["verdict"] for row in report["hosts"])})
    merged = _fleet_summary(rows, reports[0].get("thresholds"),
                            generated_at or max(str(report.get("generated_at", "")) for report in reports))
    merged["slices"] = slices
    return merged


def fleet_failing_hosts(report, level):
    """Hosts whose verdict is ``level`` or worse; ``never`` gives none."""
    if level == "never":
        return []
    if level not in ("warn", "crit"):
        raise ValueError("sweep_fail_on must be never, warn or crit, got %r" % (level,))
    return [row["host"] for row in report["hosts"] if VERDICT_RANK[row["verdict"]] >= VERDICT_RANK[level]]


def _percent(value):
    return "-" if value is None else "%.0f%%" % value


def fleet_table(report, width=120):
    """The terminal summary: a headline, then one row per host."""
    counts = report["counts"]
    lines = ["fleet %s: %d host%s, %d crit, %d warn, %d ok%s" % (
        report["verdict"].upper(), report["total"], "" if report["total"] == 1 else "s",
        counts["crit"], counts["warn"], counts["ok"],
        (", %d without facts" % report["unreachable"]) if report["unreachable"] else "")]
    host_width = max([len("HOST")] + [len(row["host"]) for row in report["hosts"]])
    header = "%-*s  %-7s %5s %5s %5s  %-18s %s" % (host_width, "HOST", "VERDICT", "SCORE", "CPU", "MEM", "WORST DISK", "TOP REASON")
    lines.append(header)
    for row in report["hosts"]:
        disk = row["worst_disk"]
        disk_text = "%s %s" % (_percent(disk["percent"]), disk["mount"]) if disk else "-"
        line = "%-*s  %-7s %5s %5s %5s  %-18s %s" % (
            host_width, row["host"], row["verdict"].upper(), "-" if row["score"] is None else row["score"],
            _percent(row["cpu_percent"]), _percent(row["memory_percent"]), disk_text[:18], row["top_reason"] or "-")
        lines.append(line[:width])
    return "\n".join(lines)


class FilterModule(object):
    def filters(self):
        return {
            "fleet_report": fleet_report,
            "fleet_report_merge": fleet_report_merge,
            "fleet_host_verdict": fleet_host_verdict,
            "fleet_table": fleet_table,
            "fleet_failing_hosts": fleet_failing_hosts,
            "human_bytes": human_bytes,
        }
