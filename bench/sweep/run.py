"""Benchmark the fleet sweep on lab hosts against a `setup gather_subset=min` play, measured in the same run.

For each size N (default 50 100 200) both plays run on the first N hosts of one lab and the script prints the
wall time per host and the control node's peak memory while each play ran: the sum of the RSS and of the PSS of
ansible-playbook and all its descendants (the forks; PSS counts the pages the forks share once), sampled every
0.25 s, and the largest single process's maxrss from getrusage(RUSAGE_CHILDREN).

    .venv/bin/python bench/sweep/run.py [SIZES ...] [--forks 50 ...] [--strategy linear free] [--pipelining on off]
    .venv/bin/python bench/sweep/run.py 10 --matrix      # forks 25/50/100 x linear/free x pipelining on/off

The lab (tests/lab/lab.py, docs/lab.md) is brought up once with max(SIZES) hosts under the name
$FLEETOPS_LAB_NAME (default sweep-bench) and taken down at the end unless --keep. Prints ratios, asserts
nothing: the figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import psutil

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
LAB = [sys.executable, os.path.join(ROOT, "tests", "lab", "lab.py")]
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
CACHE_DIR = os.path.join(ROOT, "tests", "lab", "cache")

SETUP_PLAY = """
- name: setup anchor
  hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.setup:
        gather_subset: min
"""


def ensure_dev_link():
    """Run this checkout's collection, not an installed copy."""
    link = os.path.join(DEV_COLLECTIONS, "ansible_collections", "fleetops", "health")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


class MemorySampler(threading.Thread):
    """Peak sum of RSS and of PSS over a process and its descendants, sampled until stopped."""

    def __init__(self, pid, interval=0.25):
        threading.Thread.__init__(self, daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                top = psutil.Process(self.pid)
                processes = [top] + top.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            rss = pss = 0
            for process in processes:
                try:
                    info = process.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(processes))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


def play(command, env, cwd):
    """Run one ansible-playbook; return (seconds, peak RSS sum, peak PSS sum, processes, output)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            universal_newlines=True)
    sampler = MemorySampler(proc.pid)
    sampler.start()
    output = proc.communicate(timeout=3600)[0]
    elapsed = time.monotonic() - start
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit("failed (rc %d): %s\n%s" % (proc.returncode, " ".join(command), output[-3000:]))
    return elapsed, sampler.peak_rss, sampler.peak_pss, sampler.peak_processes, output


def lab_up(name, count):
    subprocess.run(LAB + ["up", "--name", name, "-n", str(count)], check=True, timeout=1800)
    return os.path.join(CACHE_DIR, "%s.inventory.ssh.yml" % name)


def lab_down(name):
    subprocess.run(LAB + ["down", "--name", name], check=False, timeout=600)


def settings_env(forks, strategy, pipelining):
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([DEV_COLLECTIONS, os.path.join(ROOT, ".cache", "collections")]),
                ANSIBLE_FORKS=str(forks), ANSIBLE_STRATEGY=strategy,
                ANSIBLE_PIPELINING="true" if pipelining else "false",
                # the lab inventory sets ControlPath; keep the masters between the two plays of a size
                ANSIBLE_SSH_ARGS="-C -o ControlMaster=auto -o ControlPersist=300s",
                ANSIBLE_NOCOLOR="1")


def measure(inventory, size, env, workdir):
    """Warm the ssh masters, then the anchor and the sweep on the first ``size`` hosts; per-host figures."""
    playbook_bin = os.path.join(BIN, "ansible-playbook")
    limit = ["--limit", "lab[0:%d]" % (size - 1)]
    anchor = os.path.join(workdir, "setup-min.yml")
    warm = [os.path.join(BIN, "ansible"), "-i", inventory, "lab", "-m", "ansible.builtin.ping"] + limit
    subprocess.run(warm, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=workdir, timeout=1800,
                   check=False)
    setup = play([playbook_bin, "-i", inventory, anchor] + limit, env, workdir)
    sweep = play([playbook_bin, "-i", inventory, "fleetops.health.sweep", "-e",
                  "sweep_report_dir=%s/report-%d" % (workdir, size)] + limit, env, workdir)
    return {"setup_ms": setup[0] * 1000.0 / size, "sweep_ms": sweep[0] * 1000.0 / size,
            "setup_rss": setup[1], "sweep_rss": sweep[1], "setup_pss": setup[2], "sweep_pss": sweep[2],
            "setup_procs": setup[3], "sweep_procs": sweep[3]}


def mib(value):
    return "%.0f" % (value / 2.0 ** 20)


def print_rows(rows):
    columns = "   %-5s %-6s %-8s %-4s %10s %10s %6s %12s %12s %12s %12s %6s"
    print(columns % ("N", "forks", "strategy", "pipe", "setup ms/h", "sweep ms/h", "ratio", "setup RSS", "sweep RSS",
                     "setup PSS", "sweep PSS", "procs"))
    for (size, forks, strategy, pipelining), row in rows:
        print(columns % (size, forks, strategy, "on" if pipelining else "off", "%.0f" % row["setup_ms"],
                         "%.0f" % row["sweep_ms"], "%.2f" % (row["sweep_ms"] / row["setup_ms"]),
                         mib(row["setup_rss"]) + " MiB", mib(row["sweep_rss"]) + " MiB",
                         mib(row["setup_pss"]) + " MiB", mib(row["sweep_pss"]) + " MiB",
                         "%d/%d" % (row["setup_procs"], row["sweep_procs"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[50, 100, 200], help="fleet sizes (default 50 100 200)")
    parser.add_argument("--forks", type=int, nargs="+", default=[50], help="forks (default 50, the recommended setting)")
    parser.add_argument("--strategy", nargs="+", default=["linear"], choices=["linear", "free"])
    parser.add_argument("--pipelining", nargs="+", default=["on"], choices=["on", "off"])
    parser.add_argument("--matrix", action="store_true",
                        help="every combination of forks 25/50/100, linear/free and pipelining on/off, at each size")
    parser.add_argument("--keep", action="store_true", help="leave the lab hosts up at the end")
    args = parser.parse_args()
    if min(args.sizes) < 1:
        parser.error("sizes must be positive")
    ensure_dev_link()
    name = os.environ.get("FLEETOPS_LAB_NAME", "sweep-bench")
    if args.matrix:
        settings = list(itertools.product((25, 50, 100), ("linear", "free"), (True, False)))
    else:
        settings = list(itertools.product(args.forks, args.strategy, [value == "on" for value in args.pipelining]))
    sizes = sorted(set(args.sizes))
    print("sweep benchmark on lab %s (cores %d, load1 %.1f at start), sizes %s"
          % (name, os.cpu_count(), os.getloadavg()[0], " ".join(map(str, sizes))), flush=True)
    rows = []
    try:
        started = time.monotonic()
        inventory = lab_up(name, max(sizes))
        print("lab of %d hosts up in %.0f s" % (max(sizes), time.monotonic() - started), flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as workdir:
            with open(os.path.join(workdir, "setup-min.yml"), "w") as handle:
                handle.write(SETUP_PLAY)
            for size in sizes:
                for forks, strategy, pipelining in settings:
                    row = measure(inventory, size, settings_env(forks, strategy, pipelining), workdir)
                    rows.append(((size, forks, strategy, pipelining), row))
                    print_rows(rows[-1:])
                    sys.stdout.flush()
    finally:
        if not args.keep:
            lab_down(name)
    print("\nall runs: wall time per host, peak memory of ansible-playbook and its forks while each play ran")
    print_rows(rows)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("   largest single child process (getrusage RUSAGE_CHILDREN maxrss): %.0f MiB" % (children / 1024.0))
    print("   goal: sweep/setup ratio <= 1.0 at every size; per-host time flat as N grows (linear scaling)")
    print("load1 at end %.1f" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
