# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount table parsing and statvfs with a per-mount deadline that a hung NFS/FUSE mount cannot break."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
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
    of them are files (statting a mount point can hang, so that happens in its helper process).
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


# The statvfs helper runs in its own process. A thread stuck in statvfs on a dead NFS or FUSE mount is
# in uninterruptible sleep: it cannot be killed, and it keeps the whole process alive and every file
# descriptor of that process open, Ansible's stdout and stderr pipes included, so Ansible would wait for
# it forever (ansible/ansible#25046). A helper process that has none of our descriptors can be killed
# and abandoned instead; if it is stuck in the kernel it only holds its own pipe to us.
_STATVFS_HELPER = r"""
import json, os, stat, sys, threading
lock = threading.Lock()
def measure(index, path):
    try:
        # container engines bind-mount single files (/etc/resolv.conf, /etc/hosts): not filesystems
        if stat.S_ISDIR(os.stat(path).st_mode):
            answer = [index, "dir", list(os.statvfs(path))]
        else:
            answer = [index, "file", None]
    except OSError as exc:
        answer = [index, "error", "statvfs failed: %s" % (exc.strerror or exc)]
    with lock:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
for index, path in enumerate(sys.argv[1:]):
    threading.Thread(target=measure, args=(index, path)).start()
"""


def _start_statvfs_helper(paths):
    # -I -S: the standard library only, nothing from the environment or the current directory; cwd "/"
    # so that starting cannot touch a hung mount. stdin and stderr go to /dev/null and close_fds drops
    # everything else: the helper holds no descriptor of ours but the pipe it answers on. Not run_command:
    # that waits for the process, and a process stuck on a dead mount can never be waited for.
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", _STATVFS_HELPER] + list(paths),  # pylint: disable=ansible-bad-function
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            close_fds=True, cwd="/")


def _read_answers(helper, count, deadline):
    """``{index: (kind, payload)}`` for the mounts that answered before the deadline."""
    answers = {}
    pending = b""
    with selectors.DefaultSelector() as selector:
        selector.register(helper.stdout, selectors.EVENT_READ)
        while len(answers) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(helper.stdout.fileno(), 65536)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                index, kind, payload = json.loads(line.decode("utf-8"))
                answers[index] = (kind, payload)
    return answers


def _abandon(helper):
    """Kill the helper; if a statvfs keeps it in the kernel, leave it to init (it holds nothing of ours)."""
    if helper.poll() is None:
        helper.kill()
    helper.stdout.close()
    try:
        helper.wait(0.05)
    except subprocess.TimeoutExpired:
        pass


def measure_mounts(mounts, timeout):
    """statvfs every mount in parallel; the whole call returns within about ``timeout`` seconds.

    Each mount gets the same deadline, so N hung mounts cost ``timeout``, not N times it. The work is
    done by a helper process that is killed and abandoned at the deadline, so a mount stuck in the
    kernel cannot keep this process from exiting either. Mount points that are files are left out, and
    a block device mounted at several directories (bind mounts) is listed once, at its first one.
    """
    if not mounts:
        return []
    deadline = time.monotonic() + timeout
    try:
        helper = _start_statvfs_helper(entry["mount"] for entry in mounts)
    except OSError as exc:
        return [dict(entry, error="cannot start the statvfs helper %s: %s" % (sys.executable, exc.strerror or exc))
                for entry in mounts]
    try:
        answers = _read_answers(helper, len(mounts), deadline)
    finally:
        _abandon(helper)
    disks = []
    seen_devices = set()
    for index, entry in enumerate(mounts):
        kind, payload = answers.get(index, ("hung", None))
        disk = dict(entry)
        if kind == "hung":
            disk["error"] = "no answer to statvfs within %ss (hung network or FUSE mount?)" % timeout
        elif kind == "error":
            disk["error"] = payload
        elif kind == "file":
            continue
        else:
            if entry["device"].startswith("/"):
                if entry["device"] in seen_devices:
                    continue
                seen_devices.add(entry["device"])
            disk.update(usage_from_statvfs(os.statvfs_result(payload)))
        disks.append(disk)
    return disks
