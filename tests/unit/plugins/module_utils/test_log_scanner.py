"""Rule matching over chunks, the chunked reader, and whole LogScan runs over real files rotated by logrotate."""
import json
import os
import pathlib
import random
import shutil
import subprocess
import tempfile
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import log_offsets, log_scanner


def counter_for(*specs, **kwargs):
    return log_scanner.RuleCounter(log_scanner.compile_rules(list(specs)), **kwargs)


def count_text(counter, text):
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    counter.match_block(data, 0, len(data))
    return counter.counts


def test_a_line_matching_twice_counts_once_and_exclude_vetoes_it():
    counter = counter_for({"name": "err", "keywords": ["ERROR", "FATAL"], "severity": "critical"},
                          {"name": "timeout", "pattern": r"timed out after \d+ms", "exclude": "healthcheck"})
    counts = count_text(counter, "ERROR ERROR FATAL\nok\nERROR\n"
                                 "GET / timed out after 30ms\nhealthcheck timed out after 5ms\n")
    assert counts == {"err": 2, "timeout": 1}
    facts = counter.facts()
    assert facts["err"]["samples"] == ["ERROR ERROR FATAL", "ERROR"]
    assert facts["timeout"] == {"count": 1, "severity": "warning", "samples": ["GET / timed out after 30ms"]}
    assert counter.highest_severity() == "critical"


def test_keywords_are_literals_and_ignore_case_folds_ascii():
    counter = counter_for({"name": "dots", "keywords": ["a.b", "(x)"]},
                          {"name": "ci", "keywords": ["Segfault"], "ignore_case": True, "exclude": "IGNORED"},
                          {"name": "ci_regex", "pattern": "^warn", "ignore_case": True})
    counts = count_text(counter, "a.b\naxb\n(x)\nx\nSEGFAULT here\nsegfault ignored\nWARN: x\nnot warn\n")
    assert counts == {"dots": 2, "ci": 1, "ci_regex": 1}
    assert counter.samples["ci"] == ["SEGFAULT here"]


def test_ignore_case_keywords_fold_ascii_and_keep_other_letters_as_written():
    counter = counter_for({"name": "fr", "keywords": [u"ÉCHEC"], "ignore_case": True})
    counts = count_text(counter, u"ÉCHEC total\nÉchec partiel\nécHEC\n")
    assert counts == {"fr": 2} and counter.samples["fr"] == [u"ÉCHEC total", u"Échec partiel"]


def test_anchors_work_per_line_and_a_match_across_a_newline_does_not_count():
    counter = counter_for({"name": "anchored", "pattern": "^end$"}, {"name": "spanning", "pattern": r"foo\sbar"})
    counts = count_text(counter, "end\nthe end\nend \nfoo\nbar\nfoo bar\n")
    assert counts == {"anchored": 1, "spanning": 1}


def test_samples_are_bounded_and_invalid_utf8_is_replaced():
    counter = counter_for({"name": "err", "keywords": ["ERR"]}, samples=2, sample_max_len=10)
    count_text(counter, b"ERR \xff\xfe bad bytes and a long tail\nERR two\nERR three\n")
    assert counter.counts["err"] == 3
    assert counter.samples["err"] == [u"ERR \ufffd\ufffd bad", "ERR two"]


def test_highest_severity_is_none_without_matches():
    counter = counter_for({"name": "err", "keywords": ["ERROR"], "severity": "critical"},
                          {"name": "info", "keywords": ["note"], "severity": "info"})
    count_text(counter, "a note\n")
    assert counter.highest_severity() == "info"
    assert counter_for({"name": "err", "keywords": ["ERROR"]}).highest_severity() == "none"


@pytest.mark.parametrize("spec, message", [
    ({"name": "bad", "pattern": "("}, r"rules\[0\] \(bad\)\.pattern: invalid regular expression"),
    ({"name": "bad", "keywords": ["x"], "exclude": "[z"}, r"\.exclude: invalid"),
    ({"name": "bad", "keywords": [""]}, "must not be empty"),
    ({"name": "bad"}, "either pattern or keywords"),
])
def test_bad_rules_name_the_rule_and_option(spec, message):
    with pytest.raises(log_scanner.RuleError, match=message):
        log_scanner.compile_rules([spec])


def test_duplicate_rule_names_are_refused():
    with pytest.raises(log_scanner.RuleError, match="unique"):
        log_scanner.compile_rules([{"name": "a", "keywords": ["x"]}, {"name": "a", "keywords": ["y"]}])


def scan_bytes(tmp_path, data, chunk_bytes, line_limit=log_scanner.LINE_LIMIT_BYTES, start=0, end=None,
               final=False, skip_partial=False):
    path = tmp_path / "log"
    path.write_bytes(data)
    counter = counter_for({"name": "err", "keywords": ["ERROR"]}, {"name": "any", "pattern": "^."})
    fd = os.open(str(path), os.O_RDONLY)
    try:
        resume = log_scanner.scan_range(fd, start, len(data) if end is None else end, counter, skip_partial, final,
                                        chunk_bytes, line_limit)
    finally:
        os.close(fd)
    return counter, resume


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 64, 4096])
def test_chunk_boundaries_never_change_the_counts(tmp_path, chunk_bytes):
    rng = random.Random(chunk_bytes)
    lines = []
    for number in range(300):
        word = rng.choice(["ok", "ERROR", "x ERROR y ERROR", "", "warn"])
        lines.append("%d %s" % (number, word) if word else "")
    data = ("\n".join(lines) + "\n").encode()
    counter, (resume, skip, read) = scan_bytes(tmp_path, data, chunk_bytes)
    assert counter.counts == {"err": sum("ERROR" in line for line in lines), "any": sum(bool(line) for line in lines)}
    assert (resume, skip, read) == (len(data), False, len(data))


@pytest.mark.parametrize("chunk_bytes", [1, 5, 4096])
def test_partial_last_line_waits_until_complete(tmp_path, chunk_bytes):
    counter, (resume, skip, _read) = scan_bytes(tmp_path, b"ERROR one\nERROR par", chunk_bytes)
    assert counter.counts["err"] == 1 and (resume, skip) == (10, False)
    counter, (resume, skip, _read) = scan_bytes(tmp_path, b"ERROR one\nERROR partial\n", chunk_bytes, start=resume)
    assert counter.counts["err"] == 1 and resume == 24


def test_final_file_counts_its_unterminated_last_line(tmp_path):
    counter, (resume, _skip, _read) = scan_bytes(tmp_path, b"ok\nERROR at the end", 4, final=True)
    assert counter.counts["err"] == 1 and resume == 19


def test_overlong_line_is_counted_once_on_its_head_and_memory_stays_bounded(tmp_path):
    line_limit = 100
    data = b"x" * 50 + b"ERROR" + b"y" * 5000 + b"\nERROR short\n" + b"z" * 300
    counter, (resume, skip, _read) = scan_bytes(tmp_path, data, 64, line_limit=line_limit)
    # the overlong line (head has ERROR) and the short one; the 300-byte partial tail is counted now
    # on its head and skipped next time, so a budget smaller than a line never stalls the reader
    assert counter.counts == {"err": 2, "any": 3}
    assert (resume, skip) == (len(data), True)
    counter, (resume, skip, _read) = scan_bytes(tmp_path, data + b"ERROR in the tail\nERROR next\n", 64,
                                                line_limit=line_limit, start=resume, skip_partial=True)
    assert counter.counts == {"err": 1, "any": 1} and skip is False


def test_error_in_the_cut_off_tail_of_an_overlong_line_is_not_seen(tmp_path):
    data = b"a" * 500 + b" ERROR\n"
    counter, _resume = scan_bytes(tmp_path, data, 64, line_limit=100)
    assert counter.counts == {"err": 0, "any": 1}


def test_tail_start_begins_after_the_last_newline(tmp_path):
    path = tmp_path / "log"
    for content, expected in [(b"", (0, False)), (b"one\ntwo\n", (8, False)), (b"one\ntw", (4, False)),
                              (b"no newline yet", (0, False)), (b"x" * 100, (100, True))]:
        path.write_bytes(content)
        fd = os.open(str(path), os.O_RDONLY)
        try:
            assert log_scanner.tail_start(fd, len(content), window=50) == expected, content
        finally:
            os.close(fd)


# ---- LogScan: whole runs over real files, rotated by the real logrotate --------------------------------

LOGROTATE = "/usr/sbin/logrotate"
needs_logrotate = pytest.mark.skipif(not os.path.exists(LOGROTATE), reason="logrotate is not installed")


class LogRig(object):
    """A log directory, a logrotate config for it, and scans that save offsets between them."""

    def __init__(self, tmp_path, mode="create", extra="", keep=9):
        self.dir = tmp_path / "logs"
        self.dir.mkdir(mode=0o755)
        self.log = self.dir / "app.log"
        self.log.write_bytes(b"")
        self.state_dir = str(tmp_path / "state")
        self.logrotate_state = str(tmp_path / "logrotate.status")
        self.conf = tmp_path / "logrotate.conf"
        self.conf.write_text("%s {\n  rotate %d\n  %s\n  missingok\n%s}\n" % (self.log, keep, mode, extra))

    def append(self, text):
        with open(str(self.log), "ab") as handle:
            handle.write(text.encode("utf-8") if not isinstance(text, bytes) else text)

    def rotate(self):
        time.sleep(0.01)  # distinct mtimes, as between real log writes
        subprocess.run([LOGROTATE, "-s", self.logrotate_state, "-f", str(self.conf)], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)

    def scan(self, paths=None, start_at="beginning", max_bytes=None, rules=None, check_mode=False):
        counter = log_scanner.RuleCounter(log_scanner.compile_rules(
            rules or [{"name": "err", "keywords": ["ERROR"], "severity": "critical"}]))
        with log_offsets.OffsetStore(self.state_dir, check_mode=check_mode) as store:
            scan = log_scanner.LogScan(paths or [str(self.log)], counter, store, start_at, max_bytes)
            facts = scan.run()
            changed = store.save()
        facts["changed"] = changed
        facts["warnings"] = scan.warnings
        return facts


def errors(facts):
    return facts["rules"]["err"]["count"]


def events(facts, path=None):
    return dict((item["path"], item["events"]) for item in facts["files"]) if path is None else \
        [item["events"] for item in facts["files"] if item["path"] == path][0]


@needs_logrotate
@pytest.mark.parametrize("mode, rotated_event", [("create", "rotated"), ("copytruncate", "truncated")])
def test_exact_counts_through_appends_rotations_truncations_and_partial_lines(tmp_path, mode, rotated_event):
    rig = LogRig(tmp_path, mode)
    rig.append("ERROR 1\nok\n")
    first = rig.scan()
    assert (errors(first), events(first, str(rig.log)), first["changed"]) == (1, ["new"], True)

    rig.append("ERROR 2 written before the rotation\n")
    rig.rotate()
    rig.append("ERROR 3\nERROR 4\n")
    after_rotation = rig.scan()
    assert errors(after_rotation) == 3
    assert events(after_rotation, str(rig.log)) == [rotated_event]

    rig.append("ERROR 5\nERROR 6 part")
    assert errors(rig.scan()) == 1
    rig.append("ial\n")
    completed = rig.scan()
    assert errors(completed) == 1 and completed["rules"]["err"]["samples"] == ["ERROR 6 partial"]

    # two rotations between runs: the tracked file is now .2 and a whole generation sits in .1
    rig.append("ERROR 7\n")
    rig.rotate()
    rig.append("ERROR 8\n")
    rig.rotate()
    rig.append("ERROR 9\n")
    assert errors(rig.scan()) == 3

    idle = rig.scan()
    assert (errors(idle), idle["changed"]) == (0, False)

    # rotated with an unfinished last line: that file will not grow again, so the line counts now
    rig.append("ERROR 10 unfinished")
    rig.rotate()
    rig.append("ERROR 11\n")
    assert errors(rig.scan()) == 2
    assert errors(rig.scan()) == 0


@needs_logrotate
def test_truncated_in_place_without_a_copy_starts_again(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR 1\nERROR 2\n")
    rig.scan()
    with open(str(rig.log), "wb") as handle:  # truncate, as `> app.log` does
        handle.write(b"ERROR 3\n")
    facts = rig.scan()
    assert (errors(facts), events(facts, str(rig.log))) == (1, ["truncated"])
    with open(str(rig.log), "wb") as handle:  # refilled past the old offset: the first bytes differ
        handle.write(b"ERROR 4 is longer than what was there\n")
    facts = rig.scan()
    assert (errors(facts), events(facts, str(rig.log))) == (1, ["truncated"])


@needs_logrotate
def test_a_quiet_log_copytruncated_between_runs_is_read_from_its_copy(tmp_path):
    rig = LogRig(tmp_path, "copytruncate")
    rig.scan()  # empty: nothing to recognise the file by later but its copies' timing
    rig.append("ERROR 1\nERROR 2\n")
    rig.rotate()
    facts = rig.scan()
    assert (errors(facts), events(facts, str(rig.log))) == (2, ["truncated"])
    assert errors(rig.scan()) == 0


def test_a_backup_copy_of_a_small_log_is_not_mistaken_for_copytruncate(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR 1\n")
    rig.scan()
    rig.append("ERROR 2\n")
    shutil.copyfile(str(rig.log), str(rig.log) + ".bak")
    rig.append("ERROR 3\n")
    facts = rig.scan()
    assert (errors(facts), events(facts, str(rig.log))) == (2, [])


@needs_logrotate
def test_delaycompress_keeps_the_rotated_file_readable(tmp_path):
    rig = LogRig(tmp_path, "create", "  compress\n  delaycompress\n")
    rig.append("ERROR 1\n")
    rig.scan()
    for number in (2, 3):
        rig.append("ERROR %d before rotation\n" % number)
        rig.rotate()
        rig.append("ERROR %d after rotation\n" % number)
        assert errors(rig.scan()) == 2
    assert sorted(os.listdir(str(rig.dir))) == ["app.log", "app.log.1", "app.log.2.gz"]


@needs_logrotate
def test_compressed_at_once_loses_the_tail_and_says_so(tmp_path):
    rig = LogRig(tmp_path, "create", "  compress\n")
    rig.append("ERROR 1\n")
    rig.scan()
    rig.append("ERROR 2 lost in app.log.1.gz\n")
    rig.rotate()
    rig.append("ERROR 3\n")
    facts = rig.scan()
    assert errors(facts) == 1
    assert len(facts["warnings"]) == 1 and "no uncompressed rotated copy" in facts["warnings"][0]


def test_renamed_away_then_recreated_is_finished_then_read_from_its_start(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR 1\n")
    rig.scan(start_at="end")
    rig.append("ERROR 2\n")
    os.rename(str(rig.log), str(rig.log) + "-20261125")
    facts = rig.scan(start_at="end")
    assert (errors(facts), events(facts, str(rig.log))) == (1, ["missing"])
    assert errors(rig.scan(start_at="end")) == 0
    rig.append("ERROR 3\nERROR 4\n")
    facts = rig.scan(start_at="end")
    assert (errors(facts), events(facts, str(rig.log))) == (2, ["new"])


def test_a_literal_path_that_appears_after_a_run_is_read_from_its_start(tmp_path):
    rig = LogRig(tmp_path)
    later = str(rig.dir / "later.log")
    first = rig.scan([later], start_at="end")
    assert (events(first, later), first["changed"]) == (["missing"], True)
    idle = rig.scan([later], start_at="end")
    assert (events(idle, later), idle["changed"]) == (["missing"], False)
    with open(later, "w") as handle:
        handle.write("ERROR written before the next run\n")
    facts = rig.scan([later], start_at="end")
    assert (errors(facts), events(facts, later)) == (1, ["new"])


def test_start_at_end_skips_what_was_there_but_not_an_unfinished_line(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR old\nERROR half")
    assert errors(rig.scan(start_at="end")) == 0
    rig.append(" done\nERROR new\n")
    facts = rig.scan(start_at="end")
    assert errors(facts) == 2 and facts["rules"]["err"]["samples"] == ["ERROR half done", "ERROR new"]


def test_globs_pick_up_new_files_and_report_vanished_ones_once(tmp_path):
    rig = LogRig(tmp_path)
    pattern = str(rig.dir / "*.log")
    rig.append("ERROR before the first run\n")
    first = rig.scan([pattern], start_at="end")
    assert errors(first) == 0 and events(first) == {str(rig.log): ["new"]}
    rig.append("ERROR a\n")
    other = rig.dir / "other.log"
    other.write_text("ERROR b1\nERROR b2\n")
    (rig.dir / "ignored.txt").write_text("ERROR not matched\n")
    second = rig.scan([pattern], start_at="end")
    # other.log appeared after the glob's first run: all of it is new
    assert errors(second) == 3 and events(second) == {str(rig.log): [], str(other): ["new"]}
    other.unlink()
    third = rig.scan([pattern], start_at="end")
    assert events(third) == {str(rig.log): [], str(other): ["missing"]}
    assert events(rig.scan([pattern], start_at="end")) == {str(rig.log): []}


@needs_logrotate
def test_a_glob_that_also_matches_rotated_names_counts_each_line_once(tmp_path):
    rig = LogRig(tmp_path)
    pattern = str(rig.dir / "app.log*")
    rig.append("ERROR 1\n")
    rig.scan([pattern])
    rig.append("ERROR 2\n")
    rig.rotate()
    rig.append("ERROR 3\n")
    facts = rig.scan([pattern])
    assert errors(facts) == 2
    assert events(facts) == {str(rig.log): ["rotated"], str(rig.log) + ".1": []}


def test_unreadable_paths_give_a_per_file_error_and_the_rest_is_scanned(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR 1\n")
    fifo = str(tmp_path / "fifo.log")
    os.mkfifo(fifo)
    directory = str(tmp_path / "dir.log")
    os.mkdir(directory)
    missing = str(tmp_path / "missing.log")
    facts = rig.scan([fifo, directory, missing, str(rig.log)])
    by_path = dict((item["path"], item) for item in facts["files"])
    assert by_path[fifo]["error"] == "%s is a FIFO, not a regular file; give the path of a log file" % fifo
    assert "is a directory" in by_path[directory]["error"]
    assert by_path[missing]["events"] == ["missing"] and by_path[missing]["error"] is None
    assert errors(facts) == 1 and by_path[str(rig.log)]["error"] is None


ENGINE_AS_NOBODY = """
import json, sys
from ansible_collections.fleetops.health.plugins.module_utils import log_offsets, log_scanner
counter = log_scanner.RuleCounter(log_scanner.compile_rules([{"name": "err", "keywords": ["ERROR"]}]))
with log_offsets.OffsetStore(sys.argv[1]) as store:
    facts = log_scanner.LogScan(sys.argv[2:], counter, store, "beginning").run()
    store.save()
print(json.dumps(facts))
"""


@pytest.fixture
def world_readable_tmp():
    """pytest's tmp_path sits under a 0700 directory that nobody cannot enter."""
    path = tempfile.mkdtemp(prefix="log_scan_nobody.", dir="/tmp")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/runuser"), reason="needs root to switch users")
def test_a_file_the_user_cannot_read_is_an_error_for_that_file_only(world_readable_tmp):
    # root reads everything, so run the scanner as nobody with the system python on a 0600 root file
    tmp_path = world_readable_tmp
    secret = tmp_path / "secret.log"
    secret.write_text("ERROR hidden\n")
    secret.chmod(0o600)
    public = tmp_path / "public.log"
    public.write_text("ERROR visible\n")
    public.chmod(0o644)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chown(str(state_dir), 65534, 65534)
    # .../<root>/ansible_collections/fleetops/health/plugins/module_utils/log_scanner.py
    collections_root = log_scanner.__file__
    for _level in range(6):
        collections_root = os.path.dirname(collections_root)
    out = subprocess.run(["/usr/sbin/runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", ENGINE_AS_NOBODY,
                          str(state_dir), str(secret), str(public)],
                         env={"PYTHONPATH": collections_root, "PATH": "/usr/bin:/bin"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    by_path = dict((item["path"], item) for item in facts["files"])
    assert by_path[str(secret)]["error"] == ("cannot read %s as uid 65534: Permission denied (owner uid 0, mode 0600)"
                                             % secret)
    assert by_path[str(public)]["error"] is None and facts["rules"]["err"]["count"] == 1


def test_max_bytes_leaves_a_backlog_that_later_runs_drain_exactly(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("".join("ERROR %04d\n" % number for number in range(100)))  # 11 bytes a line
    first = rig.scan(max_bytes=250)
    assert (first["files"][0]["bytes_scanned"], first["files"][0]["backlog_bytes"]) == (250, 850)
    total, runs = errors(first), 1
    while rig.scan(check_mode=True)["files"][0]["bytes_scanned"] and runs < 20:
        facts = rig.scan(max_bytes=250)
        total += errors(facts)
        runs += 1
    assert (total, runs) == (100, 5)
    assert facts["files"][0]["backlog_bytes"] == 0


def test_max_bytes_is_shared_by_a_renamed_file_and_its_successor(tmp_path):
    rig = LogRig(tmp_path)
    rig.scan()
    rig.append("ERROR old\n" * 30)  # 300 bytes
    os.rename(str(rig.log), str(rig.log) + ".1")
    rig.append("ERROR new\n" * 10)
    first = rig.scan(max_bytes=200)
    assert (errors(first), first["files"][0]["backlog_bytes"]) == (20, 100 + 100)
    second = rig.scan(max_bytes=200)
    assert (errors(second), events(second, str(rig.log))) == (20, ["rotated"])
    assert errors(rig.scan(max_bytes=200)) == 0


class AppendingCounter(log_scanner.RuleCounter):
    """A writer that appends while the scan is running (after the scanner took the file size)."""

    def __init__(self, rules, path):
        super(AppendingCounter, self).__init__(rules)
        self.path = path

    def match_block(self, buf, begin, end):
        with open(self.path, "ab") as handle:
            handle.write(b"ERROR appended during the scan\n")
        super(AppendingCounter, self).match_block(buf, begin, end)


def test_lines_appended_during_a_scan_are_counted_by_the_next_run_only(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR 0\nERROR 1\n")
    rules = log_scanner.compile_rules([{"name": "err", "keywords": ["ERROR"]}])
    counter = AppendingCounter(rules, str(rig.log))
    with log_offsets.OffsetStore(rig.state_dir) as store:
        log_scanner.LogScan([str(rig.log)], counter, store, "beginning", chunk_bytes=8).run()
        store.save()
    appended = counter.counts["err"]
    assert appended == 2
    writes = open(str(rig.log), "rb").read().count(b"appended during")
    assert writes >= 2 and errors(rig.scan()) == writes


def test_many_small_logs_cost_no_listing_when_unchanged_and_one_per_directory_when_changed(tmp_path, monkeypatch):
    """The copytruncate search used to list the folder once per small file: quadratic in the number of files."""
    rig = LogRig(tmp_path)
    for index in range(300):
        (rig.dir / ("app%03d.log" % index)).write_text("ERROR %d\n" % index)
    pattern = str(rig.dir / "app*.log")
    assert errors(rig.scan([pattern])) == 300
    listed = []
    real_listdir = os.listdir

    def counting_listdir(path="."):
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", counting_listdir)
    unchanged = rig.scan([pattern])
    assert errors(unchanged) == 0 and listed.count(str(rig.dir)) == 0
    for index in range(300):
        with open(str(rig.dir / ("app%03d.log" % index)), "a") as handle:
            handle.write("ERROR again\n")
    # a folder changed within the last second is listed anew each time (see LISTING_TRUST_AFTER_NS)
    long_ago = time.time_ns() - 10 * 10 ** 9
    os.utime(str(rig.dir), ns=(long_ago, long_ago))
    appended = rig.scan([pattern])
    assert errors(appended) == 300 and listed.count(str(rig.dir)) == 1


def test_inode_reused_by_another_file_is_treated_as_new(tmp_path):
    rig = LogRig(tmp_path)
    rig.append("ERROR 1\nERROR 2\n")
    rig.scan()
    # Pretend the tracked file lived at another path and had other first bytes: a reused inode.
    with log_offsets.OffsetStore(rig.state_dir) as store:
        entry = list(store.files.values())[0]
        entry["path"], entry["fp"] = str(tmp_path / "deleted.log"), "0" * 64
        store.save()
    facts = rig.scan()
    assert (errors(facts), events(facts, str(rig.log))) == (2, ["new"])


def error_lines_on_disk(rig):
    """What a perfect reader would have counted: every ERROR line in the rotated files (they are final,
    so an unfinished last line counts) plus the complete ERROR lines of the live file."""
    total = 0
    for name in os.listdir(str(rig.dir)):
        data = (rig.dir / name).read_bytes()
        if name == "app.log":
            data = data[:data.rfind(b"\n") + 1]
        total += sum(b"ERROR" in line for line in data.split(b"\n"))
    return total


RANDOM_CASES = ([(mode, seed, False) for mode in ("create", "copytruncate") for seed in range(1, 7)]
                + [("create", seed, True) for seed in (1, 2, 3)]
                # renames by hand (odd seeds) mixed with copytruncate under such a glob are not supported
                + [("copytruncate", seed, True) for seed in (2, 4)])


@needs_logrotate
@pytest.mark.parametrize("mode, seed, glob_rotated_names", RANDOM_CASES)
def test_random_sequences_of_appends_rotations_and_scans_count_every_line_once(tmp_path, mode, seed,
                                                                               glob_rotated_names):
    """Appends with unfinished lines, logrotate runs (several between scans), renames by hand (odd seeds),
    scans with and without max_bytes, optionally through a glob that matches the rotated files too: in the
    end every ERROR line is counted exactly once."""
    rng = random.Random(seed)
    rig = LogRig(tmp_path, mode, keep=99)
    paths = [str(rig.dir / "app.log*")] if glob_rotated_names else None
    pieces = ["ERROR {n}\n", "ok {n}\n", "ERROR unfinished {n}", " then finished {n}\n", "\n"]
    counted = errors(rig.scan(paths))  # tracking starts here, before any rotation
    for step in range(60):
        action = rng.random()
        if action < 0.5:
            rig.append("".join(rng.choice(pieces).format(n=step) for _piece in range(rng.randrange(1, 6))))
        elif action < 0.55 and seed % 2 and rig.log.exists():
            os.rename(str(rig.log), "%s-manual%d" % (rig.log, step))
        elif action < 0.7:
            rig.rotate()
        else:
            counted += errors(rig.scan(paths, max_bytes=rng.choice([None, None, 64])))
    for _drain in range(20):  # what max_bytes left behind
        facts = rig.scan(paths)
        counted += errors(facts)
        if not any(item["bytes_scanned"] for item in facts["files"]):
            break
    assert counted == error_lines_on_disk(rig)


# ---- Counts equal grep's ------------------------------------------------------------------------------

# Rules that overlap (one line often counts for several), each with the grep that counts the same lines.
# grep runs with LC_ALL=C and -a: bytes, ASCII case folding, no "binary file" shortcut, as log_scan.
RULES_AND_GREPS = [
    ({"name": "error", "keywords": ["ERROR"]}, [["-cE", "ERROR"]]),
    ({"name": "error_disk", "pattern": "ERROR.*disk"}, [["-cE", "ERROR.*disk"]]),
    ({"name": "error_or_fail_any_case", "keywords": ["error", "fail"], "ignore_case": True},
     [["-ciE", "error|fail"]]),
    ({"name": "http_5xx", "pattern": r"status=5\d\d"}, [["-cE", "status=5[0-9][0-9]"]]),
    ({"name": "timeout_after", "pattern": r"timeout\s+after"}, [["-cE", "timeout[[:space:]]+after"]]),
    ({"name": "exception_not_retryable", "keywords": ["Exception"], "exclude": "Retryable"},
     [["-E", "Exception"], ["-cvE", "Retryable"]]),
    ({"name": "kernel_line", "pattern": r"^\S+ kernel:"}, [["-cE", "^[^[:space:]]+ kernel:"]]),
]
GREP_LINE_PARTS = ["ERROR", "error", "Error", "fail", "FAILED", "disk", "status=503", "status=200", "status=5x1",
                   "timeout after", "timeout", "after", "timeout \t after", "java.io.IOException",
                   "RetryableException", "kernel:", "kernel: x", "ok", "", "\r", "\xc3\xa9chec", "\xff\xfe"]


def grep_count(path, stages):
    """Lines of ``path`` that pass every grep in ``stages`` (the last one counts them)."""
    data = None
    env = dict(os.environ, LC_ALL="C")
    for index, args in enumerate(stages):
        command = ["grep", "-a"] + args + ([] if data is not None else [str(path)])
        done = subprocess.run(command, input=data, stdout=subprocess.PIPE, env=env, timeout=60, check=False)
        assert done.returncode in (0, 1), command
        data = done.stdout
    return int(data.decode().strip())


@pytest.mark.parametrize("chunk_bytes", [4096, log_scanner.CHUNK_BYTES])
def test_counts_equal_grep_for_overlapping_rules(tmp_path, chunk_bytes):
    rng = random.Random(16)
    lines = []
    for number in range(20000):
        parts = [rng.choice(GREP_LINE_PARTS) for _part in range(rng.randrange(0, 4))]
        host, text = rng.choice(["web-1", "db", ""]), " ".join(parts)
        shape = rng.random()
        if shape < 0.05:
            lines.append("%s kernel: %s" % (host, text))
        elif shape < 0.97:
            lines.append("%s app[%d]: %s" % (host, number, text))
        else:
            lines.append(text)
    # a line split by a newline in the middle of a spanning match: neither half counts for timeout_after
    lines.append("timeout")
    lines.append("after")
    path = tmp_path / "app.log"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    counter = log_scanner.RuleCounter(log_scanner.compile_rules([rule for rule, _grep in RULES_AND_GREPS]))
    with log_offsets.OffsetStore(str(tmp_path / "state")) as store:
        facts = log_scanner.LogScan([str(path)], counter, store, "beginning", chunk_bytes=chunk_bytes).run()
    counted = dict((name, rule["count"]) for name, rule in facts["rules"].items())
    grepped = dict((rule["name"], grep_count(path, stages)) for rule, stages in RULES_AND_GREPS)
    assert counted == grepped, (counted, grepped)
    # the rules do overlap, and each of them matches something
    assert all(grepped.values()) and grepped["error"] < grepped["error_or_fail_any_case"] < sum(grepped.values())
