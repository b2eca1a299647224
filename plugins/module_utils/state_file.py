# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one state layer: versioned, shape-checked JSON files in a folder of our own, locked and written atomically.

Every store (probe state, log offsets, restart budgets, scale streaks, the IM spool and its dedupe ledger) goes
through ``StateDir`` and ``StateFile``:

* the folder is opened without following a symlink, and refused when another user owns it or group/others may
  write to it, because whoever can write there can swap our files; folders are made 0700, files 0600;
* files are opened relative to the folder's descriptor with O_NOFOLLOW, so a planted symlink is never followed;
* a read-modify-write holds an fcntl lock (``<file>.lock``) with a timeout; the error on timeout names the file
  and the process that holds it when /proc/locks tells;
* a write is a temp file, fsync, rename, fsync of the folder;
* every file carries a ``version`` and is checked against its store's shape; a corrupt or wrong-shaped file is
  moved aside with a warning naming both paths;
* in check mode nothing is created, locked-by-creating, moved, written or deleted, yet a folder the real run
  could not use fails the same way.
"""

from __future__ import annotations

# StateDir.error builds the exception and formats its message itself (as logging does); pylint reads each
# `raise self.error(fmt, *args)` as an exception given a format tuple by mistake.
# pylint: disable=raising-format-tuple

import errno
import fcntl
import json
import math
import os
import stat
import time

LOCK_TIMEOUT = 30.0
DIR_MODE = 0o700
FILE_MODE = 0o600
_LOCK_POLL_SECONDS = 0.01


class StateDirError(Exception):
    """A state folder or file cannot be used safely; the message names the option, the path and the fix."""


class StateLockTimeout(StateDirError):
    """Another run held the lock for longer than the timeout."""


class ShapeError(ValueError):
    """A state document does not have the shape its store expects; the message says where."""


# A small schema language: each checker is a callable ``(value, where) -> value`` that raises ShapeError.

def _describe(value):
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number(value, where):
    """A finite int or float (not a bool: JSON true is not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ShapeError("%s is %s, not a finite number" % (where, _describe(value)))
    return value


def count(value, where):
    """A whole number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ShapeError("%s is %s, not a whole number of 0 or more" % (where, _describe(value)))
    return value


def text(value, where):
    if not isinstance(value, str):
        raise ShapeError("%s is %s, not a string" % (where, _describe(value)))
    return value


def boolean(value, where):
    if not isinstance(value, bool):
        raise ShapeError("%s is %s, not true or false" % (where, _describe(value)))
    return value


def nullable(checker):
    def check(value, where):
        return None if value is None else checker(value, where)
    return check


def one_of(*choices):
    def check(value, where):
        if value not in choices:
            raise ShapeError("%s is %s, not one of %s" % (where, _describe(value), ", ".join(map(str, choices))))
        return value
    return check


def list_of(checker):
    def check(value, where):
        if not isinstance(value, list):
            raise ShapeError("%s is %s, not a list" % (where, _describe(value)))
        return [checker(item, "%s[%d]" % (where, index)) for index, item in enumerate(value)]
    return check


def map_of(checker):
    """An object with any keys, each value checked by ``checker``."""
    def check(value, where):
        if not isinstance(value, dict):
            raise ShapeError("%s is %s, not an object" % (where, _describe(value)))
        return dict((key, checker(item, "%s[%s]" % (where, json.dumps(key)))) for key, item in value.items())
    return check


def record(required=None, optional=None):
    """An object with the ``required`` fields and maybe the ``optional`` ones; other fields are kept as they are,
    so a newer minor writer's extra fields survive."""
    required = required or {}
    optional = optional or {}

    def check(value, where):
        if not isinstance(value, dict):
            raise ShapeError("%s is %s, not an object" % (where, _describe(value)))
        checked = dict(value)
        for name, checker in required.items():
            if name not in value:
                raise ShapeError("%s has no field %s" % (where, name))
            checked[name] = checker(value[name], "%s.%s" % (where, name))
        for name, checker in optional.items():
            if name in value:
                checked[name] = checker(value[name], "%s.%s" % (where, name))
        return checked
    return check


class StateSchema(object):
    """What one store's file holds: its ``version``, the checker of the document, an empty document, and
    ``migrate`` for older layouts (it returns the current layout, or None when it does not recognise one)."""

    def __init__(self, version, check, empty, migrate=None):
        self.version = version
        self.check = check
        self.empty = empty
        self.migrate = migrate

    def load(self, document, where):
        """The checked document (without its version); raises ShapeError."""
        if isinstance(document, dict) and "version" not in document and self.migrate is not None:
            migrated = self.migrate(document)
            if migrated is not None:
                document = dict(migrated, version=self.version)
        if not isinstance(document, dict):
            raise ShapeError("the file holds %s, not an object" % type(document).__name__)
        if document.get("version") != self.version:
            raise ShapeError("it has version %s; this collection reads version %d"
                             % (_describe(document.get("version")), self.version))
        checked = self.check(dict((key, value) for key, value in document.items() if key != "version"), where)
        return checked

    def dump(self, data):
        return dict(data, version=self.version)


def _fix_hint(path):
    return "chown %d %s && chmod 0700 %s, or choose a folder of your own" % (os.geteuid(), path, path)


def describe_lock_holder(fd):
    """Who holds a lock on the file open at ``fd``: pid and command line from /proc/locks, or None."""
    st = os.fstat(fd)
    wanted = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks") as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return None
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[5] == wanted:
            pid = fields[4]
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except (IOError, OSError):
                command = ""
            return "pid %s%s" % (pid, " (%s)" % command[:200] if command else "")
    return None


def _pid_written_in(fd):
    written = os.pread(fd, 32, 0).strip()
    return "pid %s (the last one that took it)" % written.decode("ascii") if written.isdigit() else None


class StateDir(object):
    """One state folder, opened as a descriptor that every file operation goes through.

    ``open()`` creates it (0700, with missing parents) unless in check mode, refuses a symlink, a non-folder,
    a folder of another user or one that group/others may write, and proves it writable. In check mode a
    missing folder is not created; ``fd`` stays None and the folder reads as empty, but a folder the real run
    could not create fails here too.
    """

    def __init__(self, path, option_name, check_mode=False):
        self.path = os.path.abspath(path)
        self.option_name = option_name
        self.check_mode = check_mode
        self.fd = None

    def error(self, message, *args):
        return StateDirError("%s: %s" % (self.option_name, message % args))

    def open(self):
        if self.fd is not None:
            return self
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                if self.check_mode:
                    self._check_creatable()
                    return self
                self._create()
                return self.open()
            raise self._open_error(exc)
        try:
            self._check_safe(os.fstat(self.fd))
        except BaseException:
            self.close()
            raise
        return self

    def _open_error(self, exc):
        if os.path.islink(self.path):
            return self.error("%s is a symlink, and state folders are not reached through symlinks; "
                              "give the real folder's path", self.path)
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            if os.path.lexists(self.path):
                return self.error("%s is not a folder; move that file away or choose another folder", self.path)
            return self.error("cannot create %s (a parent is not a folder); choose a writable directory", self.path)
        return self.error("cannot open folder %s (%s); choose a writable directory or fix its permissions",
                          self.path, exc.strerror)

    def _check_safe(self, st):
        euid = os.geteuid()
        if st.st_uid != euid:
            raise self.error("folder %s is owned by uid %d, not by uid %d that runs this; another user could change "
                             "the state in it. Fix: %s", self.path, st.st_uid, euid, _fix_hint(self.path))
        if st.st_mode & 0o022:
            raise self.error("folder %s is writable by group or others (mode %04o); another user could change the "
                             "state in it. Fix: chmod 0700 %s", self.path, stat.S_IMODE(st.st_mode), self.path)
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise self.error("directory %s is not writable by uid %d; choose a writable directory or fix its "
                             "permissions", self.path, euid)

    def _create(self):
        try:
            os.makedirs(self.path, mode=DIR_MODE)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise self.error("cannot create %s (%s); choose a writable directory", self.path, exc.strerror)

    def _check_creatable(self):
        """Check mode: the real run would create this folder; fail now if it could not."""
        existing = self.path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise self.error("cannot create %s (%s is not a folder); choose a writable directory", self.path, existing)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise self.error("cannot create %s (%s is not writable by uid %d); choose a writable directory",
                             self.path, existing, os.geteuid())

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()

    def join(self, name):
        return os.path.join(self.path, name)

    def subdir(self, name):
        """A folder inside this one, with the same rules (the spool's queue)."""
        return StateDir(self.join(name), self.option_name, self.check_mode)

    # Files inside the folder, always relative to its descriptor and never through a symlink.

    def open_file(self, name, flags=os.O_RDONLY):
        """An fd for ``name`` or None when it does not exist; refuses a symlink or anything but a regular file."""
        if self.fd is None:
            return None
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            if exc.errno == errno.ELOOP:
                raise self.error("%s is a symlink; state files are never followed through symlinks. Remove it",
                                 self.join(name))
            if exc.errno == errno.EISDIR:
                raise self.error("%s is a folder where a file should be; move it away", self.join(name))
            raise self.error("cannot open %s (%s); fix its permissions or move it away", self.join(name), exc.strerror)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise self.error("%s is %s where a file should be; move it away", self.join(name), what)
        return fd

    def read_bytes(self, name):
        """The content of ``name``, or None when it does not exist."""
        fd = self.open_file(name)
        if fd is None:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def names(self):
        if self.fd is None:
            return []
        return os.listdir(self.fd)

    def write_bytes(self, name, data):
        """Replace ``name`` atomically: a crash leaves the old or the new content, never a mix."""
        self._refuse_in_check_mode()
        tmp_name = ".%s.%d.%d.tmp" % (name, os.getpid(), time.time_ns())
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE, dir_fd=self.fd)
        except OSError as exc:
            raise self.error("cannot write in %s (%s); free space or fix the folder's permissions",
                             self.path, exc.strerror)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp_name, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException as exc:
            try:
                os.unlink(tmp_name, dir_fd=self.fd)
            except OSError:
                pass
            if isinstance(exc, OSError) and exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise self.error("%s is a folder where a file should be; move it away", self.join(name))
            if isinstance(exc, OSError):
                raise self.error("cannot write %s (%s); free space or fix the folder's permissions",
                                 self.join(name), exc.strerror or exc)
            raise
        os.fsync(self.fd)

    def write_json(self, name, document):
        self.write_bytes(name, json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8"))

    def move_aside(self, name, label="corrupt"):
        """Rename ``name`` to ``<name>.<label>-<epoch>`` (never over an earlier one); returns the new path."""
        self._refuse_in_check_mode()
        base = "%s.%s-%d" % (name, label, int(time.time()))
        aside, number = base, 1
        while True:
            try:
                os.stat(aside, dir_fd=self.fd, follow_symlinks=False)
            except OSError:
                break
            number += 1
            aside = "%s.%d" % (base, number)
        try:
            os.rename(name, aside, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            raise self.error("cannot move %s aside (%s); move it away by hand", self.join(name), exc.strerror)
        os.fsync(self.fd)
        return self.join(aside)

    def remove(self, name):
        self._refuse_in_check_mode()
        os.unlink(name, dir_fd=self.fd)

    def remove_torn_writes(self, name):
        """Temp files of ``name`` left by a run killed mid-write; call with the lock held, so no writer owns them."""
        prefix = ".%s." % name
        for entry in self.names():
            if entry.startswith(prefix) and entry.endswith(".tmp"):
                try:
                    os.unlink(entry, dir_fd=self.fd)
                except OSError:
                    pass

    def _refuse_in_check_mode(self):
        if self.check_mode or self.fd is None:
            raise RuntimeError("state folder %s is read-only in check mode" % self.path)

    # Locking.

    def lock(self, name, timeout=LOCK_TIMEOUT, shared=False):
        """Take an flock on ``name`` (created 0600 unless in check mode) within ``timeout`` seconds; returns
        its fd, or None in check mode when there is no lock file to take. Close the fd to release it."""
        if self.check_mode:
            fd = self.open_file(name)
            if fd is None:
                return None
        else:
            fd = self.open_file(name, os.O_RDWR | os.O_CREAT)
        operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, operation)
                if not self.check_mode:
                    # Read back on a timeout when /proc/locks cannot tell who holds the lock.
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, b"%d\n" % os.getpid(), 0)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = describe_lock_holder(fd) or _pid_written_in(fd)
                os.close(fd)
                raise StateLockTimeout(
                    "%s: waited %gs for the lock %s, held by %s; let that run finish, or end it if it hangs"
                    % (self.option_name, timeout, self.join(name), holder or "another process (unknown pid)"))
            time.sleep(_LOCK_POLL_SECONDS)


class StateFile(object):
    """One versioned JSON file in a StateDir, loaded under its lock.

    Use as a context manager::

        with StateFile(folder, "budgets.json", SCHEMA) as state:
            state.data["services"][name] = entry
            state.save()

    ``data`` is the checked document without its version (``schema.empty()`` when the file is missing,
    corrupt or wrong-shaped). ``warnings`` says what was moved aside (or would be, in check mode).
    ``save()`` writes only when ``data`` changed since loading, never in check mode, and returns whether it
    changed.
    """

    def __init__(self, folder, name, schema, lock_name=None, lock_timeout=LOCK_TIMEOUT):
        self.folder = folder
        self.name = name
        self.schema = schema
        self.lock_name = lock_name or name + ".lock"
        self.lock_timeout = lock_timeout
        self.path = folder.join(name)
        self.data = None
        self.warnings = []
        self._lock_fd = None
        self._loaded = None

    @property
    def check_mode(self):
        return self.folder.check_mode

    def open(self):
        self.folder.open()
        self._lock_fd = self.folder.lock(self.lock_name, self.lock_timeout, shared=self.check_mode)
        try:
            if not self.check_mode:
                self.folder.remove_torn_writes(self.name)
            self.data = self._load()
        except BaseException:
            self.close()
            raise
        self._loaded = self._serialized(self.data)
        return self

    def _load(self):
        raw = self.folder.read_bytes(self.name)
        if raw is None:
            return self.schema.empty()
        try:
            document = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            return self._set_aside("corrupt (%s)" % exc)
        try:
            return self.schema.load(document, "")
        except ShapeError as exc:
            return self._set_aside("of the wrong shape (%s)" % str(exc).lstrip("."))

    def _set_aside(self, why):
        if self.check_mode:
            self.warnings.append("state file %s is %s; check mode reads it as empty and leaves it where it is (a real "
                                 "run moves it aside)" % (self.path, why))
        else:
            aside = self.folder.move_aside(self.name)
            self.warnings.append("state file %s was %s; moved it to %s and started afresh" % (self.path, why, aside))
        return self.schema.empty()

    @staticmethod
    def _serialized(data):
        return json.dumps(data, sort_keys=True)

    @property
    def changed(self):
        return self._serialized(self.data) != self._loaded

    def save(self):
        changed = self.changed
        if changed and not self.check_mode:
            self.folder.write_json(self.name, self.schema.dump(self.data))
            self._loaded = self._serialized(self.data)
        return changed

    def close(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()
        self.folder.close()


def locked_state(path, option_name, schema, check_mode=False, lock_timeout=LOCK_TIMEOUT, lock_name=None):
    """A StateFile for the file at ``path`` in its own folder: ``with locked_state(...) as state: ...``."""
    folder = StateDir(os.path.dirname(os.path.abspath(path)), option_name, check_mode)
    return StateFile(folder, os.path.basename(path), schema, lock_name=lock_name, lock_timeout=lock_timeout)
