# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's sampling: the collectors host_resources runs, once per interval, with an adaptive interval.

Cheap sections (cpu, load, memory, swap, io, network) are read every interval, with rates from the counter
delta since the previous sample (``HostResources.collect_since``). Mounts and failed units cost a helper
process or a systemctl call, so they are read every ``slow_interval`` and carried between.
"""

from __future__ import annotations

import time

from ansible_collections.fleetops.health.plugins.module_utils.collectors import HostResources

FAST_SUBSET = ("cpu", "load", "memory", "swap", "io", "network")
SLOW_SUBSET = ("disk", "units", "cgroup")


def figures_of(facts):
    """``{figure: value}`` from fleet_resources-shaped facts: percents, loads, and bytes/s per interface."""
    figures = {}
    cpu = facts.get("cpu") or {}
    for name, value in (("cpu", cpu.get("percent")), ("iowait", cpu.get("iowait"))):
        if value is not None:
            figures[name] = float(value)
    for name in ("memory", "swap"):
        value = (facts.get(name) or {}).get("percent")
        if value is not None and not (name == "swap" and not (facts.get("swap") or {}).get("total")):
            figures[name] = float(value)
    load = facts.get("load") or {}
    for minutes in ("1", "5", "15"):
        if load.get(minutes) is not None:
            figures["load" + minutes] = float(load[minutes])
    for disk in facts.get("disks") or []:
        if disk.get("error") or not disk.get("mount"):
            continue
        if disk.get("percent") is not None:
            figures["disk:" + disk["mount"]] = float(disk["percent"])
        if disk.get("inodes_percent") is not None:
            figures["inodes:" + disk["mount"]] = float(disk["inodes_percent"])
    for link in facts.get("network") or []:
        if link.get("interface"):
            figures["net_rx:" + link["interface"]] = float(link["rx_bps"])
            figures["net_tx:" + link["interface"]] = float(link["tx_bps"])
    return figures


class AdaptiveInterval(object):
    """The wait before the next sample: ``base``, or ``tight`` for ``hold`` seconds after a watched figure
    moved by more than ``step`` between two samples (a sudden CPU burner, a memory spike)."""

    def __init__(self, base, tight, step, hold, watch):
        self.base = base
        self.tight = tight
        self.step = step
        self.hold = hold
        self.watch = list(watch)
        self._last = {}
        self.tight_until = None
        self.trigger = None

    def update(self, figures, now):
        """Feed one sample's figures; return the interval to wait now."""
        for name in self.watch:
            value = figures.get(name)
            if value is None:
                continue
            previous = self._last.get(name)
            self._last[name] = value
            if previous is not None and abs(value - previous) > self.step:
                self.tight_until = now + self.hold
                self.trigger = "%s moved %.1f -> %.1f" % (name, previous, value)
        return self.current(now)

    def current(self, now):
        if self.tight_until is not None and now < self.tight_until:
            return self.tight
        return self.base


class Sampler(object):
    """Takes one sample: fresh fast sections, slow sections when due, rates against the previous counters."""

    def __init__(self, slow_interval, mount_timeout=2.0, clock=time.monotonic, proc_root="/proc", sys_root="/sys",
                 systemctl_path=None):
        self.fast = HostResources(window=0, subset=FAST_SUBSET, proc_root=proc_root, sys_root=sys_root)
        self.slow = HostResources(window=0, subset=SLOW_SUBSET, mount_timeout=mount_timeout,
                                  systemctl_path=systemctl_path, proc_root=proc_root, sys_root=sys_root)
        self.slow_interval = slow_interval
        self.clock = clock
        self._counters = None
        self._slow_facts = {}
        self._slow_at = None

    def sample(self):
        """Return fleet_resources-shaped facts (no verdict); the first has no rates (cpu percent None)."""
        facts, self._counters = self.fast.collect_since(self._counters)
        now = self.clock()
        if self._slow_at is None or now - self._slow_at >= self.slow_interval:
            slow, _counters = self.slow.collect_since(None)
            self._slow_facts = dict((key, slow[key]) for key in ("disks", "units", "cgroup") if key in slow)
            self._slow_at = now
        facts.update(self._slow_facts)
        return facts
