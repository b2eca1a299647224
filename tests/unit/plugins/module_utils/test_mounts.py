"""Mount table parsing and statvfs deadlines, with a real FUSE filesystem whose statfs hangs."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import collectors
from ansible_collections.fleetops.health.plugins.module_utils import mounts
from ansible_collections.fleetops.health.tests.unit.fuse_mounts import hung_fuse_mount

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "host_resources")


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def test_parse_mounts_nfs_host_drops_pseudo_filesystems():
    table = mounts.parse_mounts(fixture_text("mounts_nfs_host.txt"))
    assert [entry["mount"] for entry in table] == ["/", "/boot", "/var", "/var/lib/containers/storage/overlay",
                                                   "/mnt/home dir"]
    assert table[-1] == {"mount": "/mnt/home dir", "device": "nas01:/export/home", "fstype": "nfs4"}


def test_parse_mounts_container_keeps_overlay_root():
    table = mounts.parse_mounts(fixture_text("mounts_podman_container.txt"))
    assert table[0] == {"mount": "/", "device": "overlay", "fstype": "overlay"}
    assert [entry["mount"] for entry in table[1:]] == ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname",
                                                       "/run/.containerenv", "/srv/data"]


def test_measure_drops_file_mounts_and_bind_duplicates(tmp_path):
    """The podman layout on real paths: files bind-mounted from one disk, then two directories of it."""
    for name in ("resolv.conf", "hosts"):
        (tmp_path / name).write_text("x")
    for name in ("data", "again"):
        (tmp_path / name).mkdir()
    table = [{"mount": str(tmp_path / name), "device": "/dev/vdz", "fstype": "ext4"}
             for name in ("resolv.conf", "hosts", "data", "again")]
    disks = mounts.measure_mounts(table, 2.0)
    assert [disk["mount"] for disk in disks] == [str(tmp_path / "data")]
    assert disks[0]["total"] > 0


def test_real_file_bind_mount_is_not_a_disk(tmp_path):
    source, target = tmp_path / "source.conf", tmp_path / "resolv.conf"
    source.write_text("nameserver 127.0.0.1\n")
    target.write_text("")
    if subprocess.run(["mount", "--bind", str(source), str(target)], stderr=subprocess.DEVNULL, check=False).returncode:
        pytest.skip("cannot bind-mount here (not root, or no mount namespace rights)")
    try:
        facts = collectors.HostResources(window=0, subset=["disk"]).collect()
    finally:
        subprocess.run(["umount", str(target)], check=False)
    assert str(target) not in [disk["mount"] for disk in facts["disks"]]
    assert "/" in [disk["mount"] for disk in facts["disks"]]


def test_parse_mounts_vm_capture():
    table = mounts.parse_mounts(fixture_text("mounts_vm.txt"))
    assert {"mount": "/", "device": "/dev/vda", "fstype": "ext4"} in table
    assert not [entry for entry in table if entry["fstype"] in ("tmpfs", "cgroup", "proc", "devpts")]


def test_parse_mounts_custom_exclude_keeps_tmpfs():
    table = mounts.parse_mounts(fixture_text("mounts_nfs_host.txt"), exclude_fstypes=["nfs4"])
    assert "/run" in [entry["mount"] for entry in table]
    assert "/mnt/home dir" not in [entry["mount"] for entry in table]


def test_measure_live_root_like_df():
    (disk,) = mounts.measure_mounts([{"mount": "/", "device": "x", "fstype": "ext4"}], 2.0)
    st = os.statvfs("/")
    assert disk["total"] == st.f_blocks * st.f_frsize
    assert 0 < disk["percent"] < 100 and 0 <= disk["inodes_percent"] < 100
    df = subprocess.run(["df", "--output=pcent", "/"], stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert abs(disk["percent"] - float(df.stdout.split()[-1].rstrip("%"))) <= 1.0


def test_measure_missing_mount_is_error_entry(tmp_path):
    (disk,) = mounts.measure_mounts([{"mount": str(tmp_path / "gone"), "device": "d", "fstype": "ext4"}], 1.0)
    assert disk["error"].startswith("statvfs failed: No such file")


@pytest.fixture
def hung_mount(tmp_path):
    """A FUSE mount whose statfs sleeps 30 s."""
    with hung_fuse_mount(tmp_path, statfs_delay=30) as mountpoint:
        yield mountpoint


def test_hung_mount_costs_at_most_mount_timeout(hung_mount):
    table = [{"mount": "/", "device": "/dev/root", "fstype": "ext4"},
             {"mount": hung_mount, "device": "fleetops_slowfs", "fstype": "fuse"},
             {"mount": hung_mount, "device": "again", "fstype": "fuse"}]
    start = time.monotonic()
    root, hung, hung_again = mounts.measure_mounts(table, 0.5)
    elapsed = time.monotonic() - start
    # two hung mounts share one deadline: 0.5 s in all, not 1 s
    assert elapsed < 0.9
    assert "total" in root and "error" not in root
    assert "no answer to statvfs within 0.5s" in hung["error"]
    assert "error" in hung_again


def test_module_collect_with_hung_mount_warns_and_overlaps_the_window(hung_mount):
    start = time.monotonic()
    facts = collectors.HostResources(window=0.6, mount_timeout=0.5, exclude_fstypes=[],
                                     subset=["disk", "cpu"]).collect()
    elapsed = time.monotonic() - start
    # the mount deadline runs inside the window: about 0.6 s in all, where one after the other is 1.1 s
    assert 0.6 <= elapsed < 0.95
    hung = [disk for disk in facts["disks"] if disk["mount"] == hung_mount]
    assert hung and "error" in hung[0]
    assert facts["verdict"] in ("warn", "crit")
    assert any(reason.startswith("disk %s:" % hung_mount) for reason in facts["reasons"])
