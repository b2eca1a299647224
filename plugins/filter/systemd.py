# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quote and escape values for systemd unit files and EnvironmentFiles, so no value can add a line or a word."""

from __future__ import annotations

# Each filter's documentation is a sidecar next to this file, plugins/filter/<filter>.yml, so that
# `ansible-doc -t filter fleetops.health.<filter>` shows that filter's own text.

import re

from ansible.errors import AnsibleFilterError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _text(value, filter_name):
    text = "%s" % (value,)
    if _CONTROL.search(text):
        # The value is not echoed: it may be a secret.
        raise AnsibleFilterError("%s: the value holds a line break or another control character, which a systemd "
                                 "unit cannot carry safely; remove it" % filter_name)
    return text


def systemd_exec_arg(value):
    """One word of a systemd command line, whatever it holds: spaces, quotes, %, $ or backslashes."""
    text = _text(value, "systemd_exec_arg")
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return '"%s"' % text


def systemd_value(value, quoted=False):
    """A setting's value with specifiers escaped; ``quoted`` also escapes for a double-quoted string."""
    text = _text(value, "systemd_value")
    if quoted:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("%", "%%")


def systemd_env_value(value):
    """A double-quoted EnvironmentFile value; systemd reads it back exactly, no expansion, no extra line."""
    text = _text(value, "systemd_env_value")
    for special in ("\\", '"', "$", "`"):
        text = text.replace(special, "\\" + special)
    return '"%s"' % text


def systemd_unit_problems(values):
    """Sentences naming each variable (and key or item) whose value no unit or EnvironmentFile can carry."""
    problems = []
    for option in sorted(values):
        value = values[option]
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                if not _ENV_NAME.match(str(key)):
                    problems.append("%s: %r is not an environment variable name (letters, digits and _, not first a "
                                    "digit)" % (option, str(key)))
                if _CONTROL.search("%s" % (value[key],)):
                    problems.append("%s.%s: the value holds a line break or another control character, which would "
                                    "add a line to the unit or its EnvironmentFile; remove it (encode it, e.g. base64)"
                                    % (option, key))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if _CONTROL.search("%s" % (item,)):
                    problems.append("%s[%d]: holds a line break or another control character; remove it" % (option, index))
        elif value is not None and _CONTROL.search("%s" % (value,)):
            problems.append("%s: holds a line break or another control character; remove it" % option)
    return problems


class FilterModule(object):
    def filters(self):
        return {
            "systemd_exec_arg": systemd_exec_arg,
            "systemd_value": systemd_value,
            "systemd_env_value": systemd_env_value,
            "systemd_unit_problems": systemd_unit_problems,
        }
