#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: log_scan
short_description: Match log rules against the lines written since the last run, across log rotation
version_added: "0.1.0"
description:
  - Reads each log file from the offset saved by the previous run, counts the lines that match each rule,
    keeps a few sample lines, and saves the new offsets on the managed host.
  - Offsets are keyed by file identity (device, inode and a fingerprint of the first bytes), not by path.
    When a file was rotated by renaming (C(app.log) to C(app.log.1)), the rest of the old file is read at
    its new name, then the new file from its start. When a file was truncated in place (logrotate
    C(copytruncate)), the lines written before the truncation are read from the copy and the file again
    from its start.
  - A last line without its newline is not counted until it is complete, and then exactly once. Lines
    appended while the module runs are counted by this run or the next, never both.
  - Matching works on bytes. Invalid UTF-8 is replaced in samples. C(ignore_case) folds ASCII letters only.
author:
  - fleetops.health contributors (@fleetops)
options:
  paths:
    description:
      - Log files or shell globs. Files that start matching a glob are picked up on later runs.
      - A literal path that does not exist is reported with the event C(missing); it is not an error.
    type: list
    elements: path
    required: true
  rules:
    description:
      - The rules to count. Each line counts at most once per rule.
      - At least one rule. An empty list is refused, because the run would move the offsets past lines that no
        rule has seen.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the rule, the key under C(rules) in the result. Unique.
        type: str
        required: true
      pattern:
        description:
          - A Python regular expression, searched in each line. C(^) and C($) anchor at line bounds.
          - Mutually exclusive with O(rules[].keywords).
        type: str
      keywords:
        description:
          - Literal strings; a line matches when it contains any of them. Faster than an alternation.
          - Mutually exclusive with O(rules[].pattern).
        type: list
        elements: str
      severity:
        description: How bad a match is; the worst severity that matched is returned as C(highest_severity).
        type: str
        choices: [info, warning, critical]
        default: warning
      ignore_case:
        description: Match without regard to ASCII letter case (also for O(rules[].exclude)).
        type: bool
        default: false
      exclude:
        description: A regular expression; a line that matches it does not count for this rule.
        type: str
  state_dir:
    description:
      - Directory on the managed host where offsets are kept (C(offsets.json), mode 0600). Created (mode 0700)
        when missing, except in check mode, which fails the same way when the real run could not create it.
      - Several tasks may share it; each only updates the entries of its own files, holding the lock
        C(offsets.lock) for the whole scan.
      - A directory that is a symlink, is owned by another user or is writable by group or others is refused,
        and so are an C(offsets.json) or C(offsets.lock) that are symlinks.
    type: path
    default: /var/lib/fleetops/log_scan
  lock_timeout:
    description:
      - Seconds to wait for another run that holds the lock of O(state_dir) before failing with an error that
        names the lock file and, when it can tell, the process holding it. From 0 to 3600.
    type: float
    default: 60
  start_at:
    description:
      - Where to start in a file never seen before. V(end) skips what is already there, so a first run
        does not flood; V(beginning) reads it all.
      - A file that appears at a path where a tracked file was rotated away is always read from its start.
    type: str
    choices: [end, beginning]
    default: end
  max_bytes:
    description:
      - Most bytes read per file per run (a rotated file and its successor share it). The rest waits for
        the next run and is reported as C(backlog_bytes). V(0) means no limit.
    type: int
    default: 0
  samples:
    description: Number of matching lines kept per rule (the first ones of this run).
    type: int
    default: 5
  sample_max_len:
    description: Longest sample kept, in characters; longer lines are cut.
    type: int
    default: 500
  time_budget:
    description:
      - Most seconds this run may spend scanning, from 0.1 to 3600. When it runs out the scan stops at a
        line boundary, saves the offsets it reached and returns C(incomplete=true); the next run goes on
        from there. The task ends within about this time plus one second.
      - With the Python C(regex) module on the managed host (Debian/Ubuntu C(python3-regex)), one pattern
        rule also gets at most 1 second on one line; such a line is skipped for that rule and listed in
        C(rule_timeouts). Without it, patterns run on Python's C(re) and only this budget bounds them, so
        a rule that backtracks without end on a line stops every run at that line until it is fixed.
    type: float
    default: 30
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: Scans and returns the matches, but creates, writes and moves nothing in O(state_dir) (not even the lock
      file), so a real run sees the same lines.
  diff_mode:
    support: none
    details: Only offsets change; there is nothing to diff.
  platform:
    details: Any POSIX host with Python 3.8 or later; it reads the logs of the host the task runs on.
notes:
  - Rotated files are looked for next to the log, as C(<path>.*) or C(<path>-*), uncompressed. With
    logrotate C(compress), use C(delaycompress) so that the lines written before the rotation are read.
  - A line longer than 1 MiB that spans a read chunk is matched on its first MiB only.
  - Generations rotated more than once between two runs are read too. O(max_bytes) bounds the live file
    and a renamed predecessor, not copytruncate copies or those in-between generations.
seealso:
  - name: fleetops.health log_scan guide
    description: docs/log_scan.md in the collection.
    link: https://github.com/fleetops/health/blob/main/docs/log_scan.md
"""

EXAMPLES = r"""
- name: Count errors in the application logs since the last run
  fleetops.health.log_scan:
    paths:
      - /var/log/app/app.log
      - /var/log/nginx/*.log
    rules:
      - name: errors
        keywords: [ERROR, Exception]
        severity: critical
      - name: timeouts
        pattern: 'timed? ?out after \d+ ?ms'
        ignore_case: true
        exclude: healthcheck
        severity: warning
    max_bytes: 104857600

- name: Act on what was found
  ansible.builtin.debug:
    msg: "{{ ansible_facts.fleet_logs.rules.errors.samples }}"
  when: ansible_facts.fleet_logs.highest_severity == 'critical'
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    fleet_logs:
      description: What this run found.
      returned: always
      type: dict
      contains:
        files:
          description: One entry per file looked at, sorted as the paths were given.
          type: list
          elements: dict
          contains:
            path:
              description: The file's path.
              type: str
            bytes_scanned:
              description: Bytes read in this run, including the rest of a rotated predecessor.
              type: int
            backlog_bytes:
              description: Bytes left for later runs because of O(max_bytes).
              type: int
            events:
              description:
                - C(new) first time seen, C(rotated) replaced by a new file (the old one was finished),
                  C(truncated) shrunk or rewritten in place and read from its start, C(missing) does not exist.
              type: list
              elements: str
              sample: [rotated]
            error:
              description: Why this file could not be read, or null. Other files are still scanned.
              type: str
              sample: "cannot read /var/log/secure as uid 998: Permission denied (owner uid 0, mode 0600)"
            incomplete:
              description: O(time_budget) ran out before this file was read to its end (or before it was reached).
              type: bool
        incomplete:
          description: O(time_budget) ran out; the files with C(incomplete) wait for the next run.
          type: bool
        regex_engine:
          description: What runs the pattern rules, V(regex) (bounded per line) or V(re) (bounded by O(time_budget) only).
          type: str
          sample: regex
        rule_timeouts:
          description: Lines that took a rule more than 1 second and were skipped for it (the first 20).
          type: list
          elements: dict
          sample: [{"rule": "nested", "path": "/var/log/app.log", "offset": 4096}]
        rules:
          description: Per rule name, the lines that matched in this run.
          type: dict
          sample: {"errors": {"count": 2, "severity": "critical", "samples": ["... ERROR db down"]}}
          contains:
            count:
              description: Number of matching lines (a line counts once per rule).
              type: int
            severity:
              description: The rule's severity.
              type: str
            samples:
              description: The first O(samples) matching lines, cut to O(sample_max_len) characters.
              type: list
              elements: str
        total_matches:
          description: Sum of the rule counts.
          type: int
        highest_severity:
          description: Worst severity among rules that matched, or C(none).
          type: str
          sample: critical
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetops.health.plugins.module_utils import log_offsets, log_scanner, state_file
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number


def main():
    rule_options = dict(
        name=dict(type="str", required=True),
        pattern=dict(type="str"),
        keywords=dict(type="list", elements="str", no_log=False),
        severity=dict(type="str", choices=["info", "warning", "critical"], default="warning"),
        ignore_case=dict(type="bool", default=False),
        exclude=dict(type="str"),
    )
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            rules=dict(type="list", elements="dict", required=True, options=rule_options,
                       mutually_exclusive=[["pattern", "keywords"]], required_one_of=[["pattern", "keywords"]]),
            state_dir=dict(type="path", default="/var/lib/fleetops/log_scan"),
            lock_timeout=dict(type="float", default=60),
            start_at=dict(type="str", choices=["end", "beginning"], default="end"),
            max_bytes=dict(type="int", default=0),
            samples=dict(type="int", default=5),
            sample_max_len=dict(type="int", default=500),
            time_budget=dict(type="float", default=30.0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    for option in ("max_bytes", "samples", "sample_max_len"):
        if params[option] < 0:
            module.fail_json(msg="%s: must be 0 or more, got %d" % (option, params[option]))
    try:
        check_number(params["lock_timeout"], "lock_timeout", minimum=0, maximum=3600)
        check_number(params["time_budget"], "time_budget", minimum=log_scanner.TIME_BUDGET_MIN,
                     maximum=log_scanner.TIME_BUDGET_MAX)
    except OptionError as exc:
        module.fail_json(msg=str(exc))
    try:
        rules = log_scanner.compile_rules(params["rules"])
    except log_scanner.RuleError as exc:
        module.fail_json(msg="rules: %s" % exc)

    counter = log_scanner.RuleCounter(rules, params["samples"], params["sample_max_len"])
    store = log_offsets.OffsetStore(params["state_dir"], check_mode=module.check_mode,
                                    lock_timeout=params["lock_timeout"])
    try:
        with store:
            scan = log_scanner.LogScan([os.path.abspath(path) for path in params["paths"]], counter, store,
                                       params["start_at"], params["max_bytes"] or None,
                                       time_budget=params["time_budget"])
            facts = scan.run()
            changed = store.save()
    except state_file.StateDirError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="state_dir: cannot use offsets in %s: %s; choose a writable directory"
                         % (params["state_dir"], exc))
    for warning in scan.warnings + ([store.warning] if store.warning else []):
        module.warn(warning)
    module.exit_json(changed=changed, ansible_facts={"fleet_logs": facts})


if __name__ == "__main__":
    main()
