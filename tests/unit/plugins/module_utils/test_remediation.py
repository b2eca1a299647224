"""The remediate role's decisions: watch list, detection, plan, post-restart verification, judgement, report."""
from __future__ import annotations

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import remediation

POLICY = {"action": "restart", "max_restarts": 3, "window": "1h", "backoff": "1m", "verify_timeout": 60,
          "restart_on_verdict": "none"}
NGINX = {"name": "nginx", "unit": "nginx.service", "probe": {"url": "http://127.0.0.1/"}}


def show(*units):
    """systemctl show's output for units given as (LoadState, ActiveState, Result)."""
    return "\n\n".join("LoadState=%s\nActiveState=%s\nSubState=x\nResult=%s" % unit for unit in units)


def probes(**states):
    """fleet_probes with one result per name: 'up', 'down' or 'failing' (failing but not down yet)."""
    results = []
    for name, state in states.items():
        results.append({"name": name, "ok": state == "up", "state": "up" if state != "down" else "down",
                        "consecutive_fail": 3 if state == "down" else 0, "consecutive_ok": 5 if state == "up" else 0,
                        "error": None if state == "up" else "connection refused",
                        "error_kind": None if state == "up" else "refused"})
    return {"results": results}


def watch(*services, **policy):
    return remediation.watch_list(list(services), dict(POLICY, **policy))


# --- the watch list ---------------------------------------------------------------------------------------

def test_watch_list_merges_policy_and_names_the_probe():
    watched = watch(dict(NGINX, policy={"max_restarts": 1}))
    assert watched[0]["policy"] == dict(POLICY, max_restarts=1)
    assert watched[0]["probe"] == {"url": "http://127.0.0.1/", "name": "nginx"}
    assert watched[0]["log_rules"] == [] and watched[0]["log_paths"] == []


@pytest.mark.parametrize("services, message", [
    ([NGINX, NGINX], "each name may appear once per host; nginx is there twice"),
    ([{"name": "x"}], "remediate_services[0]: each service needs a name and a unit"),
    ([dict(NGINX, policy={"action": "reboot"})], "remediate_services[nginx].policy.action must be restart or notify_only"),
    ([dict(NGINX, policy={"restart_on_verdict": "bad"})], "restart_on_verdict must be none, warn or crit"),
    ([dict(NGINX, policy={"max_restart": 1})], "remediate_services[nginx].policy: unknown key max_restart"),
    ([dict(NGINX, log_rules=[{"name": "r", "keywords": ["x"]}])], "log_rules needs log_paths"),
    ("nginx", "remediate_services must be a list"),
])
def test_watch_list_rejects_what_it_cannot_act_on(services, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        remediation.watch_list(services, POLICY)


# --- detection --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit, probe_state, state, reasons", [
    (("loaded", "active", "success"), "up", "up", []),
    (("loaded", "activating", "success"), "up", "up", []),
    (("loaded", "failed", "signal"), "down", "down",
     ["unit nginx.service is failed (result: signal)",
      "probe http://127.0.0.1/ is down after 3 failed runs: connection refused"]),
    (("loaded", "active", "success"), "down", "down",
     ["probe http://127.0.0.1/ is down after 3 failed runs: connection refused"]),
    # failing but not down yet: no action, the unhealthy threshold decides
    (("loaded", "active", "success"), "failing", "up", []),
    (("not-found", "inactive", "success"), "down", "down",
     ["unit nginx.service is not installed (LoadState=not-found)",
      "probe http://127.0.0.1/ is down after 3 failed runs: connection refused"]),
])
def test_detect_unit_and_probe(unit, probe_state, state, reasons):
    detected = remediation.detect(watch(NGINX), show(unit), probes(nginx=probe_state))
    finding = detected["findings"][0]
    assert (finding["state"], finding["reasons"]) == (state, reasons)
    assert detected["observations"] == [{"name": "nginx", "max_restarts": 3, "window": "1h", "backoff": "1m",
                                         "state": state}]
    assert detected["candidates"] == ([finding["budget"]] if reasons and finding["installed"] else [])


def test_a_probe_down_host_is_crit_as_in_the_report_and_the_callback():
    detected = remediation.detect(watch(NGINX), show(("loaded", "active", "success")), probes(nginx="down"),
                                  resources={"verdict": "ok", "reasons": []})
    assert detected["verdict"] == {"verdict": "crit", "reasons": ["probe nginx down (refused)"]}


def test_critical_log_rules_ask_for_action_warnings_do_not():
    service = dict(NGINX, log_paths=["/var/log/app.log"], log_rules=[{"name": "fatal"}, {"name": "slow"}])
    scans = [{"item": {"name": "nginx"}, "ansible_facts": {"fleet_logs": {"rules": {
        "fatal": {"count": 1, "severity": "critical"}, "slow": {"count": 4, "severity": "warning"},
        "oom": {"count": 0, "severity": "critical"}}}}}]
    detected = remediation.detect(watch(service), show(("loaded", "active", "success")), probes(nginx="up"), scans)
    assert detected["findings"][0]["reasons"] == ["critical log rule fatal matched since the last run"]
    assert detected["findings"][0]["state"] == "up"
    assert detected["verdict"]["verdict"] == "crit"


@pytest.mark.parametrize("trigger, resources_verdict, acts", [
    ("none", "crit", False), ("crit", "warn", False), ("crit", "crit", True), ("warn", "warn", True),
    ("warn", "crit", True), ("warn", "ok", False),
])
def test_restart_on_verdict_follows_the_host_resources_verdict(trigger, resources_verdict, acts):
    resources = {"verdict": resources_verdict, "reasons": [] if resources_verdict == "ok" else ["memory 99% >= crit 95%"]}
    detected = remediation.detect(watch({"name": "app", "unit": "app.service"}, restart_on_verdict=trigger),
                                  show(("loaded", "active", "success")), resources=resources)
    reasons = detected["findings"][0]["reasons"]
    assert bool(reasons) is acts
    if acts:
        assert reasons == ["host verdict is %s: memory 99%% >= crit 95%%" % resources_verdict]


def test_units_are_matched_to_services_in_order_and_missing_blocks_are_unknown():
    watched = watch({"name": "a", "unit": "a.service"}, {"name": "b", "unit": "b.service"})
    detected = remediation.detect(watched, show(("loaded", "active", "success")))
    assert [f["state"] for f in detected["findings"]] == ["up", "down"]
    assert detected["findings"][1]["reasons"] == ["unit b.service is not installed (LoadState=unknown)"]


# --- the plan ---------------------------------------------------------------------------------------------

def finding(active="failed", installed=True, action="restart", reasons=("unit x is failed",)):
    detected = remediation.detect(watch({"name": "x", "unit": "x.service", "policy": {"action": action}}),
                                  show(("loaded" if installed else "not-found", active, "exit-code")))
    return dict(detected["findings"][0], reasons=list(reasons))


@pytest.mark.parametrize("kwargs, budget, decision, method, sentence", [
    ({}, {"allowed": True, "budget_left": 2, "window": 3600}, "restart", "reset-failed and start",
     "reset-failed and start x (x.service) because unit x is failed; restart budget 2 of 3 left in 3600 s"),
    ({"active": "inactive"}, {"allowed": True, "budget_left": 3, "window": 3600}, "restart", "start", "start x"),
    ({"active": "active"}, {"allowed": True, "budget_left": 3, "window": 3600}, "restart", "restart", "restart x"),
    ({}, {"allowed": False, "blocked_by": "budget", "attempts_in_window": 3, "window": 3600, "retry_after": 120},
     "skip_budget", "reset-failed and start", "leave x (x.service) alone: its restart budget is spent (3 restarts"),
    ({}, {"allowed": False, "blocked_by": "backoff", "retry_after": 30}, "skip_backoff", "reset-failed and start",
     "wait with x (x.service): backoff, next restart allowed in 30 s"),
    ({"action": "notify_only"}, {}, "notify_only", "reset-failed and start", "only report x (x.service)"),
    ({"installed": False}, {}, "not_installed", "reset-failed and start", "cannot restart x"),
])
def test_plan_decides_within_the_budget(kwargs, budget, decision, method, sentence):
    planned = remediation.plan([finding(**kwargs)], {"x": budget})
    step = planned["steps"][0]
    assert (step["decision"], step["method"]) == (decision, method)
    assert step["sentence"].startswith(sentence) and planned["lines"] == [step["sentence"]]


def test_plan_of_a_healthy_host_says_so_and_lists_recoveries():
    healthy = finding(active="active", reasons=())
    observed = {"services": {"x": {"transition": "recovered"}, "y": {"transition": None}}}
    planned = remediation.plan([healthy], {}, observed, check_mode=True)
    assert planned == {"steps": [], "lines": ["check mode, nothing is changed; the plan:",
                                              "nothing to do: 1 services watched, all well", "x recovered (resolved notice)"]}


# --- verification counts only probes made after the restart -----------------------------------------------

def probe_run(ok, consecutive_ok, attempts):
    return {"attempts": attempts, "ansible_facts": {"fleet_probes": {"results": [
        {"name": "x", "ok": ok, "consecutive_ok": consecutive_ok, "latency_ms": 3, "error": None if ok else "refused"}]}}}


@pytest.mark.parametrize("run, verified", [
    # the probe was up before a log rule asked for the restart: 6 in a row, but only 1 after the restart
    (probe_run(True, 6, 1), False),
    (probe_run(True, 7, 2), True),
    (probe_run(True, 2, 5), True),
    # a failure after the restart resets the count
    (probe_run(True, 1, 4), False),
    (probe_run(False, 0, 3), False),
    ({}, False),
    (None, False),
])
def test_probe_verified_counts_only_probes_after_the_restart(run, verified):
    assert remediation.probe_verified(run, 2) is verified


# --- judging the outcome ----------------------------------------------------------------------------------

def restart_step():
    step = remediation.plan([dict(finding(), probe={"url": "http://127.0.0.1/", "name": "x"})],
                            {"x": {"allowed": True, "budget_left": 2}})["steps"][0]
    return step


@pytest.mark.parametrize("restarts, verify, units_after, result, detail", [
    ([{"item": {"name": "x"}, "changed": True}], [dict(probe_run(True, 2, 2), item={"name": "x"})], "ActiveState=active\n",
     "verified", "reset-failed and start done and verified: unit active, probe ok in 3 ms"),
    ([{"item": {"name": "x"}, "changed": True}], [dict(probe_run(True, 9, 1), item={"name": "x"})], "ActiveState=active\n",
     "failed_verify", "reset-failed and start done; not healthy within 60 s: probe ok 1 time(s) since the restart, "
                      "2 needed, unit active"),
    ([{"item": {"name": "x"}, "changed": True}], [dict(probe_run(False, 0, 30), item={"name": "x"})], "ActiveState=failed\n",
     "failed_verify", "reset-failed and start done; not healthy within 60 s: probe refused, unit failed"),
    ([{"item": {"name": "x"}, "failed": True, "msg": "Unit x.service not found."}], [], "",
     "failed_verify", "systemd could not reset-failed and start it: Unit x.service not found."),
])
def test_judge(restarts, verify, units_after, result, detail):
    outcome = remediation.judge([restart_step()], restarts, verify, units_after, 2)[0]
    assert (outcome["result"], outcome["detail"]) == (result, detail)
    assert outcome["record"]["result"] == result and outcome["record"]["reason"].endswith(" -> " + detail)


def test_judge_skips_what_was_not_restarted_and_reports_the_host():
    skipped = remediation.plan([finding(action="notify_only")], {})["steps"]
    outcomes = remediation.judge(skipped)
    assert [(o["result"], o["detail"]) for o in outcomes] == [("skipped", "not restarted (notify_only)")]
    failed = remediation.judge([restart_step()], [{"item": {"name": "x"}, "failed": True, "msg": "boom"}])
    report = remediation.host_report("web1", [finding()], outcomes + failed, {"verdict": "crit", "reasons": ["r"]},
                                     {"services": {"y": {"transition": "recovered"}}}, {"escalations": ["x"]})
    assert report["failed"] == ["x"] and report["verdict"] == "crit" and report["recovered"] == ["y"]
    assert report["events"] == ["x skipped", "x failed_verify", "x escalated", "y recovered"]
    assert sorted(report["outcomes"][0]) == ["decision", "detail", "name", "reasons", "result", "unit"]


@pytest.mark.parametrize("drain, expected", [
    (None, {}),
    ({"balancer": "lb-1"}, {"balancer": "lb-1", "upstream_file": "/etc/nginx/fleetops-upstream.conf",
                            "server": "10.0.0.5:80"}),
    ({"balancer": "lb-1", "port": 8080, "upstream_file": "/etc/nginx/up.conf"},
     {"balancer": "lb-1", "upstream_file": "/etc/nginx/up.conf", "server": "10.0.0.5:8080"}),
    ({"balancer": "lb-1", "server": "web-1.internal:81"},
     {"balancer": "lb-1", "upstream_file": "/etc/nginx/fleetops-upstream.conf", "server": "web-1.internal:81"}),
])
def test_drain_names_this_hosts_server_entry(drain, expected):
    service = dict(NGINX, drain=drain) if drain else NGINX
    assert remediation.watch_list([service], POLICY, "10.0.0.5")[0]["drain"] == expected


@pytest.mark.parametrize("drain, message", [
    ({"port": 80}, r"remediate_services\[nginx\]\.drain needs balancer"),
    ({"balancer": "lb", "weight": 2}, r"drain: unknown key weight"),
])
def test_drain_rejects_what_it_cannot_use(drain, message):
    with pytest.raises(ValueError, match=message):
        remediation.watch_list([dict(NGINX, drain=drain)], POLICY)


def test_the_plan_names_a_bad_host_verdict_first():
    verdict = {"verdict": "crit", "reasons": ["probe nginx down (refused)"]}
    planned = remediation.plan([finding()], {"x": {"allowed": True}}, None, True, verdict)
    assert planned["lines"][:2] == ["check mode, nothing is changed; the plan:", "host verdict crit: probe nginx down (refused)"]
    assert remediation.plan([finding()], {}, None, False, {"verdict": "ok", "reasons": []})["lines"][0].startswith("leave x")


@pytest.mark.parametrize("probe_state, verdict", [("down", "crit"), ("failing", "warn"), ("up", "ok")])
def test_the_report_the_callback_and_remediate_give_one_verdict(probe_state, verdict):
    """The same facts, judged by the sweep's report, the im_notify callback and the remediate role."""
    from ansible_collections.fleetops.health.plugins.callback.im_notify import new_observation, observe, verdict_of
    from ansible_collections.fleetops.health.plugins.filter.fleet import fleet_report

    resources = {"verdict": "ok", "reasons": []}
    fleet_probes = probes(nginx=probe_state)
    report = fleet_report({"web1": {"sweep_resources_result": {"ansible_facts": {"fleet_resources": resources}},
                                    "sweep_probe_result": {"ansible_facts": {"fleet_probes": fleet_probes}}}}, ["web1"])
    observation = observe(observe(new_observation(), {"fleet_resources": resources}), {"fleet_probes": fleet_probes})
    detected = remediation.detect(watch(NGINX), show(("loaded", "active", "success")), fleet_probes, resources=resources)
    assert report["hosts"][0]["verdict"] == verdict_of(observation) == detected["verdict"]["verdict"] == verdict
    assert report["hosts"][0]["reasons"] == detected["verdict"]["reasons"]
