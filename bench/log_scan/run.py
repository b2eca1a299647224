# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark log_scan against grep, in the same run.

1. A full scan of a generated syslog-like file with 5 rules: log_scan's engine in-process against
   `grep -c -E` with the same rules (MB/s, ratio), in interleaved rounds so that load from elsewhere hits
   both alike: the best wall clock of each, the median of the per-round ratios, and the ratio of CPU
   seconds (which load skews much less). Per-rule counts are checked against `grep -c` per rule.
2. A resume after a 1 MB append, in-process (ms), against an idle resume and a full rescan.
3. The whole task through ansible-playbook: fleetops.health.log_scan against the shell task a user would
   write (`ansible.builtin.shell: grep -c -E ...`, one per rule), first run and after a 1 MB append.
4. Many small files: one glob over 2,000 and 10,000 logs under 1 KiB each in one folder, first run and
   later runs with nothing new (the engine as the module runs it). Later runs must stay linear in the
   number of files: the copytruncate search once listed the folder once per file.

Usage: .venv/bin/python bench/log_scan/run.py [--quick] [--size-mb N] [--skip-ansible] [--full-scan-only]
The log is generated once under bench/output/log_scan/ (gitignored) and reused.
"""
import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUTPUT = os.path.join(ROOT, "bench", "output", "log_scan")
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
sys.path.insert(0, DEV_COLLECTIONS)

from ansible_collections.fleetops.health.plugins.module_utils import log_offsets, log_scanner  # noqa: E402

RULES = [
    {"name": "errors", "keywords": ["ERROR"], "severity": "critical"},
    {"name": "timeouts", "keywords": ["Timeout"], "severity": "warning"},
    {"name": "exceptions", "keywords": ["Exception"], "severity": "critical"},
    {"name": "oom", "pattern": r"Out of memory: Killed process \d+", "severity": "critical"},
    {"name": "http_5xx", "pattern": r"status=5\d\d", "severity": "warning"},
]
# The same rules as POSIX EREs for grep.
GREP_RULES = ["ERROR", "Timeout", "Exception", "Out of memory: Killed process [0-9]+", "status=5[0-9][0-9]"]

NORMAL = [
    "systemd[1]: Started Session {n} of user root.",
    "sshd[{p}]: Accepted publickey for deploy from 10.0.{a}.{b} port {n} ssh2",
    "kernel: [{n}.{p}] eth0: link up, 1000Mbps, full-duplex",
    "app[{p}]: GET /api/v1/items/{n} status=200 bytes={b} in {a}ms",
    "app[{p}]: POST /api/v1/orders status=201 bytes={b} in {a}ms",
    "CRON[{p}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
    "nginx[{p}]: 10.1.{a}.{b} - - \"GET /static/{n}.css HTTP/1.1\" 200 {b}",
    "dockerd[{p}]: time=\"2026-11-25T13:00:00\" level=info msg=\"container {n} healthy\"",
]
RARE = [
    "app[{p}]: ERROR database connection refused (attempt {a})",
    "app[{p}]: Timeout waiting for upstream after {n}ms",
    "app[{p}]: java.lang.IllegalStateException: order {n} not found",
    "kernel: [{n}.{p}] Out of memory: Killed process {p} (java)",
    "app[{p}]: GET /api/v1/items/{n} status=503 bytes=0 in {a}ms",
]


def make_lines(rng, count):
    lines = []
    for _index in range(count):
        template = rng.choice(RARE) if rng.random() < 0.01 else rng.choice(NORMAL)
        values = dict(n=rng.randrange(100000), p=rng.randrange(1, 32768), a=rng.randrange(256), b=rng.randrange(65536))
        stamp = "Nov 25 13:%02d:%02d web-%02d" % (rng.randrange(60), rng.randrange(60), rng.randrange(40))
        lines.append("%s %s\n" % (stamp, template.format(**values)))
    return "".join(lines).encode()


def generate(path, size_mb):
    """A syslog-like file of about ``size_mb`` MB: 8 MB of varied lines, repeated."""
    target = size_mb * 1000 * 1000
    if os.path.exists(path) and abs(os.path.getsize(path) - target) < 10 * 1000 * 1000:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    block = make_lines(random.Random(42), 80000)
    with open(path + ".tmp", "wb") as handle:
        written = 0
        while written < target:
            handle.write(block)
            written += len(block)
    os.rename(path + ".tmp", path)


def engine_scan(paths, state_dir, start_at="beginning", timings=None):
    """One run as the module does it: compile, lock and load, scan, save (temp file, fsync, rename, fsync)."""
    started = time.perf_counter()
    counter = log_scanner.RuleCounter(log_scanner.compile_rules(RULES))
    with log_offsets.OffsetStore(state_dir) as store:
        facts = log_scanner.LogScan(paths, counter, store, start_at).run()
        scanned = time.perf_counter()
        store.save()
    if timings is not None:
        timings.append((scanned - started, time.perf_counter() - started))
    return facts


def wall_and_cpu(function):
    """``(wall seconds, CPU seconds of this process and its children, result)`` of one call."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = function()
    wall = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_cpu = children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime
    cpu = time.process_time() - cpu_started + children_cpu
    return wall, cpu, result


def small_files_runs(workdir, count, later_runs):
    """First run and the median later run (nothing new) over ``count`` small logs matched by one glob."""
    folder = os.path.join(workdir, "small-%d" % count)
    os.makedirs(folder)
    rng = random.Random(count)
    for index in range(count):
        with open(os.path.join(folder, "app%05d.log" % index), "wb") as handle:
            handle.write(make_lines(rng, 5))  # about 500 bytes
    pattern = os.path.join(folder, "*.log")
    state_dir = os.path.join(workdir, "state-small-%d" % count)
    started = time.perf_counter()
    engine_scan([pattern], state_dir)
    first = time.perf_counter() - started
    later = []
    for _index in range(later_runs):
        started = time.perf_counter()
        facts = engine_scan([pattern], state_dir)
        later.append(time.perf_counter() - started)
    assert len(facts["files"]) == count and facts["total_matches"] == 0
    return first, statistics.median(later)


def grep_count(pattern, path):
    out = subprocess.run(["grep", "-c", "-E", pattern, path], stdout=subprocess.PIPE, check=False, timeout=600)
    return int(out.stdout.decode().strip() or 0)


def append_mb(path, rng, megabytes=1):
    with open(path, "ab") as handle:
        handle.write(make_lines(rng, int(megabytes * 1000 * 1000 / 95)))


PLAYBOOK_LOG_SCAN = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Count rule matches since the last run
      fleetops.health.log_scan:
        paths: ["{log}"]
        rules: {rules}
        state_dir: "{state_dir}"
        start_at: beginning
      register: scanned
    - name: Keep the counts
      ansible.builtin.copy:
        content: "{{{{ scanned.ansible_facts.fleet_logs.rules | dict2items | map(attribute='value.count') | list | to_json }}}}"
        dest: "{out}"
"""

PLAYBOOK_GREP = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Count each rule with grep
      ansible.builtin.shell: grep -c -E '{{{{ item }}}}' {log}
      loop: {rules}
      register: counted
      changed_when: false
      failed_when: counted.rc > 1
    - name: Keep the counts
      ansible.builtin.copy:
        content: "{{{{ counted.results | map(attribute='stdout') | map('int') | list | to_json }}}}"
        dest: "{out}"
"""


def run_playbook(text, workdir, name):
    playbook = os.path.join(workdir, name + ".yml")
    with open(playbook, "w") as handle:
        handle.write(text)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=DEV_COLLECTIONS + ":" + os.path.join(ROOT, ".cache", "collections"))
    started = time.perf_counter()
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("ansible-playbook %s failed:\n%s" % (name, result.stdout.decode()[-3000:]))
    return elapsed


class _FullScanDone(Exception):
    """--full-scan-only: part 1 is measured."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 MB and fewer repeats (~30 s)")
    parser.add_argument("--size-mb", type=int, help="size of the generated log (default 500, quick 100)")
    parser.add_argument("--skip-ansible", action="store_true", help="leave out part 3")
    parser.add_argument("--full-scan-only", action="store_true", help="part 1 only")
    args = parser.parse_args()
    size_mb = args.size_mb or (100 if args.quick else 500)
    repeats = 2 if args.quick else 3
    log = os.path.join(OUTPUT, "syslog-%dmb.log" % size_mb)
    generate(log, size_mb)
    size = os.path.getsize(log)
    megabytes = size / 1e6
    rows = []
    with open(log, "rb") as handle:  # warm the page cache so both sides read from memory
        while handle.read(64 << 20):
            pass

    # 1. full scan
    load_before = os.getloadavg()
    grep_any = "|".join(GREP_RULES)
    workdir = tempfile.mkdtemp(prefix="log_scan_bench.")
    try:
        def fresh_scan():
            state_dir = os.path.join(workdir, "state-full")
            shutil.rmtree(state_dir, ignore_errors=True)
            return engine_scan([log], state_dir)
        greps, scans = [], []
        for _round in range(repeats):
            greps.append(wall_and_cpu(lambda: grep_count(grep_any, log)))
            scans.append(wall_and_cpu(fresh_scan))
        grep_total, facts = greps[-1][2], scans[-1][2]
        grep_seconds = min(wall for wall, _cpu, _result in greps)
        scan_seconds = min(wall for wall, _cpu, _result in scans)
        per_round = statistics.median(grep[0] / scan[0] for grep, scan in zip(greps, scans))
        grep_cpu = min(cpu for _wall, cpu, _result in greps)
        scan_cpu = min(cpu for _wall, cpu, _result in scans)
        per_rule_grep = [grep_count(pattern, log) for pattern in GREP_RULES]
        per_rule_scan = [facts["rules"][rule["name"]]["count"] for rule in RULES]
        grep_rate, scan_rate = megabytes / grep_seconds, megabytes / scan_seconds
        rows.append(("full scan %d MB, 5 rules: grep -c -E (anchor)" % round(megabytes), "%.0f MB/s" % grep_rate, "1.00x"))
        rows.append(("full scan: log_scan engine (per-rule counts + samples)", "%.0f MB/s" % scan_rate,
                     "%.2fx" % (scan_rate / grep_rate)))
        rows.append(("full scan: log_scan engine, median of the per-round ratios", "-", "%.2fx" % per_round))
        rows.append(("full scan: grep -c -E, per CPU-second (anchor)", "%.0f MB/s" % (megabytes / grep_cpu), "1.00x"))
        rows.append(("full scan: log_scan engine, per CPU-second", "%.0f MB/s" % (megabytes / scan_cpu),
                     "%.2fx" % (grep_cpu / scan_cpu)))
        rows.append(("(load average before part 1: %.2f %.2f %.2f)" % load_before, "", ""))
        if args.full_scan_only:
            args.skip_ansible = True

        # 2. resume after a 1 MB append (the engine as the module runs it: lock, load, scan, save)
        rng = random.Random(7)
        if args.full_scan_only:
            raise _FullScanDone()
        work_log = os.path.join(workdir, "resume.log")
        shutil.copyfile(log, work_log)
        resume_state = os.path.join(workdir, "state-resume")
        engine_scan([work_log], resume_state)
        idle_times, resume_times = [], []
        for _index in range(5 if args.quick else 10):
            engine_scan([work_log], resume_state, timings=idle_times)
            append_mb(work_log, rng)
            appended = engine_scan([work_log], resume_state, timings=resume_times)
        rows.append(("resume after 1 MB append: full rescan with grep (anchor)", "%.1f ms" % (grep_seconds * 1000),
                     "1.00x"))
        for label, times in (("resume after 1 MB append", resume_times), ("resume with nothing new", idle_times)):
            scan_ms = statistics.median(scan for scan, _total in times) * 1000
            total_ms = statistics.median(total for _scan, total in times) * 1000
            rows.append(("%s: log_scan engine, read+match, median" % label, "%.2f ms" % scan_ms,
                         "%.3fx" % (scan_ms / 1000 / grep_seconds)))
            rows.append(("%s: log_scan engine, + durable save, median" % label, "%.2f ms" % total_ms,
                         "%.3fx" % (total_ms / 1000 / grep_seconds)))
        assert appended["files"][0]["bytes_scanned"] > 900000

        # 3. whole task through ansible-playbook
        if not args.skip_ansible:
            rules_yaml = json.dumps(RULES)
            playbook_log = os.path.join(workdir, "playbook.log")
            shutil.copyfile(log, playbook_log)
            fill = dict(log=playbook_log, rules=rules_yaml, state_dir=os.path.join(workdir, "state-playbook"))
            module_first = run_playbook(PLAYBOOK_LOG_SCAN.format(out=os.path.join(workdir, "m1.json"), **fill),
                                        workdir, "module-first")
            grep_first = run_playbook(PLAYBOOK_GREP.format(log=playbook_log, rules=json.dumps(GREP_RULES),
                                                           out=os.path.join(workdir, "g1.json")), workdir, "grep-first")
            append_mb(playbook_log, rng)
            module_next = run_playbook(PLAYBOOK_LOG_SCAN.format(out=os.path.join(workdir, "m2.json"), **fill),
                                       workdir, "module-next")
            grep_next = run_playbook(PLAYBOOK_GREP.format(log=playbook_log, rules=json.dumps(GREP_RULES),
                                                          out=os.path.join(workdir, "g2.json")), workdir, "grep-next")
            with open(os.path.join(workdir, "m1.json")) as handle:
                playbook_counts = json.load(handle)
            with open(os.path.join(workdir, "g1.json")) as handle:
                playbook_grep_counts = json.load(handle)
            rows.append(("playbook, first run: shell grep -c per rule (anchor)", "%.2f s" % grep_first, "1.00x"))
            rows.append(("playbook, first run: fleetops.health.log_scan", "%.2f s" % module_first,
                         "%.2fx" % (module_first / grep_first)))
            rows.append(("playbook, after 1 MB append: shell grep -c per rule (anchor)", "%.2f s" % grep_next, "1.00x"))
            rows.append(("playbook, after 1 MB append: fleetops.health.log_scan", "%.2f s" % module_next,
                         "%.2fx" % (module_next / grep_next)))

        # 4. many small files in one folder
        later_runs = 3 if args.quick else 5
        small_first, small_later = small_files_runs(workdir, 2000, later_runs)
        many_first, many_later = small_files_runs(workdir, 10000, later_runs)
        rows.append(("small logs, later run, 2,000 files (anchor)", "%.2f s" % small_later, "1.00x"))
        rows.append(("small logs, later run, 10,000 files (5x the files)", "%.2f s" % many_later,
                     "%.2fx" % (many_later / small_later)))
        rows.append(("small logs, first run, 2,000 files", "%.2f s" % small_first, "%.2fx" % (small_first / small_later)))
        rows.append(("small logs, first run, 10,000 files", "%.2f s" % many_first, "%.2fx" % (many_first / small_later)))
    except _FullScanDone:
        pass
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    width = max(len(row[0]) for row in rows)
    print("log_scan benchmark: %s (%.0f MB), %d rules, best of %d"
          % (os.path.relpath(log, ROOT), megabytes, len(RULES), repeats))
    print("%-*s  %12s  %8s" % (width, "measurement", "value", "ratio"))
    for row in rows:
        print("%-*s  %12s  %8s" % (width, row[0], row[1], row[2]))
    print()
    print("goals: full scan >= 0.5x grep MB/s (#16); resume after 1 MB <= 10 ms; later run over 10,000 small logs"
          " <= 2 s and about 5x the 2,000-file run (linear)")
    print("(the durable save is the shared atomic state write: temp file, fsync, rename, fsync of the directory)")
    print("load average during the run: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() + (os.cpu_count(),)))
    print("per-rule counts  log_scan: %s" % dict(zip([rule["name"] for rule in RULES], per_rule_scan)))
    print("                 grep -c:  %s  -> %s" % (dict(zip([rule["name"] for rule in RULES], per_rule_grep)),
                                                    "agree" if per_rule_scan == per_rule_grep else "DIFFER"))
    print("lines matching any rule (grep -c -E): %d; samples kept for errors: %r" % (
        grep_total, facts["rules"]["errors"]["samples"][:1]))
    if not args.skip_ansible:
        agreement = "agree" if playbook_counts == playbook_grep_counts else "DIFFER"
        print("playbook counts  log_scan: %s, grep: %s -> %s" % (playbook_counts, playbook_grep_counts, agreement))


if __name__ == "__main__":
    main()
