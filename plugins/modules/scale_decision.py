#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: scale_decision
short_description: Decide whether a group scales out or in from its load scores, with streaks and cooldowns kept on the host
version_added: 0.1.0
description:
  - Takes the load scores of a group's hosts (for example C(fleet_resources.score) from
    M(fleetops.health.host_resources)) and the group's current size, and decides C(scale_out), C(scale_in) or
    C(hold).
  - The group scales out by O(step) when its average score has been above O(scale_out_above) for
    O(consecutive) runs and O(cooldown_out) has passed since the last scaling; it scales in symmetrically below
    O(scale_in_below) after O(cooldown_in). The size stays within O(min_count) and O(max_count).
  - The streaks and the time of the last scaling are kept in O(state_file) on the host the task runs on, written
    atomically, because each AWX job starts in a fresh container.
  - It also returns what the O(provider) has to do to reach the target, as data for the next tasks.
author:
  - fleetops.health contributors (@fleetops)
options:
  group:
    description: The group's name, its key in O(state_file).
    type: str
    required: true
  scores:
    description:
      - One load score (0 to 100) per host of the group; null for a host that did not report one.
      - A score outside 0-100, NaN or infinity fails the task naming its position.
    type: list
    elements: raw
    required: true
  current:
    description: The group's size now (instances, active hosts or replicas), 0 to 1000.
    type: int
    required: true
  provider:
    description: Who carries the decision out; shapes RV(plan).
    type: str
    choices: [systemd_instances, standby_pool, kubernetes]
    required: true
  scale_out_above:
    description: Average score above which a run counts toward scaling out, 0 to 100.
    type: float
    default: 80
  scale_in_below:
    description: Average score below which a run counts toward scaling in, 0 to 100. Lower than O(scale_out_above).
    type: float
    default: 20
  consecutive:
    description: Runs in a row the average must stay beyond a threshold before the group is scaled, 1 to 1000.
    type: int
    default: 3
  step:
    description: Instances, hosts or replicas added or removed at once, 1 to 1000.
    type: int
    default: 1
  min_count:
    description: The smallest size, 0 to 1000.
    type: int
    default: 1
  max_count:
    description:
      - The largest size, 0 to 1000. The plan lists one unit per instance, so the range keeps the result small.
    type: int
    default: 4
  cooldown_out:
    description: Seconds after any scaling before the next scale-out, 0 to 31536000 (a year).
    type: float
    default: 300
  cooldown_in:
    description:
      - Seconds after any scaling before the next scale-in, 0 to 31536000 (a year); longer than O(cooldown_out) to
        avoid flapping.
    type: float
    default: 1800
  unit_template:
    description: With O(provider=systemd_instances), the template unit's name without C(@), for example C(worker).
    type: str
  current_members:
    description: With O(provider=standby_pool), the hosts serving now, in the order they joined.
    type: list
    elements: str
    default: []
  standby_members:
    description: With O(provider=standby_pool), the hosts of the standby pool.
    type: list
    elements: str
    default: []
  kubernetes_resource:
    description: With O(provider=kubernetes), C(kind), C(name) and C(namespace) of what kubernetes.core.k8s_scale scales.
    type: dict
    default: {}
  state_file:
    description:
      - Where the streaks and the last scaling of every group are kept (a versioned JSON file, mode 0600); an
        absolute path.
      - It is read, changed and written under a lock (C(<state_file>.lock)), so groups decided at the same moment
        all keep their streaks. A corrupt or wrong-shaped file is moved aside with a warning.
      - Its folder is created (mode 0700) when missing; a folder that is a symlink, is owned by another user or is
        writable by group or others is refused.
    type: path
    default: /var/lib/fleetops/scale/state.json
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: Decides and returns the plan; nothing is created, written or moved (a corrupt O(state_file) is read as
      empty with a warning and left where it is).
  diff_mode:
    support: none
    details: The state file is bookkeeping; there is no diff to show.
  platform:
    details: Any POSIX host with Python 3.8 or later; run it on one host of the group (run_once) or a manager.
seealso:
  - module: fleetops.health.host_resources
"""

EXAMPLES = r"""
- name: Decide the size of the worker pool from the group's scores
  fleetops.health.scale_decision:
    group: workers
    scores: "{{ groups['workers'] | map('extract', hostvars, ['fleet_resources', 'score']) | list }}"
    current: "{{ running_workers | int }}"
    provider: systemd_instances
    unit_template: worker
    min_count: 2
    max_count: 8
  run_once: true
  register: scale

- name: Start what the plan says
  ansible.builtin.systemd_service:
    name: "{{ item }}"
    state: started
  loop: "{{ scale.plan.start }}"
  run_once: true
"""

RETURN = r"""
decision:
  description: The decision and why.
  returned: always
  type: dict
  contains:
    action:
      description: C(scale_out), C(scale_in) or C(hold).
      type: str
      sample: scale_out
    current:
      description: The size given.
      type: int
      sample: 2
    target:
      description: The size to reach.
      type: int
      sample: 3
    average:
      description: The group's average score this run; null when no host reported one.
      type: float
      sample: 87.5
    reason:
      description: One sentence for people.
      type: str
      sample: average score 87.5 above 80 for 3 runs
    high_streak:
      description: Runs in a row above O(scale_out_above), this one included.
      type: int
      sample: 3
    low_streak:
      description: Runs in a row below O(scale_in_below), this one included.
      type: int
      sample: 0
    cooldown_left:
      description: Seconds until the cooldown that holds the action has passed; 0 when none does.
      type: float
      sample: 0
plan:
  description:
    - What the provider has to do. C(systemd_instances) gives C(start) and C(stop) (unit names);
      C(standby_pool) gives C(activate), C(deactivate) and C(members) (host names);
      C(kubernetes) gives C(k8s_scale) (the arguments of kubernetes.core.k8s_scale).
  returned: always
  type: dict
  sample: {"start": ["worker@3.service"], "stop": []}
state_file:
  description: The state file.
  returned: always
  type: str
  sample: /var/lib/fleetops/scale/state.json
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetops.health.plugins.module_utils.scale_decision import (
    PROVIDERS,
    ScaleInputError,
    ScalePolicy,
    decide_and_keep,
    provider_plan,
)
from ansible_collections.fleetops.health.plugins.module_utils.state_file import StateDirError
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

POLICY_KEYS = ("scale_out_above", "scale_in_below", "consecutive", "step", "min_count", "max_count",
               "cooldown_out", "cooldown_in")
MAX_COUNT = 1000
YEAR = 365 * 86400
# option: (minimum, maximum, integer), as documented above.
NUMBER_LIMITS = {
    "current": (0, MAX_COUNT, True),
    "scale_out_above": (0, 100, False),
    "scale_in_below": (0, 100, False),
    "consecutive": (1, 1000, True),
    "step": (1, MAX_COUNT, True),
    "min_count": (0, MAX_COUNT, True),
    "max_count": (0, MAX_COUNT, True),
    "cooldown_out": (0, YEAR, False),
    "cooldown_in": (0, YEAR, False),
}


def check_inputs(params):
    """The scores and numbers within their documented ranges, and an absolute state_file."""
    for option, (minimum, maximum, integer) in NUMBER_LIMITS.items():
        params[option] = check_number(params[option], option, minimum, maximum, integer=integer)
    scores = [None if score in (None, "") else check_number(score, "scores[%d]" % index, 0, 100)
              for index, score in enumerate(params["scores"])]
    if not os.path.isabs(params["state_file"]):
        raise OptionError("state_file: %r is a relative path; give an absolute one such as "
                          "/var/lib/fleetops/scale/state.json" % params["state_file"])
    return scores


def main():
    module = AnsibleModule(
        argument_spec=dict(
            group=dict(type="str", required=True),
            scores=dict(type="list", elements="raw", required=True),
            current=dict(type="int", required=True),
            provider=dict(type="str", required=True, choices=list(PROVIDERS)),
            scale_out_above=dict(type="float", default=80),
            scale_in_below=dict(type="float", default=20),
            consecutive=dict(type="int", default=3),
            step=dict(type="int", default=1),
            min_count=dict(type="int", default=1),
            max_count=dict(type="int", default=4),
            cooldown_out=dict(type="float", default=300),
            cooldown_in=dict(type="float", default=1800),
            unit_template=dict(type="str"),
            current_members=dict(type="list", elements="str", default=[]),
            standby_members=dict(type="list", elements="str", default=[]),
            kubernetes_resource=dict(type="dict", default={}),
            state_file=dict(type="path", default="/var/lib/fleetops/scale/state.json"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["state_file"]
    try:
        scores = check_inputs(params)
    except OptionError as exc:
        module.fail_json(msg="scale_decision: %s" % exc)
    try:
        policy = ScalePolicy(**dict((key, params[key]) for key in POLICY_KEYS))
        decision, changed, warnings = decide_and_keep(path, params["group"], scores, params["current"], policy,
                                                      check_mode=module.check_mode)
        for warning in warnings:
            module.warn(warning)
        plan = provider_plan(params["provider"], decision, params["current_members"], params["standby_members"],
                             params["unit_template"], params["kubernetes_resource"])
    except (ScaleInputError, StateDirError) as exc:
        module.fail_json(msg="scale_decision: %s" % exc)
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg="scale_decision: cannot use state_file %s (%s); fix its permissions or move it aside"
                         % (path, exc))
    module.exit_json(changed=changed, decision=decision, plan=plan, state_file=path)


if __name__ == "__main__":
    main()
