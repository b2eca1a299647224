# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic JSON state files under /var/lib/fleetops: temp file, fsync, rename; corrupt files are kept aside."""

from __future__ import annotations

import json
import os
import tempfile
import time


class StateDirError(Exception):
    """The state directory cannot be created or written."""


def ensure_writable_dir(path, option_name, mode=0o750):
    """Create ``path`` if needed and prove it is writable, naming ``option_name`` in the error."""
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except OSError as exc:
        raise StateDirError("%s: cannot create %s (%s); choose a writable directory" % (option_name, path, exc.strerror))
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError("%s: directory %s is not writable by uid %d; choose a writable directory or fix its permissions"
                            % (option_name, path, os.geteuid()))


def atomic_write_bytes(path, data, mode=0o640):
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content, never a mix."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        os.rename(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path, data, mode=0o640):
    atomic_write_bytes(path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8"), mode)


def load_json_state(path, default_factory=dict):
    """Return ``(state, warning)``.

    A missing file gives a fresh state and no warning. A corrupt one is renamed to
    ``<path>.corrupt-<epoch>`` so nothing is lost silently, and the warning says where it went.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except (IOError, OSError) as exc:
        if getattr(exc, "errno", None) == 2:
            return default_factory(), None
        raise
    try:
        state = json.loads(raw.decode("utf-8"))
        if not isinstance(state, type(default_factory())):
            raise ValueError("top-level value is %s" % type(state).__name__)
        return state, None
    except ValueError as exc:
        aside = "%s.corrupt-%d" % (path, int(time.time()))
        os.rename(path, aside)
        return default_factory(), "state file %s was corrupt (%s); moved it to %s and started afresh" % (path, exc, aside)
