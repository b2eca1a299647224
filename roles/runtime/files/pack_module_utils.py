# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the collection's module_utils into one tar on the controller; print its path.

The tar holds ``ansible_collections/fleetops/health/plugins/module_utils/*.py`` with an ``__init__.py`` at each
level: regular packages all the way down, so with the prefix first on sys.path this tree wins over any
ansible_collections namespace elsewhere on the host.

Run by the runtime role with the controller's Python. The tar is deterministic (sorted names, fixed
owner, mode and time), so unarchive on the host reports a change only when a file's content changed, and
its name carries its digest, so a second run (or another host) reuses it. One transfer instead of one
copy task per file: that took minutes for the whole tree over ssh.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile

# A fixed time for every file: the content decides; the host compiles with checked-hash .pyc files.
FIXED_MTIME = 1767225600


PACKAGE = "ansible_collections/fleetops/health/plugins/module_utils"


def _info(name, directory=False, size=0):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size, info.mtime, info.mode = size, FIXED_MTIME, 0o755 if directory else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def pack(source_dir):
    names = sorted(n for n in os.listdir(source_dir) if n.endswith(".py") and not n.startswith("."))
    levels = PACKAGE.split("/")
    folders = ["/".join(levels[:depth]) for depth in range(1, len(levels) + 1)]
    files = dict(("%s/__init__.py" % folder, b"") for folder in folders)
    for name in names:
        with open(os.path.join(source_dir, name), "rb") as handle:
            files["%s/%s" % (PACKAGE, name)] = handle.read()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for folder in folders:
            archive.addfile(_info(folder, directory=True))
        for name in sorted(files):
            archive.addfile(_info(name, size=len(files[name])), io.BytesIO(files[name]))
    return buffer.getvalue()


def main():
    source_dir, output_dir = sys.argv[1], sys.argv[2]
    raw = pack(source_dir)
    path = os.path.join(output_dir, "fleetops-health-module_utils-%s.tar" % hashlib.sha256(raw).hexdigest()[:16])
    if not os.path.exists(path):
        partial = "%s.%d" % (path, os.getpid())
        with open(partial, "wb") as handle:
            handle.write(raw)
        os.rename(partial, path)  # other runs never see half a file
    sys.stdout.write(path + "\n")


if __name__ == "__main__":
    main()
