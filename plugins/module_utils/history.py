# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's history: raw samples, 1-minute and 1-hour rollups in one SQLite file (WAL mode).

Public: the agent writes it; host_resources reads it (read-only) for baselines.

* Every write is one transaction with ``synchronous=FULL``: losing power loses at most the last sample.
* Rollups are computed from the table below them when a minute (hour) is complete, inside the same
  transaction as the sample that completed it, so a crash never leaves a half-rolled minute.
* Retention per table; a size cap that drops the oldest raw samples first, then the oldest minutes, and
  gives the pages back (``auto_vacuum=INCREMENTAL``).
"""

from __future__ import annotations

import os
import sqlite3

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS figures (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # ts in milliseconds: the adaptive interval samples several times a second.
    "CREATE TABLE IF NOT EXISTS raw (figure INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, "
    "PRIMARY KEY (figure, ts)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS raw_by_time ON raw (ts)",
    "CREATE TABLE IF NOT EXISTS minute (figure INTEGER NOT NULL, start INTEGER NOT NULL, count INTEGER NOT NULL, "
    "total REAL NOT NULL, squares REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, "
    "PRIMARY KEY (figure, start)) WITHOUT ROWID",
    # minutes: how many minute rows went into the hour, the coverage a baseline asks for.
    "CREATE TABLE IF NOT EXISTS hour (figure INTEGER NOT NULL, start INTEGER NOT NULL, count INTEGER NOT NULL, "
    "total REAL NOT NULL, squares REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, minutes INTEGER NOT NULL, "
    "PRIMARY KEY (figure, start)) WITHOUT ROWID",
)
MINUTE = 60
HOUR = 3600


class HistoryError(Exception):
    """The history file cannot be used; the message names it and the fix."""


def history_bytes(path):
    """The database and its WAL on disk."""
    size = 0
    for suffix in ("", "-wal"):
        try:
            size += os.stat(path + suffix).st_size
        except OSError:
            pass
    return size


class History(object):
    """One writer (the agent). ``record(ts, {figure: value})`` stores a sample and rolls complete periods up."""

    def __init__(self, path, raw_retention=86400, minute_retention=8 * 86400, hour_retention=90 * 86400,
                 max_bytes=128 * 1024 * 1024):
        self.path = path
        self.raw_retention = raw_retention
        self.minute_retention = minute_retention
        self.hour_retention = hour_retention
        self.max_bytes = max_bytes
        self._figure_ids = {}
        self._rolled = None
        try:
            self.db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")   # only takes effect on a new file
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                for statement in _SCHEMA:
                    self.db.execute(statement)
                found = self._meta("schema_version")
                if found is None:
                    self._set_meta("schema_version", SCHEMA_VERSION)
                elif found != SCHEMA_VERSION:
                    raise HistoryError("%s: history schema version %s, this agent writes version %s; move the file "
                                       "aside to start a new history" % (path, found, SCHEMA_VERSION))
            for figure_id, name in self.db.execute("SELECT id, name FROM figures"):
                self._figure_ids[name] = figure_id
        except sqlite3.DatabaseError as exc:
            raise HistoryError("%s: cannot use the history database (%s); move it aside to start a new one"
                               % (path, exc))

    def close(self):
        self.db.close()

    # ------------------------------------------------------------ plumbing

    def _transaction(self):
        db = self.db

        class _Transaction(object):
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("COMMIT" if exc_type is None else "ROLLBACK")

        return _Transaction()

    def _meta(self, key):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key, value):
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, int(value)))

    def _figure_id(self, name):
        figure_id = self._figure_ids.get(name)
        if figure_id is None:
            self.db.execute("INSERT OR IGNORE INTO figures (name) VALUES (?)", (name,))
            figure_id = self.db.execute("SELECT id FROM figures WHERE name = ?", (name,)).fetchone()[0]
            self._figure_ids[name] = figure_id
        return figure_id

    # ------------------------------------------------------------ writing

    def record(self, ts, figures):
        """Store one sample (``ts`` in seconds) in one transaction; roll up and prune when a minute completed."""
        self.record_many([(ts, figures)])

    def record_many(self, samples):
        """Store many ``(ts, figures)`` in one transaction, oldest first (backfills, the bench, tests)."""
        try:
            with self._transaction():
                rolled = False
                for ts, figures in samples:
                    stamp = int(round(ts * 1000))
                    self.db.executemany("INSERT OR REPLACE INTO raw (figure, ts, value) VALUES (?, ?, ?)",
                                        [(self._figure_id(name), stamp, float(value)) for name, value in figures.items()
                                         if value is not None])
                    rolled = self._roll_up(ts) or rolled
                if rolled:
                    self._prune(ts)
            if rolled and self.db.execute("PRAGMA freelist_count").fetchone()[0]:
                # Give the freed pages back to the file system. Through execute() this pragma frees one page
                # per call; executescript steps it to the end. Outside the sample's transaction: losing it
                # costs only disk space until the next minute.
                self.db.executescript("PRAGMA incremental_vacuum;")
        except sqlite3.DatabaseError as exc:
            raise HistoryError("%s: cannot write the sample (%s)" % (self.path, exc))
        except BaseException:
            self._rolled = None   # the transaction rolled back: read the marks again
            raise

    def _roll_up(self, now):
        """Roll every complete minute since the last roll, then every complete hour; True when a minute rolled."""
        if self._rolled is None:
            self._rolled = [self._meta("minutes_rolled_until"), self._meta("hours_rolled_until")]
        minute_now = int(now // MINUTE) * MINUTE
        hour_now = int(now // HOUR) * HOUR
        minutes_rolled, hours_rolled = self._rolled
        if minutes_rolled is None:
            self._set_meta("minutes_rolled_until", minute_now)
            self._set_meta("hours_rolled_until", hour_now)
            self._rolled = [minute_now, hour_now]
            return False
        if minute_now <= minutes_rolled:
            return False
        self.db.execute(
            "INSERT OR REPLACE INTO minute (figure, start, count, total, squares, low, high) "
            "SELECT figure, (ts / 60000) * 60, COUNT(*), SUM(value), SUM(value * value), MIN(value), MAX(value) "
            "FROM raw WHERE ts >= ? AND ts < ? GROUP BY figure, ts / 60000", (minutes_rolled * 1000, minute_now * 1000))
        self._set_meta("minutes_rolled_until", minute_now)
        if hour_now > hours_rolled:
            self.db.execute(
                "INSERT OR REPLACE INTO hour (figure, start, count, total, squares, low, high, minutes) "
                "SELECT figure, (start / 3600) * 3600, SUM(count), SUM(total), SUM(squares), MIN(low), MAX(high), "
                "COUNT(*) FROM minute WHERE start >= ? AND start < ? GROUP BY figure, start / 3600",
                (hours_rolled, hour_now))
            self._set_meta("hours_rolled_until", hour_now)
        self._rolled = [minute_now, max(hour_now, hours_rolled)]
        return True

    def _prune(self, now):
        self.db.execute("DELETE FROM raw WHERE ts < ?", (int((now - self.raw_retention) * 1000),))
        self.db.execute("DELETE FROM minute WHERE start < ?", (int(now - self.minute_retention),))
        self.db.execute("DELETE FROM hour WHERE start < ?", (int(now - self.hour_retention),))
        self._enforce_cap()

    def logical_bytes(self):
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        used = self.db.execute("PRAGMA page_count").fetchone()[0] - self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return used * page_size

    def _enforce_cap(self):
        """Over ``max_bytes``: drop the oldest tenth of the raw samples (then of the minutes) until under it."""
        for table, column, scale in (("raw", "ts", 1000), ("minute", "start", 1)):
            for _attempt in range(10):
                if self.logical_bytes() <= self.max_bytes:
                    break
                oldest, newest = self.db.execute("SELECT MIN(%s), MAX(%s) FROM %s" % (column, column, table)).fetchone()
                if oldest is None or oldest == newest:
                    break
                cutoff = oldest + max(scale, (newest - oldest) // 10)
                self.db.execute("DELETE FROM %s WHERE %s < ?" % (table, column), (cutoff,))

    # ------------------------------------------------------------ reading

    def hour_rows(self, starts):
        """``{figure: (count, total, squares, minutes)}`` summed over the hour rollups starting at ``starts``."""
        if not starts:
            return {}
        names = dict((figure_id, name) for name, figure_id in self._figure_ids.items())
        names.update(self.db.execute("SELECT id, name FROM figures"))
        query = ("SELECT figure, SUM(count), SUM(total), SUM(squares), SUM(minutes) FROM hour WHERE start IN (%s) "
                 "GROUP BY figure" % ",".join("?" * len(starts)))
        return dict((names[row[0]], tuple(row[1:])) for row in self.db.execute(query, [int(s) for s in starts]))

    def minutes_covered(self, start, end):
        """How many minute rows of any figure lie in [start, end): for tests and the bench."""
        return self.db.execute("SELECT COUNT(DISTINCT start) FROM minute WHERE start >= ? AND start < ?",
                               (start, end)).fetchone()[0]

    def counts(self):
        return dict((table, self.db.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0])
                    for table in ("raw", "minute", "hour"))


def open_read_only(path):
    """A History-like reader for host_resources: ``None`` when the file does not exist (no agent, no history)."""
    if not os.path.exists(path):
        return None
    return _Reader(path)


class _Reader(History):
    """Reads without creating or changing anything; a busy writer costs at most the busy timeout."""

    def __init__(self, path):  # pylint: disable=super-init-not-called
        self.path = path
        self._figure_ids = {}
        try:
            self.db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=2, isolation_level=None)
            self.db.execute("SELECT COUNT(*) FROM hour").fetchone()
        except sqlite3.DatabaseError as exc:
            raise HistoryError("%s: cannot read the agent's history (%s)" % (path, exc))
