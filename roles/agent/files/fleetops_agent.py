# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetops.health agent: the host-side entry point. The code lives in the collection's module_utils, which
the runtime role ships under FLEETOPS_RUNTIME_PATH (the directory holding ``ansible_collections``)."""
import os
import sys

# No *_created series: they double the output and promtool-style consumers gain nothing from them.
os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")
RUNTIME_PATH = os.environ.get("FLEETOPS_RUNTIME_PATH", "/usr/lib/fleetops-health/python")
if RUNTIME_PATH not in sys.path:
    sys.path.insert(0, RUNTIME_PATH)

from ansible_collections.fleetops.health.plugins.module_utils.agent_daemon import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
