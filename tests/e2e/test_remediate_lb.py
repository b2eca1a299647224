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


def sh(lab, host, script):
    completed = lab.exec(host, "sh", "-c", script)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def served_by(lab, client, url, requests):
    return [sh(lab, client, f"curl -s --max-time 3 {url}") for _request in range(requests)]


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
    sh(lab, survivor, f"rm -f {STOP_FILE}")
    codes = {}
    # The client runs on the surviving backend (a host other than the balancer) until the stop file appears.
    client = threading.Thread(target=lambda: codes.update(out=lab.exec(
        survivor, "sh", "-c",
        f"until [ -e {STOP_FILE} ]; do curl -s -o /dev/null --max-time 5 -w '%{{http_code}}\\n' {lb_url}; sleep 0.1; done",
        timeout=300).stdout.split()))
    try:
        assert set(served_by(lab, survivor, lb_url, 6)) == {victim, survivor}
        client.start()
        time.sleep(1)
        lab.exec(victim, "systemctl", "kill", "--signal=KILL", "nginx")
        assert sh(lab, victim, "systemctl is-active nginx || true") == "failed"

        result = run_playbook(PLAYBOOK, limit=backends, extravars={
            "remediate_services": [NGINX], "remediate_verify_interval": 1, "remediate_serial": 2,
            "remediate_notify": False})
        assert result.ok, result.failure_summary()
        time.sleep(1)
    finally:
        sh(lab, survivor, f"touch {STOP_FILE}")
        if client.ident is not None:
            client.join(timeout=30)

    try:
        answered = codes["out"]
        # The kill, the whole remediation run and its verification lie inside the requests.
        assert len(answered) >= 20, answered
        assert set(answered) == {"200"}, f"{len(answered) - answered.count('200')} of {len(answered)} not 200: {answered}"

        restarted = result.task_results("fleetops.health.remediate : Restart or start the services the plan names")
        assert [item["item"]["name"] for item in restarted[victim]["results"]] == ["nginx"]
        assert restarted[survivor].get("skipped")
        record = json.loads(sh(lab, victim, "cat /var/lib/fleetops/remediate/budgets.json"))["services"]["nginx"]
        assert record["last_result"]["result"] == "verified" and record["state"] == "up"
        assert sh(lab, victim, "systemctl is-active nginx") == "active"

        # Back in rotation once the balancer retries it (fail_timeout is 10 s by default).
        deadline = time.monotonic() + 20
        while victim not in served_by(lab, survivor, lb_url, 4):
            assert time.monotonic() < deadline, "the restarted backend never served through the balancer again"
            time.sleep(1)
    finally:
        sh(lab, balancer, "rm -f /etc/nginx/conf.d/fleetops-lb.conf /etc/nginx/fleetops-upstream.conf; systemctl stop nginx")
        for host in backends:
            sh(lab, host, f"rm -f /var/www/html/index.html {STOP_FILE}")
