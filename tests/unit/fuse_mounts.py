# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real FUSE mount (fusepy, libfuse2) whose statfs does not answer while its server stays alive.

To the kernel this is what a dead NFS server looks like: statvfs on the mount point waits in
``request_wait_answer``, and a thread waiting there cannot be killed until the server answers or goes.
Root, /dev/fuse and fusermount are needed; ``hung_fuse_mount`` skips the calling test without them.

Other processes on the machine see the mount while it exists, so keep it short-lived.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

SLOW_STATFS_SERVER = textwrap.dedent("""
    import errno, stat, sys, threading
    from fuse import FUSE, FuseOSError, Operations

    class SlowStatfs(Operations):
        def getattr(self, path, fh=None):
            if path == "/":
                return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
            raise FuseOSError(errno.ENOENT)

        def readdir(self, path, fh):
            return [".", ".."]

        def statfs(self, path):
            # a dead NFS server, as seen by statvfs; a negative delay never answers
            delay = float(sys.argv[2])
            threading.Event().wait(None if delay < 0 else delay)
            return dict(f_bsize=4096, f_frsize=4096, f_blocks=100, f_bfree=50, f_bavail=50, f_files=10, f_ffree=5)

    FUSE(SlowStatfs(), sys.argv[1], foreground=True, fsname="fleetops_slowfs")
""")


def is_mounted(mountpoint):
    with open("/proc/self/mounts") as handle:
        return " %s fuse" % mountpoint in handle.read()


@contextlib.contextmanager
def hung_fuse_mount(directory, statfs_delay=-1):
    """Mount under ``directory``; statfs answers after ``statfs_delay`` seconds, or never when it is negative.

    Yields the mount point. On exit the server is killed (which ends every statfs still waiting, so
    abandoned helpers and threads go too) and the mount is detached with ``fusermount -u -z``.
    """
    pytest.importorskip("fuse", reason="fusepy (requirements/test.txt) is needed for the hung-mount tests")
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount"):
        pytest.skip("no /dev/fuse or fusermount on this machine")
    mountpoint = os.path.join(str(directory), "hung")
    os.mkdir(mountpoint)
    script = os.path.join(str(directory), "slowfs.py")
    with open(script, "w") as handle:
        handle.write(SLOW_STATFS_SERVER)
    server = subprocess.Popen([sys.executable, script, mountpoint, str(statfs_delay)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not is_mounted(mountpoint):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("FUSE mount did not appear (server exit code %s)" % server.poll())
            time.sleep(0.05)
        yield mountpoint
    finally:
        server.kill()
        server.wait()
        subprocess.run(["fusermount", "-u", "-z", mountpoint], stderr=subprocess.DEVNULL, check=False)
