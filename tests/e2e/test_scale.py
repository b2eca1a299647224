"""playbooks/scale.yml (the role fleetops.health.scale) on lab hosts: a sustained high score activates a standby host behind an nginx load
balancer; a template unit's instance count follows the score."""
from __future__ import annotations

import json

import pytest

PLAYBOOK = "playbooks/scale.yml"
pytestmark = pytest.mark.lab_hosts(3)
LB_SITE = """include /etc/nginx/fleetops-upstream.conf;
server { listen 8080; location / { proxy_pass http://fleetops_pool; } }
"""
WORKER_UNIT = """[Unit]
Description=fleetops e2e worker %i
[Service]
ExecStart=/bin/sleep infinity
"""


def sh(lab, host, script):
    completed = lab.exec(host, "sh", "-c", script)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def scale(run_playbook, extravars, check=False):
    result = run_playbook(PLAYBOOK, extravars=extravars, check=check)
    assert result.ok, result.failure_summary()
    decisions = [task["hosts"] for play in result.output["plays"] for task in play["tasks"]
                 if task["task"]["name"].endswith("Decide from the group's scores, with the streaks kept on this host")]
    return next(iter(decisions[-1].values()))["decision"]


def test_a_sustained_high_score_activates_a_standby_host_behind_the_load_balancer(lab, run_playbook):
    balancer, web, standby = lab.hosts[:3]
    for host in (web, standby):
        sh(lab, host, f"echo {host} > /var/www/html/index.html; rm -rf /var/lib/fleetops/scale")
    sh(lab, web, "systemctl start nginx")
    sh(lab, standby, "systemctl stop nginx")
    sh(lab, balancer, f"printf '%s' '{LB_SITE}' > /etc/nginx/conf.d/fleetops-lb.conf; "
                      f"echo 'upstream fleetops_pool {{ server {lab.addresses[web]}:80; }}' > /etc/nginx/fleetops-upstream.conf; "
                      "nginx -t && systemctl restart nginx")
    extravars = {"scale_hosts": web, "scale_standby": standby, "scale_provider": "standby_pool",
                 "scale_lb_host": balancer, "scale_score_overrides": {web: 95},
                 "scale_policy": {"consecutive": 2, "max_count": 2, "cooldown_out": 0}}
    try:
        assert scale(run_playbook, extravars, check=True)["action"] == "hold"
        assert scale(run_playbook, extravars)["action"] == "hold"
        decision = scale(run_playbook, extravars)
        assert (decision["action"], decision["current"], decision["target"]) == ("scale_out", 1, 2)

        assert sh(lab, standby, "systemctl is-active nginx") == "active"
        assert lab.addresses[standby] in sh(lab, balancer, "cat /etc/nginx/fleetops-upstream.conf")
        served = {sh(lab, balancer, "curl -s http://127.0.0.1:8080/") for _request in range(8)}
        assert served == {web, standby}

        # At max_count the next high runs hold, and say why.
        scale(run_playbook, extravars)
        held = scale(run_playbook, extravars)
        assert held["action"] == "hold" and "max_count 2" in held["reason"]
    finally:
        sh(lab, balancer, "rm -f /etc/nginx/conf.d/fleetops-lb.conf /etc/nginx/fleetops-upstream.conf*; systemctl stop nginx")
        sh(lab, standby, "systemctl stop nginx")


def test_systemd_instances_follow_the_score_out_and_in(lab, run_playbook):
    host = lab.hosts[1]
    sh(lab, host, f"printf '%s' '{WORKER_UNIT}' > /etc/systemd/system/e2eworker@.service; systemctl daemon-reload; "
                  "systemctl start e2eworker@1; rm -rf /var/lib/fleetops/scale")
    base = {"scale_hosts": host, "scale_provider": "systemd_instances", "scale_unit_template": "e2eworker",
            "scale_policy": {"consecutive": 1, "min_count": 1, "max_count": 3, "step": 2, "cooldown_out": 0,
                             "cooldown_in": 0}}
    try:
        out = scale(run_playbook, dict(base, scale_score_overrides={host: 90}))
        assert (out["action"], out["target"]) == ("scale_out", 3)
        running = sh(lab, host, "systemctl list-units --plain --no-legend --state=active 'e2eworker@*'")
        assert len(running.splitlines()) == 3

        back = scale(run_playbook, dict(base, scale_score_overrides={host: 5}))
        assert (back["action"], back["target"]) == ("scale_in", 1)
        running = sh(lab, host, "systemctl list-units --plain --no-legend --state=active 'e2eworker@*'")
        assert [line.split()[0] for line in running.splitlines()] == ["e2eworker@1.service"]
        state = json.loads(sh(lab, host, "cat /var/lib/fleetops/scale/state.json"))
        assert state["groups"][host]["last_action"] == "scale_in"
    finally:
        lab.exec(host, "sh", "-c", "systemctl stop 'e2eworker@*'; rm -f /etc/systemd/system/e2eworker@.service; "
                 "systemctl daemon-reload")


def test_real_cpu_load_measured_by_host_resources_scales_out(lab, run_playbook):
    # No injected score: the decision comes from host_resources on the host while CPU burners run there.
    # Lab hosts see the whole machine's CPU, so one burner per core drives cpu to ~100 % and the load score
    # (cpu weighs 0.4) above 35, while an idle machine stays well below it.
    host = lab.hosts[2]
    sh(lab, host, f"printf '%s' '{WORKER_UNIT}' > /etc/systemd/system/e2eworker@.service; systemctl daemon-reload; "
                  "systemctl start e2eworker@1; rm -rf /var/lib/fleetops/scale")
    base = {"scale_hosts": host, "scale_provider": "systemd_instances", "scale_unit_template": "e2eworker",
            "scale_policy": {"scale_out_above": 35, "scale_in_below": 1, "consecutive": 1, "min_count": 1,
                             "max_count": 2, "cooldown_out": 0, "cooldown_in": 0}}
    cores = int(sh(lab, host, "nproc"))
    try:
        idle = scale(run_playbook, base)
        assert idle["action"] == "hold" and idle["average"] < 35, idle
        sh(lab, host, " ".join(["systemd-run --unit=e2eburner%d --collect sh -c 'while :; do :; done';" % index
                                for index in range(cores)]))
        loaded = scale(run_playbook, base)
        assert (loaded["action"], loaded["target"]) == ("scale_out", 2), loaded
        assert loaded["average"] >= 35
        running = sh(lab, host, "systemctl list-units --plain --no-legend --state=active 'e2eworker@*'")
        assert len(running.splitlines()) == 2
    finally:
        lab.exec(host, "sh", "-c", "systemctl stop 'e2eburner*' 'e2eworker@*'; "
                 "rm -f /etc/systemd/system/e2eworker@.service; systemctl daemon-reload")
