"""What the remediate lab tests share: the playbook, the state on the hosts, and the services they break."""
from __future__ import annotations

PLAYBOOK = "playbooks/remediate.yml"
STATE_DIRS = "/var/lib/fleetops/remediate /var/lib/fleetops/im_spool"
BUDGET_FILE = "/var/lib/fleetops/remediate/budgets.json"

NGINX = {"name": "nginx", "unit": "nginx.service", "probe": {"url": "http://127.0.0.1/", "expect_status": [200]}}
# Starts, then dies a second later; its port never opens, so no restart can verify.
CRASHY_UNIT = """[Unit]
Description=fleetops e2e: a service that crashes right after every start
[Service]
ExecStart=/bin/sh -c 'sleep 1; exit 1'
"""
