"""Benchmark fleetops.health.probe against its anchors, measured in the same run.

1. The module through ansible-playbook over 20, 200 and 1,000 targets, --runs times each (its own
   process, as Ansible runs it), against ansible.builtin.uri in a loop over 20 and 200 URLs once (20 and
   50 with --quick: the loop's cost per URL is flat, so its rate at 50 stands in for its rate at 200, and
   the table says so; --no-uri skips it).
2. The module's engine in-process over 1,000 targets, --runs interleaved rounds, against a bare asyncio
   raw-socket probe written here (the anchor; the same probe on uvloop is shown for reference).
3. Peak RSS of a process that probes 1,000 targets.

Rates are given as the P95 over the runs, of the seconds a run took, so the P95 rate is the slow end
(with 5 runs, the slowest run), beside the median and the range. The module's rate at 1,000 is compared
with the in-process anchor of the same run. The load average is printed at the start and the end: the
machine may be shared, and load moves every figure.

The targets are 1,000 loopback endpoints served by one process (bench/probe/loopback_server.py): 999
ports answering 200, 503 (one in ten) or 200 after 50 ms (one in ten), and one closed port.

    .venv/bin/python bench/probe/run.py [--quick] [--no-uri] [--runs N]
"""
import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

try:
    import uvloop
except ImportError:
    uvloop = None

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
        content: "{{ probed.ansible_facts.fleet_probes.summary | combine({'engine': probed.ansible_facts.fleet_probes.engine,
                     'event_loop': probed.ansible_facts.fleet_probes.event_loop | default('asyncio')}) | to_json }}"
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
    return server, ports, layout["event_loop"]


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


def p95(values):
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, int(math.ceil(0.95 * len(ordered))) - 1)]


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


class Rate(object):
    """Endpoints/s of ``runs`` runs over ``size`` targets, from the seconds each run took."""

    def __init__(self, size, seconds):
        self.size, self.seconds = size, list(seconds)

    @property
    def p95(self):
        """The rate at the P95 of the seconds: the slow end."""
        return self.size / p95(self.seconds)

    @property
    def median(self):
        return self.size / median(self.seconds)

    def spread(self):
        return "%.0f-%.0f" % (self.size / max(self.seconds), self.size / min(self.seconds))


def load_average():
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def in_process_rates(ports, runs):
    """``{variant: (wall Rate, CPU Rate)}`` over ``runs`` rounds of every variant.

    Each round runs every variant in turn, so a burst of load from elsewhere on the machine hits all of
    them alike; the CPU figure depends much less on that load.
    """
    from ansible_collections.fleetops.health.plugins.module_utils.probe_engine import ProbeEngine
    from ansible_collections.fleetops.health.plugins.module_utils.probe_targets import build_targets
    targets, _secrets = build_targets(url_targets(ports))
    variants = {ANCHOR: lambda: timed(asyncio.run, raw_socket_probe(ports, CONCURRENCY))}
    if uvloop is not None:
        variants["raw socket probe on uvloop (reference)"] = lambda: timed(
            uvloop.new_event_loop().run_until_complete, raw_socket_probe(ports, CONCURRENCY))
    variants.update([
        ("probe engine, aiohttp, auto loop", lambda: timed(ProbeEngine("aiohttp", concurrency=CONCURRENCY).run, targets)),
        ("probe engine, aiohttp, asyncio loop", lambda: timed(
            ProbeEngine("aiohttp", concurrency=CONCURRENCY, event_loop="asyncio").run, targets)),
        ("probe engine, stdlib, auto loop", lambda: timed(ProbeEngine("stdlib", concurrency=CONCURRENCY).run, targets)),
    ])
    measured = dict((name, ([], [])) for name in variants)
    for _round in range(runs):
        for name, measure in variants.items():
            wall, cpu = measure()
            measured[name][0].append(wall)
            measured[name][1].append(cpu)
    return dict((name, (Rate(len(ports), walls), Rate(len(ports), cpus))) for name, (walls, cpus) in measured.items())


ANCHOR = "raw asyncio socket probe (anchor)"


def peak_rss_kib(workdir, ports, engine):
    script = RSS_CHILD % dict(collections=DEV_COLLECTIONS, engine=engine, concurrency=CONCURRENCY,
                              targets=write_json(workdir, "rss_targets.json", url_targets(ports)))
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="uri loop over 20 and 50 only, 3 runs of the rest")
    parser.add_argument("--no-uri", action="store_true", help="skip the ansible.builtin.uri loop (minutes at 200)")
    parser.add_argument("--runs", type=int, help="runs of each probe figure (default 5, 3 with --quick)")
    args = parser.parse_args()
    uri_sizes = () if args.no_uri else (20, 50) if args.quick else (20, 200)
    runs = args.runs or (3 if args.quick else 5)
    ensure_collection_link()
    fd_limit = raise_fd_limit()
    server, ports, server_loop = start_server(max(SIZES) - 1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-probe-") as workdir:
            print("probe benchmark: %d loopback endpoints, concurrency %d, open-file limit %d, %d CPUs, server on %s"
                  % (len(ports), CONCURRENCY, fd_limit, os.cpu_count(), server_loop))
            print("load average at the start: %s" % load_average())
            print("\n1. ansible-playbook, the module in its own process (%d runs each; the uri loop once)" % runs)
            print("%-30s %7s %22s %22s %18s" % ("", "targets", "playbook endpoints/s", "module endpoints/s",
                                                "module ms"))
            print("%-30s %7s %22s %22s %18s" % ("", "", "P95 (median)", "P95 (median)", "P95 (range)"))
            uri_rates = {}
            for size in uri_sizes:
                seconds = uri_loop_via_ansible(workdir, ports[:size])
                uri_rates[size] = size / seconds
                print("%-30s %7d %22.1f %22s %18s" % ("ansible.builtin.uri loop", size, uri_rates[size], "-", "-"))
            module_rates, module_loop = {}, None
            for size in SIZES:
                walls, durations = [], []
                for _run in range(runs):
                    seconds, summary = probe_via_ansible(workdir, ports[:size])
                    walls.append(seconds)
                    durations.append(summary["duration_ms"] / 1000.0)
                    module_loop = "%s on %s" % (summary["engine"], summary["event_loop"])
                wall, own = Rate(size, walls), Rate(size, durations)
                module_rates[size] = (wall, own)
                print("%-30s %7d %13.1f (%6.1f) %13.0f (%6.0f) %7.0f (%.0f-%.0f)   (up %d, down %d)" % (
                    "fleetops.health.probe", size, wall.p95, wall.median, own.p95, own.median, p95(durations) * 1000,
                    min(durations) * 1000, max(durations) * 1000, summary["up"], summary["down"]))
            print("the module ran %s" % module_loop)
            if uri_sizes:
                anchor_size = uri_sizes[-1]
                note = "" if anchor_size == 200 else " (uri rate measured at %d URLs; the loop costs the same per URL)" % anchor_size
                print("ratio probe/uri endpoints/s at 200, playbook wall clock (P95): %.0fx%s"
                      % (module_rates[200][0].p95 / uri_rates[anchor_size], note))
                print("ratio probe/uri endpoints/s at 200, probe's own duration_ms (P95) vs the uri loop: %.0fx (goal >= 500x)"
                      % (module_rates[200][1].p95 / uri_rates[anchor_size]))

            print("\n2. in-process over %d targets (%d interleaved rounds)" % (len(ports), runs))
            rates = in_process_rates(ports, runs)
            anchor_wall, anchor_cpu = rates[ANCHOR]
            print("%-40s %12s %8s %8s %12s %16s %8s" % ("", "endpoints/s", "", "", "", "per CPU-second", ""))
            print("%-40s %12s %8s %8s %12s %16s %8s" % ("", "P95", "ratio", "median", "range", "P95", "ratio"))
            for name, (wall, cpu) in rates.items():
                print("%-40s %12.0f %7.2fx %8.0f %12s %16.0f %7.2fx" % (
                    name, wall.p95, wall.p95 / anchor_wall.p95, wall.median, wall.spread(), cpu.p95,
                    cpu.p95 / anchor_cpu.p95))
            module_1000 = module_rates[max(SIZES)][1]
            print("%-40s %12.0f %7.2fx %8.0f %12s %16s %8s" % (
                "the module's own duration_ms, part 1", module_1000.p95, module_1000.p95 / anchor_wall.p95,
                module_1000.median, module_1000.spread(), "-", "-"))
            print("goal (#16): the probe >= 3,500 endpoints/s and >= 0.75x the anchor, both at P95")

            print("\n3. peak RSS of one process probing %d targets" % len(ports))
            for engine in ("aiohttp", "stdlib"):
                before, peak, count = peak_rss_kib(workdir, ports, engine)
                print("%-34s %8.1f MiB peak (%.1f MiB after imports, %d results)"
                      % ("probe engine, " + engine, peak / 1024.0, before / 1024.0, count))
            print("\nload average at the end: %s" % load_average())
    finally:
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
