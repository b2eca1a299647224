"""Benchmark fleetops.health.probe against its anchors, measured in the same run.

1. The module through ansible-playbook over 20, 200 and 1,000 targets, against ansible.builtin.uri in a
   loop over 20 and 200 URLs (20 and 50 with --quick: the loop's cost per URL is flat, so its rate at
   50 stands in for its rate at 200, and the table says so).
2. The module's engine in-process over 1,000 targets, against a bare asyncio raw-socket probe written here.
3. Peak RSS of a process that probes 1,000 targets.

The targets are 1,000 loopback endpoints served by one process (bench/probe/loopback_server.py): 999
ports answering 200, 503 (one in ten) or 200 after 50 ms (one in ten), and one closed port.

    .venv/bin/python bench/probe/run.py [--quick]
"""
import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEV_COLLECTIONS = os.path.join(ROOT, ".cache", "dev-collections")
BIN = os.path.dirname(sys.executable)
CONCURRENCY = 200
SIZES = (20, 200, 1000)

PROBE_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - fleetops.health.probe:
        targets: "{{ lookup('file', '%(targets)s') | from_json }}"
        concurrency: %(concurrency)d
        deadline: 60
      register: probed
    - ansible.builtin.copy:
        content: "{{ probed.ansible_facts.fleet_probes.summary | to_json }}"
        dest: "%(summary)s"
        mode: "0600"
"""

URI_PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.uri:
        url: "{{ item }}"
        status_code: [200, 503]
        timeout: 5
      loop: "{{ lookup('file', '%(urls)s') | from_json }}"
      ignore_errors: true
"""

# VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork+exec and would report the parent's peak.
RSS_CHILD = """
import json, sys
sys.path.insert(0, %(collections)r)
from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ProbeEngine
from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import build_targets
def peak_kib():
    with open("/proc/self/status") as status:
        return int([line for line in status if line.startswith("VmHWM:")][0].split()[1])
targets, _ = build_targets(json.load(open(%(targets)r)))
baseline = peak_kib()
results, _ = ProbeEngine(%(engine)r, concurrency=%(concurrency)d).run(targets)
print(json.dumps([baseline, peak_kib(), len(results)]))
"""


def ensure_collection_link():
    link = os.path.join(DEV_COLLECTIONS, "ansible_collections", "fleetops", "health")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    sys.path.insert(0, DEV_COLLECTIONS)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_server(count):
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "loopback_server.py"), str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if not line:
        sys.exit("the loopback server did not start (exit status %s); see its message above" % server.wait())
    layout = json.loads(line)
    # The closed port goes third, so every size includes one refused target.
    ports = layout["ports"][:2] + [layout["closed_port"]] + layout["ports"][2:]
    return server, ports


def ansible_env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=DEV_COLLECTIONS + ":" + os.path.join(ROOT, ".cache", "collections"))


def run_playbook(workdir, text):
    path = os.path.join(workdir, "play.yml")
    with open(path, "w") as handle:
        handle.write(text)
    started = time.monotonic()
    subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                    "-e", "ansible_python_interpreter=" + sys.executable, path],
                   cwd=ROOT, env=ansible_env(), check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def write_json(workdir, name, data):
    path = os.path.join(workdir, name)
    with open(path, "w") as handle:
        json.dump(data, handle)
    return path


def url_targets(ports):
    return [{"name": "ep%d" % port, "url": "http://127.0.0.1:%d/" % port} for port in ports]


def probe_via_ansible(workdir, ports):
    summary_path = os.path.join(workdir, "summary.json")
    seconds = run_playbook(workdir, PROBE_PLAY % dict(
        targets=write_json(workdir, "targets.json", url_targets(ports)), summary=summary_path, concurrency=CONCURRENCY))
    with open(summary_path) as handle:
        return seconds, json.load(handle)


def uri_loop_via_ansible(workdir, ports):
    urls = ["http://127.0.0.1:%d/" % port for port in ports]
    return run_playbook(workdir, URI_PLAY % dict(urls=write_json(workdir, "urls.json", urls)))


async def raw_socket_probe(ports, concurrency):
    """The floor: connect, send a minimal GET, read the status line, close. No HTTP client at all."""
    gate = asyncio.Semaphore(concurrency)

    async def one(port):
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except OSError:
                return None
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            return int(status.split()[1])

    return await asyncio.gather(*[one(port) for port in ports])


def timed(function, *args):
    """Return ``(wall seconds, CPU seconds of this process)`` of one call."""
    started, cpu_started = time.monotonic(), time.process_time()
    function(*args)
    return time.monotonic() - started, time.process_time() - cpu_started


def in_process_rates(ports, repeats):
    """Best endpoints/s (wall clock and per CPU-second) of each variant over ``repeats`` rounds.

    Each round runs every variant in turn, so a burst of load from elsewhere on the machine hits all of
    them alike; the CPU figure does not depend on that load at all.
    """
    from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ProbeEngine
    from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import build_targets
    targets, _secrets = build_targets(url_targets(ports))
    variants = {
        "raw asyncio socket probe (anchor)": lambda: timed(asyncio.run, raw_socket_probe(ports, CONCURRENCY)),
        "probe engine, aiohttp": lambda: timed(ProbeEngine("aiohttp", concurrency=CONCURRENCY).run, targets),
        "probe engine, stdlib": lambda: timed(ProbeEngine("stdlib", concurrency=CONCURRENCY).run, targets),
    }
    rates = dict((name, (0.0, 0.0)) for name in variants)
    for _round in range(repeats):
        for name, measure in variants.items():
            wall, cpu = measure()
            rates[name] = (max(rates[name][0], len(ports) / wall), max(rates[name][1], len(ports) / cpu))
    return rates


def peak_rss_kib(workdir, ports, engine):
    script = RSS_CHILD % dict(collections=DEV_COLLECTIONS, engine=engine, concurrency=CONCURRENCY,
                              targets=write_json(workdir, "rss_targets.json", url_targets(ports)))
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="about 30-40 s: uri loop over 20 and 50, one repeat")
    args = parser.parse_args()
    uri_sizes = (20, 50) if args.quick else (20, 200)
    repeats = 2 if args.quick else 5
    ensure_collection_link()
    fd_limit = raise_fd_limit()
    server, ports = start_server(max(SIZES) - 1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-probe-") as workdir:
            print("probe benchmark: %d loopback endpoints, concurrency %d, open-file limit %d, %d CPUs"
                  % (len(ports), CONCURRENCY, fd_limit, os.cpu_count()))
            print("\n1. one ansible-playbook run each (wall clock, ansible start-up included)")
            print("%-34s %8s %10s %14s %12s" % ("", "targets", "seconds", "endpoints/s", "module ms"))
            uri_rates = {}
            for size in uri_sizes:
                seconds = uri_loop_via_ansible(workdir, ports[:size])
                uri_rates[size] = size / seconds
                print("%-34s %8d %10.2f %14.1f %12s" % ("ansible.builtin.uri loop (anchor)", size, seconds, uri_rates[size], "-"))
            probe_rates = {}
            for size in SIZES:
                seconds, summary = probe_via_ansible(workdir, ports[:size])
                probe_rates[size] = (size / seconds, size / (summary["duration_ms"] / 1000.0))
                print("%-34s %8d %10.2f %14.1f %12.1f   (up %d, down %d)" % (
                    "fleetops.health.probe", size, seconds, probe_rates[size][0], summary["duration_ms"],
                    summary["up"], summary["down"]))
            anchor_size = uri_sizes[-1]
            note = "" if anchor_size == 200 else " (uri rate measured at %d URLs; the loop costs the same per URL)" % anchor_size
            print("ratio probe/uri endpoints/s at 200, playbook wall clock: %.0fx%s"
                  % (probe_rates[200][0] / uri_rates[anchor_size], note))
            print("ratio probe/uri endpoints/s at 200, probe's own duration_ms vs the uri loop: %.0fx (goal >= 500x)"
                  % (probe_rates[200][1] / uri_rates[anchor_size]))

            print("\n2. in-process over %d targets (best of %d interleaved rounds)" % (len(ports), repeats))
            rates = in_process_rates(ports, repeats)
            anchor_wall, anchor_cpu = rates["raw asyncio socket probe (anchor)"]
            print("%-34s %14s %8s %18s %8s" % ("", "endpoints/s", "ratio", "per CPU-second", "ratio"))
            for name, (wall, cpu) in rates.items():
                print("%-34s %14.0f %7.2fx %18.0f %7.2fx" % (name, wall, wall / anchor_wall, cpu, cpu / anchor_cpu))
            print("goal: probe engine >= 0.5x the anchor and >= 2,000 endpoints/s")

            print("\n3. peak RSS of one process probing %d targets" % len(ports))
            for engine in ("aiohttp", "stdlib"):
                before, peak, count = peak_rss_kib(workdir, ports, engine)
                print("%-34s %8.1f MiB peak (%.1f MiB after imports, %d results)"
                      % ("probe engine, " + engine, peak / 1024.0, before / 1024.0, count))
    finally:
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
