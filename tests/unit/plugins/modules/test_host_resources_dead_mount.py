"""A dead mount must not hang the module's process: `ansible localhost -m` returns within mount_timeout + 1 s.

The mount's statfs never answers while its FUSE server stays alive (a dead NFS server looks the same).
A thread stuck there cannot be killed and keeps its process, and every pipe that process holds, alive;
that is ansible/ansible#25046, and the reason host_resources exists.
"""
from __future__ import annotations

import subprocess

import pytest

from ansible_collections.fleetops.health.tests.unit.fuse_mounts import hung_fuse_mount
from ansible_collections.fleetops.health.tests.unit.playbook_runner import run_module

MOUNT_TIMEOUT = 2
ARGS = {"mount_timeout": MOUNT_TIMEOUT, "exclude_fstypes": [], "subset": ["disk"]}
# a run that hangs fails the test here instead of hanging the suite
RUN_TIMEOUT = 30


def run_host_resources():
    try:
        return run_module("host_resources", ARGS, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("ansible -m host_resources still running after %ss: a hung statvfs holds the process" % RUN_TIMEOUT)


def disks_by_mount(run):
    assert run.rc == 0, run.output
    return dict((disk["mount"], disk) for disk in run.result["ansible_facts"]["fleet_resources"]["disks"])


def test_dead_mount_costs_mount_timeout_and_the_next_run_too(tmp_path):
    def baseline():
        run = run_host_resources()
        assert "error" not in disks_by_mount(run)["/"]
        return run.elapsed

    before = baseline()
    with hung_fuse_mount(tmp_path) as mountpoint:
        runs = [run_host_resources() for _attempt in ("first", "second")]
    # what starting Ansible costs on this machine now: the slower of a run without the mount before and after
    bound = max(before, baseline()) + MOUNT_TIMEOUT + 1
    for attempt, run in zip(("first", "second"), runs):
        assert run.elapsed < bound, "%s run took %.1fs, bound %.1fs" % (attempt, run.elapsed, bound)
        disks = disks_by_mount(run)
        assert "no answer to statvfs within 2.0s" in disks[mountpoint]["error"]
        assert "error" not in disks["/"] and disks["/"]["total"] > 0
        # other fleetops_slowfs mounts may be up at the same time (other tests); every real disk is measured
        assert not [mount for mount, disk in disks.items() if "error" in disk and disk["device"] != "fleetops_slowfs"]
