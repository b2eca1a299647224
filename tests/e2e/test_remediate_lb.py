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
