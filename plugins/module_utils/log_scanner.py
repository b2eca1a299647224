# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Log rules over large chunks, and the incremental scan of log files that resumes from saved offsets.

Speed comes from letting the regex engine walk whole 8 MiB chunks: one compiled search per literal or
pattern, run straight over the chunk, instead of a Python loop per line. Python only wakes up on a match,
to find that line's bounds. Alternations and IGNORECASE defeat the engine's literal search (about 200 MB/s
against 3 GB/s here), so keywords are searched one by one, and case-blind keywords are searched in a
lowercased copy of the chunk made once for all such rules.

Two bounds keep a hostile line or rule from holding a run (and its offsets lock) for ever. Every
pattern search has a timeout: a rule that needs more than RULE_LINE_TIMEOUT seconds on one line skips
that line, is reported, and the scan goes on. And the run has a time budget: when it runs out the scan
stops at a line boundary, saves the offset it reached and says it is incomplete. The timeout is the
``regex`` module's (Debian python3-regex) when it is importable. Without it, patterns run on the
standard ``re``, which has no timeout but checks for signals while it backtracks, so SIGALRM ends a
runaway search; that works in the main thread only (as in a module), elsewhere only the budget holds,
checked between chunks.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import stat
import threading
import time

from ansible_collections.fleetops.health.plugins.module_utils import log_offsets

try:
    import regex as timed_regex  # supports search(..., timeout=)
except ImportError:  # pragma: no cover - depends on the host
    timed_regex = None

CHUNK_BYTES = 8 * 1024 * 1024
# A line longer than this that crosses a chunk boundary is matched on its first LINE_LIMIT_BYTES only.
LINE_LIMIT_BYTES = 1024 * 1024
SEVERITY_ORDER = ("none", "info", "warning", "critical")
# Most seconds one pattern rule may spend on one line (with the regex module); the line is then skipped.
RULE_LINE_TIMEOUT = 1.0
# Bounds of the module's time_budget option, in seconds.
TIME_BUDGET_MIN = 0.1
TIME_BUDGET_MAX = 3600.0
# Rule timeouts listed in the facts; more are counted only.
RULE_TIMEOUTS_LISTED = 20


class OutOfTime(Exception):
    """The run's time budget ran out while a block was being matched.

    ``stop`` is where, in the block's buffer, the first line that was not counted begins: every line
    before it was counted for every rule, none from it on.
    """

    def __init__(self, stop=None):
        super(OutOfTime, self).__init__("time budget ran out")
        self.stop = stop


class _SlowBlock(Exception):
    """A rule timed out somewhere in a block: match that block line by line instead."""


class RuleError(ValueError):
    """A rule cannot be compiled; the message names the rule and the option."""


class LogRule(object):
    """One compiled rule: ``searches`` are run over the chunk (or its lowercased copy when ``on_lowered``).

    ``timed``: its searches are the user's regular expressions and get a timeout (patterns, not the
    escaped keywords); ``exclude`` always does.
    """

    def __init__(self, name, severity, searches, on_lowered, exclude, timed=False):
        self.name = name
        self.severity = severity
        self.searches = searches
        self.on_lowered = on_lowered
        self.exclude = exclude
        self.timed = timed
        self.exclude_timed = exclude is not None


def regex_engine():
    """The engine that runs pattern rules: ``regex`` (bounded per line) or ``re`` (bounded by the run budget)."""
    return "re" if timed_regex is None else "regex"


def _compile(source, ignore_case, where):
    engine = timed_regex or re
    try:
        return engine.compile(source.encode("utf-8"), engine.MULTILINE | (engine.IGNORECASE if ignore_case else 0))
    except (engine.error, re.error) as exc:
        raise RuleError("%s: invalid regular expression %r (%s)" % (where, source, exc))


def compile_rules(rule_specs):
    """Build LogRules from the module's ``rules`` option (dicts with name, pattern|keywords, severity, ...)."""
    if not rule_specs:
        raise RuleError("give at least one rule; with none the offsets would move past lines no rule has seen")
    rules = []
    names = set()
    for index, spec in enumerate(rule_specs):
        where = "rules[%d] (%s)" % (index, spec.get("name"))
        if spec["name"] in names:
            raise RuleError("%s: rule names must be unique" % where)
        names.add(spec["name"])
        ignore_case = bool(spec.get("ignore_case"))
        keywords = spec.get("keywords")
        if keywords:
            if any(not keyword for keyword in keywords):
                raise RuleError("%s.keywords: keywords must not be empty strings" % where)
            # bytes.lower() folds ASCII only, like a bytes regex with IGNORECASE.
            encoded = [keyword.encode("utf-8") for keyword in keywords]
            searches = [re.compile(re.escape(keyword.lower() if ignore_case else keyword)) for keyword in encoded]
            on_lowered = ignore_case
            timed = False  # escaped literals: linear on any line
        elif spec.get("pattern"):
            searches = [_compile(spec["pattern"], ignore_case, where + ".pattern")]
            on_lowered = False
            timed = True
        else:
            raise RuleError("%s: give either pattern or keywords" % where)
        exclude = _compile(spec["exclude"], ignore_case, where + ".exclude") if spec.get("exclude") else None
        rules.append(LogRule(spec["name"], spec.get("severity") or "warning", searches, on_lowered, exclude, timed))
    return rules


class RuleCounter(object):
    """Counts, per rule, the complete lines that match (once per line), and keeps the first samples.

    ``deadline`` (a time.monotonic() value, set by LogScan) ends matching with OutOfTime. ``origin_path``
    and ``origin_offset`` say where the block being matched comes from, so that a line on which a rule
    timed out is reported by file and offset.
    """

    def __init__(self, rules, samples=5, sample_max_len=500, line_timeout=RULE_LINE_TIMEOUT):
        self.rules = rules
        self.max_samples = samples
        self.sample_max_len = sample_max_len
        self.line_timeout = line_timeout
        self.counts = dict((rule.name, 0) for rule in rules)
        self.samples = dict((rule.name, []) for rule in rules)
        self._needs_lowered = any(rule.on_lowered for rule in rules)
        self.deadline = None
        self.stopped = False  # a scan stopped early because the budget ran out
        self.progressed = False  # some block or line has been counted in this run
        self.collecting = False  # matching, not yet counting
        self.search_alarm = None  # a _SearchAlarm when re searches can be timed with SIGALRM
        self.origin_path = None
        self.origin_offset = 0
        self.rule_timeouts = []
        self.rule_timeout_count = 0

    def out_of_time(self):
        """Past the deadline, once this run has counted something: a run always gets past at least one
        block or line, so that a budget too short for one hostile line cannot stall every run there."""
        return self.deadline is not None and self.progressed and time.monotonic() >= self.deadline

    def match_block(self, buf, begin, end):
        """Count the lines of ``buf[begin:end]``; ``begin`` starts a line and ``end`` ends one (after its newline).

        Each rule runs over the whole block, and nothing is counted until all have. When a rule times out
        somewhere in the block, the block is matched again line by line (every rule on one line, then the
        next line), so that a line a rule times out on is skipped for that rule only, and the time budget
        can stop the scan after the last line counted. OutOfTime(stop) says where that is.
        """
        lowered = buf.lower() if self._needs_lowered else None
        self.collecting = True
        try:
            if self.out_of_time():
                raise OutOfTime(begin)
            found_per_rule = [self._rule_lines(rule, lowered if rule.on_lowered else buf, buf, begin, end, False)
                              for rule in self.rules]
        except OutOfTime:
            raise OutOfTime(begin)
        except _SlowBlock:
            found_per_rule = None
        finally:
            self.collecting = False
        if found_per_rule is None:
            self._match_line_by_line(buf, lowered, begin, end)
        else:
            self._count(buf, found_per_rule)

    def _match_line_by_line(self, buf, lowered, begin, end):
        pos = begin
        while pos < end:
            line_end = buf.find(b"\n", pos, end)
            line_end = end if line_end < 0 else line_end + 1
            self.collecting = True
            try:
                found_per_rule = [self._rule_lines(rule, lowered if rule.on_lowered else buf, buf, pos, line_end, True)
                                  for rule in self.rules]
            except OutOfTime:
                raise OutOfTime(pos)
            finally:
                self.collecting = False
            self._count(buf, found_per_rule)
            pos = line_end

    def _count(self, buf, found_per_rule):
        self.progressed = True
        for rule, (lines, slow_lines) in zip(self.rules, found_per_rule):
            self._record(rule, buf, lines)
            for line_start in slow_lines:
                self._note_timeout(rule, line_start)

    def _rule_lines(self, rule, haystack, buf, begin, end, one_line):
        """``(lines, slow_lines)``: the lines that count for ``rule``, and the starts of lines it timed out on.

        With ``one_line`` false, a timeout raises _SlowBlock; with it true, that line is a slow one.
        """
        slow_lines = []
        if len(rule.searches) == 1:
            lines = self._matching_lines(rule.searches[0], haystack, begin, end, rule.timed, one_line, slow_lines)
        else:
            found = {}
            for search in rule.searches:
                found.update(self._matching_lines(search, haystack, begin, end, rule.timed, one_line, slow_lines))
            lines = sorted(found.items())
        if rule.exclude is not None:
            kept = []
            for line_start, line_end in lines:
                try:
                    if self._search(rule.exclude, buf, line_start, line_end, rule.exclude_timed) is None:
                        kept.append((line_start, line_end))
                except TimeoutError:
                    self._raise_if_out_of_time()
                    slow_lines.append(line_start)
            lines = kept
        return lines, slow_lines

    def _search(self, regex, haystack, pos, end, timed):
        if not timed:
            return regex.search(haystack, pos, end)
        timeout = self.line_timeout
        if self.deadline is not None and self.progressed:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise OutOfTime()
        if timed_regex is not None:
            return regex.search(haystack, pos, end, timeout=timeout)
        if self.search_alarm is not None:
            return self.search_alarm.search(regex, haystack, pos, end, timeout)
        return regex.search(haystack, pos, end)

    def _raise_if_out_of_time(self):
        if self.out_of_time():
            raise OutOfTime()

    def _matching_lines(self, regex, haystack, begin, end, timed, one_line, slow_lines):
        """``(line_start, line_end)`` of each line holding a match, line_end excluding the newline."""
        lines = []
        pos = begin
        while pos < end:
            try:
                match = self._search(regex, haystack, pos, end, timed)
                if match is None:
                    break
                line_start = haystack.rfind(b"\n", begin, match.start()) + 1 or begin
                line_end = haystack.find(b"\n", match.start(), end)
                if line_end < 0:
                    line_end = end
                # A pattern like \s may run across a newline; the line counts only if it matches on its own.
                if match.end() <= line_end or self._search(regex, haystack, line_start, line_end, timed) is not None:
                    lines.append((line_start, line_end))
            except TimeoutError:
                self._raise_if_out_of_time()
                if not one_line:
                    raise _SlowBlock()
                slow_lines.append(begin)
                break
            pos = line_end + 1
        return lines

    def _note_timeout(self, rule, line_start):
        self.rule_timeout_count += 1
        if len(self.rule_timeouts) < RULE_TIMEOUTS_LISTED:
            self.rule_timeouts.append({"rule": rule.name, "path": self.origin_path,
                                       "offset": self.origin_offset + line_start})

    def _record(self, rule, buf, lines):
        count = 0
        samples = self.samples[rule.name]
        for line_start, line_end in lines:
            count += 1
            if len(samples) < self.max_samples:
                samples.append(self._sample(buf[line_start:min(line_end, line_start + 4 * self.sample_max_len)]))
        self.counts[rule.name] += count

    def _sample(self, raw):
        return raw.decode("utf-8", "replace").rstrip("\r")[:self.sample_max_len]

    def facts(self):
        return dict((rule.name, {"count": self.counts[rule.name], "severity": rule.severity,
                                 "samples": self.samples[rule.name]}) for rule in self.rules)

    def highest_severity(self):
        hit = [SEVERITY_ORDER.index(rule.severity) for rule in self.rules if self.counts[rule.name]]
        return SEVERITY_ORDER[max(hit)] if hit else "none"


def scan_range(fd, start, end, counter, skip_partial=False, final=False,
               chunk_bytes=CHUNK_BYTES, line_limit=LINE_LIMIT_BYTES):
    """Feed the complete lines of ``[start, end)`` of ``fd`` to ``counter``.

    Returns ``(resume, skip_partial, bytes_read)``. ``resume`` is where the next run starts: after the last
    newline, so a partial last line is read again once complete and counted once. A partial line already
    longer than ``line_limit`` is counted now on its head and its tail is skipped next time
    (``skip_partial``), so a run never stalls on a line larger than its budget. ``final`` (a rotated file
    that will not grow) counts a last line that has no newline. Memory stays within about one chunk plus
    ``line_limit``.

    When the counter's time budget runs out, the scan stops at a line boundary (before the chunk it would
    read next, or at the start of the block it was matching) and sets ``counter.stopped``; ``resume``
    is then where it stopped.
    """
    pos = start
    head = b""          # first bytes (at most line_limit) of the line in progress
    head_len = 0        # its real length so far
    line_start = start  # file offset where the line in progress began
    discarding = skip_partial
    while pos < end:
        if counter.out_of_time():
            counter.stopped = True
            final = False  # the file is not read to its end: its last line is not the last one
            break
        data = os.pread(fd, min(chunk_bytes, end - pos), pos)
        if not data:
            break  # the file shrank under us; the next run sees the truncation
        chunk_offset = pos
        pos += len(data)
        begin = 0
        try:
            if discarding or head_len:
                first_newline = data.find(b"\n")
                if first_newline < 0:
                    if not discarding:
                        head += data[:max(0, line_limit - len(head))]
                        head_len += len(data)
                    continue
                if not discarding:
                    counter.origin_offset = line_start
                    _match_line(counter, head + data[:min(first_newline, max(0, line_limit - len(head)))])
                discarding = False
                head, head_len = b"", 0
                begin = first_newline + 1
                line_start = chunk_offset + begin
            last_newline = data.rfind(b"\n", begin)
            if last_newline >= 0:
                counter.origin_offset = chunk_offset
                counter.match_block(data, begin, last_newline + 1)
                begin = last_newline + 1
                line_start = chunk_offset + begin
        except OutOfTime as exc:
            # the scan ends before the first line not counted, in the head line's buffer or the chunk's
            counter.stopped = True
            resume = counter.origin_offset + exc.stop
            return resume, False, resume - start
        if begin < len(data):
            head = data[begin:begin + line_limit]
            head_len = len(data) - begin
    bytes_read = pos - start
    if discarding:
        return pos, True, bytes_read
    if head_len and (final or head_len > line_limit):
        _match_line(counter, head)
        return pos, not final, bytes_read
    return (line_start if head_len else pos), False, bytes_read


def _match_line(counter, line):
    line += b"\n"
    counter.match_block(line, 0, len(line))


def tail_start(fd, size, window=64 * 1024):
    """Where ``start_at: end`` begins a file: ``(offset, skip_partial)`` just after its last newline."""
    block_start = max(0, size - window)
    block = os.pread(fd, size - block_start, block_start)
    newline = block.rfind(b"\n")
    if newline >= 0:
        return block_start + newline + 1, False
    if block_start == 0:
        return 0, False  # one unfinished line: count it once it is complete
    return size, True  # inside a line longer than the window: skip its tail


class LogScan(object):
    """One run over ``patterns`` (paths or globs) that resumes each file where the store left it."""

    def __init__(self, patterns, counter, store, start_at="end", max_bytes=None, chunk_bytes=CHUNK_BYTES,
                 time_budget=None):
        self.patterns = patterns
        self.counter = counter
        self.store = store
        self.start_at = start_at
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self.time_budget = time_budget
        # Half the budget at most, so a run always moves past a line that is longer than its budget.
        self.line_limit = max(1, min(LINE_LIMIT_BYTES, max_bytes // 2)) if max_bytes else LINE_LIMIT_BYTES
        self.warnings = []
        self._owners = {}
        self._live_keys = set()
        self._read_whole = set()
        self._finished_keys = set()  # rotated files read to their end in this run
        self._known_keys = _KnownKeys(self._finished_keys, store)
        self._rotated_names = set()  # paths of this run that are rotated names of another one (app.log.1)
        self._listings = log_offsets.DirectoryListings()

    def run(self):
        """Scan every path; within ``time_budget`` seconds (plus one chunk or one line's matching at most)."""
        if self.time_budget is not None:
            self.counter.deadline = time.monotonic() + self.time_budget
        if _SearchAlarm.usable():
            with _SearchAlarm() as alarm:
                self.counter.search_alarm = alarm
                try:
                    facts = self._run()
                finally:
                    self.counter.search_alarm = None
        else:
            facts = self._run()
        facts["incomplete"] = self.counter.stopped
        facts["regex_engine"] = regex_engine()
        facts["rule_timeouts"] = self.counter.rule_timeouts
        incomplete = [result for result in facts["files"] if result["incomplete"]]
        if incomplete:
            first = incomplete[0]
            self.warnings.append(
                "time_budget of %ss ran out: the scan stopped at a line boundary and saved the offsets it reached; "
                "%d file(s) not finished (first %s, %d bytes left); the next run goes on from there"
                % (self.time_budget, len(incomplete), first["path"], first["backlog_bytes"]))
        if self.counter.rule_timeout_count:
            first = self.counter.rule_timeouts[0]
            self.warnings.append(
                "%d line(s) took a rule more than %ss and were skipped for it (first: rule %s, %s at offset %d); "
                "simplify the pattern (nested repetition such as (a+)+ backtracks without end)"
                % (self.counter.rule_timeout_count, self.counter.line_timeout, first["rule"], first["path"],
                   first["offset"]))
        return facts

    def _run(self):
        self._listings = log_offsets.DirectoryListings()
        # Who owned each path before this run: a rename seen at one path must not hide a rotation at another.
        self._owners = dict((entry["path"], key) for key, entry in self.store.files.items())
        paths = self._paths_to_check()
        live_paths = set(paths)
        self._rotated_names = set(path for path in paths if _is_rotated_name(path, live_paths))
        self._live_keys = set()
        for path in paths:
            try:
                self._live_keys.add(log_offsets.identity_key(os.stat(path)))
            except OSError:
                pass
        # Live files first, so that a copy or generation that a glob also matches is known as one by then.
        results = dict((path, self._scan_path(path)) for path in sorted(paths, key=self._rotated_names.__contains__))
        return {
            "files": [results[path] for path in paths],
            "rules": self.counter.facts(),
            "total_matches": sum(self.counter.counts.values()),
            "highest_severity": self.counter.highest_severity(),
        }

    def _paths_to_check(self):
        """Literal paths, current glob matches, and tracked paths under these patterns that may have vanished."""
        paths = []
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                matches = [path for path in sorted(glob.glob(pattern)) if os.path.isfile(path)]
                if pattern in self.store.globs:
                    # The glob was scanned before, so a file it did not match then was created since.
                    self._read_whole.update(matches)
                else:
                    self.store.globs[pattern] = int(time.time())
                paths.extend(matches)
                pattern_re = re.compile(_glob_to_regex(pattern))
                paths.extend(path for path in sorted(self._owners) if pattern_re.match(path))
            else:
                paths.append(pattern)
        seen = set()
        return [path for path in paths if not (path in seen or seen.add(path))]

    def _scan_path(self, path):
        result = {"path": path, "bytes_scanned": 0, "backlog_bytes": 0, "events": [], "error": None,
                  "incomplete": False}
        self.counter.origin_path = path
        if self.counter.stopped or self.counter.out_of_time():
            # out of time before this file: it keeps its offset and waits for the next run
            self.counter.stopped = True
            result["incomplete"] = True
            try:
                result["backlog_bytes"] = max(0, os.stat(path).st_size - self._saved_offset(path))
            except OSError:
                pass
            return result
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            if not log_offsets.is_missing(exc):
                result["error"] = "cannot read %s as uid %d: %s%s" % (path, os.geteuid(), exc.strerror, _mode_hint(path))
                return result
            fd = None
        try:
            if fd is None:
                self._scan_missing(path, result)
            else:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    self._scan_file(fd, st, path, result)
                else:
                    result["error"] = "%s is %s, not a regular file; give the path of a log file" % (
                        path, _file_kind(st.st_mode))
        except OSError as exc:
            result["error"] = "reading %s failed: %s" % (path, exc.strerror)
        finally:
            if fd is not None:
                os.close(fd)
        return result

    def _saved_offset(self, path):
        owner = self._owners.get(path)
        entry = self.store.files.get(owner) if owner is not None else None
        return entry["offset"] if entry is not None and entry["path"] == path else 0

    def _scan_missing(self, path, result):
        result["events"].append("missing")
        owner = self._owners.get(path)
        if owner in self.store.files and self.store.files[owner]["path"] == path:
            # Rotated away and not recreated yet: finish the old file first.
            if not self._finish_rotated(path, owner, result, self.max_bytes)[0]:
                return
        # Whatever appears here later was written after this run: it will be read from its start.
        self.store.mark_gone(path)

    def _scan_file(self, fd, st, path, result):
        key = log_offsets.identity_key(st)
        size = st.st_size
        store = self.store
        if key in self._finished_keys:
            # A copy or rotated generation already read to its end in this run, that a glob matches too.
            store.files[key] = log_offsets.new_entry(fd, path, size, size)
            return
        entry = store.files.get(key)
        events = result["events"]
        if entry is not None and not log_offsets.fingerprint_matches(fd, entry):
            if entry["path"] == path:
                events.append("truncated")  # rewritten in place: copytruncate, then refilled past the offset
                self._finish_copy(path, entry, result, fd)
                entry["offset"] = 0
                entry.pop("skip_line", None)
            else:
                del store.files[key]  # an inode reused by another file
                entry = None
        budget = self.max_bytes
        owner = self._owners.get(path)
        skip_partial = False
        if owner is not None and owner != key and owner in store.files:
            events.append("rotated")
            finished, budget_used = self._finish_rotated(path, owner, result, budget)
            if not finished:
                result["backlog_bytes"] += size  # the old file keeps the budget; the new one waits its turn
                return
            if budget is not None:
                budget -= budget_used
        if entry is None:
            if not events:
                events.append("new")
            if path in store.gone:
                # Files made here and rotated away since the path was last seen empty-handed.
                self._read_later_generations(path, store.gone[path], result)
            if owner is not None or path in store.gone or path in self._read_whole or self.start_at == "beginning":
                start = 0
            else:
                start, skip_partial = tail_start(fd, size)
        elif size < entry["offset"]:
            events.append("truncated")
            self._finish_copy(path, entry, result, fd)
            start = 0
        else:
            start = entry["offset"]
            skip_partial = bool(entry.get("skip_line"))
            # Tracked while small: a size or first-bytes check may miss a copytruncate since then. A file
            # whose mtime has not moved since it was read was not truncated either, so it costs no search.
            if (log_offsets.has_weak_fingerprint(entry) and entry.get("mtime_ns") != st.st_mtime_ns
                    and self._finish_copy(path, entry, result, fd) is not None):
                events.append("truncated")
                start, skip_partial = 0, False
        end = size if budget is None else min(size, start + budget)
        # A rotated file that a glob also matches will not grow again: its unfinished last line counts now.
        resume, skip_partial, bytes_read = scan_range(fd, start, end, self.counter, skip_partial,
                                                      end == size and path in self._rotated_names,
                                                      self.chunk_bytes, self.line_limit)
        result["bytes_scanned"] += bytes_read
        result["backlog_bytes"] += size - (resume if self.counter.stopped else end)
        result["incomplete"] = self.counter.stopped
        if entry is None:
            entry = store.files[key] = log_offsets.new_entry(fd, path, size, resume)
        entry["path"] = path
        entry["offset"] = resume
        if skip_partial:
            entry["skip_line"] = True
        else:
            entry.pop("skip_line", None)
        log_offsets.refresh_fingerprint(fd, entry, size, reset="truncated" in events)
        if log_offsets.has_weak_fingerprint(entry):
            entry["mtime_ns"] = st.st_mtime_ns
        else:
            entry.pop("mtime_ns", None)
        store.gone.pop(path, None)

    def _finish_rotated(self, path, owner, result, budget):
        """Read the rest of the file that ``path`` held before, at its rotated name.

        Returns ``(finished, bytes taken from the budget)``. When the budget runs out first, the old file
        stays tracked under ``path`` and the next run goes on with it before the new file.
        """
        if owner in self._live_keys:
            return True, 0  # a glob matches its new name too: it is read there in this run
        entry = self.store.files[owner]
        found = log_offsets.open_renamed(path, owner, self._listings)
        if found is None:
            self.warnings.append("%s: the file read there before is gone and no uncompressed rotated copy of it was "
                                 "found next to it; what was written to it after offset %d was not read"
                                 % (path, entry["offset"]))
            del self.store.files[owner]
            return True, 0
        fd, rotated_path, st = found
        self.counter.origin_path = rotated_path
        try:
            start, skip_partial = entry["offset"], entry.get("skip_line", False)
            truncated = st.st_size < start or not log_offsets.fingerprint_matches(fd, entry)
            if truncated or log_offsets.has_weak_fingerprint(entry):
                # Truncated in place (copytruncate) before it was renamed: its old tail is in a copy. The
                # generations after that copy are read once this file is finished (maybe in a later run).
                copy_mtime_ns = self._finish_copy(path, entry, result, fd, read_generations=False)
                if copy_mtime_ns is not None:
                    entry["generations_after_ns"] = copy_mtime_ns
                    truncated = True
            if truncated:
                start, skip_partial = 0, False
                log_offsets.refresh_fingerprint(fd, entry, st.st_size, reset=True)
            end = st.st_size if budget is None else min(st.st_size, start + budget)
            resume, skip_partial, bytes_read = scan_range(fd, start, end, self.counter, skip_partial,
                                                          end == st.st_size, self.chunk_bytes, self.line_limit)
        finally:
            os.close(fd)
            self.counter.origin_path = path
        result["bytes_scanned"] += bytes_read
        if self.counter.stopped:
            end = resume
            result["incomplete"] = True
        if end < st.st_size:
            result["backlog_bytes"] += st.st_size - end
            entry["offset"] = resume
            entry["skip_line"] = skip_partial
            return False, bytes_read
        del self.store.files[owner]
        self._finished_keys.add(owner)
        self._read_later_generations(path, min(st.st_mtime_ns, entry.get("generations_after_ns", st.st_mtime_ns)),
                                     result)
        return True, bytes_read

    def _finish_copy(self, path, entry, result, truncated_fd, read_generations=True):
        """copytruncate: the lines written between the saved offset and the truncation are in the copy.

        Returns the copy's mtime (ns), or None when there is no copy.
        """
        found = log_offsets.open_copy(path, entry, self._known_keys, truncated_fd, self._listings)
        if found is None:
            return None
        fd, copy_path, st = found
        self.counter.origin_path = copy_path
        try:
            bytes_read = scan_range(fd, entry["offset"], st.st_size, self.counter, entry.get("skip_line", False),
                                    True, self.chunk_bytes, self.line_limit)[2]
        finally:
            os.close(fd)
            self.counter.origin_path = path
        result["bytes_scanned"] += bytes_read
        self._finished_keys.add(log_offsets.identity_key(st))
        if read_generations:
            self._read_later_generations(path, st.st_mtime_ns, result)
        return st.st_mtime_ns

    def _read_later_generations(self, path, after_mtime_ns, result):
        """Rotations between two runs leave whole generations never seen (app.log.1 when we had app.log.2)."""
        for generation in log_offsets.later_generations(path, after_mtime_ns, self._known_keys, self._listings):
            if self.counter.stopped:
                result["incomplete"] = True
                break
            try:
                fd = os.open(generation, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if log_offsets.identity_key(st) in self._known_keys:
                    continue  # replaced under that name since it was listed
                self.counter.origin_path = generation
                result["bytes_scanned"] += scan_range(fd, 0, st.st_size, self.counter, False, True,
                                                      self.chunk_bytes, self.line_limit)[2]
                self._finished_keys.add(log_offsets.identity_key(st))
            finally:
                os.close(fd)
                self.counter.origin_path = path


class _SearchAlarm(object):
    """A timeout for ``re`` searches: SIGALRM, whose handler raises TimeoutError inside the search.

    ``re`` checks for signals while it backtracks, so the handler's exception ends a runaway search. The
    handler is installed for one run and raises only while a search is armed. Signals reach the main
    thread only, so elsewhere ``usable()`` is false and searches are not timed.
    """

    def __init__(self):
        self._previous = None
        self._armed = False

    @staticmethod
    def usable():
        return (timed_regex is None and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread())

    def _ring(self, _signum, _frame):
        if self._armed:
            self._armed = False
            raise TimeoutError("pattern search timed out")

    def search(self, regex, haystack, pos, end, timeout):
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return regex.search(haystack, pos, end)
        finally:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGALRM, self._ring)
        return self

    def __exit__(self, *exc_info):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)


class _KnownKeys(object):
    """Identities tracked in the store or finished in this run, as one ``in`` test without building a set per call."""

    def __init__(self, finished_keys, store):
        self._finished_keys = finished_keys
        self._store = store

    def __contains__(self, key):
        return key in self._finished_keys or key in self._store.files


def _is_rotated_name(path, paths):
    """``app.log.1`` or ``app.log-20261125`` when ``app.log`` is in the set ``paths`` too."""
    start = len(os.path.dirname(path)) + 1
    return any(path[index] in ".-" and path[:index] in paths for index in range(start, len(path)))


def _glob_to_regex(pattern):
    """Like fnmatch.translate, but ``*`` and ``?`` stay within one path component, as glob does."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(char))
    return "".join(parts) + r"\Z"


def _file_kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _mode_hint(path):
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return " (owner uid %d, mode %04o)" % (st.st_uid, stat.S_IMODE(st.st_mode))
