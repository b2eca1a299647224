"""Every module that keeps state, run as Ansible runs it: runs at the same moment lose nothing, a hostile state
folder is refused without touching anything outside it, check mode leaves every byte as it was, and a file of
the wrong shape is moved aside once with a warning.

The concurrency scenario starts eight ansible-playbook runs at once, each running every module in its own
process. The other scenarios run each module as a process of its own without the controller, which costs a
third of the time and changes nothing about what the module does on the host.
"""
import json
import os
import shutil
import socket
import tempfile
import threading

import pytest

from ansible_collections.fleetops.health.tests.unit.im_receivers import IMReceiver
from ansible_collections.fleetops.health.tests.unit.state_harness import (
    HOSTILE_LAYOUTS,
    run_module_processes,
    run_tasks,
    tree_digest,
)

RUNS = 8


def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class Rig(object):
    """A base folder with logs to scan, a closed port to probe, and an IM receiver."""

    def __init__(self, base, receiver):
        self.base = base
        self.logs = os.path.join(base, "logs")
        os.makedirs(self.logs)
        self.closed_url = "http://127.0.0.1:%d/" % closed_port()
        self.receiver = receiver

    def log(self, key):
        path = os.path.join(self.logs, "%s.log" % key)
        if not os.path.exists(path):
            with open(path, "w") as handle:
                handle.write("E one\nok\nE two\n")
        return path


# For each module that keeps state: its file and lock inside the state folder, and the arguments of a run that
# writes ``key`` into the state kept in ``folder``.
STORES = {
    "probe": ("probe_state.json", "probe_state.json.lock", lambda rig, folder, key: {
        "state_file": os.path.join(folder, "probe_state.json"), "http_engine": "stdlib", "deadline": 5,
        "targets": [{"name": key, "url": rig.closed_url}]}),
    "log_scan": ("offsets.json", "offsets.lock", lambda rig, folder, key: {
        "state_dir": folder, "paths": [rig.log(key)], "start_at": "beginning",
        "rules": [{"name": "e", "keywords": ["E "]}]}),
    "restart_budget": ("budgets.json", "budgets.json.lock", lambda rig, folder, key: {
        "action": "record", "state_dir": folder, "services": [{"name": key, "result": "failed_verify"}]}),
    "scale_decision": ("state.json", "state.json.lock", lambda rig, folder, key: {
        "group": key, "scores": [95], "current": 2, "provider": "systemd_instances", "unit_template": "worker",
        "state_file": os.path.join(folder, "state.json")}),
    "im_notify": ("dedupe.json", "dedupe.json.lock", lambda rig, folder, key: {
        "platform": "webhook", "url": rig.receiver.url, "msg": "m %s" % key, "dedupe_key": key, "retries": 0,
        "timeout": 5, "spool_dir": folder}),
}


@pytest.fixture
def rig():
    base = tempfile.mkdtemp(prefix="fleetops_state_layer.", dir="/tmp")
    with IMReceiver("webhook") as receiver:
        yield Rig(base, receiver)
    shutil.rmtree(base, ignore_errors=True)


def task(name, module, args, check=False):
    return {"name": name, "module": module, "args": args, "check": check}


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


# Runs at the same moment.

def test_runs_at_the_same_moment_lose_no_update(rig):
    folders = dict((module, os.path.join(rig.base, module)) for module in STORES)
    playbooks = []
    for run in range(RUNS):
        key = "k%d" % run
        tasks = [task(module, module, STORES[module][2](rig, folders[module], key)) for module in STORES]
        budget = tasks[list(STORES).index("restart_budget")]["args"]
        # The same call also spends one shared budget: max_restarts 3, no backoff.
        budget.update(max_restarts=3, backoff="0")
        budget["services"].append({"name": "web", "result": "failed_verify"})
        # Nobody answers: the message goes to the spool, and its dedupe key is kept all the same.
        tasks[list(STORES).index("im_notify")]["args"]["url"] = rig.closed_url
        playbooks.append(tasks)
    results = [None] * RUNS

    def play(index):
        results[index] = run_tasks(playbooks[index])

    threads = [threading.Thread(target=play, args=(index,)) for index in range(RUNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    for result in results:
        for name, outcome in result.items():
            assert not outcome.get("failed"), (name, outcome.get("msg"))
    keys = set("k%d" % run for run in range(RUNS))
    assert set(read_json(os.path.join(folders["probe"], "probe_state.json"))["targets"]) == keys
    offsets = read_json(os.path.join(folders["log_scan"], "offsets.json"))["files"]
    assert sorted(entry["path"] for entry in offsets.values()) == sorted(rig.log(key) for key in keys)
    assert set(read_json(os.path.join(folders["restart_budget"], "budgets.json"))["services"]) == keys | {"web"}
    assert set(read_json(os.path.join(folders["scale_decision"], "state.json"))["groups"]) == keys
    ledger = read_json(os.path.join(folders["im_notify"], "dedupe.json"))["keys"]
    assert set(key.split("/", 1)[1] for key in ledger) == keys
    assert len([name for name in os.listdir(os.path.join(folders["im_notify"], "queue")) if name.endswith(".json")]) == RUNS
    # Every attempt on the shared service is counted, one run after the other: the budget of 3 is spent by the
    # third, and no later run is told that a restart is allowed.
    web = read_json(os.path.join(folders["restart_budget"], "budgets.json"))["services"]["web"]
    assert len(web["attempts"]) == RUNS
    attempts = [result["restart_budget"]["services"]["web"] for result in results]
    assert sorted(attempt["budget_left"] for attempt in attempts) == [0] * (RUNS - 2) + [1, 2]
    assert sum(attempt["allowed"] for attempt in attempts) == 2


# Hostile folders.

HOSTILE_MODULES = sorted(STORES)


def test_a_hostile_state_folder_is_refused_and_nothing_outside_it_changes(rig):
    cases, tasks = {}, []
    for module in HOSTILE_MODULES:
        name, lock_name, make_args = STORES[module]
        for layout, (build, expected) in sorted(HOSTILE_LAYOUTS.items()):
            case = "%s-%s" % (module, layout)
            folder = os.path.join(rig.base, "state-" + case)
            victim = os.path.join(rig.base, "victim-" + case)
            build(folder, name, lock_name, victim)
            cases[case] = (folder, expected)
            tasks.append(task(case, module, make_args(rig, folder, case)))
            if layout in ("symlinked_lock", "foreign_owner", "symlinked_state"):
                tasks.append(task(case + "-check", module, make_args(rig, folder, case), check=True))
                cases[case + "-check"] = (folder, expected)
    # The spool's queue is a state folder too.
    folder = os.path.join(rig.base, "state-im_notify-queue")
    os.makedirs(folder, mode=0o700)
    os.makedirs(os.path.join(rig.base, "victim-queue"), mode=0o700)
    os.symlink(os.path.join(rig.base, "victim-queue"), os.path.join(folder, "queue"))
    tasks.append(task("im_notify-queue", "im_notify", {"platform": "webhook", "url": rig.closed_url, "msg": "m",
                                                       "retries": 0, "spool_dir": folder}))
    cases["im_notify-queue"] = (folder, "symlink")

    def outside(digest):
        return dict((path, value) for path, value in digest.items()
                    if not any(path.startswith(folder + os.sep) for folder, _expected in cases.values()))

    before = outside(tree_digest(rig.base))
    results = run_module_processes(tasks)
    after = outside(tree_digest(rig.base))
    assert after == before
    # The symlinks pointed at these: none of them may have appeared.
    assert not [path for path in os.listdir(rig.base) if path.startswith("victim-") and "symlinked_folder" not in path
                and path != "victim-queue"]
    for case, (folder, expected) in cases.items():
        result = results[case]
        assert result.get("failed"), (case, result)
        assert expected in result["msg"], (case, result["msg"])
        assert "Traceback" not in result["msg"], (case, result)
        assert folder in result["msg"], (case, result["msg"])
    assert rig.receiver.messages == []


# Check mode.

def corrupt_copy(source, target, name):
    shutil.copytree(source, target, symlinks=True)
    with open(os.path.join(target, name), "w") as handle:
        handle.write("{half a state")


def test_check_mode_leaves_every_byte_of_the_state_as_it_was(rig):
    prepared = [task("%s-seed" % module, module, STORES[module][2](rig, os.path.join(rig.base, module), "seed"))
                for module in STORES]
    seeded = run_module_processes(prepared)
    assert not [name for name, result in seeded.items() if result.get("failed")], seeded
    for module, (name, _lock, _args) in STORES.items():
        corrupt_copy(os.path.join(rig.base, module), os.path.join(rig.base, module + "-corrupt"), name)
        # A run never held here: no lock file, and check mode must not create one.
        os.unlink(os.path.join(rig.base, module + "-corrupt", _lock))
    rig.log("more")
    with open(rig.log("seed"), "a") as handle:
        handle.write("E three\n")
    tasks = []
    for module, (_name, _lock, make_args) in STORES.items():
        for variant in ("", "-corrupt"):
            tasks.append(task(module + variant, module, make_args(rig, os.path.join(rig.base, module + variant), "seed"),
                              check=True))
            tasks.append(task(module + variant + "-new", module,
                              make_args(rig, os.path.join(rig.base, module + variant), "more"), check=True))
        tasks.append(task(module + "-missing", module, make_args(rig, os.path.join(rig.base, "missing", module), "k"),
                          check=True))
    before = tree_digest(rig.base)
    results = run_module_processes(tasks)
    assert tree_digest(rig.base) == before
    assert not os.path.exists(os.path.join(rig.base, "missing"))
    for module, (name, _lock, _args) in STORES.items():
        for variant in ("", "-new", "-corrupt", "-corrupt-new", "-missing"):
            assert not results[module + variant].get("failed"), (module + variant, results[module + variant])
        warnings = results[module + "-corrupt"].get("warnings", [])
        assert len([w for w in warnings if "check mode reads it as empty" in w]) == 1, (module, warnings)
        assert os.path.join(rig.base, module + "-corrupt", name) in " ".join(warnings)
    # What check mode predicted is what it would change.
    assert results["restart_budget"]["changed"] is True and results["scale_decision"]["changed"] is True


def test_check_mode_fails_like_the_real_run_when_the_folder_cannot_be_made(rig):
    blocker = os.path.join(rig.base, "plainfile")
    with open(blocker, "w") as handle:
        handle.write("x")
    tasks = []
    for module, (_name, _lock, make_args) in STORES.items():
        for check in (True, False):
            tasks.append(task("%s-%s" % (module, check), module, make_args(rig, os.path.join(blocker, "state"), "k"),
                              check=check))
    results = run_module_processes(tasks)
    for module in STORES:
        checked, real = results["%s-True" % module], results["%s-False" % module]
        assert checked.get("failed") and real.get("failed"), (module, checked, real)
        assert "cannot create %s/state" % blocker in checked["msg"], (module, checked["msg"])
        assert "cannot create %s/state" % blocker in real["msg"], (module, real["msg"])
    assert rig.receiver.messages == []


# Files of the wrong shape.

WRONG_SHAPES = [
    ("log_scan", "offsets.json", {"version": 1, "files": [1, 2], "gone": {}, "globs": {}}),
    ("log_scan", "offsets.json", {"version": 1, "files": {"1:2": {"offset": 3, "fp": "", "fp_len": 0}}, "gone": {},
                                  "globs": {}}),
    ("log_scan", "offsets.json", {"files": {}}),
    ("log_scan", "offsets.json", {"version": 99, "files": {}, "gone": {}, "globs": {}}),
    ("probe", "probe_state.json", {"version": 1, "targets": {"k": {"consecutive_fail": "x"}}}),
    ("probe", "probe_state.json", {"version": 1, "targets": {"k": {"state": "sideways"}}}),
    ("probe", "probe_state.json", [1, 2]),
    ("restart_budget", "budgets.json", {"version": 1, "services": {"web": "x"}}),
    ("restart_budget", "budgets.json", {"version": 1, "services": {"web": {"attempts": ["x"]}}}),
    ("restart_budget", "budgets.json", {"version": 1, "services": {"web": {"attempts": 5}}}),
    ("restart_budget", "budgets.json", "{\"version\": 1, \"services\": {\"web\": {\"attempts\": [1e400]}}}"),
    ("restart_budget", "budgets.json", {"version": 1, "services": {"web": {"state_since": "yesterday"}}}),
    ("restart_budget", "budgets.json", {"version": 1, "services": {"web": {"last_result": {"result": "maybe"}}}}),
    ("scale_decision", "state.json", {"g": 5}),
    ("scale_decision", "state.json", {"version": 1, "groups": {"k": {"high_streak": "x"}}}),
    ("scale_decision", "state.json", {"version": 1, "groups": {"k": {"high_streak": None}}}),
    ("scale_decision", "state.json", {"version": 1, "groups": {"k": {"high_streak": True}}}),
    ("im_notify", "dedupe.json", {"x": 5}),
    ("im_notify", "dedupe.json", {"version": 1, "keys": {"a/b": {"sent": "now"}}}),
    ("im_notify", "dedupe.json", "\"just a string\""),
]


def test_a_file_of_the_wrong_shape_is_moved_aside_once_and_the_next_run_is_clean(rig):
    tasks, cases = [], {}
    for index, (module, name, content) in enumerate(WRONG_SHAPES):
        folder = os.path.join(rig.base, "shape%d" % index)
        os.makedirs(folder, mode=0o700)
        raw = content if isinstance(content, str) else json.dumps(content)
        with open(os.path.join(folder, name), "w") as handle:
            handle.write(raw)
        cases[index] = (module, folder, name, raw)
        make_args = STORES[module][2]
        tasks.append(task("%d-first" % index, module, make_args(rig, folder, "k")))
        tasks.append(task("%d-next" % index, module, make_args(rig, folder, "k")))
    results = run_module_processes(tasks)
    for index, (module, folder, name, raw) in cases.items():
        first, nxt = results["%d-first" % index], results["%d-next" % index]
        assert not first.get("failed") and not nxt.get("failed"), (module, raw, first, nxt)
        state_warnings = [w for w in first.get("warnings", []) if "state file" in w]
        assert len(state_warnings) == 1, (module, raw, first.get("warnings"))
        aside = [entry for entry in os.listdir(folder) if entry.startswith(name + ".corrupt-")]
        assert len(aside) == 1, (module, raw, os.listdir(folder))
        assert os.path.join(folder, name) in state_warnings[0] and os.path.join(folder, aside[0]) in state_warnings[0]
        with open(os.path.join(folder, aside[0])) as handle:
            assert handle.read() == raw
        assert not [w for w in nxt.get("warnings", []) if "state file" in w], (module, raw, nxt.get("warnings"))
        assert read_json(os.path.join(folder, name))["version"] == 1


def test_the_old_unversioned_scale_state_is_read_and_rewritten_with_a_version(rig):
    folder = os.path.join(rig.base, "scale")
    os.makedirs(folder, mode=0o700)
    with open(os.path.join(folder, "state.json"), "w") as handle:
        json.dump({"k": {"high_streak": 2, "low_streak": 0, "last_action": None, "last_action_at": None},
                   "other": {"high_streak": 1, "low_streak": 0}}, handle)
    result = run_module_processes([task("scale", "scale_decision", STORES["scale_decision"][2](rig, folder, "k"))])["scale"]
    assert not result.get("failed") and not result.get("warnings"), result
    assert result["decision"]["high_streak"] == 3 and result["decision"]["action"] == "scale_out"
    saved = read_json(os.path.join(folder, "state.json"))
    assert saved["version"] == 1 and set(saved["groups"]) == {"k", "other"}
    assert saved["groups"]["other"]["high_streak"] == 1


# log_scan: the offsets lock and rules that would lose lines.

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
sys.stdout.write("held\\n")
sys.stdout.flush()
time.sleep(60)
"""


def test_log_scan_waits_for_the_offsets_lock_then_names_who_holds_it(rig):
    import subprocess
    import sys
    folder = os.path.join(rig.base, "offsets")
    os.makedirs(folder, mode=0o700)
    lock = os.path.join(folder, "offsets.lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, lock], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        args = dict(STORES["log_scan"][2](rig, folder, "k"), lock_timeout=0.5)
        results = run_module_processes([task("real", "log_scan", args), task("check", "log_scan", args, check=True)])
    finally:
        holder.kill()
        holder.wait()
    for name in ("real", "check"):
        assert results[name].get("failed"), results[name]
        assert ("state_dir: waited 0.5s for the lock %s, held by pid %d" % (lock, holder.pid)) in results[name]["msg"]
    assert sorted(os.listdir(folder)) == ["offsets.lock"]


def test_log_scan_refuses_an_empty_rule_list_and_keeps_the_offsets(rig):
    folder = os.path.join(rig.base, "offsets")
    args = STORES["log_scan"][2](rig, folder, "k")
    first = run_module_processes([task("first", "log_scan", args)])["first"]
    assert first["ansible_facts"]["fleet_logs"]["rules"]["e"]["count"] == 2
    with open(rig.log("k"), "a") as handle:
        handle.write("E three\n")
    before = tree_digest(folder)
    empty = run_module_processes([task("empty", "log_scan", dict(args, rules=[]))])["empty"]
    assert empty.get("failed") and empty["msg"].startswith("rules: give at least one rule"), empty
    assert tree_digest(folder) == before
    after = run_module_processes([task("after", "log_scan", args)])["after"]
    assert after["ansible_facts"]["fleet_logs"]["rules"]["e"]["count"] == 1  # the line was not lost
