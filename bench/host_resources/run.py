"""Benchmark host_resources against its anchor, ansible.builtin.setup, measured in the same run.

1. ad hoc: `ansible localhost -m fleetops.health.host_resources` vs `-m setup -a gather_subset=min|all`
2. the module's own work, excluding the window, vs psutil's full snapshot (in-process)
3. fleet: the sweep on N local-connection hosts vs a play of `setup gather_subset=min`, in ms per host

    .venv/bin/python bench/host_resources/run.py [--quick]

Prints medians and ratios; no assertions (timings depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
           ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([DEV_COLLECTIONS, os.path.join(ROOT, ".cache", "collections")]))
sys.path.insert(0, DEV_COLLECTIONS)


def ensure_dev_link():
    link = os.path.join(DEV_COLLECTIONS, "ansible_collections", "fleetops", "health")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


def timed(command, cwd=None):
    start = time.monotonic()
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, cwd=cwd,
                          universal_newlines=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(command), proc.stdout[-2000:]))
    return elapsed


def median_of(repeats, function):
    return statistics.median(function() for _round in range(repeats))


def adhoc(repeats):
    ansible = os.path.join(BIN, "ansible")
    base = [ansible, "localhost", "-e", "ansible_python_interpreter=%s" % sys.executable]
    # Interleave the three commands so that a load change on the machine hits all of them alike.
    samples = {"host_resources": [], "setup_min": [], "setup_all": []}
    commands = {
        "host_resources": base + ["-m", "fleetops.health.host_resources"],
        "setup_min": base + ["-m", "ansible.builtin.setup", "-a", "gather_subset=min"],
        "setup_all": base + ["-m", "ansible.builtin.setup", "-a", "gather_subset=all"],
    }
    for _round in range(repeats):
        for name, command in commands.items():
            samples[name].append(timed(command))
    return dict((name, statistics.median(values)) for name, values in samples.items())


def psutil_full_snapshot():
    import psutil
    psutil.cpu_times()
    psutil.virtual_memory()
    psutil.swap_memory()
    for partition in psutil.disk_partitions():
        try:
            psutil.disk_usage(partition.mountpoint)
        except OSError:
            pass
    psutil.disk_io_counters(perdisk=True)
    psutil.net_io_counters(pernic=True)
    psutil.net_if_stats()
    for _process in psutil.process_iter(["name", "cpu_times", "memory_info", "status"]):
        pass


def own_work(repeats):
    from ansible_collections.fleetops.health.plugins.module_utils.collectors import HostResources

    def run(window):
        collector = HostResources(window=window)
        start = time.monotonic()
        collector.collect()
        return (time.monotonic() - start - window) * 1000.0

    def psutil_run():
        start = time.monotonic()
        psutil_full_snapshot()
        return (time.monotonic() - start) * 1000.0

    run(0.0)  # warm imports and page cache, as every later call on a host is
    return {
        "window_0": median_of(repeats, lambda: run(0.0)),
        "window_0.2_minus_window": median_of(repeats, lambda: run(0.2)),
        "psutil_snapshot": median_of(repeats, psutil_run),
    }


RUNS_PER_SIZE = {10: 5, 50: 3, 100: 3}

SETUP_PLAY = """
- name: setup anchor
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.setup:
        gather_subset: min
"""


def fleet(sizes, workdir):
    """Alternating runs of each play per size, medians: RUNS_PER_SIZE[size] runs (one run at N=10 swung by a
    tenth between tries; a 100-host run already averages over 100 module calls)."""
    playbook = os.path.join(workdir, "setup-min.yml")
    with open(playbook, "w") as handle:
        handle.write(SETUP_PLAY)
    results = []
    for size in sizes:
        inventory = os.path.join(workdir, "fleet-%d.yml" % size)
        with open(inventory, "w") as handle:
            handle.write("all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: %s\n  hosts:\n"
                         % sys.executable)
            for index in range(size):
                handle.write("    host-%03d: {}\n" % index)
        playbook_bin = os.path.join(BIN, "ansible-playbook")
        sweep = [playbook_bin, "-i", inventory, "fleetops.health.sweep", "-e", "sweep_report_dir=%s/report" % workdir]
        anchor = [playbook_bin, "-i", inventory, playbook]
        # The measure alone (--tags fleet_measure) shows the module's share without the report's cost.
        # The anchor first, so that it, not the sweep, pays for the cold caches of the size's first run.
        runs = dict(anchor=[], sweep=[], measure=[])
        for _run in range(RUNS_PER_SIZE.get(size, 1)):
            runs["anchor"].append(timed(anchor, cwd=workdir) * 1000.0 / size)
            runs["sweep"].append(timed(sweep, cwd=workdir) * 1000.0 / size)
            runs["measure"].append(timed(sweep + ["--tags", "fleet_measure"], cwd=workdir) * 1000.0 / size)
        results.append((size, statistics.median(runs["sweep"]), statistics.median(runs["measure"]),
                        statistics.median(runs["anchor"]), len(runs["anchor"])))
    return results


def print_row(label, value, ratio):
    print("   %-46s %8s  %s" % (label, value, ratio))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and only N=10 (about 30 s)")
    parser.add_argument("--fleet-only", action="store_true", help="only part 3, the sweep against the setup min play")
    args = parser.parse_args()
    ensure_dev_link()
    repeats = 2 if args.quick else 5
    sizes = (10,) if args.quick else (10, 50, 100)
    load = os.getloadavg()[0]
    print("host_resources benchmark  (cores %d, load1 %.1f at start, repeats %d, medians)" % (os.cpu_count(), load, repeats))

    if not args.fleet_only:
        ad_hoc_and_own_work(repeats)
    fleet_part(sizes)


def ad_hoc_and_own_work(repeats):
    times = adhoc(repeats)
    print("\n1. ad hoc on localhost, wall time in seconds")
    print_row("command", "seconds", "ratio")
    print_row("setup gather_subset=min (anchor)", "%.3f" % times["setup_min"], "1.00")
    print_row("setup gather_subset=all", "%.3f" % times["setup_all"], "%.2f" % (times["setup_all"] / times["setup_min"]))
    print_row("host_resources (window 0.2 s)", "%.3f" % times["host_resources"], "%.2f vs min, %.2f vs all" % (
        times["host_resources"] / times["setup_min"], times["host_resources"] / times["setup_all"]))
    print("   goal: <= 1.0 vs min, <= 0.8 vs all")

    work = own_work(repeats * 4)
    print("\n2. the module's own work, in process, ms")
    anchor = work["psutil_snapshot"]
    print_row("psutil full snapshot (anchor)", "%.1f" % anchor, "1.00")
    print_row("collect(), window 0 (all sections, no rates)", "%.1f" % work["window_0"], "%.2f" % (work["window_0"] / anchor))
    print_row("collect(), window 0.2, minus the 0.2 s", "%.1f" % work["window_0.2_minus_window"],
              "%.2f" % (work["window_0.2_minus_window"] / anchor))
    print("   goal: <= 25 ms")


def fleet_part(sizes):
    with tempfile.TemporaryDirectory(prefix="bench-host-resources-") as workdir:
        rows = fleet(sizes, workdir)
    print("\n3. fleet of N local-connection hosts, ms per host, median of alternating runs (forks from ansible.cfg)")
    columns = "   %-6s %5s %16s %6s %20s %6s %12s %6s"
    print(columns % ("N", "runs", "setup min play", "ratio", "sweep measure only", "ratio", "whole sweep", "ratio"))
    for size, sweep_ms, measure_ms, anchor_ms, runs in rows:
        print(columns % (size, runs, "%.0f" % anchor_ms, "1.00", "%.0f" % measure_ms, "%.2f" % (measure_ms / anchor_ms),
                         "%.0f" % sweep_ms, "%.2f" % (sweep_ms / anchor_ms)))
    print("   goal: ratio <= 1.0, the whole sweep included (its report is written by an action plugin, no module runs)")
    print("\nload1 at end %.1f" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
