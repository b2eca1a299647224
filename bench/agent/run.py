"""Benchmark the fleetops.health agent side by side with Debian's prometheus-node-exporter, in one run on this host.

1. steady-state RSS of each process
2. CPU of the agent sampling every 1 s, as % of one core (node_exporter idles between scrapes: also shown)
3. CPU per scrape (ms), with the number of series each one serves
4. SQLite: size after 24 h of simulated 1 s samples (with a week of rollups before them), and the time of
   the 7-day hour-of-week baseline query

    .venv/bin/python bench/agent/run.py [--quick]

The agent runs under /usr/bin/python3 with Debian's python3-psutil/-prometheus-client/-requests when they are
installed (as on a managed host), else under this Python. Prints figures; no assertions (they depend on the load).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import json

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
ENTRY = os.path.join(ROOT, "roles", "agent", "files", "fleetops_agent.py")
sys.path.insert(0, DEV_COLLECTIONS)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def ensure_dev_link():
    link = os.path.join(DEV_COLLECTIONS, "ansible_collections", "fleetops", "health")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid, "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(CLK_TCK)


def rss_bytes(pid):
    with open("/proc/%d/statm" % pid) as handle:
        return int(handle.read().split()[1]) * PAGE


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def series(text):
    return sum(1 for line in text.decode("utf-8").splitlines() if line and not line.startswith("#"))


def wait_for(url, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if b"fleetops_agent_sample_interval_seconds " in scrape(url) or b"node_" in scrape(url):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("%s did not answer within %ss" % (url, timeout))


def agent_python():
    probe = subprocess.run(["/usr/bin/python3", "-c", "import psutil, prometheus_client, requests"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return ("/usr/bin/python3", "Debian python3 + packages") if probe.returncode == 0 else (sys.executable, "venv")


def start_agent(workdir, port):
    config = os.path.join(workdir, "agent.json")
    with open(config, "w") as handle:
        json.dump({"state_dir": os.path.join(workdir, "state"), "listen_port": port, "interval": 1}, handle)
    python, label = agent_python()
    env = dict(os.environ, FLEETOPS_RUNTIME_PATH=DEV_COLLECTIONS, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([python, ENTRY, "--config", config], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(workdir, "agent.log"), "wb"), env=env)
    return proc, label


def start_node_exporter(workdir, port):
    binary = shutil.which("prometheus-node-exporter")
    if not binary:
        raise SystemExit("prometheus-node-exporter is missing: apt-get install prometheus-node-exporter "
                         "(tests/tooling/system_deps.sh)")
    return subprocess.Popen([binary, "--web.listen-address=127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "ne.log"), "wb"))


def measure_processes(quick):
    workdir = tempfile.mkdtemp(prefix="bench-agent-")
    agent_port, ne_port = free_port(), free_port()
    agent, python_label = start_agent(workdir, agent_port)
    node_exporter = start_node_exporter(workdir, ne_port)
    urls = {"agent": "http://127.0.0.1:%d/metrics" % agent_port, "node_exporter": "http://127.0.0.1:%d/metrics" % ne_port}
    pids = {"agent": agent.pid, "node_exporter": node_exporter.pid}
    results = {"python": python_label}
    try:
        for url in urls.values():
            wait_for(url)
        for url in urls.values():
            scrape(url)   # node_exporter builds its collectors on the first scrape
        time.sleep(5 if quick else 15)   # steady state
        idle_seconds = 20 if quick else 60
        before = dict((name, cpu_seconds(pid)) for name, pid in pids.items())
        started = time.monotonic()
        rss_samples = dict((name, []) for name in pids)
        while time.monotonic() - started < idle_seconds:
            for name, pid in pids.items():
                rss_samples[name].append(rss_bytes(pid))
            time.sleep(1)
        wall = time.monotonic() - started
        for name, pid in pids.items():
            results[name] = {"cpu_idle_percent": 100.0 * (cpu_seconds(pid) - before[name]) / wall,
                             "rss_mb": statistics.median(rss_samples[name]) / 1e6,
                             "rss_max_mb": max(rss_samples[name]) / 1e6}
        scrapes = 30 if quick else 100
        for name, url in urls.items():
            pid = pids[name]
            body = scrape(url)
            results[name]["series"] = series(body)
            results[name]["bytes"] = len(body)
            cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
            for _scrape in range(scrapes):
                scrape(url)
            spent = cpu_seconds(pid) - cpu_before
            wall = time.monotonic() - wall_before
            # Take out what the process spends anyway in that time (the agent's own sampling).
            background = results[name]["cpu_idle_percent"] / 100.0 * wall
            results[name]["cpu_per_scrape_ms"] = 1000.0 * max(0.0, spent - background) / scrapes
        results["agent"]["rss_after_scrapes_mb"] = rss_bytes(pids["agent"]) / 1e6
    finally:
        for proc in (agent, node_exporter):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def measure_history(quick):
    from ansible_collections.fleetops.health.plugins.module_utils import baseline
    from ansible_collections.fleetops.health.plugins.module_utils.agent_sampler import Sampler, figures_of
    from ansible_collections.fleetops.health.plugins.module_utils.history import History, history_bytes
    sampler = Sampler(slow_interval=30)
    sampler.sample()
    time.sleep(0.2)
    figures = figures_of(sampler.sample())
    workdir = tempfile.mkdtemp(prefix="bench-history-")
    path = os.path.join(workdir, "history.db")
    store = History(path)
    now = time.time()
    day = 86400 if not quick else 6 * 3600
    start_raw = now - day
    # A week of history before the raw day, one sample a minute (its minute and hour rollups are what a
    # week of 1 s samples leaves once the raw retention has passed).
    week_start = start_raw - 7 * 86400
    written = time.monotonic()
    batch = []
    for ts in range(int(week_start), int(start_raw), 60):
        batch.append((ts, figures))
    store.record_many(batch)
    for hour_start in range(int(start_raw), int(now), 3600):
        store.record_many([(ts, figures) for ts in range(hour_start, min(hour_start + 3600, int(now)))])
    write_seconds = time.monotonic() - written
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = history_bytes(path)
    counts = store.counts()
    wanted = [name for name in figures if name.partition(":")[0] in baseline.JUDGED_KINDS]
    timings = []
    for _query in range(20):
        begun = time.perf_counter()
        found = baseline.hour_of_week_baselines(store, now, figures=wanted)
        timings.append(time.perf_counter() - begun)
    store.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return {"figures": len(figures), "raw_hours": day / 3600, "rows": counts, "size_mb": size / 1e6,
            "write_seconds": write_seconds, "baseline_ms_median": 1000 * statistics.median(timings),
            "baseline_ms_max": 1000 * max(timings), "baselines_found": sum(1 for v in found.values() if "threshold" in v)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter runs (and 6 h of raw history, not 24 h)")
    args = parser.parse_args()
    ensure_dev_link()
    proc = measure_processes(args.quick)
    agent, ne = proc["agent"], proc["node_exporter"]
    print("agent (%s) vs prometheus-node-exporter, same host, same run" % proc["python"])
    print("  %-34s %12s %16s" % ("", "agent", "node_exporter"))
    print("  %-34s %12.1f %16.1f" % ("RSS steady state, median (MB)", agent["rss_mb"], ne["rss_mb"]))
    print("  %-34s %12.1f %16.1f" % ("RSS max (MB)", agent["rss_max_mb"], ne["rss_max_mb"]))
    print("  %-34s %12.2f %16.2f" % ("CPU between scrapes (% of a core)", agent["cpu_idle_percent"], ne["cpu_idle_percent"]))
    print("  %-34s %12.2f %16.2f" % ("CPU per scrape (ms)", agent["cpu_per_scrape_ms"], ne["cpu_per_scrape_ms"]))
    print("  %-34s %12d %16d" % ("series per scrape", agent["series"], ne["series"]))
    print("  %-34s %12d %16d" % ("bytes per scrape", agent["bytes"], ne["bytes"]))
    print("  agent RSS after the scrapes: %.1f MB" % agent["rss_after_scrapes_mb"])
    history = measure_history(args.quick)
    print("history: %d figures, %.0f h of 1 s samples after a week at 1/min: %s rows, %.1f MB on disk "
          "(written in %.1f s)" % (history["figures"], history["raw_hours"], history["rows"], history["size_mb"],
                                   history["write_seconds"]))
    print("7-day hour-of-week baseline query: median %.2f ms, max %.2f ms (%d baselines)"
          % (history["baseline_ms_median"], history["baseline_ms_max"], history["baselines_found"]))


if __name__ == "__main__":
    main()
