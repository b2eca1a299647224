#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetops.health contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_resources
short_description: Everything a fleet health decision needs about one host, in one fast call
version_added: 0.1.0
description:
  - Returns C(ansible_facts.fleet_resources) with CPU, load, memory, swap, disks, I/O and network rates,
    TCP connection counts, processes with top lists, cgroup limits, failed systemd units, uptime, a
    weighted load score and an C(ok)/C(warn)/C(crit) verdict with the reasons behind it.
  - Rates come from two counter samples O(window) seconds apart. The sections that need no second
    sample are read inside the window, so the window is not dead time.
  - Every mount is measured with statvfs in a helper process that is killed and abandoned after
    O(mount_timeout), so a hung NFS or FUSE mount costs at most O(mount_timeout) and shows as an C(error)
    for that mount. The helper holds none of the module's pipes, so a statvfs stuck in the kernel cannot
    keep the module's process, or Ansible waiting for it, from finishing.
  - A host without systemd, a missing C(/proc) file or an unreadable cgroup becomes an entry with
    C(error) in its section; the module does not fail for it.
  - Never reports C(changed).
author:
  - fleetops.health contributors (@fleetops)
requirements:
  - psutil (Debian/Ubuntu package C(python3-psutil)) on the managed host
extends_documentation_fragment:
  - fleetops.health.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
  platform:
    details: Linux hosts; it reads C(/proc), C(/sys) and C(/sys/fs/cgroup).
options:
  window:
    description:
      - Seconds between the two samples that CPU, I/O, network and per-process CPU rates need, 0 to 300.
      - C(0) skips every rate; those keys are then C(null).
    type: float
    default: 0.2
  subset:
    description:
      - The sections to collect. C(connections) reads C(/proc/net/sockstat) and C(/proc/net/tcp).
    type: list
    elements: str
    choices: [cpu, load, memory, swap, disk, io, network, connections, processes, cgroup, units]
    default: [cpu, load, memory, swap, disk, io, network, processes, cgroup, units]
  top:
    description: Number of processes in each top list (by CPU and by memory), 0 to 100.
    type: int
    default: 5
  mount_timeout:
    description:
      - Seconds to wait for statvfs on the mounts, above 0 and at most 300. All mounts are measured in
        parallel against one deadline, so the disk section costs at most this long even with several hung mounts.
    type: float
    default: 2.0
  exclude_fstypes:
    description: Filesystem types left out of C(disks).
    type: list
    elements: str
    default: [autofs, binfmt_misc, bpf, cgroup, cgroup2, configfs, debugfs, devpts, devtmpfs, efivarfs,
              fuse.lxcfs, fusectl, hugetlbfs, iso9660, mqueue, nsfs, overlay, proc, pstore, ramfs,
              rpc_pipefs, securityfs, selinuxfs, squashfs, sysfs, tmpfs, tracefs]
  thresholds:
    description:
      - C(warn) and C(crit) levels per metric, merged over the defaults. Keys are C(cpu), C(memory)
        (also applied to cgroup memory against its limit), C(disk), C(inodes), C(swap) and C(iowait)
        in percent, and C(load) as the 5-minute load average per core.
      - Defaults are cpu 85/95, memory 85/95, disk 85/95, inodes 85/95, load 1.5/3, iowait 20/40, swap 50/80.
      - Percent levels are 0 to 100, load levels 0 to 1000; C(warn) must be below C(crit). NaN, infinity and
        other values fail the task naming the key.
    type: dict
    default: {}
  weights:
    description:
      - Weights of the load score, merged over the defaults C(cpu=0.4), C(memory=0.3), C(disk_io=0.2),
        C(network=0.1). A part that was not measured drops out and the others are rescaled.
      - Each weight is 0 to 100 and at least one must be above 0.
    type: dict
    default: {}
  history_path:
    description:
      - The history the fleetops.health agent role keeps on the host. Where the file exists, each figure
        (cpu, iowait, memory, swap, load, disk and inodes per mount) is also judged against its dynamic
        baseline, the same hour of the week over the last C(baseline.weeks) weeks. A figure above
        max(mean x factor, mean + sigma x stddev) adds a C(warn) reason such as
        C(cpu 71% > baseline 38% x 1.5 (Tue 14h, 7-day)); the static thresholds still decide C(crit).
      - A slot with less history than C(baseline.min_minutes) has no baseline and says so in C(baselines).
      - An empty string, or a host without the file, judges with the static thresholds only.
    type: str
    default: /var/lib/fleetops/agent/history.db
  baseline:
    description:
      - How baselines are made, merged over the defaults C(weeks=1) (1 to 12), C(factor=1.5) (above 1 to 100),
        C(sigma=3) (above 0 to 100) and C(min_minutes=30) (1 to 60).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Take the host's measure with the defaults
  fleetops.health.host_resources:

- name: Only what the capacity report needs, no rates, stricter disk levels
  fleetops.health.host_resources:
    window: 0
    subset: [memory, disk, cgroup]
    thresholds:
      disk: {warn: 70, crit: 90}

- name: Fail fast on hosts with dead NFS mounts
  fleetops.health.host_resources:
    mount_timeout: 0.5

- name: Act on the verdict
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} is {{ fleet_resources.verdict }}: {{ fleet_resources.reasons | join('; ') }}"
"""

RETURN = r"""
ansible_facts:
  description: The facts, under C(fleet_resources).
  returned: success
  type: dict
  contains:
    fleet_resources:
      description: >-
        One key per collected section plus the verdict. A section whose reader failed is C({error: msg})
        (for list sections, a list holding that one entry).
      returned: success
      type: dict
      contains:
        window:
          description: The sampling window used, in seconds.
          type: float
          sample: 0.2
        subset:
          description: The sections collected.
          type: list
          elements: str
        cpu:
          description: >-
            Busy C(percent) of all cores and its C(user), C(system), C(iowait) and C(steal) parts over the
            window (C(null) when window is 0), and C(cores).
          type: dict
          returned: cpu in subset
          sample: {cores: 2, percent: 12.5, user: 9.0, system: 3.0, iowait: 0.5, steal: 0.0}
        load:
          description: Load averages C(1), C(5), C(15) and the same per core (C(per_core_1), C(per_core_5), C(per_core_15)).
          type: dict
          returned: load in subset
        memory:
          description: C(total), C(available), C(used) (total minus available) in bytes, and C(percent) used.
          type: dict
          returned: memory in subset
        swap:
          description: C(total), C(available), C(used) in bytes and C(percent) used.
          type: dict
          returned: swap in subset
        disks:
          description: >-
            One entry per mounted filesystem with C(mount), C(device), C(fstype), C(total), C(used),
            C(free) (bytes available to users), C(percent) (as df shows it) and C(inodes_percent);
            a mount that did not answer has C(error) instead of sizes.
          type: list
          elements: dict
          returned: disk in subset
        io:
          description: >-
            One entry per whole disk with C(device), C(read_bps), C(write_bps), C(read_iops),
            C(write_iops) and C(busy_percent). C(null) when window is 0.
          type: list
          elements: dict
          returned: io in subset
        network:
          description: >-
            One entry per interface except loopback with C(interface), C(rx_bps), C(tx_bps), C(rx_pps),
            C(tx_pps), C(errors_ps), C(drops_ps) and C(util_percent) (busiest direction against the link
            speed; C(null) when the speed is unknown). C(null) when window is 0.
          type: list
          elements: dict
          returned: network in subset
        connections:
          description: >-
            C(tcp_inuse), C(tcp_orphan), C(tcp_time_wait), C(udp_inuse) from /proc/net/sockstat(6) and
            C(tcp_states), a count per TCP state from /proc/net/tcp(6).
          type: dict
          returned: connections in subset
        processes:
          description: >-
            C(total), C(running), C(zombies), C(top_cpu) (C(null) when window is 0) and C(top_memory),
            each a list of C(pid), C(name), C(cpu_percent) (per core, like top) and C(rss) in bytes.
          type: dict
          returned: processes in subset
        cgroup:
          description: >-
            The limits of the cgroup the host sees (the container itself, inside one): C(version) (1 or 2),
            C(memory_limit), C(memory_usage), C(memory_percent), C(cpu_quota_cores), C(pids_limit),
            C(pids_current); C(null) means no limit or not available.
          type: dict
          returned: cgroup in subset
        units:
          description: >-
            C(failed_count) and C(failed), a list of C(unit), C(load), C(active), C(sub), C(description);
            or C(error) where systemd is not the init system or systemctl did not answer in 5 s.
          type: dict
          returned: units in subset
        uptime:
          description: Seconds since boot.
          type: int
        score:
          description: >-
            Weighted load from 0 (idle) to 100 (saturated) over cpu %, memory %, the busiest disk's busy %
            and the busiest link's use; C(null) when none of them was measured.
          type: int
          sample: 23
        verdict:
          description: C(ok), C(warn) or C(crit), the most severe of the reasons.
          type: str
          sample: warn
        reasons:
          description: Short sentences naming the metric, its value and the level it reached, most severe first.
          type: list
          elements: str
          sample: ["disk /var 91.2% >= warn 85%"]
        baselines:
          description:
            - Present where the agent's history exists (O(history_path)). For each judged figure the dynamic
              threshold, the mean it came from and its basis, or C(missing) saying why there is none yet;
              C({error}) when the history could not be read.
          type: dict
          returned: when the history file exists
          sample: {"cpu": {"threshold": 57.0, "mean": 38.0, "basis": "Tue 14h, 7-day"},
                   "memory": {"missing": "not enough history for memory: 12 min in Tue 14h over the last 7 days, needs 30"}}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetops.health.plugins.module_utils.collectors import (
    DEFAULT_SUBSET,
    PSUTIL_IMPORT_ERROR,
    SUBSETS,
    CollectorError,
    HostResources,
)
from ansible_collections.fleetops.health.plugins.module_utils import baseline
from ansible_collections.fleetops.health.plugins.module_utils.mounts import DEFAULT_EXCLUDE_FSTYPES
from ansible_collections.fleetops.health.plugins.module_utils.validation import OptionError, check_number

# option: (minimum, maximum, integer, minimum excluded), as documented above.
NUMBER_LIMITS = {
    "window": (0, 300, False, False),
    "top": (0, 100, True, False),
    "mount_timeout": (0, 300, False, True),
}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            window=dict(type="float", default=0.2),
            subset=dict(type="list", elements="str", choices=list(SUBSETS), default=list(DEFAULT_SUBSET)),
            top=dict(type="int", default=5),
            mount_timeout=dict(type="float", default=2.0),
            exclude_fstypes=dict(type="list", elements="str", default=list(DEFAULT_EXCLUDE_FSTYPES)),
            thresholds=dict(type="dict", default={}),
            weights=dict(type="dict", default={}),
            history_path=dict(type="str", default=baseline.DEFAULT_HISTORY_PATH),
            baseline=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    if PSUTIL_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psutil") + " On Debian/Ubuntu install the python3-psutil package.",
                         exception=PSUTIL_IMPORT_ERROR)
    try:
        for option, (minimum, maximum, integer, exclusive) in NUMBER_LIMITS.items():
            module.params[option] = check_number(module.params[option], option, minimum, maximum,
                                                 integer=integer, min_exclusive=exclusive)
    except OptionError as exc:
        module.fail_json(msg="host_resources: %s" % exc)
    try:
        collector = HostResources(
            window=module.params["window"],
            subset=module.params["subset"],
            top=module.params["top"],
            mount_timeout=module.params["mount_timeout"],
            exclude_fstypes=module.params["exclude_fstypes"],
            thresholds=module.params["thresholds"],
            weights=module.params["weights"],
            systemctl_path=module.get_bin_path("systemctl"),
        )
        baseline_options = baseline.check_baseline_options(module.params["baseline"])
    except (CollectorError, ValueError) as exc:
        module.fail_json(msg="host_resources: %s" % exc)
    facts = collector.collect()
    baseline.judge_with_history(facts, module.params["history_path"], baseline_options)
    module.exit_json(changed=False, ansible_facts={"fleet_resources": facts})


if __name__ == "__main__":
    main()
