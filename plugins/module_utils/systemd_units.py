# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failed systemd units through systemctl, with a timeout; a host without systemd gives an error entry."""

from __future__ import annotations

import os
import subprocess

SYSTEMCTL_FAILED_ARGS = ["list-units", "--state=failed", "--no-legend", "--plain", "--no-pager", "--full"]
# Directory systemd creates when it runs as PID 1 (what sd_booted() checks).
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"


def parse_failed_units(text):
    """Parse ``systemctl list-units --no-legend --plain`` lines: UNIT LOAD ACTIVE SUB DESCRIPTION."""
    units = []
    for line in text.splitlines():
        fields = line.split(None, 4)
        if len(fields) < 4:
            continue
        # Older systemd prints a bullet column for failed units even with --plain.
        if fields[0] in ("\u25cf", "*"):
            fields = line.split(None, 5)[1:]
        units.append({
            "unit": fields[0],
            "load": fields[1],
            "active": fields[2],
            "sub": fields[3],
            "description": fields[4].strip() if len(fields) > 4 else "",
        })
    return units


def failed_units(systemctl_path, timeout, runtime_dir=SYSTEMD_RUNTIME_DIR):
    """Return ``{"failed": [...], "failed_count": n}`` or ``{"error": ...}``; never raises, never hangs."""
    if not os.path.isdir(runtime_dir):
        return {"error": "systemd is not the init system here (%s is missing); failed units not checked" % runtime_dir}
    if not systemctl_path:
        return {"error": "systemctl not found in PATH; failed units not checked"}
    try:
        # AnsibleModule.run_command has no timeout, and a systemctl stuck on a busy bus must cost only ``timeout``.
        proc = subprocess.run([systemctl_path] + SYSTEMCTL_FAILED_ARGS, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              stderr=subprocess.PIPE, timeout=timeout, universal_newlines=True, check=False)
    except subprocess.TimeoutExpired:
        return {"error": "systemctl did not answer within %ss; failed units not checked" % timeout}
    except OSError as exc:
        return {"error": "cannot run %s: %s" % (systemctl_path, exc.strerror or exc)}
    if proc.returncode != 0:
        return {"error": "systemctl exited %d: %s" % (proc.returncode, proc.stderr.strip()[:200])}
    units = parse_failed_units(proc.stdout)
    return {"failed_count": len(units), "failed": units}
