import json
import os

import pytest

from ansible_collections.fleetops.health.plugins.module_utils import state_file


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "offsets.json"
    state_file.atomic_write_json(str(target), {"a": 1})
    state_file.atomic_write_json(str(target), {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(str(tmp_path)) == ["offsets.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)


def test_failed_write_keeps_old_content(tmp_path):
    target = tmp_path / "offsets.json"
    state_file.atomic_write_json(str(target), {"a": 1})
    with pytest.raises(TypeError):
        state_file.atomic_write_json(str(target), {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(str(tmp_path)) == ["offsets.json"]


def test_missing_state_is_fresh(tmp_path):
    assert state_file.load_json_state(str(tmp_path / "none.json")) == ({}, None)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_corrupt_state_is_moved_aside_with_warning(tmp_path, content):
    target = tmp_path / "state.json"
    target.write_bytes(content)
    state, warning = state_file.load_json_state(str(target))
    assert state == {}
    assert "corrupt" in warning and "moved it to" in warning
    aside = [name for name in os.listdir(str(tmp_path)) if name.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == content


def test_unwritable_dir_names_the_option(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    with pytest.raises(state_file.StateDirError, match="state_dir"):
        state_file.ensure_writable_dir(str(locked), "state_dir")


def test_uncreatable_dir_names_the_option(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(state_file.StateDirError, match="^state_dir: cannot create"):
        state_file.ensure_writable_dir(str(blocker / "sub"), "state_dir")
