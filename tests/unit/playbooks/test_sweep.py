"""The sweep playbook run for real on local-connection hosts; its HTML report loaded in headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from html.parser import HTMLParser

import jinja2
import pytest

from ansible_collections.fleetops.health.plugins.filter import fleet
from ansible_collections.fleetops.health.tests.unit.playbook_runner import ANSIBLE_PLAYBOOK, ansible_env

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
    sweep_window: 0.1
    # No cpu (a busy test machine reaches 100%%) and the highest levels allowed, so the verdicts do not
    # depend on how busy the test machine is.
    sweep_subset: [load, memory, swap, disk, io, network, processes, cgroup, units]
    sweep_thresholds: &calm
      cpu: {warn: 99.9, crit: 100}
      memory: {warn: 99.9, crit: 100}
      disk: {warn: 99.9, crit: 100}
      inodes: {warn: 99.9, crit: 100}
      load: {warn: 999, crit: 1000}
      iowait: {warn: 99.9, crit: 100}
      swap: {warn: 99.9, crit: 100}
  hosts:
    web-01: {}
    web-02: {}
    db-01:
      # every host uses some memory: these levels make db-01 crit for sure
      sweep_thresholds:
        <<: *calm
        memory: {warn: 0.001, crit: 0.002}
    cache-01:
      ansible_python_interpreter: /nonexistent/python3
"""


@pytest.fixture(params=[True, False], ids=["facts_injected", "injection_off"])
def inject_facts(request, monkeypatch):
    """Each sweep test runs with facts injected as top-level variables and with that injection off.

    ansible-core 2.20 deprecates the injection; the sweep must not depend on it.
    """
    monkeypatch.setenv("ANSIBLE_INJECT_FACT_VARS", "true" if request.param else "false")
    return request.param


def sweep(tmp_path, *extra, report="report", inventory_text=INVENTORY):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(inventory_text % {"python": sys.executable})
    report_dir = tmp_path / report
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "fleetops.health.sweep",
                           "-e", "sweep_report_dir=%s" % report_dir] + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=ansible_env(),
                          timeout=120, cwd=str(tmp_path), check=False)
    return proc, report_dir


class _HostRows(HTMLParser):
    """Collects (verdict, host name) of every ``tr.host`` and the text of ``#shown``."""

    def __init__(self):
        HTMLParser.__init__(self)
        self.rows, self.shown, self._verdict, self._in_name, self._in_shown = [], "", None, False, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "host" in (attrs.get("class") or "").split():
            self._verdict = attrs.get("data-verdict")
        elif tag == "td" and attrs.get("class") == "name" and self._verdict:
            self._in_name = True
            self.rows.append([self._verdict, ""])
        elif tag == "div" and self._in_name:
            self._in_name = False
        elif tag == "span" and attrs.get("id") == "shown":
            self._in_shown = True

    def handle_endtag(self, tag):
        if tag in ("td", "span"):
            self._in_name = self._in_shown = False

    def handle_data(self, data):
        if self._in_name:
            self.rows[-1][1] += data.strip()
        elif self._in_shown:
            self.shown += data


def chromium_rows(html_path):
    """Load the page in headless Chromium (scripts run) and parse the DOM it ends with."""
    if not CHROMIUM:
        pytest.skip("chromium is not installed (tests/tooling/system_deps.sh installs it)")
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--dump-dom", "file://%s" % html_path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == 0 and "</html>" in proc.stdout
    parser = _HostRows()
    parser.feed(proc.stdout)
    return parser, proc.stdout


def test_sweep_reports_every_host_and_does_not_fail_by_default(tmp_path, inject_facts):
    proc, report_dir = sweep(tmp_path)
    assert proc.returncode == 0, proc.stdout
    # terminal summary: headline and one row per host, most severe first
    assert "fleet CRIT: 4 hosts, 2 crit, 0 warn, 2 ok, 1 without facts" in proc.stdout
    summary = proc.stdout[proc.stdout.index("HOST "):].splitlines()
    assert [line.split()[:2] for line in summary[1:3]] == [["db-01", "CRIT"], ["cache-01", "CRIT"]]
    assert sorted(line.split()[0] for line in summary[3:5]) == ["web-01", "web-02"]
    assert summary[1].endswith(">= crit 0.002%") and " memory " in summary[1]

    report = json.loads((report_dir / "fleet-report.json").read_text())
    verdicts = dict((row["host"], row["verdict"]) for row in report["hosts"])
    assert verdicts == {"db-01": "crit", "cache-01": "crit", "web-01": "ok", "web-02": "ok"}
    cache = [row for row in report["hosts"] if row["host"] == "cache-01"][0]
    assert "/nonexistent/python3" in cache["top_reason"] and cache["reachable"] is False
    web = [row for row in report["hosts"] if row["host"] == "web-01"][0]
    assert web["facts"]["resources"]["window"] == 0.1 and web["memory_percent"] is not None

    html = (report_dir / "fleet-report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    parser, dom = chromium_rows(report_dir / "fleet-report.html")
    assert sorted(row[1] for row in parser.rows) == ["cache-01", "db-01", "web-01", "web-02"]
    assert dict((host, verdict) for verdict, host in parser.rows) == verdicts
    assert parser.shown == "4 of 4 hosts shown"  # the inline script ran
    assert dom.count('<svg class="bar"') == 3 * 2  # MEM/DISK bars for the three hosts with facts (no cpu)


def test_fleet_fail_on_crit_fails_the_play_naming_hosts(tmp_path, inject_facts):
    proc, report_dir = sweep(tmp_path, "-e", "sweep_fail_on=crit", "--limit", "web-01,db-01")
    assert proc.returncode != 0
    assert "sweep_fail_on=crit: 1 host(s) at crit or worse: db-01" in proc.stdout
    # the reports are written before the play fails
    assert json.loads((report_dir / "fleet-report.json").read_text())["total"] == 2


def test_fleet_fail_on_warn_passes_a_healthy_fleet_and_bad_value_stops_early(tmp_path, inject_facts):
    proc = sweep(tmp_path, "-e", "sweep_fail_on=warn", "--limit", "web-01,web-02")[0]
    assert proc.returncode == 0, proc.stdout
    proc, report_dir = sweep(tmp_path, "-e", "sweep_fail_on=critical", "--limit", "web-01", report="never-written")
    assert proc.returncode != 0
    # The role's argument spec refuses it before any host is measured.
    assert "value of sweep_fail_on must be one of: never, warn, crit, got: critical" in proc.stdout
    assert not report_dir.exists()


def test_html_escapes_host_content_and_scales_to_many_hosts(tmp_path):
    """Rendered as Ansible's template module does (no autoescape), with hostile reasons, in Chromium."""
    hostile = "<img src=x onerror=\"document.title='owned'\">"
    hostvars = dict(("node-%02d" % index, {"ansible_facts": {"fleet_resources": {
        "verdict": "warn" if index % 3 else "crit", "reasons": ["disk /srv%s 90%% >= warn 85%%" % hostile],
        "score": index, "cpu": {"percent": float(index)}, "memory": {"percent": 50.0},
        "disks": [{"mount": "/srv" + hostile, "percent": 90.0, "free": 1 << 30}]}}}) for index in range(40))
    report = fleet.fleet_report(hostvars, sorted(hostvars), generated_at="2026-01-01T00:00:00Z")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(COLLECTION_ROOT, "roles", "sweep", "templates")))
    env.filters["fleetops.health.human_bytes"] = fleet.human_bytes
    page = tmp_path / "fleet-report.html"
    page.write_text(env.get_template("fleet-report.html.j2").render(__sweep_report=report))
    parser, dom = chromium_rows(page)
    assert sorted(row[1] for row in parser.rows) == sorted(hostvars)
    assert "<img" not in dom and "owned" not in dom.split("<title>")[1].split("</title>")[0]
    assert "&lt;img src=x" in dom


PROBING_INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
    sweep_subset: [memory]
    sweep_window: 0
  hosts:
    quiet-01: {}
    misconfigured-01:
      sweep_probe_targets:
        - {name: api, url: "ftp://127.0.0.1/"}
    # A string, not a list of targets: the role checks its variables once per play (on the first host), so
    # this host's value is refused by the probe module on this host alone.
    wrong-type-01:
      sweep_probe_targets: "http://127.0.0.1:1/"
    web-01:
      sweep_probe_targets:
        - {name: api, tcp: "127.0.0.1:%(closed_port)s"}
      sweep_probe_state_file: %(tmp)s/probe/sweep.json
      sweep_probe_unhealthy_threshold: 1
      sweep_log_paths: ["%(tmp)s/app.log"]
      sweep_log_rules:
        - {name: oom, keywords: ["Out of memory"], severity: critical}
        - {name: slow, pattern: "took [0-9]{4,} ms", severity: warning}
      sweep_log_state_dir: %(tmp)s/offsets
      sweep_log_start_at: beginning
"""


def test_sweep_probes_and_scans_logs_where_the_inventory_asks(tmp_path, inject_facts):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    (tmp_path / "app.log").write_text("boot\nOut of memory: killed 42\nGET / took 2500 ms\nGET / took 12 ms\n")
    text = PROBING_INVENTORY % {"python": "%(python)s", "closed_port": closed_port, "tmp": tmp_path}
    proc, report_dir = sweep(tmp_path, inventory_text=text)
    assert proc.returncode == 0, proc.stdout
    rows = dict((row["host"], row) for row in json.loads((report_dir / "fleet-report.json").read_text())["hosts"])
    assert rows["quiet-01"]["verdict"] == "ok"
    # A probe that cannot even run is a crit reason naming the target, not a silent pass.
    misconfigured = rows["misconfigured-01"]
    assert misconfigured["verdict"] == "crit" and misconfigured["top_reason"].startswith("probe failed: ")
    assert "api" in misconfigured["top_reason"]
    wrong_type = rows["wrong-type-01"]
    assert wrong_type["verdict"] == "crit" and "targets" in wrong_type["top_reason"], wrong_type
    web = rows["web-01"]
    assert web["verdict"] == "crit"
    assert "probe api down (refused)" in web["reasons"]
    assert "log rule oom: 1 critical match" in web["reasons"]
    assert "log rule slow: 1 warning match" in web["reasons"]
    # The offsets advanced on the host: a second sweep sees no new log lines, and the probe stays down.
    proc, report_dir = sweep(tmp_path, inventory_text=text, report="second")
    web = [row for row in json.loads((report_dir / "fleet-report.json").read_text())["hosts"] if row["host"] == "web-01"][0]
    assert web["reasons"] == ["probe api down (refused)"]


SECRETS_INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: %(python)s
    sweep_subset: [memory]
    sweep_window: 0
  hosts:
    auth-01:
      sweep_log_paths: ["%(tmp)s/secure.log"]
      sweep_log_rules:
        - {name: login, keywords: ["login FAILED"], severity: critical}
      sweep_log_state_dir: %(tmp)s/offsets-%(run)s
      sweep_log_start_at: beginning
      sweep_probe_targets:
        - {name: api, url: "http://admin:S3cretPW@127.0.0.1:%(closed_port)s/health?token=sekritpw"}
"""


def _secrets_sweep(tmp_path, run, *extra):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    log = tmp_path / "secure.log"
    log.write_text("user bob password=Hunter2Secret login FAILED\n")
    os.chmod(str(log), 0o600)
    text = SECRETS_INVENTORY % {"python": "%(python)s", "tmp": tmp_path, "run": run, "closed_port": closed_port}
    return sweep(tmp_path, *extra, inventory_text=text, report="report-%s" % run)


def test_reports_are_private_by_default_and_mask_credentials(tmp_path, inject_facts):
    proc, report_dir = _secrets_sweep(tmp_path, "default")
    assert proc.returncode == 0, proc.stdout
    assert oct(os.stat(str(report_dir)).st_mode & 0o777) == "0o700"
    for name in ("fleet-report.json", "fleet-report.html"):
        assert oct(os.stat(str(report_dir / name)).st_mode & 0o777) == "0o600", name
    text = (report_dir / "fleet-report.json").read_text()
    row = json.loads(text)["hosts"][0]
    # the sample is kept (the file is private) but the credential in it is masked, as is the probe URL's
    assert row["facts"]["logs"]["rules"]["login"]["samples"] == ["user bob password=******** login FAILED"]
    for secret in ("Hunter2Secret", "S3cretPW", "sekritpw"):
        assert secret not in text and secret not in proc.stdout, secret


def test_report_mode_is_a_variable_and_log_samples_can_be_left_out(tmp_path, inject_facts):
    proc, report_dir = _secrets_sweep(tmp_path, "shared", "-e", "sweep_report_mode=0640",
                                      "-e", "sweep_report_dir_mode=0750", "-e", '{"sweep_report_log_samples": false}')
    assert proc.returncode == 0, proc.stdout
    assert oct(os.stat(str(report_dir)).st_mode & 0o777) == "0o750"
    assert oct(os.stat(str(report_dir / "fleet-report.json")).st_mode & 0o777) == "0o640"
    text = (report_dir / "fleet-report.json").read_text()
    login = json.loads(text)["hosts"][0]["facts"]["logs"]["rules"]["login"]
    assert login["count"] == 1 and "samples" not in login and "login FAILED" not in text


def test_report_mode_must_be_a_quoted_octal_string(tmp_path, inject_facts):
    proc, report_dir = _secrets_sweep(tmp_path, "badmode", "-e", '{"sweep_report_mode": 644}')
    assert proc.returncode != 0
    assert "sweep_report_mode and sweep_report_dir_mode must be quoted octal modes" in proc.stdout
    assert not report_dir.exists()
