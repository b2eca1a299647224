"""The closed loop on lab hosts, every part real:

    kill -9 nginx on a lab host -> the probes role's check (timer) fails -> its textfile -> node_exporter
    -> Prometheus (the shipped rules: FleetopsProbeDown)
    -> Alertmanager (the shipped example config, bearer token) -> fleetops.health.alertmanager (EDA source)
    -> ansible-rulebook (the shipped rulebook) -> fleetops.health.remediate on that host -> verify
    -> one signed "fixed it" notice at a DingTalk-contract receiver.

Prometheus and Alertmanager are the Debian packages' binaries, run here as plain processes on loopback;
ansible-rulebook is the real one (Java drools). node_exporter is the Debian package's binary too, copied
into each lab host and run there as a transient systemd unit.

The probes role (roles/probes) runs an HTTP check of nginx on each host every 5 s (down after 2 failed
runs) and writes fleetops_probe_* to node_exporter's textfile folder; node_exporter runs with its textfile
collector only, so FleetopsProbeDown is the alert that drives the repair. (FleetopsServiceFailed from
node_exporter's systemd collector drove an earlier version of this test; promtool's tests cover it.)

The test prints the RTO of the loop (kill -9 to the verified restart's notice) and its parts, and in the
same run the time of the two other repair paths: remediate started the way the schedule role's timer
starts it, and the probes role's own restart action on a third host.
Lab hosts: FLEETOPS_LAB_NAME (default loop-e2e-<pid>), three hosts, removed at the end.
"""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "unit"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "lab"))
from im_receivers import IMReceiver  # noqa: E402  pylint: disable=wrong-import-position
import lab as host_lab  # noqa: E402  pylint: disable=wrong-import-position

EXTENSIONS = REPO_ROOT / "extensions"
RULES = EXTENSIONS / "prometheus" / "fleetops-rules.yml"
EXAMPLE_PROMETHEUS = EXTENSIONS / "prometheus" / "examples" / "prometheus.yml"
EXAMPLE_ALERTMANAGER = EXTENSIONS / "prometheus" / "examples" / "alertmanager.yml"
VENV_BIN = Path(sys.executable).parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
TOKEN = "loop-e2e-bearer-4f1c9a"
HMAC_SECRET = "loop-e2e-hmac-77d2"
IM_SECRET = "SECloop-e2e-im-3b8e"
NGINX = {"name": "nginx", "unit": "nginx.service", "probe": {"url": "http://127.0.0.1/", "expect_status": [200]}}
THROTTLE_SECONDS = 300  # the rulebook's once_within
BUDGET_FILE = "/var/lib/fleetops/remediate/budgets.json"
PROBE_CHECK = {"name": "web", "url": "http://127.0.0.1/", "service": "nginx.service", "interval": 5, "timeout": 2,
               "unhealthy_threshold": 2, "healthy_threshold": 1, "initial_delay": 1}
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
PROBES_PLAY = """
- name: Probe nginx on every lab host with the probes role
  hosts: lab
  gather_facts: false
  roles:
    - role: fleetops.health.probes
      vars:
        probes_checks: "{{ loop_checks[inventory_hostname] }}"
        probes_notify: "{{ loop_probes_notify if inventory_hostname == loop_selfheal_host else {} }}"
        probes_randomized_delay: 0
"""
pytestmark = pytest.mark.lab_hosts(3)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what, check, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except requests.RequestException:  # a server still starting
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def ansible_env():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".cache" / "collections"),
                ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


class Process:
    """A child process with its output in a file, stopped at the end."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.log_path = workdir / ("%s.log" % name)
        with open(self.log_path, "w") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(workdir))

    def log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        assert self.popen.poll() is None, "%s exited with %s:\n%s" % (self.name, self.popen.returncode, self.log())
        return True

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Loop:
    """Everything of the loop that runs on this machine, and the lab hosts it watches."""

    def __init__(self, lab, hosts, workdir, im):
        self.lab, self.hosts, self.workdir, self.im = lab, hosts, workdir, im
        self.names = [host.name for host in hosts]
        self.prometheus_port, self.alertmanager_port, self.source_port = free_port(), free_port(), free_port()
        self.processes = []

    # ------------------------------------------------------------------------------------- lab side
    def exec(self, host, *command, timeout=60):
        return host_lab.podman("exec", host, *command, check=False, timeout=timeout)

    def prepare_hosts(self):
        for host in self.names:
            host_lab.podman("cp", NODE_EXPORTER, "%s:/usr/local/bin/node_exporter" % host, timeout=60)
            started = self.exec(host, "sh", "-c",
                                "mkdir -p %s && systemctl start nginx && systemd-run --unit=loop-node-exporter "
                                "/usr/local/bin/node_exporter --collector.disable-defaults "
                                "--collector.textfile --collector.textfile.directory=%s "
                                "--web.listen-address=:9100" % (TEXTFILE_DIR, TEXTFILE_DIR))
            assert started.returncode == 0, started.stderr
        # The probes role: a check of nginx on every host; on the third host it also restarts nginx itself
        # (the probes-timer repair path, timed at the end) and notifies.
        selfheal = self.names[2]
        checks = {host: [PROBE_CHECK] for host in self.names}
        checks[selfheal] = [dict(PROBE_CHECK, restart={"max_restarts": 3, "window": "1h", "backoff": 0,
                                                       "verify_timeout": 30})]
        (self.workdir / "probes.yml").write_text(PROBES_PLAY)
        deployed = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(self.lab.ssh_inventory), "probes.yml",
                                   "-e", json.dumps({"loop_checks": checks, "loop_selfheal_host": selfheal,
                                                     "loop_probes_notify": {
                                                         "platform": "dingtalk", "secret": IM_SECRET,
                                                         "url": self.im.url_for("host.containers.internal")}})],
                                  cwd=str(self.workdir), env=ansible_env(), capture_output=True, text=True,
                                  timeout=900, check=False)
        assert deployed.returncode == 0, deployed.stdout[-4000:] + deployed.stderr[-2000:]

    # ---------------------------------------------------------------------------------- control side
    def start(self):
        env = dict(os.environ, PATH="%s%s%s" % (VENV_BIN, os.pathsep, os.environ.get("PATH", "")))
        # Prometheus: the shipped example with this lab's targets, the shipped rules, loopback ports.
        prometheus = yaml.safe_load(EXAMPLE_PROMETHEUS.read_text())
        prometheus["rule_files"] = [str(RULES)]
        prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
            "127.0.0.1:%d" % self.alertmanager_port]
        prometheus["scrape_configs"] = [{"job_name": "fleetops-node", "static_configs": [
            {"targets": ["%s:9100" % host.address for host in self.hosts[:2]]}]}]
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
        self.processes.append(Process("prometheus", [
            "prometheus", "--config.file=prometheus.yml", "--storage.tsdb.path=prometheus-data",
            "--web.listen-address=127.0.0.1:%d" % self.prometheus_port], self.workdir))
        # Alertmanager: the shipped example, its webhook pointed at the source, the token from a file.
        alertmanager = yaml.safe_load(EXAMPLE_ALERTMANAGER.read_text())
        token_file = self.workdir / "eda.token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        webhook = [r for r in alertmanager["receivers"] if r["name"] == "fleet-remediation"][0]["webhook_configs"][0]
        webhook["url"] = "http://127.0.0.1:%d/alerts" % self.source_port
        webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager))
        self.processes.append(Process("alertmanager", [
            "prometheus-alertmanager", "--config.file=alertmanager.yml", "--storage.path=alertmanager-data",
            "--web.listen-address=127.0.0.1:%d" % self.alertmanager_port, "--cluster.listen-address="],
            self.workdir))
        # ansible-rulebook with the collection's rulebook, against an inventory of the lab hosts whose
        # group vars are what an operator would set for remediate.
        ssh_inventory = yaml.safe_load(Path(self.lab.ssh_inventory).read_text())
        inventory = copy.deepcopy(ssh_inventory)
        group = inventory["all"]["children"]["lab"] if "children" in inventory.get("all", {}) else inventory["lab"]
        group.setdefault("vars", {}).update({
            "remediate_services": [NGINX],
            "remediate_verify_interval": 1,
            "remediate_notify_platform": "dingtalk",
            "remediate_notify_url": self.im.url_for("host.containers.internal"),
            "remediate_notify_secret": IM_SECRET,
        })
        (self.workdir / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (self.workdir / "eda-vars.yml").write_text(yaml.safe_dump({
            "fleetops_eda_port": self.source_port,
            "fleetops_eda_hmac_secret": HMAC_SECRET,
            "fleetops_eda_host_map": {host.address: host.name for host in self.hosts},
        }))
        rulebook_env = dict(env, FLEETOPS_EDA_TOKEN=TOKEN,
                            ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".cache" / "collections"),
                            ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                            ANSIBLE_DEPRECATION_WARNINGS="0", PYTHONWARNINGS="ignore",
                            # Per-task times in the log, to see where the playbook's part of the RTO goes.
                            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks")
        self.rulebook = Process("ansible-rulebook", [
            str(VENV_BIN / "ansible-rulebook"), "-r", "fleetops.health.remediate", "-i", "inventory.yml",
            "--vars", "eda-vars.yml", "-vv"], self.workdir, env=rulebook_env)
        self.processes.append(self.rulebook)

    def stop(self):
        for process in reversed(self.processes):
            process.stop()

    # ---------------------------------------------------------------------------------------- queries
    def query(self, expr):
        answer = requests.get("http://127.0.0.1:%d/api/v1/query" % self.prometheus_port,
                              params={"query": expr}, timeout=10).json()
        return answer["data"]["result"]

    def first_time(self, expr, since):
        """Unix time of the first sample of expr at or after since (0.1 s resolution), or None."""
        answer = requests.get("http://127.0.0.1:%d/api/v1/query_range" % self.prometheus_port, params={
            "query": expr, "start": since - 1, "end": min(time.time(), since + 600), "step": "0.1"},
            timeout=30).json()
        assert answer.get("status") == "success", answer
        times = [float(point[0]) for series in answer["data"]["result"] for point in series["values"]]
        return min(times) if times else None

    def post(self, body, headers):
        return requests.post("http://127.0.0.1:%d/alerts" % self.source_port, data=body, headers=headers,
                             timeout=30)

    def runs(self):
        """The remediate runs the rulebook started so far, as the hosts in each PLAY RECAP."""
        return self.rulebook.log().count("PLAY [Remediate failed services, a batch of hosts at a time]")

    def log_time(self, needle):
        """The timestamp of the first ansible-rulebook log line containing needle."""
        for line in self.rulebook.log().splitlines():
            if needle in line and line[:4].isdigit():
                return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    def playbook_ends(self):
        return self.rulebook.log().count("PLAY RECAP")

    def fixed_notices(self):
        return [m["text"]["content"] for m in self.im.messages if "fixed it" in m["text"]["content"]]


@pytest.fixture
def closed_loop(tmp_path):
    host_lab.reap_orphaned_labs()
    lab = host_lab.Lab(os.environ.get("FLEETOPS_LAB_NAME", "loop-e2e-%d" % os.getpid()), owner_pid=os.getpid())
    with IMReceiver("dingtalk", host="0.0.0.0", secret=IM_SECRET) as im:
        try:
            hosts = lab.up(count=3)
            loop = Loop(lab, hosts, tmp_path, im)
            loop.prepare_hosts()
            loop.start()
            yield loop
        finally:
            if "loop" in locals():
                loop.stop()
                for process in loop.processes:
                    sys.stdout.write("\n===== %s\n%s" % (process.name, process.log()[-6000:]))
            lab.down()


def test_kill_nginx_one_verified_repair_one_notice_resolve_silent_flap_bounded(closed_loop):
    loop = closed_loop
    victim, bystander, selfheal = loop.names
    victim_ip = [host.address for host in loop.hosts if host.name == victim][0]
    auth = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}

    # Everything is up: both targets scraped with nginx active, the source answers.
    wait_until("Prometheus scraping both hosts' probes of nginx, healthy", lambda: all(p.alive() for p in loop.processes)
               and len(loop.query('fleetops_probe_healthy{check="web",service="nginx.service"} == 1')) == 2,
               timeout=180, interval=1)
    wait_until("the EDA source", lambda: loop.rulebook.alive() and _answers(loop, auth) == 400, timeout=120)
    bystander_started = loop.exec(bystander, "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                                  "nginx").stdout.strip()

    # ---- kill -9 -> the loop repairs it, once, and says so once
    killed_at = time.time()
    assert loop.exec(victim, "systemctl", "kill", "--signal=KILL", "nginx").returncode == 0
    wait_until("the repaired notice", loop.fixed_notices, timeout=240, interval=0.2)
    noticed_at = time.time()
    assert loop.exec(victim, "systemctl", "is-active", "nginx").stdout.strip() == "active"
    restarted_at = float(loop.exec(victim, "systemctl", "show", "-P", "ActiveEnterTimestamp", "--timestamp=unix",
                                   "nginx").stdout.strip().lstrip("@"))
    notices = loop.fixed_notices()
    assert len(notices) == 1 and victim in notices[0], loop.im.messages
    assert loop.runs() == 1
    # Only the victim was touched: the run was limited to it, and the bystander's nginx never restarted.
    assert "%s " % bystander not in loop.rulebook.log().split("PLAY RECAP")[-1]
    assert loop.exec(bystander, "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                     "nginx").stdout.strip() == bystander_started

    # ---- the breakdown of the RTO
    down_expr = 'fleetops_probe_healthy{check="web",instance="%s:9100"} == 0' % victim_ip
    scraped_at = loop.first_time(down_expr, killed_at)
    fired_at = loop.first_time('ALERTS{alertname="FleetopsProbeDown",alertstate="firing",instance="%s:9100"}'
                               % victim_ip, killed_at)
    queued_at = loop.log_time("queued firing FleetopsProbeDown for host %s" % victim)
    playbook_at = loop.log_time("Calling Ansible runner")
    breakdown = {
        "probe + scrape (kill -> first sample of the probe down; 2 runs at 5 s, scrape 10 s)": scraped_at - killed_at,
        "alert (sample -> rule firing, for: 0s, evaluation 10 s)": fired_at - scraped_at,
        "Alertmanager (firing -> source queued, group_wait 0s)": queued_at - fired_at,
        "rulebook (queued -> ansible-runner called)": playbook_at - queued_at,
        "playbook (runner called -> restart)": restarted_at - playbook_at,
        "verify + notify (restart -> notice received)": noticed_at - restarted_at,
    }
    report = {"rto_seconds_kill_to_verified_notice": round(noticed_at - killed_at, 1),
              "kill_to_restart_seconds": round(restarted_at - killed_at, 1),
              "breakdown_seconds": {key: round(value, 1) for key, value in breakdown.items()}}
    sys.stdout.write("\nCLOSED LOOP RTO %s\n" % json.dumps(report, indent=1))
    (REPO_ROOT / "tests" / "output").mkdir(exist_ok=True)
    (REPO_ROOT / "tests" / "output" / "closed_loop_rto.json").write_text(json.dumps(report, indent=1))

    # ---- the resolve reaches the rulebook and sends nothing. The run's summary (its second play) still
    # comes after the repaired notice: count the messages once the run has ended.
    wait_until("the end of the remediate run", lambda: loop.playbook_ends() == 1, timeout=180, interval=1)
    time.sleep(2)
    messages_after_repair = len(loop.im.messages)
    assert [m for m in loop.im.messages if "remediation run" in m["text"]["content"]], loop.im.messages
    wait_until("the resolved alert at the rulebook",
               lambda: "resolved: FleetopsProbeDown on %s, nothing to send" % victim in loop.rulebook.log(),
               timeout=180, interval=1)
    time.sleep(5)
    assert len(loop.im.messages) == messages_after_repair, loop.im.messages[messages_after_repair:]
    assert loop.runs() == 1

    # ---- bad input at the live source: refused or de-duplicated, no run
    body = json.dumps({"version": "4", "status": "firing", "truncatedAlerts": 0, "alerts": [{
        "status": "firing", "labels": {"alertname": "FleetopsServiceFailed", "instance": "%s:9100" % victim_ip,
                                       "service": "nginx.service"},
        "startsAt": "2026-11-25T10:00:00Z", "fingerprint": "e2e-replay"}]}).encode()
    assert loop.post(body, {"Content-Type": "application/json"}).status_code == 401
    assert loop.post(body, {"X-Fleetops-Signature": "sha256=" + "0" * 64}).status_code == 403
    assert loop.post(b"{" + b" " * (10 * 1024 * 1024) + b"}", auth).status_code == 413
    assert loop.post(b"{\"version\": \"4\", ", auth).status_code == 400
    first = loop.post(body, auth).json()
    replay = loop.post(body, auth).json()
    assert replay == {"accepted": 0, "duplicates": 1}, (first, replay)

    # ---- flapping: nginx stopped 5 times in 2 minutes; the throttle allows no second run in its window
    first_event_at = queued_at
    for _stop in range(5):
        loop.exec(victim, "systemctl", "kill", "--signal=KILL", "nginx")
        time.sleep(12)
        loop.exec(victim, "sh", "-c", "systemctl reset-failed nginx; systemctl start nginx")
        time.sleep(12)
    time.sleep(20)  # a run started by the last flap would show by now
    # One run per throttle window begun since the first event (the test runs long on a loaded machine).
    allowed_runs = 1 + int((time.time() - first_event_at) // THROTTLE_SECONDS)
    budget = json.loads(loop.exec(victim, "cat", BUDGET_FILE).stdout)["services"]["nginx"]
    flap_report = {"runs": loop.runs(), "allowed_by_throttle": allowed_runs,
                   "restarts_recorded": len(budget["attempts"]), "max_restarts": 3,
                   "fixed_notices": len(loop.fixed_notices())}
    sys.stdout.write("FLAPPING %s\n" % json.dumps(flap_report))
    assert loop.runs() <= allowed_runs, flap_report
    assert len(budget["attempts"]) <= min(allowed_runs, 3), flap_report
    # Every verified restart says so once; a run that found nginx up (the flap brought it back) says nothing.
    assert len(loop.fixed_notices()) == len(budget["attempts"]), flap_report
    assert TOKEN not in loop.rulebook.log() and HMAC_SECRET not in loop.rulebook.log()
    assert IM_SECRET not in loop.rulebook.log()

    # ---- the scheduled path's playbook, for comparison: the same remediate run started the way the
    # schedule role's timer starts it (ansible-playbook), right after a kill on the other host. A timer
    # of period P adds a wait of P/2 on average (P at worst) before this; the loop replaces that wait by
    # scrape + rule + Alertmanager + rulebook. The rulebook stops first, so that its own run for this
    # kill does not compete with the timed one.
    loop.rulebook.stop()
    killed_at = time.time()
    loop.exec(bystander, "systemctl", "kill", "--signal=KILL", "nginx")
    direct = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventory.yml", "fleetops.health.remediate",
                             "--limit", bystander], cwd=str(loop.workdir), env=dict(
                                 os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".cache" / "collections"),
                                 ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg")),
                            capture_output=True, text=True, timeout=600, check=False)
    assert direct.returncode == 0, direct.stdout[-3000:] + direct.stderr[-3000:]
    wait_until("the scheduled path's notice", lambda: [m for m in loop.fixed_notices() if bystander in m],
               timeout=60, interval=0.2)
    playbook_only = time.time() - killed_at
    scheduled = {"playbook_only_kill_to_notice_seconds": round(playbook_only, 1),
                 "timer_30s_mean_rto_seconds": round(playbook_only + 15, 1),
                 "timer_30s_worst_rto_seconds": round(playbook_only + 30, 1)}
    sys.stdout.write("SCHEDULED PATH %s\n" % json.dumps(scheduled))

    # ---- the probes role's own restart (probes timer every 5 s, down after 2 runs) on the third host
    restarted_before = loop.exec(selfheal, "systemctl", "show", "-P", "ActiveEnterTimestamp", "--timestamp=unix",
                                 "nginx").stdout.strip()
    killed_at = time.time()
    loop.exec(selfheal, "systemctl", "kill", "--signal=KILL", "nginx")
    wait_until("the probes role's restart", lambda: loop.exec(selfheal, "systemctl", "is-active", "nginx").stdout.strip()
               == "active" and loop.exec(selfheal, "systemctl", "show", "-P", "ActiveEnterTimestamp", "--timestamp=unix",
                                         "nginx").stdout.strip() != restarted_before, timeout=120, interval=0.5)
    restarted_at = float(loop.exec(selfheal, "systemctl", "show", "-P", "ActiveEnterTimestamp", "--timestamp=unix",
                                   "nginx").stdout.strip().lstrip("@"))
    wait_until("the probes role's recovered notice", lambda: [
        m for m in loop.im.messages if "%s: check web recovered" % selfheal in json.dumps(m)], timeout=60, interval=0.2)
    probes_path = {"kill_to_restart_seconds": round(restarted_at - killed_at, 1),
                   "kill_to_recovered_notice_seconds": round(time.time() - killed_at, 1)}
    sys.stdout.write("PROBES TIMER PATH %s\n" % json.dumps(probes_path))
    report.update(flapping=flap_report, scheduled_path=scheduled, probes_timer_path=probes_path)
    (REPO_ROOT / "tests" / "output" / "closed_loop_rto.json").write_text(json.dumps(report, indent=1))


def _answers(loop, auth):
    try:
        return loop.post(b"{", auth).status_code
    except requests.RequestException:
        return None
