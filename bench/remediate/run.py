"""Benchmark: the steady-state cost of a scheduled remediation run against the naive play, and the RTO.

One playbooks/remediate.yml run over N lab hosts where every service is healthy (nothing to do: the cost
a timer pays every few minutes), against bench/remediate/naive.yml (service_facts + uri + systemd_service
per service), measured in the same run on the same hosts, alternating, best of R. Both runs use the same
ssh inventory, forks and services (nginx with an HTTP probe). Also one run with nginx killed on one host
(detect, restart, verify, record), for scale.

Then the RTO: playbooks/chaos.yml kills nginx with SIGKILL, then stops it, on one host, while a timer
stand-in runs the remediation every 30 s (10 s with --quick); chaos.yml prints the time from the fault
to the moment nginx answers again. The anchor is the timer period: the expected RTO of a timer-driven
remediation is about half of it plus one run.

    .venv/bin/python bench/remediate/run.py [--quick] [--hosts N] [--repeats R]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import lab as host_lab  # noqa: E402  pylint: disable=wrong-import-position

SERVICES = [{"name": "nginx", "unit": "nginx.service", "probe": {"url": "http://127.0.0.1/"}}]


def ansible_env():
    return dict(os.environ,
                ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([os.path.join(ROOT, ".cache", "dev-collections"),
                                                          os.path.join(ROOT, ".cache", "collections")]),
                CONTAINERS_CONF=str(host_lab.CONTAINERS_CONF))


def remediate_on_a_timer(inventory, hosts, extravars, period, stop):
    """A systemd timer stand-in: start a remediation run every ``period`` seconds until ``stop`` is set."""
    while not stop.wait(period - time.monotonic() % period):
        play(inventory, os.path.join(ROOT, "playbooks", "remediate.yml"), hosts, extravars)


def chaos_rto(inventory, host, remediate_vars, period):
    """{fault: seconds} from chaos.yml, with the remediation running every ``period`` seconds meanwhile."""
    stop = threading.Event()
    timer = threading.Thread(target=remediate_on_a_timer, args=(inventory, [host], remediate_vars, period, stop))
    timer.start()
    try:
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
                   os.path.join(ROOT, "playbooks", "chaos.yml"), "-e", json.dumps({"chaos_hosts": host})]
        completed = subprocess.run(command, env=ansible_env(), cwd=ROOT, capture_output=True, text=True,
                                   timeout=900, check=False)
    finally:
        stop.set()
        timer.join()
    if completed.returncode != 0:
        raise SystemExit("chaos.yml failed:\n%s" % completed.stdout[-3000:])
    return dict((fault, float(seconds)) for fault, seconds in re.findall(r"- \S+ (kill9|stop) ([0-9.]+)", completed.stdout))


def play(inventory, playbook, hosts, extravars):
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), playbook,
               "--limit", ",".join(hosts), "-e", json.dumps(extravars)]
    started = time.monotonic()
    completed = subprocess.run(command, env=ansible_env(), cwd=ROOT, capture_output=True, text=True, timeout=900,
                               check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit("%s failed:\n%s\n%s" % (playbook, completed.stdout[-3000:], completed.stderr[-2000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 hosts, one repeat (about 30-60 s)")
    parser.add_argument("--hosts", type=int, default=None, help="lab hosts (default 10, 3 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each play (default 2, 1 with --quick)")
    parser.add_argument("--rto-only", action="store_true", help="only the chaos.yml RTO measurement")
    args = parser.parse_args()
    count = args.hosts or (3 if args.quick else 10)
    repeats = args.repeats or (1 if args.quick else 2)

    lab = host_lab.Lab("fleetops-bench-remediate")
    try:
        hosts = [host.name for host in lab.up(count=count)]
        for host in hosts:
            host_lab.podman("exec", host, "systemctl", "start", "nginx")
        remediate_vars = {"remediate_services": SERVICES, "remediate_notify": False, "remediate_serial": "100%",
                          "remediate_verify_interval": 1}
        naive_vars = {"remediate_services": SERVICES}
        remediate_playbook = os.path.join(ROOT, "playbooks", "remediate.yml")
        naive_playbook = os.path.join(HERE, "naive.yml")
        # First runs create the state files and warm ssh control sockets; they are not measured.
        play(lab.ssh_inventory, remediate_playbook, hosts, remediate_vars)
        timings, acting = {"naive": [], "remediate": []}, None
        if not args.rto_only:
            play(lab.ssh_inventory, naive_playbook, hosts, naive_vars)
            for _repeat in range(repeats):
                timings["naive"].append(play(lab.ssh_inventory, naive_playbook, hosts, naive_vars))
                timings["remediate"].append(play(lab.ssh_inventory, remediate_playbook, hosts, remediate_vars))
            host_lab.podman("exec", hosts[0], "systemctl", "kill", "--signal=KILL", "nginx")
            time.sleep(0.5)
            acting = play(lab.ssh_inventory, remediate_playbook, hosts, remediate_vars)
        period = 10 if args.quick else 30
        rto = chaos_rto(lab.ssh_inventory, hosts[-1], dict(remediate_vars, remediate_services=[dict(
            SERVICES[0], policy={"max_restarts": 10, "backoff": 0})]), period)
    finally:
        lab.down()

    if not args.rto_only:
        print_steady_state(count, repeats, timings, acting)
    print_rto(period, rto)


def print_steady_state(count, repeats, timings, acting):
    anchor = min(timings["naive"])
    print("\nremediate steady state over %d lab hosts, 1 service each, best of %d (load average %.1f)"
          % (count, repeats, os.getloadavg()[0]))
    print("%-44s %9s %12s %9s" % ("run", "wall s", "per host ms", "× naive"))
    rows = [("naive: service_facts + uri + systemd_service", anchor),
            ("fleetops.health.remediate, nothing to do", min(timings["remediate"])),
            ("fleetops.health.remediate, 1 host restarts", acting)]
    for name, seconds in rows:
        print("%-44s %9.2f %12.0f %9.2f" % (name, seconds, seconds * 1000.0 / count, seconds / anchor))


def print_rto(period, rto):
    print("\nRTO with the remediation on a %d s timer (chaos.yml on one host)" % period)
    print("%-44s %9s %12s" % ("fault", "RTO s", "× period"))
    for fault in ("kill9", "stop"):
        print("%-44s %9.1f %12.2f" % (fault, rto.get(fault, float("nan")), rto.get(fault, float("nan")) / period))


if __name__ == "__main__":
    main()
