"""File identity, rotated-name lookup and the offset store: atomic, locked, and honest about state_dir."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import log_offsets, state_file


def open_fd(path):
    return os.open(str(path), os.O_RDONLY)


def test_entry_fingerprint_tells_a_rewritten_file_and_widens_as_the_file_grows(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"first line\n")
    fd = open_fd(log)
    try:
        entry = log_offsets.new_entry(fd, str(log), 11, 11)
        assert (entry["fp_len"], entry["offset"]) == (11, 11) and log_offsets.fingerprint_matches(fd, entry)
        with open(str(log), "ab") as handle:
            handle.write(b"x" * 2000)
        log_offsets.refresh_fingerprint(fd, entry, 2011)
        assert entry["fp_len"] == log_offsets.FINGERPRINT_BYTES and log_offsets.fingerprint_matches(fd, entry)
        with open(str(log), "r+b") as handle:
            handle.write(b"FIRST")
        assert not log_offsets.fingerprint_matches(fd, entry)
        os.truncate(str(log), 5)
        assert not log_offsets.fingerprint_matches(fd, entry)  # shorter than the fingerprint
        assert log_offsets.identity_key(os.fstat(fd)) == "%d:%d" % (log.stat().st_dev, log.stat().st_ino)
    finally:
        os.close(fd)


def test_rotation_candidates_are_plain_uncompressed_siblings(tmp_path):
    for name in ["app.log", "app.log.1", "app.log.2.gz", "app.log-20261125", "app.log-20261124.xz", "app.logx",
                 "other.log.1"]:
        (tmp_path / name).write_text("x\n")
    (tmp_path / "app.log.d").mkdir()
    names = [os.path.basename(path) for path, _st in log_offsets.rotation_candidates(str(tmp_path / "app.log"))]
    assert names == ["app.log-20261125", "app.log.1"]


def test_directory_listings_are_reused_until_the_directory_changes_and_never_when_just_changed(tmp_path):
    for name in ["app.log", "app.log.1", "other.log.1"]:
        (tmp_path / name).write_text("x\n")
    listings = log_offsets.DirectoryListings()
    directory = str(tmp_path)

    def rotated_names():
        candidates = log_offsets.rotation_candidates(str(tmp_path / "app.log"), listings)
        return [os.path.basename(path) for path, _st in candidates]

    # Listed just after a change: a second change in the same timestamp tick would leave the mtime as it
    # is, so this listing must not be reused even when the mtime looks the same.
    before = os.stat(directory).st_mtime_ns
    assert rotated_names() == ["app.log.1"]
    (tmp_path / "app.log.2").write_text("x\n")
    os.utime(directory, ns=(before, before))
    assert rotated_names() == ["app.log.1", "app.log.2"]
    # An old listing is reused while the mtime stays (one listing per run), and redone once it moves.
    long_ago = time.time_ns() - 10 * 10 ** 9
    os.utime(directory, ns=(long_ago, long_ago))
    assert rotated_names() == ["app.log.1", "app.log.2"]
    os.unlink(str(tmp_path / "app.log.2"))
    os.utime(directory, ns=(long_ago, long_ago))
    assert listings.names_starting_with(directory, ("app.log.",)) == ["app.log.1", "app.log.2"]  # reused
    (tmp_path / "app.log-20261125").write_text("x\n")
    assert rotated_names() == ["app.log-20261125", "app.log.1"]


def test_open_renamed_finds_the_same_identity_under_a_rotated_name(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("line one\n")
    key = log_offsets.identity_key(log.stat())
    (tmp_path / "app.log.2").write_text("line one\n")  # same content, other inode: not it
    os.rename(str(log), str(tmp_path / "app.log.1"))
    found = log_offsets.open_renamed(str(log), key)
    os.close(found[0])
    assert found[1] == str(tmp_path / "app.log.1")
    os.unlink(str(tmp_path / "app.log.1"))
    assert log_offsets.open_renamed(str(log), key) is None


def test_store_round_trip_and_changed_only_when_offsets_move(tmp_path):
    state_dir = str(tmp_path / "state" / "nested")
    with log_offsets.OffsetStore(state_dir) as store:
        assert store.save() is False
        store.files["1:2"] = {"path": "/var/log/a", "offset": 10, "fp": "f", "fp_len": 3}
        assert store.save() is True
    assert oct(os.stat(state_dir).st_mode & 0o777) == oct(0o700)
    with log_offsets.OffsetStore(state_dir) as store:
        assert store.files["1:2"]["offset"] == 10
        assert store.save() is False
        store.files["1:2"]["offset"] = 20
        assert store.save() is True
    with open(os.path.join(state_dir, "offsets.json")) as handle:
        assert json.load(handle)["files"]["1:2"]["offset"] == 20


def test_check_mode_writes_nothing_and_creates_nothing(tmp_path):
    state_dir = tmp_path / "state"
    with log_offsets.OffsetStore(str(state_dir), check_mode=True) as store:
        store.files["1:2"] = {"path": "/x", "offset": 1, "fp": "", "fp_len": 0}
        assert store.save() is True  # it would have changed
    assert not state_dir.exists()


def test_forgotten_paths_expire_unless_they_exist_again(tmp_path):
    with log_offsets.OffsetStore(str(tmp_path)) as store:
        store.gone = {"/nonexistent/old": 1, str(tmp_path): 1, "/nonexistent/recent": time.time_ns()}
        store.save()
        assert sorted(store.gone) == sorted([str(tmp_path), "/nonexistent/recent"])


def test_corrupt_state_is_set_aside_with_a_warning(tmp_path):
    (tmp_path / "offsets.json").write_text("{broken")
    with log_offsets.OffsetStore(str(tmp_path)) as store:
        assert store.files == {} and "corrupt" in store.warning


def test_a_run_holds_an_exclusive_lock_on_the_state_dir(tmp_path):
    probe = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")
    lock_path = str(tmp_path / log_offsets.LOCK_FILE_NAME)
    with log_offsets.OffsetStore(str(tmp_path)):
        assert subprocess.run([sys.executable, "-c", probe, lock_path], timeout=30, check=False).returncode == 3
    assert subprocess.run([sys.executable, "-c", probe, lock_path], timeout=30, check=False).returncode == 0


def test_a_parent_that_is_a_file_fails_naming_state_dir(tmp_path):
    (tmp_path / "plainfile").write_text("")
    with pytest.raises(state_file.StateDirError, match=r"^state_dir: cannot create .*plainfile/state"):
        log_offsets.OffsetStore(str(tmp_path / "plainfile" / "state")).open()


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only bind mount: not writable even for root."""
    source = tmp_path / "source"
    target = tmp_path / "readonly"
    source.mkdir()
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(target)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here: %s" % mounted.stderr.decode().strip())
    yield target
    subprocess.run(["umount", str(target)], check=True, timeout=30)


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_read_only_state_dir_fails_naming_state_dir(read_only_dir, check_mode):
    with pytest.raises(state_file.StateDirError, match=r"^state_dir: directory .*readonly is not writable"):
        log_offsets.OffsetStore(str(read_only_dir), check_mode=check_mode).open()


def test_a_failed_rename_keeps_the_previous_offsets(tmp_path, monkeypatch):
    with log_offsets.OffsetStore(str(tmp_path)) as store:
        store.files["1:2"] = {"path": "/var/log/a", "offset": 10, "fp": "f", "fp_len": 3}
        store.save()

    def crash(*_args, **_kwargs):
        raise OSError(5, "simulated crash before the rename")

    with log_offsets.OffsetStore(str(tmp_path)) as store:
        store.files["1:2"]["offset"] = 99
        monkeypatch.setattr(os, "rename", crash)
        with pytest.raises(state_file.StateDirError, match="^state_dir: cannot write .*offsets.json .*simulated"):
            store.save()
    monkeypatch.undo()
    with log_offsets.OffsetStore(str(tmp_path)) as store:
        assert store.files["1:2"]["offset"] == 10
    assert sorted(os.listdir(str(tmp_path))) == ["offsets.json", "offsets.lock"]


WRITER = """
import sys
from ansible_collections.fleetops.health.plugins.module_utils import log_offsets
sys.stdout.write("ready\\n")
sys.stdout.flush()
offset = 0
while True:
    offset += 1
    with log_offsets.OffsetStore(sys.argv[1]) as store:
        for number in range(2000):
            store.files["1:%d" % number] = {"path": "/var/log/f%d" % number, "offset": offset, "fp": "ab" * 32,
                                            "fp_len": 1024}
        store.save()
"""


def test_killing_a_writer_mid_save_never_leaves_a_torn_file(tmp_path):
    # .../<root>/ansible_collections/fleetops/health/plugins/module_utils/log_offsets.py
    collections_root = log_offsets.__file__
    for _level in range(6):
        collections_root = os.path.dirname(collections_root)
    for attempt in range(5):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                                  env=dict(os.environ, PYTHONPATH=collections_root))
        writer.stdout.readline()
        time.sleep(0.15 + 0.05 * attempt)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        with open(str(tmp_path / "offsets.json")) as handle:
            state = json.load(handle)  # a torn write would not parse
        offsets = set(entry["offset"] for entry in state["files"].values())
        assert len(state["files"]) == 2000 and len(offsets) == 1
    # the lock died with the process: the next run is not blocked, and it sweeps away torn temp files
    fd = os.open(str(tmp_path / log_offsets.LOCK_FILE_NAME), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    (tmp_path / ".offsets.json.abc.tmp").write_text("{torn")
    with log_offsets.OffsetStore(str(tmp_path)):
        pass
    assert sorted(os.listdir(str(tmp_path))) == ["offsets.json", "offsets.lock"]
