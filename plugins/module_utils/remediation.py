# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remediate role's decisions: what is down and why, what to do about it, whether a restart worked.

The role's tasks gather (systemctl, probe, log_scan, host_resources, restart_budget), call these functions
through the ``fleetops.health.remediate_*`` filters, act on the answer and report it. Everything here is a
pure function of its arguments: plain dicts and lists in, plain dicts and lists out.
"""

from __future__ import annotations

from ansible_collections.fleetops.health.plugins.module_utils.scoring import VERDICT_RANK, host_verdict

ACTIONS = ("restart", "notify_only")
VERDICT_TRIGGERS = ("none", "warn", "crit")
POLICY_KEYS = ("action", "max_restarts", "window", "backoff", "verify_timeout", "restart_on_verdict")
# systemd ActiveStates in which a unit counts as up; activating covers systemd's own Restart= in progress,
# the probe decides whether it works.
UNIT_UP_STATES = ("active", "reloading", "activating")
# log_scan rule severities that ask for action on their service.
ACTION_LOG_SEVERITIES = ("critical",)


def _require(condition, message):
    if not condition:
        raise ValueError(message)


DRAIN_UPSTREAM_FILE = "/etc/nginx/fleetops-upstream.conf"


def _drain(service, name, host_address):
    """The service's opt-in ``drain``: which balancer, which upstream file, and this host's server entry."""
    drain = service.get("drain")
    if not drain:
        return {}
    _require(isinstance(drain, dict) and drain.get("balancer"),
             "remediate_services[%s].drain needs balancer, the inventory host of the nginx load balancer" % name)
    unknown = sorted(set(drain) - {"balancer", "upstream_file", "server", "port"})
    _require(not unknown, "remediate_services[%s].drain: unknown key %s; use balancer, upstream_file, server, port"
             % (name, ", ".join(unknown)))
    server = drain.get("server") or "%s:%s" % (host_address, drain.get("port", 80))
    return {"balancer": str(drain["balancer"]), "upstream_file": str(drain.get("upstream_file") or DRAIN_UPSTREAM_FILE),
            "server": str(server)}


def watch_list(services, policy_defaults, host_address="localhost"):
    """Each of ``remediate_services`` with its full policy and its probe target named after it.

    ``host_address`` is how the balancer of a service with ``drain`` reaches this host (its ansible_host).

    Raises ValueError naming the service and the option for input the role cannot act on.
    """
    _require(isinstance(services, list), "remediate_services must be a list of services, got %r" % (services,))
    _require(isinstance(policy_defaults, dict), "remediate_policy_defaults must be a dict, got %r" % (policy_defaults,))
    watched, seen = [], set()
    for index, service in enumerate(services):
        _require(isinstance(service, dict) and service.get("name") and service.get("unit"),
                 "remediate_services[%d]: each service needs a name and a unit, got %r" % (index, service))
        name = str(service["name"])
        _require(name not in seen, "remediate_services: each name may appear once per host; %s is there twice" % name)
        seen.add(name)
        policy = dict(policy_defaults)
        policy.update(service.get("policy") or {})
        unknown = sorted(set(policy) - set(POLICY_KEYS))
        _require(not unknown, "remediate_services[%s].policy: unknown key %s; use %s"
                 % (name, ", ".join(unknown), ", ".join(POLICY_KEYS)))
        _require(policy.get("action") in ACTIONS, "remediate_services[%s].policy.action must be %s, got %r"
                 % (name, " or ".join(ACTIONS), policy.get("action")))
        _require(policy.get("restart_on_verdict", "none") in VERDICT_TRIGGERS,
                 "remediate_services[%s].policy.restart_on_verdict must be none, warn or crit, got %r"
                 % (name, policy.get("restart_on_verdict")))
        policy.setdefault("restart_on_verdict", "none")
        log_rules = list(service.get("log_rules") or [])
        log_paths = list(service.get("log_paths") or [])
        _require(not log_rules or log_paths,
                 "remediate_services[%s]: log_rules needs log_paths, the files or globs to scan" % name)
        probe = dict(service["probe"], name=name) if service.get("probe") else {}
        watched.append({"name": name, "unit": str(service["unit"]), "probe": probe, "log_paths": log_paths,
                        "log_rules": log_rules, "policy": policy, "drain": _drain(service, name, host_address)})
    return watched


def parse_unit_states(show_output, count):
    """``systemctl show --property=LoadState,ActiveState,SubState,Result u1 u2 ...`` as one dict per unit.

    systemctl prints one block per unit, in the order given, separated by an empty line; a property it did
    not print is ``unknown``.
    """
    blocks = (show_output or "").split("\n\n")
    states = []
    for index in range(count):
        block = blocks[index] if index < len(blocks) else ""
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states.append(dict((key, values.get(prop, "unknown")) for key, prop in (
            ("load", "LoadState"), ("active", "ActiveState"), ("sub", "SubState"), ("result", "Result"))))
    return states


def _probe_result(probes, name):
    for result in (probes or {}).get("results") or []:
        if result.get("name") == name:
            return result
    return {}


def _logs_by_service(log_scans):
    """``{service name: fleet_logs}`` from log_scan's registered loop result (its ``results``)."""
    logs = {}
    for scan in log_scans or []:
        name = ((scan or {}).get("item") or {}).get("name")
        facts = (scan or {}).get("ansible_facts") or {}
        if name and facts.get("fleet_logs"):
            logs[name] = facts["fleet_logs"]
    return logs


def _probe_label(probe):
    return probe.get("url") or probe.get("tcp") or probe.get("tls") or probe.get("name", "")


def detect(watched, unit_show, probes=None, log_scans=None, resources=None):
    """What this run sees: ``{findings, verdict, observations, candidates}``.

    ``unit_show`` is the output of one ``systemctl show`` over every watched unit, ``probes`` the probe
    module's ``fleet_probes`` fact, ``log_scans`` log_scan's registered loop results, ``resources``
    host_resources' ``fleet_resources`` fact (or None). Each finding says whether its service is up and
    gives the reasons that ask for action; ``verdict`` is the host's verdict by ``scoring.host_verdict``,
    the one the sweep's report and the im_notify callback give too.
    """
    units = parse_unit_states(unit_show, len(watched))
    logs = _logs_by_service(log_scans)
    resource_verdict = host_verdict(resources) if resources else {"verdict": "ok", "reasons": []}
    findings = []
    for service, unit in zip(watched, units):
        installed = unit["load"] == "loaded"
        unit_up = installed and unit["active"] in UNIT_UP_STATES
        probe = _probe_result(probes, service["name"]) if service["probe"] else {}
        probe_down = probe.get("state") == "down"
        reasons = []
        if not installed:
            reasons.append("unit %s is not installed (LoadState=%s)" % (service["unit"], unit["load"]))
        elif not unit_up:
            reasons.append("unit %s is %s (result: %s)" % (service["unit"], unit["active"], unit["result"]))
        if probe_down:
            reasons.append("probe %s is down after %s failed runs: %s" % (
                _probe_label(service["probe"]), probe.get("consecutive_fail"), probe.get("error")))
        rules = (logs.get(service["name"]) or {}).get("rules") or {}
        for rule_name in sorted(rules):
            rule = rules[rule_name] or {}
            if str(rule.get("severity")).lower() in ACTION_LOG_SEVERITIES and int(rule.get("count") or 0) > 0:
                reasons.append("critical log rule %s matched since the last run" % rule_name)
        trigger = service["policy"]["restart_on_verdict"]
        if trigger != "none" and VERDICT_RANK[resource_verdict["verdict"]] >= VERDICT_RANK[trigger]:
            reasons.append("host verdict is %s: %s" % (resource_verdict["verdict"], "; ".join(resource_verdict["reasons"])))
        state = "up" if unit_up and not probe_down else "down"
        budget = {"name": service["name"], "max_restarts": service["policy"]["max_restarts"],
                  "window": str(service["policy"]["window"]), "backoff": str(service["policy"]["backoff"])}
        findings.append({
            "name": service["name"], "unit": service["unit"], "installed": installed, "active_state": unit["active"],
            "state": state, "reasons": reasons, "probe": service["probe"], "policy": service["policy"],
            "budget": budget, "drain": service.get("drain") or {},
        })
    return {
        "findings": findings,
        "verdict": host_verdict(resources, probes, list(logs.values())),
        # what restart_budget takes: every state seen (action=observe), the budgets to ask about (action=check)
        "observations": [dict(finding["budget"], state=finding["state"]) for finding in findings],
        "candidates": restart_candidates(findings),
    }


def restart_candidates(findings):
    """The restart_budget entries of the services that ask for a restart and could get one."""
    return [finding["budget"] for finding in findings
            if finding["reasons"] and finding["installed"] and finding["policy"]["action"] == "restart"]


def restart_method(active_state):
    """reset-failed first: a unit that hit systemd's StartLimitBurst refuses a plain start until then."""
    if active_state == "failed":
        return "reset-failed and start"
    if active_state == "inactive":
        return "start"
    return "restart"


def _or(value, fallback):
    return fallback if value is None else value


def recovered_services(observed):
    """The services restart_budget (action=observe) saw come back up, with or without our help."""
    services = (observed or {}).get("services") or {}
    return sorted(name for name, seen in services.items() if (seen or {}).get("transition") == "recovered")


def plan(findings, budgets=None, observed=None, check_mode=False, verdict=None):
    """``{steps, lines}``: one step per service that asks for action, and what the plan task shows.

    Each step has a ``decision`` (restart, notify_only, not_installed, skip_budget, skip_backoff), a
    ``method`` and a ``sentence`` for people. ``budgets`` is restart_budget's ``services`` of
    ``action=check`` (by service name), ``observed`` restart_budget's result of ``action=observe``,
    ``verdict`` the host's verdict from ``detect``, shown first when it is not ok.
    """
    steps = []
    for finding in findings:
        if not finding["reasons"]:
            continue
        status = (budgets or {}).get(finding["name"]) or {}
        if not finding["installed"]:
            decision = "not_installed"
        elif finding["policy"]["action"] == "notify_only":
            decision = "notify_only"
        elif status.get("allowed"):
            decision = "restart"
        else:
            decision = "skip_%s" % (status.get("blocked_by") or "budget")
        method = restart_method(finding["active_state"])
        why = "; ".join(finding["reasons"])
        name, unit = finding["name"], finding["unit"]
        retry_after = status.get("retry_after") or "never"
        sentences = {
            "restart": "%s %s (%s) because %s; restart budget %s of %s left in %s s" % (
                method, name, unit, why, _or(status.get("budget_left"), "?"), finding["policy"]["max_restarts"],
                _or(status.get("window"), "?")),
            "skip_budget": "leave %s (%s) alone: its restart budget is spent (%s restarts in %s s), next restart "
                           "allowed in %s s; it is down because %s" % (
                               name, unit, _or(status.get("attempts_in_window"), "?"), _or(status.get("window"), "?"),
                               retry_after, why),
            "skip_backoff": "wait with %s (%s): backoff, next restart allowed in %s s; it is down because %s" % (
                name, unit, retry_after, why),
            "notify_only": "only report %s (%s), its policy is notify_only: %s" % (name, unit, why),
            "not_installed": "cannot restart %s: %s" % (name, why),
        }
        steps.append(dict(finding, decision=decision, method=method, budget_left=status.get("budget_left"),
                          retry_after=status.get("retry_after"), sentence=sentences[decision]))
    lines = plan_lines(steps, findings, recovered_services(observed), check_mode)
    if verdict and verdict.get("verdict", "ok") != "ok":
        lines.insert(1 if check_mode else 0, "host verdict %s: %s" % (verdict["verdict"], "; ".join(verdict.get("reasons") or [])))
    return {"steps": steps, "lines": lines}


def plan_lines(steps, findings, recovered=(), check_mode=False):
    """What the plan task shows: one sentence per step, or that all is well, and the recoveries seen."""
    lines = ["check mode, nothing is changed; the plan:"] if check_mode else []
    lines.extend(step["sentence"] for step in steps)
    if not steps:
        lines.append("nothing to do: %d services watched, all well" % len(findings))
    lines.extend("%s recovered (resolved notice)" % name for name in recovered)
    return lines


def good_probes_since_restart(probe_run):
    """Good probes in a row made after the restart, from one registered verification probe (an until loop).

    The probe state file is shared with detection, so ``consecutive_ok`` may carry good runs from before
    the restart (a restart asked for by a log rule or a verdict while the probe was up). Only the loop's
    own ``attempts`` happened after the restart: the run of good probes since then is at most that many.
    """
    results = (((probe_run or {}).get("ansible_facts") or {}).get("fleet_probes") or {}).get("results") or []
    if not results or not results[0].get("ok"):
        return 0
    attempts = int((probe_run or {}).get("attempts") or 1)
    return min(int(results[0].get("consecutive_ok") or 0), attempts)


def probe_verified(probe_run, healthy_threshold):
    """A restart's probe passes: ``healthy_threshold`` good probes in a row, all made after the restart."""
    return good_probes_since_restart(probe_run) >= int(healthy_threshold)


def _first_probe(probe_run):
    results = (((probe_run or {}).get("ansible_facts") or {}).get("fleet_probes") or {}).get("results") or []
    return results[0] if results else {}


def judge(steps, restarts=None, verify_probes=None, unit_show_after="", healthy_threshold=2):
    """Each step's outcome: ``result`` (verified, failed_verify, skipped), ``detail`` and the budget ``record``.

    ``restarts`` and ``verify_probes`` are the registered loop results (their ``results``) of the restart
    and verification tasks, ``unit_show_after`` is ``systemctl show --property=ActiveState`` over the
    restarted units in the order they were restarted.
    """
    start_errors = dict((run["item"]["name"], str(run.get("msg", "")).strip())
                        for run in restarts or [] if run.get("failed") and run.get("item"))
    restarted = [run["item"]["name"] for run in restarts or []
                 if run.get("item") and not run.get("failed") and not run.get("skipped")]
    states_after = [line.split("=", 1)[1] for line in (unit_show_after or "").splitlines() if line.startswith("ActiveState=")]
    unit_after = dict(zip(restarted, states_after))
    probe_runs = dict((run["item"]["name"], run) for run in verify_probes or [] if run.get("item"))
    outcomes = []
    for step in steps:
        name, method = step["name"], step["method"]
        probe_run = probe_runs.get(name)
        probe_seen = _first_probe(probe_run)
        unit_seen = unit_after.get(name, "unknown")
        if step["decision"] != "restart":
            result, detail = "skipped", "not restarted (%s)" % step["decision"]
        elif name in start_errors:
            result, detail = "failed_verify", "systemd could not %s it: %s" % (method, start_errors[name])
        elif (step["probe"] and not probe_verified(probe_run, healthy_threshold)) or unit_seen != "active":
            probe_text = ""
            if step["probe"]:
                probe_text = "probe %s, " % ("ok %d time(s) since the restart, %s needed" % (
                    good_probes_since_restart(probe_run), healthy_threshold) if probe_seen.get("ok")
                    else (probe_seen.get("error") or "gave no answer"))
            result = "failed_verify"
            detail = "%s done; not healthy within %s s: %sunit %s" % (
                method, step["policy"]["verify_timeout"], probe_text, unit_seen)
        else:
            result = "verified"
            detail = "%s done and verified: unit active%s" % (
                method, (", probe ok in %s ms" % probe_seen.get("latency_ms")) if step["probe"] else "")
        record = dict(step["budget"], result=result, reason="%s -> %s" % ("; ".join(step["reasons"]), detail))
        outcomes.append(dict(step, result=result, detail=detail, record=record))
    return outcomes


def host_report(host, findings, outcomes, verdict=None, observed=None, recorded=None):
    """The host's report for its notifications and the run summary."""
    recovered = recovered_services(observed)
    escalated = list((recorded or {}).get("escalations") or [])
    keep = ("name", "unit", "decision", "result", "detail", "reasons")
    return {
        "host": host,
        "watched": len(findings),
        "verdict": (verdict or {}).get("verdict", "ok"),
        "verdict_reasons": list((verdict or {}).get("reasons") or []),
        "down": [finding["name"] for finding in findings if finding["state"] == "down"],
        "outcomes": [dict((key, outcome.get(key)) for key in keep) for outcome in outcomes],
        "failed": [outcome["name"] for outcome in outcomes if outcome["result"] == "failed_verify"],
        "escalated": escalated,
        # One short phrase per event, for the run summary.
        "events": (["%s %s" % (outcome["name"], outcome["result"]) for outcome in outcomes]
                   + ["%s escalated" % name for name in escalated]
                   + ["%s recovered" % name for name in recovered]),
        "recovered": recovered,
    }
