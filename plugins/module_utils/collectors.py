# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host resource collectors: two counter samples a window apart, rates from their difference, compact facts.

Public: other collections' code may sample with the same functions. Everything here reads /proc, /sys and psutil;
nothing writes. Every reader that can fail on a host turns into an ``error`` entry for its section.
"""

from __future__ import annotations

import os
import time
import traceback

from ansible_collections.fleetops.health.plugins.module_utils import cgroup as cgroup_reader
from ansible_collections.fleetops.health.plugins.module_utils import mounts as mount_reader
from ansible_collections.fleetops.health.plugins.module_utils import scoring
from ansible_collections.fleetops.health.plugins.module_utils import systemd_units

try:
    import psutil
except ImportError:
    psutil = None
    PSUTIL_IMPORT_ERROR = traceback.format_exc()
else:
    PSUTIL_IMPORT_ERROR = None

SUBSETS = ("cpu", "load", "memory", "swap", "disk", "io", "network", "connections", "processes", "cgroup", "units")
DEFAULT_SUBSET = tuple(name for name in SUBSETS if name != "connections")
UNITS_TIMEOUT = 5.0
# Not whole disks: their I/O is already counted on the device underneath or is RAM.
_VIRTUAL_BLOCK_PREFIXES = ("loop", "ram", "zram", "fd", "sr")
_TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1", "05": "fin_wait2",
    "06": "time_wait", "07": "close", "08": "close_wait", "09": "last_ack", "0A": "listen", "0B": "closing",
}


class CollectorError(Exception):
    """A bad option; the message names it."""


def _read_text(path):
    with open(path) as handle:
        return handle.read()


# ---------------------------------------------------------------- processes (straight from /proc, one read per pid)

def parse_pid_stat(data):
    """``(name, state, cpu_ticks, start_ticks, rss_pages)`` from /proc/<pid>/stat bytes; the name may hold ')'."""
    open_paren = data.index(b"(")
    close_paren = data.rindex(b")")
    fields = data[close_paren + 2:].split()
    # After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return (data[open_paren + 1:close_paren].decode("utf-8", "replace"), fields[0].decode("ascii"),
            int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[21]))


def _read_small_file(path):
    # os.open/os.read: a third of the cost of open().read() per file, and a host has hundreds of pids.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def read_process_table(proc_root="/proc"):
    """``{(pid, start_ticks): (pid, name, state, cpu_ticks, rss_pages)}``; (pid, start) survives pid reuse."""
    table = {}
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        try:
            name, state, ticks, start, rss = parse_pid_stat(_read_small_file(os.path.join(proc_root, entry, "stat")))
        except (IOError, OSError, ValueError, IndexError):
            continue  # the process exited between listdir and open
        table[(int(entry), start)] = (int(entry), name, state, ticks, rss)
    return table


def summarize_processes(before, after, elapsed, top, clk_tck, page_size):
    """Counts and the top lists; cpu % is per core like top (one busy core is 100)."""
    rows = []
    for key, (pid, name, state, ticks, rss) in after.items():
        cpu_percent = None
        if before is not None and elapsed > 0:
            previous = before.get(key)
            delta = ticks - previous[3] if previous else ticks
            cpu_percent = round(100.0 * delta / clk_tck / elapsed, 1)
        rows.append({"pid": pid, "name": name, "cpu_percent": cpu_percent, "rss": rss * page_size, "_state": state})
    states = [row.pop("_state") for row in rows]
    by_memory = sorted(rows, key=lambda row: -row["rss"])[:top]
    by_cpu = None
    if before is not None:
        by_cpu = sorted(rows, key=lambda row: (-row["cpu_percent"], -row["rss"]))[:top]
    return {
        "total": len(rows),
        "running": states.count("R"),
        "zombies": states.count("Z"),
        "top_cpu": by_cpu,
        "top_memory": by_memory,
    }


# ---------------------------------------------------------------- connections (/proc/net, not psutil.net_connections)

def parse_sockstat(text):
    """``{"TCP": {"inuse": 3, ...}, "UDP": {...}}`` from /proc/net/sockstat or sockstat6."""
    sections = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        label, rest = line.split(":", 1)
        values = rest.split()
        sections[label.strip()] = dict((values[i], int(values[i + 1])) for i in range(0, len(values) - 1, 2))
    return sections


def count_tcp_states(text):
    """State counts from /proc/net/tcp or tcp6 (column 4 is the state in hex)."""
    counts = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3:
            state = _TCP_STATES.get(fields[3], fields[3])
            counts[state] = counts.get(state, 0) + 1
    return counts


def read_connections(net_root="/proc/net"):
    sockstat = parse_sockstat(_read_text(os.path.join(net_root, "sockstat")))
    try:
        sockstat6 = parse_sockstat(_read_text(os.path.join(net_root, "sockstat6")))
    except (IOError, OSError):
        sockstat6 = {}  # IPv6 disabled
    tcp = sockstat.get("TCP", {})
    states = {}
    for name in ("tcp", "tcp6"):
        try:
            text = _read_text(os.path.join(net_root, name))
        except (IOError, OSError):
            continue
        for state, count in count_tcp_states(text).items():
            states[state] = states.get(state, 0) + count
    return {
        "tcp_inuse": tcp.get("inuse", 0) + sockstat6.get("TCP6", {}).get("inuse", 0),
        "tcp_orphan": tcp.get("orphan", 0),
        "tcp_time_wait": tcp.get("tw", 0),
        "udp_inuse": sockstat.get("UDP", {}).get("inuse", 0) + sockstat6.get("UDP6", {}).get("inuse", 0),
        "tcp_states": states,
    }


# ---------------------------------------------------------------- rate math on psutil counters

def cpu_percentages(before, after, cores):
    """Busy, user, system, iowait and steal % of all cores between two ``psutil.cpu_times()`` samples."""
    delta = dict((field, getattr(after, field) - getattr(before, field)) for field in after._fields)
    # guest time is already inside user and nice.
    total = sum(value for field, value in delta.items() if field not in ("guest", "guest_nice"))
    if total <= 0:
        return {"cores": cores, "percent": 0.0, "user": 0.0, "system": 0.0, "iowait": 0.0, "steal": 0.0}

    def share(*fields):
        return round(100.0 * sum(delta.get(field, 0.0) for field in fields) / total, 1)

    return {
        "cores": cores,
        "percent": round(100.0 - share("idle", "iowait"), 1),
        "user": share("user", "nice"),
        "system": share("system", "irq", "softirq"),
        "iowait": share("iowait"),
        "steal": share("steal"),
    }


def _per_second(after, before, elapsed):
    return round(max(0, after - before) / elapsed, 1)


def _paired(before, after, keep):
    """``(name, old, new)`` for each device in both samples that ``keep`` accepts, by name."""
    for name in sorted(after):
        if name in before and keep(name):
            yield name, before[name], after[name]


def io_rates(before, after, elapsed, whole_disks=None):
    """One entry per whole disk from two ``psutil.disk_io_counters(perdisk=True)`` samples."""
    devices = []
    for name, old, new in _paired(before, after, lambda name: whole_disks is None or name in whole_disks):
        entry = {
            "device": name,
            "read_bps": _per_second(new.read_bytes, old.read_bytes, elapsed),
            "write_bps": _per_second(new.write_bytes, old.write_bytes, elapsed),
            "read_iops": _per_second(new.read_count, old.read_count, elapsed),
            "write_iops": _per_second(new.write_count, old.write_count, elapsed),
            "busy_percent": None,
        }
        if hasattr(new, "busy_time"):
            entry["busy_percent"] = min(100.0, round(100.0 * max(0, new.busy_time - old.busy_time) / (elapsed * 1000.0), 1))
        devices.append(entry)
    return devices


def network_rates(before, after, elapsed, speeds_mbps=None, up=None):
    """One entry per interface from two ``psutil.net_io_counters(pernic=True)`` samples.

    Loopback is left out, and so are interfaces not in ``up`` (when given): a host with a hundred idle
    veths should not carry a hundred zero entries in every later task's variables.
    """
    interfaces = []
    for name, old, new in _paired(before, after, lambda name: name != "lo" and (up is None or name in up)):
        entry = {
            "interface": name,
            "rx_bps": _per_second(new.bytes_recv, old.bytes_recv, elapsed),
            "tx_bps": _per_second(new.bytes_sent, old.bytes_sent, elapsed),
            "rx_pps": _per_second(new.packets_recv, old.packets_recv, elapsed),
            "tx_pps": _per_second(new.packets_sent, old.packets_sent, elapsed),
            "errors_ps": _per_second(new.errin + new.errout, old.errin + old.errout, elapsed),
            "drops_ps": _per_second(new.dropin + new.dropout, old.dropin + old.dropout, elapsed),
            "util_percent": None,
        }
        speed = (speeds_mbps or {}).get(name)
        if speed:
            busiest_direction = max(entry["rx_bps"], entry["tx_bps"]) * 8.0
            entry["util_percent"] = min(100.0, round(100.0 * busiest_direction / (speed * 1e6), 1))
        interfaces.append(entry)
    return interfaces


def whole_disk_names(sys_block="/sys/block"):
    """Block devices that are disks, not partitions, loops or RAM; ``None`` when /sys/block is unreadable."""
    try:
        names = os.listdir(sys_block)
    except OSError:
        return None
    return set(name for name in names if not name.startswith(_VIRTUAL_BLOCK_PREFIXES))


# ---------------------------------------------------------------- the one-call snapshot

def _section(sections, name, reader, as_list=False):
    """Run one reader; a missing /proc file or a refused read becomes an ``error`` entry, not a failure."""
    try:
        sections[name] = reader()
    except (IOError, OSError, ValueError, KeyError, RuntimeError) as exc:
        error = {"error": "%s: %s" % (name, exc)}
        sections[name] = [error] if as_list else error


class _ReadFailure(object):
    """A counter read that failed; raised again where its section is computed, to become that section's error."""

    def __init__(self, exc):
        self.exc = exc


def _read_counter(reader):
    try:
        return reader()
    except (IOError, OSError, RuntimeError) as exc:
        return _ReadFailure(exc)


def _counter(value):
    if isinstance(value, _ReadFailure):
        raise value.exc
    return value


class _CounterSample(object):
    """The counters that rates need, read at one instant; only those the subset asks for."""

    def __init__(self, subset, proc_root):
        self.time = time.monotonic()
        self.cpu = _read_counter(psutil.cpu_times) if "cpu" in subset else None
        self.disk_io = _read_counter(lambda: psutil.disk_io_counters(perdisk=True)) if "io" in subset else None
        self.net_io = _read_counter(lambda: psutil.net_io_counters(pernic=True)) if "network" in subset else None
        self.processes = _read_counter(lambda: read_process_table(proc_root)) if "processes" in subset else None


class HostResources(object):
    """Validates the options once, then ``collect()`` returns the fleet_resources facts."""

    def __init__(self, window=0.2, subset=None, top=5, mount_timeout=2.0, exclude_fstypes=None,
                 thresholds=None, weights=None, systemctl_path=None, proc_root="/proc", sys_root="/sys"):
        subset = list(DEFAULT_SUBSET if subset is None else subset)
        unknown = [name for name in subset if name not in SUBSETS]
        if unknown:
            raise CollectorError("subset: unknown name(s) %s; use any of %s" % (", ".join(unknown), ", ".join(SUBSETS)))
        if window is None or window < 0:
            raise CollectorError("window must be 0 or more seconds, got %s" % window)
        if top is None or top < 0:
            raise CollectorError("top must be 0 or more, got %s" % top)
        if mount_timeout is None or mount_timeout <= 0:
            raise CollectorError("mount_timeout must be above 0 seconds, got %s" % mount_timeout)
        try:
            self.thresholds = scoring.merge_thresholds(thresholds)
            self.weights = scoring.merge_weights(weights)
        except ValueError as exc:
            raise CollectorError(str(exc))
        self.window = float(window)
        self.subset = set(subset)
        self.top = top
        self.mount_timeout = float(mount_timeout)
        self.exclude_fstypes = mount_reader.DEFAULT_EXCLUDE_FSTYPES if exclude_fstypes is None else exclude_fstypes
        self.systemctl_path = systemctl_path
        self.proc_root = proc_root
        self.sys_root = sys_root

    def _read_disks(self):
        table = mount_reader.parse_mounts(_read_text(os.path.join(self.proc_root, "self", "mounts")), self.exclude_fstypes)
        return mount_reader.measure_mounts(table, self.mount_timeout)

    def _read_memory(self):
        memory = psutil.virtual_memory()
        used = memory.total - memory.available
        return {"total": memory.total, "available": memory.available, "used": used,
                "percent": round(100.0 * used / memory.total, 1) if memory.total else 0.0}

    def _read_swap(self):
        swap = psutil.swap_memory()
        return {"total": swap.total, "available": swap.free, "used": swap.used, "percent": round(swap.percent, 1)}

    def _read_load(self):
        cores = psutil.cpu_count() or 1
        one, five, fifteen = os.getloadavg()
        return {"1": round(one, 2), "5": round(five, 2), "15": round(fifteen, 2),
                "per_core_1": round(one / cores, 2), "per_core_5": round(five / cores, 2), "per_core_15": round(fifteen / cores, 2)}

    def _read_instant_sections(self, facts):
        """The sections that need no second sample; they run inside the window, so it is not dead time."""
        readers = (
            ("disk", "disks", self._read_disks, True),
            ("memory", "memory", self._read_memory, False),
            ("swap", "swap", self._read_swap, False),
            ("load", "load", self._read_load, False),
            ("connections", "connections", lambda: read_connections(os.path.join(self.proc_root, "net")), False),
            ("cgroup", "cgroup", lambda: cgroup_reader.read_cgroup(os.path.join(self.sys_root, "fs", "cgroup")), False),
            ("units", "units", lambda: systemd_units.failed_units(self.systemctl_path, UNITS_TIMEOUT), False),
        )
        for subset_name, key, reader, as_list in readers:
            if subset_name in self.subset:
                _section(facts, key, reader, as_list)

    def _rate_sections(self, facts, first, second):
        """Sections from the two samples; with no first sample (window 0) the rates are None."""
        elapsed = second.time - first.time if first else 0.0
        if "cpu" in self.subset:
            cores = psutil.cpu_count() or 1
            if first:
                _section(facts, "cpu", lambda: cpu_percentages(_counter(first.cpu), _counter(second.cpu), cores))
            else:
                facts["cpu"] = {"cores": cores, "percent": None, "user": None, "system": None, "iowait": None, "steal": None}
        if "io" in self.subset:
            facts["io"] = None
            if first:
                whole_disks = whole_disk_names(os.path.join(self.sys_root, "block"))
                _section(facts, "io", lambda: io_rates(_counter(first.disk_io) or {}, _counter(second.disk_io) or {},
                                                       elapsed, whole_disks), as_list=True)
        if "network" in self.subset:
            facts["network"] = None
            if first:
                _section(facts, "network", lambda: self._network(first, second, elapsed), as_list=True)
        if "processes" in self.subset:
            _section(facts, "processes", lambda: summarize_processes(
                _counter(first.processes) if first else None, _counter(second.processes), elapsed, self.top,
                os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")))

    @staticmethod
    def _network(first, second, elapsed):
        link_stats = psutil.net_if_stats()
        speeds = dict((name, stats.speed) for name, stats in link_stats.items())
        up = set(name for name, stats in link_stats.items() if stats.isup)
        return network_rates(_counter(first.net_io), _counter(second.net_io), elapsed, speeds, up)

    def sample_counters(self):
        """The counters that rates need, read now. The agent keeps the last one between its samples."""
        return _CounterSample(self.subset, self.proc_root)

    def collect_since(self, previous):
        """The agent's form of ``collect``: rates against ``previous`` (a ``sample_counters()``, or None for no
        rates) without sleeping, and no verdict. Returns ``(facts, counters)``; pass ``counters`` next time."""
        facts = {"window": (time.monotonic() - previous.time) if previous else 0.0, "subset": sorted(self.subset)}
        self._read_instant_sections(facts)
        counters = _CounterSample(self.subset, self.proc_root)
        self._rate_sections(facts, previous, counters)
        return facts, counters

    def collect(self):
        facts = {"window": self.window, "subset": sorted(self.subset)}
        first = None
        if self.window > 0:
            first = _CounterSample(self.subset, self.proc_root)
        self._read_instant_sections(facts)
        if first:
            remaining = self.window - (time.monotonic() - first.time)
            if remaining > 0:
                time.sleep(remaining)
        second = _CounterSample(self.subset, self.proc_root)
        self._rate_sections(facts, first, second)
        facts["uptime"] = int(time.time() - psutil.boot_time())
        facts["verdict"], facts["reasons"] = scoring.evaluate(facts, self.thresholds)
        facts["score"] = scoring.load_score(facts, self.weights)
        return facts
