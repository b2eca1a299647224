"""Run fleetops.health modules on lab hosts through ansible-playbook, without a playbook file per test.

``run_tasks`` writes a one-play playbook (JSON, which is YAML) into a scratch directory and runs it with
the ``run_playbook`` fixture, so the module goes through the real ansible-playbook, connection and
module transfer. Module arguments are written literally, so their types survive.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

_playbook_numbers = itertools.count(1)


def run_tasks(run_playbook, workdir: Path, hosts, tasks, check: bool = False, timeout: float = 300):
    """Run ``tasks`` ([(task name, module, args), ...]) on ``hosts``, in order; fail on any failed task.

    Returns the PlaybookResult; ``result.task_results(name)`` gives ``{host: module result}``.
    """
    result = run_tasks_unchecked(run_playbook, workdir, hosts, tasks, check=check, timeout=timeout)
    assert result.ok, result.failure_summary()
    return result


def run_tasks_unchecked(run_playbook, workdir: Path, hosts, tasks, check: bool = False, timeout: float = 300):
    """Like run_tasks, but returns the result whatever happened (to assert on failures)."""
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    play = {
        "name": "e2e tasks",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [{"name": name, module: args} for name, module, args in tasks],
    }
    playbook = Path(workdir) / f"e2e-tasks-{next(_playbook_numbers)}.yml"
    playbook.write_text(json.dumps([play], indent=1) + "\n")
    return run_playbook(playbook, limit=hosts, check=check, timeout=timeout)


def module_result(result, task_name: str, host: str) -> dict:
    """One host's result of one task."""
    return result.task_results(task_name)[host]
