# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cgroup limits of the scope the host sees (the container itself, inside a container), v1 or v2."""

from __future__ import annotations

import os

# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value; anything this large is unlimited.
_V1_UNLIMITED = 1 << 60


def _read(path):
    with open(path) as handle:
        return handle.read().strip()


def _read_int_or_none(path, unlimited_words=("max",)):
    """An integer from a one-value cgroup file; ``None`` when the file says unlimited or is absent.

    Only absence means "no such limit"; a file that exists but cannot be read raises, and the whole
    section becomes an error entry rather than a silent "unlimited".
    """
    try:
        value = _read(path)
    except FileNotFoundError:
        return None
    if value in unlimited_words or value == "-1":
        return None
    number = int(value)
    return None if number >= _V1_UNLIMITED else number


def _limits(memory_limit, memory_usage, cpu_quota_cores, pids_limit, pids_current, version):
    memory_percent = None
    if memory_limit and memory_usage is not None:
        memory_percent = round(100.0 * memory_usage / memory_limit, 1)
    return {
        "version": version,
        "memory_limit": memory_limit,
        "memory_usage": memory_usage,
        "memory_percent": memory_percent,
        "cpu_quota_cores": None if cpu_quota_cores is None else round(cpu_quota_cores, 2),
        "pids_limit": pids_limit,
        "pids_current": pids_current,
    }


def read_cgroup_v2(root):
    """Limits at the root of a unified hierarchy (a container's own cgroup under a cgroup namespace)."""
    cpu_quota_cores = None
    try:
        quota, period = _read(os.path.join(root, "cpu.max")).split()
        if quota != "max":
            cpu_quota_cores = float(quota) / float(period)
    except FileNotFoundError:
        pass  # the root cgroup has no cpu.max
    # The true root cgroup has no memory.max or memory.current: both stay None (no limit to report).
    return _limits(
        _read_int_or_none(os.path.join(root, "memory.max")),
        _read_int_or_none(os.path.join(root, "memory.current")),
        cpu_quota_cores,
        _read_int_or_none(os.path.join(root, "pids.max")),
        _read_int_or_none(os.path.join(root, "pids.current")),
        2,
    )


def _v1_controller_dir(root, controller):
    """The directory of a v1 controller, also when it is co-mounted as e.g. ``cpu,cpuacct``."""
    direct = os.path.join(root, controller)
    if os.path.isdir(direct):
        return direct
    for name in sorted(os.listdir(root)):
        if controller in name.split(","):
            return os.path.join(root, name)
    return None


def read_cgroup_v1(root):
    memory_dir = _v1_controller_dir(root, "memory")
    cpu_dir = _v1_controller_dir(root, "cpu")
    pids_dir = _v1_controller_dir(root, "pids")
    cpu_quota_cores = None
    if cpu_dir:
        quota = _read_int_or_none(os.path.join(cpu_dir, "cpu.cfs_quota_us"))
        period = _read_int_or_none(os.path.join(cpu_dir, "cpu.cfs_period_us"))
        if quota and period:
            cpu_quota_cores = float(quota) / period
    return _limits(
        _read_int_or_none(os.path.join(memory_dir, "memory.limit_in_bytes")) if memory_dir else None,
        _read_int_or_none(os.path.join(memory_dir, "memory.usage_in_bytes")) if memory_dir else None,
        cpu_quota_cores,
        _read_int_or_none(os.path.join(pids_dir, "pids.max")) if pids_dir else None,
        _read_int_or_none(os.path.join(pids_dir, "pids.current")) if pids_dir else None,
        1,
    )


def read_cgroup(root="/sys/fs/cgroup"):
    """Return the limits, or ``{"error": ...}`` when no cgroup hierarchy can be read.

    A root holding ``cgroup.controllers`` is unified (v2). Otherwise it is v1, or hybrid, where the v1
    controllers carry the limits and ``unified/`` only tracks processes.
    """
    try:
        if os.path.isfile(os.path.join(root, "cgroup.controllers")):
            return read_cgroup_v2(root)
        if os.path.isdir(root) and _v1_controller_dir(root, "memory"):
            return read_cgroup_v1(root)
        return {"error": "no cgroup hierarchy found at %s" % root}
    except (IOError, OSError, ValueError) as exc:
        return {"error": "cannot read cgroup limits under %s: %s" % (root, exc)}
