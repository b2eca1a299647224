#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleet_report_files
short_description: Write the fleet report's JSON and HTML files on the control node
version_added: 0.2.0
description:
  - Writes C(fleet-report.json) and C(fleet-report.html) from a report that the
    P(fleetops.health.fleet_report#filter) filter built, into O(dest) on the control node.
  - It is an action plugin. It runs inside the controller's process and starts no module, so the sweep's
    report costs no module runs. The file, copy and template tasks it replaces cost five.
  - Each file is written atomically (a temporary file, fsync, rename) and only when its content or mode
    differs, so C(changed) is honest.
  - The HTML comes from O(html_template), found like ansible.builtin.template's C(src) (the role's
    C(templates/) first). It is rendered in a Jinja sandbox, with the same whitespace rules as
    ansible.builtin.template. The template gets the report as C(__sweep_report), and the filter
    C(fleetops.health.human_bytes).
author:
  - fleetops.health contributors (@fleetops)
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change and writes nothing. The sweep role runs this task with C(check_mode=false),
      because the report is the sweep's output.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs on the control node, whatever the play's hosts are.
options:
  report:
    description: The report, as the P(fleetops.health.fleet_report#filter) filter returns it.
    type: dict
    required: true
  dest:
    description:
      - The folder on the control node that receives both files. It is created when missing.
      - A symlink or a file at this path is refused.
    type: path
    required: true
  mode:
    description:
      - The files' mode, a quoted octal string. The report may quote log lines only root could read, so it is
        private by default.
    type: str
    default: "0600"
  dir_mode:
    description: The mode of O(dest), a quoted octal string. It is set even when the folder exists.
    type: str
    default: "0700"
  html_template:
    description: The HTML report's Jinja template, searched for as ansible.builtin.template searches for C(src).
    type: str
    default: fleet-report.html.j2
notes:
  - A symlink in place of either report file is refused, not followed.
"""

EXAMPLES = r"""
- name: Write the reports
  fleetops.health.fleet_report_files:
    report: "{{ hostvars | fleetops.health.fleet_report(ansible_play_hosts_all) }}"
    dest: /var/lib/fleet-report
  run_once: true
  delegate_to: localhost
  check_mode: false
"""

RETURN = r"""
json_path:
  description: The JSON report's path.
  returned: always
  type: str
  sample: /var/lib/fleet-report/fleet-report.json
html_path:
  description: The HTML report's path.
  returned: always
  type: str
  sample: /var/lib/fleet-report/fleet-report.html
"""
