# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each log file was left: file identity, the offset store, and finding a rotated file again."""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import stat
import time

from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    LOCK_TIMEOUT,
    StateDir,
    StateFile,
    StateSchema,
    boolean,
    count,
    map_of,
    number,
    record,
    text,
)

# The first bytes of a log (a timestamp and a message) tell a reused inode from the file we tracked.
FINGERPRINT_BYTES = 1024
# How much of a candidate copy is compared with a small truncated file to tell a copy from a backup.
COPY_COMPARE_BYTES = 64 * 1024
STATE_FILE_NAME = "offsets.json"
LOCK_FILE_NAME = "offsets.lock"
STATE_VERSION = 1
# A path whose file vanished is remembered this long, so a file that reappears there is read from its start.
FORGET_PATHS_AFTER_SECONDS = 90 * 86400
# Rotated names that are compressed cannot be read as text; logrotate's delaycompress keeps .1 plain.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".Z", ".zip")
# A directory listed this soon after its last change may have changed again within the same timestamp
# tick, so that listing is not reused (the "racy git" rule).
LISTING_TRUST_AFTER_NS = 1000 * 1000 * 1000

SCHEMA = StateSchema(
    STATE_VERSION,
    record(required={
        "files": map_of(record(required={"path": text, "offset": count, "fp": text, "fp_len": count},
                               optional={"skip_line": boolean, "mtime_ns": count, "generations_after_ns": number})),
        "gone": map_of(number),
        "globs": map_of(number),
    }),
    empty=lambda: {"files": {}, "gone": {}, "globs": {}},
)


def identity_key(stat_result):
    return "%d:%d" % (stat_result.st_dev, stat_result.st_ino)


def fingerprint(fd, length):
    """Hash of the first ``length`` bytes of an open file, or None when it is shorter than that now."""
    data = os.pread(fd, length, 0)
    if len(data) < length:
        return None
    return hashlib.sha256(data).hexdigest()


def fingerprint_matches(fd, entry):
    return fingerprint(fd, entry["fp_len"]) == entry["fp"]


def new_entry(fd, path, size, offset):
    fp_len = min(size, FINGERPRINT_BYTES)
    return {"path": path, "offset": offset, "fp_len": fp_len, "fp": fingerprint(fd, fp_len) or ""}


def refresh_fingerprint(fd, entry, size, reset=False):
    """Widen a short fingerprint (a file that was tiny when first seen) once the file has grown, or take
    a new one after the file was truncated and refilled."""
    if reset or (entry["fp_len"] < FINGERPRINT_BYTES and size > entry["fp_len"]):
        fp_len = min(size, FINGERPRINT_BYTES)
        entry["fp_len"] = fp_len
        entry["fp"] = fingerprint(fd, fp_len) or ""


class DirectoryListings(object):
    """The sorted names of each directory, listed once per run and again only after the directory changed.

    Looking for rotated copies used to list the whole directory once per file, so a run over N small logs
    in one directory read N listings of N names. A listing is kept while the directory's mtime stays the
    same, and names with a given prefix are found by bisection, so each look-up costs one stat of the
    directory and O(log N) plus what it finds.
    """

    def __init__(self):
        self._listings = {}  # directory -> (its mtime_ns when listed, sorted names)

    def names_starting_with(self, directory, prefixes):
        try:
            mtime_ns = os.stat(directory).st_mtime_ns
        except OSError:
            return []
        cached = self._listings.get(directory)
        if cached is not None and cached[0] == mtime_ns:
            names = cached[1]
        else:
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                return []
            if time.time_ns() - mtime_ns > LISTING_TRUST_AFTER_NS:
                self._listings[directory] = (mtime_ns, names)
        found = []
        for prefix in prefixes:
            index = bisect.bisect_left(names, prefix)
            while index < len(names) and names[index].startswith(prefix):
                found.append(names[index])
                index += 1
        return sorted(found)


def rotation_candidates(path, listings=None):
    """``(path, stat)`` of plain files next to ``path`` that logrotate may have made of it: ``app.log.1``, ``app.log-20260101``.

    ``listings`` (a DirectoryListings) lets the look-ups of one run share each directory's listing.
    """
    directory, base = os.path.split(path)
    listings = listings or DirectoryListings()
    candidates = []
    for name in listings.names_starting_with(directory or ".", (base + ".", base + "-")):
        if not name.endswith(COMPRESSED_SUFFIXES):
            candidate = os.path.join(directory, name)
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                candidates.append((candidate, st))
    return candidates


def _open_first(candidates, wanted):
    """Open the first candidate for which ``wanted(fd, stat)`` holds: ``(fd, path, stat)`` or None."""
    for candidate, _st in candidates:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        st = os.fstat(fd)
        if wanted(fd, st):
            return fd, candidate, st
        os.close(fd)
    return None


def open_renamed(path, key, listings=None):
    """The file tracked at ``path`` under its rotated name (same identity; the caller checks its first bytes)."""
    return _open_first(rotation_candidates(path, listings), lambda fd, st: identity_key(st) == key)


def has_weak_fingerprint(entry):
    """The file was shorter than FINGERPRINT_BYTES when last read: its first bytes may recur by chance."""
    return entry["fp_len"] < FINGERPRINT_BYTES


def open_copy(path, entry, known_keys, truncated_fd, listings=None):
    """After copytruncate: the copy that holds the tracked file's content past its saved offset.

    A copy is made before its file is truncated, so it is not newer than that file (``truncated_fd``); a
    newer file is a later generation. With a full fingerprint the copy is the newest file that starts like
    the tracked one. With a weak one (a small file), it is the oldest non-empty file written since the last
    read that starts like the tracked one while the truncated file does not start like it (it was emptied
    and refilled, not merely copied).
    """
    truncated_mtime_ns = os.fstat(truncated_fd).st_mtime_ns
    weak = has_weak_fingerprint(entry)

    def is_copy(fd, st):
        if (identity_key(st) in known_keys or st.st_size < entry["offset"] or st.st_mtime_ns > truncated_mtime_ns
                or not fingerprint_matches(fd, entry)):
            return False
        if not weak:
            return True
        head = os.pread(fd, COPY_COMPARE_BYTES, 0)
        return (bool(head) and st.st_mtime_ns > entry.get("mtime_ns", 0)
                and os.pread(truncated_fd, len(head), 0) != head)

    candidates = sorted(rotation_candidates(path, listings), key=lambda item: item[1].st_mtime_ns, reverse=not weak)
    return _open_first(candidates, is_copy)


def later_generations(path, after_mtime_ns, known_keys, listings=None):
    """Rotated files written after ``after_mtime_ns`` that were never tracked: rotations that happened
    between two runs. Oldest first."""
    return [candidate for candidate, st in sorted(rotation_candidates(path, listings),
                                                  key=lambda item: item[1].st_mtime_ns)
            if st.st_mtime_ns > after_mtime_ns and identity_key(st) not in known_keys]


class OffsetStore(object):
    """Offsets keyed by file identity (``dev:ino``), each entry remembering the path it was last read at.

    ``files``: identity -> {path, offset, fp, fp_len[, skip_line]}. ``gone``: path -> epoch ns, paths whose
    tracked file vanished, so that a file reappearing there is read from its start rather than treated as
    never seen. ``globs``: pattern -> epoch of its first scan; a file a known glob matches for the first
    time was created since, so it is read whole.
    Several tasks may share one state_dir: a run only adds, changes or drops the entries for its own files,
    under an exclusive lock, and writes the whole file atomically.
    """

    def __init__(self, state_dir, check_mode=False, lock_timeout=LOCK_TIMEOUT):
        self.state_dir = state_dir
        self.check_mode = check_mode
        self.lock_timeout = lock_timeout
        self.path = os.path.join(os.path.abspath(state_dir), STATE_FILE_NAME)
        self.files = {}
        self.gone = {}
        self.globs = {}
        self.warning = None
        self._state = None

    def open(self):
        """Lock and load (StateDirError names state_dir). The lock is held until ``close()``, for the whole scan."""
        folder = StateDir(self.state_dir, "state_dir", self.check_mode)
        self._state = StateFile(folder, STATE_FILE_NAME, SCHEMA, lock_name=LOCK_FILE_NAME,
                                lock_timeout=self.lock_timeout).open()
        data = self._state.data
        self.files, self.gone, self.globs = data["files"], data["gone"], data["globs"]
        self.warning = "; ".join(self._state.warnings) or None
        return self

    def close(self):
        if self._state is not None:
            self._state.__exit__(None, None, None)
            self._state = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()

    def mark_gone(self, path):
        """Remember since when ``path`` has had no tracked file (in ns, kept from the first time, so idle runs
        change nothing): files rotated there after that were all written since."""
        self.gone.setdefault(path, time.time_ns())

    @property
    def changed(self):
        self._state.data.update(files=self.files, gone=self.gone, globs=self.globs)
        return self._state.changed

    def save(self):
        """Write atomically when anything moved (never in check mode); returns whether offsets changed."""
        cutoff = time.time_ns() - FORGET_PATHS_AFTER_SECONDS * 10 ** 9
        self.gone = dict((path, when) for path, when in self.gone.items()
                         if when >= cutoff or os.path.lexists(path))
        changed = self.changed
        self._state.save()
        return changed


def is_missing(exc):
    return getattr(exc, "errno", None) in (errno.ENOENT, errno.ENOTDIR)
