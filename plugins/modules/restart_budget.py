#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restart_budget
short_description: Keep a restart budget, last results and up/down transitions of services on the host
version_added: 0.1.0
description:
  - Keeps, on the managed host, what remediation needs to remember between runs, for every service of
    the host in one atomically written JSON file (C(<state_dir>/budgets.json)).
  - Per service it keeps the restart attempts inside a sliding window, the last result
    (C(verified), C(failed_verify) or C(skipped)) and the last known state (C(up) or C(down)) with the time it
    changed.
  - The budget is a circuit breaker. Once O(services[].max_restarts) attempts fall inside
    O(services[].window), no restart is allowed until the oldest one leaves the window, so the budget refills
    as time passes.
  - O(action=check) says whether a restart is allowed now. O(action=record) stores the result of an
    attempt, or a skip, and says when to escalate to a human. O(action=observe) stores the state seen now and
    returns the transition, which includes recoveries that happened without any action.
  - State lives on the host rather than on the control node because AWX runs each job in a fresh container.
author:
  - fleetops.health contributors (@fleetops)
options:
  action:
    description:
      - C(check) reports the budget of each service and writes nothing.
      - C(record) stores O(services[].result) for each service. C(verified) and C(failed_verify) count as
        attempts against the budget and set the state to C(up) or C(down). C(skipped) counts nothing.
      - C(observe) stores O(services[].state) for each service and reports the transition.
    type: str
    required: true
    choices: [check, record, observe]
  services:
    description:
      - The services to act on, one entry per service, in one call.
      - Services of the host that are not listed are left as they are.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The service's name, the key of its record. Unique in the list.
        type: str
        required: true
      max_restarts:
        description: Restarts allowed inside O(services[].window), 0 to 1000. Defaults to O(max_restarts).
        type: int
      window:
        description:
          - The sliding window of the budget, in seconds or as a number with C(s), C(m), C(h) or C(d); above 0
            and at most C(365d).
          - Defaults to O(window).
        type: str
      backoff:
        description:
          - The least time between two attempts, in seconds or as a number with C(s), C(m), C(h) or C(d); 0 to
            C(365d).
          - Defaults to O(backoff).
        type: str
      result:
        description: With O(action=record), the outcome of this run for the service.
        type: str
        choices: [verified, failed_verify, skipped]
      reason:
        description: With O(action=record), a short sentence stored with the result (why it was restarted or skipped).
        type: str
      state:
        description: With O(action=observe), the state seen now.
        type: str
        choices: [up, down]
  max_restarts:
    description: The budget for services that do not set O(services[].max_restarts), 0 to 1000. C(0) means never restart.
    type: int
    default: 3
  window:
    description: The window for services that do not set O(services[].window); above 0 and at most C(365d).
    type: str
    default: 1h
  backoff:
    description: The backoff for services that do not set O(services[].backoff); 0 to C(365d).
    type: str
    default: 1m
  state_dir:
    description:
      - Where the record lives. Created (mode 0700) when missing, except in check mode.
      - The module fails before doing anything when it is not writable, is a symlink, is owned by another user
        or is writable by group or others (check mode fails the same way).
      - The file is read, changed and written under a lock (C(budgets.json.lock)), so runs at the same moment
        take turns and none of their records is lost.
    type: path
    default: /var/lib/fleetops/remediate
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: Computes and reports every result, including C(changed), and writes nothing.
  diff_mode:
    support: none
    details: The state file is bookkeeping; there is no diff to show.
  platform:
    details: Any POSIX host with Python 3.8 or later.
notes:
  - An escalation (RV(escalations)) is due once per spent budget, when the attempt that spends it fails to
    verify or when a restart has to be skipped because the budget is spent. A verified attempt or a recovery
    ends the episode.
  - A service seen for the first time has no transition, because nothing is known about before.
seealso:
  - module: fleetops.health.probe
  - module: fleetops.health.im_notify
"""

EXAMPLES = r"""
- name: May nginx and api be restarted now?
  fleetops.health.restart_budget:
    action: check
    services:
      - name: nginx
        max_restarts: 3
        window: 1h
        backoff: 2m
      - name: api
  register: budget

- name: Store the outcome of the restart of nginx
  fleetops.health.restart_budget:
    action: record
    services:
      - name: nginx
        max_restarts: 3
        window: 1h
        result: failed_verify
        reason: unit failed; probe http://127.0.0.1/ still refused after 30 s
  register: recorded

- name: Remember what state the services are in, and learn about recoveries
  fleetops.health.restart_budget:
    action: observe
    services:
      - name: nginx
        state: up
      - name: api
        state: down
  register: observed

- name: Tell people when a service came back by itself
  ansible.builtin.debug:
    msg: "{{ item }} recovered without action"
  loop: "{{ observed.recovered }}"
  when: observed.services[item].recovered_without_action
"""

RETURN = r"""
services:
  description: One entry per service given, keyed by name.
  returned: always
  type: dict
  contains:
    service:
      description: The service's name.
      type: str
      sample: nginx
    allowed:
      description: Whether a restart is allowed now, after the operation.
      type: bool
      sample: true
    blocked_by:
      description: Why a restart is not allowed, C(budget) or C(backoff); null when it is allowed.
      type: str
      sample: budget
    budget_left:
      description: Restarts left in the window.
      type: int
      sample: 2
    max_restarts:
      description: The budget in force.
      type: int
      sample: 3
    window:
      description: The window in force, in seconds.
      type: float
      sample: 3600
    backoff:
      description: The backoff in force, in seconds.
      type: float
      sample: 60
    attempts_in_window:
      description: Attempts that still count against the budget.
      type: int
      sample: 1
    retry_after:
      description: Seconds until a restart is allowed again; 0 when allowed now, null when never (O(max_restarts=0)).
      type: float
      sample: 0
    state:
      description: The last known state, C(up) or C(down); null when never seen.
      type: str
      sample: up
    state_since:
      description: Epoch seconds when the state last changed.
      type: float
      sample: 1795612345.2
    last_result:
      description: The last stored result, with C(result), C(at) (epoch seconds) and C(reason); null when none.
      type: dict
      sample: {"result": "verified", "at": 1795612345.2, "reason": "unit failed"}
    escalated_at:
      description: When the current spent budget was escalated; null when no escalation is pending.
      type: float
      sample: null
    previous_state:
      description: With O(action=record) and O(action=observe), the state before this call.
      type: str
      returned: when action is record or observe
      sample: down
    transition:
      description: C(recovered) (down to up), C(failed) (up to down) or null.
      type: str
      returned: when action is record or observe
      sample: recovered
    down_for:
      description: On C(recovered), the seconds the service was down.
      type: float
      returned: when action is record or observe
      sample: 42.5
    recovered_without_action:
      description: On C(recovered), true when no restart was attempted since the service went down.
      type: bool
      returned: when action is record or observe
      sample: true
    escalate:
      description: With O(action=record), whether this result is the moment to tell a human.
      type: bool
      returned: when action is record
      sample: false
escalations:
  description: Services whose escalation is due now (O(action=record) only; empty otherwise).
  returned: always
  type: list
  elements: str
  sample: [api]
recovered:
  description: Services that went from down to up in this call.
  returned: always
  type: list
  elements: str
  sample: [nginx]
went_down:
  description: Services that went from up to down in this call.
  returned: always
  type: list
  elements: str
  sample: []
state_file:
  description: The state file.
  returned: always
  type: str
  sample: /var/lib/fleetops/remediate/budgets.json
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetops.health.plugins.module_utils.restart_budget import (
    ACTIONS,
    RESULTS,
    STATES,
    BudgetInputError,
    RestartBudgetStore,
    run_operation,
)
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type="str", required=True, choices=list(ACTIONS)),
            services=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    name=dict(type="str", required=True),
                    max_restarts=dict(type="int"),
                    window=dict(type="str"),
                    backoff=dict(type="str"),
                    result=dict(type="str", choices=list(RESULTS)),
                    reason=dict(type="str"),
                    state=dict(type="str", choices=list(STATES)),
                ),
            ),
            max_restarts=dict(type="int", default=3),
            window=dict(type="str", default="1h"),
            backoff=dict(type="str", default="1m"),
            state_dir=dict(type="path", default="/var/lib/fleetops/remediate"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    store = RestartBudgetStore(params["state_dir"], check_mode=module.check_mode)
    defaults = {key: params[key] for key in ("max_restarts", "window", "backoff")}
    try:
        # One locked read-modify-write: a record made at the same moment by another run is counted.
        with store:
            results = run_operation(store, params["action"], params["services"], defaults)
    except (BudgetInputError, StateDirError) as exc:
        module.fail_json(msg="restart_budget: %s" % exc)
    except (IOError, OSError) as exc:
        module.fail_json(msg="restart_budget: cannot read or write %s (%s); check option state_dir and its permissions"
                         % (store.path, exc))
    for warning in store.warnings:
        module.warn(warning)
    module.exit_json(
        changed=store.changed,
        services=results,
        escalations=[name for name, result in results.items() if result.get("escalate")],
        recovered=[name for name, result in results.items() if result.get("transition") == "recovered"],
        went_down=[name for name, result in results.items() if result.get("transition") == "failed"],
        state_file=store.path,
    )


if __name__ == "__main__":
    main()
