# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the sweep's report files on the control node, inside the controller's own process.

The file, copy and template tasks this replaces cost five module runs (copy and template each stat the
destination first), the sweep's whole fixed cost at small fleets. Here the JSON and the HTML are rendered
and written atomically without starting a module.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile

from jinja2.sandbox import SandboxedEnvironment
from jinja2 import StrictUndefined, TemplateError

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.fleetops.health.plugins.filter.fleet import human_bytes

ARGUMENT_SPEC = dict(
    report=dict(type="dict", required=True),
    dest=dict(type="path", required=True),
    mode=dict(type="str", default="0600"),
    dir_mode=dict(type="str", default="0700"),
    html_template=dict(type="str", default="fleet-report.html.j2"),
)


def octal_mode(value, option):
    text = str(value)
    if not text or len(text) > 4 or any(char not in "01234567" for char in text):
        raise AnsibleActionFail("fleet_report_files: %s must be a quoted octal mode such as \"0600\", got %r"
                                % (option, value))
    return int(text, 8)


def write_if_changed(path, content, mode, check_mode):
    """Write ``content`` to ``path`` atomically (temp file, fsync, rename) unless it is already there.

    Returns whether the file changed, its mode included."""
    data = content.encode("utf-8")
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        current = None
    if current is not None and stat.S_ISLNK(current.st_mode):
        raise AnsibleActionFail("fleet_report_files: %s is a symlink; refusing to write a report through it" % path)
    if current is not None and stat.S_IMODE(current.st_mode) == mode:
        with open(path, "rb") as existing:
            if existing.read() == data:
                return False
    if check_mode:
        return True
    handle, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    return True


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            raise AnsibleActionFail("fleet_report_files: %s" % "; ".join(validation.error_messages))
        args = validation.validated_parameters
        mode = octal_mode(args["mode"], "mode")
        dir_mode = octal_mode(args["dir_mode"], "dir_mode")
        dest = args["dest"]
        check_mode = self._play_context.check_mode
        html = self._render_html(args["html_template"], args["report"])
        # Compact JSON: a 100-host report is a third of the pretty size, and tools (jq) read it either way.
        documents = {"fleet-report.json": json.dumps(args["report"], sort_keys=True) + "\n",
                     "fleet-report.html": html}
        changed = self._prepare_dir(dest, dir_mode, check_mode)
        if os.path.isdir(dest):  # else check mode, and everything in the folder would be new
            for name, content in sorted(documents.items()):
                changed = write_if_changed(os.path.join(dest, name), content, mode, check_mode) or changed
        result.update(changed=changed, json_path=os.path.join(dest, "fleet-report.json"),
                      html_path=os.path.join(dest, "fleet-report.html"))
        return result

    def _prepare_dir(self, dest, dir_mode, check_mode):
        try:
            current = os.lstat(dest)
        except FileNotFoundError:
            if not check_mode:
                os.makedirs(dest, dir_mode)
                os.chmod(dest, dir_mode)  # makedirs' mode goes through the umask
            return True
        if stat.S_ISLNK(current.st_mode) or not stat.S_ISDIR(current.st_mode):
            raise AnsibleActionFail("fleet_report_files: dest %s is not a real directory (a symlink or a file); "
                                    "give a directory path" % dest)
        if stat.S_IMODE(current.st_mode) == dir_mode:
            return False
        if not check_mode:
            os.chmod(dest, dir_mode)
        return True

    def _render_html(self, template_name, report):
        path = self._find_needle("templates", template_name)
        with open(path, encoding="utf-8") as source:
            text = source.read()
        # The same whitespace rules as ansible.builtin.template, so the file reads the same; a sandbox,
        # because the report carries strings from the hosts.
        environment = SandboxedEnvironment(trim_blocks=True, undefined=StrictUndefined, keep_trailing_newline=False)
        environment.filters["fleetops.health.human_bytes"] = human_bytes
        try:
            return environment.from_string(text).render(__sweep_report=report) + "\n"
        except TemplateError as exc:
            raise AnsibleActionFail("fleet_report_files: cannot render %s: %s" % (path, exc))
