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

from ansible_collections.fleetops.health.plugins.module_utils import history as history_store
from ansible_collections.fleetops.health.plugins.module_utils.agent_sampler import figures_of
from ansible_collections.fleetops.health.plugins.module_utils.scoring import VERDICT_RANK, worst_verdict
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

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
    kind, _sep, key = figure.partition(":")
    return "%s %s" % (kind, key) if key else kind


def describe(figure, value, baseline):
    """"cpu 71% > baseline 38% x 1.5 (Tue 14h, 7-day)" or "... > baseline 38% + 3 sigma (12%) ..."."""
    percent = figure.partition(":")[0] in PERCENT_KINDS
    if baseline["by"] == "factor":
        rule = "baseline %s \u00d7 %s" % (_short(baseline["mean"], percent), _short(baseline["factor"], False))
    else:
        rule = "baseline %s + %s\u03c3 (\u03c3 %s)" % (
            _short(baseline["mean"], percent), _short(baseline["sigma"], False), _short(baseline["stddev"], percent))
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
    return verdict, list(reasons) + [reason for _figure, reason in findings], dynamic


# ---------------------------------------------------------------- the hook for host_resources

DEFAULT_HISTORY_PATH = "/var/lib/fleetops/agent/history.db"
BASELINE_DEFAULTS = {"weeks": 1, "factor": 1.5, "sigma": 3.0, "min_minutes": 30}
# option: (minimum, maximum, integer, minimum excluded); the agent role documents the same ranges.
BASELINE_LIMITS = {"weeks": (1, 12, True, False), "factor": (1, 100, False, True), "sigma": (0, 100, False, True),
                   "min_minutes": (1, 60, True, False)}


def check_baseline_options(options):
    """``baseline`` merged over BASELINE_DEFAULTS; raises ValueError naming ``baseline.<key>`` and its range."""
    merged = dict(BASELINE_DEFAULTS)
    for key, value in (options or {}).items():
        if key not in BASELINE_LIMITS:
            raise ValueError("baseline: unknown key %r; use %s" % (key, ", ".join(sorted(BASELINE_LIMITS))))
        minimum, maximum, integer, exclusive = BASELINE_LIMITS[key]
        try:
            merged[key] = check_number(value, "baseline.%s" % key, minimum, maximum, integer=integer,
                                       min_exclusive=exclusive)
        except OptionError as exc:
            raise ValueError(str(exc))
    return merged


def judge_with_history(facts, history_path, options, now=None, localtime=time.localtime):
    """The hook host_resources calls after ``collect()``: where the agent keeps a history at ``history_path``,
    add the baseline reasons to ``facts`` and list the dynamic thresholds in ``facts["baselines"]``.

    No history file: ``facts`` is left as it is (static thresholds only). A history that cannot be read
    becomes ``facts["baselines"] = {"error": why}``; it never fails the caller.
    """
    if not history_path:
        return facts
    try:
        reader = history_store.open_read_only(history_path)
    except history_store.HistoryError as exc:
        facts["baselines"] = {"error": str(exc)}
        return facts
    if reader is None:
        return facts
    figures = figures_of(facts)
    wanted = [name for name in figures if name.partition(":")[0] in JUDGED_KINDS]
    try:
        found = hour_of_week_baselines(reader, time.time() if now is None else now, options["weeks"],
                                       options["factor"], options["sigma"], options["min_minutes"], figures=wanted,
                                       localtime=localtime)
    except Exception as exc:  # pylint: disable=broad-except
        # sqlite3's errors (a locked or damaged file) must not cost the host its static verdict.
        facts["baselines"] = {"error": "%s: cannot read the agent's history (%s)" % (history_path, exc)}
        return facts
    finally:
        reader.close()
    facts["verdict"], facts["reasons"], facts["baselines"] = apply_baselines(
        figures, facts.get("verdict", "ok"), facts.get("reasons") or [], found)
    return facts
