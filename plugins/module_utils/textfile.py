# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_exporter textfile-collector files, written so that node_exporter never reads half a file.

Public API: ``write_textfile(path, payload)``. The agent and the probes role's runner both write through it.
"""

from __future__ import annotations

import os
import tempfile


def write_textfile(path, payload):
    """Atomically replace ``path`` with ``payload`` (bytes or text): a temporary file in the same folder,
    fsync, mode 0644, rename. mkstemp creates the temporary file exclusively, so a planted symlink is never
    followed; the rename replaces a symlink at ``path`` itself rather than writing through it."""
    if not isinstance(payload, bytes):
        payload = payload.encode("utf-8")
    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return path
