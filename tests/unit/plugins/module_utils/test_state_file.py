"""The state layer on real files: folder checks, no symlinks, atomic writes, the lock and its timeout, shapes."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import state_file
from ansible_collections.fleetops.health.plugins.module_utils.state_file import (
    ShapeError,
    StateDirError,
    StateLockTimeout,
    StateSchema,
    count,
    list_of,
    locked_state,
    map_of,
    nullable,
    number,
    one_of,
    record,
    text,
)
from ansible_collections.fleetops.health.tests.unit.state_harness import (
    NOBODY_UID,
    can_switch_user,
    run_unprivileged,
    shared_tmp,
    tree_digest,
    unprivileged_uid,
)

SCHEMA = StateSchema(1, record(required={"items": map_of(record(required={"n": count}))}), empty=lambda: {"items": {}},
                     migrate=lambda old: {"items": old})


def store(path, check_mode=False, timeout=state_file.LOCK_TIMEOUT):
    return locked_state(str(path), "state_dir", SCHEMA, check_mode=check_mode, lock_timeout=timeout)


def test_a_write_is_atomic_versioned_and_private(tmp_path):
    folder = tmp_path / "state"
    with store(folder / "s.json") as state:
        state.data["items"]["a"] = {"n": 1}
        assert state.save() is True
        assert state.save() is False  # nothing changed since
    assert json.loads((folder / "s.json").read_text()) == {"version": 1, "items": {"a": {"n": 1}}}
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    assert oct((folder / "s.json").stat().st_mode & 0o777) == oct(0o600)
    assert sorted(os.listdir(str(folder))) == ["s.json", "s.json.lock"]


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temp(tmp_path, monkeypatch):
    with store(tmp_path / "s.json") as state:
        state.data["items"]["a"] = {"n": 1}
        state.save()

    def crash(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    with store(tmp_path / "s.json") as state:
        state.data["items"]["a"] = {"n": 2}
        monkeypatch.setattr(os, "fsync", crash)
        with pytest.raises(StateDirError, match="^state_dir: cannot write .*s.json .No space left on device"):
            state.save()
        monkeypatch.undo()
    assert json.loads((tmp_path / "s.json").read_text())["items"]["a"] == {"n": 1}
    assert sorted(os.listdir(str(tmp_path))) == ["s.json", "s.json.lock"]


def test_temp_files_of_a_killed_writer_are_removed_under_the_lock(tmp_path):
    (tmp_path / ".s.json.123.456.tmp").write_text("half")
    (tmp_path / ".other.json.1.2.tmp").write_text("not ours")
    with store(tmp_path / "s.json"):
        pass
    assert sorted(os.listdir(str(tmp_path))) == [".other.json.1.2.tmp", "s.json.lock"]


@pytest.mark.parametrize("content, why", [
    (b"{not json", "was corrupt"),
    (b"\xff\xfe", "was corrupt"),
    (b"[1, 2]", "of the wrong shape (the file holds list"),
    (b'{"version": 1, "items": {"a": {"n": "x"}}}', 'items["a"].n is "x", not a whole number'),
    (b'{"version": 1, "items": {"a": {}}}', 'items["a"] has no field n'),
    (b'{"version": 2, "items": {}}', "it has version 2; this collection reads version 1"),
    (b'{"a": 5}', 'items["a"] is 5, not an object'),
])
def test_a_bad_file_is_moved_aside_once_with_both_paths_named(tmp_path, content, why):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with store(path) as state:
        assert state.data == {"items": {}}
        assert len(state.warnings) == 1 and why in state.warnings[0]
        state.save()
    aside = [name for name in os.listdir(str(tmp_path)) if name.startswith("s.json.corrupt-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == content
    assert str(path) in state.warnings[0] and str(tmp_path / aside[0]) in state.warnings[0]
    with store(path) as state:
        assert state.warnings == []


def test_the_old_unversioned_layout_is_migrated(tmp_path):
    (tmp_path / "s.json").write_text('{"a": {"n": 3}}')
    with store(tmp_path / "s.json") as state:
        assert state.data == {"items": {"a": {"n": 3}}} and state.warnings == []


def test_two_bad_files_in_one_second_both_stay(tmp_path):
    for content in ("{one", "{two"):
        (tmp_path / "s.json").write_text(content)
        with store(tmp_path / "s.json"):
            pass
    kept = sorted((tmp_path / name).read_text() for name in os.listdir(str(tmp_path)) if ".corrupt-" in name)
    assert kept == ["{one", "{two"]


def test_check_mode_reads_a_corrupt_file_as_empty_and_touches_nothing(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    before = tree_digest(tmp_path)
    with store(tmp_path / "s.json", check_mode=True) as state:
        state.data["items"]["a"] = {"n": 1}
        assert state.save() is True  # it would change
        assert "check mode reads it as empty" in state.warnings[0]
    assert tree_digest(tmp_path) == before  # no lock file, no rename, no write


def test_check_mode_creates_no_folder_but_fails_when_the_real_run_could_not_create_it(tmp_path):
    with store(tmp_path / "new" / "deeper" / "s.json", check_mode=True) as state:
        assert state.data == {"items": {}}
    assert os.listdir(str(tmp_path)) == []
    (tmp_path / "plain").write_text("")
    for check_mode in (True, False):
        with pytest.raises(StateDirError, match="^state_dir: cannot create .*plain/sub"):
            store(tmp_path / "plain" / "sub" / "s.json", check_mode=check_mode).open()


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_symlinked_folder_is_refused(tmp_path, check_mode):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StateDirError, match="link is a symlink"):
        store(tmp_path / "link" / "s.json", check_mode).open()
    assert os.listdir(str(tmp_path / "real")) == []


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("planted", ["s.json", "s.json.lock"])
def test_a_symlinked_state_or_lock_file_is_never_followed(tmp_path, check_mode, planted):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    (folder / planted).symlink_to(victim)
    with pytest.raises(StateDirError, match="%s is a symlink" % planted):
        store(folder / "s.json", check_mode).open()
    assert not os.path.lexists(str(victim))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
@pytest.mark.parametrize("check_mode", [False, True])
def test_a_folder_of_another_user_is_refused_with_the_fix(tmp_path, check_mode):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(str(folder), NOBODY_UID, NOBODY_UID)
    with pytest.raises(StateDirError, match=r"theirs is owned by uid 65534, not by uid 0 .*Fix: chown 0 .*chmod 0700"):
        store(folder / "s.json", check_mode).open()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o702])
def test_a_folder_others_may_write_is_refused(tmp_path, mode):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(StateDirError, match=r"open is writable by group or others \(mode %04o\).*chmod 0700" % mode):
        store(folder / "s.json").open()
    assert os.listdir(str(folder)) == []


def test_a_file_where_the_folder_should_be_and_a_folder_where_the_file_should_be(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(StateDirError, match="plain is not a folder"):
        store(tmp_path / "plain" / "s.json").open()
    (tmp_path / "s.json").mkdir()
    with pytest.raises(StateDirError, match="s.json is a folder where a file should be"):
        store(tmp_path / "s.json").open()


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
sys.stdout.write("held\\n")
sys.stdout.flush()
time.sleep(30)
"""


def test_a_lock_timeout_names_the_file_and_the_process_that_holds_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "s.json.lock")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(StateLockTimeout) as caught:
            store(tmp_path / "s.json", timeout=0.3).open()
        assert ("state_dir: waited 0.3s for the lock %s, held by pid %d" % (tmp_path / "s.json.lock", holder.pid)
                in str(caught.value))
        # Check mode waits for it as well (shared), and fails the same way.
        with pytest.raises(StateLockTimeout, match="held by pid %d" % holder.pid):
            store(tmp_path / "s.json", check_mode=True, timeout=0.2).open()
    finally:
        holder.kill()
        holder.wait()
    with store(tmp_path / "s.json", timeout=5) as state:
        assert state.data == {"items": {}}


def test_the_lock_is_held_from_load_to_save(tmp_path):
    with store(tmp_path / "s.json"):
        with pytest.raises(StateLockTimeout):
            store(tmp_path / "s.json", timeout=0.1).open()
    store(tmp_path / "s.json", timeout=0.1).open().close()


@pytest.mark.parametrize("checker, value, message", [
    (number, float("inf"), "not a finite number"),
    (number, True, "not a finite number"),
    (number, "1", "not a finite number"),
    (count, -1, "not a whole number"),
    (count, 1.5, "not a whole number"),
    (text, 5, "not a string"),
    (list_of(number), 5, "not a list"),
    (list_of(number), [1, "x"], r"where\[1\] is \"x\""),
    (one_of("up", "down"), "sideways", "not one of up, down"),
    (map_of(count), [1], "not an object"),
])
def test_shape_checkers_say_where_and_what(checker, value, message):
    with pytest.raises(ShapeError, match=message):
        checker(value, "where")


def test_shape_checkers_accept_good_values():
    assert number(1.5, "w") == 1.5 and count(0, "w") == 0 and nullable(text)(None, "w") is None
    assert record(required={"a": count}, optional={"b": text})({"a": 1, "extra": [1]}, "w") == {"a": 1, "extra": [1]}


# As an unprivileged user: root passes every permission check by privilege.

UNWRITABLE_AS_USER = """
import json, sys
from ansible_collections.fleetops.health.plugins.module_utils import state_file
schema = state_file.StateSchema(1, state_file.record(), empty=dict)
outcome = {}
for check_mode in (False, True):
    try:
        with state_file.locked_state(sys.argv[1], "state_dir", schema, check_mode=check_mode):
            outcome[str(check_mode)] = "ok"
    except state_file.StateDirError as exc:
        outcome[str(check_mode)] = str(exc)
print(json.dumps(outcome))
"""


@pytest.mark.skipif(os.geteuid() == 0 and not can_switch_user(), reason="root without runuser cannot drop privileges")
def test_a_folder_the_user_cannot_write_fails_in_check_mode_too():
    with shared_tmp() as base:
        readonly = os.path.join(base, "readonly")
        os.mkdir(readonly, 0o500)
        os.chown(readonly, unprivileged_uid(), -1)
        parent_readonly = os.path.join(base, "parent")
        os.mkdir(parent_readonly, 0o555)
        before = tree_digest(base)
        for path, expected in [(os.path.join(readonly, "s.json"), "directory %s is not writable by uid %d" % (readonly, unprivileged_uid())),
                               (os.path.join(parent_readonly, "sub", "s.json"), "cannot create %s/sub" % parent_readonly)]:
            out = run_unprivileged(UNWRITABLE_AS_USER, path)
            assert out.returncode == 0, out.stderr
            outcome = json.loads(out.stdout)
            assert expected in outcome["False"] and expected in outcome["True"], outcome
        assert tree_digest(base) == before
