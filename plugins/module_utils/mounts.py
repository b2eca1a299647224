# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount table parsing and statvfs with a per-mount deadline that a hung NFS/FUSE mount cannot break."""

from __future__ import annotations

import os
import stat
import threading
import time

# Pseudo and image filesystems: they say nothing about free space an operator can act on.
DEFAULT_EXCLUDE_FSTYPES = (
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fuse.lxcfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc",
    "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
)


def _unescape_mount_field(field):
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\"))


def parse_mounts(text, exclude_fstypes=DEFAULT_EXCLUDE_FSTYPES):
    """Return ``[{mount, device, fstype}]`` from /proc/self/mounts text, one entry per mount point.

    ``/`` is kept whatever its type: inside a container it is the overlay that holds the container's
    files, while other overlay mounts are the per-container layers a container host is full of.
    Bind mounts of one device stay in the list here; ``measure_mounts`` drops them once it knows which
    of them are files (statting a mount point can hang, so that happens in its worker threads).
    """
    excluded = set(exclude_fstypes)
    seen_mounts = set()
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount, fstype = _unescape_mount_field(fields[0]), _unescape_mount_field(fields[1]), fields[2]
        if (fstype in excluded and mount != "/") or mount in seen_mounts:
            continue
        seen_mounts.add(mount)
        mounts.append({"mount": mount, "device": device, "fstype": fstype})
    return mounts


def usage_from_statvfs(st):
    """Sizes the way df shows them: percent is used / (used + available to unprivileged users)."""
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    usable = used + free
    inodes_used = st.f_files - st.f_ffree
    return {
        "total": total,
        "used": used,
        "free": free,
        "percent": round(100.0 * used / usable, 1) if usable else 0.0,
        "inodes_percent": round(100.0 * inodes_used / st.f_files, 1) if st.f_files else None,
    }


class _StatvfsWorker(threading.Thread):
    """stat and statvfs of one mount point in a daemon thread: if the mount hangs, the thread is abandoned."""

    def __init__(self, path):
        super(_StatvfsWorker, self).__init__(name="statvfs %s" % path)
        self.daemon = True
        self.path = path
        self.is_directory = True
        self.result = None
        self.error = None

    def run(self):
        try:
            # container engines bind-mount single files (/etc/resolv.conf, /etc/hosts): not filesystems
            self.is_directory = stat.S_ISDIR(os.stat(self.path).st_mode)
            if self.is_directory:
                self.result = os.statvfs(self.path)
        except OSError as exc:
            self.error = "statvfs failed: %s" % (exc.strerror or exc)


def measure_mounts(mounts, timeout):
    """statvfs every mount in parallel; the whole call returns within about ``timeout`` seconds.

    Each mount gets the same deadline, so N hung mounts cost ``timeout``, not N times it. Mount points
    that are files are left out, and a block device mounted at several directories (bind mounts) is
    listed once, at its first one.
    """
    workers = [_StatvfsWorker(entry["mount"]) for entry in mounts]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout
    disks = []
    seen_devices = set()
    for entry, worker in zip(mounts, workers):
        worker.join(max(0.0, deadline - time.monotonic()))
        disk = dict(entry)
        if worker.is_alive():
            disk["error"] = "no answer to statvfs within %ss (hung network or FUSE mount?)" % timeout
        elif worker.error:
            disk["error"] = worker.error
        elif not worker.is_directory:
            continue
        else:
            if entry["device"].startswith("/"):
                if entry["device"] in seen_devices:
                    continue
                seen_devices.add(entry["device"])
            disk.update(usage_from_statvfs(worker.result))
        disks.append(disk)
    return disks
