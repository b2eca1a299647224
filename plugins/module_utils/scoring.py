# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thresholds, the weighted load score and the ok/warn/crit verdict with the reasons behind it.

``host_verdict`` is the one place where a host's verdict is made: the sweep's report, the im_notify
callback and the remediate role all call it, so a host is judged alike wherever it shows up.
"""

from __future__ import annotations

from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number, check_order

DEFAULT_THRESHOLDS = {
    "cpu": {"warn": 85, "crit": 95},
    "memory": {"warn": 85, "crit": 95},
    "disk": {"warn": 85, "crit": 95},
    "inodes": {"warn": 85, "crit": 95},
    "load": {"warn": 1.5, "crit": 3},
    "iowait": {"warn": 20, "crit": 40},
    "swap": {"warn": 50, "crit": 80},
}
DEFAULT_WEIGHTS = {"cpu": 0.4, "memory": 0.3, "disk_io": 0.2, "network": 0.1}
# The documented ranges: percent metrics 0-100, load per core 0-1000, each weight 0-100.
THRESHOLD_MAXIMUM = {"load": 1000}
PERCENT_MAXIMUM = 100
WEIGHT_MAXIMUM = 100

VERDICT_RANK = {"ok": 0, "warn": 1, "crit": 2}


def worst_verdict(verdicts):
    """The most severe of ``verdicts`` (``ok`` for none)."""
    return max(verdicts, key=VERDICT_RANK.__getitem__, default="ok")


def _number(value, name, maximum):
    try:
        return float(check_number(value, name, 0, maximum))
    except OptionError as exc:
        raise ValueError(str(exc))


def merge_thresholds(overrides):
    """Defaults with ``overrides`` applied; unknown metrics or levels raise ValueError naming the key."""
    merged = dict((metric, dict(levels)) for metric, levels in DEFAULT_THRESHOLDS.items())
    for metric, levels in (overrides or {}).items():
        if metric not in DEFAULT_THRESHOLDS:
            raise ValueError("thresholds: unknown metric %r; use one of %s" % (metric, ", ".join(sorted(DEFAULT_THRESHOLDS))))
        if not isinstance(levels, dict):
            raise ValueError("thresholds.%s must be a dict with warn and/or crit, got %r" % (metric, levels))
        for level, value in levels.items():
            if level not in ("warn", "crit"):
                raise ValueError("thresholds.%s: unknown level %r; use warn or crit" % (metric, level))
            merged[metric][level] = _number(value, "thresholds.%s.%s" % (metric, level),
                                            THRESHOLD_MAXIMUM.get(metric, PERCENT_MAXIMUM))
        try:
            check_order(merged[metric]["warn"], merged[metric]["crit"], "thresholds.%s.warn" % metric,
                        "thresholds.%s.crit" % metric)
        except OptionError as exc:
            raise ValueError(str(exc))
    return merged


def merge_weights(overrides):
    merged = dict(DEFAULT_WEIGHTS)
    for name, value in (overrides or {}).items():
        if name not in DEFAULT_WEIGHTS:
            raise ValueError("weights: unknown key %r; use one of %s" % (name, ", ".join(sorted(DEFAULT_WEIGHTS))))
        merged[name] = _number(value, "weights.%s" % name, WEIGHT_MAXIMUM)
    if not any(merged.values()):
        raise ValueError("weights: at least one weight must be above 0")
    return merged


def _fmt(value):
    """97.53 -> '97.5', 3.0 -> '3', 0.002 -> '0.002': short, but a small level never prints as 0."""
    if abs(value) >= 1 or value == 0:
        return ("%.1f" % value).rstrip("0").rstrip(".")
    return "%.3g" % value


def _check(findings, label, value, levels, unit="%"):
    """Append ``(rank, overshoot, sentence)`` when ``value`` reaches a level."""
    if value is None:
        return
    for level in ("crit", "warn"):
        if value >= levels[level]:
            overshoot = (value - levels[level]) / (levels[level] or 1)
            findings.append((VERDICT_RANK[level], overshoot, "%s %s%s >= %s %s%s" % (
                label, _fmt(value), unit, level, _fmt(levels[level]), unit)))
            return


def evaluate(resources, thresholds):
    """Return ``(verdict, reasons)``: reasons are sentences, the most severe first."""
    findings = []
    cpu = resources.get("cpu") or {}
    _check(findings, "cpu", cpu.get("percent"), thresholds["cpu"])
    _check(findings, "iowait", cpu.get("iowait"), thresholds["iowait"])
    load = resources.get("load") or {}
    _check(findings, "load per core (5 min)", load.get("per_core_5"), thresholds["load"], unit="")
    memory = resources.get("memory") or {}
    _check(findings, "memory", memory.get("percent"), thresholds["memory"])
    cgroup = resources.get("cgroup") or {}
    _check(findings, "cgroup memory", cgroup.get("memory_percent"), thresholds["memory"])
    swap = resources.get("swap") or {}
    if swap.get("total"):
        _check(findings, "swap", swap.get("percent"), thresholds["swap"])
    for disk in resources.get("disks") or []:
        if disk.get("error"):
            # A hung or failing mount matters; an unreadable mount table alone does not make a verdict.
            if disk.get("mount"):
                findings.append((VERDICT_RANK["warn"], 0.0, "disk %s: %s" % (disk["mount"], disk["error"])))
            continue
        _check(findings, "disk %s" % disk["mount"], disk.get("percent"), thresholds["disk"])
        _check(findings, "inodes %s" % disk["mount"], disk.get("inodes_percent"), thresholds["inodes"])
    failed = (resources.get("units") or {}).get("failed") or []
    if failed:
        names = ", ".join(unit["unit"] for unit in failed[:3]) + (", ..." if len(failed) > 3 else "")
        findings.append((VERDICT_RANK["warn"], float(len(failed)), "%d failed unit%s: %s" % (
            len(failed), "" if len(failed) == 1 else "s", names)))
    findings.sort(key=lambda finding: (-finding[0], -finding[1]))
    verdict = "ok"
    if findings:
        verdict = [name for name, rank in VERDICT_RANK.items() if rank == findings[0][0]][0]
    return verdict, [finding[2] for finding in findings]


def _busiest(entries, key):
    values = [entry[key] for entry in entries or [] if entry.get(key) is not None]
    return max(values) if values else None


def load_score(resources, weights):
    """Weighted load, 0 (idle) to 100 (saturated), over the parts measured; ``None`` if none was.

    disk_io is the busiest device's busy %, network the busiest link's use of its speed. A part that
    was not measured (no window, unknown link speed) drops out and the other weights are rescaled.
    """
    parts = {
        "cpu": (resources.get("cpu") or {}).get("percent"),
        "memory": (resources.get("memory") or {}).get("percent"),
        "disk_io": _busiest(resources.get("io"), "busy_percent"),
        "network": _busiest(resources.get("network"), "util_percent"),
    }
    measured = dict((name, min(100.0, value)) for name, value in parts.items() if value is not None and weights.get(name))
    total_weight = sum(weights[name] for name in measured)
    if not total_weight:
        return None
    return int(round(sum(weights[name] * value for name, value in measured.items()) / total_weight))


# log_scan rule severities that make a matching rule a crit or a warn reason; other severities only count.
CRIT_LOG_SEVERITIES = ("critical", "crit", "fatal", "emergency", "alert")
WARN_LOG_SEVERITIES = ("warning", "warn", "error")


def probe_findings(probes):
    """``[(level, reason)]`` from a ``fleet_probes`` fact: a target down is crit, failing but not yet down warn."""
    findings = []
    for result in (probes or {}).get("results") or []:
        detail = result.get("error_kind") or result.get("error") or "failed"
        name = result.get("name", "?")
        # state follows the unhealthy threshold; a target failing but not yet down is a warning.
        if result.get("state") == "down" or (result.get("state") is None and result.get("ok") is False):
            findings.append(("crit", "probe %s down (%s)" % (name, detail)))
        elif result.get("ok") is False:
            findings.append(("warn", "probe %s failing (%s), not down yet" % (name, detail)))
    return findings


def log_rule_items(logs):
    """Per-rule entries of a ``fleet_logs`` fact as ``(name, count, severity)``; rules as a list or a name-keyed dict."""
    rules = (logs or {}).get("rules") or {}
    if isinstance(rules, dict):
        rules = [dict(rule, name=name) for name, rule in rules.items()]
    return [(rule.get("name") or rule.get("rule") or "?", int(rule.get("count") or 0), str(rule.get("severity") or "").lower())
            for rule in rules]


def log_findings(logs):
    """``[(level, reason)]`` from one ``fleet_logs`` fact or a list of them (one per log_scan call)."""
    findings = []
    for one in logs if isinstance(logs, list) else [logs]:
        for name, count, severity in log_rule_items(one):
            if count <= 0:
                continue
            if severity in CRIT_LOG_SEVERITIES:
                level = "crit"
            elif severity in WARN_LOG_SEVERITIES:
                level = "warn"
            else:
                continue
            findings.append((level, "log rule %s: %d %s match%s" % (name, count, severity, "" if count == 1 else "es")))
    return findings


def resource_findings(resources):
    """``[(level, reason)]`` from a ``fleet_resources`` fact: its reasons at host_resources' own verdict."""
    if not resources:
        return []
    level = str(resources.get("verdict") or "ok").lower()
    if level not in VERDICT_RANK:
        raise ValueError("fleet_resources.verdict must be ok, warn or crit, got %r" % (resources.get("verdict"),))
    # A reason on an ok host (none today) still deserves a look.
    level = level if level != "ok" else "warn"
    reasons = list(resources.get("reasons") or [])
    if not reasons and resources.get("verdict") in ("warn", "crit"):
        reasons = ["host_resources verdict %s" % level]
    return [(level, reason) for reason in reasons]


def host_verdict(resources=None, probes=None, logs=None, error=None, task_errors=None):
    """One host's ``{verdict, reasons}`` from everything known of it; the most severe reasons first.

    ``resources`` is host_resources' ``fleet_resources`` fact, ``probes`` the probe module's ``fleet_probes``,
    ``logs`` one ``fleet_logs`` fact or a list of them. ``error`` says why a host has no facts (unreachable,
    no data), ``task_errors`` are checks that could not run: each is a crit reason, never a silent pass.
    A probe target down and a critical log rule are crit, a failing probe and a warning log rule warn.
    """
    findings = []
    if error:
        findings.append(("crit", error))
    findings.extend(("crit", task_error) for task_error in task_errors or [])
    findings.extend(resource_findings(resources))
    findings.extend(probe_findings(probes))
    findings.extend(log_findings(logs))
    # Stable sort keeps each source's own order (host_resources already sorts by overshoot).
    findings.sort(key=lambda finding: -VERDICT_RANK[finding[0]])
    return {"verdict": worst_verdict(finding[0] for finding in findings), "reasons": [finding[1] for finding in findings]}
