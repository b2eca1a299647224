"""Kill nginx on one backend behind an nginx load balancer: remediate restarts and verifies it, and the load
balancer answers every request meanwhile.

The balancer is set up the way playbooks/scale.yml keeps one (an upstream file included by a site); a
third lab host requests the balancer the whole time, from the kill until after the restart.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

PLAYBOOK = "playbooks/remediate.yml"
pytestmark = pytest.mark.lab_hosts(3)
NGINX = {"name": "nginx", "unit": "nginx.service", "probe": {"url": "http://127.0.0.1/", "expect_status": [200]}}
# proxy_next_upstream names what its default already is, because this test depends on it: a refused
# connection or one that breaks before the response header is retried on the next backend (GET is
# idempotent). The short connect timeout keeps a backend that does not answer at all from stalling requests.
LB_SITE = """include /etc/nginx/fleetops-upstream.conf;
server {
    listen 8080;
    location / {
        proxy_pass http://fleetops_pool;
        proxy_next_upstream error timeout;
        proxy_connect_timeout 2s;
    }
}
"""
STOP_FILE = "/tmp/fleetops-e2e-lb-stop"
CLIENT_LOG = "/tmp/fleetops-e2e-lb-client.log"
# nginx takes a backend that failed back into rotation after fail_timeout (10 s by default).
NGINX_FAIL_TIMEOUT = 10


def sh(lab, host, script):
    completed = lab.exec(host, "sh", "-c", script)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def served_by(lab, client, url, requests):
    return [sh(lab, client, f"curl -s --max-time 3 {url}") for _request in range(requests)]


def requests_logged(lab, client):
    """``[(sent_at, backend, code)]`` from the client's log; a request that got no page has backend ''."""
    logged = []
    for line in sh(lab, client, f"cat {CLIENT_LOG} 2>/dev/null || true").splitlines():
        words = line.split()
        if len(words) >= 2:
            logged.append((float(words[0]), words[1] if len(words) == 3 else "", words[-1]))
    return logged


def _answers_from(lab, client, backend, after):
    """When the client's requests sent after ``after`` were answered by ``backend``."""
    return [sent for sent, answered_by, _code in requests_logged(lab, client) if answered_by == backend and sent > after]


def test_a_killed_backend_is_restarted_and_verified_while_the_load_balancer_keeps_serving(lab, run_playbook):
    balancer, victim, survivor = lab.hosts[:3]
    backends = [victim, survivor]
    lb_url = f"http://{lab.addresses[balancer]}:8080/"
    for host in backends:
        sh(lab, host, f"echo {host} > /var/www/html/index.html; rm -rf /var/lib/fleetops/remediate; "
                      "systemctl reset-failed; systemctl restart nginx")
    upstream = " ".join(f"server {lab.addresses[host]}:80;" for host in backends)
    sh(lab, balancer, f"printf '%s' '{LB_SITE}' > /etc/nginx/conf.d/fleetops-lb.conf; "
                      f"echo 'upstream fleetops_pool {{ {upstream} }}' > /etc/nginx/fleetops-upstream.conf; "
                      "nginx -t && systemctl restart nginx")
    sh(lab, survivor, f"rm -f {STOP_FILE} {CLIENT_LOG}")
    # The client runs on the surviving backend (a host other than the balancer) until the stop file appears,
    # logging for each request when it was sent, which backend answered (the page names it) and the code.
    client = threading.Thread(target=lambda: lab.exec(
        survivor, "sh", "-c",
        f"until [ -e {STOP_FILE} ]; do printf '%s ' $(date +%s.%N) >> {CLIENT_LOG}; "
        f"curl -s --max-time 5 -w ' %{{http_code}}\\n' {lb_url} | tr -d '\\n' >> {CLIENT_LOG}; "
        f"echo >> {CLIENT_LOG}; sleep 0.1; done", timeout=300))
    try:
        assert set(served_by(lab, survivor, lb_url, 6)) == {victim, survivor}
        client.start()
        time.sleep(1)
        killed_at = float(sh(lab, victim, "date +%s.%N; systemctl kill --signal=KILL nginx"))
        assert sh(lab, victim, "systemctl is-active nginx || true") == "failed"

        result = run_playbook(PLAYBOOK, limit=backends, extravars={
            "remediate_services": [NGINX], "remediate_verify_interval": 1, "remediate_serial": 2,
            "remediate_notify": False})
        remediated_at = float(sh(lab, victim, "date +%s.%N"))
        assert result.ok, result.failure_summary()
        # Keep requesting until the victim answers through the balancer again, or its RTO bound has passed.
        rto_bound = remediated_at - killed_at + NGINX_FAIL_TIMEOUT + 3
        while not _answers_from(lab, survivor, victim, after=killed_at) and time.time() < killed_at + rto_bound:
            time.sleep(0.5)
    finally:
        sh(lab, survivor, f"touch {STOP_FILE}")
        if client.ident is not None:
            client.join(timeout=30)

    try:
        answered = requests_logged(lab, survivor)
        # The kill, the whole remediation run and its verification lie inside the requests.
        assert len(answered) >= 20, answered
        codes = [code for _sent, _backend, code in answered]
        assert set(codes) == {"200"}, f"{len(codes) - codes.count('200')} of {len(codes)} not 200: {answered}"
        # Every request answering 200 holds through proxy_next_upstream alone; the repair shows in the victim
        # itself serving again, within the time remediation took plus nginx's fail_timeout.
        back = _answers_from(lab, survivor, victim, after=killed_at)
        assert back, f"{victim} never served again after the kill: {answered}"
        assert back[0] - killed_at <= rto_bound, (back[0] - killed_at, rto_bound)

        restarted = result.task_results("fleetops.health.remediate : Restart or start the services the plan names")
        assert [item["item"]["name"] for item in restarted[victim]["results"]] == ["nginx"]
        assert restarted[survivor].get("skipped")
        record = json.loads(sh(lab, victim, "cat /var/lib/fleetops/remediate/budgets.json"))["services"]["nginx"]
        assert record["last_result"]["result"] == "verified" and record["state"] == "up"
        assert sh(lab, victim, "systemctl is-active nginx") == "active"

    finally:
        sh(lab, balancer, "rm -f /etc/nginx/conf.d/fleetops-lb.conf /etc/nginx/fleetops-upstream.conf; systemctl stop nginx")
        for host in backends:
            sh(lab, host, f"rm -f /var/www/html/index.html {STOP_FILE} {CLIENT_LOG}")


# Answers with the nginx worker's pid, pinned to one backend (not through the balancer): a restart changes it.
PINNED_SITE = "server { listen 8081; location / { return 200 \"$hostname $pid\"; } }"
UPSTREAM_WATCH_LOG = "/tmp/fleetops-e2e-upstream.log"


def task_times(result, task_name):
    """``[(start, end)]`` in epoch seconds of each run of a role task (the lab shares this machine's clock)."""
    from datetime import datetime, timezone

    def epoch(text):
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    return [(epoch(task["task"]["duration"]["start"]), epoch(task["task"]["duration"]["end"]))
            for play in (result.output or {}).get("plays", []) for task in play.get("tasks", [])
            if task["task"]["name"] == "fleetops.health.remediate : " + task_name]


def test_a_drained_backend_restarts_while_no_request_reaches_it(lab, run_playbook):
    """Opt-in drain: the backend leaves the standby_pool upstream before a restart and returns after verification."""
    balancer, victim, survivor = lab.hosts[:3]
    backends = [victim, survivor]
    lb_url = f"http://{lab.addresses[balancer]}:8080/"
    pinned_url = f"http://{lab.addresses[victim]}:8081/"
    log = "/var/log/fleetops-e2e-drain.log"
    for host in backends:
        sh(lab, host, f"echo {host} > /var/www/html/index.html; rm -rf /var/lib/fleetops/remediate; "
                      f"printf '%s' '{PINNED_SITE}' > /etc/nginx/conf.d/fleetops-pinned.conf; "
                      f"echo started > {log}; systemctl reset-failed; nginx -t && systemctl restart nginx")
    # The upstream file as the standby_pool provider writes it: one server line per member.
    upstream = "".join(f"    server {lab.addresses[host]}:80;\\n" for host in backends)
    sh(lab, balancer, f"printf '%s' '{LB_SITE}' > /etc/nginx/conf.d/fleetops-lb.conf; "
                      f"printf 'upstream fleetops_pool {{\\n{upstream}}}\\n' > /etc/nginx/fleetops-upstream.conf; "
                      "nginx -t && systemctl restart nginx")
    sh(lab, survivor, f"rm -f {STOP_FILE} {CLIENT_LOG}")
    sh(lab, balancer, f"rm -f {STOP_FILE} {UPSTREAM_WATCH_LOG}")
    watched = dict(NGINX, log_paths=[log], drain={"balancer": balancer},
                   log_rules=[{"name": "fatal", "keywords": ["FATAL"], "severity": "critical"}])
    settings = {"remediate_services": [watched], "remediate_verify_interval": 1, "remediate_serial": 2,
                "remediate_notify": False}
    first = run_playbook(PLAYBOOK, limit=backends, extravars=settings)  # log offsets start at the end
    assert first.ok, first.failure_summary()
    pinned_before = sh(lab, survivor, f"curl -s --max-time 3 {pinned_url}")
    pid_before = sh(lab, victim, "systemctl show -p MainPID --value nginx")

    client = threading.Thread(target=lambda: lab.exec(
        survivor, "sh", "-c",
        f"until [ -e {STOP_FILE} ]; do printf '%s ' $(date +%s.%N) >> {CLIENT_LOG}; "
        f"curl -s --max-time 5 -w ' %{{http_code}}\\n' {lb_url} | tr -d '\\n' >> {CLIENT_LOG}; "
        f"echo >> {CLIENT_LOG}; sleep 0.05; done", timeout=300))
    # On the balancer: when the victim's server line was marked down, and when it was not.
    upstream_watch = threading.Thread(target=lambda: lab.exec(
        balancer, "sh", "-c",
        f"until [ -e {STOP_FILE} ]; do echo $(date +%s.%N) $(grep -c ' down;' /etc/nginx/fleetops-upstream.conf) "
        f">> {UPSTREAM_WATCH_LOG}; sleep 0.05; done", timeout=300))
    try:
        client.start()
        upstream_watch.start()
        time.sleep(1)
        sh(lab, victim, f"echo 'FATAL: worker lost its upstream' >> {log}")
        result = run_playbook(PLAYBOOK, limit=backends, extravars=settings)
        time.sleep(2)
    finally:
        sh(lab, survivor, f"touch {STOP_FILE}")
        sh(lab, balancer, f"touch {STOP_FILE}")
        for thread in (client, upstream_watch):
            if thread.ident is not None:
                thread.join(timeout=30)

    try:
        assert result.ok, result.failure_summary()
        restarted = result.task_results("fleetops.health.remediate : Restart or start the services the plan names")
        assert [item["item"]["name"] for item in restarted[victim]["results"]] == ["nginx"]
        # The pinned backend shows a new nginx: the restart happened.
        assert sh(lab, victim, "systemctl show -p MainPID --value nginx") != pid_before
        pinned_after = sh(lab, survivor, f"curl -s --max-time 3 {pinned_url}")
        assert pinned_after.split()[0] == pinned_before.split()[0] == victim and pinned_after != pinned_before

        answered = requests_logged(lab, survivor)
        codes = [code for _sent, _backend, code in answered]
        assert len(answered) >= 20 and set(codes) == {"200"}, answered
        marks = [line.split() for line in sh(lab, balancer, f"cat {UPSTREAM_WATCH_LOG}").splitlines()]
        assert any(count != "0" for _at, count in marks), "the victim's server line was never marked down"
        # Out of the balancer from the first reload (after the mark) until the put-back begins; the restart
        # and its verification lie inside that window, and the balancer sent the victim nothing during it.
        out_from = task_times(result, "Check the balancer's configuration and reload it")[0][1]
        out_until = task_times(result, "Put the backends back into their load balancer after verification")[0][0]
        restart_from, restart_until = task_times(result, "Restart or start the services the plan names")[0]
        assert out_from < restart_from < restart_until < out_until
        during = [backend for sent, backend, _code in answered if out_from < sent < out_until]
        assert len(during) >= 10 and set(during) == {survivor}, during
        # ... and it is back in the upstream, serving, afterwards.
        assert marks[-1][1] == "0"
        assert sh(lab, balancer, "grep -c ' down;' /etc/nginx/fleetops-upstream.conf || true") == "0"
        assert set(served_by(lab, survivor, lb_url, 6)) == {victim, survivor}
    finally:
        sh(lab, balancer, "rm -f /etc/nginx/conf.d/fleetops-lb.conf /etc/nginx/fleetops-upstream.conf; systemctl stop nginx")
        for host in backends:
            sh(lab, host, f"rm -f /var/www/html/index.html /etc/nginx/conf.d/fleetops-pinned.conf {STOP_FILE} {CLIENT_LOG}; "
                          "systemctl restart nginx")
        sh(lab, balancer, f"rm -f {STOP_FILE} {UPSTREAM_WATCH_LOG}")
