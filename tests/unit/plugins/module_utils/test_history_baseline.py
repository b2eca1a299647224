# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""History (SQLite rollups, retention, size cap) and baselines on a synthetic week the test writes."""

from __future__ import annotations

import calendar
import sqlite3
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import baseline, history
from ansible_collections.fleetops.health.plugins.module_utils.history import History, HistoryError

# Tuesday 24 November 2026, 14:00 UTC; the week of history runs up to the same hour a week later.
TUESDAY_14H = calendar.timegm((2026, 11, 24, 14, 0, 0))
WEEK = 7 * 86400


def synthetic_week(start, step=60):
    """cpu 38% +-2 on Tuesday 14h, 10% +-1 otherwise; memory steady 50%; one sample a minute for a week."""
    samples = []
    for index in range(WEEK // step):
        ts = start + index * step
        moment = time.gmtime(ts)
        wobble = 2.0 if index % 2 else -2.0
        cpu = 38.0 + wobble if (moment.tm_wday, moment.tm_hour) == (1, 14) else 10.0 + wobble / 2
        samples.append((ts, {"cpu": cpu, "memory": 50.0, "disk:/": 40.0}))
    return samples


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    store = History(str(tmp_path_factory.mktemp("week") / "history.db"))
    start = TUESDAY_14H - 3600   # Tuesday 13h, so that 14h is complete and rolled up
    store.record_many(synthetic_week(start))
    store.record(start + WEEK, {"cpu": 10.0})   # completes the last minute and hour
    yield store
    store.close()


def test_rollups_cover_every_minute_and_hour_of_the_week(week):
    counts = week.counts()
    assert counts["minute"] == 3 * (WEEK // 60)
    assert counts["hour"] == 3 * (WEEK // 3600)
    rows = week.hour_rows([TUESDAY_14H])
    count, total, squares, minutes = rows["cpu"]
    assert (count, minutes) == (60, 60)
    assert total / count == pytest.approx(38.0)


def test_the_tuesday_14h_baseline_and_its_reason(week):
    now = TUESDAY_14H + WEEK + 1800
    found = baseline.hour_of_week_baselines(week, now, weeks=1, factor=1.5, sigma=3, min_minutes=30,
                                            localtime=time.gmtime)
    cpu = found["cpu"]
    assert cpu["mean"] == pytest.approx(38.0) and cpu["stddev"] == pytest.approx(2.0)
    assert cpu["by"] == "factor" and cpu["threshold"] == pytest.approx(57.0)
    verdict, reasons, dynamic = baseline.apply_baselines({"cpu": 71.0, "memory": 50.0}, "ok", [], found)
    assert verdict == "warn"
    assert reasons == ["cpu 71% > baseline 38% \u00d7 1.5 (Tue 14h, 7-day)"]
    assert dynamic["cpu"] == {"threshold": 57.0, "mean": 38.0, "basis": "Tue 14h, 7-day"}
    # The same 71% on Wednesday 03h is judged against that hour's 10% history.
    wednesday = baseline.hour_of_week_baselines(week, TUESDAY_14H + WEEK + 13 * 3600, localtime=time.gmtime)
    assert wednesday["cpu"]["threshold"] == pytest.approx(15.0)
    # A static crit stays crit; the baseline reason is added after it.
    verdict, reasons, _dynamic = baseline.apply_baselines({"cpu": 99.0}, "crit", ["cpu 99% >= crit 95%"], found)
    assert verdict == "crit" and reasons[0] == "cpu 99% >= crit 95%" and len(reasons) == 2


def test_sigma_binds_when_the_history_is_noisy(tmp_path):
    store = History(str(tmp_path / "h.db"))
    start = TUESDAY_14H
    store.record_many([(start + i * 60, {"load1": 1.0 if i % 2 else 5.0}) for i in range(60)] + [(start + 3600, {})])
    found = baseline.hour_of_week_baselines(store, start + WEEK + 60, localtime=time.gmtime)["load1"]
    assert found["by"] == "sigma" and found["threshold"] == pytest.approx(3.0 + 3 * 2.0)
    assert baseline.describe("load1", 9.5, found) == "load1 9.5 > baseline 3 + 3\u03c3 (\u03c3 2) (Tue 14h, 7-day)"


def test_too_little_history_says_so_instead_of_a_baseline(tmp_path):
    store = History(str(tmp_path / "h.db"))
    store.record_many([(TUESDAY_14H + i * 60, {"cpu": 40.0}) for i in range(20)] + [(TUESDAY_14H + 3600, {})])
    found = baseline.hour_of_week_baselines(store, TUESDAY_14H + WEEK + 60, figures=["cpu", "memory"],
                                            localtime=time.gmtime)
    assert found["cpu"]["missing"] == ("not enough history for cpu: 20 min in Tue 14h over the last 7 days, "
                                       "needs 30")
    assert "0 min" in found["memory"]["missing"]
    verdict, reasons, dynamic = baseline.apply_baselines({"cpu": 99.0}, "ok", [], found)
    assert (verdict, reasons) == ("ok", [])
    assert dynamic["cpu"] == {"missing": found["cpu"]["missing"]}


def test_quiet_figures_stay_quiet_under_their_floor(week):
    found = baseline.hour_of_week_baselines(week, TUESDAY_14H + WEEK + 13 * 3600, localtime=time.gmtime)
    assert found["cpu"]["threshold"] == pytest.approx(15.0)
    assert baseline.baseline_findings({"cpu": 9.0}, {"cpu": dict(found["cpu"], threshold=5.0)}) == []


def test_each_sample_is_committed_when_record_returns(tmp_path):
    path = str(tmp_path / "h.db")
    store = History(path)
    store.record(1000.5, {"cpu": 1.0})
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM raw").fetchone()[0] == 1
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    store.close()


def test_retention_prunes_each_table(tmp_path):
    store = History(str(tmp_path / "h.db"), raw_retention=600, minute_retention=3600, hour_retention=86400)
    store.record_many([(10 * 86400 + i * 30, {"cpu": 1.0}) for i in range(2 * 86400 // 30)])
    end = 12 * 86400
    raw_oldest = store.db.execute("SELECT MIN(ts) FROM raw").fetchone()[0] / 1000.0
    minute_oldest = store.db.execute("SELECT MIN(start) FROM minute").fetchone()[0]
    hour_oldest = store.db.execute("SELECT MIN(start) FROM hour").fetchone()[0]
    assert end - 600 - 60 <= raw_oldest
    assert end - 3600 - 60 <= minute_oldest
    assert end - 86400 - 3600 <= hour_oldest


def test_the_size_cap_drops_the_oldest_raw_samples(tmp_path):
    path = str(tmp_path / "h.db")
    cap = 1024 * 1024
    store = History(path, raw_retention=86400, max_bytes=cap)
    figures = dict(("f%02d" % n, float(n)) for n in range(40))
    for chunk in range(12):
        store.record_many([(chunk * 3600 + i, figures) for i in range(0, 3600, 5)])
    assert store.logical_bytes() <= cap
    newest = store.db.execute("SELECT MAX(ts) FROM raw").fetchone()[0]
    oldest = store.db.execute("SELECT MIN(ts) FROM raw").fetchone()[0]
    assert newest - oldest < 11 * 3600 * 1000   # older samples went, newest stayed
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert history.history_bytes(path) <= cap * 1.5


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "h.db"
    path.write_bytes(b"not sqlite" * 200)
    with pytest.raises(HistoryError) as failure:
        History(str(path))
    assert str(path) in str(failure.value) and "move it aside" in str(failure.value)


def test_the_read_only_reader_sees_the_writers_rollups(week):
    assert history.open_read_only(week.path + ".absent") is None
    reader = history.open_read_only(week.path)
    assert reader.hour_rows([TUESDAY_14H])["cpu"][3] == 60
    with pytest.raises(sqlite3.OperationalError):
        reader.db.execute("DELETE FROM raw")
    reader.close()
