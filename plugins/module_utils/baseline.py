# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dynamic thresholds from the agent's history, and the hook that adds them to a static verdict.

Public: the agent and host_resources use both halves.

* ``hour_of_week_baselines``: for each figure, the mean of the same hour of the week over the last N weeks
  (the hour rollups), with the threshold ``max(mean x factor, mean + k sigma)``. A figure whose slot has
  fewer than ``min_minutes`` minutes of history gets ``{"missing": why}`` instead: no invented baseline.
* ``apply_baselines(facts, verdict, reasons, baselines)``: the hook after ``scoring.evaluate``. A figure above
  its baseline adds a ``warn`` reason such as "cpu 71% > baseline 38% x 1.5 (Tue 14h, 7-day)"; the static
  thresholds keep deciding ``crit``. It also lists which thresholds were dynamic, for the report.
"""

from __future__ import annotations

import math
import time

from ansible_collections.fleetops.health.plugins.module_utils.scoring import VERDICT_RANK, worst_verdict

WEEK = 7 * 86400
HOUR = 3600
# Figures judged against a baseline (rates such as net_rx are published, not judged: too spiky).
JUDGED_KINDS = ("cpu", "iowait", "memory", "swap", "load1", "load5", "load15", "disk", "inodes")
PERCENT_KINDS = ("cpu", "iowait", "memory", "swap", "disk", "inodes")
# Below these a figure is quiet whatever its history says: 3% cpu against a 1% mean is no news.
FLOORS = {"percent": 10.0, "load": 1.0}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def slot_label(ts, localtime=time.localtime):
    moment = localtime(ts)
    return "%s %02dh" % (_DAYS[moment.tm_wday], moment.tm_hour)


def hour_of_week_baselines(history, now, weeks=1, factor=1.5, sigma=3.0, min_minutes=30, figures=None,
                           localtime=time.localtime):
    """``{figure: baseline}`` for the hour of the week that ``now`` falls in.

    A baseline is ``{"mean", "stddev", "minutes", "threshold", "basis", "by", "slot", "days"}``; ``by`` is
    ``factor`` or ``sigma`` (whichever threshold is higher). Without enough history: ``{"missing": why}``.
    ``figures`` limits the answer (and names figures that have no history at all).
    """
    hour = int(now // HOUR) * HOUR
    starts = [hour - WEEK * week for week in range(1, weeks + 1)]
    rows = history.hour_rows(starts)
    label = slot_label(now, localtime)
    days = 7 * weeks
    wanted = sorted(set(figures if figures is not None else rows))
    found = {}
    for figure in wanted:
        count, total, squares, minutes = rows.get(figure, (0, 0.0, 0.0, 0))
        if not count or minutes < min_minutes:
            found[figure] = {"missing": "not enough history for %s: %d min in %s over the last %d days, needs %d"
                                        % (figure, minutes or 0, label, days, min_minutes),
                             "slot": label, "days": days, "minutes": minutes or 0}
            continue
        mean = total / count
        stddev = math.sqrt(max(0.0, squares / count - mean * mean))
        by_factor = mean * factor
        by_sigma = mean + sigma * stddev
        found[figure] = {"mean": mean, "stddev": stddev, "minutes": minutes, "slot": label, "days": days,
                         "factor": factor, "sigma": sigma, "by": "factor" if by_factor >= by_sigma else "sigma",
                         "threshold": max(by_factor, by_sigma)}
    return found


def _short(value, percent):
    text = ("%.1f" % value).rstrip("0").rstrip(".")
    return text + ("%" if percent else "")


def _label(figure):
    kind, _, key = figure.partition(":")
    return "%s %s" % (kind, key) if key else kind


def describe(figure, value, baseline):
    """"cpu 71% > baseline 38% x 1.5 (Tue 14h, 7-day)" or "... > baseline 38% + 3 sigma (12%) ..."."""
    percent = figure.partition(":")[0] in PERCENT_KINDS
    if baseline["by"] == "factor":
        rule = "baseline %s \u00d7 %s" % (_short(baseline["mean"], percent), _short(baseline["factor"], False))
    else:
        rule = "baseline %s + %s\u03c3 (\u03c3 %s)" % (_short(baseline["mean"], percent), _short(baseline["sigma"], False),
                                               _short(baseline["stddev"], percent))
    return "%s %s > %s (%s, %d-day)" % (_label(figure), _short(value, percent), rule, baseline["slot"], baseline["days"])


def baseline_findings(figures, baselines):
    """``[(figure, reason)]`` for each judged figure above its baseline and above the quiet floor."""
    findings = []
    for figure, value in sorted(figures.items()):
        kind = figure.partition(":")[0]
        baseline = baselines.get(figure)
        if kind not in JUDGED_KINDS or not baseline or "threshold" not in baseline or value is None:
            continue
        floor = FLOORS["percent"] if kind in PERCENT_KINDS else FLOORS["load"]
        if value > baseline["threshold"] and value >= floor:
            findings.append((figure, describe(figure, value, baseline)))
    return findings


def apply_baselines(figures, verdict, reasons, baselines):
    """The hook after ``scoring.evaluate``: returns ``(verdict, reasons, dynamic)``.

    Baseline reasons come after the static ones (the static ones are the more severe kind); ``dynamic`` is
    ``{figure: {"threshold", "mean", "basis"}}`` for the report, plus ``{figure: {"missing": why}}``.
    """
    findings = baseline_findings(figures, baselines)
    if findings:
        verdict = worst_verdict([verdict, "warn"]) if verdict in VERDICT_RANK else "warn"
    dynamic = {}
    for figure, baseline in sorted(baselines.items()):
        if figure.partition(":")[0] not in JUDGED_KINDS:
            continue
        if "threshold" in baseline:
            dynamic[figure] = {"threshold": round(baseline["threshold"], 2), "mean": round(baseline["mean"], 2),
                               "basis": "%s, %d-day" % (baseline["slot"], baseline["days"])}
        else:
            dynamic[figure] = {"missing": baseline["missing"]}
    return verdict, list(reasons) + [reason for _, reason in findings], dynamic
